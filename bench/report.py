"""Figures against the targets, and the report: terminal tables and docs/benchmarks.md.

The markdown file is regenerated on every full run. Hand-written observations survive reruns
when they sit between the ``NOTES_START`` and ``NOTES_END`` markers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.procs import ALLOCATOR_ENV

NOTES_START = "<!-- notes:start (kept across reruns) -->"
NOTES_END = "<!-- notes:end -->"
# bench/chaos.py writes its own section after the notes; a rerun here keeps it as it is.
CHAOS_START = "<!-- chaos:start -->"
CHAOS_END = "<!-- chaos:end -->"
# Above this share of the cores taken by other programs, a route's figures get a warning.
CONTENDED_PCT = 5.0


@dataclass(frozen=True)
class Check:
    """One target: the measured figure as shown, the bound, and whether it was met."""

    name: str
    shown: str
    target: str
    ok: bool | None  # None: could not be measured in this run
    basis: str = ""  # the figures it comes from, e.g. "gateway 4.29 − direct 1.38 ms"
    floor: str = ""  # the same figure for bench/reference_gateway.py, where it was measured


# Phase label suffixes of the client variants measured at c=16 and c=64, in report order.
CLIENT_VARIANTS = ("parsing", "sdk")


def derive(outcome: dict[str, Any], nproc: int) -> dict[str, Any]:
    """The headline figures of a route from its phases and burst (None where not measured).

    Keys starting ``floor_`` are the same figures for bench/reference_gateway.py."""
    phases = outcome["phases"]
    derived: dict[str, Any] = {}
    for who, prefix in (("gateway", ""), ("reference", "floor_")):
        if who not in phases["c64"]:
            continue
        for label in ("c1", "c16"):
            for q in ("p50", "p90", "p99"):
                derived[f"{prefix}added_{q}_{label}_ms"] = _added(phases[label], q, who)
        derived[f"{prefix}req_per_s_pct_of_direct_c64"] = _pct_of_direct(phases["c64"], who)
        cpu = phases["c64"][who]["cpu_ms_per_image"]
        derived[f"{prefix}gateway_cpu_ms_per_image_c64"] = cpu[who]
        for variant in CLIENT_VARIANTS:
            if f"c64_{variant}" in phases:
                derived[f"{prefix}added_p50_c16_{variant}_ms"] = _added(
                    phases[f"c16_{variant}"], "p50", who
                )
                derived[f"{prefix}req_per_s_pct_of_direct_c64_{variant}"] = _pct_of_direct(
                    phases[f"c64_{variant}"], who
                )
        if "c64_pinned" in phases:
            derived[f"{prefix}req_per_s_pct_of_direct_c64_pinned"] = _pct_of_direct(
                phases["c64_pinned"], who
            )
    direct64 = phases["c64"].get("direct")
    derived["gateway_req_per_s_c64"] = phases["c64"]["gateway"]["req_per_s"]
    derived["direct_req_per_s_c64"] = direct64["req_per_s"] if direct64 else None
    burst = outcome["burst"]
    derived["burst_ok"] = burst["ok"]
    derived["burst_size"] = burst["size"]
    derived["burst_p50_s"] = _seconds(burst["latency_ms"]["p50"])
    derived["burst_max_s"] = _seconds(burst["latency_ms"]["max"])
    derived["burst_gateway_vm_hwm_mb"] = _mb(burst["gateway_vm_hwm_kb"])
    derived["others_cpu_pct_of_capacity"] = _others_share(outcome, nproc)
    return derived


def _pct_of_direct(level: dict[str, Any], who: str = "gateway") -> float | None:
    gateway, direct = level[who]["req_per_s"], level.get("direct", {}).get("req_per_s")
    return round(100 * gateway / direct, 1) if direct and gateway else None


def _others_share(outcome: dict[str, Any], nproc: int) -> float:
    """CPU other programs took during the measured phases, in % of all cores' time then."""
    summaries = [s for level in outcome["phases"].values() for s in level.values()]
    others = sum(s["cpu_s"]["others"] for s in summaries)
    capacity = sum(s["elapsed_s"] for s in summaries) * nproc
    return round(100 * others / capacity, 1) if capacity else 0.0


def _mb(kib: int) -> float:
    """/proc reports KiB; the targets are in MB of 10^6 bytes."""
    return round(kib * 1024 / 1e6, 1)


def _added(level: dict[str, Any], q: str, who: str = "gateway") -> float | None:
    if "direct" not in level:
        return None
    gateway, direct = level[who]["latency_ms"][q], level["direct"]["latency_ms"][q]
    return None if gateway is None or direct is None else round(gateway - direct, 2)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 2)


def evaluate(outcome: dict[str, Any]) -> list[Check]:
    """The targets of the brief, each with ✓/✗, the figures behind it and the floor's figure."""
    d, phases, burst = outcome["derived"], outcome["phases"], outcome["burst"]

    def added(name: str, key: str, level: str) -> Check:
        limit = 3 if level == "c1" else 20
        check = _bound(name, d[key], f"≤ {limit} ms", lambda v: v <= limit, "{:+.2f} ms")
        return replace(check, basis=_p50_basis(phases[level]), floor=_floor(d, key, "{:+.2f} ms"))

    def share(name: str, key: str, level: str) -> Check:
        check = _bound(name, d[key], "≥ 80 %", lambda v: v >= 80, "{:.1f} %")
        return replace(check, basis=_rps_basis(phases[level]), floor=_floor(d, key, "{:.1f} %"))

    cpu_key = "gateway_cpu_ms_per_image_c64"
    checks = [
        added("added p50, c=1", "added_p50_c1_ms", "c1"),
        added("added p50, c=16", "added_p50_c16_ms", "c16"),
        share("req/s at c=64, % of direct", "req_per_s_pct_of_direct_c64", "c64"),
        replace(
            _bound("gateway CPU per image, c=64", d[cpu_key], "≤ 3 ms", lambda v: v <= 3),
            basis=f"{phases['c64']['gateway']['cpu_s']['gateway']:.2f} s CPU"
            f" / {phases['c64']['gateway']['ok']} images",
            floor=_floor(d, cpu_key, "{:.2f} ms"),
        ),
        Check(
            f"burst {d['burst_size']}: succeeded",
            f"{d['burst_ok']}/{d['burst_size']}",
            "all",
            d["burst_ok"] == d["burst_size"],
            f"{burst['failed']} failed",
        ),
        replace(
            _bound("burst: client median", d["burst_p50_s"], "≤ 5 s", lambda v: v <= 5, "{:.2f} s"),
            basis=f"max {_num(d['burst_max_s'])} s",
        ),
        replace(
            _bound(
                "burst: gateway VmHWM",
                d["burst_gateway_vm_hwm_mb"],
                "≤ 300 MB",
                lambda v: v <= 300,
                "{:.1f} MB",
            ),
            basis=f"{burst['gateway_vm_hwm_kb'] / 1024:.1f} MiB",
        ),
    ]
    for variant in CLIENT_VARIANTS:
        if f"c64_{variant}" in phases:
            client = _VARIANTS[variant]
            checks += [
                added(
                    f"added p50, c=16, {client}", f"added_p50_c16_{variant}_ms", f"c16_{variant}"
                ),
                share(
                    f"req/s at c=64, % of direct, {client}",
                    f"req_per_s_pct_of_direct_c64_{variant}",
                    f"c64_{variant}",
                ),
            ]
    if "c64_pinned" in phases:
        checks.append(
            share(
                f"req/s at c=64, % of direct, {_VARIANTS['pinned']}",
                "req_per_s_pct_of_direct_c64_pinned",
                "c64_pinned",
            )
        )
    return checks


def _floor(derived: dict[str, Any], key: str, fmt: str) -> str:
    value = derived.get(f"floor_{key}")
    return "" if value is None else fmt.format(value)


def _p50_basis(level: dict[str, Any]) -> str:
    gateway = _num(level["gateway"]["latency_ms"]["p50"])
    if "direct" not in level:
        return f"gateway {gateway} ms, no direct"
    return f"gateway {gateway} − direct {_num(level['direct']['latency_ms']['p50'])} ms"


def _rps_basis(level: dict[str, Any]) -> str:
    gateway = _num(level["gateway"]["req_per_s"])
    if "direct" not in level:
        return f"gateway {gateway} req/s, no direct"
    return f"gateway {gateway} / direct {_num(level['direct']['req_per_s'])} req/s"


def _bound(
    name: str,
    value: float | None,
    target: str,
    met: Callable[[float], bool],
    fmt: str = "{:.2f} ms",
) -> Check:
    if value is None:
        return Check(name, "n/a", target, None)
    return Check(name, fmt.format(value), target, met(value))


def all_ran(results: dict[str, Any]) -> bool:
    """Every route measured (whether or not it met its targets)."""
    return all("checks" in route for route in results["routes"].values())


# --- text -------------------------------------------------------------------------------------


def phase_line(target: str, summary: dict[str, Any]) -> str:
    lat = summary["latency_ms"]
    cpu = summary["cpu_ms_per_image"]
    gateway_cpu = f"  {target} {_num(cpu.get(target))} ms/img" if target != "direct" else ""
    return (
        f"ok {summary['ok']:>4}  failed {summary['failed']}  p50 {_num(lat['p50'])}"
        f"  p90 {_num(lat['p90'])}  p99 {_num(lat['p99'])} ms  {_num(summary['req_per_s'])} req/s"
        f"{gateway_cpu}  client {_num(cpu.get('client'))} ms/img"
        f"  other programs {summary['cpu_s']['others']:.2f} s CPU"
        f"  stolen {summary['cpu_s'].get('steal', 0.0):.2f} s"
        + (f"  failures: {summary['failures']}" if summary["failed"] else "")
    )


def burst_line(burst: dict[str, Any]) -> str:
    lat = burst["latency_ms"]
    return (
        f"ok {burst['ok']}/{burst['size']}  p50 {_num(lat['p50'])} ms  max {_num(lat['max'])} ms"
        f"  gateway VmHWM {burst['gateway_vm_hwm_kb'] / 1024:.1f} MiB"
        + (f"  failures: {burst['failures']}" if burst["failed"] else "")
    )


def console(results: dict[str, Any]) -> str:
    """The headline tables, for the terminal."""
    parts = []
    for name, route in results["routes"].items():
        parts.append(f"route {name}: {route['title']}")
        if "checks" not in route:
            parts.append(f"  not measured: {route.get('skipped') or route.get('error')}\n")
            continue
        parts += [*_headline_table(route), "", *_contention(route)]
    return "\n".join(parts)


def write_markdown(path: Path, results: dict[str, Any]) -> None:
    notes = _kept_notes(path)
    chaos = _kept_chaos(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(results, notes) + chaos)


def _kept_notes(path: Path) -> str:
    if not path.exists():
        return ""
    found = re.search(
        re.escape(NOTES_START) + r"\n(.*?)" + re.escape(NOTES_END), path.read_text(), re.S
    )
    return found.group(1) if found else ""


def _kept_chaos(path: Path) -> str:
    if not path.exists():
        return ""
    pattern = re.escape(CHAOS_START) + r".*?" + re.escape(CHAOS_END)
    found = re.search(pattern, path.read_text(), re.S)
    return f"\n{found.group(0)}\n" if found else ""


def markdown(results: dict[str, Any], notes: str = "") -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python bench/run.py` ({results['finished_utc']}); rerun it to refresh this"
        " file. Raw figures of the last run: `bench/results/latest.json` (not committed)."
        + (" **Quick run: small counts, indicative only.**" if results["plan"]["quick"] else ""),
        "",
        *_machine_section(results),
        *_method_section(results),
    ]
    for name, route in results["routes"].items():
        lines += [f"## Route `{name}`: {route['title']}", ""]
        if "checks" not in route:
            lines += [f"Not measured: {route.get('skipped') or route.get('error')}", ""]
            continue
        lines += [*_headline_table(route), "", *_contention(route), *_detail_table(route), ""]
        lines += _profile_section(route.get("profile"))
    lines += ["## Notes", "", NOTES_START, notes.rstrip("\n"), NOTES_END, ""]
    return "\n".join(lines)


def _machine_section(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    env = " ".join(f"{key}={value}" for key, value in ALLOCATOR_ENV.items())
    return [
        "## Machine",
        "",
        f"- {m['nproc']} cores ({m['cpu']}), **shared** by the load client, the gateway and the"
        " fake upstream: all three compete for the same CPUs, so every figure includes that"
        " contention.",
        f"- Linux {m['kernel']}, Python {m['python']}, aiohttp {m['aiohttp']}, uvloop"
        f" {m['uvloop']}; imagegate {m['imagegate']} at `{m['git']}`.",
        f"- Gateway started as `imagegate serve` with `{env}` (glibc keeps large buffers"
        " instead of returning and re-faulting them; see shared/PERFORMANCE.md).",
        f"- Run {results['started_utc']} → {results['finished_utc']}; load average (1/5/15 min)"
        f" {_loads(results['loadavg_before'])} before, {_loads(results['loadavg_after'])} after."
        " The detail tables show the CPU other programs took during each phase, and the CPU"
        " time the hypervisor gave to other guests (`steal` in /proc/stat): a virtual machine's"
        " cores are shared with its neighbours, so the same code measures slower at busy times.",
        *(
            [
                f"- Speed reference (a fixed loop of pure Python, best of 5; lower is faster):"
                f" {results['speed_reference_ms_before']} ms before the run,"
                f" {results['speed_reference_ms_after']} ms after. The same code has measured"
                " up to twice as slow on this virtual machine at some hours; compare runs only"
                " together with this figure."
            ]
            if "speed_reference_ms_before" in results
            else []
        ),
        "",
    ]


def _method_section(results: dict[str, Any]) -> list[str]:
    p = results["plan"]
    return [
        "## Method",
        "",
        "- Per route, a fake upstream (`python -m tests.fakes.<kind>`, 1024×1024 PNG answers of"
        " ~1.5 MB base64, indented JSON) and a freshly started gateway, each its own process on a"
        " free loopback port. **Direct** = the load client sends the upstream's own wire request"
        " to the fake; **via gateway** = it sends"
        ' `{"model": "bench-<route>", "prompt": "a red bicycle", "size": "1024x1024"}` to'
        " `POST /v1/images/generations`. Both in the same run, direct first at each level.",
        "- Load client: one aiohttp session in the benchmark process (uvloop, `limit=0`),"
        " closed-loop workers. Every answer is read to the last byte and checked (status 200,"
        " length 1–8 MB, ends a JSON object, the image field starts with PNG base64"
        " `iVBORw0KGgo`, found by a byte search in the first 64 KiB — no JSON parse or base64"
        " decode of the image). Latencies are of good answers only; any failure is counted."
        + (
            " The client process gets the gateway's allocator settings through `mallopt`"
            " (otherwise it mmaps each large socket read, and its own CPU per answer drifts"
            " between ~0.8 and ~3 ms, taking CPU from the processes under test)."
            if results.get("client_allocator_tuned")
            else " The client process ran with glibc's default allocator settings."
        ),
        *(
            [
                "- Parsing client (the rows marked so, c=16 and c=64 again): each answer is read"
                " whole by aiohttp and parsed with orjson (the fastest parser; the official SDKs"
                " use slower ones, and a slower transport), and the PNG header of the"
                " image's base64 is decoded to check its 1024×1024 pixels. ~1.5 ms of CPU per"
                " answer more than the byte check. Both clients, same run, same processes."
            ]
            if p.get("parsing_client")
            else []
        ),
        *(
            [
                "- SDK client (the rows marked so, c=16 and c=64 again): each answer is fetched"
                " on the transport and parser the official SDKs use, `openai` and `google-genai`"
                " alike: httpx (`httpx2`, with the openai SDK's pool limits) and"
                " `response.json()` (the standard library's parser), then checked as the parsing"
                " client does. What the SDKs add on top is left out (openai builds pydantic"
                " models; google-genai decodes all the base64), so a direct call and a call"
                " through the gateway cost this client the same. This is the client an"
                " application runs, and the kind of client PERFORMANCE.md's figures were taken"
                " with: its floor gateway reaches there what PERFORMANCE.md reports, and far less"
                " with the cheaper clients (the floor column)."
            ]
            if p.get("sdk_client")
            else []
        ),
        *(
            [
                "- Floor (the last column of the first table, and the `reference` rows):"
                " `bench/reference_gateway.py`, ~150 lines that do only the hot path"
                " shared/PERFORMANCE.md describes as its best throwaway (aiohttp.web and"
                " aiohttp's client on uvloop, streamed with backpressure, the base64 found by a"
                " byte search and passed on untouched, the same allocator settings), no config,"
                " router, ledger or checks beyond the PNG signature. Measured in every phase"
                " beside imagegate (D R G, G R D, …), against the same fake. A target the floor"
                " misses is one this machine and client do not allow any gateway to meet."
            ]
            if p.get("reference")
            else []
        ),
        *(
            [
                "- Gateway on its own core (the rows marked so, c=64 again with the byte-checking"
                " client): the load client and the fake are pinned to one core and the gateway"
                " to the other (`sched_setaffinity`, every thread), for direct and gateway"
                " alike. On shared cores every millisecond the gateway spends is taken from the"
                " client and the fake, so the ratio there measures the machine more than the"
                " gateway; here it shows whether the gateway keeps up with its callers."
            ]
            if p.get("pinned")
            else []
        ),
        f"- c=1: {p['warmup_c1']} warm-up, then {p['c1_requests']} requests. c=16:"
        f" {p['c16_requests']} requests; c=64: {p['c64_seconds']} s; each split into"
        f" {p.get('rounds', 1)} rounds that alternate direct and gateway (D G, G D, D G …),"
        f" each round after {p['warmup_seconds']} s of warm-up (1 s after the first), so that a"
        " change in the virtual machine's speed during a level weighs on both; a level's"
        " figures pool its rounds. req/s = good answers / time until the last in-flight answer"
        " is in (the rounds' times added). Added latency = gateway − direct at the same"
        " percentile.",
        "- CPU per image = (utime + stime from `/proc/PID/stat`) delta over the phase / good"
        " answers, for the gateway and the fake; the client's is this process's CPU time.",
        f"- Burst: a new fake holding each answer {p['burst_hold_seconds']} s and a new gateway"
        f" (nothing served before but `/healthz`); {p['burst_size']} requests at once through"
        " the gateway. Peak RSS = `VmHWM` of `/proc/PID/status` read after the burst (the"
        " kernel's high-water mark, which sampling would miss). MB = 10⁶ bytes.",
        "- Profile: py-spy (`record --format raw --nonblocking`, 200 Hz, idle samples left out)"
        " on the gateway during an extra c=64 phase after the measured ones.",
        "",
    ]


def _headline_table(route: dict[str, Any]) -> list[str]:
    floors = any(check.get("floor") for check in route["checks"])
    rows = (
        ["| figure | measured | from | target | | floor |", "|---|---|---|---|---|---|"]
        if floors
        else ["| figure | measured | from | target | |", "|---|---|---|---|---|"]
    )
    for check in route["checks"]:
        mark = {True: "✓", False: "✗", None: "–"}[check["ok"]]
        floor = f" {check.get('floor') or '–'} |" if floors else ""
        rows.append(
            f"| {check['name']} | {check['shown']} | {check['basis']} | {check['target']}"
            f" | {mark} |{floor}"
        )
    return rows


def _gateway_cpu(target: str, cpu_per_image: dict[str, float | None]) -> str:
    # The gateway idles while the client calls the fake directly; a 0.00 there reads as a claim.
    # The reference gateway's row shows its own CPU in the gateway column.
    return "–" if target == "direct" else _num(cpu_per_image.get(target))


def _contention(route: dict[str, Any]) -> list[str]:
    share = route["derived"]["others_cpu_pct_of_capacity"]
    if share < CONTENDED_PCT:
        return []
    return [
        f"⚠ Other programs on the machine took {share} % of the CPU time during these phases:"
        " the figures are perturbed (see the last column).",
        "",
    ]


def _detail_table(route: dict[str, Any]) -> list[str]:
    rows = [
        "| phase | ok / failed | p50 ms | p90 ms | p99 ms | max ms | req/s"
        " | CPU ms/image: gateway / fake / client | CPU s: other programs / stolen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, level in route["phases"].items():
        for target, s in level.items():
            lat, cpu = s["latency_ms"], s["cpu_ms_per_image"]
            rows.append(
                f"| {target} {_level_name(label)} | {s['ok']} / {s['failed']}"
                f" | {_num(lat['p50'])} | {_num(lat['p90'])} | {_num(lat['p99'])}"
                f" | {_num(lat['max'])} | {_num(s['req_per_s'])} | {_gateway_cpu(target, cpu)}"
                f" / {_num(cpu.get('fake'))} / {_num(cpu.get('client'))}"
                f" | {s['cpu_s']['others']:.2f} / {s['cpu_s'].get('steal', 0.0):.2f} |"
            )
    b = route["burst"]
    lat = b["latency_ms"]
    rows.append(
        f"| burst {b['size']}, held {b['hold_s']} s | {b['ok']} / {b['failed']}"
        f" | {_num(lat['p50'])} | {_num(lat['p90'])} | {_num(lat['p99'])} | {_num(lat['max'])}"
        f" | – | gateway {_num(b['cpu_s'].get('gateway'))} s in all"
        f" | {b['cpu_s']['others']:.2f} / {b['cpu_s'].get('steal', 0.0):.2f} |"
    )
    failures = [
        f"- {label} {target}: {s['failures']}"
        for label, level in route["phases"].items()
        for target, s in level.items()
        if s["failed"]
    ] + ([f"- burst: {b['failures']}"] if b["failed"] else [])
    memory = (
        f"Burst memory: gateway VmHWM {b['gateway_vm_hwm_kb'] / 1024:.1f} MiB (idle before the"
        f" burst {b['gateway_vm_hwm_idle_kb'] / 1024:.1f} MiB), VmRSS after"
        f" {b['gateway_vm_rss_after_kb'] / 1024:.1f} MiB"
        + (f"; fake VmHWM {b['fake_vm_hwm_kb'] / 1024:.1f} MiB." if b["fake_vm_hwm_kb"] else ".")
    )
    return [*rows, "", memory, *(["", "Failures:", *failures] if failures else [])]


_VARIANTS = {
    "parsing": "parsing client",
    "sdk": "SDK client",
    "pinned": "gateway on its own core",
}


def _level_name(label: str) -> str:
    """`c16` → `c=16`; `c64_parsing` → `c=64, parsing client`."""
    level, _, variant = label.partition("_")
    return level.replace("c", "c=") + (f", {_VARIANTS.get(variant, variant)}" if variant else "")


def _profile_section(profile: dict[str, Any] | None) -> list[str]:
    if not profile:
        return []
    if "skipped" in profile:
        return [f"Profile: not taken ({profile['skipped']}).", ""]
    lines = [
        f"### Gateway profile at c=64 ({profile['samples']} on-CPU samples,"
        f" {profile['requests_during']} requests)",
        "",
        "| self % | frame | under (innermost imagegate frame) |",
        "|---|---|---|",
        *(
            f"| {pct} | `{frame}` | {f'`{caller}`' if caller else '–'} |"
            for frame, caller, pct in profile["self_pct"]
        ),
        "",
        "| inclusive % | imagegate function |",
        "|---|---|",
        *(f"| {pct} | `{frame}` |" for frame, pct in profile["imagegate_inclusive_pct"]),
        "",
    ]
    return lines


def _loads(values: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def _num(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
