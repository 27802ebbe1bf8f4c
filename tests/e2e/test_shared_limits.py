"""Rate limits, token rotation and key revocation hold across processes on one database."""

from __future__ import annotations

import secrets

from tests.authenticator import Authenticator
from tests.e2e.processes import Passkeyd, passkeyd_cli
from tests.e2e.test_scale_out import Client
from tests.pg import temporary_schema


def test_limits_rotation_and_revocation_apply_on_every_process(tmp_path):
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    with temporary_schema() as url:
        passkeyd_cli(url, "migrate")
        env = {"PASSKEYD_RATE_LIMITS": "challenge=6/60", "PASSKEYD_SECRET_KEY": "0" * 64}
        nodes = [Passkeyd(url, sid, token, tmp_path / f"n{i}.log", extra_env=env) for i in range(2)]
        try:
            for node in nodes:
                node.start()
            a, b = (Client(n.base_url, (sid, token)) for n in nodes)
            a.create_service()
            b.service_sid = a.service_sid
            a.register("user-0001", Authenticator())
            statuses = []
            for i in range(8):  # alternate processes: one shared counter
                client = (a, b)[i % 2]
                r = client.post(
                    f"/v2/Services/{a.service_sid}/Passkeys/Challenges",
                    json={"identity": "user-0001"},
                )
                statuses.append(r.status_code)
            assert statuses == [201] * 6 + [429, 429], statuses

            key = passkeyd_cli(url, "keys", "create", "--account", sid)
            with_key = [Client(n.base_url, (key["sid"], key["secret"])) for n in nodes]
            assert all(c.get("/v2/Services").status_code == 200 for c in with_key)
            passkeyd_cli(url, "keys", "revoke", "--account", sid, "--sid", key["sid"])
            assert [c.get("/v2/Services").status_code for c in with_key] == [401, 401]

            rotated = passkeyd_cli(url, "accounts", "rotate-token", "--account", sid)
            assert [c.get("/v2/Services").status_code for c in (a, b)] == [401, 401]
            fresh = [Client(n.base_url, (sid, rotated["auth_token"])) for n in nodes]
            assert [c.get("/v2/Services").status_code for c in fresh] == [200, 200]
        finally:
            for node in nodes:
                node.stop()
