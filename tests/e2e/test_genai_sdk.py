"""Google's official google-genai SDK → gateway → fake Gemini, fake OpenAI and the simulator.

The SDK's async API is used throughout: its sync API would block the event loop that runs the
gateway. google-genai 3.x calls /v1; the gateway serves /v1beta the same way.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors, types
from PIL import Image

from imagegate.surfaces.gemini.conversation import STAND_IN_SIGNATURE
from tests.conftest import StartGateway
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI

CLIENT_KEY, GEMINI_KEY, OPENAI_KEY = "ig_genai-client-key", "gemini-test-key", "sk-openai-test"
SIM_INPUT_PRICE = 0.01  # per input image on the simulator route: the ledger counts them
MakeGenai = Callable[..., genai.Client]
# Two warnings aiohttp raises about how google-genai's async client uses it: it subclasses
# ClientSession, and it posts a conversation holding a megabyte-sized image as one bytes body.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Inheritance class AiohttpClientSession from ClientSession:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning"),
]


@pytest_asyncio.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(keys={GEMINI_KEY}) as fake:
        yield fake


@pytest_asyncio.fixture
async def openai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(keys={OPENAI_KEY}) as fake:
        yield fake


@pytest.fixture
async def gateway(
    start_gateway: StartGateway,
    gemini: FakeGemini,
    openai_fake: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.setenv("TEST_GEMINI_KEY", GEMINI_KEY)
    monkeypatch.setenv("TEST_OPENAI_KEY", OPENAI_KEY)
    monkeypatch.setenv("TEST_CLIENT_KEY", CLIENT_KEY)
    config: dict[str, Any] = {
        "providers": {
            "google": {
                "kind": "gemini",
                "base_url": f"{gemini.base_url}/v1beta",
                "keys": ["TEST_GEMINI_KEY"],
            },
            "oa": {
                "kind": "openai",
                "base_url": f"{openai_fake.base_url}/v1",
                "keys": ["TEST_OPENAI_KEY"],
            },
            "sim": {"kind": "simulator"},
        },
        "deployments": {
            "pro": {"provider": "google", "model": "gemini-3-pro-image-preview"},
            "flash31": {"provider": "google", "model": "gemini-3.1-flash-image-preview"},
            "gpt": {"provider": "oa", "model": "gpt-image-1.5"},
            "sim": {
                "provider": "sim",
                "model": "sim-image",
                "price": {"per_image": 0.0, "per_input_image": SIM_INPUT_PRICE},
            },
        },
        "routes": {
            "pro": ["pro"],
            "nano": ["flash31"],
            "gpt": ["gpt"],
            "sim": ["sim"],
            # No retries: a failure reaches the client at once.
            "pro-once": {"candidates": ["pro"], "retries": {"rate_limited": 0, "unavailable": 0}},
        },
        "auth": {"keys": [{"name": "genai-app", "key_env": "TEST_CLIENT_KEY"}]},
    }
    return await start_gateway(config)


@pytest_asyncio.fixture
async def client() -> AsyncIterator[MakeGenai]:
    """`client(base, key=...)`: a google-genai client on the gateway, closed after the test."""
    made: list[genai.Client] = []

    def make(base: str, key: str = CLIENT_KEY) -> genai.Client:
        options = types.HttpOptions(base_url=base)
        made.append(genai.Client(api_key=key, http_options=options))
        return made[-1]

    yield make
    for each in made:
        await each.aio.aclose()
        each.close()


def png(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def images_of(response: types.GenerateContentResponse, candidate: int = 0) -> list[Image.Image]:
    """Every image of one candidate, decoded to its last pixel (a broken image fails here)."""
    assert response.candidates is not None
    content = response.candidates[candidate].content
    assert content is not None and content.parts is not None
    decoded = []
    for part in content.parts:
        if part.inline_data is not None and part.inline_data.data is not None:
            image = Image.open(io.BytesIO(part.inline_data.data))
            image.load()
            decoded.append(image)
    return decoded


def header(response: types.GenerateContentResponse, name: str) -> str | None:
    assert response.sdk_http_response is not None and response.sdk_http_response.headers
    return response.sdk_http_response.headers.get(name)


def sent_inline_images(body: dict[str, Any]) -> list[bytes]:
    """The images a request sent to the fake Gemini, decoded (either base64 alphabet)."""
    found = []
    for content in body["contents"]:
        for part in content["parts"]:
            inline = part.get("inlineData") or part.get("inline_data")
            if inline:
                text = inline["data"].replace("-", "+").replace("_", "/")
                found.append(base64.b64decode(text + "=" * (-len(text) % 4)))
    return found


# --- generation ---------------------------------------------------------------------------------


async def test_image_config_16_9_at_2k_comes_back_16_9_at_2k(
    client: MakeGenai, gateway: str, gemini: FakeGemini
) -> None:
    config = types.GenerateContentConfig(
        image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K")
    )
    response = await client(gateway).aio.models.generate_content(
        model="pro", contents="a fox in the snow", config=config
    )
    [image] = images_of(response)
    assert image.size == (2688, 1536)  # the fake's 16:9 at 2K
    sent = gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-3-pro-image-preview:generateContent"
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY  # the gateway's upstream key, not ours
    assert sent.json is not None
    assert sent.json["generationConfig"]["imageConfig"] == {
        "aspectRatio": "16:9",
        "imageSize": "2K",
    }
    assert response.model_version == "gemini-3-pro-image-preview"
    usage = response.usage_metadata
    assert usage is not None and usage.candidates_token_count and usage.total_token_count
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert header(response, "x-imagegate-deployment") == "pro"


async def test_lowercase_1k_is_normalised_to_1k_not_dropped(
    client: MakeGenai, gateway: str, gemini: FakeGemini
) -> None:
    config = types.GenerateContentConfig(
        image_config=types.ImageConfig(aspect_ratio="16:9", image_size="1k")
    )
    response = await client(gateway).aio.models.generate_content(
        model="nano", contents="a fox", config=config
    )
    [image] = images_of(response)
    assert image.size == (1344, 768)  # 1K; the 512 tier would be 672x384
    assert header(response, "x-imagegate-warning") == 'imageSize "1k" normalised to "1K"'
    assert gemini.requests[-1].json["generationConfig"]["imageConfig"]["imageSize"] == "1K"  # type: ignore[index]


async def test_two_reference_images_reach_gemini_once_each(
    client: MakeGenai, gateway: str, gemini: FakeGemini
) -> None:
    cat, hat = png(colour=(10, 200, 10)), png(32, 32, (10, 10, 200))
    contents = [
        "put the hat on the cat",
        types.Part.from_bytes(data=cat, mime_type="image/png"),
        types.Part.from_bytes(data=hat, mime_type="image/png"),
    ]
    response = await client(gateway).aio.models.generate_content(model="pro", contents=contents)
    assert len(images_of(response)) == 1
    assert sent_inline_images(gemini.requests[-1].json or {}) == [cat, hat]


async def test_a_route_served_by_an_openai_upstream(
    client: MakeGenai, gateway: str, openai_fake: FakeOpenAI
) -> None:
    response = await client(gateway).aio.models.generate_content(
        model="gpt", contents="a lighthouse at dusk"
    )
    [image] = images_of(response)
    assert image.size == (1024, 1024)
    assert response.parts is not None and response.parts[0].inline_data is not None
    assert response.parts[0].inline_data.mime_type == "image/png"
    sent = openai_fake.requests[-1].json
    assert sent is not None and sent["prompt"] == "a lighthouse at dusk"
    assert response.model_version == "gpt-image-1.5"


async def test_candidate_count_gives_one_candidate_per_image(
    client: MakeGenai, gateway: str
) -> None:
    config = types.GenerateContentConfig(candidate_count=2)
    response = await client(gateway).aio.models.generate_content(
        model="sim", contents="two foxes", config=config
    )
    assert response.candidates is not None and len(response.candidates) == 2
    assert [c.index for c in response.candidates] == [0, 1]
    assert len(images_of(response, 0)) == len(images_of(response, 1)) == 1


async def test_text_only_modalities_get_an_image_and_a_warning(
    client: MakeGenai, gateway: str, gemini: FakeGemini
) -> None:
    config = types.GenerateContentConfig(response_modalities=["TEXT"])
    response = await client(gateway).aio.models.generate_content(
        model="pro", contents="a fox", config=config
    )
    assert len(images_of(response)) == 1
    assert "normalised to" in (header(response, "x-imagegate-warning") or "")
    assert gemini.requests[-1].json["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]  # type: ignore[index]


async def test_streamed_call_sends_the_image_whole_and_usage_last(
    client: MakeGenai, gateway: str
) -> None:
    config = types.GenerateContentConfig(
        candidate_count=2, image_config=types.ImageConfig(aspect_ratio="3:2")
    )
    stream = await client(gateway).aio.models.generate_content_stream(
        model="pro", contents="a fox", config=config
    )
    chunks = [chunk async for chunk in stream]
    assert len(chunks) == 2  # one chunk per image
    for chunk in chunks:
        [image] = images_of(chunk)
        assert image.size == (1248, 832)
    assert chunks[0].usage_metadata is None
    assert chunks[-1].usage_metadata is not None and chunks[-1].usage_metadata.total_token_count


async def test_models_are_listed_and_got_as_routes(client: MakeGenai, gateway: str) -> None:
    aio = client(gateway).aio
    names = [model.name async for model in await aio.models.list()]
    assert names == ["models/gpt", "models/nano", "models/pro", "models/pro-once", "models/sim"]
    model = await aio.models.get(model="pro")
    assert model.name == "models/pro"


# --- conversations --------------------------------------------------------------------------------


async def test_multi_turn_edit_on_gemini_sends_the_whole_conversation(
    client: MakeGenai, gateway: str, gemini: FakeGemini
) -> None:
    chat = client(gateway).aio.chats.create(model="pro")
    first = await chat.send_message("draw a red bicycle")
    [drawn] = images_of(first)
    second = await chat.send_message("now make it blue")
    assert len(images_of(second)) == 1
    body = gemini.requests[-1].json
    assert body is not None
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][-1]["parts"] == [{"text": "now make it blue"}]
    # The model's image goes back once, with a thought signature for Gemini 3 to check.
    model_parts = body["contents"][1]["parts"]
    [image_part] = [p for p in model_parts if "inlineData" in p]
    # The gateway's answer carried no signature; Google's stand-in for one goes in its place.
    assert image_part["thoughtSignature"] == STAND_IN_SIGNATURE
    [sent] = sent_inline_images(body)
    assert Image.open(io.BytesIO(sent)).size == drawn.size


async def test_multi_turn_edit_on_a_provider_without_turns_edits_the_latest_image(
    client: MakeGenai, gateway: str
) -> None:
    chat = client(gateway).aio.chats.create(model="sim")
    first = await chat.send_message("draw a red bicycle")
    assert header(first, "x-imagegate-cost-usd") == "0"  # no input image
    second = await chat.send_message("now make it blue")
    assert len(images_of(second)) == 1
    # Booked with exactly one input image: the simulator got the latest image to edit.
    assert header(second, "x-imagegate-cost-usd") == f"{SIM_INPUT_PRICE:g}"


# --- refusals and failures, each the SDK's own typed error, the next request served -------------


async def _served(client: genai.Client) -> None:
    response = await client.aio.models.generate_content(model="sim", contents="a fox")
    assert len(images_of(response)) == 1


@pytest.mark.parametrize(
    ("data", "mime", "field", "fragment"),
    [
        (b"plain text, not pixels", "image/png", "inline_data.data", "not a PNG, JPEG, WebP"),
        (b"%PDF-1.7 ...", "application/pdf", "inline_data.mime_type", "images only"),
    ],
)
async def test_a_non_image_upload_is_invalid_argument_naming_the_part(
    client: MakeGenai, gateway: str, data: bytes, mime: str, field: str, fragment: str
) -> None:
    genai_client = client(gateway)
    contents = ["edit this", types.Part.from_bytes(data=data, mime_type=mime)]
    with pytest.raises(errors.ClientError) as caught:
        await genai_client.aio.models.generate_content(model="sim", contents=contents)
    error = caught.value
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert fragment in (error.message or "")
    [violation] = error.details["error"]["details"][0]["fieldViolations"]
    assert violation["field"] == f"contents[0].parts[1].{field}"
    await _served(genai_client)


async def test_seventeen_images_are_invalid_argument_naming_contents(
    client: MakeGenai, gateway: str, gemini: FakeGemini
) -> None:
    genai_client = client(gateway)
    parts = [types.Part.from_bytes(data=png(16, 16), mime_type="image/png") for _ in range(17)]
    with pytest.raises(errors.ClientError) as caught:
        await genai_client.aio.models.generate_content(model="pro", contents=["mix", *parts])
    error = caught.value
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert "17 images" in (error.message or "") and "at most 14" in (error.message or "")
    assert error.details["error"]["details"][0]["fieldViolations"][0]["field"] == "contents"
    assert not gemini.requests  # refused before any upstream call
    await _served(genai_client)


async def test_an_unknown_model_is_not_found(client: MakeGenai, gateway: str) -> None:
    genai_client = client(gateway)
    with pytest.raises(errors.ClientError) as caught:
        await genai_client.aio.models.generate_content(model="nano-banana-9", contents="a fox")
    error = caught.value
    assert (error.code, error.status) == (404, "NOT_FOUND")
    assert "models/nano-banana-9 is not found" in (error.message or "")
    assert "models/pro" in (error.message or "")  # the names that do exist
    await _served(genai_client)


async def test_a_wrong_key_is_api_key_invalid_as_google_answers_it(
    client: MakeGenai, gateway: str
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client(gateway, key="ig_not-a-real-key").aio.models.generate_content(
            model="sim", contents="a fox"
        )
    error = caught.value
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert (error.message or "").startswith("API key not valid. Please pass a valid API key.")
    assert error.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    await _served(client(gateway))


@pytest.mark.parametrize(
    ("ratio", "fragment"),
    [
        ("7:3", "Unsupported aspect ratio '7:3'"),  # no Gemini model has it
        ("1:8", "No deployment of `pro` supports"),  # 3.1 Flash has it, the pro route does not
    ],
)
async def test_an_aspect_ratio_the_route_cannot_make_names_the_field(
    client: MakeGenai, gateway: str, gemini: FakeGemini, ratio: str, fragment: str
) -> None:
    config = types.GenerateContentConfig(image_config=types.ImageConfig(aspect_ratio=ratio))
    with pytest.raises(errors.ClientError) as caught:
        await client(gateway).aio.models.generate_content(
            model="pro", contents="a fox", config=config
        )
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert fragment in (caught.value.message or "")
    [violation] = caught.value.details["error"]["details"][0]["fieldViolations"]
    assert violation["field"] == "generation_config.image_config.aspect_ratio"
    assert not gemini.requests  # refused before any upstream call


async def test_a_withheld_image_is_a_200_with_its_finish_reason_as_google_gives_it(
    client: MakeGenai, gateway: str, gemini: FakeGemini
) -> None:
    gemini.set_mode("image_safety")
    response = await client(gateway).aio.models.generate_content(model="pro", contents="a fox")
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    assert response.parts is None
    assert header(response, "x-imagegate-outcome") == "safety"


@pytest.mark.parametrize(
    ("scenario", "error_class", "code", "status"),
    [
        ("rate_limited", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("unavailable", errors.ServerError, 503, "UNAVAILABLE"),
    ],
)
async def test_upstream_failures_keep_their_kind_and_attempts(
    client: MakeGenai,
    gateway: str,
    gemini: FakeGemini,
    scenario: str,
    error_class: type[errors.APIError],
    code: int,
    status: str,
) -> None:
    gemini.set_mode(scenario)
    genai_client = client(gateway)
    with pytest.raises(error_class) as caught:
        await genai_client.aio.models.generate_content(model="pro-once", contents="a fox")
    error = caught.value
    assert (error.code, error.status) == (code, status)
    [info] = [d for d in error.details["error"]["details"] if d["@type"].endswith("ErrorInfo")]
    assert info["domain"] == "imagegate" and info["metadata"]["kind"] == scenario
    assert '"deployment":"pro"' in info["metadata"]["attempts"]
    gemini.clear()
    await _served(genai_client)


# --- the same surface over plain HTTP -------------------------------------------------------------


async def test_v1beta_with_a_key_in_the_query_and_a_json_array_stream(gateway: str) -> None:
    body = {"contents": [{"parts": [{"text": "a fox"}]}]}
    url = f"{gateway}/v1beta/models/sim:streamGenerateContent?key={CLIENT_KEY}"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200 and response.content_type == "application/json"
        [chunk] = await response.json()
    assert chunk["candidates"][0]["content"]["parts"][0]["inlineData"]["mimeType"] == "image/png"
    assert chunk["usageMetadata"]["totalTokenCount"] >= 0


async def test_vertex_output_mime_type_is_honoured_by_transcoding(gateway: str) -> None:
    # google-genai refuses outputMimeType on the Developer API; other clients may send it.
    body = {
        "contents": [{"parts": [{"text": "a fox"}]}],
        "generation_config": {"image_config": {"output_mime_type": "image/webp"}},
    }
    url = f"{gateway}/v1/models/pro:generateContent"
    headers = {"x-goog-api-key": CLIENT_KEY}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        assert response.status == 200
        assert "transcoded to webp" in response.headers["x-imagegate-notes"]
        [part, *_] = (await response.json())["candidates"][0]["content"]["parts"]
    assert part["inlineData"]["mimeType"] == "image/webp"
    image = Image.open(io.BytesIO(base64.b64decode(part["inlineData"]["data"])))
    assert image.format == "WEBP" and image.size == (1024, 1024)


async def test_no_key_is_permission_denied_and_unknown_paths_answer_in_googles_shape(
    gateway: str,
) -> None:
    body = {"contents": [{"parts": [{"text": "a fox"}]}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway}/v1beta/models/sim:generateContent", json=body) as r:
            assert r.status == 403
            assert (await r.json())["error"]["status"] == "PERMISSION_DENIED"
        headers = {"x-goog-api-key": CLIENT_KEY}
        async with session.get(f"{gateway}/v1beta/files", headers=headers) as r:
            assert r.status == 404
            assert (await r.json())["error"]["status"] == "NOT_FOUND"
        async with session.post(
            f"{gateway}/v1beta/models/sim:countTokens", json=body, headers=headers
        ) as r:
            error = (await r.json())["error"]
            assert r.status == 404 and "generateContent" in error["message"]


async def test_v1_models_answers_each_sdk_in_its_own_shape(gateway: str) -> None:
    async with aiohttp.ClientSession() as session:
        google = {"x-goog-api-key": CLIENT_KEY}
        async with session.get(f"{gateway}/v1/models", headers=google) as r:
            assert (await r.json())["models"][0]["name"] == "models/gpt"
        openai_style = {"Authorization": f"Bearer {CLIENT_KEY}"}
        async with session.get(f"{gateway}/v1/models", headers=openai_style) as r:
            assert (await r.json())["object"] == "list"
        async with session.get(f"{gateway}/v1/models/sim", headers=google) as r:
            assert (await r.json())["name"] == "models/sim"
