"""Gemini's failure answers, one per scenario, in the shapes of reference §4 and §7.

``failure`` gives an :class:`RpcError` (a google.rpc.Status JSON body), a ``ProxyAnswer``
(what a proxy in front of the API sends), or a 200 document for outcomes the API reports as
successful calls with no image. Scenarios that need neither (ok, slow, truncated...) give None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes import proxy_pages
from tests.fakes.gemini_wire import (
    TYPE_PREFIX,
    GeminiModel,
    GenerateRequest,
    RpcError,
    api_key_invalid,
    candidate,
    prompt_usage,
    response,
    usage_metadata,
)
from tests.fakes.proxy_pages import ProxyAnswer

QUOTA_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
# Paid-tier per-minute request quota. The reference only shows the free-tier names; this mirrors
# them without the -FreeTier suffix (plausible, unverified).
PAID_RPM_QUOTA_ID = "GenerateRequestsPerMinutePerProjectPerModel"
PAID_REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_paid_tier_requests"
FREE_REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
FREE_TOKENS_METRIC = (
    "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
)

IMAGE_SAFETY_MESSAGE = (
    "Unable to show the generated image. The generated image was filtered out because it violated "
    "Google's Generative AI Prohibited Use policy. You will not be charged for blocked images. "
    "Try rephrasing the prompt. If you think this was a mistake, send feedback."
)
TEXT_ONLY_MESSAGE = (
    "I can't generate that image, but here is a description of what it could look like: a quiet "
    "harbour at dawn, fishing boats resting on still water under a pale pink sky."
)


@dataclass(frozen=True, slots=True)
class FailureContext:
    model: GeminiModel
    request: GenerateRequest
    version: str
    streaming: bool
    retry_delay: float
    host: str
    response_id: str
    quota_value: str = "10"  # the per-minute limit a rate_limited answer names


# What rate_limited says its limit is when no per-key quota (--key-ipm) produced it.
RATE_LIMIT_QUOTA_VALUE = "10"


Failure = RpcError | ProxyAnswer | dict[str, Any]


def duration(seconds: float) -> str:
    """A protobuf Duration string as RetryInfo carries it: "2s", "25.304s"."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def failure(scenario: str, ctx: FailureContext) -> Failure | None:
    builder = _BUILDERS.get(scenario)
    return builder(ctx) if builder else None


def _quota_body(ctx: FailureContext, violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"@type": TYPE_PREFIX + "QuotaFailure", "violations": violations},
        {
            "@type": TYPE_PREFIX + "Help",
            "links": [{"description": "Learn more about Gemini API quotas", "url": QUOTA_DOCS}],
        },
        {"@type": TYPE_PREFIX + "RetryInfo", "retryDelay": duration(ctx.retry_delay)},
    ]


def _violation(ctx: FailureContext, metric: str, quota_id: str, value: str) -> dict[str, Any]:
    return {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": ctx.model.name},
        "quotaValue": value,
    }


def _quota_message(ctx: FailureContext, violations: list[dict[str, Any]]) -> str:
    bullets = "".join(
        f"\n* Quota exceeded for metric: {v['quotaMetric']}, limit: {v['quotaValue']}, "
        f"model: {ctx.model.name}"
        for v in violations
    )
    return (
        "You exceeded your current quota, please check your plan and billing details. For more "
        f"information on this error, head to: {QUOTA_DOCS}. To monitor your current usage, head "
        f"to: https://ai.dev/rate-limit. {bullets}\nPlease retry in {duration(ctx.retry_delay)}."
    )


def _per_minute_limit(ctx: FailureContext, limit: str) -> RpcError:
    violations = [_violation(ctx, PAID_REQUESTS_METRIC, PAID_RPM_QUOTA_ID, limit)]
    return RpcError(
        429, "RESOURCE_EXHAUSTED", _quota_message(ctx, violations), _quota_body(ctx, violations)
    )


def _rate_limited(ctx: FailureContext) -> RpcError:
    return _per_minute_limit(ctx, ctx.quota_value)


def _quota_stuck(ctx: FailureContext) -> RpcError:
    # Same shape as rate_limited: a gateway can only tell it apart by how long it keeps coming.
    return _per_minute_limit(ctx, "500")


def _quota_zero(ctx: FailureContext) -> RpcError:
    # A project with no free tier for the model gets every free-tier quota at limit 0; the
    # RetryInfo is still there, so the limit (not the delay) is what marks it hopeless.
    violations = [
        _violation(
            ctx, FREE_TOKENS_METRIC, "GenerateContentInputTokensPerModelPerMinute-FreeTier", "0"
        ),
        _violation(
            ctx, FREE_REQUESTS_METRIC, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "0"
        ),
        _violation(
            ctx, FREE_REQUESTS_METRIC, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "0"
        ),
    ]
    return RpcError(
        429, "RESOURCE_EXHAUSTED", _quota_message(ctx, violations), _quota_body(ctx, violations)
    )


def _capacity_429(ctx: FailureContext) -> RpcError:
    # Shared capacity on preview models runs out without any QuotaFailure detail.
    return RpcError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")


def _permission_denied(ctx: FailureContext) -> RpcError:
    method = "StreamGenerateContent" if ctx.streaming else "GenerateContent"
    method_name = f"google.ai.generativelanguage.{ctx.version}.GenerativeService.{method}"
    message = (
        f"Requests to this API generativelanguage.googleapis.com method {method_name} are blocked."
    )
    return RpcError(
        403,
        "PERMISSION_DENIED",
        message,
        [
            {
                "@type": TYPE_PREFIX + "ErrorInfo",
                "reason": "API_KEY_SERVICE_BLOCKED",
                "domain": "googleapis.com",
                "metadata": {
                    "consumer": "projects/123456789012",
                    "service": "generativelanguage.googleapis.com",
                    "methodName": method_name,
                    "apiName": "generativelanguage.googleapis.com",
                },
            },
            {"@type": TYPE_PREFIX + "LocalizedMessage", "locale": "en-US", "message": message},
        ],
    )


def _prepaid_exhausted(ctx: FailureContext) -> RpcError:
    # 402 is in a localized copy of Google's error table; the wording here is ours (unverified).
    return RpcError(
        402,
        "RESOURCE_EXHAUSTED",
        "Your prepaid credit balance is exhausted. Add credits to your billing account to "
        "continue using the Gemini API.",
    )


def _image_safety(ctx: FailureContext) -> dict[str, Any]:
    blocked = candidate(None, "IMAGE_SAFETY")
    blocked["finishMessage"] = IMAGE_SAFETY_MESSAGE
    usage = usage_metadata(ctx.model, ctx.request, image=False, text_tokens=0)
    return response([blocked], usage, ctx.model, ctx.response_id)


def _prompt_blocked(ctx: FailureContext) -> dict[str, Any]:
    # A blocked prompt is an HTTP 200 with promptFeedback and no candidates at all.
    return response(
        None,
        prompt_usage(ctx.request),
        ctx.model,
        ctx.response_id,
        promptFeedback={"blockReason": "PROHIBITED_CONTENT"},
    )


def _text_only(ctx: FailureContext) -> dict[str, Any]:
    parts = [{"text": TEXT_ONLY_MESSAGE}]
    usage = usage_metadata(ctx.model, ctx.request, image=False, text_tokens=38)
    return response([candidate(parts, "STOP")], usage, ctx.model, ctx.response_id)


def _no_image(ctx: FailureContext) -> dict[str, Any]:
    usage = usage_metadata(ctx.model, ctx.request, image=False, text_tokens=0)
    return response([candidate(None, "NO_IMAGE")], usage, ctx.model, ctx.response_id)


def _empty_candidates(ctx: FailureContext) -> dict[str, Any]:
    # Seen from relays and on odd upstream hiccups: a STOP with nothing in it, not even usage.
    empty = {"content": {"role": "model", "parts": []}, "finishReason": "STOP", "index": 0}
    return {"candidates": [empty]}


_BUILDERS: dict[str, Callable[[FailureContext], Failure]] = {
    "rate_limited": _rate_limited,
    "quota_zero": _quota_zero,
    "quota_stuck": _quota_stuck,
    "capacity": lambda ctx: RpcError(
        503, "UNAVAILABLE", "The model is overloaded. Please try again later."
    ),
    "capacity_429": _capacity_429,
    # The wording Gemini's 503 switched to in 2025 (from memory of real answers; unverified).
    "high_demand": lambda ctx: RpcError(
        503,
        "UNAVAILABLE",
        "This model is currently experiencing high demand. Spikes in demand are usually "
        "temporary. Please try again later.",
    ),
    "unavailable": lambda ctx: RpcError(
        503, "UNAVAILABLE", "The service is currently unavailable."
    ),
    "internal": lambda ctx: RpcError(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "deadline": lambda ctx: RpcError(
        504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."
    ),
    "billing": lambda ctx: RpcError(
        400,
        "FAILED_PRECONDITION",
        "User location is not supported for the API use without a billing account linked.",
    ),
    "permission_denied": _permission_denied,
    "bad_key": lambda ctx: api_key_invalid(),
    "prepaid_exhausted": _prepaid_exhausted,
    "bad_gateway": lambda ctx: proxy_pages.nginx_502(),
    "get_channel_failed": lambda ctx: proxy_pages.new_api_channel_failed(),
    "cf_524": lambda ctx: proxy_pages.cloudflare_524(ctx.host),
    "image_safety": _image_safety,
    "prompt_blocked": _prompt_blocked,
    "text_only": _text_only,
    "no_image": _no_image,
    "empty_candidates": _empty_candidates,
}

# Scenarios that answer with a normal image body, possibly altered or broken in transit.
IMAGE_SCENARIOS = frozenset({"ok", "slow", "jpeg_output", "wrong_size", "truncated"})
SCENARIOS = frozenset({*_BUILDERS, *IMAGE_SCENARIOS, "disconnect"})
# Rejected at admission, before any generation, so they answer without the configured hold.
INSTANT_SCENARIOS = frozenset({
    "rate_limited", "quota_zero", "quota_stuck", "capacity", "capacity_429", "high_demand",
    "billing",
    "permission_denied", "bad_key", "prepaid_exhausted", "prompt_blocked",
})  # fmt: skip
