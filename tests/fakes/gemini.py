"""FakeGemini: a local Gemini Developer API server for image models (reference gemini-image.md).

Serves ``/v1beta`` and ``/v1`` (google-genai 3.x defaults to v1)::

    POST /{version}/models/{model}:generateContent
    POST /{version}/models/{model}:streamGenerateContent[?alt=sse]
    POST /{version}/models/{imagen-model}:predict         (Imagen, legacy: tests/fakes/imagen.py)
    GET  /{version}/models[?pageSize=&pageToken=]
    GET  /{version}/models/{model}

Run alone: ``python -m tests.fakes.gemini --port 9001 [--hold-seconds 3] [--keys k1,k2]
[--fail-rate 0.7 --fail-scenario unavailable --seed 1] [--mode NAME] [--compact-json]``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from tests.fakes import gemini_wire as wire
from tests.fakes.gemini_failures import (
    INSTANT_SCENARIOS,
    RATE_LIMIT_QUOTA_VALUE,
    SCENARIOS,
    FailureContext,
    failure,
)
from tests.fakes.imagen import developer_api_serves, serve_developer_predict
from tests.fakes.images import ImageFormat, encoded_image_b64
from tests.fakes.proxy_pages import ProxyAnswer
from tests.fakes.server import (
    FakeUpstream,
    Rejection,
    decode_json_object,
    drop_connection,
    proxy_response,
    run_cli,
    send_truncated,
    splice_images,
    sse_event,
)

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream"
_MODEL_METHODS = ["generateContent", "countTokens", "batchGenerateContent"]


class FakeGemini(FakeUpstream):
    """The Gemini Developer API, image models only, with scenario control (see README.md).

    Constructor arguments are FakeUpstream's. ``retry_delay`` (seconds) feeds RetryInfo and the
    message of the 429 quota scenarios. Streamed events are always compact single lines.
    """

    scenario_names = SCENARIOS
    instant_scenarios = INSTANT_SCENARIOS
    quota_zero_scenario = "quota_zero"

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        hold_seconds: float = 0.0,
        record: bool = True,
        pretty_json: bool = True,
    ) -> None:
        super().__init__(
            keys=keys, hold_seconds=hold_seconds, record=record, pretty_json=pretty_json
        )
        self.retry_delay = 2.0

    def _add_routes(self, app: web.Application) -> None:
        for version in ("v1beta", "v1"):
            app.router.add_get(f"/{version}/models", self._list_models)
            # One {tail} segment holds "model:method"; aiohttp cannot route on the colon itself.
            app.router.add_get(f"/{version}/models/{{tail}}", self._get_model)
            app.router.add_post(f"/{version}/models/{{tail}}", self._call_model)

    # --- routes ---------------------------------------------------------------------------------

    async def _list_models(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        self._authenticate(request, array=False)
        size, offset = self._page(request)
        names = list(wire.MODELS)
        doc: dict[str, Any] = {
            "models": [_model_entry(wire.MODELS[name]) for name in names[offset : offset + size]]
        }
        if offset + size < len(names):
            doc["nextPageToken"] = str(offset + size)
        return self._json(200, doc)

    async def _get_model(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        self._authenticate(request, array=False)
        model = self._model(request.match_info["tail"], _version(request), array=False)
        return self._json(200, _model_entry(model))

    async def _call_model(self, request: web.Request) -> web.StreamResponse:
        name, _, method = request.match_info["tail"].partition(":")
        streaming = method == "streamGenerateContent"
        sse = streaming and request.query.get("alt") == "sse"
        # Without alt=sse the stream is a JSON array, and errors come wrapped in one too.
        array = streaming and not sse
        body = decode_json_object(await request.read())
        record = self.begin(request, body)
        key = self._authenticate(request, array)
        if method == "predict" and developer_api_serves(name):  # Imagen, legacy (reference §10)
            return await serve_developer_predict(
                self, request, record, name, body, key, self.retry_delay
            )
        model = self._model(name, _version(request), array)
        if method not in ("generateContent", "streamGenerateContent"):
            raise self._rejection(wire.RpcError(404, "NOT_FOUND", "Method not found."), array)
        if body is None:
            raise self._rejection(wire.invalid_json(), array)
        try:
            generate = wire.parse_generate(body, model)
        except wire.RpcError as error:
            raise self._rejection(error, array) from None
        scenario = self.choose(request, record, name, key)
        await self.wait(scenario, name)
        if scenario == "disconnect":
            return drop_connection(request)
        # A refusal by the per-key quota tells the real wait and limit; else the fixed defaults.
        quota = record.quota
        ctx = FailureContext(
            model,
            generate,
            _version(request),
            streaming,
            quota.retry_after if quota else self.retry_delay,
            request.host,
            _rid(),
            quota_value=str(quota.limit) if quota else RATE_LIMIT_QUOTA_VALUE,
        )
        outcome = failure(scenario, ctx)
        if isinstance(outcome, wire.RpcError | ProxyAnswer):
            return self._failure_response(outcome, array)
        if outcome is not None:
            answer, content_type = self._render([(outcome, ())], streaming, sse)
        else:
            answer, content_type = self._image_body(scenario, model, generate, streaming, sse)
        if scenario == "truncated":
            return await send_truncated(request, answer, content_type)
        return web.Response(body=answer, content_type=content_type, charset="UTF-8")

    # --- answers --------------------------------------------------------------------------------

    def _image_body(
        self,
        scenario: str,
        model: wire.GeminiModel,
        generate: wire.GenerateRequest,
        streaming: bool,
        sse: bool,
    ) -> tuple[bytes, str]:
        fmt: ImageFormat = "jpeg" if scenario == "jpeg_output" else "png"
        width, height = (1024, 1024) if scenario == "wrong_size" else generate.pixels
        image = encoded_image_b64(width, height, fmt) if generate.wants_image else b""
        mime = f"image/{fmt}"
        response_id = _rid()
        if streaming:
            chunks = wire.success_chunks(model, generate, mime, response_id)
        else:
            chunks = [wire.success_doc(model, generate, mime, response_id)]
        return self._render([(chunk, _images_in(chunk, image)) for chunk in chunks], streaming, sse)

    def _render(
        self,
        documents: Sequence[tuple[dict[str, Any], Sequence[bytes]]],
        streaming: bool,
        sse: bool,
    ) -> tuple[bytes, str]:
        """The body for these documents: one JSON object, an SSE stream, or a JSON array."""
        if sse:
            # The SDK splits events on \r\n\r\n; each event is one compact line.
            events = (sse_event(splice_images(d, i), newline=b"\r\n") for d, i in documents)
            return b"".join(events), SSE_TYPE
        rendered = [splice_images(d, i, pretty=self.pretty_json) for d, i in documents]
        if streaming:
            return b"[" + b",\r\n".join(rendered) + b"]", JSON_TYPE
        return rendered[0], JSON_TYPE

    def _failure_response(self, outcome: wire.RpcError | ProxyAnswer, array: bool) -> web.Response:
        if isinstance(outcome, ProxyAnswer):
            return proxy_response(outcome)
        rejection = self._rejection(outcome, array)
        return web.Response(status=rejection.status, body=rejection.body, content_type=JSON_TYPE)

    def _json(self, status: int, doc: dict[str, Any]) -> web.Response:
        body = splice_images(doc, pretty=self.pretty_json)
        return web.Response(status=status, body=body, content_type=JSON_TYPE, charset="UTF-8")

    def _rejection(self, error: wire.RpcError, array: bool) -> Rejection:
        body = splice_images(error.doc(), pretty=self.pretty_json)
        return Rejection(error.code, b"[" + body + b"]" if array else body)

    # --- request checks -------------------------------------------------------------------------

    def _authenticate(self, request: web.Request, array: bool) -> str:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            raise self._rejection(wire.api_key_missing(), array)
        if not self.key_accepted(key):
            raise self._rejection(wire.api_key_invalid(), array)
        return key

    def _model(self, name: str, version: str, array: bool) -> wire.GeminiModel:
        model = wire.MODELS.get(name)
        if model is None:
            raise self._rejection(wire.model_not_found(name, version), array)
        return model

    def _page(self, request: web.Request) -> tuple[int, int]:
        try:
            size = int(request.query.get("pageSize") or 50)
            offset = int(request.query.get("pageToken") or 0)
        except ValueError:
            raise self._rejection(
                wire.invalid_argument("Invalid page token or page size."), array=False
            ) from None
        return max(1, min(size, 1000)), max(0, offset)


def _images_in(doc: dict[str, Any], image: bytes) -> Sequence[bytes]:
    """The image to splice into one document, if that document holds the image slot."""
    candidates = doc.get("candidates") or []
    for entry in candidates:
        for part in entry.get("content", {}).get("parts", []):
            if "inlineData" in part:
                return (image,)
    return ()


def _model_entry(model: wire.GeminiModel) -> dict[str, Any]:
    # Field names from google-genai's Model converter; the values are illustrative (reference §6).
    return {
        "name": f"models/{model.name}",
        "version": "2.0",
        "displayName": model.display_name,
        "description": f"{model.display_name}: Gemini image generation and editing model.",
        "inputTokenLimit": 65536 if model.sizes else 32768,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": _MODEL_METHODS,
        "temperature": 1,
        "maxTemperature": 2,
        "topP": 0.95,
        "topK": 64,
        "thinking": bool(model.thoughts_tokens),
    }


def _version(request: web.Request) -> str:
    return request.path.split("/", 2)[1]


def _rid() -> str:
    # Real responseIds look like 22 URL-safe characters ("mAitaK7WIN6yz7IP-6vS0QY").
    return secrets.token_urlsafe(16)[:22]


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(FakeGemini, "python -m tests.fakes.gemini", argv)


if __name__ == "__main__":
    main()
