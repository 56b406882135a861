"""FakeVertex: a local Vertex AI server for Gemini image models and Imagen (reference
vertex-ai.md), with the OAuth token endpoint a service account's JWT grant goes to.

Routes (any host; ``{v}`` is ``v1`` or ``v1beta1``)::

    POST /{v}/projects/{p}/locations/{l}/publishers/google/models/{model}:generateContent
    POST /{v}/projects/{p}/locations/{l}/publishers/google/models/{model}:streamGenerateContent
    POST /{v}/projects/{p}/locations/{l}/publishers/google/models/{imagen}:predict
    POST /{v}/publishers/google/models/{model}:{method}        express mode (x-goog-api-key)
    POST /token                                                 OAuth: signed JWT → access token

Project paths need ``Authorization: Bearer <a token this fake issued>`` (else 401
UNAUTHENTICATED); express paths need ``x-goog-api-key`` (``keys=None`` accepts any). Point a
service account's ``token_uri`` at ``{base_url}/token`` (``service_account_info`` makes one
with a throwaway RSA key) and google-auth's real flow works end to end.

Run alone: ``python -m tests.fakes.vertex --port 9003 [--hold-seconds 3] [--keys k1,k2] ...``.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import gemini_failures, gemini_wire, imagen_wire
from tests.fakes import vertex_wire as wire
from tests.fakes.imagen import PredictOutcome, serve_predict
from tests.fakes.images import encoded_image_b64
from tests.fakes.proxy_pages import ProxyAnswer
from tests.fakes.server import (
    FakeUpstream,
    RecordedRequest,
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
TOKEN_PREFIX = "ya29.fake-"  # Google's access tokens start with ya29.


class FakeVertex(FakeUpstream):
    """Vertex AI, image models only, with scenario control (see tests/fakes/README.md).

    ``token_requests`` holds the claims of every token grant (valid or not); ``token_lifetime``
    is the ``expires_in`` it hands out; ``refuse_tokens`` answers every grant with
    ``invalid_grant`` (a deleted or disabled key).
    """

    scenario_names = wire.SCENARIOS
    instant_scenarios = wire.INSTANT_SCENARIOS
    rate_limit_scenario = "quota_exceeded"
    # Vertex has no free tier: a project that can use nothing is one without billing.
    quota_zero_scenario = "billing_disabled"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token_requests: list[dict[str, Any]] = []
        self.token_lifetime = 3599
        self.refuse_tokens = False
        self.issued: set[str] = set()

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._grant_token)
        for version in ("v1", "v1beta1"):
            prefix = f"/{version}/projects/{{project}}/locations/{{location}}"
            # One {tail} segment holds "model:method"; aiohttp cannot route on the colon itself.
            app.router.add_post(f"{prefix}/publishers/{{publisher}}/models/{{tail}}", self._call)
            app.router.add_post(f"/{version}/publishers/{{publisher}}/models/{{tail}}", self._call)

    def issue_token(self) -> str:
        """A token this fake accepts, without the OAuth dance (for tests of the fake itself)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        self.issued.add(token)
        return token

    # --- OAuth ------------------------------------------------------------------------------

    async def _grant_token(self, request: web.Request) -> web.Response:
        form = {name: str(value) for name, value in (await request.post()).items()}
        token_url = f"{self.base_url}/token"
        try:
            claims = wire.check_grant(form, token_url)
        except wire.GrantError as error:
            self.token_requests.append({})
            return web.Response(status=400, body=error.body, content_type=JSON_TYPE)
        self.token_requests.append(claims)
        if self.refuse_tokens:
            error = wire.GrantError("invalid_grant", "Invalid JWT Signature.")
            return web.Response(status=400, body=error.body, content_type=JSON_TYPE)
        doc = {
            "access_token": self.issue_token(),
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
        }
        return web.Response(body=orjson.dumps(doc), content_type=JSON_TYPE)

    # --- models -----------------------------------------------------------------------------

    async def _call(self, request: web.Request) -> web.StreamResponse:
        name, _, method = request.match_info["tail"].partition(":")
        streaming = method == "streamGenerateContent"
        sse = streaming and request.query.get("alt") == "sse"
        array = streaming and not sse  # errors on a JSON-array stream come wrapped in one
        body = decode_json_object(await request.read())
        record = self.begin(request, body)
        ctx = wire.VertexContext(
            request.match_info.get("project", ""),
            request.match_info.get("location", "global"),
            name,
            request.host,
        )
        key = self._authenticate(request, express=not ctx.project, array=array)
        if request.match_info["publisher"] != "google":
            raise self._rejection(wire.model_not_found(ctx.resource), array)
        if method == "predict" and name in imagen_wire.MODELS:
            outcome = functools.partial(_predict_outcome, ctx)
            return await serve_predict(
                self, request, record, imagen_wire.MODELS[name], body, key,
                developer_api=False, outcome=outcome,
            )  # fmt: skip
        model = gemini_wire.MODELS.get(name)
        if model is None and name not in imagen_wire.MODELS:
            raise self._rejection(wire.model_not_found(ctx.resource), array)
        if model is None or method not in ("generateContent", "streamGenerateContent"):
            raise self._rejection(imagen_wire.not_an_imagen_method(name, method), array)
        if body is None:
            raise self._rejection(gemini_wire.invalid_json(), array)
        try:
            parsed = wire.parse_vertex_generate(body, model)
        except gemini_wire.RpcError as error:
            raise self._rejection(error, array) from None
        return await self._generate(request, record, ctx, model, parsed, key, (streaming, sse))

    async def _generate(
        self,
        request: web.Request,
        record: RecordedRequest,
        ctx: wire.VertexContext,
        model: gemini_wire.GeminiModel,
        parsed: wire.VertexGenerate,
        key: str,
        stream: tuple[bool, bool],
    ) -> web.StreamResponse:
        streaming, sse = stream
        scenario = self.choose(request, record, model.name, key)
        await self.wait(scenario, model.name)
        if scenario == "disconnect":
            return drop_connection(request)
        if scenario in wire.FAILURES:
            failure = wire.FAILURES[scenario](ctx)
            if isinstance(failure, ProxyAnswer):
                return proxy_response(failure)
            rejection = self._rejection(failure, streaming and not sse)
            return web.Response(
                status=rejection.status, body=rejection.body, content_type=JSON_TYPE
            )
        generate = parsed.generate
        rid = secrets.token_urlsafe(16)[:22]
        if scenario in wire.FILTER_SCENARIOS:
            fctx = gemini_failures.FailureContext(
                model, generate, "v1", streaming, 2.0, ctx.host, rid
            )
            blocked = gemini_failures.failure("image_safety", fctx)
            assert isinstance(blocked, dict)
            answer, content_type = self._render([(wire.vertex_answer(blocked), ())], stream)
            return web.Response(body=answer, content_type=content_type, charset="UTF-8")
        width, height = (1024, 1024) if scenario == "wrong_size" else generate.pixels
        image = encoded_image_b64(width, height, parsed.fmt) if generate.wants_image else b""
        mime = f"image/{parsed.fmt}"
        if streaming:
            chunks = gemini_wire.success_chunks(model, generate, mime, rid)
        else:
            chunks = [gemini_wire.success_doc(model, generate, mime, rid)]
        documents = [(wire.vertex_answer(chunk), _images_in(chunk, image)) for chunk in chunks]
        answer, content_type = self._render(documents, stream)
        if scenario == "truncated":
            return await send_truncated(request, answer, content_type)
        return web.Response(body=answer, content_type=content_type, charset="UTF-8")

    def _render(
        self, documents: Sequence[tuple[dict[str, Any], Sequence[bytes]]], stream: tuple[bool, bool]
    ) -> tuple[bytes, str]:
        """One JSON object, an SSE stream (compact events), or a JSON array of chunks."""
        streaming, sse = stream
        if sse:
            events = (sse_event(splice_images(d, i), newline=b"\r\n") for d, i in documents)
            return b"".join(events), SSE_TYPE
        rendered = [splice_images(d, i, pretty=self.pretty_json) for d, i in documents]
        if streaming:
            return b"[" + b",\r\n".join(rendered) + b"]", JSON_TYPE
        return rendered[0], JSON_TYPE

    # --- request checks ---------------------------------------------------------------------

    def _authenticate(self, request: web.Request, *, express: bool, array: bool) -> str:
        """The caller's credential: an issued bearer token, or the API key in express mode."""
        if express:
            key = request.headers.get("x-goog-api-key") or request.query.get("key")
            if not key:
                raise self._rejection(wire.unauthenticated(), array)
            if not self.key_accepted(key):
                raise self._rejection(wire.api_key_invalid(), array)
            return key
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.issued:
            raise self._rejection(wire.unauthenticated(), array)
        return token

    def _rejection(self, error: gemini_wire.RpcError, array: bool) -> Rejection:
        body = splice_images(error.doc(), pretty=self.pretty_json)
        return Rejection(error.code, b"[" + body + b"]" if array else body)


def _predict_outcome(ctx: wire.VertexContext, scenario: str) -> PredictOutcome:
    if scenario in wire.FAILURES:
        return wire.FAILURES[scenario](ctx)
    if scenario == "partly_filtered":
        return "partly_filtered"
    if scenario in wire.FILTER_SCENARIOS:
        return "filtered"
    return None


def _images_in(doc: dict[str, Any], image: bytes) -> Sequence[bytes]:
    """The image to splice into one document, if that document holds the image slot."""
    for entry in doc.get("candidates") or []:
        for part in entry.get("content", {}).get("parts", []):
            if "inlineData" in part:
                return (image,)
    return ()


# --- service accounts for tests ----------------------------------------------------------------


@functools.cache
def _private_key_pem() -> str:
    """A throwaway RSA key (made once per process): google-auth signs its JWT grant with it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


def service_account_info(
    token_uri: str, project: str = "fake-project", email: str | None = None
) -> dict[str, str]:
    """A service account JSON key whose grants go to ``token_uri`` (a FakeVertex's /token)."""
    email = email or f"imagegate-test@{project}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": _private_key_pem(),
        "client_email": email,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(FakeVertex, "python -m tests.fakes.vertex", argv)


if __name__ == "__main__":
    main()
