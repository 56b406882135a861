"""Imagen's ``:predict``, served by both FakeVertex and FakeGemini (the Developer API's legacy
path, reference gemini-image.md §10).

Each fake chooses its own scenario names; ``outcome`` says what a scenario means for a
``:predict`` call: an image answer (None), a google.rpc error, a proxy page, every image
filtered (``"filtered"``), all but the first filtered (``"partly_filtered"``), or no
prediction at all (``"empty"``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aiohttp import web

from tests.fakes import gemini_failures, imagen_wire
from tests.fakes.gemini_wire import GeminiModel, GenerateRequest, RpcError, invalid_json
from tests.fakes.images import ImageFormat, encoded_image_b64
from tests.fakes.proxy_pages import ProxyAnswer
from tests.fakes.server import (
    FakeUpstream,
    RecordedRequest,
    Rejection,
    drop_connection,
    proxy_response,
    send_truncated,
    splice_images,
)

JSON_TYPE = "application/json"
PredictOutcome = RpcError | ProxyAnswer | Literal["filtered", "partly_filtered", "empty"] | None


async def serve_predict(
    fake: FakeUpstream,
    request: web.Request,
    record: RecordedRequest,
    model: imagen_wire.ImagenModel,
    body: Mapping[str, Any] | None,
    key: str,
    *,
    developer_api: bool,
    outcome: Callable[[str], PredictOutcome],
) -> web.StreamResponse:
    """Answer one :predict call: validate, choose the scenario once, answer it."""
    if body is None:
        raise _rejection(fake, invalid_json())
    try:
        parsed = imagen_wire.parse_predict(body, model, developer_api=developer_api)
    except RpcError as error:
        raise _rejection(fake, error) from None
    scenario = fake.choose(request, record, model.name, key, images=parsed.sample_count)
    await fake.wait(scenario, model.name)
    if scenario == "disconnect":
        return drop_connection(request)
    result = outcome(scenario)
    if isinstance(result, ProxyAnswer):
        return proxy_response(result)
    if isinstance(result, RpcError):
        rejection = _rejection(fake, result)
        return web.Response(status=rejection.status, body=rejection.body, content_type=JSON_TYPE)
    count = parsed.sample_count
    kept = {None: count, "filtered": 0, "empty": 0, "partly_filtered": 1 if count > 1 else 0}
    filtered = 0 if result == "empty" else count - kept[result]
    fmt: ImageFormat = "jpeg" if scenario == "jpeg_output" else parsed.fmt
    width, height = (1024, 1024) if scenario == "wrong_size" else parsed.pixels
    doc = imagen_wire.predictions_doc(parsed, kept[result], filtered, f"image/{fmt}")
    image = encoded_image_b64(width, height, fmt)
    answer = splice_images(doc, [image] * kept[result], pretty=fake.pretty_json)
    if scenario == "truncated":
        return await send_truncated(request, answer, JSON_TYPE)
    return web.Response(body=answer, content_type=JSON_TYPE, charset="UTF-8")


def _rejection(fake: FakeUpstream, error: RpcError) -> Rejection:
    return Rejection(error.code, splice_images(error.doc(), pretty=fake.pretty_json))


# --- the Developer API's legacy :predict, for FakeGemini -------------------------------------


async def serve_developer_predict(
    fake: FakeUpstream,
    request: web.Request,
    record: RecordedRequest,
    model_name: str,
    body: Mapping[str, Any] | None,
    key: str,
    retry_delay: float,
) -> web.StreamResponse:
    """FakeGemini's ``POST /{version}/models/{imagen-model}:predict``.

    FakeGemini's scenarios keep their meaning: its error answers are sent as they are, its
    image blocks filter every image, and its image-less 200s have no prediction at all.
    """
    model = imagen_wire.MODELS[model_name]
    version = request.path.split("/", 2)[1]

    def outcome(scenario: str) -> PredictOutcome:
        if scenario in gemini_failures.IMAGE_SCENARIOS:
            return None
        if scenario in ("image_safety", "prompt_blocked"):
            return "filtered"
        if scenario in ("text_only", "no_image", "empty_candidates"):
            return "empty"
        # The Gemini failure builders want a model and a request; only the names matter here.
        stand_in = GeminiModel(model_name, model_name, imagen_wire.RATIOS, (), {"1K": 0}, 0)
        ctx = gemini_failures.FailureContext(
            stand_in,
            GenerateRequest(1, 0, frozenset(), "1:1", "1K"),
            version,
            False,
            retry_delay,
            request.host,
            secrets.token_urlsafe(16)[:22],
        )
        failure = gemini_failures.failure(scenario, ctx)
        return failure if isinstance(failure, RpcError | ProxyAnswer) else "empty"

    return await serve_predict(
        fake, request, record, model, body, key, developer_api=True, outcome=outcome
    )


def developer_api_serves(model_name: str) -> bool:
    model = imagen_wire.MODELS.get(model_name)
    return model is not None and model.developer_api
