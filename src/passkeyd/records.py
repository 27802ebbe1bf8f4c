"""`@record`: an immutable dataclass for values built on every request.

To the type checker it is `@dataclass(frozen=True, slots=True)`: assigning to a field is an
error that mypy reports (scripts/test runs mypy --strict over src/passkeyd). At run time it
is `@dataclass(slots=True, unsafe_hash=True)` (hashed by its fields, as a frozen one is),
because a frozen dataclass's `__init__` sets each field through
`object.__setattr__`: about 0.2 us a field, 3.5 us for an 18-field row, and an
authentication builds half a dozen (its factors, its challenge, the parsed assertion, the
audit event). Values shared between requests (services, relying-party policies, cached
configuration) stay frozen at run time too: they use `@dataclass(frozen=True)` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

T = TypeVar("T")

if TYPE_CHECKING:
    from typing import dataclass_transform

    @dataclass_transform(frozen_default=True)
    def record(cls: type[T]) -> type[T]: ...

else:
    record = dataclass(slots=True, unsafe_hash=True)
