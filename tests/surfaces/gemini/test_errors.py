"""Refusals and upstream failures as google.rpc.Status bodies, the shape google-genai reads."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from imagegate.core.errors import (
    AllCandidatesFailed,
    AttemptFailure,
    BudgetExceeded,
    FailureKind,
    InvalidRequest,
    ModelNotFound,
    Unauthorized,
    UnsupportedRequest,
    UpstreamError,
)
from imagegate.surfaces.gemini.errors import client_error, status_response, upstream_failure


def error_of(response: web.Response) -> dict[str, Any]:
    assert isinstance(response.body, bytes)
    doc = orjson.loads(response.body)
    error: dict[str, Any] = (doc[0] if isinstance(doc, list) else doc)["error"]
    assert error["code"] == response.status
    return error


def detail(error: dict[str, Any], kind: str) -> dict[str, Any]:
    [found] = [d for d in error.get("details", []) if d["@type"].endswith(kind)]
    return found


def test_an_invalid_field_is_invalid_argument_with_a_field_violation() -> None:
    exc = InvalidRequest("bad ratio", param="generation_config.image_config.aspect_ratio")
    error = error_of(client_error(exc, key_presented=True))
    assert (error["code"], error["status"], error["message"]) == (
        400,
        "INVALID_ARGUMENT",
        "bad ratio",
    )
    assert detail(error, "BadRequest")["fieldViolations"] == [
        {"field": "generation_config.image_config.aspect_ratio", "description": "bad ratio"}
    ]


def test_the_routers_parameter_names_become_gemini_fields() -> None:
    exc = UnsupportedRequest("no deployment offers 1:8", param="aspect_ratio")
    violation = detail(error_of(client_error(exc, key_presented=True)), "BadRequest")
    assert violation["fieldViolations"][0]["field"] == "generation_config.image_config.aspect_ratio"


def test_a_wrong_key_answers_as_google_does() -> None:
    error = error_of(client_error(Unauthorized("ig_...abcd is revoked."), key_presented=True))
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert (
        error["message"] == "API key not valid. Please pass a valid API key. ig_...abcd is revoked."
    )
    assert detail(error, "ErrorInfo")["reason"] == "API_KEY_INVALID"


def test_no_key_at_all_is_permission_denied_as_google_does() -> None:
    error = error_of(client_error(Unauthorized("no key"), key_presented=False))
    assert (error["code"], error["status"]) == (403, "PERMISSION_DENIED")
    assert "x-goog-api-key" in error["message"]


def test_a_budget_refusal_says_when_to_retry() -> None:
    response = client_error(BudgetExceeded("spent", retry_after=30.2), key_presented=True)
    error = error_of(response)
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert detail(error, "RetryInfo")["retryDelay"] == "31s"
    assert detail(error, "ErrorInfo")["reason"] == "BUDGET_EXCEEDED"
    assert response.headers["retry-after"] == "31"


def test_errors_of_a_stream_without_sse_come_in_an_array() -> None:
    response = client_error(ModelNotFound("models/x is not found"), key_presented=True, array=True)
    assert isinstance(response.body, bytes) and response.body.startswith(b"[")
    assert error_of(response)["status"] == "NOT_FOUND"


def failed(kind: FailureKind, **fields: Any) -> AllCandidatesFailed:
    final = UpstreamError(kind, f"diagnosis of {kind}", **fields)
    attempts = [
        AttemptFailure("flash", kind, 429, "first"),
        AttemptFailure("pro", kind, 503, "second"),
    ]
    return AllCandidatesFailed(final, attempts)


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        (FailureKind.QUOTA_ZERO, 429, "RESOURCE_EXHAUSTED"),
        (FailureKind.RATE_LIMITED, 429, "RESOURCE_EXHAUSTED"),
        (FailureKind.CAPACITY, 503, "UNAVAILABLE"),
        (FailureKind.UNAVAILABLE, 503, "UNAVAILABLE"),
        (FailureKind.TIMEOUT, 504, "DEADLINE_EXCEEDED"),
        (FailureKind.BAD_REQUEST, 400, "INVALID_ARGUMENT"),
        (FailureKind.AUTH, 502, "UNAVAILABLE"),
        (FailureKind.EMPTY, 502, "UNAVAILABLE"),
    ],
)
def test_upstream_failures_map_by_kind_and_keep_every_attempt(
    kind: FailureKind, code: int, status: str
) -> None:
    error = error_of(upstream_failure(failed(kind)))
    assert (error["code"], error["status"], error["message"]) == (
        code,
        status,
        f"diagnosis of {kind}",
    )
    info = detail(error, "ErrorInfo")
    assert (info["reason"], info["domain"], info["metadata"]["kind"]) == (
        str(kind).upper(),
        "imagegate",
        str(kind),
    )
    assert orjson.loads(info["metadata"]["attempts"]) == [
        {"deployment": "flash", "kind": str(kind), "status": 429},
        {"deployment": "pro", "kind": str(kind), "status": 503},
    ]


def test_an_upstream_retry_hint_becomes_retry_info() -> None:
    response = upstream_failure(failed(FailureKind.RATE_LIMITED, retry_after=2.0))
    assert detail(error_of(response), "RetryInfo")["retryDelay"] == "2s"
    assert response.headers["retry-after"] == "2"


def test_an_upstream_bad_request_names_the_field() -> None:
    error = error_of(upstream_failure(failed(FailureKind.BAD_REQUEST, param="size")))
    assert detail(error, "BadRequest")["fieldViolations"][0]["field"] == (
        "generation_config.image_config"
    )


def test_http_errors_get_the_canonical_status() -> None:
    assert error_of(status_response(404, "Unknown path"))["status"] == "NOT_FOUND"
    assert error_of(status_response(500, "boom"))["status"] == "INTERNAL"
