"""Classify OpenAI Images API failures into FailureKinds (shared/reference/openai-images.md §8).

OpenAI errors are {"error": {"message", "type", "param", "code"}}; rate limits add Retry-After
and retry-after-ms headers. insufficient_quota shares HTTP 429 with rate limits but is a billing
state that no retry can fix.
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
_BILLING_CODES = {
    "insufficient_quota",
    "billing_hard_limit_reached",
    "credit_balance_exhausted",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
}
_SAFETY_CODES = {"moderation_blocked", "content_policy_violation", "content_filter"}


def classify_failure(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    error = _error_object(body)
    if error is None:
        return unstructured_failure(status, body, "OpenAI", "an OpenAI error")
    message = str(error.get("message") or "")
    code = str(error.get("code") or error.get("type") or "")
    common: dict[str, Any] = {"status": status, "provider_code": code, "provider_message": message}
    if code in _SAFETY_CODES or error.get("type") == "image_generation_user_error":
        return UpstreamError(
            K.SAFETY,
            f"OpenAI's safety system rejected the request ({code}); rephrase the prompt",
            **common,
        )
    if status == 401 or code == "invalid_api_key":
        return UpstreamError(
            K.AUTH,
            "the OpenAI API key is invalid or revoked; check the environment variable named in"
            " the provider's keys",
            **common,
        )
    if status == 403:
        return UpstreamError(
            K.AUTH,
            f"OpenAI refuses this key for this model ({message[:160]}); GPT image models may need"
            " a verified organization",
            **common,
        )
    if code in _BILLING_CODES:
        return UpstreamError(
            K.BILLING,
            f"the OpenAI account behind this key is out of credit or over its spend limit ({code});"
            " add credit or raise the limit",
            **common,
        )
    if status == 404 or code == "model_not_found":
        return UpstreamError(
            K.NOT_FOUND,
            f"OpenAI does not serve this model ({message[:160]}); check the deployment's model",
            **common,
        )
    if status == 429:
        return UpstreamError(
            K.RATE_LIMITED,
            f"OpenAI rate limit reached ({message[:160]})",
            retry_after=retry_after_seconds(headers),
            **common,
        )
    if status in (400, 422):
        return UpstreamError(
            K.BAD_REQUEST,
            f"OpenAI rejected the request: {message}",
            param=error.get("param") if isinstance(error.get("param"), str) else None,
            **common,
        )
    if status == 503 and ("overloaded" in message.lower() or "high demand" in message.lower()):
        return UpstreamError(K.CAPACITY, "OpenAI is overloaded for this model; back off", **common)
    return by_status(status, "OpenAI", message, code, **common)


def _error_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error: Mapping[str, Any] = parsed["error"]
        return error
    return None
