"""FakeVertex speaks Vertex AI (Gemini generateContent, Imagen :predict, the OAuth token grant),
and FakeGemini answers Imagen's legacy :predict on the Developer API."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from google.auth import crypt, jwt
from PIL import Image

from tests.fakes.conftest import image_info
from tests.fakes.gemini import FakeGemini
from tests.fakes.imagen_wire import RAI_REASON
from tests.fakes.images import encoded_image
from tests.fakes.vertex import FakeVertex, service_account_info
from tests.fakes.vertex_wire import CLOUD_PLATFORM, GOOGLE_TOKEN_URL, JWT_GRANT

PROJECT_PATH = "/v1/projects/p1/locations/us-central1/publishers/google/models"
PROMPT = {"contents": [{"role": "user", "parts": [{"text": "a cat in a spacesuit"}]}]}


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    async with FakeVertex(keys={"express-key"}) as server:
        yield server


async def call(
    http: aiohttp.ClientSession,
    fake: FakeVertex,
    model_method: str,
    body: dict[str, Any],
    *,
    token: str | None = None,
    path: str = PROJECT_PATH,
    scenario: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if scenario is not None:
        sent["x-fake-scenario"] = scenario
    async with http.post(f"{fake.base_url}{path}/{model_method}", json=body, headers=sent) as r:
        raw = await r.read()
        return r.status, orjson.loads(raw) if raw[:1] in (b"{", b"[") else raw


def predict_body(prompt: str = "a fox", **parameters: Any) -> dict[str, Any]:
    return {"instances": [{"prompt": prompt}], "parameters": parameters}


def grant_assertion(**claims: Any) -> str:
    info = service_account_info("http://unused/token")
    signer = crypt.RSASigner.from_service_account_info(info)
    payload = {
        "iss": info["client_email"],
        "aud": GOOGLE_TOKEN_URL,
        "scope": CLOUD_PLATFORM,
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
        **claims,
    }
    return jwt.encode(signer, payload).decode()


# --- the token endpoint -------------------------------------------------------------------


async def test_a_signed_jwt_grant_gets_a_bearer_token_the_models_accept(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    form = {"grant_type": JWT_GRANT, "assertion": grant_assertion()}
    async with http.post(f"{fake.base_url}/token", data=form) as response:
        assert response.status == 200
        doc = await response.json()
    assert doc["token_type"] == "Bearer" and doc["expires_in"] == 3599
    assert doc["access_token"].startswith("ya29.")
    status, _ = await call(
        http, fake, "gemini-3-pro-image:generateContent", PROMPT, token=doc["access_token"]
    )
    assert status == 200
    assert fake.token_requests[0]["scope"] == CLOUD_PLATFORM


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials", "assertion": "x"}, "unsupported_grant_type"),
        ({"grant_type": JWT_GRANT, "assertion": "not-a-jwt"}, "invalid_grant"),
        ({"grant_type": JWT_GRANT, "assertion": "SCOPE"}, "invalid_scope"),
        ({"grant_type": JWT_GRANT, "assertion": "LONG"}, "invalid_grant"),
    ],
)
async def test_bad_grants_get_oauth_errors(
    http: aiohttp.ClientSession, fake: FakeVertex, form: dict[str, str], error: str
) -> None:
    if form["assertion"] == "SCOPE":
        form = {**form, "assertion": grant_assertion(scope="https://example.test/other")}
    elif form["assertion"] == "LONG":
        form = {**form, "assertion": grant_assertion(exp=1_700_000_000 + 7200)}
    async with http.post(f"{fake.base_url}/token", data=form) as response:
        assert response.status == 400
        assert (await response.json())["error"] == error


async def test_refused_tokens_answer_invalid_grant(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    fake.refuse_tokens = True
    form = {"grant_type": JWT_GRANT, "assertion": grant_assertion()}
    async with http.post(f"{fake.base_url}/token", data=form) as response:
        assert response.status == 400
        assert await response.json() == {
            "error": "invalid_grant",
            "error_description": "Invalid JWT Signature.",
        }


# --- auth on the model paths --------------------------------------------------------------


async def test_a_missing_or_unknown_token_is_unauthenticated(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    for token in (None, "ya29.never-issued"):
        status, doc = await call(
            http, fake, "gemini-3-pro-image:generateContent", PROMPT, token=token
        )
        assert status == 401
        assert doc["error"]["status"] == "UNAUTHENTICATED"
    assert [r.scenario for r in fake.requests] == [None, None]


async def test_express_mode_takes_an_api_key_and_no_project(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    express = "/v1beta1/publishers/google/models"
    status, doc = await call(
        http, fake, "gemini-2.5-flash-image:generateContent", PROMPT, path=express,
        headers={"x-goog-api-key": "express-key"},
    )  # fmt: skip
    assert status == 200 and doc["candidates"][0]["finishReason"] == "STOP"
    status, doc = await call(
        http, fake, "gemini-2.5-flash-image:generateContent", PROMPT, path=express,
        headers={"x-goog-api-key": "wrong"},
    )  # fmt: skip
    assert status == 400 and doc["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    status, _ = await call(
        http, fake, "gemini-2.5-flash-image:generateContent", PROMPT, path=express
    )
    assert status == 401


# --- Gemini on Vertex ---------------------------------------------------------------------


async def test_vertex_only_image_config_is_accepted_and_the_output_type_honoured(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    body = {
        **PROMPT,
        "labels": {"team": "imaging"},
        "generationConfig": {
            "responseModalities": ["IMAGE"],
            "imageConfig": {
                "aspectRatio": "16:9",
                "imageSize": "2K",
                "personGeneration": "ALLOW_ADULT",
                "prominentPeople": "BLOCK_PROMINENT_PEOPLE",
                "imageOutputOptions": {"mimeType": "image/jpeg", "compressionQuality": 80},
            },
        },
    }
    status, doc = await call(
        http, fake, "gemini-3-pro-image-preview:generateContent", body, token=fake.issue_token()
    )
    assert status == 200
    part = doc["candidates"][0]["content"]["parts"][0]
    assert part["inlineData"]["mimeType"] == "image/jpeg"
    assert image_info(part["inlineData"]["data"]) == ("JPEG", 2688, 1536)
    assert doc["createTime"].endswith("Z")
    assert doc["usageMetadata"]["trafficType"] == "ON_DEMAND"


@pytest.mark.parametrize(
    "image_config",
    [
        {"imageOutputOptions": {"mimeType": "image/gif"}},
        {"imageOutputOptions": {"mimeType": "image/jpeg", "compressionQuality": 101}},
        {"personGeneration": "ALLOW_EVERYONE"},
        {"outputMimeType": "image/jpeg"},  # an SDK field name, not a wire field
    ],
)
async def test_bad_vertex_image_config_is_invalid_argument(
    http: aiohttp.ClientSession, fake: FakeVertex, image_config: dict[str, Any]
) -> None:
    body = {**PROMPT, "generationConfig": {"imageConfig": image_config}}
    status, doc = await call(
        http, fake, "gemini-3-pro-image:generateContent", body, token=fake.issue_token()
    )
    assert status == 400 and doc["error"]["status"] == "INVALID_ARGUMENT"


async def test_sse_stream_carries_the_image_and_vertex_fields(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    headers = {"Authorization": f"Bearer {fake.issue_token()}"}
    url = f"{fake.base_url}{PROJECT_PATH}/gemini-3.1-flash-image:streamGenerateContent?alt=sse"
    async with http.post(url, json=PROMPT, headers=headers) as response:
        assert response.content_type == "text/event-stream"
        text = (await response.read()).decode()
    events = [orjson.loads(e.removeprefix("data: ")) for e in text.split("\r\n\r\n") if e]
    assert "inlineData" in events[-1]["candidates"][0]["content"]["parts"][0]
    assert events[-1]["usageMetadata"]["trafficType"] == "ON_DEMAND"


@pytest.mark.parametrize(
    ("scenario", "status", "rpc_status", "reason"),
    [
        ("resource_exhausted", 429, "RESOURCE_EXHAUSTED", None),
        ("quota_exceeded", 429, "RESOURCE_EXHAUSTED", None),
        ("permission_denied", 403, "PERMISSION_DENIED", "IAM_PERMISSION_DENIED"),
        ("api_disabled", 403, "PERMISSION_DENIED", "SERVICE_DISABLED"),
        ("billing_disabled", 403, "PERMISSION_DENIED", "BILLING_DISABLED"),
        ("unavailable", 503, "UNAVAILABLE", None),
        ("internal", 500, "INTERNAL", None),
        ("imagen_blocked", 400, "INVALID_ARGUMENT", None),
    ],
)
async def test_error_scenarios_send_rpc_status(
    http: aiohttp.ClientSession,
    fake: FakeVertex,
    scenario: str,
    status: int,
    rpc_status: str,
    reason: str | None,
) -> None:
    got, doc = await call(
        http, fake, "gemini-3-pro-image:generateContent", PROMPT,
        token=fake.issue_token(), scenario=scenario,
    )  # fmt: skip
    assert got == status and doc["error"]["status"] == rpc_status
    details = doc["error"].get("details", [])
    assert [d.get("reason") for d in details] == ([reason] if reason else [])


async def test_image_safety_on_gemini_is_a_200_without_an_image(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    status, doc = await call(
        http, fake, "gemini-3-pro-image:generateContent", PROMPT,
        token=fake.issue_token(), scenario="image_safety",
    )  # fmt: skip
    assert status == 200 and doc["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    assert "createTime" in doc


async def test_unknown_models_and_wrong_methods(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    token = fake.issue_token()
    status, doc = await call(http, fake, "gemini-9-image:generateContent", PROMPT, token=token)
    assert status == 404 and "Publisher Model" in doc["error"]["message"]
    status, _ = await call(
        http, fake, "imagen-4.0-generate-001:generateContent", PROMPT, token=token
    )
    assert status == 400
    status, _ = await call(http, fake, "gemini-3-pro-image:predict", predict_body(), token=token)
    assert status == 400


# --- Imagen :predict on Vertex ------------------------------------------------------------


async def test_predict_makes_sample_count_images_at_the_ratio_and_tier(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    body = predict_body(
        sampleCount=3, aspectRatio="9:16", sampleImageSize="2K", seed=7, addWatermark=False,
        outputOptions={"mimeType": "image/jpeg", "compressionQuality": 70},
        negativePrompt="blurry", enhancePrompt=True,
    )  # fmt: skip
    status, doc = await call(
        http, fake, "imagen-4.0-generate-001:predict", body, token=fake.issue_token()
    )
    assert status == 200
    predictions = doc["predictions"]
    assert len(predictions) == 3
    for entry in predictions:
        assert entry["mimeType"] == "image/jpeg"
        assert image_info(entry["bytesBase64Encoded"]) == ("JPEG", 1536, 2816)
        assert entry["prompt"].endswith("a fox")  # the enhanced prompt


@pytest.mark.parametrize(
    ("model", "parameters", "field"),
    [
        ("imagen-4.0-fast-generate-001", {"sampleImageSize": "2K"}, "sampleImageSize"),
        ("imagen-4.0-generate-001", {"sampleCount": 5}, "sampleCount"),
        ("imagen-4.0-generate-001", {"aspectRatio": "21:9"}, "aspectRatio"),
        ("imagen-4.0-generate-001", {"seed": 3}, "seed"),  # the watermark is on
        ("imagen-4.0-generate-001", {"editMode": "EDIT_MODE_BGSWAP"}, "parameters.editMode"),
        ("imagen-4.0-generate-001", {"imageSize": "2K"}, "parameters.imageSize"),
    ],
)
async def test_predict_validates_parameters(
    http: aiohttp.ClientSession,
    fake: FakeVertex,
    model: str,
    parameters: dict[str, Any],
    field: str,
) -> None:
    status, doc = await call(
        http, fake, f"{model}:predict", predict_body(**parameters), token=fake.issue_token()
    )
    assert status == 400
    assert doc["error"]["details"][0]["fieldViolations"][0]["field"] == field


async def test_rai_filtered_entries_replace_images(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    token = fake.issue_token()
    body = predict_body(sampleCount=3, includeRaiReason=True)
    status, doc = await call(
        http, fake, "imagen-4.0-generate-001:predict", body, token=token, scenario="partly_filtered"
    )
    assert status == 200
    assert [sorted(p) for p in doc["predictions"]] == [
        ["bytesBase64Encoded", "mimeType"],
        ["raiFilteredReason"],
        ["raiFilteredReason"],
    ]
    status, doc = await call(
        http, fake, "imagen-4.0-generate-001:predict", body, token=token, scenario="rai_filtered"
    )
    assert doc == {"predictions": [{"raiFilteredReason": RAI_REASON}] * 3}
    # Without includeRaiReason, filtered images are simply missing.
    status, doc = await call(
        http, fake, "imagen-4.0-generate-001:predict", predict_body(), token=token,
        scenario="rai_filtered",
    )  # fmt: skip
    assert (status, doc) == (200, {})


async def test_imagen_blocked_is_the_400_with_its_error_code(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    status, doc = await call(
        http, fake, "imagen-4.0-generate-001:predict", predict_body(),
        token=fake.issue_token(), scenario="imagen_blocked",
    )  # fmt: skip
    assert status == 400 and "58061214" in doc["error"]["message"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mask_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height), 255).save(out, "PNG")
    return out.getvalue()


async def test_edit_takes_raw_and_mask_references_and_keeps_the_input_size(
    http: aiohttp.ClientSession, fake: FakeVertex
) -> None:
    raw = {"bytesBase64Encoded": b64(encoded_image(320, 240)), "mimeType": "image/png"}
    refs = [
        {"referenceType": "REFERENCE_TYPE_RAW", "referenceId": 1, "referenceImage": raw},
        {
            "referenceType": "REFERENCE_TYPE_MASK",
            "referenceId": 2,
            "referenceImage": {"bytesBase64Encoded": b64(mask_png(320, 240))},
            "maskImageConfig": {"maskMode": "MASK_MODE_USER_PROVIDED", "dilation": 0.03},
        },
    ]
    body = {
        "instances": [{"prompt": "add a hat", "referenceImages": refs}],
        "parameters": {"sampleCount": 2, "editMode": "EDIT_MODE_INPAINT_INSERTION"},
    }
    token = fake.issue_token()
    status, doc = await call(http, fake, "imagen-3.0-capability-001:predict", body, token=token)
    assert status == 200
    assert [image_info(p["bytesBase64Encoded"])[1:] for p in doc["predictions"]] == [(320, 240)] * 2
    refs[1]["referenceImage"] = {"bytesBase64Encoded": b64(mask_png(64, 64))}
    status, doc = await call(http, fake, "imagen-3.0-capability-001:predict", body, token=token)
    assert status == 400 and "must match" in doc["error"]["message"]
    # An automatic mask sends no image.
    refs[1] = {
        "referenceType": "REFERENCE_TYPE_MASK",
        "referenceId": 2,
        "maskImageConfig": {"maskMode": "MASK_MODE_BACKGROUND"},
    }
    status, _ = await call(http, fake, "imagen-3.0-capability-001:predict", body, token=token)
    assert status == 200


# --- Imagen on the Developer API (FakeGemini) ---------------------------------------------


async def test_gemini_fake_serves_imagen_predict_without_vertex_only_fields(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeGemini() as gemini:
        url = f"{gemini.base_url}/v1beta/models/imagen-4.0-generate-001:predict"
        headers = {"x-goog-api-key": "k"}
        body = predict_body(sampleCount=2, aspectRatio="4:3", personGeneration="allow_adult")
        async with http.post(url, json=body, headers=headers) as response:
            doc = await response.json()
        assert [image_info(p["bytesBase64Encoded"]) for p in doc["predictions"]] == [
            ("PNG", 1280, 896)
        ] * 2
        body = predict_body(seed=1)
        async with http.post(url, json=body, headers=headers) as response:
            assert response.status == 400
            assert "seed" in (await response.json())["error"]["message"]
        headers["x-fake-scenario"] = "rate_limited"
        async with http.post(url, json=predict_body(), headers=headers) as response:
            assert response.status == 429
        capability = f"{gemini.base_url}/v1beta/models/imagen-3.0-capability-001:predict"
        async with http.post(capability, json=predict_body(), headers={"x-goog-api-key": "k"}) as r:
            assert r.status == 404


async def test_runs_as_its_own_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.vertex", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.startswith(b"listening on http://127.0.0.1:")
    finally:
        process.terminate()
        await process.wait()
