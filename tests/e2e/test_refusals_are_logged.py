"""A request the HTTP parser refuses is answered with a Twilio-Request-Id: like every other
answer it has its access-log line carrying that id, and is counted at /metrics (it had
neither: uvicorn's warning "Invalid HTTP request received.", without an id, once per
refused request)."""

from __future__ import annotations

import json
import secrets
import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.processes import HOST, Passkeyd


def _send(port: int, data: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def _unmatched(base_url: str) -> dict[str, float]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        s.labels["status"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "passkeyd_http_requests_total" and s.labels["route"] == "unmatched"
    }


def test_a_refused_request_has_its_access_line_and_is_counted(tmp_path) -> None:
    node = Passkeyd(
        database_url=f"sqlite:///{tmp_path}/refused.db",
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
        log_path=tmp_path / "passkeyd.log",
        extra_env={"PASSKEYD_LOG_FORMAT": "json"},
    ).start()
    try:
        ids = []
        for request in (
            b"GARBAGE\r\n\r\n",
            b"GET /v2/Services HTTP/1.1\r\nConnection: close\r\n\r\n",  # no Host
            b"GET /v2/Services HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n",
        ):
            answer = _send(node.port, request)
            head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
            ids.append(head.split("twilio-request-id: ", 1)[1].split("\r\n", 1)[0])
        counted = _unmatched(node.base_url)
        time.sleep(0.5)  # access lines are written at most 0.2 s late
    finally:
        node.stop()
    lines = [json.loads(line) for line in node.output().splitlines() if line.startswith("{")]
    access = {line.get("request_id"): line for line in lines if line["logger"] == "passkeyd.access"}
    for request_id in ids:
        line = access.get("RQ" + request_id[2:])  # (the header was lower-cased above)
        assert line is not None and line["status"] in (400, 431), (request_id, node.output())
        assert line["route"] == "unmatched"  # as /metrics counts it
    assert not [line for line in lines if "Invalid HTTP request" in line["msg"]]
    assert counted == {"400": 2.0, "431": 1.0}, counted
