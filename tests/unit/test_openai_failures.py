"""Real-shaped OpenAI failure bodies map to exactly one FailureKind each."""

from __future__ import annotations

import orjson
import pytest

from imagegate.core.errors import FailureKind as K
from imagegate.providers.openai_failures import classify_failure


def error(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


CASES = [
    (
        "rate limit",
        429,
        error(
            "Rate limit reached for images per minute. Please try again in 1s.",
            "requests",
            "rate_limit_exceeded",
        ),
        K.RATE_LIMITED,
    ),
    (
        "insufficient quota",
        429,
        error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        K.BILLING,
    ),
    (
        "moderation",
        400,
        error(
            "Your request was rejected by the safety system. safety_violations=[sexual].",
            "image_generation_user_error",
            "moderation_blocked",
        ),
        K.SAFETY,
    ),
    (
        "legacy policy",
        400,
        error(
            "Your request was rejected as a result of our safety system.",
            "invalid_request_error",
            "content_policy_violation",
        ),
        K.SAFETY,
    ),
    (
        "bad size",
        400,
        error(
            "Invalid value: '1792x1024'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'.",
            "invalid_request_error",
            "invalid_value",
            "size",
        ),
        K.BAD_REQUEST,
    ),
    (
        "bad key",
        401,
        error(
            "Incorrect API key provided: sk-...xxxx.", "invalid_request_error", "invalid_api_key"
        ),
        K.AUTH,
    ),
    (
        "org not verified",
        403,
        error(
            "Your organization must be verified to use the model `gpt-image-1.5`.",
            "invalid_request_error",
            None,
        ),
        K.AUTH,
    ),
    (
        "model gone",
        404,
        error(
            "The model `gpt-image-1` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        K.NOT_FOUND,
    ),
    (
        "server error",
        500,
        error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        K.UNAVAILABLE,
    ),
    (
        "overloaded",
        503,
        error("The engine is currently overloaded, please try again later.", "server_error", None),
        K.CAPACITY,
    ),
    (
        "bad gateway page",
        502,
        b"<html><head><title>502 Bad Gateway</title></head></html>",
        K.UNAVAILABLE,
    ),
    (
        "cloudflare 524",
        524,
        b"<!DOCTYPE html><html><title>524: A timeout occurred</title></html>",
        K.TIMEOUT,
    ),
]


@pytest.mark.parametrize(("name", "status", "body", "kind"), CASES, ids=[c[0] for c in CASES])
def test_failure_bodies_map_to_their_kind(name: str, status: int, body: bytes, kind: K) -> None:
    assert classify_failure(status, {}, body).kind is kind


def test_retry_after_ms_wins_over_retry_after() -> None:
    failure = classify_failure(429, {"retry-after": "2", "retry-after-ms": "1500"}, CASES[0][2])
    assert failure.retry_after == 1.5


def test_bad_request_names_the_param() -> None:
    assert classify_failure(400, {}, CASES[4][2]).param == "size"
