"""What every fake upstream shares: lifecycle, recording, scenario control, holds, broken answers.

A fake is a real aiohttp server on a local port. Tests start it in-process; benchmarks run it as
its own process through :func:`run_cli`. Subclasses add routes and speak one provider's wire
format; they answer a rejected request by raising :class:`Rejection` from anywhere in a handler.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

import orjson
from aiohttp import web

from tests.fakes.proxy_pages import ProxyAnswer
from tests.fakes.quota import QuotaRefusal
from tests.fakes.scenarios import SCENARIO_HEADER, ScenarioControl, UnknownScenarioError

# Edits carry up to 16 input images inline; aiohttp's 1 MiB default would reject them.
_MAX_BODY_BYTES = 256 * 1024 * 1024
# Benchmarks hold hundreds of requests at once; the default listen backlog of 128 drops some.
_BACKLOG = 1024
STARTED_AT = web.RequestKey("fake_started_at", float)
# The fake's own control endpoints; requests to them are not upstream calls and are not counted.
CONTROL_PREFIX = "/_fake/"


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One file part of a multipart request, as received."""

    filename: str | None
    content_type: str | None
    data: bytes


FormValue = str | UploadedFile


@dataclass(slots=True)
class RecordedRequest:
    """One request as the fake saw it; ``scenario`` stays None when it was rejected first."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    json: dict[str, Any] | None
    form: dict[str, list[FormValue]] = field(default_factory=dict)
    scenario: str | None = None
    quota: QuotaRefusal | None = None  # set when the per-key quota refused the request


class Rejection(Exception):
    """Raised inside a handler to answer at once with this status and JSON body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"{status} {body[:200]!r}")
        self.status = status
        self.body = body


def splice_images(doc: Any, images: Sequence[bytes] = (), *, pretty: bool = False) -> bytes:
    """Serialize ``doc`` with orjson, replacing the strings ``image_slot(i)`` by ``images[i]``.

    The images are already base64; splicing them into the small serialized skeleton avoids
    passing megabytes through a JSON encoder on every answer. ``pretty`` indents by two spaces.
    """
    rest = orjson.dumps(doc, option=orjson.OPT_INDENT_2 if pretty else 0)
    pieces: list[bytes] = []
    for index, image in enumerate(images):
        head, rest = rest.split(image_slot(index).encode(), 1)
        pieces += (head, image)
    pieces.append(rest)
    return b"".join(pieces)


def image_slot(index: int) -> str:
    """The placeholder string :func:`splice_images` replaces by the ``index``-th image."""
    return f"@@fake-image-{index}@@"


def decode_json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class FakeUpstream:
    """Base of the fakes: start/stop, request log, scenario control and the ways to misbehave.

    ``keys=None`` accepts any non-empty key. ``hold_seconds`` delays answers (see ``hold``).
    ``record=False`` keeps no request log (benchmarks). ``pretty_json`` indents JSON answers by
    two spaces, as both Google's and OpenAI's servers do (from memory of real answers; not in the
    references), so a gateway's byte search for the image data meets real whitespace.

    Subclasses set ``scenario_names`` and ``instant_scenarios`` (answered without the hold, like
    quota and auth rejections that real services return before generating) and add routes in
    ``_add_routes``.
    """

    scenario_names: ClassVar[frozenset[str]]
    instant_scenarios: ClassVar[frozenset[str]] = frozenset()
    # The provider's answers to a key over its per-minute quota and to a key with no quota.
    rate_limit_scenario: ClassVar[str] = "rate_limited"
    quota_zero_scenario: ClassVar[str]

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        hold_seconds: float = 0.0,
        record: bool = True,
        pretty_json: bool = True,
    ) -> None:
        self.keys: frozenset[str] | None = frozenset(keys) if keys is not None else None
        self.record = record
        self.pretty_json = pretty_json
        self.requests: list[RecordedRequest] = []
        self.scenarios = ScenarioControl(self.scenario_names, hold_seconds)
        self.slow_seconds = 30.0
        self.holding = 0  # requests asleep in a hold right now
        self.served = 0  # HTTP requests answered, control endpoints aside (GET /_fake/stats)
        self.app = web.Application(
            client_max_size=_MAX_BODY_BYTES, middlewares=[self._rejection_middleware]
        )
        # Before the subclass routes: FakeOpenAI ends with a catch-all that would shadow them.
        self.app.router.add_get(CONTROL_PREFIX + "stats", self._stats)
        self.app.router.add_post(CONTROL_PREFIX + "reset", self._reset)
        self._add_routes(self.app)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # --- scenario control, delegated so tests write fake.script(...) ---------------------------

    @property
    def counts(self) -> Counter[str]:
        return self.scenarios.counts

    def script(self, *names: str, model: str | None = None, key: str | None = None) -> None:
        self.scenarios.script(*names, model=model, key=key)

    def set_mode(self, name: str, model: str | None = None, key: str | None = None) -> None:
        self.scenarios.set_mode(name, model=model, key=key)

    def fail_rate(
        self,
        probability: float,
        scenario: str | Sequence[str],
        seed: int = 1,
        model: str | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.scenarios.fail_rate(probability, scenario, seed=seed, model=model, weights=weights)

    def limit_keys(self, images_per_minute: int | None, window_seconds: float = 60.0) -> None:
        """Per-key image quota over a rolling window; beyond it, the provider's rate-limit 429."""
        self.scenarios.limit_keys(images_per_minute, self.rate_limit_scenario, window_seconds)

    def quota_zero_keys(self, *keys: str) -> None:
        """Requests with these keys always get the provider's quota-zero answer."""
        self.scenarios.quota_zero_keys(*keys, scenario=self.quota_zero_scenario)

    def hold(self, seconds: float, model: str | None = None) -> None:
        self.scenarios.hold(seconds, model=model)

    def clear(self) -> None:
        self.scenarios.clear()

    # --- counters, also served at GET /_fake/stats and zeroed by POST /_fake/reset -------------

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.served,
            "by_scenario": dict(self.scenarios.counts),
            "by_key": dict(self.scenarios.by_key),
            "rate_limited_429": self.scenarios.rate_limited_429,
        }

    def reset_stats(self) -> None:
        """Zero the counters; scenario rules and quota windows are left as they are."""
        self.served = 0
        self.scenarios.reset_counts()

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats()), content_type="application/json")

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.Response(body=orjson.dumps(self.stats()), content_type="application/json")

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the fake is not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 picks a free port) and return the base URL."""
        # handler_cancellation lets a client that hangs up cancel a held answer (scenario slow).
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        await web.TCPSite(runner, host, port, backlog=_BACKLOG).start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._base_url = f"http://{host}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- helpers for handlers -------------------------------------------------------------------

    def key_accepted(self, key: str | None) -> bool:
        return bool(key) and (self.keys is None or key in self.keys)

    def begin(
        self,
        request: web.Request,
        json: dict[str, Any] | None,
        form: dict[str, list[FormValue]] | None = None,
    ) -> RecordedRequest:
        """Make the record of a request; it is kept in ``requests`` when recording is on."""
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={name.lower(): value for name, value in request.headers.items()},
            json=json,
            form=form or {},
        )
        if self.record:
            self.requests.append(record)
        return record

    def choose(
        self,
        request: web.Request,
        record: RecordedRequest,
        model: str | None,
        key: str | None,
        images: int = 1,
    ) -> str:
        """The scenario for this request (``images`` count against the key's quota, if any)."""
        choice = self.scenarios.decide(request.headers.get(SCENARIO_HEADER), model, key, images)
        record.scenario, record.quota = choice.name, choice.quota
        return choice.name

    async def wait(self, scenario: str, model: str | None) -> None:
        """Hold the answer as the scenario and the configured holds say; cancellable."""
        if scenario == "slow":
            seconds = self.slow_seconds
        elif scenario in self.instant_scenarios:
            seconds = 0.0
        else:
            seconds = self.scenarios.hold_for(model)
        if seconds <= 0:
            return
        self.holding += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.holding -= 1

    @web.middleware
    async def _rejection_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request[STARTED_AT] = time.monotonic()
        if not request.path.startswith(CONTROL_PREFIX):
            self.served += 1
        try:
            return await handler(request)
        except Rejection as rejection:
            return web.Response(
                status=rejection.status, body=rejection.body, content_type="application/json"
            )
        except UnknownScenarioError as error:
            return web.Response(status=400, text=f"fake: {error}")


async def send_truncated(
    request: web.Request, body: bytes, content_type: str
) -> web.StreamResponse:
    """Promise the whole body (Content-Length), send half of it, then close the connection."""
    response = web.StreamResponse(status=200)
    response.content_type = content_type
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    _close_transport(request)
    return response


def proxy_response(answer: ProxyAnswer) -> web.Response:
    return web.Response(
        status=answer.status,
        body=answer.body,
        content_type=answer.content_type,
        headers=answer.headers,
    )


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection without answering; the returned response is never sent."""
    _close_transport(request)
    return web.Response()


def _close_transport(request: web.Request) -> None:
    # close() (not abort) flushes what was written, so the client gets exactly the cut body.
    if request.transport is not None:
        request.transport.close()


def sse_event(data: bytes, event: str | None = None, newline: bytes = b"\n") -> bytes:
    """One server-sent event carrying ``data`` (already JSON) on a single data line."""
    head = b"event: " + event.encode() + newline if event else b""
    return head + b"data: " + data + newline + newline


# --- running a fake as its own process ------------------------------------------------------------


def run_cli(fake_class: type[FakeUpstream], prog: str, argv: Sequence[str] | None) -> None:
    """Serve one fake until SIGTERM/SIGINT; prints ``listening on URL`` once it accepts."""
    args = _parse_args(prog, argv)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(fake_class, args))


def _parse_args(prog: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Run a fake upstream server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--hold-seconds", type=float, default=0.0, help="wait before answering")
    parser.add_argument("--keys", default=None, help="comma-separated accepted keys (default: any)")
    parser.add_argument("--mode", default=None, help="a sticky scenario for every request")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="probability of a failure")
    parser.add_argument(
        "--fail-scenario",
        default="unavailable",
        help="a scenario, or a mix NAME[:WEIGHT],NAME[:WEIGHT],... chosen uniformly or by weight",
    )
    parser.add_argument(
        "--key-ipm",
        type=int,
        default=None,
        help="images per key per rolling minute; beyond it the provider's rate-limit 429",
    )
    parser.add_argument(
        "--quota-zero-keys", default="", help="comma-separated keys that have no quota at all"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="keep a log of requests in memory")
    parser.add_argument("--compact-json", action="store_true", help="no indentation in answers")
    return parser.parse_args(argv)


def parse_mix(text: str) -> tuple[list[str], list[float] | None]:
    """``"a,b:2,c"`` → names and weights (a missing weight is 1); weights None when none given."""
    names: list[str] = []
    weights: list[float] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, weight = item.partition(":")
        names.append(name.strip())
        weights.append(float(weight) if weight else 1.0)
    return names, (weights if ":" in text else None)


async def _serve(fake_class: type[FakeUpstream], args: argparse.Namespace) -> None:
    keys = [key for key in args.keys.split(",") if key] if args.keys else None
    fake = fake_class(
        keys=keys,
        hold_seconds=args.hold_seconds,
        record=args.record,
        pretty_json=not args.compact_json,
    )
    if args.mode:
        fake.set_mode(args.mode)
    if args.fail_rate > 0:
        names, weights = parse_mix(args.fail_scenario)
        fake.fail_rate(args.fail_rate, names, seed=args.seed, weights=weights)
    if args.key_ipm is not None:
        fake.limit_keys(args.key_ipm)
    zero_keys = [key for key in args.quota_zero_keys.split(",") if key]
    if zero_keys:
        fake.quota_zero_keys(*zero_keys)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    base_url = await fake.start(args.host, args.port)
    print(f"listening on {base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()
