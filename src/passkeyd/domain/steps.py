"""Use-cases in steps: a generator that yields just before each write.

The caller decides what a yield costs. On SQLite the API takes the write lock there (on
the event loop, waiting for another worker process without blocking it), so that the
reads, the parsing and the signature checks before a ceremony's write run while another
process may be writing, instead of keeping it from writing. What a step read before a
yield may have changed by the time it writes: the write checks again what matters (see
the outcomes of `storage.InsertOutcome` and `ApproveOutcome`). Anywhere else (a thread,
a test, the CLI) `finish` just runs the steps through.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

Steps = Generator[None, None, T]


def finish(steps: Steps[T]) -> T:
    """Run every step, taking no turn: the result of the use-case."""
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
