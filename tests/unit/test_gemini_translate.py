"""OpenAI-style geometry becomes Gemini's aspectRatio + imageSize; modalities always ask for IMAGE."""

from __future__ import annotations

import orjson
import pytest

from imagegate.core.deployment import Deployment
from imagegate.core.geometry import Size
from imagegate.core.request import ImageRequest, Quality
from imagegate.core.result import ImageResult
from imagegate.providers.gemini import build_request, parse_skeleton


def deployment(model: str) -> Deployment:
    return Deployment("d", "g", "gemini", model, "https://example.test/v1beta")


def body_for(model: str, **fields: object) -> dict[str, object]:
    url, body = build_request(ImageRequest(prompt="a fox", model="r", **fields), deployment(model))  # type: ignore[arg-type]
    assert url == f"https://example.test/v1beta/models/{model}:generateContent"
    parsed: dict[str, object] = orjson.loads(body)
    return parsed


@pytest.mark.parametrize(
    ("size", "ratio", "tier"),
    [
        ((1024, 1024), "1:1", "1K"),
        ((1536, 1024), "3:2", "1K"),
        ((1024, 1536), "2:3", "1K"),
        ((1792, 1024), "16:9", "1K"),
        ((2048, 2048), "2K", "2K"),
        ((3840, 2160), "16:9", "4K"),
    ],
)
def test_pixel_size_maps_to_nearest_ratio_and_tier(
    size: tuple[int, int], ratio: str, tier: str
) -> None:
    body = body_for("gemini-3-pro-image-preview", size=Size(*size))
    config = body["generationConfig"]
    assert isinstance(config, dict)
    if ratio != "2K":
        assert config["imageConfig"]["aspectRatio"] == ratio
    assert config["imageConfig"]["imageSize"] == tier
    assert config["responseModalities"] == ["TEXT", "IMAGE"]


def test_flash_25_gets_no_image_size_because_it_ignores_it() -> None:
    config = body_for("gemini-2.5-flash-image", size=Size(1536, 1024))["generationConfig"]
    assert isinstance(config, dict)
    assert config["imageConfig"] == {"aspectRatio": "3:2"}


def test_quality_high_without_size_asks_for_2k_and_512_exists_on_31_flash() -> None:
    config = body_for("gemini-3-pro-image", quality=Quality.HIGH)["generationConfig"]
    assert isinstance(config, dict) and config["imageConfig"] == {"imageSize": "2K"}
    config = body_for("gemini-3.1-flash-image-preview", size=Size(512, 512))["generationConfig"]
    assert isinstance(config, dict) and config["imageConfig"]["imageSize"] == "512"


def test_usage_is_split_by_modality() -> None:
    result = ImageResult(images=[])
    parse_skeleton(
        {
            "candidates": [
                {"content": {"parts": [{"text": "Here you go"}, {"text": "hm", "thought": True}]}}
            ],
            "usageMetadata": {
                "promptTokenCount": 270,
                "promptTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 12},
                    {"modality": "IMAGE", "tokenCount": 258},
                ],
                "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
            },
        },
        result,
    )
    assert result.text == "Here you go"
    usage = result.usage
    assert (usage.input_text_tokens, usage.input_image_tokens, usage.output_image_tokens) == (
        12,
        258,
        1290,
    )
