"""Usage lines as the API's JSON and as CSV (the same columns for `GET /v1/usage?format=csv` and
`imagegate usage --csv`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from imagegate.ledger.pricing import MICROS_PER_USD, format_usd
from imagegate.state.usage import UsageLine

COLUMNS = ("requests", "succeeded", "failed", "images", "cost_usd")


def line_json(line: UsageLine) -> dict[str, Any]:
    return {
        "requests": line.requests,
        "succeeded": line.succeeded,
        "failed": line.failed,
        "images": line.images,
        "cost_usd": line.cost_micros / MICROS_PER_USD,
        "cost_micros": line.cost_micros,
    }


def total(lines: Sequence[UsageLine]) -> UsageLine:
    return UsageLine(
        group=None,
        requests=sum(line.requests for line in lines),
        succeeded=sum(line.succeeded for line in lines),
        failed=sum(line.failed for line in lines),
        images=sum(line.images for line in lines),
        cost_micros=sum(line.cost_micros for line in lines),
    )


def to_csv(lines: Sequence[UsageLine], group_by: str | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(([group_by] if group_by else []) + list(COLUMNS))
    for line in lines:
        values = [line.requests, line.succeeded, line.failed, line.images]
        writer.writerow(
            ([line.group or ""] if group_by else []) + values + [format_usd(line.cost_micros)]
        )
    return buffer.getvalue()
