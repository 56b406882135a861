"""Classify Black Forest Labs failures into FailureKinds (shared/reference/flux-bfl.md §1, §4).

Two places fail: the HTTP answer of a submit or poll (FastAPI bodies: `{"detail": [{loc, msg,
type}]}` on 422, `{"detail": "..."}`, `{"message": ...}` or `{"error", "message",
"retry_after"}` elsewhere), and the task's own terminal status in a 200 poll answer
(`Request Moderated`, `Content Moderated`, `Error`, `Task not found`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.providers._http import (
    by_status,
    retry_after_seconds,
    unstructured_failure,
)

K = FailureKind
PROVIDER = "BFL"


def classify_failure(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """The UpstreamError for a non-2xx answer to a submit or a poll."""
    doc = _json_object(body)
    if doc is None:
        return unstructured_failure(status, body, PROVIDER, "a BFL error")
    message, param, code = read_error(doc)
    common: dict[str, Any] = {"status": status, "provider_code": code, "provider_message": message}
    if status in (401, 403):
        return UpstreamError(
            K.AUTH,
            f"BFL refused the API key (HTTP {status}: {message[:160]}); check the key in the"
            " `x-key` header comes from the environment variable named in the provider's keys",
            **common,
        )
    if status == 402:
        return UpstreamError(
            K.BILLING,
            "the BFL account behind this key is out of credits; add credits at"
            " dashboard.bfl.ai or use another key",
            **common,
        )
    if status == 429:
        return UpstreamError(
            K.RATE_LIMITED,
            "BFL refused a new task: this key has too many active tasks (24 on most endpoints,"
            f" 6 on flux-kontext-max); wait for one to finish ({message[:120]})",
            retry_after=_retry_after(headers, doc),
            **common,
        )
    if status == 404:
        return UpstreamError(
            K.NOT_FOUND,
            f"BFL has no such endpoint ({message[:120]}); check the deployment's model, which"
            " is the path after /v1/ (e.g. flux-2-pro)",
            **common,
        )
    if status in (400, 422):
        where = f" `{param}`" if param else ""
        return UpstreamError(
            K.BAD_REQUEST,
            f"BFL rejected the request's field{where}: {message[:300]}",
            param=param,
            **common,
        )
    return by_status(status, PROVIDER, message, code, **common)


def classify_poll_failure(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """As classify_failure, for a poll: a 404 there means the task, not the endpoint, is gone."""
    error = classify_failure(status, headers, body)
    if error.kind is K.NOT_FOUND:
        lost = task_failure("Task not found", "being polled", None)
        lost.status, lost.provider_message = status, error.provider_message
        return lost
    return error


def read_error(doc: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(message, offending field, code) of a BFL error body in any of its shapes."""
    detail = doc.get("detail")
    if isinstance(detail, list) and detail:
        return _validation_errors(detail)
    code = doc.get("error") if isinstance(doc.get("error"), str) else None
    if isinstance(detail, str):
        return detail, None, code
    if isinstance(doc.get("error"), Mapping):  # a relay in front of BFL, OpenAI-style
        inner = doc["error"]
        return str(inner.get("message") or ""), None, _text(inner.get("code"))
    message = doc.get("message")
    if message is not None:
        return str(message), None, code
    return (code or orjson.dumps(doc)[:300].decode("utf-8", "replace")), None, code


def _validation_errors(detail: list[Any]) -> tuple[str, str | None, str | None]:
    """FastAPI's 422 list: `field: msg` per entry, and the first entry's field as the param."""
    parts: list[str] = []
    first: str | None = None
    code: str | None = None
    for entry in detail[:5]:
        if not isinstance(entry, Mapping):
            parts.append(str(entry))
            continue
        field = field_name(entry.get("loc"))
        first = first or field
        code = code or _text(entry.get("type"))
        msg = str(entry.get("msg") or "")
        parts.append(f"{field}: {msg}" if field else msg)
    return "; ".join(parts), first, code


def field_name(loc: Any) -> str | None:
    """`["body", "width"]` → `width`; nested locations join with dots."""
    if not isinstance(loc, list | tuple):
        return None
    names = [str(part) for part in loc if part not in ("body", "query", "header")]
    return ".".join(names) or None


def task_failure(status: str, task_id: str, details: Any) -> UpstreamError:
    """The UpstreamError for a task that ended in a terminal status other than `Ready`."""
    reasons = _reasons(details)
    common: dict[str, Any] = {"provider_code": status, "provider_message": reasons or None}
    why = f" ({reasons})" if reasons else ""
    if status == "Request Moderated":
        return UpstreamError(
            K.SAFETY,
            f"BFL's moderation blocked the input, the prompt or an input image{why}; rephrase"
            " it or change the image (a higher bfl.safety_tolerance may help)",
            **common,
        )
    if status == "Content Moderated":
        return UpstreamError(
            K.SAFETY,
            f"BFL's moderation blocked the generated image, the output{why}; rephrase the"
            " prompt (a higher bfl.safety_tolerance may help)",
            **common,
        )
    if status == "Task not found":
        return UpstreamError(
            K.UNAVAILABLE,
            f"BFL no longer knows task {task_id}: it expired, or the poll reached a cluster"
            " that does not hold it",
            **common,
        )
    return UpstreamError(
        K.UNAVAILABLE,
        f"BFL's task {task_id} ended in status {status!r}{why}; this is on BFL's side",
        **common,
    )


def _reasons(details: Any) -> str:
    """Moderation reasons or error text from a poll's `details`, if it holds any."""
    if isinstance(details, str):
        return details[:200]
    if not isinstance(details, Mapping):
        return ""
    found: list[str] = []
    for name, value in details.items():
        if isinstance(value, list):
            found += [str(item) for item in value]
        elif isinstance(value, str | int | float):
            found.append(f"{name}: {value}")
    return ", ".join(found)[:200]


def _retry_after(headers: Mapping[str, str], doc: Mapping[str, Any]) -> float | None:
    hinted = retry_after_seconds(headers)
    if hinted is not None:
        return hinted
    value = doc.get("retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0.0, float(value))
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None
