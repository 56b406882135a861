"""Short durations as operators type them: `30d`, `12h`, `90m`, `45s`, `2w`."""

from __future__ import annotations

import datetime
import re

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> datetime.timedelta:
    """`"7d"` → 7 days. Raises ValueError naming the accepted forms."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit: 45s 90m 12h 30d 2w"
        )
    return datetime.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_instant(text: str, now: datetime.datetime) -> datetime.datetime:
    """A point in time: a duration ago (`7d`), an ISO date (`2025-06-01`, UTC midnight) or an
    ISO datetime (UTC when it has no offset)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration ago (7d, 12h) nor an ISO date or datetime"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)
