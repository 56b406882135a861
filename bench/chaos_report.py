"""The chaos benchmark's figures: summaries of outcomes, terminal tables, and its own section of
docs/benchmarks.md.

The section sits between ``CHAOS_START`` and ``CHAOS_END`` after the performance report's notes;
bench/run.py regenerates everything above it and keeps the section (bench/report.py). Each full
chaos run rewrites the section and adds a line to its table of runs, so earlier figures (e.g.
before the breaker and pacer landed) stay visible next to the latest ones.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.load import percentile
from bench.report import CHAOS_END, CHAOS_START

if TYPE_CHECKING:
    from bench.chaos import ChaosPlan
    from bench.chaos_client import Outcome

HISTORY_START = "<!-- chaos-history:start -->"
HISTORY_END = "<!-- chaos-history:end -->"
NOTES_START = "<!-- chaos-notes:start (kept across reruns) -->"
NOTES_END = "<!-- chaos-notes:end -->"
HISTORY_ROWS = 30
MARK = {True: "✓", False: "✗", None: "·"}
# The run table: (heading, scenario, start of the check's name).
HISTORY_COLUMNS = (
    ("1 success", "1", "client success"),
    ("1 calls/success", "1", "upstream calls per success"),
    ("2 success", "2", "client success"),
    ("3 upstream 429s", "3", "upstream 429s"),
    ("3 in time or refused early", "3", "served in deadline"),
    ("4a calls after diagnosis", "4", "4a (only a zero key): upstream calls"),
    ("4a says billing", "4", "4a (only a zero key): client error"),
    ("safety reported", "safety", "upstream safety blocks"),
)


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """What the client saw: served, false successes and failures by code, latencies."""
    served = sorted(outcome.seconds for outcome in outcomes if outcome.served)
    failed = [outcome for outcome in outcomes if not outcome.is_2xx]
    messages: dict[str, str] = {}
    for outcome in failed:
        messages.setdefault(outcome.code, outcome.message[:240])
    return {
        "requests": len(outcomes),
        "served": len(served),
        "false_successes": dict(
            Counter(o.problem for o in outcomes if o.false_success and o.problem)
        ),
        "failures": dict(Counter(outcome.code for outcome in failed).most_common()),
        "failed_attempts": dict(
            Counter(attempt for outcome in failed for attempt in outcome.attempts).most_common(8)
        ),
        "served_by": dict(Counter(o.served_by for o in outcomes if o.served).most_common()),
        "latency_s": {
            "p50": _round(percentile(served, 50)),
            "p95": _round(percentile(served, 95)),
            "max": _round(served[-1] if served else math.nan),
        },
        "failure_latency_s": {
            "p50": _round(percentile(sorted(o.seconds for o in failed), 50)),
            "max": _round(max((o.seconds for o in failed), default=math.nan)),
        },
        "messages": messages,
        "retry_hints": dict(Counter(f"{o.code} {o.retry_hint}" for o in failed).most_common(6)),
        # [sent_at, seconds, status, code, served_by | problem | retry hint, attempts] per request
        # that was not served, for reading what went wrong from bench/results/chaos.json.
        "not_served": [outcome.compact() for outcome in outcomes if not outcome.served],
    }


def load_line(number: str, plan: ChaosPlan) -> str:
    """How the scenario was driven, in one line."""
    shape = "n=1, 1024x1024, through the OpenAI surface"
    if number in ("1", "2"):
        return f"{plan.requests} requests, closed loop at concurrency {plan.concurrency}, {shape}"
    if number == "3":
        return (
            f"open loop, {plan.per_second * 60:g} requests/min for {plan.paced_seconds:g} s"
            f" ({round(plan.per_second * plan.paced_seconds)} requests), {shape},"
            f" `x-imagegate-timeout: {plan.deadline_seconds:g}`"
        )
    if number == "4":
        return f"one request at a time, 1 + {plan.quota_requests} per variant, {shape}"
    return f"{plan.safety_requests} requests, closed loop at concurrency 8, {shape}"


# --- terminal -------------------------------------------------------------------------------------


def console_scenario(result: dict[str, Any]) -> str:
    lines = [f"   {result['title']}"]
    for check in result["checks"]:
        lines.append(
            f"   {MARK[check['ok']]} {check['name']}: {check['shown']} (target: {check['target']})"
        )
        if check["basis"]:
            lines.append(f"       {check['basis']}")
    lines += [f"   {line}" for line in _detail_lines(result)]
    return "\n".join(lines)


def console(results: dict[str, Any]) -> str:
    lines = [f"chaos: gateway {results['gateway']}, {results['finished_utc']}"]
    for name, result in results["scenarios"].items():
        if "error" in result:
            lines.append(f"  {name}: could not run: {result['error'][:300]}")
            continue
        for check in result["checks"]:
            lines.append(f"  {name:>6} {MARK[check['ok']]} {check['name']}: {check['shown']}")
    return "\n".join(lines)


# --- docs/benchmarks.md ---------------------------------------------------------------------------


def write_section(path: Path, results: dict[str, Any]) -> None:
    """Write the Chaos section into ``path``: in place of the old one, else at the end."""
    text = path.read_text() if path.exists() else ""
    found = re.search(re.escape(CHAOS_START) + r".*?" + re.escape(CHAOS_END), text, re.S)
    old = found.group(0) if found else ""
    old_rows = _history_rows(old)
    rows = [_history_row(results), *old_rows] if not results["plan"]["quick"] else old_rows
    section = markdown_section(results, rows[:HISTORY_ROWS], _between(old, NOTES_START, NOTES_END))
    if found:
        text = text[: found.start()] + section + text[found.end() :]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def markdown_section(results: dict[str, Any], history: list[str], notes: str = "") -> str:
    quick = results["plan"]["quick"]
    lines = [
        CHAOS_START,
        "## Chaos",
        "",
        f"Generated by `python bench/chaos.py{' --quick' if quick else ''}`"
        f" ({results['finished_utc']}); gateway {results['gateway']}. Rerun it to refresh this"
        " section (`bench/run.py` keeps it); raw figures: `bench/results/chaos.json`."
        + (" **Quick run: small counts, indicative only.**" if quick else ""),
        "",
        *_method_lines(),
    ]
    for name, result in results["scenarios"].items():
        lines += _scenario_lines(name, result)
    lines += [
        "### Runs",
        "",
        "Newest first; full runs only. ✓/✗ against the targets above.",
        "",
        HISTORY_START,
        _history_header(),
        "|" + "---|" * (len(HISTORY_COLUMNS) + 2),
        *history,
        HISTORY_END,
        "",
        "### Notes",
        "",
        NOTES_START,
        notes.strip("\n"),
        NOTES_END,
        CHAOS_END,
    ]
    return "\n".join(lines)


def _method_lines() -> list[str]:
    from bench.chaos import GEMINI_MIX, OPENAI_MIX

    return [
        "Each scenario starts its own fake upstreams (`python -m tests.fakes.gemini` / `openai`,"
        " one process per deployment, answering at once) and a fresh `imagegate serve` whose"
        " route `chaos` lists the deployments in order. A failing deployment's fake fails each"
        " request with the given probability, playing one scenario of its mix chosen uniformly:"
        f" Gemini {_names(GEMINI_MIX)}; OpenAI {_names(OPENAI_MIX)}. Upstream calls are the"
        " fakes' own counters (`GET /_fake/stats`); every 2xx answer's images are decoded in"
        " full with Pillow, after the clock stopped. A 2xx without a decodable image of the"
        " asked size is a false success.",
        "",
    ]


def _scenario_lines(name: str, result: dict[str, Any]) -> list[str]:
    title = result.get("title", f"scenario {name}")
    heading = f"### {name}. {title}" if name.isdigit() else f"### {title}"
    if "error" in result:
        return [heading, "", f"Could not run: {result['error']}", ""]
    if result.get("separate_runs"):
        where = "One run per deployment, each its own route: " + "; ".join(result["upstreams"])
    else:
        where = "Deployments, in route order: " + " → ".join(result["upstreams"])
    lines = [
        heading,
        "",
        where + ".",
        f"Load: {result['load']}.",
        "",
        "| target | measured | bound | |",
        "|---|---|---|---|",
    ]
    for check in result["checks"]:
        shown = check["shown"] + (f" <br>{check['basis']}" if check["basis"] else "")
        lines.append(f"| {check['name']} | {shown} | {check['target']} | {MARK[check['ok']]} |")
    lines += ["", *[f"- {line}" for line in _detail_lines(result)], ""]
    return lines


def _detail_lines(result: dict[str, Any]) -> list[str]:
    summary = result["summary"]
    lat, fail_lat = summary["latency_s"], summary["failure_latency_s"]
    lines = [
        f"client: {summary['served']} served of {summary['requests']}"
        f" (by {_counts(summary['served_by'])}); latency of served p50 {lat['p50']} s,"
        f" p95 {lat['p95']} s, max {lat['max']} s",
    ]
    if summary["failures"]:
        lines.append(
            f"failures by code: {_counts(summary['failures'])};"
            f" latency p50 {fail_lat['p50']} s, max {fail_lat['max']} s;"
            f" failed attempts seen: {_counts(summary['failed_attempts']) or 'none listed'}"
        )
        for code, message in summary["messages"].items():
            lines.append(f'`{code}` says: "{message}"')
    for name, stats in result["upstream"].items():
        lines.append(
            f"upstream `{name}`: {stats['requests']} calls ({_counts(stats['by_scenario'])})"
            + (f", {stats['rate_limited_429']} quota 429s" if stats.get("rate_limited_429") else "")
        )
    return lines


def _history_header() -> str:
    headings = ["finished", "gateway", *(heading for heading, _, _ in HISTORY_COLUMNS)]
    return "| " + " | ".join(headings) + " |"


def _history_row(results: dict[str, Any]) -> str:
    cells = [results["finished_utc"], results["gateway"].split(" ", 1)[0]]
    for _, scenario, prefix in HISTORY_COLUMNS:
        result = results["scenarios"].get(scenario) or {}
        check = next((c for c in result.get("checks", []) if c["name"].startswith(prefix)), None)
        cells.append(f"{check['shown']} {MARK[check['ok']]}" if check else "–")
    return "| " + " | ".join(cells) + " |"


def _history_rows(section: str) -> list[str]:
    lines = _between(section, HISTORY_START, HISTORY_END).splitlines()
    rows = [line for line in lines if line.startswith("| ")]
    return rows[1:]  # the first is the header (the separator does not start with "| ")


def _between(text: str, start: str, end: str) -> str:
    found = re.search(re.escape(start) + r"\n?(.*?)" + re.escape(end), text, re.S)
    return found.group(1) if found else ""


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name or '?'} {count}" for name, count in counts.items())


def _round(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds, 3)
