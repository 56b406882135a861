"""Classify fal.ai failures into FailureKinds (shared/reference/fal-replicate.md, fal part).

fal answers errors in two shapes (docs.fal.ai "Model Errors" and "Request Errors"):

- model errors: `{"detail": [{"loc", "msg", "type", "url", "ctx"}]}`, FastAPI's list, where
  `type` says what went wrong (`content_policy_violation`, `image_too_large`, a validation type)
  and `loc` names the field (`["body", "image_size"]`);
- request errors: `{"detail": "<text>", "error_type": "<kind>"}`, the kind also in the
  `x-fal-error-type` header (`request_timeout`, `runner_scheduling_failure`, ...).

A queued request that failed still reaches `COMPLETED`: its status carries `error` and
`error_type` (classify_completed). A key whose account ran out of money gets 403 "User is locked.
Reason: Exhausted balance." (fal-ai/fal issues #1112, #1147), a billing state, not an auth one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.providers._http import (
    by_status,
    retry_after_seconds,
    unstructured_failure,
)

K = FailureKind
PROVIDER = "fal"
# error_type values (request errors, and what COMPLETED statuses carry) → kind.
_TIMEOUT_TYPES = {"request_timeout", "startup_timeout", "generation_timeout"}
_SAFETY_TYPES = {"content_policy_violation"}
# Words of the account-lock answers: "User is locked. Reason: Exhausted balance. Top up ...".
_BILLING_WORDS = ("exhausted balance", "top up", "insufficient", "balance", "billing", "credits")


def classify_failure(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """The UpstreamError for a non-2xx fal answer (submit, status, result or cancel call)."""
    doc = _json_object(body)
    if doc is None or "detail" not in doc:
        return unstructured_failure(status, body, PROVIDER, "a fal error")
    items = _detail_items(doc.get("detail"))
    message = _message(doc.get("detail"), items)
    error_type = str(doc.get("error_type") or headers.get("x-fal-error-type") or "")
    types = {str(item.get("type") or "") for item in items} | {error_type}
    code = error_type or next((t for t in types if t), "")
    common: dict[str, Any] = {"status": status, "provider_code": code or None}
    common["provider_message"] = message
    if types & _SAFETY_TYPES:
        return _safety(message, **common)
    lowered = message.lower()
    if status == 402 or (status == 403 and any(w in lowered for w in _BILLING_WORDS)):
        return UpstreamError(
            K.BILLING,
            f"the fal account behind this key cannot pay ({message[:160]}); top up the balance"
            " at fal.ai/dashboard/billing",
            **common,
        )
    if status in (401, 403):
        return UpstreamError(
            K.AUTH,
            f"fal refuses this key ({message[:160]}); check the key (`Key <id>:<secret>`) and"
            " its access to the model",
            **common,
        )
    if status == 404:
        return UpstreamError(
            K.NOT_FOUND,
            f"fal has no such app or request ({message[:160]}); check the deployment's model",
            **common,
        )
    if status == 429:
        return UpstreamError(
            K.RATE_LIMITED,
            f"fal rate limit reached ({message[:160]})",
            retry_after=retry_after_seconds(headers),
            **common,
        )
    if error_type in _TIMEOUT_TYPES:
        return UpstreamError(
            K.TIMEOUT,
            f"fal timed out ({error_type}: {message[:120]}); retry elsewhere",
            **common,
        )
    if status in (400, 422) and error_type != "internal_error":
        param = _param(items)
        where = f" (field `{param}`)" if param else ""
        return UpstreamError(
            K.BAD_REQUEST,
            f"fal rejected the request{where}: {message[:240]}",
            param=param,
            **common,
        )
    return by_status(status, PROVIDER, message, common["provider_code"], **common)


def classify_completed(status_doc: Mapping[str, Any]) -> UpstreamError | None:
    """The failure a COMPLETED status reports in `error`/`error_type`, or None for a success.

    Only a decisive `error_type` is classified here; for others the caller reads the result
    URL, whose error answer (a 422 naming the field, say) says more.
    """
    error, error_type = status_doc.get("error"), str(status_doc.get("error_type") or "")
    if not error and not error_type:
        return None
    message = str(error or error_type)
    common: dict[str, Any] = {"provider_code": error_type or None, "provider_message": message}
    if error_type in _SAFETY_TYPES:
        return _safety(message, **common)
    if error_type in _TIMEOUT_TYPES:
        return UpstreamError(
            K.TIMEOUT, f"fal's request timed out ({error_type}: {message[:120]})", **common
        )
    return UpstreamError(
        K.UNAVAILABLE,
        f"fal finished the request with an error ({error_type or 'no type'}: {message[:160]})",
        **common,
    )


def is_decisive(error: UpstreamError) -> bool:
    """Whether a COMPLETED error is already classified for good (see classify_completed)."""
    return error.kind in (K.SAFETY, K.TIMEOUT)


def _safety(message: str, **common: Any) -> UpstreamError:
    return UpstreamError(
        K.SAFETY,
        f"fal's content checker rejected the request or its result ({message[:160]}); rephrase"
        " the prompt or change the input images",
        **common,
    )


def _json_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _detail_items(detail: Any) -> list[Mapping[str, Any]]:
    if isinstance(detail, list):
        return [item for item in detail if isinstance(item, dict)]
    if isinstance(detail, dict):  # some apps nest one object: {"error": type, "message": ...}
        return [{"type": detail.get("error") or detail.get("type"), **detail}]
    return []


def _message(detail: Any, items: Sequence[Mapping[str, Any]]) -> str:
    if isinstance(detail, str):
        return detail
    texts = [str(item.get("msg") or item.get("message") or "") for item in items]
    return "; ".join(text for text in texts if text)


def _param(items: Sequence[Mapping[str, Any]]) -> str | None:
    """The field a FastAPI error names: `loc` minus its leading "body"."""
    for item in items:
        loc = item.get("loc")
        if isinstance(loc, list):
            path = [str(part) for part in loc if part != "body"]
            if path:
                return ".".join(path)
    return None
