"""FakeFal: a local fal.ai queue server (reference fal-replicate.md, fal part)::

    POST /{owner}/{alias}[/{subpath}]                   submit → request_id and queue URLs
    GET  /{owner}/{alias}/requests/{id}/status[?logs=1] IN_QUEUE → IN_PROGRESS → COMPLETED
    GET  /{owner}/{alias}/requests/{id}                 the result (model output JSON)
    PUT  /{owner}/{alias}/requests/{id}/cancel          202 CANCELLATION_REQUESTED | 400
    GET  /_files/{name}                                 result images (fal's CDN stands here)

Auth `Authorization: Key <key>` on every queue call; files need none. The queue URLs drop the
submit's subpath, as fal's do. A job reports IN_QUEUE for `queue_polls` polls (queue_position
counting down), IN_PROGRESS for `progress_polls` more and at least the configured hold, then
COMPLETED. Input is validated when the job runs, as on fal's runners: an invalid input
completes with an error and its result URL answers the 422.

Run alone: ``python -m tests.fakes.fal --port 9003 [--hold-seconds 3] [--keys k1,k2]
[--fail-rate 0.7 --fail-scenario server_error --seed 1] [--mode NAME]``. fal answers compact
JSON, so ``--compact-json`` changes nothing.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import fal_wire as wire
from tests.fakes import proxy_pages
from tests.fakes.images import ImageFormat, encoded_image
from tests.fakes.server import (
    FakeUpstream,
    Rejection,
    decode_json_object,
    drop_connection,
    proxy_response,
    run_cli,
)

JSON_TYPE = "application/json"
# Answered at submit, before the job is queued.
SUBMIT_FAILURES = frozenset(
    {
        "unauthorized",
        "payment_required",
        "rate_limited",
        "server_error",
        "gateway_timeout",
        "bad_gateway",
        "cf_524",
        "disconnect",
    }
)
# Answered when the job completes (status error, then the result URL's answer).
COMPLETION_FAILURES = frozenset({"completed_error", "content_policy", "validation"})
IMAGE_SCENARIOS = frozenset({"ok", "slow", "wrong_size", "nsfw", "sync_mode", "lost_file"})
SCENARIOS = SUBMIT_FAILURES | COMPLETION_FAILURES | IMAGE_SCENARIOS | {"stuck"}
INSTANT_SCENARIOS = frozenset({"unauthorized", "payment_required", "rate_limited"})
# docs.fal.ai "Model Errors" (the msg wording is from memory, unverified).
POLICY_MESSAGE = (
    "The content could not be processed because it contained material flagged by a content checker."
)
# fal-ai/fal issues #1112, #1147 quote this 403 verbatim.
LOCKED_MESSAGE = (
    "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
)


@dataclass(frozen=True, slots=True)
class ImageFile:
    width: int
    height: int
    fmt: ImageFormat
    transparent: bool = False
    black: bool = False


@dataclass(slots=True)
class QueuedJob:
    request_id: str
    app: wire.FalApp
    urls: dict[str, str]
    scenario: str
    ready_at: float
    job: wire.Job | None  # None: the input failed validation (see input_error)
    input_error: dict[str, Any] | None = None
    polls: int = 0
    completed: bool = False
    cancelled: bool = False
    created: float = field(default_factory=time.monotonic)


class FakeFal(FakeUpstream):
    """fal's queue API with scenario control (see tests/fakes/README.md).

    ``queue_polls`` and ``progress_polls`` set how many status polls a job spends IN_QUEUE and
    IN_PROGRESS. A scenario is chosen once per submit, so ``fake.script(name)`` scripts a job.
    """

    scenario_names = SCENARIOS
    instant_scenarios = INSTANT_SCENARIOS
    quota_zero_scenario = "payment_required"

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        hold_seconds: float = 0.0,
        record: bool = True,
        pretty_json: bool = False,
        queue_polls: int = 1,
        progress_polls: int = 1,
    ) -> None:
        super().__init__(
            keys=keys, hold_seconds=hold_seconds, record=record, pretty_json=pretty_json
        )
        self.queue_polls = queue_polls
        self.progress_polls = progress_polls
        self.jobs: dict[str, QueuedJob] = {}
        self.files: dict[str, ImageFile | None] = {}  # None: the file expired (lost_file)

    def _add_routes(self, app: web.Application) -> None:
        queue = "/{owner}/{alias}/requests/{request_id}"
        app.router.add_get(queue + "/status", self._status)
        app.router.add_put(queue + "/cancel", self._cancel)
        app.router.add_get(queue, self._result)
        app.router.add_get("/_files/{name}", self._file)
        app.router.add_post("/{app:.+}", self._submit)
        app.on_response_prepare.append(self._add_fal_headers)

    # --- routes ---------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        body = decode_json_object(await request.read())
        record = self.begin(request, body)
        key = self._authenticate(request)
        app, root = wire.app_for_path(request.match_info["app"])
        if app is None:
            # Wording is our choice; fal answers 404 for an app that does not exist.
            raise _rejection(404, wire.detail_error(f"Application '{root}' not found"))
        if body is None:
            item = {"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict"}
            raise _rejection(422, wire.detail_error([item]))
        count = body.get("num_images", 1)
        images = count if isinstance(count, int) and count > 0 else 1
        scenario = self.choose(request, record, app.id, key, images=images)
        if scenario == "disconnect":
            return drop_connection(request)
        if scenario in SUBMIT_FAILURES:
            return _submit_failure(scenario, request.host)
        queued = self._enqueue(request, app, root, body, scenario)
        position = max(0, self.queue_polls - 1)
        return _json(200, wire.submitted(queued.urls, position))

    async def _status(self, request: web.Request) -> web.Response:
        queued = self._job_of(request)
        queued.polls += 1
        state = self._state(queued)
        with_logs = request.query.get("logs") in ("1", "true")
        logs = wire.log_lines(state) if with_logs and state != "IN_QUEUE" else None
        if state == "COMPLETED":
            queued.completed = True
        error, error_type = _completion_error(queued) if state == "COMPLETED" else (None, None)
        doc = wire.status_doc(
            state,
            queued.urls,
            position=max(0, self.queue_polls - queued.polls),
            logs=logs,
            inference_time=round(time.monotonic() - queued.created, 3),
            error=error,
            error_type=error_type,
        )
        return _json(200, doc)

    async def _result(self, request: web.Request) -> web.Response:
        queued = self._job_of(request)
        if not queued.completed:
            return _json(400, wire.detail_error("Request is still in progress"))  # our wording
        if queued.cancelled:
            return _json(400, wire.detail_error("Request was cancelled"))  # our wording
        failure = _result_failure(queued)
        if failure is not None:
            return failure
        assert queued.job is not None
        return _json(200, self._output(request, queued, queued.job))

    async def _cancel(self, request: web.Request) -> web.Response:
        queued = self._job_of(request)
        if queued.completed:
            return _json(400, {"status": "ALREADY_COMPLETED"})
        queued.cancelled = True
        return _json(202, {"status": "CANCELLATION_REQUESTED"})

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        spec = self.files.get(name.partition(".")[0])
        if spec is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=_file_bytes(spec), content_type=f"image/{spec.fmt}")

    # --- the queue ------------------------------------------------------------------------------

    def _enqueue(
        self,
        request: web.Request,
        app: wire.FalApp,
        root: str,
        body: dict[str, Any],
        scenario: str,
    ) -> QueuedJob:
        request_id = str(uuid.uuid4())
        base = f"{request.scheme}://{request.host}"
        job: wire.Job | None = None
        error: dict[str, Any] | None = None
        try:
            job = wire.parse_input(app, body)
        except wire.InputError as invalid:
            error = invalid.item
        if scenario == "validation" and error is None:
            error = wire.InputError("image_size", "width must be 64..2048", "less_than_equal").item
        hold = self.slow_seconds if scenario == "slow" else self.scenarios.hold_for(app.id)
        queued = QueuedJob(
            request_id=request_id,
            app=app,
            urls=wire.queue_urls(base, root, request_id),
            scenario=scenario,
            ready_at=time.monotonic() + hold,
            job=job,
            input_error=error,
        )
        self.jobs[request_id] = queued
        return queued

    def _state(self, queued: QueuedJob) -> str:
        if queued.cancelled or queued.completed:
            return "COMPLETED"
        if queued.scenario == "stuck" or queued.polls <= self.queue_polls:
            return "IN_QUEUE"
        working = queued.polls <= self.queue_polls + self.progress_polls
        return "IN_PROGRESS" if working or time.monotonic() < queued.ready_at else "COMPLETED"

    def _job_of(self, request: web.Request) -> QueuedJob:
        self.begin(request, None)
        self._authenticate(request)
        queued = self.jobs.get(request.match_info["request_id"])
        root = f"{request.match_info['owner']}/{request.match_info['alias']}"
        if queued is None or not queued.urls["response_url"].endswith(
            f"/{root}/requests/{queued.request_id}"
        ):
            raise _rejection(404, wire.detail_error("Request not found"))  # our wording
        return queued

    def _output(self, request: web.Request, queued: QueuedJob, job: wire.Job) -> dict[str, Any]:
        scenario = queued.scenario
        width, height = (1024, 1024) if scenario == "wrong_size" else (job.width, job.height)
        spec = ImageFile(width, height, job.fmt, job.transparent, black=scenario == "nsfw")
        if scenario == "sync_mode" or job.sync_mode:
            data = base64.b64encode(_file_bytes(spec)).decode("ascii")
            urls = [f"data:image/{job.fmt};base64,{data}"] * job.n
        else:
            urls = [
                self._publish(request, spec, lost=scenario == "lost_file") for _ in range(job.n)
            ]
        return wire.result_doc(queued.app, job, urls, width, height, nsfw=scenario == "nsfw")

    def _publish(self, request: web.Request, spec: ImageFile, *, lost: bool) -> str:
        token = secrets.token_urlsafe(12)
        self.files[token] = None if lost else spec
        extension = "jpg" if spec.fmt == "jpeg" else spec.fmt
        return f"{request.scheme}://{request.host}/_files/{token}.{extension}"

    # --- checks and headers ---------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> str:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "key" or not key:
            # Wording is our choice (unverified).
            raise _rejection(401, wire.detail_error("Missing authorization header"))
        if not self.key_accepted(key):
            raise _rejection(401, wire.detail_error(_BAD_KEY))
        return key

    async def _add_fal_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        # Proxy pages and files come from elsewhere and carry no fal request id.
        if response.content_type == JSON_TYPE:
            response.headers.setdefault("x-fal-request-id", str(uuid.uuid4()))


_BAD_KEY = "No user found for Key ID and Secret"  # from memory of real answers (unverified)


def _submit_failure(scenario: str, host: str) -> web.Response:
    if scenario == "unauthorized":
        return _json(401, wire.detail_error(_BAD_KEY))
    if scenario == "payment_required":
        return _json(403, wire.detail_error(LOCKED_MESSAGE))
    if scenario == "rate_limited":
        return _json(429, wire.detail_error("Rate limit exceeded"))  # our wording (unverified)
    if scenario == "server_error":
        return _request_error(500, "Internal server error", "internal_error")
    if scenario == "gateway_timeout":
        return _request_error(504, "Request timed out", "request_timeout")
    if scenario == "bad_gateway":
        return proxy_response(proxy_pages.nginx_502())
    return proxy_response(proxy_pages.cloudflare_524(host))


def _request_error(status: int, detail: str, error_type: str) -> web.Response:
    """fal's request errors (docs.fal.ai "Request Errors"): the type in body and header."""
    doc = wire.detail_error(detail, error_type)
    return _json(status, doc, {"x-fal-error-type": error_type})


def _completion_error(queued: QueuedJob) -> tuple[str | None, str | None]:
    """The `error`/`error_type` a COMPLETED status carries (wording our choice)."""
    if queued.cancelled:
        return "Request was cancelled", "client_cancelled"
    if queued.scenario == "content_policy":
        return POLICY_MESSAGE, "content_policy_violation"
    if queued.scenario == "completed_error":
        return "Internal Server Error", "runner_server_error"
    if queued.input_error is not None:
        return "Unprocessable Entity", None
    return None, None


def _result_failure(queued: QueuedJob) -> web.Response | None:
    if queued.scenario == "content_policy":
        item = wire.InputError("prompt", POLICY_MESSAGE, "content_policy_violation").item
        return _json(422, wire.detail_error([item]))
    if queued.scenario == "completed_error":
        return _request_error(500, "Internal Server Error", "runner_server_error")
    if queued.input_error is not None:
        return _json(422, wire.detail_error([queued.input_error]))
    return None


def _file_bytes(spec: ImageFile) -> bytes:
    if spec.black:
        return wire.black_image(spec.width, spec.height, spec.fmt)
    return encoded_image(spec.width, spec.height, spec.fmt, spec.transparent)


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(doc), content_type=JSON_TYPE, headers=headers
    )


def _rejection(status: int, doc: Any) -> Rejection:
    return Rejection(status, orjson.dumps(doc))


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(FakeFal, "python -m tests.fakes.fal", argv)


if __name__ == "__main__":
    main()
