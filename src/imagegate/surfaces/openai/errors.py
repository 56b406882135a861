"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

For failed upstream attempts the `code` is the imagegate failure kind and `attempts` lists every
attempt in order, so a client sees what was tried without reading gateway logs.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web

from imagegate.core.errors import AllCandidatesFailed, ClientError, FailureKind

_STATUS_BY_KIND = {
    FailureKind.BAD_REQUEST: 400,
    FailureKind.SAFETY: 400,
    FailureKind.RATE_LIMITED: 429,
    FailureKind.QUOTA_ZERO: 429,
    FailureKind.QUOTA_STUCK: 429,
    FailureKind.CAPACITY: 503,
    FailureKind.UNAVAILABLE: 503,
    FailureKind.TIMEOUT: 504,
}
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
# Failures a client retry cannot fix; the OpenAI SDK honours x-should-retry.
_FINAL_KINDS = {
    FailureKind.BAD_REQUEST,
    FailureKind.SAFETY,
    FailureKind.QUOTA_ZERO,
    FailureKind.AUTH,
    FailureKind.BILLING,
    FailureKind.NOT_FOUND,
}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None,
    param: str | None = None,
    error_type: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "message": message,
        "type": error_type or _TYPE_BY_STATUS.get(status, "upstream_error"),
        "param": param,
        "code": code,
    }
    if extra:
        body.update(extra)
    return web.Response(
        status=status,
        body=orjson.dumps({"error": body}),
        content_type="application/json",
        headers=headers,
    )


def client_error(exc: ClientError) -> web.Response:
    return error_response(exc.status, exc.message, code=exc.code, param=exc.param)


def upstream_failure(exc: AllCandidatesFailed) -> web.Response:
    final = exc.final
    status = _STATUS_BY_KIND.get(final.kind, 502)
    headers = {"x-should-retry": "false" if final.kind in _FINAL_KINDS else "true"}
    if final.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(final.retry_after)))
    error_type = "image_generation_user_error" if final.kind is FailureKind.SAFETY else None
    attempts = [
        {"deployment": a.deployment, "kind": str(a.kind), "status": a.status} for a in exc.attempts
    ]
    return error_response(
        status,
        final.diagnosis,
        code=str(final.kind),
        param=final.param,
        error_type=error_type,
        extra={"attempts": attempts},
        headers=headers,
    )
