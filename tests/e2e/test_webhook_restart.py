"""Webhook events survive a restart: an undelivered event is delivered by the next process."""

from __future__ import annotations

import secrets
import time

from twilio.request_validator import RequestValidator

from tests.e2e.processes import Passkeyd, free_port
from tests.e2e.test_scale_out import Client
from tests.receiver import receiver


def test_an_undelivered_event_is_delivered_after_a_restart(tmp_path):
    sid, token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    env = {
        "PASSKEYD_WEBHOOK_ALLOW_PRIVATE": "true",
        "PASSKEYD_WEBHOOK_INTERVAL_MS": "50",
        "PASSKEYD_WEBHOOK_RETRY_BASE_SECONDS": "1",
    }
    node = Passkeyd(
        f"sqlite:///{tmp_path}/hooks.db", sid, token, tmp_path / "hooks.log", extra_env=env
    ).start()
    port = free_port()  # nothing listens here yet: deliveries fail
    url = f"http://127.0.0.1:{port}/hooks/passkeys"
    try:
        client = Client(node.base_url, (sid, token))
        svc = client.create_service()
        r = client.post(
            f"/v2/Services/{svc}/Webhooks",
            data={"FriendlyName": "h", "WebhookUrl": url, "EventTypes": "factor.created"},
        )
        assert r.status_code == 201, r.text
        factor = client.post(
            f"/v2/Services/{svc}/Passkeys/Factors",
            json={"friendly_name": "alice", "identity": "user-0001"},
        ).json()
        deadline = time.monotonic() + 10
        while "factor.created attempt 1" not in node.output():
            assert time.monotonic() < deadline, node.output()
            time.sleep(0.05)
        assert node.stop() in (0, -15)
        with receiver(port=port) as rx:
            node.start()
            deadline = time.monotonic() + 10
            while not rx.requests:
                assert time.monotonic() < deadline, node.output()
                time.sleep(0.05)
            time.sleep(0.5)
            assert len(rx.requests) == 1
            event = rx.requests[0]
            assert event.params["type"] == "factor.created"
            assert event.params["factor_sid"] == factor["sid"]
            assert RequestValidator(token).validate(
                url, event.params, event.headers["X-Twilio-Signature"]
            )
    finally:
        node.stop()
