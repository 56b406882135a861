"""A Gemini generateContent body becomes one ImageRequest that every provider can serve."""

from __future__ import annotations

import base64
import io
from typing import Any

import orjson
import pytest
from PIL import Image

from imagegate.core.deployment import Deployment
from imagegate.core.errors import InvalidRequest
from imagegate.providers.gemini import build_request
from imagegate.surfaces.gemini.conversation import STAND_IN_SIGNATURE
from imagegate.surfaces.gemini.translate import (
    Translation,
    field_path,
    parse_request,
    to_image_request,
)


def png(colour: tuple[int, int, int] = (200, 10, 10), size: tuple[int, int] = (8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


RED, BLUE, GREEN = png((200, 0, 0)), png((0, 0, 200)), png((0, 200, 0), (4, 4))


def b64(data: bytes, *, url_safe: bool = False) -> str:
    if url_safe:  # what google-genai sends: URL-safe alphabet
        return base64.urlsafe_b64encode(data).decode()
    return base64.b64encode(data).decode()


def inline(data: bytes, mime: str = "image/png", **extra: Any) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": b64(data)}, **extra}


def translate(body: dict[str, Any], max_prompt_chars: int = 1000) -> Translation:
    return to_image_request(
        parse_request(body),
        route="pro",
        request_id="req_1",
        client_id=None,
        deadline=None,
        max_prompt_chars=max_prompt_chars,
    )


def refused(body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        translate(body) if isinstance(body, dict) else parse_request(body)
    return caught.value


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "parts": [p if isinstance(p, dict) else {"text": p} for p in parts]}


# --- spellings ------------------------------------------------------------------------------------


def test_camel_case_and_snake_case_mean_the_same_at_every_level() -> None:
    camel = {
        "contents": [{"role": "user", "parts": [{"text": "a fox"}, inline(RED)]}],
        "generationConfig": {
            "candidateCount": 2,
            "seed": 7,
            "responseModalities": ["IMAGE"],
            "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
            "thinkingConfig": {"includeThoughts": True},
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    snake = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "a fox"},
                    {"inline_data": {"mime_type": "image/png", "data": b64(RED, url_safe=True)}},
                ],
            }
        ],
        "generation_config": {
            "candidate_count": 2,
            "seed": 7,
            "response_modalities": ["IMAGE"],
            "image_config": {"aspect_ratio": "16:9", "image_size": "2K"},
            "thinking_config": {"includeThoughts": True},
        },
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    a, b = translate(camel).request, translate(snake).request
    assert (a.n, a.seed, a.aspect_ratio, a.resolution) == (2, 7, "16:9", "2K")
    assert (b.n, b.seed, b.aspect_ratio, b.resolution) == (2, 7, "16:9", "2K")
    assert a.input_images == b.input_images and a.input_images[0].data == RED
    for request in (a, b):
        gemini = request.passthrough["gemini"]
        # camelCase where the provider writes too, so no field reaches Gemini twice
        assert set(gemini) == {"contents", "generationConfig", "safetySettings"}
        assert gemini["generationConfig"] == {
            "responseModalities": ["IMAGE"],
            "thinkingConfig": {"includeThoughts": True},  # forwarded as written
        }


def test_both_base64_alphabets_and_missing_padding_decode_to_the_same_image() -> None:
    raw = png((250, 251, 252), (33, 17))  # bytes whose base64 holds + and / characters
    for text in (b64(raw), b64(raw, url_safe=True), b64(raw, url_safe=True).rstrip("=")):
        body = {"contents": [user("edit", {"inlineData": {"mimeType": "image/png", "data": text}})]}
        assert translate(body).request.input_images[0].data == raw


def test_field_paths_are_snake_case_as_google_names_them() -> None:
    assert field_path(("contents", 3, "parts", 0, "inlineData", "mimeType")) == (
        "contents[3].parts[0].inline_data.mime_type"
    )


# --- imageConfig and generationConfig ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"), [("1k", "1K"), ("2k", "2K"), ("4k", "4K"), ("512", "512")]
)
def test_image_size_is_normalised_to_upper_case_with_a_warning(sent: str, kept: str) -> None:
    body = {"contents": [user("a fox")], "generationConfig": {"imageConfig": {"imageSize": sent}}}
    translation = translate(body)
    assert translation.request.resolution == kept
    expected = () if sent == kept else (f'imageSize "{sent}" normalised to "{kept}"',)
    assert translation.warnings == expected


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"imageConfig": {"imageSize": "3K"}}, "generation_config.image_config.image_size"),
        ({"imageConfig": {"aspectRatio": "7:3"}}, "generation_config.image_config.aspect_ratio"),
        ({"candidateCount": 5}, "generation_config.candidate_count"),
        ({"candidateCount": 0}, "generation_config.candidate_count"),
        ({"candidateCount": "two"}, "generation_config.candidate_count"),
        ({"responseModalities": ["AUDIO"]}, "generation_config.response_modalities[0]"),
        (
            {"imageConfig": {"outputMimeType": "image/tiff"}},
            "generation_config.image_config.output_mime_type",
        ),
        ({"topQ": 1}, "generation_config.top_q"),
    ],
)
def test_bad_config_values_name_their_field(config: dict[str, Any], field: str) -> None:
    error = refused({"contents": [user("a fox")], "generationConfig": config})
    assert error.param == field


def test_unknown_fields_are_rejected_in_googles_words() -> None:
    error = refused({"contents": [user("a fox")], "generationConfig": {"imageConfig": {"dpi": 3}}})
    assert error.message == (
        'Invalid JSON payload received. Unknown name "dpi" at'
        " 'generation_config.image_config': Cannot find field."
    )


def test_text_only_modalities_gain_image_and_say_so() -> None:
    body = {"contents": [user("a fox")], "generationConfig": {"responseModalities": ["Text"]}}
    translation = translate(body)
    config = translation.request.passthrough["gemini"]["generationConfig"]
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    assert translation.warnings == (
        'responseModalities ["Text"] normalised to ["TEXT","IMAGE"]:'
        " an image route always answers with an image",
    )
    assert translation.text_wanted


def test_image_only_modalities_are_forwarded_and_mean_no_text_in_the_answer() -> None:
    body = {"contents": [user("a fox")], "generationConfig": {"responseModalities": ["image"]}}
    translation = translate(body)
    assert translation.request.passthrough["gemini"]["generationConfig"] == {
        "responseModalities": ["IMAGE"]
    }
    assert not translation.text_wanted and not translation.warnings


def test_vertex_output_format_is_honoured_by_transcoding() -> None:
    config = {"imageConfig": {"outputMimeType": "image/webp", "outputCompressionQuality": 80}}
    request = translate({"contents": [user("a fox")], "generationConfig": config}).request
    assert (request.output_format, request.output_compression) == ("webp", 80)
    assert "generationConfig" not in request.passthrough["gemini"]


# --- contents -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "field"),
    [
        (inline(b"GIF? no: plain text"), "contents[0].parts[1].inline_data.data"),
        (inline(b"%PDF-1.7", "application/pdf"), "contents[0].parts[1].inline_data.mime_type"),
        (
            {"inlineData": {"mimeType": "image/png", "data": "***"}},
            "contents[0].parts[1].inline_data.data",
        ),
        ({"fileData": {"fileUri": "files/abc"}}, "contents[0].parts[1].file_data"),
    ],
)
def test_inputs_that_are_not_inline_images_are_refused_by_field(
    part: dict[str, Any], field: str
) -> None:
    assert refused({"contents": [user("edit this", part)]}).param == field


def test_at_most_fourteen_images_across_the_conversation() -> None:
    assert len(translate({"contents": [user("mix", *[inline(GREEN)] * 14)]}).request.input_images)
    error = refused({"contents": [user("mix", *[inline(GREEN)] * 15)]})
    assert error.param == "contents" and "15 images" in error.message


@pytest.mark.parametrize(
    ("contents", "field"),
    [
        ([], "contents"),
        ([user(inline(RED))], "contents[0].parts"),
        ([user("a"), {"role": "model", "parts": [{"text": "b"}]}], "contents[1].role"),
        ([{"role": "system", "parts": [{"text": "a"}]}], "contents[0].role"),
        ([{"role": "user", "parts": []}], "contents[0].parts"),
    ],
)
def test_a_conversation_must_end_with_a_user_instruction(
    contents: list[dict[str, Any]], field: str
) -> None:
    assert refused({"contents": contents}).param == field


def test_not_a_json_object_is_refused() -> None:
    assert "JSON object" in refused(["contents"]).message


def test_a_single_turn_keeps_every_reference_image_in_order() -> None:
    request = translate({"contents": [user("put the hat on the cat", inline(RED), inline(BLUE))]})
    assert [image.data for image in request.request.input_images] == [RED, BLUE]
    assert request.request.prompt == "put the hat on the cat"


def conversation() -> list[dict[str, Any]]:
    return [
        user("draw a red square", inline(GREEN)),
        {"role": "model", "parts": [{"text": "Here it is."}, inline(RED, thoughtSignature="c2ln")]},
        user("make it blue"),
        {"role": "model", "parts": [inline(RED), {"text": "Blue now.", "thought": False}]},
        user("add a border", inline(BLUE)),
    ]


def test_a_conversation_gives_every_provider_the_latest_image_and_the_last_instruction() -> None:
    request = translate({"contents": conversation()}).request
    assert request.prompt == "add a border"
    # The model's latest image (being edited), then the last turn's own reference image.
    assert [image.data for image in request.input_images] == [RED, BLUE]


def test_gemini_gets_the_whole_conversation_with_a_signature_on_every_model_image() -> None:
    contents = translate({"contents": conversation()}).request.passthrough["gemini"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert contents[1]["parts"][1]["thoughtSignature"] == "c2ln"  # Gemini's own, kept
    assert contents[3]["parts"][0]["thoughtSignature"] == STAND_IN_SIGNATURE  # none was sent
    assert "thoughtSignature" not in contents[0]["parts"][1]  # user images carry none


def test_the_gemini_provider_sends_the_conversation_once_with_one_spelling_per_field() -> None:
    body = {
        "contents": conversation(),
        "generation_config": {
            "image_config": {"aspect_ratio": "3:2", "image_size": "2k"},
            "seed": 3,
        },
        "system_instruction": {"parts": [{"text": "be brief"}]},
    }
    request = translate(body).request
    deployment = Deployment(
        "pro", "google", "gemini", "gemini-3-pro-image", "https://g.test/v1beta"
    )
    _, raw = build_request(request, deployment)
    sent = orjson.loads(raw)
    assert sent["contents"] == request.passthrough["gemini"]["contents"]  # built contents replaced
    images = [p for c in sent["contents"] for p in c["parts"] if "inlineData" in p]
    assert len(images) == 4  # each of the conversation's images once, none added
    config = sent["generationConfig"]
    assert config["imageConfig"] == {"aspectRatio": "3:2", "imageSize": "2K"}
    assert config["seed"] == 3
    assert not {"image_config", "generation_config", "response_modalities"} & {*config, *sent}
    assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}


def test_the_instruction_is_limited_in_length() -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate({"contents": [user("x" * 11)]}, max_prompt_chars=10)
    assert caught.value.param == "contents[0].parts"
