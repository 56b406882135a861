"""The chaos benchmark of the reliability engine: ``python bench/chaos.py [--quick]
[--scenarios 1,2,3,4,safety] [--out docs/benchmarks.md] [--gateway-rev REV]``.

Per scenario it starts fake upstreams (one process per deployment) that fail with the failure
mix seen in production, and a fresh gateway routing over them; then it drives the gateway and
checks what clients got against the issue's targets: success rate, upstream calls per success
(from the fakes' own counters), false successes (every 2xx image decoded in full), upstream
429s and early refusals under a per-key quota, and what a quota-zero key costs. Figures go to
the terminal, to bench/results/chaos.json and (full runs) to the Chaos section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import re
import secrets
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make `bench` and `tests` (the fakes) importable from the repo root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import orjson

from bench import chaos_report as report
from bench.chaos_client import (
    Decoder,
    ImageCall,
    Outcome,
    printing_progress,
    run_closed,
    run_open,
)
from bench.procs import (
    REPO,
    Proc,
    ProcessSet,
    StartError,
    _wait_for_url,
    free_port,
    revision_source,
)
from bench.report import Check

RESULTS = REPO / "bench" / "results" / "chaos.json"
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"
ALIAS = "chaos"
PROMPT = "a red bicycle leaning on a lamp post"
SIZE = (1024, 1024)
ALL_SCENARIOS = ("1", "2", "3", "4", "safety")

# What production saw from Gemini (the failure list), minus safety blocks: those are an
# answer for the client, not a failure to route around (the safety scenario checks them), and
# minus the quota 429s, which scenarios 3 and 4 produce for real from per-key quotas.
GEMINI_MIX = (
    "unavailable",  # 503 UNAVAILABLE
    "capacity",  # 503 "The model is overloaded"
    "high_demand",  # 503 "experiencing high demand"
    "capacity_429",  # 429 RESOURCE_EXHAUSTED without quota details
    "internal",  # 500 INTERNAL
    "get_channel_failed",  # 500 from a New API relay
    "bad_gateway",  # 502 nginx page
    "cf_524",  # 524 Cloudflare timeout page
    "text_only",  # 200 without an image
)
OPENAI_MIX = ("server_error", "unavailable", "bad_gateway", "cf_524", "get_channel_failed")
SAFETY_MIX = ("image_safety", "prompt_blocked")
# Upstream answers with HTTP 429, by fake scenario name.
UPSTREAM_429 = ("rate_limited", "quota_zero", "quota_stuck", "capacity_429", "insufficient_quota")
SAFETY_SCENARIOS = ("image_safety", "prompt_blocked", "moderation_blocked")
PREVIEW_MODEL = "gemini-3.1-flash-image-preview"
STABLE_MODEL = "gemini-2.5-flash-image"
OPENAI_MODEL = "gpt-image-1.5"
BILLING_HINT = re.compile(r"enabl\w*\s+(the\s+)?billing", re.I)


@dataclass(frozen=True)
class ChaosPlan:
    """How much to measure. The defaults are the issue's figures (~8 min in all)."""

    scenarios: tuple[str, ...] = ALL_SCENARIOS
    requests: int = 2000  # scenarios 1 and 2
    concurrency: int = 16
    paced_seconds: float = 180.0  # scenario 3
    per_second: float = 1.0  # scenario 3: 60 images per minute, n=1
    deadline_seconds: float = 30.0  # scenario 3: x-imagegate-timeout
    early_refusal_seconds: float = 1.0  # scenario 3: a refusal later than this is not "early"
    quota_requests: int = 30  # scenario 4, per variant
    safety_requests: int = 200
    hold_seconds: float = 0.0  # how long the fakes take to answer
    seed: int = 1
    quick: bool = False

    @classmethod
    def quick_run(cls, scenarios: Sequence[str] = ALL_SCENARIOS) -> ChaosPlan:
        """A smoke run of a few minutes: the same checks on smaller counts."""
        return cls(
            scenarios=tuple(scenarios),
            requests=300,
            paced_seconds=60.0,
            quota_requests=10,
            safety_requests=60,
            quick=True,
        )


@dataclass(frozen=True)
class Upstream:
    """One deployment of the route, served by its own fake process."""

    name: str  # deployment and provider name in the gateway config
    kind: str  # gemini | openai: the fake and the provider kind
    model: str
    keys: int = 1
    fail_rate: float = 0.0
    mix: tuple[str, ...] = ()
    key_ipm: int | None = None  # the fake's per-key quota
    zero_keys: tuple[int, ...] = ()  # indices of keys with no quota at all
    limits: Mapping[str, int] = field(default_factory=dict)  # the deployment's, in the config

    def describe(self) -> str:
        parts = [f"`{self.name}`: {self.kind} `{self.model}`"]
        if self.fail_rate:
            parts.append(f"fails {self.fail_rate:.0%} ({len(self.mix)}-way mix)")
        else:
            parts.append("healthy")
        if self.keys > 1:
            parts.append(f"{self.keys} keys")
        if self.key_ipm is not None:
            parts.append(f"{self.key_ipm} images/min per key at the fake")
        if self.zero_keys:
            parts.append(f"key {', '.join(str(i + 1) for i in self.zero_keys)} has quota 0")
        if self.limits:
            parts.append(f"config limits {dict(self.limits)}")
        return ", ".join(parts)


@dataclass
class Stage:
    """Fakes and a gateway running for one scenario, and how to call them."""

    gateway: Proc
    fakes: dict[str, Proc]
    session: aiohttp.ClientSession
    decoder: Decoder

    def call(self, headers: Mapping[str, str] | None = None) -> ImageCall:
        body = {"model": ALIAS, "prompt": PROMPT, "size": f"{SIZE[0]}x{SIZE[1]}", "n": 1}
        return ImageCall(
            url=f"{self.gateway.url}/v1/images/generations",
            body=body,
            headers={"Content-Type": "application/json", **(headers or {})},
            images=1,
            size=SIZE,
        )

    async def stats(self) -> dict[str, dict[str, Any]]:
        """Each fake's counters (GET /_fake/stats), by deployment name."""
        found: dict[str, dict[str, Any]] = {}
        for name, fake in self.fakes.items():
            async with self.session.get(f"{fake.url}/_fake/stats") as answer:
                found[name] = orjson.loads(await answer.read())
        return found


@dataclass
class Bench:
    """What every scenario shares: the plan, the processes and the gateway's source."""

    plan: ChaosPlan
    procs: ProcessSet
    session: aiohttp.ClientSession
    decoder: Decoder
    gateway_env: dict[str, str]

    def start(self, upstreams: Sequence[Upstream]) -> Stage:
        keys = {u.name: [secrets.token_hex(12) for _ in range(u.keys)] for u in upstreams}
        fakes = {
            u.name: self._start_fake(u, keys[u.name], self.plan.seed + index)
            for index, u in enumerate(upstreams)
        }
        env = dict(self.gateway_env)
        for u in upstreams:
            env.update(zip(_key_envs(u), keys[u.name], strict=True))
        gateway = self.procs.start_gateway(_settings(upstreams, fakes), env)
        return Stage(gateway, fakes, self.session, self.decoder)

    def _start_fake(self, upstream: Upstream, keys: list[str], seed: int) -> Proc:
        argv = [sys.executable, "-m", f"tests.fakes.{upstream.kind}", "--host", "127.0.0.1"]
        argv += ["--port", str(free_port()), "--keys", ",".join(keys), "--seed", str(seed)]
        argv += ["--hold-seconds", str(self.plan.hold_seconds), "--compact-json"]
        if upstream.fail_rate:
            argv += ["--fail-rate", str(upstream.fail_rate)]
            argv += ["--fail-scenario", ",".join(upstream.mix)]
        if upstream.key_ipm is not None:
            argv += ["--key-ipm", str(upstream.key_ipm)]
        if upstream.zero_keys:
            argv += ["--quota-zero-keys", ",".join(keys[i] for i in upstream.zero_keys)]
        proc = self.procs.spawn(f"fake-{upstream.name}", argv)
        proc.url = _wait_for_url(proc, 30.0)
        return proc


def _key_envs(upstream: Upstream) -> list[str]:
    # The config names keys by environment variable, so the name must be one ("gemini-a" is not).
    stem = re.sub(r"\W", "_", upstream.name.upper())
    return [f"CHAOS_{stem}_KEY_{index}" for index in range(upstream.keys)]


def _settings(upstreams: Sequence[Upstream], fakes: Mapping[str, Proc]) -> dict[str, Any]:
    """The gateway config minus ``server``: a provider and a deployment per upstream, one route."""
    base_path = {"gemini": "/v1beta", "openai": "/v1"}
    providers = {
        u.name: {
            "kind": u.kind,
            "base_url": fakes[u.name].url + base_path[u.kind],
            "keys": _key_envs(u),
        }
        for u in upstreams
    }
    deployments: dict[str, Any] = {}
    for u in upstreams:
        deployments[u.name] = {"provider": u.name, "model": u.model}
        if u.limits:
            deployments[u.name]["limits"] = dict(u.limits)
    return {
        "providers": providers,
        "deployments": deployments,
        "routes": {ALIAS: [u.name for u in upstreams]},
    }


# --- the scenarios --------------------------------------------------------------------------------


async def scenario_fallback(bench: Bench) -> dict[str, Any]:
    """1. A primary Gemini deployment failing 70 %, a healthy fallback."""
    upstreams = [
        Upstream("primary", "gemini", PREVIEW_MODEL, fail_rate=0.7, mix=GEMINI_MIX),
        Upstream("fallback", "gemini", STABLE_MODEL),
    ]
    return await _closed_loop_scenario(
        bench, "1", "Primary Gemini failing 70 %, healthy fallback", upstreams, 99.9, 1.3
    )


async def scenario_three_failing(bench: Bench) -> dict[str, Any]:
    """2. Two Gemini deployments failing 70 %, an OpenAI deployment failing 30 %."""
    upstreams = [
        Upstream("gemini-a", "gemini", PREVIEW_MODEL, fail_rate=0.7, mix=GEMINI_MIX),
        Upstream("gemini-b", "gemini", STABLE_MODEL, fail_rate=0.7, mix=GEMINI_MIX),
        Upstream("openai", "openai", OPENAI_MODEL, fail_rate=0.3, mix=OPENAI_MIX),
    ]
    title = "Two Gemini deployments failing 70 %, OpenAI failing 30 %"
    return await _closed_loop_scenario(bench, "2", title, upstreams, 99.5, None)


async def _closed_loop_scenario(
    bench: Bench,
    number: str,
    title: str,
    upstreams: list[Upstream],
    min_success_pct: float,
    max_calls_per_success: float | None,
) -> dict[str, Any]:
    plan = bench.plan
    stage = bench.start(upstreams)
    progress = printing_progress(plan.requests, f"scenario {number}", max(plan.requests // 8, 1))
    outcomes = await run_closed(
        stage.session, stage.call(), stage.decoder, plan.concurrency, plan.requests, progress
    )
    upstream = await stage.stats()
    bench.procs.stop_all()
    summary = report.summarize(outcomes)
    calls = sum(stats["requests"] for stats in upstream.values())
    checks = [
        _success_check(summary, min_success_pct),
        _calls_check(calls, summary["served"], max_calls_per_success),
        _false_success_check(summary),
    ]
    return _result(number, title, upstreams, plan, summary, upstream, checks, calls=calls)


async def scenario_paced(bench: Bench) -> dict[str, Any]:
    """3. Three keys of 10 images/min, offered 60 images/min: pace, or refuse early."""
    plan = bench.plan
    ipm = 10
    upstreams = [
        Upstream(
            "paced", "gemini", STABLE_MODEL, keys=3, key_ipm=ipm, limits={"images_per_minute": ipm}
        )
    ]
    stage = bench.start(upstreams)
    total = round(plan.per_second * plan.paced_seconds)
    call = stage.call({"x-imagegate-timeout": f"{plan.deadline_seconds:g}"})
    progress = printing_progress(total, "scenario 3", max(total // 6, 1))
    outcomes = await run_open(
        stage.session, call, stage.decoder, plan.per_second, plan.paced_seconds, progress
    )
    upstream = await stage.stats()
    bench.procs.stop_all()
    summary = report.summarize(outcomes)
    upstream_429 = sum(_count_429(stats) for stats in upstream.values())
    verdicts = Counter(_paced_verdict(outcome, plan) for outcome in outcomes)
    capacity = _quota_allows(outcomes, keys=3, ipm=ipm)
    in_bounds = verdicts["served in time"] + verdicts["refused early"]
    checks = [
        Check("upstream 429s", str(upstream_429), "0", upstream_429 == 0),
        Check(
            "served in deadline or refused early",
            f"{in_bounds} / {len(outcomes)}",
            f"all (deadline {plan.deadline_seconds:g} s,"
            f" refusal ≤ {plan.early_refusal_seconds:g} s)",
            in_bounds == len(outcomes),
            ", ".join(f"{name} {count}" for name, count in verdicts.most_common()),
        ),
        Check(
            "images served",
            str(summary["served"]),
            f"≤ {capacity} allowed by the keys",
            None,
            "a rolling 60 s window per key; the run, retries included, spanned"
            f" {_span(outcomes):.0f} s",
        ),
        _false_success_check(summary),
    ]
    title = "Three keys of 10 images/min, offered 60 images/min"
    timeline = [outcome.compact() for outcome in outcomes]  # all of them: the pacing over time
    extra = {"verdicts": dict(verdicts), "timeline": timeline}
    return _result("3", title, upstreams, plan, summary, upstream, checks, **extra)


def _span(outcomes: list[Outcome]) -> float:
    """Seconds from the first request sent to the last answer received."""
    return max((o.sent_at + o.seconds for o in outcomes), default=0.0)


def _quota_allows(outcomes: list[Outcome], *, keys: int, ipm: int) -> int:
    # A rolling window grants at most `ipm` per key in each started minute of the run.
    return keys * ipm * math.ceil(_span(outcomes) / 60)


def _paced_verdict(outcome: Outcome, plan: ChaosPlan) -> str:
    if outcome.served:
        return "served in time" if outcome.seconds <= plan.deadline_seconds else "served late"
    if outcome.status == 429 and outcome.code == "rate_limited":
        return "refused early" if outcome.seconds <= plan.early_refusal_seconds else "refused late"
    return f"failed: {outcome.code}"


async def scenario_quota_zero(bench: Bench) -> dict[str, Any]:
    """4. A key whose quota is zero: alone (4a), and beside a good key (4b)."""
    alone = Upstream("zero", "gemini", STABLE_MODEL, zero_keys=(0,))
    pooled = Upstream("pool", "gemini", STABLE_MODEL, keys=2, zero_keys=(0,))
    first = await _quota_zero_variant(bench, alone, expect_success=False)
    second = await _quota_zero_variant(bench, pooled, expect_success=True)
    checks = [*first.pop("checks"), *second.pop("checks")]
    summary = report.summarize(first.pop("outcomes") + second.pop("outcomes"))
    upstream = {**first.pop("upstream"), **second.pop("upstream")}
    title = "A key whose quota is zero"
    upstreams = [alone, pooled]
    extra = {"alone": first, "pooled": second, "separate_runs": True}
    return _result("4", title, upstreams, bench.plan, summary, upstream, checks, **extra)


async def _quota_zero_variant(
    bench: Bench, upstream: Upstream, *, expect_success: bool
) -> dict[str, Any]:
    """Requests one at a time; after each, the fake's counters say what it cost upstream."""
    stage = bench.start([upstream])
    outcomes: list[Outcome] = []
    calls_each: list[int] = []  # upstream calls of each request after the first diagnosis
    diagnosed_at: int | None = None  # index of the request that met quota_zero first
    seen = 0
    call = stage.call()
    for index in range(bench.plan.quota_requests + 1):
        outcomes.append(await call.send(stage.session, stage.decoder, 0.0))
        stats = (await stage.stats())[upstream.name]
        calls, seen = stats["requests"] - seen, stats["requests"]
        if diagnosed_at is not None:
            calls_each.append(calls)
        elif stats["by_scenario"].get("quota_zero"):
            diagnosed_at = index
    upstream_stats = await stage.stats()
    bench.procs.stop_all()
    label = "4b (zero key + good key)" if expect_success else "4a (only a zero key)"
    checks = [_calls_after_diagnosis(label, calls_each, diagnosed_at)]
    if expect_success:
        served = sum(outcome.served for outcome in outcomes)
        checks.append(
            Check(
                f"{label}: requests served (extra, not in the issue)",
                f"{served} / {len(outcomes)}",
                "all: the good key can serve",
                served == len(outcomes),
            )
        )
    else:
        checks.append(_billing_check(label, outcomes))
    return {
        "checks": checks,
        "outcomes": outcomes,
        "upstream": upstream_stats,
        "calls_each": calls_each,
        "diagnosed_at": diagnosed_at,
        "codes": dict(Counter(outcome.code for outcome in outcomes)),
        "messages": sorted({outcome.message for outcome in outcomes if outcome.message})[:3],
    }


def _calls_after_diagnosis(label: str, calls_each: list[int], diagnosed_at: int | None) -> Check:
    name = f"{label}: upstream calls per request after the first diagnosis"
    if diagnosed_at is None:
        return Check(name, "never diagnosed", "≤ 1", None, "no request met the zero key")
    worst = max(calls_each, default=0)
    mean = sum(calls_each) / len(calls_each) if calls_each else 0.0
    basis = f"diagnosed by request {diagnosed_at + 1}; {len(calls_each)} requests after it"
    return Check(name, f"max {worst}, mean {mean:.2f}", "≤ 1", worst <= 1, basis)


def _billing_check(label: str, outcomes: list[Outcome]) -> Check:
    errors = [outcome for outcome in outcomes if not outcome.is_2xx]
    saying = [outcome for outcome in errors if BILLING_HINT.search(outcome.message)]
    sample = errors[-1].message[:160] if errors else ""
    return Check(
        f"{label}: client error says to enable billing",
        f"{len(saying)} / {len(errors)}",
        "all",
        bool(errors) and len(saying) == len(errors),
        f'last: "{sample}"' if sample else "no error answers",
    )


async def scenario_safety(bench: Bench) -> dict[str, Any]:
    """Safety blocks are the client's answer: reported as `safety`, never served, no fall-over."""
    upstreams = [
        Upstream("primary", "gemini", STABLE_MODEL, fail_rate=0.3, mix=SAFETY_MIX),
        Upstream("fallback", "gemini", STABLE_MODEL),
    ]
    plan = bench.plan
    stage = bench.start(upstreams)
    outcomes = await run_closed(
        stage.session, stage.call(), stage.decoder, 8, plan.safety_requests, None
    )
    upstream = await stage.stats()
    bench.procs.stop_all()
    summary = report.summarize(outcomes)
    blocked = sum(upstream["primary"]["by_scenario"].get(name, 0) for name in SAFETY_SCENARIOS)
    reported = summary["failures"].get("safety", 0)
    fell_over = upstream["fallback"]["requests"]
    checks = [
        Check(
            "upstream safety blocks reported as `safety`",
            f"{reported} of {blocked}",
            "all, and nothing else",
            blocked > 0 and reported == blocked,
        ),
        Check("safety blocks sent to the fallback", str(fell_over), "0", fell_over == 0),
        Check(
            "served = requests − safety blocks",
            f"{summary['served']} = {len(outcomes)} − {reported}",
            "equal",
            summary["served"] == len(outcomes) - reported,
        ),
        _false_success_check(summary),
    ]
    title = "Safety blocks: reported, never a success, no fall-over"
    return _result("safety", title, upstreams, plan, summary, upstream, checks)


SCENARIOS: dict[str, Callable[[Bench], Awaitable[dict[str, Any]]]] = {
    "1": scenario_fallback,
    "2": scenario_three_failing,
    "3": scenario_paced,
    "4": scenario_quota_zero,
    "safety": scenario_safety,
}


# --- checks shared by scenarios -------------------------------------------------------------------


def _success_check(summary: dict[str, Any], min_pct: float) -> Check:
    total, served = summary["requests"], summary["served"]
    pct = 100 * served / total if total else 0.0
    return Check(
        "client success", f"{pct:.2f} % ({served} / {total})", f"≥ {min_pct:g} %", pct >= min_pct
    )


def _calls_check(calls: int, served: int, bound: float | None) -> Check:
    ratio = calls / served if served else float("inf")
    return Check(
        "upstream calls per success",
        f"{ratio:.2f} ({calls} / {served})",
        f"≤ {bound:g}" if bound is not None else "none",
        None if bound is None else ratio <= bound,
    )


def _false_success_check(summary: dict[str, Any]) -> Check:
    false = summary["false_successes"]
    found = sum(false.values())
    basis = "; ".join(f"{problem} ×{count}" for problem, count in false.items())
    name = "false successes (2xx without a decodable image)"
    return Check(name, str(found), "0", found == 0, basis)


def _count_429(stats: Mapping[str, Any]) -> int:
    return sum(stats["by_scenario"].get(name, 0) for name in UPSTREAM_429)


def _result(
    number: str,
    title: str,
    upstreams: Sequence[Upstream],
    plan: ChaosPlan,
    summary: dict[str, Any],
    upstream: dict[str, Any],
    checks: list[Check],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": number,
        "title": title,
        "upstreams": [u.describe() for u in upstreams],
        "load": report.load_line(number, plan),
        "summary": summary,
        "upstream": upstream,
        "checks": [asdict(check) for check in checks],
        **extra,
    }


# --- running --------------------------------------------------------------------------------------


async def run_chaos(plan: ChaosPlan, gateway_rev: str | None, keep_logs: bool) -> dict[str, Any]:
    """Every scenario of the plan, each on fresh fakes and a fresh gateway."""
    results: dict[str, Any] = {
        "started_utc": _now(),
        "plan": asdict(plan),
        "gateway": _gateway_label(gateway_rev),
        "scenarios": {},
    }
    with ProcessSet(keep_logs=keep_logs) as procs, Decoder() as decoder:
        env = revision_source(gateway_rev, procs.workdir) if gateway_rev else {}
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=plan.deadline_seconds + 60, sock_connect=10),
            trust_env=False,
        ) as session:
            bench = Bench(plan, procs, session, decoder, env)
            for name in plan.scenarios:
                print(f"\n== scenario {name}", flush=True)
                results["scenarios"][name] = await _scenario_or_reason(bench, name)
    results["finished_utc"] = _now()
    return results


async def _scenario_or_reason(bench: Bench, name: str) -> dict[str, Any]:
    try:
        result = await SCENARIOS[name](bench)
    except (StartError, aiohttp.ClientError) as exc:
        bench.procs.stop_all()
        print(f"   could not run: {exc}", flush=True)
        return {"id": name, "error": str(exc)}
    print(report.console_scenario(result), flush=True)
    return result


def _gateway_label(rev: str | None) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    if rev:
        return f"{git('rev-parse', '--short', rev)} (git archive of `{rev}`)"
    dirty = "+dirty" if git("status", "--porcelain", "--", "src") else ""
    return f"{git('rev-parse', '--short', 'HEAD')}{dirty} (working tree)"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="smaller counts, ~4 min")
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown file whose Chaos section to write (default: {DEFAULT_DOC.relative_to(REPO)}"
        " for full runs, none for --quick)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--requests", type=int, help="requests of scenarios 1 and 2")
    parser.add_argument("--paced-seconds", type=float, help="duration of scenario 3")
    parser.add_argument("--hold-seconds", type=float, help="how long the fakes take to answer")
    parser.add_argument(
        "--gateway-rev", help="run the gateway from this git revision's src/ (e.g. HEAD)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios.split(",") if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    return args


def plan_from(args: argparse.Namespace) -> ChaosPlan:
    names = tuple(name for name in args.scenarios.split(",") if name)
    plan = ChaosPlan.quick_run(names) if args.quick else ChaosPlan(scenarios=names)
    overrides = {
        "requests": args.requests,
        "paced_seconds": args.paced_seconds,
        "hold_seconds": args.hold_seconds,
    }
    return replace(plan, **{key: value for key, value in overrides.items() if value is not None})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    try:
        results = _run(plan, args.gateway_rev, args.keep_logs)
    except KeyboardInterrupt:
        print("\ninterrupted; every started process has been stopped", file=sys.stderr)
        return 130
    print("\n" + report.console(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nraw results: {args.json}")
    out = args.out if args.out is not None else (None if plan.quick else DEFAULT_DOC)
    if out is not None:
        report.write_section(out, results)
        print(f"report: {out} (Chaos section)")
    return 0 if all("error" not in s for s in results["scenarios"].values()) else 1


def _run(plan: ChaosPlan, gateway_rev: str | None, keep_logs: bool) -> dict[str, Any]:
    """SIGTERM is handled like Ctrl-C, so the processes are always stopped."""

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_chaos(plan, gateway_rev, keep_logs)

    with asyncio.Runner() as runner:
        try:
            return runner.run(guarded())
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None


if __name__ == "__main__":
    sys.exit(main())
