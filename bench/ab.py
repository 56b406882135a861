"""Two revisions of the gateway in one run: ``python bench/ab.py --base REV [--route openai]``.

Runs on this machine vary by up to a third between hours (a shared virtual machine), far more
than most changes to the hot path, so figures from two runs cannot be compared. Here both
gateways serve the same fake at the same time of day: the base revision (`src/` of REV,
unpacked and put first on its PYTHONPATH, as `chaos.py --gateway-rev` does) and the working
tree. Phases alternate, A B B A A B ..., and
the medians of gateway CPU per image, req/s and p50 are printed with every phase's CPU figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import uvloop

from bench import load
from bench.procs import Proc, ProcessSet, revision_source, tune_own_allocator
from bench.routes import ROUTES


async def phase(
    session: aiohttp.ClientSession, target: load.Target, args: argparse.Namespace, gw: Proc
) -> tuple[float, float, float]:
    """(gateway CPU ms per image, req/s, p50 ms) of one measured phase after a short warm-up."""
    await load.run_for(session, target, args.concurrency, 0.5)
    before = gw.cpu_seconds()
    started = time.monotonic()
    tally = await load.run_for(session, target, args.concurrency, args.seconds)
    elapsed = time.monotonic() - started
    if tally.failed or not tally.ok:
        raise RuntimeError(f"{target.url}: {tally.failures}")
    latencies = sorted(tally.latencies)
    cpu = 1000 * (gw.cpu_seconds() - before) / tally.ok
    return cpu, tally.ok / elapsed, 1000 * latencies[len(latencies) // 2]


async def compare(args: argparse.Namespace) -> None:
    spec = ROUTES[args.route]
    if spec.fake_kind is None:
        raise SystemExit(f"route {args.route} has no upstream to share")
    with ProcessSet(keep_logs=args.keep_logs) as procs:
        fake = procs.start_fake(spec.fake_kind, "ab-key")
        env = spec.key_env_for("ab-key")
        base = revision_source(args.base, procs.workdir)
        gateways = {
            f"A {args.base}": procs.start_gateway(spec.settings(fake.url), {**env, **base}),
            "B working tree": procs.start_gateway(spec.settings(fake.url), env),
        }
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in gateways}
        names = list(gateways)
        async with load.new_session() as session:
            for round_ in range(args.rounds):
                for name in names if round_ % 2 == 0 else names[::-1]:
                    target = spec.gateway_target(gateways[name].url, parse=args.parsing_client)
                    figures[name].append(await phase(session, target, args, gateways[name]))
    client = "parsing client" if args.parsing_client else "byte-checking client"
    rounds = f"{args.rounds} rounds of {args.seconds} s"
    print(f"route {args.route}, c={args.concurrency}, {rounds}, {client}")
    for name, rows in figures.items():
        cpu = statistics.median(row[0] for row in rows)
        rate = statistics.median(row[1] for row in rows)
        p50 = statistics.median(row[2] for row in rows)
        each = " ".join(f"{row[0]:.2f}" for row in rows)
        measured = f"gateway CPU/image {cpu:.3f} ms  {rate:.0f} req/s  p50 {p50:.1f} ms"
        print(f"  {name:20} {measured}  ({each})")
    a, b = (statistics.median(row[0] for row in figures[name]) for name in names)
    print(f"  B - A: {b - a:+.3f} ms per image ({100 * (b - a) / a:+.1f} %)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base", default="HEAD", help="git revision to compare against")
    parser.add_argument(
        "--route", default="openai", choices=[n for n, r in ROUTES.items() if r.fake_kind]
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measured phase")
    parser.add_argument("--rounds", type=int, default=8, help="phases per gateway")
    parser.add_argument("--parsing-client", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tune_own_allocator()
    uvloop.run(compare(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
