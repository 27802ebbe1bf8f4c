"""The example configuration and systemd unit in docs/examples work as shipped: every key
of the TOML (and every one commented out) is a setting passkeyd takes, with the value it
shows in effect, and the unit passes systemd's own check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from passkeyd.cli import EXIT_CONFIG, EXIT_SCHEMA
from passkeyd.settings import ENVIRONMENT

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples"


def test_the_example_configuration_is_taken_as_written(tmp_path):
    toml = EXAMPLES / "passkeyd.toml"
    written = tomllib.loads(toml.read_text())
    r = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "passkeyd.cli", "check-config", "--config", str(toml),
         "--database-url", f"sqlite:///{tmp_path}/example.db"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    shown = json.loads(r.stdout)
    # None of its warnings is about a setting (the packaged metadata's age may be one).
    assert [w for w in shown["warnings"] if "metadata" not in w] == []
    for key, value in written.items():
        if key != "database_url":  # (the flag's, here)
            assert shown["settings"]["PASSKEYD_" + key.upper()] == value, key
    # The settings it shows commented out, to be turned on, are settings too.
    commented = re.findall(r"^# ([a-z_]+) = ", toml.read_text(), re.MULTILINE)
    assert len(commented) >= 4
    for key in commented:
        assert "PASSKEYD_" + key.upper() in ENVIRONMENT, key


def test_the_example_unit_passes_systemd_analyze(tmp_path):
    """(scripts/test installs systemd-analyze where it is missing.) Its ExecStart is pointed
    at this checkout's passkeyd: `verify` checks that the command exists."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/test installs it (Debian's systemd)"
    unit = (EXAMPLES / "passkeyd.service").read_text()
    ours = str(Path(sys.executable).parent / "passkeyd")
    assert "ExecStart=/opt/passkeyd/bin/passkeyd serve\n" in unit
    (tmp_path / "passkeyd.service").write_text(unit.replace("/opt/passkeyd/bin/passkeyd", ours))
    r = subprocess.run(  # noqa: S603
        [analyze, "verify", str(tmp_path / "passkeyd.service")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # (A line it cannot parse is a warning on stderr, with exit status 0.)
    assert (r.returncode, r.stderr, r.stdout) == (0, "", ""), r.stderr
    # Restarting is not what cures a configuration error or a schema mismatch.
    assert f"RestartPreventExitStatus={EXIT_CONFIG} {EXIT_SCHEMA}\n" in unit
