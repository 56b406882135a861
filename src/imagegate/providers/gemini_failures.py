"""Classify Gemini Developer API failures (and 200s without an image) into FailureKinds.

Google reports errors as google.rpc.Status JSON: {"error": {code, message, status, details[]}},
where details carry ErrorInfo (reason), QuotaFailure (quota id, metric, value), RetryInfo
(retryDelay "33s") and BadRequest (fieldViolations). Proxies in front of it add their own
shapes: HTML pages (nginx 502, Cloudflare 524) and New-API's get_channel_failed error.
The diagnostic order users need: key and billing, then endpoint and model name, then
parameters, then quota.
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
_SAFETY_FINISH = {
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_RECITATION",
}


def classify_failure(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """The UpstreamError for a non-2xx answer from Gemini (or a proxy in front of it)."""
    error = _error_object(body)
    if error is None:
        return unstructured_failure(status, body, "Gemini", "a Google error")
    return _classify_status(status, headers, error)


def _classify_status(
    status: int, headers: Mapping[str, str], error: Mapping[str, Any]
) -> UpstreamError:
    rpc_status = str(error.get("status") or "")
    message = str(error.get("message") or "")
    code = str(error.get("code") or "")
    details = error.get("details") or []
    reasons = {str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")}
    common: dict[str, Any] = {
        "status": status,
        "provider_code": rpc_status or code,
        "provider_message": message,
    }
    if "get_channel_failed" in (code, message):
        return UpstreamError(
            K.UNAVAILABLE,
            "the relay in front of Gemini has no working channel for this model"
            " (get_channel_failed); retry later or use another provider",
            **common,
        )
    if reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED"} or "API key not valid" in message:
        return UpstreamError(
            K.AUTH,
            "the Gemini API key is not valid; check the key in the environment variable"
            " named in the provider's keys",
            **common,
        )
    if status in (401, 403) or rpc_status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return UpstreamError(
            K.AUTH,
            "the Gemini API key is not allowed to use this model or API"
            f" ({', '.join(sorted(reasons)) or rpc_status}); enable the Generative Language API"
            " for the key's project and check its API restrictions",
            **common,
        )
    if status == 429:
        # Before the billing check: quota messages say "check your plan and billing details".
        return _classify_quota(headers, message, details, common)
    if (
        rpc_status == "FAILED_PRECONDITION"
        or status == 402
        or (status == 400 and "billing" in message.lower())
    ):
        return UpstreamError(
            K.BILLING,
            "Gemini refuses this key for billing reasons: enable billing on the key's Google"
            " Cloud project (the free tier is not available for image models in every region)",
            **common,
        )
    if status == 404 or rpc_status == "NOT_FOUND":
        return UpstreamError(
            K.NOT_FOUND,
            f"Gemini does not know this model or endpoint ({message[:160]}); check the"
            " deployment's model name and the base_url's API version (v1beta or v1)",
            **common,
        )
    if status == 400 or rpc_status == "INVALID_ARGUMENT":
        return UpstreamError(
            K.BAD_REQUEST,
            f"Gemini rejected the request: {message}",
            param=_violated_field(details),
            **common,
        )
    if status == 503 and ("overloaded" in message.lower() or "high demand" in message.lower()):
        return UpstreamError(
            K.CAPACITY,
            'Gemini\'s shared capacity for this model is exhausted ("model overloaded");'
            " back off, or prefer a stable model over a preview one",
            **common,
        )
    detail = f": {rpc_status or message[:80]}"
    return by_status(status, "Gemini", message, common["provider_code"], detail=detail, **common)


def _classify_quota(
    headers: Mapping[str, str], message: str, details: list[Any], common: dict[str, Any]
) -> UpstreamError:
    violations = [
        violation
        for detail in details
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("QuotaFailure")
        for violation in detail.get("violations") or []
        if isinstance(violation, dict)
    ]
    retry = _retry_delay(details)
    if retry is None:
        retry = retry_after_seconds(headers)
    zero = any(str(v.get("quotaValue")) == "0" for v in violations) or "limit: 0" in message
    if zero:
        return UpstreamError(
            K.QUOTA_ZERO,
            "this Gemini key has an image quota of zero (free tier): enable billing on its"
            " Google Cloud project, or use a key from a billed project; retrying cannot help",
            **common,
        )
    if violations:
        quota = violations[0]
        which = quota.get("quotaId") or quota.get("quotaMetric") or "a per-minute quota"
        limit = quota.get("quotaValue")
        return UpstreamError(
            K.RATE_LIMITED,
            f"Gemini rate limit reached ({which}{f', limit {limit}' if limit else ''});"
            " wait for the window to pass, or spread load over more keys",
            retry_after=retry,
            **common,
        )
    # RESOURCE_EXHAUSTED without any quota detail: the shared pool of a preview model is full.
    return UpstreamError(
        K.CAPACITY,
        "Gemini has no capacity for this model right now (RESOURCE_EXHAUSTED without a quota"
        " violation: shared capacity on a preview model); back off or prefer a stable model",
        retry_after=retry,
        **common,
    )


def classify_no_image(skeleton: Mapping[str, Any], sent_modalities: list[str]) -> UpstreamError:
    """The UpstreamError for an HTTP 200 that carries no image."""
    feedback = skeleton.get("promptFeedback") or {}
    if feedback.get("blockReason"):
        return UpstreamError(
            K.SAFETY,
            f"Gemini blocked the prompt ({feedback['blockReason']}); rephrase the prompt",
            status=200,
            provider_code=str(feedback["blockReason"]),
        )
    candidates = skeleton.get("candidates") or []
    finish = str(candidates[0].get("finishReason") or "") if candidates else ""
    if finish in _SAFETY_FINISH:
        return UpstreamError(
            K.SAFETY,
            f"Gemini withheld the image ({finish}); safety settings do not lift image blocks,"
            " so rephrase the prompt or use another model",
            status=200,
            provider_code=finish,
            provider_message=str(candidates[0].get("finishMessage") or ""),
        )
    if sent_modalities and "IMAGE" not in [m.upper() for m in sent_modalities]:
        cause = "responseModalities did not include IMAGE"
    else:
        cause = f"finishReason {finish or 'missing'}, the model answered with text only"
    return UpstreamError(
        K.EMPTY,
        f"Gemini answered 200 without an image ({cause})",
        status=200,
        provider_code=finish or None,
    )


def _error_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, list) and len(parsed) == 1:  # the streamed-array form wraps errors
        parsed = parsed[0]
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error: Mapping[str, Any] = parsed["error"]
        return error
    return None


def _retry_delay(details: list[Any]) -> float | None:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = str(detail.get("retryDelay") or "")
            try:
                return float(delay.rstrip("s"))
            except ValueError:
                return None
    return None


def _violated_field(details: list[Any]) -> str | None:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("BadRequest"):
            for violation in detail.get("fieldViolations") or []:
                if isinstance(violation, dict) and violation.get("field"):
                    return str(violation["field"])
    return None
