"""Summaries of a py-spy ``--format raw`` profile: where the gateway's on-CPU samples went.

Each raw line is ``frame;frame;...;leaf COUNT`` with frames like ``func (pkg/module.py)``. py-spy
leaves out idle samples (a thread waiting in epoll), so the counts are CPU time. A stack that
ends in the event loop's own frame means the thread was in native code under it: uvloop's
socket reads and writes and the C parts of aiohttp (parser, memory copies).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

# The frames that run the event loop; a sample ending there was in the loop's native code.
_LOOP_FRAMES = ("run_app (aiohttp/web.py)", "Runner.run (asyncio/runners.py)")
_NATIVE_LOOP = "[native code under the event loop: uvloop socket I/O, C parsers, copies]"
TOP = 15


def summarize(raw: str, top: int = TOP) -> dict[str, Any]:
    """Top frames by self time (with the gateway function they ran under), and the gateway's
    own functions by inclusive time; shares of all on-CPU samples, in %."""
    self_time: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own = [frame for frame in frames if _is_own(frame)]
        # The caller column is what points at a fix: b64decode under sniff_b64, say.
        callers = [frame for frame in frames[:-1] if _is_own(frame)]
        self_time[_leaf(frames[-1]), callers[-1] if callers else ""] += count
        for frame in set(own):  # once per sample, however deep the recursion
            inclusive[frame] += count
    return {
        "samples": total,
        "self_pct": [
            (leaf, caller, _pct(count, total))
            for (leaf, caller), count in self_time.most_common(top)
        ],
        "imagegate_inclusive_pct": [
            (frame, _pct(count, total)) for frame, count in inclusive.most_common(top)
        ],
    }


def _is_own(frame: str) -> bool:
    # The CLI frames sit under every sample; they say nothing about the request path.
    return "(imagegate/" in frame and "(imagegate/cli/" not in frame


def _leaf(frame: str) -> str:
    return _NATIVE_LOOP if frame in _LOOP_FRAMES else frame


def _pct(count: int, total: int) -> float:
    return round(100 * count / total, 1) if total else 0.0
