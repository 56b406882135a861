"""Errors in Google's shape: a google.rpc.Status as JSON (shared/reference/gemini-image.md §7).

    {"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT", "details": [...]}}

google-genai raises `errors.ClientError` for a 4xx and `errors.ServerError` for a 5xx, with
`.code`, `.status` and `.message` read from this body. A bad key answers as Google does (400
INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID), so code written against Google behaves the
same. Upstream failures keep what the OpenAI surface shows: the failure kind and every attempt,
in an ErrorInfo of domain "imagegate".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from imagegate.core.errors import (
    AllCandidatesFailed,
    BudgetExceeded,
    ClientError,
    ClientRateLimited,
    FailureKind,
    PermissionDenied,
    Unauthorized,
)

TYPE_PREFIX = "type.googleapis.com/google.rpc."
DOMAIN = "imagegate"
# The canonical status Google pairs with each HTTP code.
STATUS_BY_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# Upstream failure kinds → HTTP code. Safety is not here: it answers 200 (answer.refused_answer).
# Kinds the client cannot cause or fix (the gateway's upstream keys, models, answers) are 502.
_CODE_BY_KIND = {
    FailureKind.QUOTA_ZERO: 429,
    FailureKind.RATE_LIMITED: 429,
    FailureKind.QUOTA_STUCK: 429,
    FailureKind.CAPACITY: 503,
    FailureKind.UNAVAILABLE: 503,
    FailureKind.TIMEOUT: 504,
    FailureKind.BAD_REQUEST: 400,
}
# Parameters named by shared code (router, admission) → the Gemini field they came from.
_FIELDS = {
    "aspect_ratio": "generation_config.image_config.aspect_ratio",
    "resolution": "generation_config.image_config.image_size",
    "size": "generation_config.image_config",
    "image": "contents",
    "output_format": "generation_config.image_config.output_mime_type",
}
_API_KEY_INVALID = "API key not valid. Please pass a valid API key."
_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity)."
    " Please use API Key or other form of API consumer identity to call this API."
    " This gateway needs an imagegate client key: genai.Client(api_key=...) sends it as"
    " x-goog-api-key."
)


def status_response(
    code: int,
    message: str,
    *,
    details: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
    array: bool = False,
) -> web.Response:
    """The Status body; `array` wraps it in a list, as a streamed call without alt=sse gets it."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": STATUS_BY_CODE.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = list(details)
    body = orjson.dumps([{"error": error}] if array else {"error": error})
    return web.Response(status=code, body=body, content_type="application/json", headers=headers)


def bad_request(field: str, description: str) -> dict[str, Any]:
    return {
        "@type": TYPE_PREFIX + "BadRequest",
        "fieldViolations": [{"field": field, "description": description}],
    }


def error_info(reason: str, metadata: dict[str, str], domain: str = DOMAIN) -> dict[str, Any]:
    return {
        "@type": TYPE_PREFIX + "ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
    }


def retry_info(seconds: float) -> dict[str, Any]:
    return {"@type": TYPE_PREFIX + "RetryInfo", "retryDelay": f"{max(1, math.ceil(seconds))}s"}


def _retry_headers(seconds: float | None) -> dict[str, str]:
    return {} if seconds is None else {"retry-after": str(max(1, math.ceil(seconds)))}


def field_of(param: str | None) -> str | None:
    return None if param is None else _FIELDS.get(param, param)


def client_error(exc: ClientError, *, key_presented: bool, array: bool = False) -> web.Response:
    """A refusal before any upstream call, in Google's words where Google has some."""
    if isinstance(exc, Unauthorized):
        if not key_presented:
            return status_response(403, _NO_KEY, array=array)
        message = f"{_API_KEY_INVALID} {exc.message}"
        key_details = [
            error_info("API_KEY_INVALID", {"service": "imagegate"}),
            {"@type": TYPE_PREFIX + "LocalizedMessage", "locale": "en-US", "message": message},
        ]
        return status_response(400, message, details=key_details, array=array)
    details: list[dict[str, Any]] = []
    field = field_of(exc.param)
    if exc.status == 400 and field is not None:
        details.append(bad_request(field, exc.message))
    if isinstance(exc, ClientRateLimited | BudgetExceeded | PermissionDenied):
        details.append(error_info(exc.code.upper(), {"param": exc.param or ""}))
    if exc.retry_after is not None:
        details.append(retry_info(exc.retry_after))
    return status_response(
        exc.status,
        exc.message,
        details=details,
        headers=_retry_headers(exc.retry_after),
        array=array,
    )


def upstream_failure(exc: AllCandidatesFailed, *, array: bool = False) -> web.Response:
    """Every candidate failed: the final kind decides the code; every attempt is in ErrorInfo."""
    final = exc.final
    code = _CODE_BY_KIND.get(final.kind, 502)
    attempts = [
        {"deployment": a.deployment, "kind": str(a.kind), "status": a.status} for a in exc.attempts
    ]
    metadata = {"kind": str(final.kind), "attempts": orjson.dumps(attempts).decode()}
    details = [error_info(str(final.kind).upper(), metadata)]
    field = field_of(final.param)
    if code == 400 and field is not None:
        details.append(bad_request(field, final.diagnosis))
    if final.retry_after is not None:
        details.append(retry_info(final.retry_after))
    return status_response(
        code,
        final.diagnosis,
        details=details,
        headers=_retry_headers(final.retry_after),
        array=array,
    )
