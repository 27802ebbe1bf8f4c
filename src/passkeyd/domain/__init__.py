"""Use-cases: services, entities, factors, challenges and accounts. No HTTP here.

`Domain` (in `core`) binds them all. Importing this package loads none of them: the store
needs only `models`, and the server's supervisor process only `accounts`, neither the
WebAuthn verification with its libraries (two thirds of passkeyd's import time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import Domain


def __getattr__(name: str) -> Any:
    if name == "Domain":
        from .core import Domain

        return Domain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Domain"]
