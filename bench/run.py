"""The imagegate benchmark, in one command: ``python bench/run.py [--quick] [--routes openai,gemini]
[--out docs/benchmarks.md]``.

Per route it starts a fake upstream and a fresh gateway as their own processes, then measures the
load client calling the fake directly against calling it through the gateway, in the same run:
latency at concurrency 1 and 16, throughput and CPU per image at 64 (again with the parsing and
the SDK client, and with the gateway on a core of its own), a py-spy profile of the gateway at
64, and a burst of 500 held requests on a freshly started pair. The floor gateway
(`reference_gateway.py`) is measured beside imagegate in every phase but the burst. Figures go
to the terminal, to bench/results/latest.json and (full runs) to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make `bench` and `tests` (the fakes) importable from the repo root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import orjson

from bench import load, profile, report
from bench.procs import (
    REPO,
    Proc,
    ProcessSet,
    StartError,
    check_config,
    load_average,
    machine_cpu_seconds,
    pin,
    raise_open_files_limit,
    speed_reference_ms,
    steal_seconds,
    tune_own_allocator,
)
from bench.routes import ROUTES, RouteSpec

RESULTS_DIR = REPO / "bench" / "results"
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Plan:
    """How much to measure. The defaults are the full run (~2 min per route)."""

    routes: tuple[str, ...] = ("openai", "gemini")
    c1_requests: int = 200
    c16_requests: int = 800
    c64_seconds: float = 15.0
    warmup_c1: int = 20
    warmup_seconds: float = 3.0  # before each c=16 and c=64 phase
    burst_size: int = 500
    burst_hold_seconds: float = 3.0
    profile_seconds: float = 10.0  # 0: no py-spy profile
    quick: bool = False
    # mallopt in the client process (see procs.tune_own_allocator); False = glibc defaults.
    tune_client_allocator: bool = True
    # c=16 and c=64 again with the client that parses each answer with orjson (bench/load.py).
    parsing_client: bool = True
    # c=16 and c=64 again on the official SDKs' transport and parser (bench/load.py).
    sdk_client: bool = True
    # bench/reference_gateway.py measured beside imagegate in every phase: the floor.
    reference: bool = True
    # c=16 and c=64 are measured in this many alternating rounds (the count or time is split).
    rounds: int = 3
    # c=64 again with the gateway on a core of its own, the client and the fake on the other.
    pinned: bool = True

    @classmethod
    def quick_run(cls, routes: Sequence[str] = ("openai", "gemini")) -> Plan:
        """A smoke run in well under a minute; same burst, so its checks still mean something."""
        return cls(
            routes=tuple(routes),
            c1_requests=40,
            c16_requests=160,
            c64_seconds=4.0,
            warmup_c1=5,
            warmup_seconds=1.0,
            profile_seconds=0.0,
            quick=True,
            rounds=2,
        )

    @classmethod
    def tiny(cls, routes: Sequence[str] = ("openai",)) -> Plan:
        """For a test that only wants to know the harness still runs end to end."""
        return cls(
            routes=tuple(routes),
            c1_requests=5,
            c16_requests=16,
            c64_seconds=1.0,
            warmup_c1=1,
            warmup_seconds=0.2,
            burst_size=20,
            burst_hold_seconds=0.5,
            profile_seconds=0.0,
            quick=True,
            rounds=1,
        )


class RouteFailed(RuntimeError):
    """The route could not be measured at all (its first request already failed)."""


async def run_benchmark(plan: Plan, keep_logs: bool = False) -> dict[str, Any]:
    """Measure every route of the plan; the results as the JSON document (see bench/README)."""
    results: dict[str, Any] = {
        "started_utc": _now(),
        "machine": machine_info(),
        "plan": asdict(plan),
        "open_files_limit": raise_open_files_limit(),
        "client_allocator_tuned": plan.tune_client_allocator and tune_own_allocator(),
        "loadavg_before": load_average(),
        "speed_reference_ms_before": speed_reference_ms(),
        "routes": {},
    }
    with ProcessSet(keep_logs=keep_logs) as procs:
        for name in plan.routes:
            spec = ROUTES[name]
            print(f"\n== route {name}: {spec.title}", flush=True)
            results["routes"][name] = await _route_or_reason(spec, plan, procs)
    results["finished_utc"] = _now()
    results["loadavg_after"] = load_average()
    results["speed_reference_ms_after"] = speed_reference_ms()
    return results


async def _route_or_reason(spec: RouteSpec, plan: Plan, procs: ProcessSet) -> dict[str, Any]:
    reason = _unavailable(spec, procs)
    if reason:
        print(f"   skipped: {reason}", flush=True)
        return {"title": spec.title, "skipped": reason}
    try:
        outcome = await bench_route(spec, plan, procs)
    except (StartError, RouteFailed) as exc:
        print(f"   failed: {exc}", flush=True)
        procs.stop_all()
        return {"title": spec.title, "error": str(exc)}
    outcome["checks"] = [asdict(check) for check in report.evaluate(outcome)]
    return outcome


def _unavailable(spec: RouteSpec, procs: ProcessSet) -> str | None:
    """Why this route cannot run yet: its fake or its provider kind has not landed."""
    missing = spec.missing_fake()
    if missing:
        return missing
    problem = check_config(
        spec.settings("http://127.0.0.1:9"), procs.workdir, spec.key_env_for("probe")
    )
    return f"imagegate check-config rejects the route's config: {problem}" if problem else None


async def bench_route(spec: RouteSpec, plan: Plan, procs: ProcessSet) -> dict[str, Any]:
    """Latency, throughput, CPU and profile on one fake+gateway pair; then the burst."""
    key = secrets.token_hex(16)
    fake = procs.start_fake(spec.fake_kind, key) if spec.fake_kind else None
    gateway = procs.start_gateway(spec.settings(fake.url if fake else None), spec.key_env_for(key))
    targets = [spec.gateway_target(gateway.url)]
    direct = spec.direct_target(fake.url, key) if fake else None
    watched = {"gateway": gateway, "fake": fake}
    if direct is not None and fake is not None:
        if plan.reference:
            # The floor, between direct and imagegate: what any gateway on this stack costs.
            reference = procs.start_reference(spec, fake.url, key)
            watched["reference"] = reference
            floor = dataclasses.replace(spec.gateway_target(reference.url), name="reference")
            targets.insert(0, floor)
        # Direct first at each level, the gateways right after (alternating in later rounds):
        # all see the same machine state.
        targets.insert(0, direct)
    outcome: dict[str, Any] = {"title": spec.title, "phases": {}}
    async with load.new_session() as session:
        await _first_requests(session, targets, gateway)
        # A count of 0 means "for plan.c64_seconds": throughput is measured over time.
        levels = (("c1", 1, plan.c1_requests), ("c16", 16, plan.c16_requests), ("c64", 64, 0))
        for label, concurrency, count in levels:
            outcome["phases"][label] = await _level(
                session, targets, concurrency, count, plan, watched
            )
        clients: list[load.Client] = []
        if plan.parsing_client:
            clients.append("parsing")
        if plan.sdk_client:
            clients.append("sdk")
        for client in clients if direct is not None else []:
            variant = [dataclasses.replace(target, client=client) for target in targets]
            for label, concurrency, count in levels[1:]:
                outcome["phases"][f"{label}_{client}"] = await _level(
                    session, variant, concurrency, count, plan, watched
                )
        cpus = sorted(os.sched_getaffinity(0))
        if plan.pinned and direct is not None and fake is not None and len(cpus) >= 2:
            outcome["phases"]["c64_pinned"] = await _pinned_level(
                session, targets, plan, watched, {cpus[0]}, {cpus[-1]}
            )
        if plan.profile_seconds > 0:
            outcome["profile"] = await _profile(session, targets[-1], gateway, plan, procs)
    procs.stop_all()
    outcome["burst"] = await bench_burst(spec, plan, procs)
    outcome["derived"] = report.derive(outcome, len(os.sched_getaffinity(0)))
    return outcome


async def _pinned_level(
    session: load.Session,
    targets: Sequence[load.Target],
    plan: Plan,
    watched: Mapping[str, Proc | None],
    shared: set[int],
    own: set[int],
) -> dict[str, dict[str, Any]]:
    """c=64 with the load client and the fake on `shared` and the gateway alone on `own`.

    On shared cores the gateway's CPU is taken from the client and the fake, so through the
    gateway every answer costs the machine more than direct, whatever the gateway does with
    it. Here direct gets one core for client and fake, the gateway route the same core plus
    the gateway's own: the ratio shows whether the gateway keeps up with its callers.
    """
    everyone = shared | own
    gateway, fake = watched["gateway"], watched["fake"]
    assert gateway is not None and fake is not None
    gateways = [proc.pid for name in ("gateway", "reference") if (proc := watched.get(name))]
    try:
        pin(0, shared)
        pin(fake.pid, shared)
        for pid in gateways:
            pin(pid, own)
        return await _level(session, targets, 64, 0, plan, watched)
    finally:
        for pid in (0, fake.pid, *gateways):
            with contextlib.suppress(OSError):
                pin(pid, everyone)


async def _first_requests(
    session: load.Session, targets: Sequence[load.Target], gateway: Proc
) -> None:
    """One request per target before any load: a broken route fails here, not 800 times."""
    for target in targets:
        try:
            problem = await load.fetch(session, target)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            raise RouteFailed(
                f"first {target.name} request failed: {problem}\n"
                f"gateway log:\n{gateway.log_tail(15)}"
            )


async def _level(
    session: load.Session,
    targets: Sequence[load.Target],
    concurrency: int,
    count: int,
    plan: Plan,
    watched: Mapping[str, Proc | None],
) -> dict[str, dict[str, Any]]:
    """Every target at one concurrency, in `plan.rounds` rounds (one at c=1) whose order
    alternates (direct, gateway; gateway, direct; ...), so a change in the machine's speed
    during the level weighs on both alike. The rounds' answers and CPU are pooled."""
    rounds = 1 if concurrency == 1 else max(1, plan.rounds)
    runs: dict[str, list[tuple[load.Tally, dict[str, float]]]] = {t.name: [] for t in targets}
    for index in range(rounds):
        for target in targets if index % 2 == 0 else targets[::-1]:
            run = await _measure(session, target, concurrency, count, plan, watched, index, rounds)
            runs[target.name].append(run)
    return {target.name: _pooled(target, concurrency, runs[target.name]) for target in targets}


async def _measure(
    session: load.Session,
    target: load.Target,
    concurrency: int,
    count: int,
    plan: Plan,
    watched: Mapping[str, Proc | None],
    index: int,
    rounds: int,
) -> tuple[load.Tally, dict[str, float]]:
    """Warm up, then one measured round with the CPU each process spent on it."""
    if concurrency == 1:
        await load.run_count(session, target, 1, plan.warmup_c1)
        measured = load.run_count(session, target, 1, count)
    else:
        # The first round warms up in full; later ones only refill the pipeline.
        warmup = plan.warmup_seconds if index == 0 else min(1.0, plan.warmup_seconds)
        await load.run_for(session, target, concurrency, warmup)
        if count:
            measured = load.run_count(session, target, concurrency, max(1, count // rounds))
        else:
            measured = load.run_for(session, target, concurrency, plan.c64_seconds / rounds)
    tally, cpu = await _with_cpu(measured, watched)
    client = "" if target.client == "bytes" else f" {target.client}"
    round_ = f" {index + 1}/{rounds}" if rounds > 1 else ""
    print(
        f"   {target.name:9} c={concurrency:<3}{client}{round_}"
        f" {report.phase_line(target.name, _summary(tally, cpu, concurrency))}",
        flush=True,
    )
    return tally, cpu


def _pooled(
    target: load.Target, concurrency: int, runs: Sequence[tuple[load.Tally, dict[str, float]]]
) -> dict[str, Any]:
    pooled = load.Tally()
    cpu: dict[str, float] = {}
    for tally, used in runs:
        pooled.latencies += tally.latencies
        pooled.failures.update(tally.failures)
        pooled.finished += tally.elapsed  # pooled elapsed = the rounds' time in all
        for name, seconds in used.items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    summary = _summary(pooled, cpu, concurrency)
    summary["rounds_req_per_s"] = [
        round(t.ok / t.elapsed, 1) if t.elapsed else None for t, _ in runs
    ]
    return summary


def _summary(tally: load.Tally, cpu: Mapping[str, float], concurrency: int) -> dict[str, Any]:
    summary = tally.summary()
    summary["concurrency"] = concurrency
    summary["cpu_s"] = {name: round(seconds, 3) for name, seconds in cpu.items()}
    summary["cpu_ms_per_image"] = {
        name: round(cpu[name] * 1000 / tally.ok, 3) if tally.ok else None
        for name in ("gateway", "reference", "fake", "client")
        if name in cpu
    }
    return summary


async def _with_cpu(
    measured: Awaitable[load.Tally], watched: Mapping[str, Proc | None]
) -> tuple[load.Tally, dict[str, float]]:
    """Run a phase; CPU seconds of each watched process and of this client over it."""
    procs = {name: proc for name, proc in watched.items() if proc is not None}
    before = {name: proc.cpu_seconds() for name, proc in procs.items()}
    client_before = time.process_time()
    tasks_before, busy_before = machine_cpu_seconds()
    steal_before = steal_seconds()
    tally = await measured
    cpu = {name: proc.cpu_seconds() - before[name] for name, proc in procs.items()}
    cpu["client"] = time.process_time() - client_before
    tasks, busy = machine_cpu_seconds()
    # Other programs on the machine compete for the same 2 cores; say how much they took.
    cpu["others"] = max(0.0, tasks - tasks_before - sum(cpu.values()))
    cpu["machine_busy"] = busy - busy_before
    cpu["steal"] = steal_seconds() - steal_before
    return tally, cpu


async def _profile(
    session: load.Session,
    target: load.Target,
    gateway: Proc,
    plan: Plan,
    procs: ProcessSet,
) -> dict[str, Any]:
    """py-spy on the gateway during an extra c=64 phase (after the measured ones: it perturbs)."""
    spy = _py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    out = procs.workdir / f"profile-{gateway.pid}.txt"
    argv = [spy, "record", "--format", "raw", "--nolineno", "--nonblocking", "--rate", "200"]
    argv += ["-p", str(gateway.pid), "-d", str(int(plan.profile_seconds)), "-o", str(out)]
    recorder = procs.spawn("py-spy", argv)
    tally = await load.run_for(session, target, 64, plan.profile_seconds + 1)
    # py-spy stops by itself after -d seconds; the load above outlasts it by one second.
    for _ in range(300):
        if recorder.popen.poll() is not None:
            break
        await asyncio.sleep(0.1)  # polling a child process: there is no event to await
    procs.stop(recorder)
    summary = _read_profile(out)
    if summary is None:
        return {"skipped": f"py-spy wrote no profile:\n{recorder.log_tail(10)}"}
    summary["requests_during"] = tally.ok
    return summary


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _read_profile(path: Path) -> dict[str, Any] | None:
    return profile.summarize(path.read_text()) if path.exists() else None


async def bench_burst(spec: RouteSpec, plan: Plan, procs: ProcessSet) -> dict[str, Any]:
    """A fresh fake (holding each answer) and a fresh gateway; ``burst_size`` requests at once.

    VmHWM is the kernel's own peak RSS of the gateway since it started, so it catches the peak
    that sampling RSS would miss; the gateway serves nothing before the burst but /healthz.
    """
    key = secrets.token_hex(16)
    hold = plan.burst_hold_seconds
    fake = procs.start_fake(spec.fake_kind, key, hold_seconds=hold) if spec.fake_kind else None
    settings = spec.settings(fake.url if fake else None, hold_seconds=hold)
    gateway = procs.start_gateway(settings, spec.key_env_for(key))
    hwm_idle_kb = gateway.status_kb("VmHWM")
    target = spec.gateway_target(gateway.url)
    async with load.new_session(timeout_seconds=120 + hold) as session:
        tally, cpu = await _with_cpu(
            load.run_burst(session, target, plan.burst_size), {"gateway": gateway, "fake": fake}
        )
    outcome = tally.summary()
    outcome.update(
        size=plan.burst_size,
        hold_s=hold,
        gateway_vm_hwm_kb=gateway.status_kb("VmHWM"),
        gateway_vm_hwm_idle_kb=hwm_idle_kb,
        gateway_vm_rss_after_kb=gateway.status_kb("VmRSS"),
        fake_vm_hwm_kb=fake.status_kb("VmHWM") if fake else None,
        cpu_s={name: round(seconds, 3) for name, seconds in cpu.items()},
    )
    print(f"   burst    n={plan.burst_size:<3} {report.burst_line(outcome)}", flush=True)
    procs.stop_all()
    return outcome


def machine_info() -> dict[str, Any]:
    import uvloop

    import imagegate

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,
        "imagegate": imagegate.__version__,
        "git": _git_revision(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_revision() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
        )
        return done.stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    # src/ changes under way are part of what was measured; say so.
    return revision + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts: a smoke run < 60 s")
    parser.add_argument("--routes", default="openai,gemini", help="of: " + ",".join(ROUTES))
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown report to write (default: {DEFAULT_DOC.relative_to(REPO)} for full runs,"
        " none for --quick)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy phase")
    parser.add_argument(
        "--client-default-malloc",
        action="store_true",
        help="leave the load client on glibc's default allocator settings (a costlier client)",
    )
    parser.add_argument(
        "--no-parsing-client",
        action="store_true",
        help="skip c=16 and c=64 with the client that parses each answer with orjson",
    )
    parser.add_argument(
        "--no-sdk-client",
        action="store_true",
        help="skip c=16 and c=64 on the official SDKs' transport and parser (httpx2, json)",
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="do not measure bench/reference_gateway.py (the floor) beside imagegate",
    )
    parser.add_argument(
        "--no-pinned",
        action="store_true",
        help="skip c=64 with the gateway on a core of its own",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    unknown = [name for name in args.routes.split(",") if name not in ROUTES]
    if unknown:
        parser.error(f"unknown route(s) {unknown}; known: {', '.join(ROUTES)}")
    return args


def plan_from(args: argparse.Namespace) -> Plan:
    routes = tuple(name for name in args.routes.split(",") if name)
    plan = Plan.quick_run(routes) if args.quick else Plan(routes=routes)
    if args.no_profile:
        plan = replace(plan, profile_seconds=0.0)
    if args.client_default_malloc:
        plan = replace(plan, tune_client_allocator=False)
    if args.no_parsing_client:
        plan = replace(plan, parsing_client=False)
    if args.no_sdk_client:
        plan = replace(plan, sdk_client=False)
    if args.no_reference:
        plan = replace(plan, reference=False)
    if args.no_pinned:
        plan = replace(plan, pinned=False)
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = plan_from(args)
    try:
        results = _run(plan, args.keep_logs)
    except KeyboardInterrupt:
        print("\ninterrupted; every started process has been stopped", file=sys.stderr)
        return 130
    print("\n" + report.console(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nraw results: {args.json}")
    out = args.out if args.out is not None else (None if plan.quick else DEFAULT_DOC)
    if out is not None:
        report.write_markdown(out, results)
        print(f"report: {out}")
    return 0 if report.all_ran(results) else 1


def _run(plan: Plan, keep_logs: bool) -> dict[str, Any]:
    """uvloop, as the gateway uses; SIGTERM is handled like Ctrl-C so teardown always runs."""
    import uvloop

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_benchmark(plan, keep_logs)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            return runner.run(guarded())
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None


if __name__ == "__main__":
    sys.exit(main())
