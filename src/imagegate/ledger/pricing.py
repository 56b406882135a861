"""The one place that turns a deployment's `Price` and an upstream's usage into a cost.

Costs are whole micro-dollars (µUSD, 1e-6 USD) so that sums are exact on every database.

How an attempt is priced:
- the table: images × the per-image price at the request's geometry and quality (most specific
  of `per_image_by_tier["<size>/<quality>"]`, `["<tier>/<quality>"]`, `["<size>"]`,
  `["<tier>"]`, `per_image_by_quality`, `per_image`), plus `per_input_image` × input images;
  a deployment priced only per token gets a typical token count per image (below);
- the upstream's own usage wins when present: a reported `cost_usd` (BFL), else its token counts
  × the token prices (OpenAI `usage`, Gemini `usageMetadata` by modality);
- what the upstream did not bill costs nothing: a refusal before any call, an error answer,
  a call cancelled because a hedge won. An image of the wrong geometry (`mismatch`) was made
  and billed, so it is booked.

A model catalog with shipped list prices can later build `Price` objects; nothing here changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from imagegate.core.deployment import Price, calls_for
from imagegate.core.errors import FailureKind
from imagegate.core.geometry import TIERS, tier_for
from imagegate.core.request import ImageRequest
from imagegate.core.result import Attempt, Usage

MICROS_PER_USD = 1_000_000
# Output tokens a token-billed image model spends per image, by tier; Gemini bills 1290 tokens
# for a 2.5 Flash image and 1120 (1K/2K) or 2000 (4K) for 3 Pro. Only used where no per-image
# price is configured and no usage was reported (estimates and the pre-usage booking).
TYPICAL_IMAGE_TOKENS = {"512": 1290, "1K": 1290, "2K": 1290, "4K": 2000}


def to_micros(usd: float) -> int:
    return round(usd * MICROS_PER_USD)


def format_usd(micros: int) -> str:
    """`39000` → `"0.039"`: exact, without float noise or trailing zeros."""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return f"-{text}" if micros < 0 else text


def tier_of(request: ImageRequest) -> str | None:
    if request.resolution is not None:
        return request.resolution
    if request.size is not None:
        return tier_for(request.size, TIERS)
    return None


def per_image_usd(price: Price, request: ImageRequest) -> float:
    """The list price of one output image of `request`, without input images."""
    quality = str(request.quality)
    size = str(request.size) if request.size is not None else None
    tier = tier_of(request) or "1K"
    table = price.per_image_by_tier
    for key in (f"{size}/{quality}", f"{tier}/{quality}", size, tier):
        if key is not None and key in table:
            return table[key]
    if quality in price.per_image_by_quality:
        return price.per_image_by_quality[quality]
    if price.per_image:
        return price.per_image
    tokens = TYPICAL_IMAGE_TOKENS.get(tier, TYPICAL_IMAGE_TOKENS["1K"])
    return tokens * price.per_million_output_image_tokens / MICROS_PER_USD


def table_cost(price: Price, request: ImageRequest, images: int, *, batch: bool = False) -> int:
    """µUSD for `images` outputs of `request` by the price table."""
    if images <= 0:
        return 0
    usd = images * per_image_usd(price, request)
    usd += price.per_input_image * len(request.input_images)
    if batch:
        usd *= 1 - price.batch_discount
    return to_micros(usd)


def usage_cost(price: Price, usage: Usage, *, batch: bool = False) -> int | None:
    """µUSD from the upstream's own usage signals; None when they cannot price this call."""
    if usage.cost_usd is not None:
        return to_micros(usage.cost_usd)
    text_in = price.per_million_input_text_tokens
    image_in = price.per_million_input_image_tokens
    rates = (
        (usage.input_text_tokens, price.per_million_input_tokens if text_in is None else text_in),
        (
            usage.input_image_tokens,
            price.per_million_input_tokens if image_in is None else image_in,
        ),
        (usage.output_text_tokens, price.per_million_output_text_tokens),
        (usage.output_image_tokens, price.per_million_output_image_tokens),
    )
    # Usage prices the call only where the provider bills the images themselves by token.
    if not usage.output_image_tokens or not price.per_million_output_image_tokens:
        return None
    usd = sum(tokens * rate for tokens, rate in rates) / MICROS_PER_USD
    if batch:
        usd *= 1 - price.batch_discount
    return to_micros(usd)


def billed_images(attempt: Attempt) -> int:
    """How many images the upstream billed for this attempt (see the module docstring)."""
    if not attempt.upstream_called:
        return 0
    if attempt.kind is None:
        return attempt.images
    if attempt.kind is FailureKind.MISMATCH:
        return max(attempt.requested, 1)
    return 0


def attempt_cost(price: Price, request: ImageRequest, attempt: Attempt) -> int:
    return table_cost(price, request, billed_images(attempt))


def estimate(candidates: Iterable[tuple[Price, int]], request: ImageRequest) -> int:
    """The most `request` can cost at the dearest candidate (µUSD); a candidate is its price and
    the images it makes per call. A deployment that makes fewer than n per call is called
    several times, and every call carries (and bills) the input images again.

    Reserved against budgets at admission, so concurrent requests cannot overshoot one.
    """
    return max(
        (
            sum(table_cost(price, request, count) for count in calls_for(request.n, max_n))
            for price, max_n in candidates
        ),
        default=0,
    )
