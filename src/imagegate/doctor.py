"""`imagegate doctor`: probe each deployment with small real calls and say what works, what is
wrong, and the fix.

Checks run in the order users need to fix things (the order of gemini_failures.py): key and
billing (per key of the pool), endpoint and model, parameter survival (do 16:9 and 2K reach the
model?), quota. A check whose premise failed is skipped and says why. Every probe is a real
upstream call, billed like any other; `announce` hears how many before the first one is made.

This module knows no Typer or Rich: the CLI prints `render` (lines with a tone) or `to_json`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp
import orjson

from imagegate.config.settings import Settings
from imagegate.core.deployment import Capabilities, Deployment, Limits, UpstreamKey
from imagegate.core.errors import ConfigError, FailureKind, UpstreamError
from imagegate.core.geometry import Size, aspect_matches, parse_size
from imagegate.core.payload import TruncatedImage
from imagegate.core.request import ImageRequest
from imagegate.gateway import configured_deployments
from imagegate.providers import registry
from imagegate.providers._http import make_session
from imagegate.providers.base import Provider
from imagegate.router import probe as active_probe

KEY_AND_BILLING = "key and billing"
ENDPOINT_AND_MODEL = "endpoint and model"
PARAMETER_SURVIVAL = "parameter survival"
QUOTA = "quota"

PROBE_SECONDS = 60.0
WIDE = 16 / 9
# A 1K 16:9 image is 1344–1365 px wide and a 2K one 2048–2752 px; 1900 px lies between them.
MIN_2K_LONG_SIDE = 1900

K = FailureKind
# What a failure says about the user's setup, by the check it belongs to.
_KEY_KINDS = frozenset({K.AUTH, K.BILLING, K.QUOTA_ZERO})
_QUOTA_KINDS = frozenset({K.RATE_LIMITED, K.QUOTA_STUCK})
_PROVIDER_KINDS = frozenset({K.UNAVAILABLE, K.TIMEOUT, K.CAPACITY})


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool | None  # None: skipped or not confirmed; `detail` says why
    detail: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class DeploymentReport:
    deployment: str
    provider_kind: str
    model: str
    checks: list[Check]
    ok: bool  # no check failed


Tone = Literal["title", "ok", "fail", "skip", "fix", "summary"]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the human report; the CLI picks a colour per tone."""

    text: str
    tone: Tone


@dataclass(frozen=True, slots=True)
class Probe:
    """The outcome of one doctor call: the image's size and format, or the upstream's error."""

    key: UpstreamKey | None
    request: ImageRequest
    seconds: float
    image: Size | None = None
    format: str | None = None
    error: UpstreamError | None = None

    @property
    def key_id(self) -> str:
        return self.key.id if self.key is not None else "no key (none needed)"


async def diagnose(
    settings: Settings,
    *,
    deployments: Sequence[str] | None = None,
    session: aiohttp.ClientSession | None = None,
    check_parameters: bool = True,
    announce: Callable[[Mapping[str, int]], None] | None = None,
) -> list[DeploymentReport]:
    """Probe the named deployments (all when None), in configuration order.

    `announce` gets {deployment: the most calls it will make} before any call. A session passed
    in stays open; one made here is closed. Raises ConfigError for an unknown deployment name.
    """
    chosen = _choose(configured_deployments(settings), deployments)
    own_session = session is None
    if session is None:
        session = make_session()
    try:
        providers = [registry.provider_class(dep.kind)(dep, session) for dep in chosen]
        if announce is not None:
            announce({p.deployment.name: planned_calls(p, check_parameters) for p in providers})
        # Deployments are probed side by side: each makes at most a few calls, and a slow
        # upstream should not make the whole report wait once per deployment.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_examine(p, check_parameters)) for p in providers]
        return [task.result() for task in tasks]
    finally:
        if own_session:
            await session.close()


def _choose(known: Mapping[str, Deployment], names: Sequence[str] | None) -> list[Deployment]:
    if not names:
        return list(known.values())
    unknown = [name for name in names if name not in known]
    if unknown:
        defined = ", ".join(known) or "none"
        raise ConfigError([f"no deployment named {n!r} (defined: {defined})" for n in unknown])
    return [known[name] for name in dict.fromkeys(names)]


def planned_calls(provider: Provider, check_parameters: bool) -> int:
    """The most calls the doctor makes for a deployment: one per key, one for parameters."""
    calls = len(provider.deployment.keys) or 1
    survival = survival_request(provider.capabilities, provider.deployment)
    return calls + 1 if check_parameters and survival is not None else calls


async def _examine(provider: Provider, check_parameters: bool) -> DeploymentReport:
    deployment = provider.deployment
    minimal = minimal_request(provider.capabilities, deployment)
    # One call per key, one after the other: key problems are per key, and the calls of one
    # deployment should not race each other into its rate limit.
    probes = [await _probe(provider, minimal, key) for key in _keys(deployment)]
    checks = [_key_check(probe) for probe in probes]
    checks.append(_endpoint_check(deployment, probes))
    working = next((probe for probe in probes if probe.error is None), None)
    survival, extra = await _survival_check(provider, working, check_parameters)
    checks.append(survival)
    checks.append(_quota_check(deployment.limits, [*probes, *extra]))
    checks = _redacted(checks, deployment.keys)
    return DeploymentReport(
        deployment=deployment.name,
        provider_kind=deployment.kind,
        model=deployment.model,
        checks=checks,
        ok=all(check.ok is not False for check in checks),
    )


def _keys(deployment: Deployment) -> list[UpstreamKey | None]:
    return list(deployment.keys) or [None]


async def _probe(provider: Provider, request: ImageRequest, key: UpstreamKey | None) -> Probe:
    started = time.monotonic()
    request = dataclasses.replace(request, deadline=started + PROBE_SECONDS)
    try:
        result = await provider.generate(request, key)
    except UpstreamError as exc:
        return Probe(key, request, time.monotonic() - started, error=exc)
    try:
        image = result.images[0]
        # Read the image to its end: a header alone does not prove the image arrives whole.
        await image.source.read()
    except TruncatedImage as exc:
        broken = UpstreamError(K.UNAVAILABLE, f"the image broke off mid-answer: {exc}", status=200)
        return Probe(key, request, time.monotonic() - started, error=broken)
    finally:
        await result.aclose()
    return Probe(key, request, time.monotonic() - started, image.size, image.format)


# --- the requests ------------------------------------------------------------------------------


def _base_request(caps: Capabilities, deployment: Deployment) -> ImageRequest:
    return dataclasses.replace(minimal_request(caps, deployment), size=None, resolution=None)


def minimal_request(caps: Capabilities, deployment: Deployment) -> ImageRequest:
    """The cheapest request the deployment can serve (shared with the active prober)."""
    return active_probe.minimal_request(caps, deployment, "doctor")


def survival_request(caps: Capabilities, deployment: Deployment) -> ImageRequest | None:
    """16:9 at 2K where the deployment offers it; else the nearest thing it offers; else None.

    Providers with an aspect-ratio setting get 16:9 (at 2K when offered); providers with a fixed
    size list get the size nearest to 16:9 and must return exactly it.
    """
    base = _base_request(caps, deployment)
    if caps.aspect_ratios and "16:9" in caps.aspect_ratios:
        tier = "2K" if caps.resolutions and "2K" in caps.resolutions else None
        return dataclasses.replace(base, aspect_ratio="16:9", resolution=tier)
    if caps.sizes:
        sizes = [size for size in map(parse_size, caps.sizes) if size is not None]
        nearest = min(sizes, key=lambda s: abs(math.log(s.aspect / WIDE)))
        return dataclasses.replace(base, size=nearest)
    if caps.arbitrary_sizes:
        return dataclasses.replace(base, size=_wide_2k(caps))
    return None


def _wide_2k(caps: Capabilities) -> Size:
    width = min(2048, caps.max_edge or 2048)
    step = max(1, caps.size_multiple)
    width -= width % step
    return Size(width, round(width / WIDE / step) * step)


def _asked(request: ImageRequest) -> str:
    if request.size is not None:
        return f"exactly {request.size}"
    return f"{request.aspect_ratio} at {request.resolution or 'the default resolution'}"


# --- the checks --------------------------------------------------------------------------------


def _answer(error: UpstreamError) -> str:
    """The kind and HTTP status of an error, for a detail line."""
    if error.status is None:
        return f"{error.kind}, no HTTP answer"
    code = f" {error.provider_code}" if error.provider_code else ""
    return f"{error.kind}, HTTP {error.status}{code}"


def _explain(error: UpstreamError, deployment: Deployment) -> tuple[str, str]:
    """(detail, fix) for a failure past the key check."""
    if error.kind is K.NOT_FOUND:
        where = f"model {deployment.model!r} at {deployment.base_url}"
        return (
            f"{where} was not found ({_answer(error)})",
            f"{error.diagnosis}. The deployment asks for {where}",
        )
    if isinstance(error.__cause__, aiohttp.ClientConnectorError):  # refused, or no such host
        return f"cannot reach {deployment.base_url} ({_answer(error)})", error.diagnosis
    if error.kind in _PROVIDER_KINDS:
        return (
            f"the provider is failing right now ({_answer(error)})",
            f"not your configuration: {error.diagnosis}. Run the doctor again later; meanwhile"
            " the router falls over to a route's other candidates",
        )
    return f"failed ({_answer(error)})", error.diagnosis


def _key_check(probe: Probe) -> Check:
    error, who = probe.error, probe.key_id
    if error is None:
        return Check(KEY_AND_BILLING, True, f"{who}: accepted")
    if error.kind is K.AUTH:
        return Check(KEY_AND_BILLING, False, f"{who}: rejected ({_answer(error)})", error.diagnosis)
    if error.kind in _KEY_KINDS:
        detail = f"{who}: no billing behind it ({_answer(error)})"
        return Check(KEY_AND_BILLING, False, detail, error.diagnosis)
    if error.kind in _PROVIDER_KINDS:
        detail = f"{who}: not confirmed, no usable answer from the upstream ({_answer(error)})"
        return Check(KEY_AND_BILLING, None, detail)
    # A 404, 429 or refusal of the prompt comes from past the upstream's key check.
    return Check(KEY_AND_BILLING, True, f"{who}: accepted (the upstream answered {error.kind})")


def _endpoint_check(deployment: Deployment, probes: Sequence[Probe]) -> Check:
    for probe in probes:
        if probe.error is None:
            detail = (
                f"{deployment.model} at {deployment.base_url}: {probe.image} {probe.format}"
                f" in {probe.seconds:.2f} s"
            )
            return Check(ENDPOINT_AND_MODEL, True, detail)
    errors = [p.error for p in probes if p.error is not None and p.error.kind not in _KEY_KINDS]
    if not errors:
        return Check(ENDPOINT_AND_MODEL, None, "skipped because no key was accepted")
    if errors[0].kind in _QUOTA_KINDS:
        detail = "not confirmed: rate limited before an image came back (see quota)"
        return Check(ENDPOINT_AND_MODEL, None, detail)
    detail, fix = _explain(errors[0], deployment)
    return Check(ENDPOINT_AND_MODEL, False, detail, fix)


async def _survival_check(
    provider: Provider, working: Probe | None, enabled: bool
) -> tuple[Check, list[Probe]]:
    if not enabled:
        return Check(PARAMETER_SURVIVAL, None, "skipped on request"), []
    if working is None:
        return Check(PARAMETER_SURVIVAL, None, "skipped because no call produced an image"), []
    request = survival_request(provider.capabilities, provider.deployment)
    if request is None:
        detail = "skipped: the deployment offers no aspect ratio or size setting to check"
        return Check(PARAMETER_SURVIVAL, None, detail), []
    probe = await _probe(provider, request, working.key)
    return _judge_survival(provider.deployment, probe), [probe]


def _judge_survival(deployment: Deployment, probe: Probe) -> Check:
    asked = _asked(probe.request)
    if probe.error is not None:
        if probe.error.kind in _QUOTA_KINDS:
            detail = f"not checked: rate limited when asking for {asked} (see quota)"
            return Check(PARAMETER_SURVIVAL, None, detail)
        detail, fix = _explain(probe.error, deployment)
        return Check(PARAMETER_SURVIVAL, False, f"asked for {asked}: {detail}", fix)
    assert probe.image is not None  # a probe without an error has an image
    got = f"asked for {asked}, got {probe.image}"
    ignored = ignored_setting(probe.request, probe.image)
    if ignored is None:
        return Check(PARAMETER_SURVIVAL, True, got)
    fix = (
        f"{ignored} was ignored upstream: asked for {asked}, received {probe.image}. Something"
        " between the gateway and the model drops or rewrites the setting (a proxy or relay at"
        f" {deployment.base_url} that strips the image settings, such as Gemini's imageConfig,"
        ' or lowercases "2K" to "2k"), or the model does not honour it. Call the provider\'s'
        " own endpoint to tell which"
    )
    return Check(PARAMETER_SURVIVAL, False, f"{got}: {ignored} was ignored", fix)


def ignored_setting(request: ImageRequest, got: Size) -> str | None:
    """The geometry setting that `got` shows did not survive, with the evidence; None if all did."""
    if request.size is not None:
        return None if got == request.size else f"the size {request.size}"
    wanted = request.wanted_aspect
    if wanted is not None and not aspect_matches(got, wanted):
        ratio = request.aspect_ratio
        return f"the aspect ratio {ratio} (aspect {got.aspect:.3f}, not {wanted:.3f})"
    long_side = max(got.width, got.height)
    if request.resolution == "2K" and long_side < MIN_2K_LONG_SIDE:
        return f"the resolution 2K (long side {long_side} px, a 1K image's)"
    return None


def _quota_check(limits: Limits, probes: Sequence[Probe]) -> Check:
    configured = _describe_limits(limits)
    failed = [(p, p.error) for p in probes if p.error is not None]
    # A zero quota first: no waiting fixes it, while a per-minute limit passes.
    flagged = [pair for pair in failed if pair[1].kind is K.QUOTA_ZERO]
    flagged += [pair for pair in failed if pair[1].kind in _QUOTA_KINDS]
    if flagged:
        probe, error = flagged[0]
        retry = f"; retry after {error.retry_after:g} s" if error.retry_after is not None else ""
        detail = f"{probe.key_id}: {_answer(error)}{retry}; {configured}"
        return Check(QUOTA, False, detail, _quota_fix(error, limits))
    if len(failed) < len(probes):
        return Check(QUOTA, True, f"no rate limit hit; {configured}")
    other_429 = [str(error.kind) for _, error in failed if error.status == 429]
    seen = f"; the 429 seen was {other_429[0]} (see above)" if other_429 else ""
    return Check(QUOTA, None, f"not exercised: no call got an image{seen}; {configured}")


def _quota_fix(error: UpstreamError, limits: Limits) -> str:
    if error.kind is not K.RATE_LIMITED:
        return error.diagnosis
    pace = (
        "set the deployment's limits (images_per_minute) at or below the upstream quota so the"
        " gateway paces ahead of it"
        if limits.images_per_minute is None and limits.requests_per_minute is None
        else "lower the deployment's limits to the upstream quota"
    )
    return f"{error.diagnosis}. Other traffic on the same key shares the quota; {pace}"


def _describe_limits(limits: Limits) -> str:
    parts = [
        f"{value} {unit}"
        for value, unit in (
            (limits.images_per_minute, "images/min"),
            (limits.requests_per_minute, "requests/min"),
            (limits.requests_per_day, "requests/day"),
            (limits.concurrency, "at once"),
        )
        if value is not None
    ]
    return f"configured limits: {', '.join(parts)}" if parts else "no limits configured"


def _redacted(checks: list[Check], keys: Iterable[UpstreamKey]) -> list[Check]:
    """The checks with any key secret masked. Upstream texts should never echo a key, but a
    relay's error message might, and this report is printed and piped into scripts."""
    secrets = [key.secret for key in keys if key.secret]

    def mask(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return [
        dataclasses.replace(
            check,
            detail=mask(check.detail),
            fix=None if check.fix is None else mask(check.fix),
        )
        for check in checks
    ]


# --- output ------------------------------------------------------------------------------------

_MARK = {True: "✓", False: "✗", None: "–"}
_TONE: dict[bool | None, Tone] = {True: "ok", False: "fail", None: "skip"}


def describe_plan(plan: Mapping[str, int]) -> str:
    each = ", ".join(f"{name} {calls}" for name, calls in plan.items())
    total = sum(plan.values())
    return f"doctor makes real upstream calls, billed as usual: at most {total} ({each})"


def render(reports: Sequence[DeploymentReport]) -> list[Line]:
    """The human report: per deployment a title, one line per check, the fix under each ✗."""
    lines: list[Line] = []
    width = max((len(c.name) for r in reports for c in r.checks), default=0)
    for report in reports:
        title = f"{report.deployment}  ({report.provider_kind} · {report.model})"
        lines.append(Line(title, "title"))
        for check in report.checks:
            text = f"  {_MARK[check.ok]} {check.name:<{width}}  {check.detail}"
            lines.append(Line(text, _TONE[check.ok]))
            if check.ok is False and check.fix:
                lines.append(Line(f"      fix: {check.fix}", "fix"))
    lines.append(Line(summary(reports), "summary"))
    return lines


def summary(reports: Sequence[DeploymentReport]) -> str:
    failing = [report.deployment for report in reports if not report.ok]
    healthy = len(reports) - len(failing)
    text = f"{healthy} of {len(reports)} deployment(s) healthy"
    return f"{text}; failing: {', '.join(failing)}" if failing else text


def to_json(reports: Sequence[DeploymentReport]) -> str:
    documents = [dataclasses.asdict(report) for report in reports]
    return orjson.dumps(documents, option=orjson.OPT_INDENT_2).decode()


def exit_status(reports: Sequence[DeploymentReport]) -> int:
    """0 when every deployment is healthy, 1 when any check failed (2 is the CLI's config error)."""
    return 0 if all(report.ok for report in reports) else 1
