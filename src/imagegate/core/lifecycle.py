"""How the gateway words a model's retirement, wherever it is told (errors, warnings)."""

from __future__ import annotations

import datetime


def retired_message(model: str, on: datetime.date | None, successor: str | None) -> str:
    when = f" on {on.isoformat()}" if on is not None else ""
    then = f" Its successor is `{successor}`." if successor else ""
    return f"The model `{model}` was retired{when}.{then}"
