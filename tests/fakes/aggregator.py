"""FakeAggregator: an OpenAI-compatible relay (One API / New API style key pool, LiteLLM proxy,
a local server) in front of OpenAI and Gemini image models::

    POST {prefix}{images_path}   JSON      (default /v1/images/generations)
    POST {prefix}{edits_path}    multipart (default /v1/images/edits)
    GET  /files/{name}                     images answered by URL

``models`` maps the relay's model names to the upstream models behind them. Requests for an
OpenAI model are validated by FakeOpenAI's rules (after the relay renames the model and takes
``response_format`` for itself). Requests for a Gemini model take the relay's Gemini fields,
``aspect_ratio`` (ten ratios) and ``image_size`` (1K/2K/4K; gemini-2.5-flash-image ignores it),
ignore ``size`` and the OpenAI-only fields, as such relays do, and answer PNG at Gemini's pixel
table; ``n`` must be 1 and masks are refused. An unknown model gets New API's "no available
channel" 503.

Quirks, set in the constructor: ``auth_header``/``auth_scheme`` (``scheme=""``: the header is
the key alone); ``delivery``: ``b64_json`` (default; ``response_format: "url"`` gets URLs),
``url`` (URLs unless ``response_format: "b64_json"`` is sent) or ``url_only``; ``rejects``:
fields answered with OpenAI's 400 ``unknown_parameter``, as a strict upstream behind the relay
does. Relays write compact JSON (Go's encoder), so ``pretty_json`` defaults to False.

| scenario | answer |
|---|---|
| ``ok``, ``slow``, ``wrong_size``, ``empty_data`` (``data: []``), ``truncated``, ``disconnect`` | as FakeOpenAI |
| ``url_answer`` | 200 whose ``data[0]`` has ``url`` instead of ``b64_json``, whatever the delivery |
| ``expired_url`` | 200 with a ``url`` that answers 404 |
| ``rate_limited`` *instant* | OpenAI's 429 passed through, with ``retry-after`` |
| ``litellm_rate_limited`` *instant* | LiteLLM's 429 ``{"error": {"message": "litellm.RateLimitError: ...", "code": "429"}}`` |
| ``moderation_blocked`` *instant* | OpenAI's 400 passed through |
| ``get_channel_failed`` *instant* | 500 New API ``get_channel_failed`` (proxy_pages) |
| ``no_channel`` *instant* | 503 "当前分组 default 下对于模型 X 无可用渠道" |
| ``saturated`` *instant* | 429 "当前分组上游负载已饱和，请稍后再试" (status unverified) |
| ``insufficient_user_quota`` *instant* | 403 "用户额度不足, 剩余额度: ＄0.000000", code ``insufficient_user_quota`` |
| ``invalid_token`` *instant* | 401 "无效的令牌" |
| ``upstream_error`` | 500 "bad response status code 500", code ``bad_response_status_code`` |
| ``local_server_error`` | 500 ``{"detail": "CUDA out of memory..."}`` (a FastAPI server) |
| ``bad_gateway``, ``cf_524`` | the proxy pages |

New API's exact wordings and statuses are from memory of its source (unverified).
Run alone: ``python -m tests.fakes.aggregator --port 9004 [...]`` (FakeUpstream's options).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.fakes import openai_failures, openai_wire, proxy_pages
from tests.fakes.gemini_wire import TEN_RATIOS, pixel_size
from tests.fakes.images import ImageFormat, encoded_image, encoded_image_b64
from tests.fakes.openai import FakeOpenAI, _failure_context
from tests.fakes.openai_failures import ErrorAnswer, FailureContext
from tests.fakes.proxy_pages import ProxyAnswer
from tests.fakes.server import (
    FormValue,
    RecordedRequest,
    Rejection,
    UploadedFile,
    decode_json_object,
    drop_connection,
    image_slot,
    proxy_response,
    run_cli,
    send_truncated,
    splice_images,
)

Delivery = Literal["b64_json", "url", "url_only"]
DEFAULT_MODELS: Mapping[str, str] = {
    "gpt-image-1.5": "gpt-image-1.5",
    "gpt-image-2": "gpt-image-2",
    "gemini-2.5-flash-image": "gemini-2.5-flash-image",
    "gemini-3-pro-image-preview": "gemini-3-pro-image-preview",
}
GEMINI_TIERS = ("1K", "2K", "4K")
_FILE_FIELDS = ("image", "image[]", "mask")


def relay_error(status: int, message: str, code: str = "") -> ErrorAnswer:
    """A New API error body: ``{"error": {message, type: new_api_error, param, code}}``."""
    error = openai_wire.ApiError(status, message, error_type="new_api_error", param="", code=code)
    return ErrorAnswer(error, {})


def no_channel(model: str) -> ErrorAnswer:
    return relay_error(503, f"当前分组 default 下对于模型 {model} 无可用渠道", "model_not_found")


def _litellm_rate_limited(ctx: FailureContext) -> ErrorAnswer:
    error = openai_wire.ApiError(
        429,
        f"litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for "
        f"{ctx.model}. Received Model Group={ctx.model}",
        error_type="None",
        param="None",
        code="429",
    )
    return ErrorAnswer(error, {"retry-after": "1"})


def _local_server_error(ctx: FailureContext) -> ProxyAnswer:
    body = orjson.dumps({"detail": "CUDA out of memory. Tried to allocate 2.00 GiB"})
    return ProxyAnswer(500, body, "application/json")


_BUILDERS: dict[str, Callable[[FailureContext], ErrorAnswer | ProxyAnswer | None]] = {
    "rate_limited": lambda ctx: openai_failures.failure("rate_limited", ctx),
    "moderation_blocked": lambda ctx: openai_failures.failure("moderation_blocked", ctx),
    "litellm_rate_limited": _litellm_rate_limited,
    "get_channel_failed": lambda ctx: proxy_pages.new_api_channel_failed(),
    "no_channel": lambda ctx: no_channel(ctx.model),
    "saturated": lambda ctx: relay_error(429, "当前分组上游负载已饱和，请稍后再试"),
    "insufficient_user_quota": lambda ctx: relay_error(
        403, "用户额度不足, 剩余额度: ＄0.000000", "insufficient_user_quota"
    ),
    "invalid_token": lambda ctx: relay_error(401, "无效的令牌"),
    "upstream_error": lambda ctx: relay_error(
        500, "bad response status code 500", "bad_response_status_code"
    ),
    "local_server_error": _local_server_error,
    "bad_gateway": lambda ctx: proxy_pages.nginx_502(),
    "cf_524": lambda ctx: proxy_pages.cloudflare_524(ctx.host),
}
IMAGE_SCENARIOS = frozenset({*openai_failures.IMAGE_SCENARIOS, "url_answer", "expired_url"})
SCENARIOS = frozenset({*_BUILDERS, *IMAGE_SCENARIOS, "disconnect"})
INSTANT_SCENARIOS = frozenset(
    {"rate_limited", "litellm_rate_limited", "moderation_blocked", "get_channel_failed",
     "no_channel", "saturated", "insufficient_user_quota", "invalid_token"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Job:
    """What the relay will answer with: ``n`` images of one size and format."""

    model: str  # the relay's model name
    n: int
    width: int
    height: int
    fmt: ImageFormat
    transparent: bool
    response_format: str | None
    openai: openai_wire.ImagesRequest | None = None  # set for OpenAI-backed models


class FakeAggregator(FakeOpenAI):
    """An OpenAI-compatible relay with configurable quirks (see the module docstring)."""

    scenario_names = SCENARIOS
    instant_scenarios = INSTANT_SCENARIOS
    quota_zero_scenario = "insufficient_user_quota"

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        hold_seconds: float = 0.0,
        record: bool = True,
        pretty_json: bool = False,
        models: Mapping[str, str] = DEFAULT_MODELS,
        prefix: str = "/v1",
        images_path: str = "/images/generations",
        edits_path: str = "/images/edits",
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        delivery: Delivery = "b64_json",
        rejects: Iterable[str] = (),
    ) -> None:
        self.models = dict(models)
        self.paths = (prefix + images_path, prefix + edits_path)
        self.auth_header, self.auth_scheme = auth_header, auth_scheme
        self.delivery: Delivery = delivery
        self.rejects = frozenset(rejects)
        self.files: dict[str, tuple[int, int, ImageFormat, bool]] = {}
        super().__init__(
            keys=keys, hold_seconds=hold_seconds, record=record, pretty_json=pretty_json
        )

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.paths[0], self._relay_generations)
        app.router.add_post(self.paths[1], self._relay_edits)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_route("*", "/{tail:.*}", self._invalid_url)
        app.on_response_prepare.append(self._add_relay_headers)

    # --- routes ---------------------------------------------------------------------------------

    async def _relay_generations(self, request: web.Request) -> web.StreamResponse:
        body = decode_json_object(await request.read())
        record = self.begin(request, body)
        key = self._relay_key(request)
        if body is None:
            raise self._rejection(openai_wire.invalid_json())
        job = self._job(body, images=[], mask=None, form=None)
        return await self._relay_answer(request, record, key, job)

    async def _relay_edits(self, request: web.Request) -> web.StreamResponse:
        form = await self._read_form(request)
        record = self.begin(request, None, form)
        key = self._relay_key(request)
        scalars = {
            name: values[-1]
            for name, values in form.items()
            if name not in _FILE_FIELDS and values and isinstance(values[-1], str)
        }
        images = [v for name in ("image", "image[]") for v in form.get(name, [])]
        masks = form.get("mask", [])
        job = self._job(scalars, images=images, mask=masks[-1] if masks else None, form=form)
        return await self._relay_answer(request, record, key, job)

    async def _file(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        found = self.files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="404 page not found")  # Go's default
        width, height, fmt, transparent = found
        data = encoded_image(width, height, fmt, transparent)
        return web.Response(body=data, content_type=f"image/{fmt}")

    # --- checks ---------------------------------------------------------------------------------

    def _relay_key(self, request: web.Request) -> str:
        value = request.headers.get(self.auth_header, "").strip()
        if self.auth_scheme:
            scheme, _, value = value.partition(" ")
            if scheme.lower() != self.auth_scheme.lower():
                value = ""
        key = value.strip()
        if not key:
            raise self._relay_rejection(relay_error(401, "未提供令牌"))
        if not self.key_accepted(key):
            raise self._relay_rejection(relay_error(401, "无效的令牌"))
        return key

    def _job(
        self,
        fields: Mapping[str, Any],
        *,
        images: list[FormValue],
        mask: FormValue | None,
        form: Mapping[str, list[FormValue]] | None,
    ) -> Job:
        for name in fields:
            if name in self.rejects:
                raise self._rejection(
                    openai_wire.ApiError(
                        400,
                        f"Unrecognized request argument supplied: {name}",
                        param=name,
                        code="unknown_parameter",
                    )
                )
        model = str(fields.get("model") or "")
        upstream = self.models.get(model)
        if upstream is None:
            raise self._relay_rejection(no_channel(model))
        response_format = fields.get("response_format")
        if response_format not in (None, "url", "b64_json"):
            raise self._rejection(
                openai_wire.invalid_enum("response_format", response_format, ("url", "b64_json"))
            )
        if upstream.startswith("gemini-"):
            return self._gemini_job(model, upstream, fields, images, mask, response_format)
        # The relay takes response_format for itself and renames the model for the upstream.
        rest = {k: v for k, v in fields.items() if k != "response_format"}
        if form is None:
            parsed = self._validated(openai_wire.parse_generation, {**rest, "model": upstream})
        else:
            files = {k: v for k, v in form.items() if k in _FILE_FIELDS}
            texts = {k: [v] for k, v in rest.items()}
            parsed = self._validated(
                openai_wire.parse_edit_form, {**texts, **files, "model": [upstream]}
            )
        width, height = parsed.pixels
        transparent = parsed.effective_background == "transparent"
        return Job(
            model, parsed.n, width, height, parsed.output_format, transparent,
            response_format, parsed,
        )  # fmt: skip

    def _gemini_job(
        self,
        model: str,
        upstream: str,
        fields: Mapping[str, Any],
        images: list[FormValue],
        mask: FormValue | None,
        response_format: Any,
    ) -> Job:
        if not isinstance(fields.get("prompt"), str) or not fields["prompt"]:
            raise self._rejection(openai_wire.missing_parameter("prompt"))
        if str(fields.get("n", 1)) != "1":
            raise self._rejection(openai_wire.bad_value("n", f"n must be 1 for {model}."))
        if mask is not None:
            raise self._rejection(openai_wire.bad_value("mask", f"{model} does not take a mask."))
        if any(not isinstance(image, UploadedFile) for image in images):
            raise self._rejection(openai_wire.bad_value("image", "image must be a file."))
        ratio = str(fields.get("aspect_ratio", "1:1"))
        if ratio not in TEN_RATIOS:
            raise self._rejection(openai_wire.invalid_enum("aspect_ratio", ratio, TEN_RATIOS))
        tier = str(fields.get("image_size", "1K"))
        if tier not in GEMINI_TIERS:
            raise self._rejection(openai_wire.invalid_enum("image_size", tier, GEMINI_TIERS))
        if upstream == "gemini-2.5-flash-image":
            tier = "1K"  # it ignores imageSize
        width, height = pixel_size(ratio, tier)
        return Job(model, 1, width, height, "png", False, response_format)

    # --- answers --------------------------------------------------------------------------------

    async def _relay_answer(
        self, request: web.Request, record: RecordedRequest, key: str, job: Job
    ) -> web.StreamResponse:
        scenario = self.choose(request, record, job.model, key, images=job.n)
        await self.wait(scenario, job.model)
        if scenario == "disconnect":
            return drop_connection(request)
        builder = _BUILDERS.get(scenario)
        if builder is not None:
            outcome = builder(self._context(request, record, job))
            if isinstance(outcome, ErrorAnswer):
                return self._json(outcome.error.status, outcome.error.doc(), outcome.headers)
            if outcome is not None:
                return proxy_response(outcome)
        body = self._images_body(request, scenario, job)
        if scenario == "truncated":
            return await send_truncated(request, body, "application/json")
        return web.Response(body=body, content_type="application/json")

    def _context(self, request: web.Request, record: RecordedRequest, job: Job) -> FailureContext:
        if job.openai is not None:
            return _failure_context(request, record, job.openai, self.retry_after)
        return FailureContext(job.model, secrets.token_hex(8), self.retry_after, request.host)

    def _images_body(self, request: web.Request, scenario: str, job: Job) -> bytes:
        width, height = (1024, 1024) if scenario == "wrong_size" else (job.width, job.height)
        count = 0 if scenario == "empty_data" else job.n
        doc: dict[str, Any] = {"created": int(time.time())}
        images: list[bytes] = []
        if self._wants_url(scenario, job):
            doc["data"] = []
            for _ in range(count):
                name = f"{secrets.token_hex(8)}.{job.fmt}"
                if scenario != "expired_url":
                    self.files[name] = (width, height, job.fmt, job.transparent)
                doc["data"].append({"url": f"http://{request.host}/files/{name}"})
        else:
            images = [encoded_image_b64(width, height, job.fmt, job.transparent)] * count
            doc["data"] = [{"b64_json": image_slot(i)} for i in range(count)]
        if job.openai is not None:
            doc["usage"] = openai_wire.usage(job.openai)
        return splice_images(doc, images, pretty=self.pretty_json)

    def _wants_url(self, scenario: str, job: Job) -> bool:
        if scenario in ("url_answer", "expired_url") or self.delivery == "url_only":
            return True
        if self.delivery == "url":
            return job.response_format != "b64_json"
        return job.response_format == "url"

    def _relay_rejection(self, answer: ErrorAnswer) -> Rejection:
        return self._rejection(answer.error)

    async def _add_relay_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if response.content_type != "text/html":
            response.headers.setdefault("X-Oneapi-Request-Id", secrets.token_hex(12))


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(FakeAggregator, "python -m tests.fakes.aggregator", argv)


if __name__ == "__main__":
    main()
