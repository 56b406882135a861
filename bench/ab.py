"""Two revisions of the gateway in one run: ``python bench/ab.py --base REV [--route openai]``.

Runs on this machine vary by up to a third between hours (a shared virtual machine), far more
than most changes to the hot path, so figures from two runs cannot be compared. Here both
gateways serve the same fake at the same time of day: the base revision (`src/` of REV,
unpacked and put first on its PYTHONPATH, as `chaos.py --gateway-rev` does) and the working
tree. Phases alternate, A B B A A B ..., and
the medians of gateway CPU per image, req/s and p50 are printed with every phase's CPU figure.

`--direct` and `--reference` add the direct call to the fake and the floor gateway
(`reference_gateway.py`) as further subjects in the same rotation; the gateways' req/s and p50
are then also given against direct. `--base none` leaves the base revision out, and
`--client bytes|parsing|sdk` picks the load client (bench/load.py).
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

import uvloop

from bench import load
from bench.procs import Proc, ProcessSet, revision_source, tune_own_allocator
from bench.routes import ROUTES


async def phase(
    session: load.Session, target: load.Target, args: argparse.Namespace, gw: Proc | None
) -> tuple[float, float, float]:
    """(gateway CPU ms per image, req/s, p50 ms) of one measured phase after a short warm-up.

    With no gateway (the direct subject) the CPU figure is the fake's."""
    await load.run_for(session, target, args.concurrency, 0.5)
    before = gw.cpu_seconds() if gw else 0.0
    started = time.monotonic()
    tally = await load.run_for(session, target, args.concurrency, args.seconds)
    elapsed = time.monotonic() - started
    if tally.failed or not tally.ok:
        raise RuntimeError(f"{target.url}: {tally.failures}")
    latencies = sorted(tally.latencies)
    cpu = 1000 * (gw.cpu_seconds() - before) / tally.ok if gw else 0.0
    return cpu, tally.ok / elapsed, 1000 * latencies[len(latencies) // 2]


async def compare(args: argparse.Namespace) -> None:
    spec = ROUTES[args.route]
    if spec.fake_kind is None:
        raise SystemExit(f"route {args.route} has no upstream to share")
    with ProcessSet(keep_logs=args.keep_logs) as procs:
        fake = procs.start_fake(spec.fake_kind, "ab-key")
        env = spec.key_env_for("ab-key")
        subjects: dict[str, tuple[load.Target, Proc | None]] = {}
        if args.direct:
            direct = spec.direct_target(fake.url, "ab-key", client=args.client)
            assert direct is not None
            subjects["direct"] = (direct, None)
        if args.reference:
            ref = procs.start_reference(spec, fake.url, "ab-key")
            subjects["R reference"] = (spec.gateway_target(ref.url, client=args.client), ref)
        if args.base != "none":
            base = revision_source(args.base, procs.workdir)
            gw = procs.start_gateway(spec.settings(fake.url), {**env, **base})
            subjects[f"A {args.base}"] = (spec.gateway_target(gw.url, client=args.client), gw)
        gw = procs.start_gateway(spec.settings(fake.url), env)
        subjects["B working tree"] = (spec.gateway_target(gw.url, client=args.client), gw)
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in subjects}
        names = list(subjects)
        async with load.new_session() as session:
            for round_ in range(args.rounds):
                for name in names if round_ % 2 == 0 else names[::-1]:
                    target, proc = subjects[name]
                    figures[name].append(await phase(session, target, args, proc))
    client = load.CLIENT_NAMES[args.client]
    rounds = f"{args.rounds} rounds of {args.seconds} s"
    print(f"route {args.route}, c={args.concurrency}, {rounds}, {client}")
    medians = {
        name: tuple(statistics.median(row[i] for row in rows) for i in range(3))
        for name, rows in figures.items()
    }
    for name, rows in figures.items():
        cpu, rate, p50 = medians[name]
        each = " ".join(f"{row[0]:.2f}" for row in rows) if subjects[name][1] else "–"
        cpu_text = f"{cpu:.3f} ms" if subjects[name][1] else "–"  # no gateway: no CPU of one
        measured = f"gateway CPU/image {cpu_text}  {rate:.0f} req/s  p50 {p50:.1f} ms"
        if "direct" in medians and name != "direct":
            measured += f"  ({100 * rate / medians['direct'][1]:.1f} % of direct req/s,"
            measured += f" p50 {p50 - medians['direct'][2]:+.1f} ms)"
        print(f"  {name:16} {measured}  ({each})")
    gateways = [name for name in names if subjects[name][1]]
    if len(gateways) >= 2:
        a, b = medians[gateways[-2]][0], medians[gateways[-1]][0]
        print(f"  B - {gateways[-2][0]}: {b - a:+.3f} ms per image ({100 * (b - a) / a:+.1f} %)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--base", default="HEAD", help="git revision to compare against; none: no base gateway"
    )
    parser.add_argument("--direct", action="store_true", help="also measure the direct call")
    parser.add_argument(
        "--reference", action="store_true", help="also measure bench/reference_gateway.py"
    )
    parser.add_argument(
        "--route", default="openai", choices=[n for n, r in ROUTES.items() if r.fake_kind]
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measured phase")
    parser.add_argument("--rounds", type=int, default=8, help="phases per gateway")
    parser.add_argument("--client", default="bytes", choices=list(load.CLIENT_NAMES))
    parser.add_argument("--keep-logs", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tune_own_allocator()
    uvloop.run(compare(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
