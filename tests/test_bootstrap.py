"""scripts/bootstrap, which scripts/serve and scripts/test run first: with a python3 older
than passkeyd needs, it says so and how to name another, and a .venv such a python made
before is made again rather than reused (pip refused passkeyd in it on every run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A python3.10 as far as bootstrap can tell: `-V` names it, and the version check fails.
OLD_PYTHON = """#!/bin/sh
case "$1" in
  -V) echo "Python 3.10.13" ;;
  -c) exit 1 ;;
  *) echo "old python called with $*" >&2; exit 2 ;;
esac
"""


def _checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _old_python(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OLD_PYTHON)
    path.chmod(0o755)
    return path


def _bootstrap(checkout: Path, python: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(python)}
    return subprocess.run(  # noqa: S603
        [str(checkout / "scripts" / "bootstrap")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_an_old_python_is_named_with_the_way_to_name_another(tmp_path):
    checkout = _checkout(tmp_path / "checkout")
    old = _old_python(tmp_path / "bin" / "python3")
    done = _bootstrap(checkout, old)
    assert done.returncode == 1
    assert f"passkeyd needs Python 3.11 or newer; {old} is: Python 3.10.13." in done.stderr
    assert "PYTHON=/usr/bin/python3.11" in done.stderr
    assert not (checkout / ".venv").exists()  # nothing half made


def test_a_venv_an_old_python_made_is_made_again(tmp_path):
    checkout = _checkout(tmp_path / "checkout")
    _old_python(checkout / ".venv" / "bin" / "python")
    (checkout / ".venv" / ".passkeyd-installed").write_text("stale")
    done = _bootstrap(checkout, _old_python(tmp_path / "bin" / "python3"))
    assert "bootstrap: .venv has Python 3.10.13; making it again" in done.stderr
    assert not (checkout / ".venv").exists()
    # (and then, PYTHON being old too, it says so as above rather than reuse anything)
    assert done.returncode == 1 and "needs Python 3.11 or newer" in done.stderr


@pytest.mark.parametrize(
    ("script", "args"), [("serve", ["--config", "my.toml"]), ("demo", ["--users-db", "users.db"])]
)
def test_the_scripts_run_passkeyd_where_they_are_run_from(tmp_path, script, args):
    """`/path/to/checkout/scripts/serve --config my.toml` (or `scripts/demo --users-db
    users.db`), run from an app's directory, read my.toml and made ./passkeyd.db (users.db)
    in the checkout, not where it was run (found by new-user reviews). Each bootstraps the
    checkout, then runs passkeyd in the caller's directory with the arguments as given."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / script, checkout / "scripts" / script)
    bootstrap = checkout / "scripts" / "bootstrap"
    bootstrap.write_text('#!/bin/sh\necho "bootstrap in $(pwd)" >&2\n')
    passkeyd = checkout / ".venv" / "bin" / "passkeyd"
    passkeyd.parent.mkdir(parents=True)
    passkeyd.write_text('#!/bin/sh\necho "passkeyd in $(pwd): $*"\n')
    for executable in (bootstrap, passkeyd):
        executable.chmod(0o755)
    app = tmp_path / "app"
    app.mkdir()
    r = subprocess.run(  # noqa: S603
        [str(checkout / "scripts" / script), *args],
        cwd=app,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"passkeyd in {app}: {script} {' '.join(args)}\n"
    assert "bootstrap in" in r.stderr
