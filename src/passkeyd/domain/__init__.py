"""Use-cases: services, entities, factors, challenges and accounts. No HTTP here.

`Domain` (in `core`) binds them all. Importing this package loads none of them: the storage
package needs only `models` and `store` (the interface it implements), and the server's
supervisor process only `accounts`, neither the WebAuthn verification with its libraries
(two thirds of passkeyd's import time). No module here imports storage, the HTTP edge or
a web framework (tests/test_imports.py).
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
