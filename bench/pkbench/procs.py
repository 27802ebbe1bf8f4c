"""Server processes under test: start, time to healthy, CPU and memory from /proc, stop."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of proc(5)


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """`root` and every process below it, parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        out.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and
    iowait), to tell how much of a window went to processes outside the benchmark."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / CLK_TCK


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def role(pid: int, root: int, has_children: bool) -> str:
    """supervisor, worker or helper (e.g. multiprocessing's resource tracker)."""
    line = cmdline(pid)
    if "resource_tracker" in line:
        return "helper"
    if pid == root:
        return "supervisor" if has_children else "worker"
    return "worker"


@dataclass
class ProcessSample:
    """CPU seconds per pid at one moment."""

    cpu: dict[int, float]
    at: float


@dataclass
class Server:
    """A server under test, started by `start()` and stopped by `stop()`."""

    name: str
    command: Sequence[str]
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    health_path: str = "/healthz"
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> float:
        """Start the process; return seconds from spawn to the first 200 on the health path."""
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        started = time.perf_counter()
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            list(self.command),
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = started + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before answering"
                    f" {self.health_path} (log: {self.log_path})"
                )
            if health_status(self.port, self.health_path) == 200:
                self.startup_seconds = time.perf_counter() - started
                return self.startup_seconds
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not healthy after {timeout:.0f} s")
            time.sleep(0.005)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        return descendants(self.pid)

    def roles(self) -> dict[int, str]:
        pids = self.pids()
        return {p: role(p, self.pid, len(pids) > 1) for p in pids}

    def worker_pids(self) -> list[int]:
        return [p for p, r in self.roles().items() if r == "worker"]

    def wait_workers(self, count: int, timeout: float = 30.0) -> float:
        """Seconds until `count` worker processes exist and have settled (RSS stable)."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if len(self.worker_pids()) >= count:
                return time.perf_counter() - started
            time.sleep(0.01)
        return float("nan")

    def sample(self) -> ProcessSample:
        cpu = {}
        for pid in self.pids():
            value = cpu_seconds(pid)
            if value is not None:
                cpu[pid] = value
        return ProcessSample(cpu, time.perf_counter())

    def rss(self) -> dict[int, int]:
        out = {}
        for pid in self.pids():
            value = rss_bytes(pid)
            if value is not None:
                out[pid] = value
        return out

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # only the group this server leads
            self.process.wait(timeout=timeout)


def health_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()
