"""FakeBfl: a local Black Forest Labs FLUX API (reference flux-bfl.md)::

    POST /v1/{model}             submit → {id, polling_url[, cost, input_mp, output_mp]}
    GET  /v1/get_result?id=      poll   → {id, status, result, progress, details, preview}
    GET  /_results/{token}/sample.{ext}?se=…&sig=…   the signed result URL (no key; expires)

Run alone: ``python -m tests.fakes.bfl --port 9003 [--hold-seconds 3] [--keys k1,k2]
[--fail-rate 0.3 --fail-scenario error,content_moderated] [--mode NAME]``.

A submit plays one scenario (``fake.script(...)`` scripts one whole task). Auth is ``x-key`` on
submits and polls, never on result URLs. A task is ``Pending`` for ``pending_polls`` polls (and
at least the configured hold), then ends in the scenario's terminal status. More than
``max_active`` unfinished tasks per key (6 on flux-kontext-max) get the 429. Answers are compact
JSON, as FastAPI writes them.

| scenario | answer |
|---|---|
| `ok` | Pending ×`pending_polls`, then Ready with `result.sample` (a URL on the fake, valid `result_ttl` s) |
| `slow` | Pending for `slow_seconds` (30 s), then as `ok` |
| `wrong_size` | as `ok`, but the image is 1024×1024 whatever was asked |
| `flaky_poll` | the first poll answers 503, then as `ok` |
| `request_moderated` | the first poll: `Request Moderated` (input blocked) |
| `content_moderated` | Pending, then `Content Moderated` (output blocked) |
| `error` | Pending, then `Error` |
| `task_not_found` | every poll: `Task not found` (the poll reached a cluster without the task) |
| `result_expired` | Ready, but the sample URL has already expired (403 from the blob store) |
| `truncated` | Ready, but the image download stops halfway |
| `out_of_credits` *instant* | 402 `{"detail": "Insufficient credits…"}` |
| `rate_limited` *instant* | 429 `{"error": "rate_limit_exceeded", "message", "retry_after"}` + Retry-After |
| `unauthorized` *instant* | 401 as for a wrong key; `forbidden` *instant*: 403 |
| `server_error` | 500 `{"detail": "Internal Server Error"}`; `unavailable`: 503 |
| `bad_gateway`, `cf_524` | the proxy pages |
| `disconnect` | the submit's connection closes with no answer |

Bodies other than 422 are our wording (the reference gives shapes, not texts).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import bfl_wire as wire
from tests.fakes import proxy_pages
from tests.fakes.images import encoded_image
from tests.fakes.server import (
    FakeUpstream,
    RecordedRequest,
    Rejection,
    decode_json_object,
    drop_connection,
    proxy_response,
    run_cli,
    send_truncated,
)

TASK_SCENARIOS = frozenset({
    "ok", "slow", "wrong_size", "flaky_poll", "request_moderated", "content_moderated", "error",
    "task_not_found", "result_expired", "truncated",
})  # fmt: skip
INSTANT_SCENARIOS = frozenset({"out_of_credits", "rate_limited", "unauthorized", "forbidden"})
HTTP_SCENARIOS = frozenset({"server_error", "unavailable", "bad_gateway", "cf_524", "disconnect"})
SCENARIOS = TASK_SCENARIOS | INSTANT_SCENARIOS | HTTP_SCENARIOS
TERMINAL = frozenset({"Ready", "Request Moderated", "Content Moderated", "Error", "Task not found"})
MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@dataclass(slots=True)
class Task:
    id: str
    key: str
    job: wire.Job
    scenario: str
    created: float
    ready_at: float
    polls: int = 0
    finished: bool = False
    status: str = "Pending"
    token: str | None = None  # the result URL's token, once Ready

    @property
    def size(self) -> tuple[int, int]:
        return (1024, 1024) if self.scenario == "wrong_size" else (self.job.width, self.job.height)


@dataclass(slots=True)
class Sample:
    """One signed result URL: which image it serves, until when."""

    width: int
    height: int
    format: wire.ImageFormat
    expires: float
    truncated: bool


class FakeBfl(FakeUpstream):
    """The BFL API with scenario control (module docstring).

    Attributes a test may set: ``pending_polls`` (1), ``max_active`` (24), ``result_ttl``
    (600 s), ``task_seconds`` (60 s: an unpolled task stops counting as active after this),
    ``retry_after`` (5 s, the 429's hint) and ``polling_base`` (None: this fake's base URL;
    set e.g. ``http://localhost:PORT`` to hand out polling URLs on another host name).
    """

    scenario_names = SCENARIOS
    instant_scenarios = INSTANT_SCENARIOS
    quota_zero_scenario = "out_of_credits"  # BFL has no zero quota; an empty balance is closest

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
        self.pending_polls = 1
        self.max_active = 24
        self.result_ttl = 600.0
        self.task_seconds = 60.0
        self.retry_after = 5.0
        self.polling_base: str | None = None
        self.tasks: dict[str, Task] = {}
        self.samples: dict[str, Sample] = {}

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/get_result", self._get_result)
        app.router.add_post("/v1/{model}", self._submit)
        app.router.add_get("/_results/{token}/{name}", self._result_file)
        app.router.add_route("*", "/{tail:.*}", self._not_found)

    # --- submit ---------------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        body = decode_json_object(await request.read())
        record = self.begin(request, body)
        key = self._authenticate(request)
        model = request.match_info["model"]
        if model not in wire.ENDPOINTS:
            return _json(404, {"detail": "Not Found"})
        if body is None:
            raise _rejection(422, _json_invalid())
        try:
            job = wire.parse_submit(model, body)
        except wire.Invalid as invalid:
            raise _rejection(422, invalid.doc()) from None
        if self._active(key, model) >= self._limit(model):
            return self._too_many(record, model)
        scenario = self.choose(request, record, model, key)
        if scenario == "disconnect":
            return drop_connection(request)
        if (failed := self._submit_failure(scenario, request, model)) is not None:
            return failed
        task = self._new_task(key, job, scenario)
        polling = f"{self.polling_base or self.base_url}/v1/get_result?id={task.id}"
        return _json(200, wire.submit_answer(job, task.id, polling))

    def _new_task(self, key: str, job: wire.Job, scenario: str) -> Task:
        now = time.monotonic()
        wait = self.slow_seconds if scenario == "slow" else self.scenarios.hold_for(job.model)
        task = Task(str(uuid.uuid4()), key, job, scenario, now, now + wait)
        self.tasks[task.id] = task
        return task

    def _submit_failure(
        self, scenario: str, request: web.Request, model: str
    ) -> web.Response | None:
        if scenario == "out_of_credits":
            return _json(
                402,
                {
                    "detail": "Insufficient credits. Add credits at https://dashboard.bfl.ai to continue."
                },
            )
        if scenario == "rate_limited":
            return self._rate_limited(model)
        if scenario == "unauthorized":
            return _json(401, {"detail": "Invalid API key"})
        if scenario == "forbidden":
            return _json(403, {"detail": "Your API key is not allowed to use this endpoint"})
        if scenario == "server_error":
            return _json(500, {"detail": "Internal Server Error"})
        if scenario == "unavailable":
            return _json(503, {"detail": "Service temporarily unavailable, please retry"})
        if scenario == "bad_gateway":
            return proxy_response(proxy_pages.nginx_502())
        if scenario == "cf_524":
            return proxy_response(proxy_pages.cloudflare_524(request.host))
        return None

    def _too_many(self, record: RecordedRequest, model: str) -> web.Response:
        record.scenario = "rate_limited"  # refused at admission; scripts are left untouched
        self.counts["rate_limited"] += 1
        return self._rate_limited(model)

    def _rate_limited(self, model: str) -> web.Response:
        limit = self._limit(model)
        doc = {
            "error": "rate_limit_exceeded",
            "message": f"You have reached the limit of {limit} active tasks. Wait for a task to"
            " finish before submitting another.",
            "retry_after": self.retry_after,
        }
        headers = {
            "Retry-After": f"{self.retry_after:g}",
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{self.retry_after:g}",
        }
        return _json(429, doc, headers)

    def _limit(self, model: str) -> int:
        return wire.ENDPOINTS[model].max_active or self.max_active

    def _active(self, key: str, model: str) -> int:
        """Unfinished tasks of this key (of this model where it has its own limit)."""
        now = time.monotonic()
        own = wire.ENDPOINTS[model].max_active is not None
        return sum(
            1
            for task in self.tasks.values()
            if task.key == key
            and not task.finished
            and now - task.created < self.task_seconds
            and (not own or task.job.model == model)
        )

    # --- polling --------------------------------------------------------------------------------

    async def _get_result(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        self._authenticate(request)
        task_id = request.query.get("id")
        if not task_id:
            error = wire.error("missing", "id", "Field required", None)
            error["loc"] = ["query", "id"]
            return _json(422, {"detail": [error]})
        task = self.tasks.get(task_id)
        if task is None:
            return _json(200, wire.poll_answer(task_id, "Task not found"))
        task.polls += 1
        if task.scenario == "flaky_poll" and task.polls == 1:
            return _json(503, {"detail": "Service temporarily unavailable, please retry"})
        return _json(200, self._advance(task))

    def _advance(self, task: Task) -> dict[str, Any]:
        """The task's state at this poll, moving it on when its time has come."""
        if task.status in TERMINAL:
            return self._state(task)
        polls = task.polls - (1 if task.scenario == "flaky_poll" else 0)
        if task.scenario == "request_moderated":
            task.status = "Request Moderated"
        elif task.scenario == "task_not_found":
            task.status = "Task not found"
        elif polls > self.pending_polls and time.monotonic() >= task.ready_at:
            task.status = {"content_moderated": "Content Moderated", "error": "Error"}.get(
                task.scenario, "Ready"
            )
        if task.status in TERMINAL:
            task.finished = True
        return self._state(task)

    def _state(self, task: Task) -> dict[str, Any]:
        if task.status == "Pending":
            progress = min(0.9, round(task.polls / (self.pending_polls + 1), 2))
            return wire.poll_answer(task.id, "Pending", progress=progress)
        if task.status == "Request Moderated":
            details = {"Moderation Reasons": ["Derivative Works Filter"]}
            return wire.poll_answer(task.id, task.status, details=details)
        if task.status == "Content Moderated":
            return wire.poll_answer(task.id, task.status, details={"Moderation Reasons": ["NSFW"]})
        if task.status != "Ready":
            return wire.poll_answer(task.id, task.status)
        return wire.poll_answer(task.id, "Ready", result=self._result(task))

    def _result(self, task: Task) -> dict[str, Any]:
        if task.token is None:
            task.token = secrets.token_urlsafe(12)
            width, height = task.size
            ttl = -1.0 if task.scenario == "result_expired" else self.result_ttl
            self.samples[task.token] = Sample(
                width, height, task.job.format, time.time() + ttl, task.scenario == "truncated"
            )
        sample = self.samples[task.token]
        ext = "jpg" if sample.format == "jpeg" else sample.format
        url = (
            f"{self.base_url}/_results/{task.token}/sample.{ext}"
            f"?se={int(sample.expires)}&sig={secrets.token_hex(8)}"
        )
        started = task.created - time.monotonic() + time.time()
        return {
            "sample": url,
            "prompt": task.job.prompt,
            "seed": task.job.seed if task.job.seed is not None else 1234567,
            "start_time": round(started, 3),
            "end_time": round(time.time(), 3),
            "duration": round(time.monotonic() - task.created, 3),
        }

    # --- result files ---------------------------------------------------------------------------

    async def _result_file(self, request: web.Request) -> web.StreamResponse:
        self.begin(request, None)
        sample = self.samples.get(request.match_info["token"])
        if sample is None or time.time() > sample.expires:
            # what an expired or unknown signed blob URL answers (Azure-style, our wording)
            body = (
                b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code>'
                b"<Message>Signature not valid in the specified time frame</Message></Error>"
            )
            return web.Response(status=403, body=body, content_type="application/xml")
        data = encoded_image(sample.width, sample.height, sample.format)
        if sample.truncated:
            return await send_truncated(request, data, MIME[sample.format])
        return web.Response(body=data, content_type=MIME[sample.format])

    async def _not_found(self, request: web.Request) -> web.Response:
        self.begin(request, None)
        if request.method == "GET" and request.path.startswith("/v1/"):
            return _json(405, {"detail": "Method Not Allowed"})
        return _json(404, {"detail": "Not Found"})

    # --- auth -----------------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> str:
        key = request.headers.get("x-key", "").strip()
        if not key:  # FastAPI's APIKeyHeader refusal (our reading of it)
            raise _rejection(403, {"detail": "Not authenticated"})
        if not self.key_accepted(key):
            raise _rejection(401, {"detail": "Invalid API key"})
        return key


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(doc), content_type="application/json", headers=headers
    )


def _rejection(status: int, doc: Any) -> Rejection:
    return Rejection(status, orjson.dumps(doc))


def _json_invalid() -> dict[str, Any]:
    return {
        "detail": [
            {"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": {}}
        ]
    }


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(FakeBfl, "python -m tests.fakes.bfl", argv)


if __name__ == "__main__":
    main()
