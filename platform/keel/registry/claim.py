"""Exclusive claims for the registry's writers, on a local disk and on an object store alike.

S3 has no lock and no rename-if-absent, and pyarrow writes no conditional object, so a claim
is a small object of its own in the claimed directory: write yours, then list the directory.
Yours holds only if no other live claim is there. S3 (since 2020) and MinIO list every object
written before the listing started, so of two writers claiming at once the later one sees the
earlier one's claim: two never hold the same claim. Both may see each other and both step
back; they retry after a random wait. The same protocol runs on a local disk, so the tests of
one are tests of the other.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator

from keel import storage
from keel.errors import RegistryError

SUFFIX = ".claim"  # hidden names (a leading '.'): dataset readers and listings of versions skip
STALE_S = 60.0  # a lock held this long belongs to a writer that died (holding one takes < 1 s)
WAIT_S = 30.0  # how long a writer waits for a lock before it gives up and says whose it is


def take(directory: str, *, stale_s: float | None = None) -> str | None:
    """Claim `directory`: the claim's URI, or None when another writer holds it or claimed at
    the same moment. A claim older than `stale_s` is ignored (None: claims never go stale)."""
    name = f".{uuid.uuid4().hex}{SUFFIX}"
    mine = storage.join(directory, name)
    storage.write_bytes(mine, b"")
    if any(other != name for other in live(directory, stale_s)):
        storage.delete_file(mine)
        return None
    return mine


def live(directory: str, stale_s: float | None = None) -> list[str]:
    """The names of the claims in `directory`, those older than `stale_s` left out."""
    now_ns = time.time_ns()
    return [
        i.base_name
        for i in storage.list_dir(directory)
        # write_bytes' temporary names end otherwise: a claim counts once it is written
        if i.base_name.endswith(SUFFIX)
        and (stale_s is None or i.mtime_ns is None or now_ns - i.mtime_ns < stale_s * 1e9)
    ]


@contextlib.contextmanager
def held(directory: str, what: str) -> Iterator[None]:
    """Hold the lock `directory` while the block runs: one writer at a time changes `what`."""
    deadline = time.monotonic() + WAIT_S
    while (mine := take(directory, stale_s=STALE_S)) is None:
        if time.monotonic() > deadline:
            raise RegistryError(
                f"{what} stayed locked by another writer for {WAIT_S:.0f} s ({directory}); "
                f"if no keel command is writing to this registry, delete the {SUFFIX} files there"
            )
        time.sleep(random.uniform(0.01, 0.1))
    try:
        yield
    finally:
        storage.delete_file(mine)
