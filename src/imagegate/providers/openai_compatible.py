"""OpenAI-compatible upstreams: any server speaking OpenAI's Images API (reference
openai-images.md) — key-pooling relays (One API / New API), OpenRouter-style relays, the LiteLLM
proxy, local servers. Body, answer and failures go through providers/openai.py's functions;
what relays do differently is set per deployment in `options`:

- `images_path` (default `/images/generations`), `edits_path` (default `/images/edits`):
  appended to `base_url`.
- `auth_header` (default `Authorization`), `auth_scheme` (default `Bearer`; `""` sends the key
  alone, e.g. `auth_header: x-api-key, auth_scheme: ""`). Without a configured key no auth
  header is sent (local servers; the kind needs no key).
- `extra_headers`: sent with every request (OpenRouter's `HTTP-Referer`, `X-Title`, ...).
- `extra_body`: merged into every request body beneath the request's own fields (the request
  wins); in edits they are text parts, objects as JSON.
- `response_format`: unset (default: none is sent; `b64_json` and `url` answers are both taken),
  `b64_json` (sent explicitly, for relays that answer with URLs unless asked; OpenAI itself
  rejects it for GPT image models, hence not the default) or `url`.
- `drop_fields`: body fields the relay rejects. They are left out and each one the request
  carried is written in the result's notes, never dropped silently; capabilities shrink for
  the ones the router checks (`n` → one image per call, `quality` → auto only, `background` →
  no transparency, `output_format` → png, which the gateway transcodes from).
- `size_style`: `WxH` (default, OpenAI's `size`) or `aspect_ratio`: the fields
  `aspect_ratio` (`"16:9"`) and `image_size` (`"1K"`) instead of `size`, for relays fronting
  Gemini. A pixel size asked for becomes its nearest declared ratio and tier.

Capabilities come from the model catalog: this kind ships no models, so the operator declares
them in the config's `catalog: {openai-compatible: {<model>: {like: openai/gpt-image-1.5}}}`.
Without an entry the defaults are conservative: one image per call, the three standard sizes
(with `size_style: aspect_ratio`, Gemini's ten ratios at 1K), png, quality auto, one input
image, no mask, no transparent background.

Answers: `b64_json` (a `data:image/...;base64,` prefix inside it is tolerated) or `url` — a
URL (relative ones against `base_url`) is downloaded at once and held as base64, so clients never
see the relay's URL. Failures: relay bodies first — `get_channel_failed` / "no available
channel" → unavailable, "负载已饱和" (group saturated) → capacity, `insufficient_user_quota` and
other quota-exhausted codes → billing, 401 → auth, HTML pages by status — then OpenAI's own
classification for what the relay passed through. A 200 with `data: []` is `empty`.

A request's `seed` goes as the field `seed` (declare `seed: true` in the catalog for relays that
take it). Passthrough: `passthrough["openai"]` (OpenAI-only fields, as for OpenAI) and
`passthrough["openai-compatible"]` (any relay field, sent as given).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.geometry import Size, nearest_ratio, ratio_value, size_for_tier, tier_for
from imagegate.core.request import ImageRequest
from imagegate.core.result import ImageResult
from imagegate.providers import openai
from imagegate.providers._http import unstructured_failure
from imagegate.providers._queue import fetch_image
from imagegate.providers.multipart import new_boundary
from imagegate.providers.openai_failures import classify_failure as classify_openai

K = FailureKind
# b64_json, tolerating a data-URL prefix inside the string (it stays in the skeleton). The
# lookahead keeps a read that stops inside the prefix from matching without it: no image's
# base64 starts with "d" (PNG iVBOR, JPEG /9j/, WebP UklGR, GIF R0lGOD).
IMAGE_MARKER = re.compile(rb'"b64_json"\s*:\s*"(?:data:image/[\w.+-]+;base64,|(?=[^d]))')
GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

STANDARD_CAPABILITIES = Capabilities(
    max_n=1,
    sizes=openai.STANDARD_SIZES,
    aspect_ratios=("1:1", "3:2", "2:3"),
    resolutions=("1K",),
    output_formats=("png",),
    qualities=("auto",),
    max_input_images=1,
)
ASPECT_CAPABILITIES = dataclasses.replace(
    STANDARD_CAPABILITIES, sizes=None, aspect_ratios=GEMINI_RATIOS
)

# Relay bodies (New API / One API), matched in the lower-cased "code message".
_NO_CHANNEL = ("get_channel_failed", "no available channel", "无可用渠道")
_SATURATED = ("负载已饱和", "saturated")
_QUOTA_CODES = {
    "insufficient_user_quota",
    "pre_consume_token_quota_failed",
    "insufficient_quota",
}
_QUOTA_WORDS = ("额度不足", "quota is not enough", "insufficient quota", "quota exhausted")


class RelayOptions(BaseModel):
    """The deployment options this provider reads (others are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    images_path: str = "/images/generations"
    edits_path: str = "/images/edits"
    auth_header: str = Field("Authorization", min_length=1)
    auth_scheme: str = "Bearer"
    extra_headers: dict[str, str] = {}
    extra_body: dict[str, Any] = {}
    response_format: Literal["b64_json", "url"] | None = None
    drop_fields: tuple[str, ...] = ()
    size_style: Literal["WxH", "aspect_ratio"] = "WxH"


def options_of(deployment: Deployment) -> RelayOptions:
    """The options, checked; ConfigError names each option that is wrong."""
    where = f"deployments.{deployment.name}"
    problems = []
    if not deployment.base_url:
        problems.append(f"{where}: an openai-compatible provider needs base_url")
    try:
        options = RelayOptions.model_validate(dict(deployment.options))
    except ValidationError as exc:
        problems += [
            f"{where}.options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        ]
    if problems:
        raise ConfigError(problems)
    return options


def capabilities_for(options: RelayOptions, declared: Capabilities | None) -> Capabilities:
    """The catalog's (or config's) declaration, else the conservative defaults, shrunk for the
    fields the relay rejects."""
    caps = declared
    if caps is None:
        caps = (
            ASPECT_CAPABILITIES if options.size_style == "aspect_ratio" else STANDARD_CAPABILITIES
        )
    dropped = set(options.drop_fields)
    if "n" in dropped:
        caps = dataclasses.replace(caps, max_n=1)
    if "quality" in dropped:
        caps = dataclasses.replace(caps, qualities=("auto",))
    if "background" in dropped:
        caps = dataclasses.replace(caps, transparent_background=False)
    if "output_format" in dropped:
        caps = dataclasses.replace(caps, output_formats=("png",))
    return caps


def request_headers(
    options: RelayOptions, key: UpstreamKey | None, content_type: str
) -> dict[str, str]:
    headers = {**options.extra_headers, "Content-Type": content_type}
    if key is not None:
        scheme = options.auth_scheme.strip()
        headers[options.auth_header] = f"{scheme} {key.secret}" if scheme else key.secret
    return headers


def body_fields(
    request: ImageRequest, deployment: Deployment, caps: Capabilities, options: RelayOptions
) -> tuple[dict[str, Any], list[str]]:
    """(body fields, notes): OpenAI's fields with the relay's quirks applied; the notes say
    which fields the request carried that were left out (`drop_fields`)."""
    # Geometry is made here, for the declared capabilities rather than OpenAI's model table.
    # Relays answer whole: no `stream`, so no partial images asked (the final images come).
    plain = dataclasses.replace(
        request, size=None, aspect_ratio=None, resolution=None, partials=None
    )
    fields = openai.request_fields(plain, deployment)
    if options.size_style == "aspect_ratio":
        del fields["size"]
        fields.update(aspect_fields(request, caps))
    else:
        fields["size"] = size_text(request, caps)
    if request.seed is not None:
        # Not an OpenAI field: only sent when the catalog declares `seed` (many relays and local
        # servers take it); without the declaration the router never sends a seed here.
        fields["seed"] = request.seed
    if options.response_format is not None:
        fields["response_format"] = options.response_format
    fields = {**options.extra_body, **fields}
    fields.update(request.passthrough.get("openai-compatible", {}))
    notes = []
    for name in options.drop_fields:
        if name in fields:
            value = fields.pop(name)
            if name not in options.extra_body and not (name == "size" and value == "auto"):
                notes.append(
                    f"`{name}` ({value!r}) was not sent: the upstream rejects it"
                    " (option drop_fields)"
                )
    return fields, notes


def size_text(request: ImageRequest, caps: Capabilities) -> str:
    """OpenAI's `size`: the size asked for, else one made from aspect ratio and tier that the
    declared capabilities allow (the nearest declared size, or a size for the tier)."""
    if request.size is not None:
        return str(request.size)
    if request.aspect_ratio is None and request.resolution is None:
        return "auto"
    if caps.sizes and not caps.arbitrary_sizes:
        return nearest_size(caps.sizes, request.aspect_ratio or "1:1", request.resolution)
    size = size_for_tier(
        request.aspect_ratio,
        request.resolution,
        multiple=caps.size_multiple if caps.arbitrary_sizes else 16,
        max_edge=caps.max_edge,
        max_pixels=caps.max_pixels,
        max_short_edge=caps.max_short_edge,
    )
    return str(size)


def nearest_size(sizes: tuple[str, ...], ratio: str, tier: str | None) -> str:
    """The declared size closest to `ratio`, then closest in area to the tier's."""
    wanted = ratio_value(ratio)
    target = size_for_tier(ratio, tier)
    wanted_area = target.width * target.height

    def distance(text: str) -> tuple[float, float]:
        width, _, height = text.partition("x")
        size = Size(int(width), int(height))
        aspect_off = round(abs(math.log(size.aspect / wanted)), 3)
        return aspect_off, abs(math.log(size.width * size.height / wanted_area))

    return min(sizes, key=distance)


def aspect_fields(request: ImageRequest, caps: Capabilities) -> dict[str, str]:
    """`aspect_ratio` and `image_size` for relays fronting Gemini; nothing when the request
    leaves geometry to the model."""
    ratio, tier = request.aspect_ratio, request.resolution
    if request.size is not None:
        ratio = nearest_ratio(request.size.aspect, caps.aspect_ratios or GEMINI_RATIOS)
        tier = tier_for(request.size, caps.resolutions or ("1K",))
    fields = {}
    if ratio is not None:
        fields["aspect_ratio"] = ratio
    if tier is not None:
        fields["image_size"] = tier
    return fields


def build_generation(
    request: ImageRequest, deployment: Deployment, caps: Capabilities, options: RelayOptions
) -> tuple[str, bytes, list[str]]:
    """(url, JSON body, notes) of a generation."""
    fields, notes = body_fields(request, deployment, caps, options)
    return deployment.base_url + options.images_path, orjson.dumps(fields), notes


def build_edit(
    request: ImageRequest,
    deployment: Deployment,
    caps: Capabilities,
    options: RelayOptions,
    boundary: str,
) -> tuple[str, bytes, str, list[str]]:
    """(url, multipart body, content type, notes) of an edit, in OpenAI's multipart form."""
    fields, notes = body_fields(request, deployment, caps, options)
    texts = {
        name: orjson.dumps(value).decode() if isinstance(value, dict | list) else value
        for name, value in fields.items()
    }
    data, content_type = openai.edit_form(texts, request, boundary)
    return deployment.base_url + options.edits_path, data, content_type, notes


def image_urls(skeleton: Mapping[str, Any], base_url: str) -> list[str]:
    """The `url` of each `data` item (relative ones resolved against base_url)."""
    data = skeleton.get("data")
    if not isinstance(data, list):
        return []
    return [
        urllib.parse.urljoin(base_url + "/", item["url"])
        for item in data
        if isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]
    ]


def classify_failure(
    status: int, headers: Mapping[str, str], body: bytes, label: str
) -> UpstreamError:
    """Relay bodies first (channels, saturation, quota, key), then OpenAI's classification."""
    error = relay_error(body)
    if error is None:
        return unstructured_failure(status, body, label, "an OpenAI-style error")
    found = relay_failure(status, error, label)
    if found is not None:
        return found
    # Relays pass OpenAI's error object through; other shapes are put in it for the classifier.
    return openai.relabelled(
        classify_openai(status, headers, orjson.dumps({"error": error})), label
    )


def relay_failure(status: int, error: Mapping[str, Any], label: str) -> UpstreamError | None:
    """The kinds only relays signal: None when the body is not one of theirs."""
    message = str(error.get("message") or "")
    code = str(error.get("code") or "")
    text = f"{code} {message}".lower()
    common: dict[str, Any] = {"status": status, "provider_code": code, "provider_message": message}
    if any(word in text for word in _NO_CHANNEL):
        return UpstreamError(
            K.UNAVAILABLE,
            f"{label} has no working upstream channel for this model right now ({message[:120]});"
            " the relay's channels are disabled, failing or not configured for it",
            **common,
        )
    if any(word in text for word in _SATURATED):
        return UpstreamError(
            K.CAPACITY,
            f"{label}'s upstream group is saturated ({message[:120]}); back off and retry later",
            **common,
        )
    if (
        code in _QUOTA_CODES
        or status == 402
        or (status != 429 and any(word in text for word in _QUOTA_WORDS))
    ):
        return UpstreamError(
            K.BILLING,
            f"the account or token on {label} is out of quota ({message[:120]}); top it up on"
            " the relay",
            **common,
        )
    if status == 401:
        return UpstreamError(
            K.AUTH,
            f"{label} refused the key ({message[:120]}); check the key, and the options"
            " auth_header and auth_scheme",
            **common,
        )
    return None


def relay_error(body: bytes) -> dict[str, Any] | None:
    """The error object: OpenAI's `{"error": {...}}`, `{"error": "text"}`, or a top-level
    `message`/`detail` (LiteLLM, FastAPI servers); None when the body is none of these."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    for name in ("message", "detail"):
        if isinstance(parsed.get(name), str):
            return {"message": parsed[name], "code": parsed.get("code")}
    return None


def answer_without_image(skeleton: Mapping[str, Any], label: str) -> UpstreamError:
    """A 200 without images: a relay error sent with status 200, or an empty `data`."""
    error = skeleton.get("error")
    if isinstance(error, dict):
        found = relay_failure(200, error, label)
        if found is not None:
            return found
        message = str(error.get("message") or "")[:160]
        return UpstreamError(
            K.EMPTY,
            f"{label} answered 200 with an error instead of images: {message}",
            status=200,
            provider_message=message,
        )
    return openai.no_image(label)


class OpenAICompatibleProvider:
    kind: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str] = ""  # every relay has its own address
    needs_key: ClassVar[bool] = False  # some local servers take none

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.options = options_of(deployment)
        self.capabilities = capabilities_for(self.options, deployment.capabilities)
        self.label = f"{deployment.provider_name} (openai-compatible)"
        self._session = session

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        deployment, caps, options = self.deployment, self.capabilities, self.options
        if request.input_images:
            url, body, content_type, notes = build_edit(
                request, deployment, caps, options, new_boundary()
            )
        else:
            url, body, notes = build_generation(request, deployment, caps, options)
            content_type = "application/json"
        result = ImageResult(
            images=[],
            provider=self.kind,
            deployment=deployment.name,
            model=deployment.model,
            notes=notes,
        )
        label = self.label
        read = await openai.post_images(
            self._session,
            url,
            body,
            request_headers(options, key, content_type),
            result,
            request=request,
            ceiling=deployment.timeout_seconds,
            provider=label,
            classify=lambda status, headers, answer: classify_failure(
                status, headers, answer, label
            ),
            marker=IMAGE_MARKER,
        )
        if isinstance(read, ImageResult):
            return read
        skeleton = openai.whole_answer(read.body, result, label, IMAGE_MARKER)
        if result.images:
            return result
        urls = image_urls(skeleton, deployment.base_url)
        if not urls:
            raise answer_without_image(skeleton, label)
        downloads = [
            fetch_image(
                self._session,
                image_url,
                deadline=request.deadline,
                ceiling=deployment.timeout_seconds,
                provider=label,
            )
            for image_url in urls
        ]
        result.images = list(await asyncio.gather(*downloads))
        return result
