"""An aspect ratio and tier (from a google-genai client) become a size OpenAI can make."""

from __future__ import annotations

import pytest

from imagegate.core.deployment import Deployment
from imagegate.core.geometry import parse_size
from imagegate.core.request import ImageRequest
from imagegate.providers.openai import capabilities_for, size_param
from imagegate.router.plan import find_gap


def deployment(model: str) -> Deployment:
    return Deployment("d", "oa", "openai", model, "https://example.test/v1")


def request(**fields: object) -> ImageRequest:
    return ImageRequest(prompt="x", model="r", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ratio", "size"),
    [(None, "auto"), ("1:1", "1024x1024"), ("3:2", "1536x1024"), ("2:3", "1024x1536")],
)
def test_fixed_size_models_map_their_three_ratios(ratio: str | None, size: str) -> None:
    assert size_param(request(aspect_ratio=ratio), deployment("gpt-image-1.5")) == size


def test_fixed_size_models_refuse_other_ratios_and_tiers_before_any_call() -> None:
    caps = capabilities_for("gpt-image-1.5")
    gap = find_gap(caps, request(aspect_ratio="16:9"))
    assert gap is not None and gap.param == "aspect_ratio" and "3:2" in gap.reason
    gap = find_gap(caps, request(aspect_ratio="1:1", resolution="2K"))
    assert gap is not None and gap.param == "resolution"


@pytest.mark.parametrize(
    ("ratio", "tier"),
    [("16:9", "1K"), ("16:9", "2K"), ("9:16", "4K"), ("21:9", "2K"), ("1:1", "4K")],
)
def test_arbitrary_size_models_get_a_size_of_the_ratio_within_their_rules(
    ratio: str, tier: str
) -> None:
    model = deployment("gpt-image-2")
    size = parse_size(size_param(request(aspect_ratio=ratio, resolution=tier), model))
    assert size is not None
    width, height = (int(part) for part in ratio.split(":"))
    assert abs(size.aspect / (width / height) - 1) < 0.03
    assert size.width % 16 == 0 and size.height % 16 == 0 and max(size.width, size.height) <= 3840
    assert find_gap(capabilities_for("gpt-image-2"), request(size=size)) is None
