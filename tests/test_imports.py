"""What importing passkeyd loads: the server's supervisor (`passkeyd.cli`) does without the
WebAuthn verification and py_webauthn, most of passkeyd's import time; every package can
be imported first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import passkeyd.webauthn


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_the_cli_loads_no_webauthn_library_until_a_domain_is_made() -> None:
    loaded = run(
        "import sys, passkeyd.cli;"
        "print(sorted(m for m in sys.modules if m == 'webauthn' or m.startswith("
        "('webauthn.', 'passkeyd.webauthn.registration', 'passkeyd.webauthn.authentication',"
        " 'passkeyd.api', 'passkeyd.metadata'))))"
    )
    assert loaded == "[]"


def test_the_supervisor_starts_its_workers_without_the_attestation_libraries(
    tmp_path: Path,
) -> None:
    """`serve` up to uvicorn's start (the schema, the account, the warnings with the
    metadata's due date) loads no X.509, trust store or importlib.metadata: at two workers
    the supervisor's start-up comes before theirs (about 100 ms of it, on these machines)."""
    loaded = run(
        "import os, sys, uvicorn; uvicorn.run = lambda *a, **k: None;"
        f" os.environ['PASSKEYD_DATABASE_URL'] = 'sqlite:///{tmp_path}/p.db';"
        " os.environ['PASSKEYD_WORKERS'] = '2'; os.environ['PASSKEYD_LOG_LEVEL'] = 'error';"
        " from passkeyd.cli import main; main(['serve']);"
        " print(sorted(m for m in sys.modules if m in ('importlib.metadata', 'cryptography.x509',"
        " 'passkeyd.webauthn.trust', 'webauthn')))"
    )
    assert loaded.splitlines()[-1] == "[]", loaded


@pytest.mark.parametrize("module", ["passkeyd.storage", "passkeyd.domain.models", "passkeyd.cli"])
def test_each_package_can_be_imported_first(module: str) -> None:
    assert run(f"import {module}; print('ok')") == "ok"


def test_every_name_passkeyd_webauthn_exports_resolves() -> None:
    assert set(passkeyd.webauthn._MODULE_OF) == set(passkeyd.webauthn.__all__)
    for name in passkeyd.webauthn.__all__:
        assert getattr(passkeyd.webauthn, name) is not None
    with pytest.raises(AttributeError):
        passkeyd.webauthn.no_such_name  # noqa: B018


DOMAIN_MODULES = sorted(
    "passkeyd.domain." + path.stem
    for path in Path(passkeyd.webauthn.__file__).parent.parent.joinpath("domain").glob("*.py")
    if path.stem != "__init__"
)


@pytest.mark.parametrize("module", DOMAIN_MODULES)
def test_the_domain_imports_no_storage_edge_or_framework(module: str) -> None:
    """The layers of STYLE.md: webauthn <- domain <- storage and the HTTP edge."""
    loaded = run(
        f"import sys, {module};"
        "print(sorted(m for m in sys.modules if m.startswith(('passkeyd.storage',"
        " 'passkeyd.api', 'passkeyd.web.', 'starlette', 'uvicorn', 'sqlite3', 'psycopg'))))"
    )
    assert loaded == "[]", loaded
