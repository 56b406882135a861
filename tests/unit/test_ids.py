"""Request and ledger ids: 32 hex characters, never the same twice."""

from __future__ import annotations

import re
import subprocess
import sys

from imagegate.core.ids import new_id


def test_ids_look_like_uuid_hex_and_do_not_repeat() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids[:1000])
    assert len(set(ids)) == len(ids)


def test_another_process_draws_other_ids() -> None:
    code = "from imagegate.core.ids import new_id; print(new_id())"
    others = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(others) == 3 and new_id() not in others
