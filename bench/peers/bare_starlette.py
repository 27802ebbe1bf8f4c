"""HTTP floor: the cheapest JSON POST on passkeyd's own stack (Starlette + uvicorn + orjson).

Run: uvicorn bare_starlette:app --app-dir bench/peers
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def echo(request: Request) -> Response:
    data = orjson.loads(await request.body())
    return Response(orjson.dumps({"ok": True, "n": len(data)}), media_type="application/json")


app = Starlette(
    routes=[Route("/healthz", healthz, methods=["GET"]), Route("/echo", echo, methods=["POST"])]
)
