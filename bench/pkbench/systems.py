"""The systems under test and how each is started: passkeyd, the peers, the HTTP floor."""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from .procs import HOST, Server, free_port

BENCH = Path(__file__).resolve().parents[1]
PEERS = BENCH / "peers"
NODE_PEER = PEERS / "simplewebauthn"
# Rate limits stay on, so their bookkeeping is measured, but so high that the benchmark's
# few busy users never reach them (passkeyd's defaults allow 30 challenges/min per identity).
NO_LIMIT = 1_000_000_000
RATE_LIMITS = ",".join(
    f"{rule}={NO_LIMIT}/60" for rule in ("challenge", "approve", "factor", "failed_auth")
)
UVICORN_FLAGS = ("--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "10")


@dataclass(frozen=True)
class Credentials:
    account_sid: str
    auth_token: str

    @classmethod
    def random(cls) -> Credentials:
        return cls("AC" + secrets.token_hex(16), secrets.token_hex(16))


def passkeyd_server(
    *,
    workers: int,
    database_url: str,
    credentials: Credentials,
    log_dir: Path,
    src: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    port = free_port()
    env = {
        "PASSKEYD_ACCOUNT_SID": credentials.account_sid,
        "PASSKEYD_AUTH_TOKEN": credentials.auth_token,
        "PASSKEYD_RATE_LIMITS": RATE_LIMITS,
        **(extra_env or {}),
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [
        sys.executable,
        "-m",
        "passkeyd.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--database-url",
        database_url,
        "--workers",
        str(workers),
    ]
    return Server(
        f"passkeyd w{workers}", command, port, env, log_path=log_dir / f"passkeyd-w{workers}.log"
    )


def uvicorn_app_server(
    name: str, app: str, *, workers: int, env: dict[str, str], log_dir: Path
) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(PEERS)]
    command += ["--host", HOST, "--port", str(port), *UVICORN_FLAGS]
    if workers > 1:
        command += ["--workers", str(workers)]
    return Server(
        f"{name} w{workers}", command, port, env, log_path=log_dir / f"{name}-w{workers}.log"
    )


def fastapi_server(*, workers: int, db_path: Path, log_dir: Path) -> Server:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return uvicorn_app_server(
        "fastapi",
        "fastapi_rp:app",
        workers=workers,
        env={"BENCH_PEER_DB": str(db_path)},
        log_dir=log_dir,
    )


def bare_server(*, workers: int, log_dir: Path) -> Server:
    return uvicorn_app_server(
        "bare-starlette", "bare_starlette:app", workers=workers, env={}, log_dir=log_dir
    )


def node_server(*, log_dir: Path, node: str = "node") -> Server:
    port = free_port()
    return Server(
        "simplewebauthn w1",
        [node, str(NODE_PEER / "server.mjs")],
        port,
        {"PORT": str(port), "HOST": HOST},
        cwd=str(NODE_PEER),
        log_path=log_dir / "simplewebauthn.log",
    )


def fastapi_version() -> str | None:
    try:
        import fastapi
    except ImportError:
        return None
    return str(fastapi.__version__)


def simplewebauthn_version() -> str | None:
    package = NODE_PEER / "node_modules" / "@simplewebauthn" / "server" / "package.json"
    if not package.exists():
        return None
    import json

    return str(json.loads(package.read_text())["version"])
