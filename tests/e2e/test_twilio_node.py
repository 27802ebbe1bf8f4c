"""The official twilio-node SDK (6.3.1, from npm, unmodified) against a real passkeyd process.

`twilio_node/sdk_flow.js` drives the whole Verify Passkeys flow through the SDK, pointed at
the server with `client.verify.baseUrl`, the one line an app changes; its software
authenticator (`twilio_node/authenticator.js`) answers with what a browser's
`PublicKeyCredential.toJSON()` gives. The SDK sends the four Passkeys endpoints as JSON,
in snake_case from plain objects and in camelCase from its typed request classes, with
nulls kept: the script uses both. The SDK is installed with `npm ci` on first use, and
again when package.json pins another version than the one installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import Server

HERE = Path(__file__).resolve().parent / "twilio_node"


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    assert node is not None, "these tests need Node.js 20 or newer on PATH"
    installed = HERE / "node_modules" / "twilio" / "package.json"
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]["twilio"]
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=HERE,
            check=True,
            timeout=300,
        )
    return node


def test_the_whole_flow_through_twilio_node(node: str, server: Server) -> None:
    key = server.create_api_key()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PASSKEYD_URL": server.base_url,
        "ACCOUNT_SID": server.account_sid,
        "AUTH_TOKEN": server.auth_token,
        "API_KEY_SID": key["sid"],
        "API_KEY_SECRET": key["secret"],
    }
    run = subprocess.run(
        [node, "sdk_flow.js"], cwd=HERE, env=env, capture_output=True, text=True, timeout=120
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "FAIL" not in report, report
    passed = [line for line in run.stdout.splitlines() if line.startswith("  ok ")]
    # Every check ran (a check skipped by an early return would lower the count).
    assert len(passed) >= 75, report
    assert run.stdout.rstrip().endswith(f"{len(passed)} passed, 0 failed"), report
