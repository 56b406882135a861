"""Prices: the most specific table entry wins; upstream usage wins over the table; failures the
upstream does not bill cost nothing."""

from __future__ import annotations

import pytest

from imagegate.core.deployment import Price
from imagegate.core.errors import FailureKind
from imagegate.core.geometry import Size
from imagegate.core.request import ImageRequest, InputImage, Quality
from imagegate.core.result import Attempt, Usage
from imagegate.ledger.pricing import (
    attempt_cost,
    estimate,
    format_usd,
    per_image_usd,
    table_cost,
    usage_cost,
)

GPT = Price(
    per_image=0.04,
    per_image_by_tier={"1024x1024/high": 0.167, "1536x1024/high": 0.25, "2K": 0.1},
    per_image_by_quality={"low": 0.011},
)


def _request(**fields: object) -> ImageRequest:
    return ImageRequest(prompt="p", model="m", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "usd"),
    [
        ({"size": Size(1536, 1024), "quality": Quality.HIGH}, 0.25),
        ({"size": Size(1024, 1024), "quality": Quality.HIGH}, 0.167),
        ({"size": Size(2048, 2048), "quality": Quality.MEDIUM}, 0.1),  # by tier
        ({"resolution": "2K"}, 0.1),
        ({"quality": Quality.LOW}, 0.011),
        ({}, 0.04),
    ],
)
def test_the_most_specific_price_wins(fields: dict[str, object], usd: float) -> None:
    assert per_image_usd(GPT, _request(**fields)) == usd


def test_input_images_and_batch_discount() -> None:
    price = Price(per_image=0.04, per_input_image=0.01, batch_discount=0.5)
    request = _request(n=2, input_images=(InputImage(b"x", "image/png"),) * 3)
    assert table_cost(price, request, 2) == 110_000  # 2 × 0.04 + 3 × 0.01
    assert table_cost(price, request, 2, batch=True) == 55_000


def test_token_priced_models_split_text_and_image_tokens() -> None:
    price = Price(
        per_million_input_text_tokens=2.0,
        per_million_input_image_tokens=2.5,
        per_million_output_image_tokens=30.0,
    )
    usage = Usage(input_text_tokens=1000, input_image_tokens=2000, output_image_tokens=1290)
    assert usage_cost(price, usage) == 2_000 + 5_000 + 38_700
    # no per-image price: the typical token count of an image stands in until usage arrives
    assert per_image_usd(price, _request()) == pytest.approx(0.0387)


def test_a_reported_cost_wins_and_usage_without_image_tokens_does_not_price() -> None:
    assert usage_cost(Price(per_image=0.04), Usage(cost_usd=0.03)) == 30_000
    assert usage_cost(Price(per_image=0.04), Usage(input_text_tokens=12)) is None


@pytest.mark.parametrize(
    ("kind", "images", "called", "micros"),
    [
        (None, 2, True, 80_000),
        (FailureKind.UNAVAILABLE, 0, True, 0),
        (FailureKind.RATE_LIMITED, 0, False, 0),  # refused by the pacer: no call
        (FailureKind.SAFETY, 0, True, 0),
        (FailureKind.MISMATCH, 0, True, 80_000),  # made and billed, though not delivered
        (None, 0, True, 0),  # cancelled: a hedge won
    ],
)
def test_what_each_attempt_costs(
    kind: FailureKind | None, images: int, called: bool, micros: int
) -> None:
    attempt = Attempt(
        "d", "openai", "gpt", kind, None, 0.1, images=images, upstream_called=called, requested=2
    )
    assert attempt_cost(Price(per_image=0.04), _request(n=2), attempt) == micros


def test_estimate_takes_the_dearest_candidate() -> None:
    request = _request(n=3)
    assert estimate([(Price(per_image=0.01), 10), (Price(per_image=0.04), 10)], request) == 120_000
    assert estimate([], request) == 0


def test_estimate_counts_the_input_images_of_every_fanned_out_call() -> None:
    # Gemini makes one image per call: n=3 with 2 input images is 3 calls, each sending both.
    request = _request(n=3, input_images=(InputImage(b"x", "image/png"),) * 2)
    price = Price(per_image=0.04, per_input_image=0.01)
    one_call_each = estimate([(price, 1)], request)
    assert one_call_each == 3 * 40_000 + 3 * 2 * 10_000
    # A deployment that makes all three in one call sends the inputs once.
    assert estimate([(price, 4)], request) == 3 * 40_000 + 2 * 10_000
    # And it is what the attempts are booked at, call by call.
    booked = sum(
        attempt_cost(price, request, Attempt("d", "gemini", "g", None, None, 1.0, images=1))
        for _ in range(3)
    )
    assert booked == one_call_each


@pytest.mark.parametrize(
    ("micros", "text"), [(0, "0"), (39_000, "0.039"), (1_250_000, "1.25"), (-5, "-0.000005")]
)
def test_format_usd_is_exact(micros: int, text: str) -> None:
    assert format_usd(micros) == text
