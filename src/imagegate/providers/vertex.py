"""Vertex AI: Gemini image models through generateContent, Imagen through :predict
(shared/reference/vertex-ai.md).

Gemini on Vertex is the Developer API's proto (gemini.py builds the body and reads the answer)
with two differences: the URL names the project and location, and
`imageConfig.imageOutputOptions` makes PNG or JPEG natively, at a compression quality. Imagen
goes through imagen.py, here with the `seed` the Developer API lacks.

Auth is an OAuth token from a service account or Application Default Credentials
(vertex_auth.py). A deployment with an upstream key uses express mode instead: the key in
`x-goog-api-key` and no project in the path.

Deployment options: `project` (else the credentials' own), `location` (default `global`),
`api_version` (default `v1`), `service_account_file` or `service_account_env`,
`quota_project` (sent as `x-goog-user-project`), `edit_mode` (Imagen's editMode for masked
edits, default EDIT_MODE_INPAINT_INSERTION). A configured base_url replaces the host chosen by
location.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import aiohttp
import orjson

from imagegate.core.deployment import Capabilities, Deployment, UpstreamKey
from imagegate.core.errors import FailureKind, UpstreamError
from imagegate.core.request import ImageRequest
from imagegate.core.result import ImageResult
from imagegate.providers import gemini, imagen
from imagegate.providers.gemini_mask import keep_unmasked
from imagegate.providers.vertex_auth import TokenSource
from imagegate.providers.vertex_failures import classify_failure

PROVIDER = "Vertex AI"
DEFAULT_BASE_URL = "https://aiplatform.googleapis.com"
# imageOutputOptions.mimeType: the reference captured image/jpeg; PNG is what the models make
# unasked. WebP is not in the reference, so the gateway transcodes to it.
GEMINI_OUTPUT_FORMATS = ("png", "jpeg")


def host_for(location: str) -> str:
    """The API host for a location (reference §1)."""
    if location == "global":
        return DEFAULT_BASE_URL
    if location in ("us", "eu"):
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def capabilities_for(model: str) -> Capabilities:
    if imagen.is_imagen(model):
        return imagen.capabilities_for(model, vertex=True)
    defaults = gemini.capabilities_for(model)
    return dataclasses.replace(defaults, output_formats=GEMINI_OUTPUT_FORMATS)


def model_url(deployment: Deployment, method: str, project: str | None) -> str:
    """The model's `:method` URL; `project=None` is express mode (no project, no location)."""
    options = deployment.options
    location = str(options.get("location") or "global")
    version = str(options.get("api_version") or "v1")
    base = deployment.base_url
    if base == DEFAULT_BASE_URL and project is not None:
        base = host_for(location)
    # `owner/name` is another publisher's model; a bare id is Google's (reference §1).
    publisher, _, name = deployment.model.rpartition("/")
    path = f"publishers/{publisher or 'google'}/models/{name}:{method}"
    if project is None:
        return f"{base}/{version}/{path}"
    return f"{base}/{version}/projects/{project}/locations/{location}/{path}"


def gemini_body(request: ImageRequest, deployment: Deployment, caps: Capabilities) -> bytes:
    """The Developer API's generateContent body plus Vertex's native output format.

    The request's `gemini` and then `vertex` passthrough fields are merged over it; an
    imageOutputOptions the client sent itself wins. With a mask this decodes pixels: call it
    off the event loop then.
    """
    body = gemini.request_body(request, deployment, passthrough=("gemini", "vertex"))
    fmt = request.output_format
    if fmt is not None and fmt in caps.output_formats:
        config = body.setdefault("generationConfig", {})
        image_config = config.setdefault("imageConfig", {})
        if not {"imageOutputOptions", "image_output_options"} & image_config.keys():
            image_config["imageOutputOptions"] = imagen.output_options(fmt, request)
    return orjson.dumps(body)


class VertexProvider:
    kind: ClassVar[str] = "vertex"
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    needs_key: ClassVar[bool] = False  # a service account or ADC; a key means express mode

    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self.capabilities = deployment.capabilities or capabilities_for(deployment.model)
        self._session = session
        self._tokens = TokenSource(deployment.options)

    async def generate(self, request: ImageRequest, key: UpstreamKey | None) -> ImageResult:
        headers, project = await self._auth(key)
        if imagen.is_imagen(self.deployment.model):
            url = model_url(self.deployment, "predict", project)
            call = imagen.PredictCall(self.kind, PROVIDER, self._classify)
            return await imagen.predict(
                self._session, url, headers, request, self.deployment, self.capabilities, call
            )
        url = model_url(self.deployment, "generateContent", project)
        if request.input_images:  # base64 of the inputs and the mask's conversion: off the loop
            body = await asyncio.to_thread(gemini_body, request, self.deployment, self.capabilities)
        else:
            body = gemini_body(request, self.deployment, self.capabilities)
        result = await gemini.send_generate(
            self._session,
            url,
            body,
            headers,
            request,
            ImageResult(
                images=[],
                provider=self.kind,
                deployment=self.deployment.name,
                model=self.deployment.model,
            ),
            timeout_seconds=self.deployment.timeout_seconds,
            provider=PROVIDER,
            classify=self._classify,
        )
        if request.mask is None:
            return result
        try:
            await keep_unmasked(result, request, self.capabilities)
        except BaseException:
            await result.aclose()
            raise
        return result

    async def _auth(self, key: UpstreamKey | None) -> tuple[dict[str, str], str | None]:
        """The request headers, and the project for the path (None in express mode)."""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["x-goog-api-key"] = key.secret
            return headers, None
        token = await self._tokens.token()
        headers["Authorization"] = f"Bearer {token.value}"
        quota_project = self.deployment.options.get("quota_project") or token.quota_project
        if quota_project:
            headers["x-goog-user-project"] = str(quota_project)
        project = self.deployment.options.get("project") or token.project
        if not project:
            raise UpstreamError(
                FailureKind.AUTH,
                "Vertex AI needs a project: set the deployment option `project` (the"
                " credentials name none)",
            )
        return headers, str(project)

    def _classify(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        error = classify_failure(status, headers, body)
        if status == 401:
            self._tokens.invalidate()  # revoked early, or the clock is off: fetch a new one
        return error
