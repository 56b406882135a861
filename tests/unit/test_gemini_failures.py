"""Real-shaped Gemini (and relay) failure bodies map to exactly one FailureKind each."""

from __future__ import annotations

import orjson
import pytest

from imagegate.core.errors import FailureKind as K
from imagegate.providers.gemini_failures import classify_failure, classify_no_image


def status_body(code: int, status: str, message: str, *details: dict[str, object]) -> bytes:
    return orjson.dumps(
        {"error": {"code": code, "message": message, "status": status, "details": list(details)}}
    )


def quota(value: str, quota_id: str) -> dict[str, object]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": quota_id,
                "quotaDimensions": {"model": "gemini-2.5-flash-image"},
                "quotaValue": value,
            }
        ],
    }


RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "33s"}
KEY_INVALID = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
    "domain": "googleapis.com",
}
CF_524 = (
    b"<!DOCTYPE html><html><head><title>example.com | 524: A timeout occurred</title></head></html>"
)
NGINX_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

CASES = [
    (
        "quota zero (free tier)",
        429,
        status_body(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0",
            quota("0", "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
            RETRY,
        ),
        K.QUOTA_ZERO,
    ),
    (
        "per-minute quota",
        429,
        status_body(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded. Please retry in 33s.",
            quota("10", "GenerateRequestsPerMinutePerProjectPerModel"),
            RETRY,
        ),
        K.RATE_LIMITED,
    ),
    (
        "shared capacity 429",
        429,
        status_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        K.CAPACITY,
    ),
    (
        "overloaded 503",
        503,
        status_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        K.CAPACITY,
    ),
    (
        "unavailable 503",
        503,
        status_body(503, "UNAVAILABLE", "The service is currently unavailable."),
        K.UNAVAILABLE,
    ),
    (
        "internal 500",
        500,
        status_body(500, "INTERNAL", "An internal error has occurred."),
        K.UNAVAILABLE,
    ),
    (
        "get_channel_failed",
        500,
        orjson.dumps(
            {
                "error": {
                    "message": "get_channel_failed",
                    "type": "new_api_error",
                    "param": "",
                    "code": "get_channel_failed",
                }
            }
        ),
        K.UNAVAILABLE,
    ),
    ("nginx 502 page", 502, NGINX_502, K.UNAVAILABLE),
    ("cloudflare 524 page", 524, CF_524, K.TIMEOUT),
    (
        "deadline 504",
        504,
        status_body(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
        K.TIMEOUT,
    ),
    (
        "invalid key",
        400,
        status_body(
            400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", KEY_INVALID
        ),
        K.AUTH,
    ),
    (
        "permission denied",
        403,
        status_body(
            403,
            "PERMISSION_DENIED",
            "Requests to this API are blocked.",
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_SERVICE_BLOCKED",
            },
        ),
        K.AUTH,
    ),
    (
        "billing precondition",
        400,
        status_body(
            400,
            "FAILED_PRECONDITION",
            "User location is not supported for the API use without a billing account linked.",
        ),
        K.BILLING,
    ),
    (
        "prepaid exhausted",
        402,
        status_body(402, "RESOURCE_EXHAUSTED", "Your prepaid credits are exhausted."),
        K.BILLING,
    ),
    (
        "unknown model",
        404,
        status_body(404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta"),
        K.NOT_FOUND,
    ),
    (
        "bad argument",
        400,
        status_body(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'generation_config.image_config.image_size'",
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": "generation_config.image_config.image_size", "description": "bad"}
                ],
            },
        ),
        K.BAD_REQUEST,
    ),
]


@pytest.mark.parametrize(("name", "status", "body", "kind"), CASES, ids=[c[0] for c in CASES])
def test_failure_bodies_map_to_their_kind(name: str, status: int, body: bytes, kind: K) -> None:
    error = classify_failure(status, {}, body)
    assert error.kind is kind, error.diagnosis
    assert error.diagnosis and "{" not in error.diagnosis  # plain words, no raw JSON


def test_retry_info_becomes_the_retry_hint() -> None:
    body = status_body(429, "RESOURCE_EXHAUSTED", "q", quota("10", "PerMinute"), RETRY)
    assert classify_failure(429, {}, body).retry_after == 33.0


def test_quota_zero_says_to_enable_billing() -> None:
    body = status_body(429, "RESOURCE_EXHAUSTED", "limit: 0", quota("0", "FreeTier"))
    assert "enable billing" in classify_failure(429, {}, body).diagnosis


def test_bad_argument_names_the_field() -> None:
    assert (
        classify_failure(400, {}, CASES[-1][2]).param == "generation_config.image_config.image_size"
    )


@pytest.mark.parametrize(
    ("skeleton", "kind"),
    [
        ({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}, K.SAFETY),
        ({"candidates": [{"finishReason": "IMAGE_SAFETY", "content": {"parts": []}}]}, K.SAFETY),
        (
            {"candidates": [{"finishReason": "STOP", "content": {"parts": [{"text": "I can't"}]}}]},
            K.EMPTY,
        ),
        ({"candidates": [{"finishReason": "NO_IMAGE"}]}, K.EMPTY),
        (
            {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}]},
            K.EMPTY,
        ),
    ],
)
def test_200_without_image_is_never_success(skeleton: dict[str, object], kind: K) -> None:
    assert classify_no_image(skeleton, ["TEXT", "IMAGE"]).kind is kind


def test_empty_200_blames_modalities_when_image_was_not_asked() -> None:
    error = classify_no_image({"candidates": [{"finishReason": "STOP"}]}, ["TEXT"])
    assert "responseModalities" in error.diagnosis
