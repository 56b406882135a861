"""Unique ids for requests and ledger rows, cheaper than `uuid4()` on the hot path.

`uuid4()` reads the kernel's random source and builds a UUID object for every id: two of each
per request. Here a process draws 64 random bits once and counts from there, so an id is a
string format. Ids stay unique across restarts and replicas (each start draws a new prefix; two
processes share one with probability 2⁻⁶⁴) and within a process (the counter never repeats).
They are not secrets: nothing may rely on an id being unguessable.
"""

from __future__ import annotations

import itertools
import secrets

_PREFIX = secrets.token_hex(8)
_COUNTER = itertools.count(secrets.randbits(64))


def new_id() -> str:
    """32 lowercase hex characters, like `uuid4().hex`."""
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFF_FFFF_FFFF_FFFF:016x}"
