"""FakeOpenAI: a local OpenAI Images API server (reference openai-images.md)::

    POST /v1/images/generations   JSON
    POST /v1/images/edits         multipart (image | image[]..., mask, text scalars) or JSON
    GET  /v1/models

Run alone: ``python -m tests.fakes.openai --port 9002 [--hold-seconds 3] [--keys k1,k2]
[--fail-rate 0.7 --fail-scenario unavailable --seed 1] [--mode NAME] [--compact-json]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.hdrs import CONTENT_TYPE

from tests.fakes import openai_wire as wire
from tests.fakes.images import encoded_image_b64
from tests.fakes.openai_failures import (
    INSTANT_SCENARIOS,
    SCENARIOS,
    ErrorAnswer,
    FailureContext,
    failure,
)
from tests.fakes.server import (
    STARTED_AT,
    FakeUpstream,
    FormValue,
    RecordedRequest,
    Rejection,
    UploadedFile,
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
REQUEST_ID = web.RequestKey("openai_request_id", str)
_FILE_FIELDS = frozenset({"image", "image[]", "mask", "markup"})
_MODEL_CREATED = 1_745_000_000
_Fields = TypeVar("_Fields")


class FakeOpenAI(FakeUpstream):
    """The OpenAI Images API with scenario control (see README.md).

    Constructor arguments are FakeUpstream's. ``retry_after`` (seconds) feeds the headers and
    message of ``rate_limited``. Every answer in OpenAI's own format carries ``x-request-id``,
    the ``x-ratelimit-*`` sets and ``openai-processing-ms``; proxy HTML pages carry none.
    """

    scenario_names = SCENARIOS
    instant_scenarios = INSTANT_SCENARIOS
    quota_zero_scenario = "insufficient_quota"

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
        self.retry_after = 1.0
        # Streamed answers: wait this long before each event after the first, as a model
        # refining its image would; 0 sends the whole stream at once.
        self.stream_gap_seconds = 0.0

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/images/generations", self._generations)
        app.router.add_post("/v1/images/edits", self._edits)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._invalid_url)
        app.on_response_prepare.append(self._add_openai_headers)

    # --- routes ---------------------------------------------------------------------------------

    async def _generations(self, request: web.Request) -> web.StreamResponse:
        body = decode_json_object(await request.read())
        record = self.begin(request, body)
        key = self._authenticate(request)
        if body is None:
            raise self._rejection(wire.invalid_json())
        parsed = self._validated(wire.parse_generation, body)
        return await self._answer(request, record, key, parsed)

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        if request.content_type == "multipart/form-data":
            form = await self._read_form(request)
            record = self.begin(request, None, form)
            key = self._authenticate(request)
            parsed = self._validated(wire.parse_edit_form, form)
        else:
            body = decode_json_object(await request.read())
            record = self.begin(request, body)
            key = self._authenticate(request)
            if body is None:
                raise self._rejection(wire.invalid_json())
            parsed = self._validated(wire.parse_edit_json, body)
        return await self._answer(request, record, key, parsed)

    async def _models(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        self._authenticate(request)
        data = [
            {"id": name, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}
            for name in sorted(wire.ACTIVE_MODELS)
        ]
        return self._json(200, {"object": "list", "data": data})

    async def _invalid_url(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        error = wire.ApiError(404, f"Invalid URL ({request.method} {request.path})")
        return self._json(404, error.doc())

    # --- answers --------------------------------------------------------------------------------

    async def _answer(
        self, request: web.Request, record: RecordedRequest, key: str, parsed: wire.ImagesRequest
    ) -> web.StreamResponse:
        scenario = self.choose(request, record, parsed.model, key, images=parsed.n)
        await self.wait(scenario, parsed.model)
        if scenario == "disconnect":
            return drop_connection(request)
        ctx = _failure_context(request, record, parsed, self.retry_after)
        outcome = failure(scenario, ctx)
        if isinstance(outcome, ErrorAnswer):
            return self._json(outcome.error.status, outcome.error.doc(), outcome.headers)
        if outcome is not None:
            return proxy_response(outcome)
        body, content_type = self._image_body(scenario, parsed)
        if scenario == "truncated":
            return await send_truncated(request, body, content_type)
        if parsed.stream and self.stream_gap_seconds > 0:
            return await self._paced_stream(request, body)
        return web.Response(body=body, content_type=content_type)

    async def _paced_stream(self, request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = SSE_TYPE
        await response.prepare(request)
        events = [event for event in body.split(b"\n\n") if event]
        for index, event in enumerate(events):
            if index:
                await asyncio.sleep(self.stream_gap_seconds)
            await response.write(event + b"\n\n")
        await response.write_eof()
        return response

    def _image_body(self, scenario: str, parsed: wire.ImagesRequest) -> tuple[bytes, str]:
        # wrong_size serves 1024x1024 bytes while the JSON still names the size asked for.
        width, height = (1024, 1024) if scenario == "wrong_size" else parsed.pixels
        transparent = parsed.effective_background == "transparent"
        image = encoded_image_b64(width, height, parsed.output_format, transparent)
        created = int(time.time())
        if parsed.stream:
            events = wire.stream_events(parsed, created)
            body = b"".join(sse_event(splice_images(d, [image]), event) for event, d in events)
            return body, SSE_TYPE
        count = 0 if scenario == "empty_data" else parsed.n
        doc = wire.images_response(parsed, created, count)
        return splice_images(doc, [image] * count, pretty=self.pretty_json), JSON_TYPE

    def _json(
        self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        body = splice_images(doc, pretty=self.pretty_json)
        return web.Response(status=status, body=body, content_type=JSON_TYPE, headers=headers)

    def _rejection(self, error: wire.ApiError) -> Rejection:
        return Rejection(error.status, splice_images(error.doc(), pretty=self.pretty_json))

    async def _add_openai_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        # HTML pages come from a proxy in front of OpenAI, which adds none of OpenAI's headers.
        if response.content_type == "text/html":
            return
        started = request.get(STARTED_AT, time.monotonic())
        elapsed_ms = max(1, round((time.monotonic() - started) * 1000))
        defaults = {
            "x-request-id": _request_id(request),
            "openai-processing-ms": str(elapsed_ms),
            "openai-version": "2020-10-01",
            "openai-organization": "user-fake",
            "x-ratelimit-limit-requests": "50",
            "x-ratelimit-remaining-requests": "49",
            "x-ratelimit-reset-requests": "1.2s",
            "x-ratelimit-limit-tokens": "100000",
            "x-ratelimit-remaining-tokens": "95000",
            "x-ratelimit-reset-tokens": "3s",
        }
        for name, value in defaults.items():
            response.headers.setdefault(name, value)

    # --- request checks -------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> str:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise self._rejection(wire.missing_api_key())
        if not self.key_accepted(key):
            raise self._rejection(wire.incorrect_api_key(key))
        return key

    def _validated(
        self, parse: Callable[[_Fields], wire.ImagesRequest], fields: _Fields
    ) -> wire.ImagesRequest:
        try:
            return parse(fields)
        except wire.ApiError as error:
            raise self._rejection(error) from None

    async def _read_form(self, request: web.Request) -> dict[str, list[FormValue]]:
        form: dict[str, list[FormValue]] = {}
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise ValueError("nested multipart")
                form.setdefault(part.name or "", []).append(await _form_value(part))
        except ValueError as error:
            raise self._rejection(
                wire.ApiError(400, f"Malformed multipart body: {error}")
            ) from None
        return form


async def _form_value(part: BodyPartReader) -> FormValue:
    data = bytes(await part.read())
    if part.filename is not None or part.name in _FILE_FIELDS:
        return UploadedFile(part.filename, part.headers.get(CONTENT_TYPE), data)
    return data.decode("utf-8", errors="replace")


def _failure_context(
    request: web.Request, record: RecordedRequest, parsed: wire.ImagesRequest, retry_after: float
) -> FailureContext:
    # A refusal by the per-key quota tells the real wait and usage; else the fixed defaults.
    ctx = FailureContext(parsed.model, _request_id(request), retry_after, request.host)
    quota = record.quota
    if quota is None:
        return ctx
    return dataclasses.replace(
        ctx,
        retry_after=quota.retry_after,
        limit=quota.limit,
        used=quota.used,
        requested=quota.requested,
    )


def _request_id(request: web.Request) -> str:
    if REQUEST_ID not in request:
        request[REQUEST_ID] = "req_" + secrets.token_hex(16)
    return request[REQUEST_ID]


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(FakeOpenAI, "python -m tests.fakes.openai", argv)


if __name__ == "__main__":
    main()
