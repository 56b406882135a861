"""FakeReplicate: a local Replicate predictions API (reference fal-replicate.md, Replicate)::

    POST /v1/models/{owner}/{name}/predictions         official models
    POST /v1/predictions                               {"version": ..., "input": ...}
    POST /v1/deployments/{owner}/{name}/predictions    fake.deployments["owner/name"] = model
    GET  /v1/predictions/{id}                          poll (urls.get)
    POST /v1/predictions/{id}/cancel                   urls.cancel
    GET  /_files/{id}/out-{i}.{ext}                    output files (replicate.delivery's role)

Auth `Authorization: Bearer <token>` (or the legacy `Token <token>`). `Prefer: wait[=N]` holds
the create call until the prediction ends, at most N s; without it the answer is `starting`.
A prediction that outlives the wait, a `slow_job` scenario or `fake.processing_polls > 0`
answers `starting`, then `processing` on polls, then its end. Errors are RFC 7807 problem JSON.

Run alone: ``python -m tests.fakes.replicate --port 9005 [--hold-seconds 3] [--keys k1,k2]
[--fail-rate 0.7 --fail-scenario server_error --seed 1] [--mode NAME]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import proxy_pages
from tests.fakes import replicate_wire as wire
from tests.fakes.images import ImageFormat, encoded_image
from tests.fakes.server import (
    FakeUpstream,
    RecordedRequest,
    decode_json_object,
    drop_connection,
    proxy_response,
    run_cli,
)

JSON_TYPE = "application/json"
PROBLEM_TYPE = "application/problem+json"
FILES_PREFIX = "/_files"
_PILLOW: dict[str, ImageFormat] = {"jpg": "jpeg", "png": "png", "webp": "webp"}
_MIME = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}

# Scenarios whose prediction runs (the HTTP call succeeds; the job ends as the scenario says).
JOB_SCENARIOS = frozenset(
    {"ok", "slow", "slow_job", "wrong_size", "failed_nsfw", "failed_sensitive", "failed_error",
     "canceled"}
)  # fmt: skip
# Scenarios answered by the HTTP call itself.
HTTP_SCENARIOS = frozenset(
    {"unauthorized", "insufficient_credit", "rate_limited", "validation", "server_error",
     "bad_gateway", "cf_524", "disconnect"}
)  # fmt: skip
INSTANT_SCENARIOS = frozenset({"unauthorized", "insufficient_credit", "rate_limited", "validation"})


class FakeReplicate(FakeUpstream):
    """Replicate's predictions API with scenario control (module docstring).

    Attributes beyond FakeUpstream's: ``processing_polls`` (polls that answer `processing`
    before a prediction ends), ``poll_errors`` (the next polls answer 503), ``retry_after`` (seconds, for `rate_limited`), ``jobs`` (id →
    wire.Job), ``deployments`` ("owner/name" → model), ``versions`` (version id → model).
    """

    scenario_names = JOB_SCENARIOS | HTTP_SCENARIOS
    instant_scenarios = INSTANT_SCENARIOS
    quota_zero_scenario = "insufficient_credit"

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        hold_seconds: float = 0.0,
        record: bool = True,
        pretty_json: bool = False,
    ) -> None:
        super().__init__(
            keys=keys, hold_seconds=hold_seconds, record=record, pretty_json=pretty_json
        )
        self.processing_polls = 0
        self.poll_errors = 0  # the next polls that get a 503 problem instead of the prediction
        self.retry_after = 1.0
        self.jobs: dict[str, wire.Job] = {}
        self.deployments: dict[str, str] = {}
        self.versions = {wire.version_id(model): model for model in wire.MODELS}

    def version_of(self, model: str) -> str:
        return wire.version_id(model)

    def _add_routes(self, app: web.Application) -> None:
        app.middlewares.append(self._problem_middleware)
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create_for_model)
        app.router.add_post("/v1/predictions", self._create_for_version)
        app.router.add_post(
            "/v1/deployments/{owner}/{name}/predictions", self._create_for_deployment
        )
        app.router.add_get("/v1/predictions/{id}", self._get)
        app.router.add_post("/v1/predictions/{id}/cancel", self._cancel)
        app.router.add_get(FILES_PREFIX + "/{id}/{file}", self._file)
        app.router.add_route("*", "/{tail:.*}", self._unknown_path)

    # --- create ---------------------------------------------------------------------------------

    async def _create_for_model(self, request: web.Request) -> web.StreamResponse:
        record, key, body = await self._admit(request)
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        if model not in wire.MODELS:
            raise wire.not_found("model")
        return await self._create(request, record, key, body, model, version="hidden")

    async def _create_for_version(self, request: web.Request) -> web.StreamResponse:
        record, key, body = await self._admit(request)
        version = str(body.get("version", ""))
        # Newer clients may send "owner/name:version"; the id is what follows the colon.
        version = version.rpartition(":")[2]
        model = self.versions.get(version)
        if model is None:
            raise wire.invalid_version()
        return await self._create(request, record, key, body, model, version=version)

    async def _create_for_deployment(self, request: web.Request) -> web.StreamResponse:
        record, key, body = await self._admit(request)
        name = f"{request.match_info['owner']}/{request.match_info['name']}"
        model = self.deployments.get(name)
        if model is None:
            raise wire.not_found("deployment")
        return await self._create(request, record, key, body, model, version="hidden")

    async def _admit(self, request: web.Request) -> tuple[RecordedRequest, str, dict[str, Any]]:
        body = decode_json_object(await request.read())
        record = self.begin(request, body)
        key = self._authenticate(request)
        if body is None:
            raise wire.Problem(400, "Bad Request", "The request body is not a JSON object.")
        return record, key, body

    async def _create(
        self,
        request: web.Request,
        record: RecordedRequest,
        key: str,
        body: dict[str, Any],
        model: str,
        version: str,
    ) -> web.StreamResponse:
        parsed = wire.parse_input(wire.MODELS[model], body.get("input"))
        scenario = self.choose(request, record, model, key, images=parsed.outputs)
        if scenario in HTTP_SCENARIOS:
            await self.wait(scenario, model)
            return self._failure(request, record, scenario)
        hold = self.slow_seconds if scenario == "slow" else self.scenarios.hold_for(model)
        job = self._new_job(parsed, scenario, model, version, hold)
        waited = wire.parse_prefer(request.headers.get("Prefer"))
        headers = {}
        if waited is not None:
            headers["Preference-Applied"] = f"wait={waited}"
            if job.steps == 0:
                await self._sleep(min(hold, waited))
                job.advance(time.monotonic())
        return self._json(201, self._doc(job, request), headers)

    def _new_job(
        self, parsed: wire.ParsedInput, scenario: str, model: str, version: str, hold: float
    ) -> wire.Job:
        width, height = (1024, 1024) if scenario == "wrong_size" else wire.output_size(parsed)
        fmt = parsed.output_format
        final, error = {
            "failed_nsfw": ("failed", wire.NSFW_ERROR),
            "failed_sensitive": ("failed", wire.SENSITIVE_ERROR),
            "failed_error": ("failed", wire.MODEL_ERROR),
            "canceled": ("canceled", None),
        }.get(scenario, ("succeeded", None))
        steps = max(self.processing_polls, 1 if scenario == "slow_job" else 0)
        job = wire.Job(
            id=wire.new_prediction_id(),
            model=model,
            version=version,
            input=wire.echoed_input(parsed.input),
            outputs=[(width, height, fmt)] * parsed.outputs,
            list_output=parsed.schema.max_outputs > 1,
            final_status=final,
            error=error,
            ready_at=time.monotonic() + hold,
            steps=steps,
            predict_time=round(max(hold, 0.05), 3),
        )
        self.jobs[job.id] = job
        return job

    def _failure(
        self, request: web.Request, record: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if scenario == "disconnect":
            return drop_connection(request)
        if scenario == "bad_gateway":
            return proxy_response(proxy_pages.nginx_502())
        if scenario == "cf_524":
            return proxy_response(proxy_pages.cloudflare_524(request.host))
        if scenario == "rate_limited":
            wait = record.quota.retry_after if record.quota is not None else self.retry_after
            raise wire.throttled(wait)
        raise {
            "unauthorized": wire.unauthenticated(missing=False),
            "insufficient_credit": wire.insufficient_credit(),
            "validation": wire.validation_failed(
                [
                    wire.InvalidField(
                        "enum",
                        "input.aspect_ratio",
                        'aspect_ratio must be one of the following: "1:1", "16:9"',
                    )
                ]
            ),
            "server_error": wire.server_error(),
        }[scenario]

    # --- poll, cancel, files ---------------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        self._authenticate(request)
        job = self._job(request)
        if self.poll_errors > 0:
            self.poll_errors -= 1
            raise wire.Problem(503, "Service Unavailable", "Please retry.")  # wording ours
        job.advance(time.monotonic())
        return self._json(200, self._doc(job, request))

    async def _cancel(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        self._authenticate(request)
        job = self._job(request)
        job.cancel()
        return self._json(200, self._doc(job, request))

    async def _file(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        job = self.jobs.get(request.match_info["id"])
        name = request.match_info["file"]
        index = name.removeprefix("out-").partition(".")[0]
        if job is None or job.status != "succeeded" or not index.isdigit():
            return web.Response(status=404, text="Not Found")
        if int(index) >= len(job.outputs):
            return web.Response(status=404, text="Not Found")
        width, height, fmt = job.outputs[int(index)]
        data = encoded_image(width, height, _PILLOW[fmt])
        return web.Response(body=data, content_type=_MIME[fmt])

    async def _unknown_path(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        raise wire.Problem(404, "Not found", "Not found.")

    def _job(self, request: web.Request) -> wire.Job:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise wire.not_found("prediction")
        return job

    # --- helpers ---------------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> str:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() not in ("bearer", "token") or not key:
            raise wire.unauthenticated(missing=True)
        if not self.key_accepted(key):
            raise wire.unauthenticated(missing=False)
        return key

    def _doc(self, job: wire.Job, request: web.Request) -> dict[str, Any]:
        base = f"{request.scheme}://{request.host}"
        return wire.prediction_doc(job, base, base + FILES_PREFIX)

    def _json(
        self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        option = orjson.OPT_INDENT_2 if self.pretty_json else 0
        return web.Response(
            status=status,
            body=orjson.dumps(doc, option=option),
            content_type=JSON_TYPE,
            charset="utf-8",
            headers=headers,
        )

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self.holding += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.holding -= 1

    @web.middleware
    async def _problem_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except wire.Problem as problem:
            return web.Response(
                status=problem.status,
                body=orjson.dumps(problem.doc),
                content_type=PROBLEM_TYPE,
                headers=problem.headers,
            )


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(FakeReplicate, "python -m tests.fakes.replicate", argv)


if __name__ == "__main__":
    main()
