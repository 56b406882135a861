"""Instructions per request of two revisions, under callgrind: ``python bench/instructions.py``.

Timing two revisions on this virtual machine is noisy: runs vary by up to a third between
hours, and even alternating phases (`ab.py`) leaves ±5 % between rounds, more than most
changes to the request path make. valgrind's callgrind counts the instructions a process
executes instead, which is repeatable to ~1 % whatever else the machine does. Each revision's
gateway runs under callgrind (counting switched on only after start-up and a warm-up), serves
`--requests` answers from the same fake, and the user-space instructions per request are
printed with the difference.

Instructions are not time: a copy of a megabyte is few instructions and many cycles, Python
bytecode the other way round, and the kernel is not counted at all. So use it to judge changes
to the Python on the request path (it sees a 2 % change that timing cannot), and `ab.py` or
`run.py` for the whole cost.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from bench import load
from bench.procs import Proc, ProcessSet, revision_source, tune_own_allocator
from bench.routes import ROUTES

WARM_UP = 60


def total_instructions(path: Path) -> int:
    """The Ir total of a callgrind output file (its `totals:` or `summary:` line)."""
    found = 0
    with path.open() as lines:
        for line in lines:
            if line.startswith(("summary:", "totals:")):
                found = max(found, int(line.split()[1]))
    return found


async def measure(gateway: Proc, args: argparse.Namespace, out: Path) -> float:
    """Millions of instructions per request over `args.requests` answers."""
    spec = ROUTES[args.route]
    target = spec.gateway_target(gateway.url)
    async with load.new_session(timeout_seconds=600) as session:
        warm = await load.run_count(session, target, args.concurrency, WARM_UP)
        if warm.failed:
            raise RuntimeError(f"warm-up failed: {dict(warm.failures)}")
        _control("--instr=on", gateway)
        tally = await load.run_count(session, target, args.concurrency, args.requests)
        _control("--instr=off", gateway)
        _control("--dump", gateway)
    if tally.failed:
        raise RuntimeError(f"{tally.failed} requests failed: {dict(tally.failures)}")
    deadline = time.monotonic() + 30
    dumps: list[Path] = []
    while not dumps and time.monotonic() < deadline:
        dumps = [p for p in out.parent.glob(out.name + ".*") if p.stat().st_size > 0]
        await asyncio.sleep(0.2)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump next to {out}")
    return sum(total_instructions(p) for p in dumps) / tally.ok / 1e6


def _control(option: str, gateway: Proc) -> None:
    subprocess.run(["callgrind_control", option, str(gateway.pid)], check=True, capture_output=True)


async def compare(args: argparse.Namespace) -> None:
    spec = ROUTES[args.route]
    if spec.fake_kind is None:
        raise SystemExit(f"route {args.route} has no upstream")
    results: dict[str, float] = {}
    with ProcessSet(keep_logs=args.keep_logs) as procs:
        fake = procs.start_fake(spec.fake_kind, "cg-key")
        env = spec.key_env_for("cg-key")
        floor = args.base == "reference"
        base = {} if floor else revision_source(args.base, procs.workdir)
        revisions: dict[str, dict[str, str]] = {f"A {args.base}": base, "B working tree": {}}
        for index, (name, source) in enumerate(revisions.items()):
            out = procs.workdir / f"callgrind-{index}.out"
            wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            wrapper.append(f"--callgrind-out-file={out}")
            if floor and index == 0:
                gateway = procs.start_reference(spec, fake.url, "cg-key", 600, wrapper)
            else:
                gateway = procs.start_gateway(
                    spec.settings(fake.url), {**env, **source}, timeout=600, wrapper=wrapper
                )
            results[name] = await measure(gateway, args, out)
            procs.stop(gateway)
            print(f"  {name:20} {results[name]:.3f} M instructions per request", flush=True)
    a, b = results.values()
    print(f"route {args.route}, {args.requests} requests at c={args.concurrency}")
    print(f"  B - A: {b - a:+.3f} M ({100 * (b - a) / a:+.1f} %)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--base",
        default="HEAD",
        help="git revision to compare against; reference: bench/reference_gateway.py (the floor)",
    )
    parser.add_argument(
        "--route", default="openai", choices=[n for n, r in ROUTES.items() if r.fake_kind]
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--keep-logs", action="store_true", help="keep the callgrind files too")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tune_own_allocator()
    uvloop.run(compare(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
