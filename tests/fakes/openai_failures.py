"""OpenAI's failure answers, one per scenario (reference openai-images.md §8, §9).

``failure`` gives an :class:`ApiError` plus extra headers, or a ``ProxyAnswer`` for what a proxy
in front of the API sends. Scenarios answered with images (ok, slow, wrong_size, empty_data,
truncated) and ``disconnect`` give None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tests.fakes import proxy_pages
from tests.fakes.openai_wire import ApiError
from tests.fakes.proxy_pages import ProxyAnswer


@dataclass(frozen=True, slots=True)
class FailureContext:
    model: str
    request_id: str
    retry_after: float
    host: str
    limit: int = 5  # images per minute, as rate_limited reports them
    used: int = 5
    requested: int = 1


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    error: ApiError
    headers: dict[str, str]


Failure = ErrorAnswer | ProxyAnswer


def failure(scenario: str, ctx: FailureContext) -> Failure | None:
    builder = _BUILDERS.get(scenario)
    return builder(ctx) if builder else None


def _rate_limited(ctx: FailureContext) -> ErrorAnswer:
    seconds = f"{ctx.retry_after:g}s"
    error = ApiError(
        429,
        f"Rate limit reached for {ctx.model} in organization org-fake on images per minute "
        f"(IPM): Limit {ctx.limit}, Used {ctx.used}, Requested {ctx.requested}. Please try again"
        f" in {seconds}. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        error_type="requests",
        code="rate_limit_exceeded",
    )
    # The SDK reads retry-after-ms first, then retry-after (whole seconds).
    headers = {
        "retry-after": str(math.ceil(ctx.retry_after)),
        "retry-after-ms": str(round(ctx.retry_after * 1000)),
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": seconds,
    }
    return ErrorAnswer(error, headers)


def _insufficient_quota(ctx: FailureContext) -> ErrorAnswer:
    # Same 429 status as a rate limit, but retrying cannot help: only the type/code tell.
    error = ApiError(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        error_type="insufficient_quota",
        code="insufficient_quota",
    )
    return ErrorAnswer(error, {})


def _moderation_blocked(ctx: FailureContext) -> ErrorAnswer:
    # moderation_details and the safety_violations suffix are from third-party captures
    # (unverified); they sit inside the error object there.
    error = ApiError(
        400,
        "Your request was rejected by the safety system. If you believe this is an error, contact "
        f"us at help.openai.com and include the request ID {ctx.request_id}. "
        "safety_violations=[sexual].",
        error_type="image_generation_user_error",
        code="moderation_blocked",
        extra={"moderation_details": {"moderation_stage": "input", "categories": ["sexual"]}},
    )
    return ErrorAnswer(error, {})


def _content_policy_violation(ctx: FailureContext) -> ErrorAnswer:
    error = ApiError(
        400,
        "Your request was rejected as a result of our safety system. Your prompt may contain text "
        "that is not allowed by our safety system.",
        code="content_policy_violation",
    )
    return ErrorAnswer(error, {})


def _forbidden(ctx: FailureContext) -> ErrorAnswer:
    # Wording from public reports of gpt-image models before organization verification.
    error = ApiError(
        403,
        f"Your organization must be verified to use the model `{ctx.model}`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify "
        "Organization. If you just verified, it can take up to 15 minutes for access to "
        "propagate.",
    )
    return ErrorAnswer(error, {})


def _server_error(ctx: FailureContext) -> ErrorAnswer:
    error = ApiError(
        500,
        "The server had an error while processing your request. Sorry about that!",
        error_type="server_error",
    )
    return ErrorAnswer(error, {})


def _unavailable(ctx: FailureContext) -> ErrorAnswer:
    error = ApiError(503, "The server is overloaded or not ready yet.", error_type="server_error")
    return ErrorAnswer(error, {})


_BUILDERS: dict[str, Callable[[FailureContext], Failure]] = {
    "rate_limited": _rate_limited,
    "insufficient_quota": _insufficient_quota,
    "moderation_blocked": _moderation_blocked,
    "content_policy_violation": _content_policy_violation,
    "forbidden": _forbidden,
    "server_error": _server_error,
    "unavailable": _unavailable,
    "bad_gateway": lambda ctx: proxy_pages.nginx_502(),
    "get_channel_failed": lambda ctx: proxy_pages.new_api_channel_failed(),
    "cf_524": lambda ctx: proxy_pages.cloudflare_524(ctx.host),
}

IMAGE_SCENARIOS = frozenset({"ok", "slow", "wrong_size", "empty_data", "truncated"})
SCENARIOS = frozenset({*_BUILDERS, *IMAGE_SCENARIOS, "disconnect"})
# Refused before any generation, so they answer without the configured hold.
INSTANT_SCENARIOS = frozenset(
    {"rate_limited", "insufficient_quota", "forbidden", "moderation_blocked",
     "content_policy_violation"}
)  # fmt: skip
