"""Summaries of py-spy's collapsed stacks (`--format raw`): inclusive and self time by frame,
and time by bucket (HTTP stack, SQLite, crypto, ...)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

# Ordered: the first bucket whose pattern matches a stack (searched leaf first) wins.
BUCKETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ECDSA/crypto verify", re.compile(r"verify_signature|_verify_ec2|\.verify \(cryptography")),
    ("COSE decode + key load", re.compile(r"decode_credential_public_key|decoded_public_key_to")),
    ("SQL store (execute/commit)", re.compile(r"\(passkeyd/storage/(sqlite|sql|postgres)\.py")),
    ("py_webauthn registration", re.compile(r"verify_registration_response|parse_attestation")),
    ("py_webauthn parsing", re.compile(r"\(webauthn/")),
    ("passkeyd webauthn layer", re.compile(r"\(passkeyd/webauthn/")),
    ("passkeyd storage rows", re.compile(r"\(passkeyd/storage/rows\.py")),
    ("passkeyd domain", re.compile(r"\(passkeyd/domain/")),
    ("passkeyd api (params, serializers, edge)", re.compile(r"\(passkeyd/api/")),
    ("Starlette", re.compile(r"\(starlette/")),
    ("uvicorn/httptools", re.compile(r"\(uvicorn/|httptools")),
)


@dataclass(frozen=True)
class Summary:
    samples: int
    inclusive: list[tuple[str, float]]
    self_time: list[tuple[str, float]]
    buckets: list[tuple[str, float]]


def _frames(stack: str) -> list[str]:
    return stack.split(";")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({match['file']})"


def read(path: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[stack] += int(count)
    return out


def bucket_of(frames: Iterable[str]) -> str:
    leaf_first = list(frames)[::-1]
    for name, pattern in BUCKETS:
        if any(pattern.search(f) for f in leaf_first):
            return name
    return "other (event loop, asyncio, ...)"


def summarise(stacks: Counter[str], top: int = 25) -> Summary:
    total = sum(stacks.values()) or 1
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = _frames(stack)
        names = {_name(f) for f in frames}
        for name in names:
            inclusive[name] += count
        self_time[_name(frames[-1])] += count
        buckets[bucket_of(frames)] += count

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, 100.0 * v / total) for k, v in c.most_common(top)]

    return Summary(total, pct(inclusive), pct(self_time), pct(buckets))


def render(title: str, summary: Summary, top: int = 25) -> str:
    lines = [f"## {title}: {summary.samples} samples", "", "time by bucket (first match, leaf up):"]
    lines += [f"  {p:5.1f}%  {name}" for name, p in summary.buckets]
    lines += ["", "inclusive (a frame anywhere on the stack):"]
    lines += [f"  {p:5.1f}%  {name}" for name, p in summary.inclusive[:top]]
    lines += ["", "self (leaf frame):"]
    lines += [f"  {p:5.1f}%  {name}" for name, p in summary.self_time[:top]]
    return "\n".join(lines) + "\n"
