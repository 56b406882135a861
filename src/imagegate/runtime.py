"""Process settings for `imagegate serve`: the event loop, socket writes, the garbage collector.

Each one was measured on the hot path (docs/benchmarks.md): an answer is ~1.5 MB of base64
passed through in pieces, so what costs per piece or per byte shows up in every figure.
"""

from __future__ import annotations

import asyncio
import gc
import sys

from aiohttp import http_writer, web


def use_uvloop() -> bool:
    """Serve on uvloop when it is installed (the `fast` extra); True if it is."""
    try:
        import uvloop  # noqa: PLC0415 - optional: the `fast` extra
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    enable_vectored_writes()
    return True


def enable_vectored_writes() -> None:
    """Let aiohttp hand a chunk's framing and data to the transport as one vectored write.

    aiohttp joins `size\\r\\n`, the data and `\\r\\n` into one new bytes object before writing on
    Python < 3.12.9 (`SKIP_WRITELINES`): CPython's own transport gains nothing from
    `writelines` there, and on 3.12.0-3.12.8 and 3.13.0-3.13.1 it had a flow-control flaw
    (CVE-2024-12254). uvloop's transport writes a list with one `writev` and pauses the protocol
    exactly as `write` does, so under uvloop the join is only a copy of every byte of every
    answer. Call only once uvloop's policy is set.
    """
    if sys.version_info < (3, 12, 9) or (3, 13) <= sys.version_info < (3, 13, 2):
        http_writer.SKIP_WRITELINES = False


def freeze_startup_heap(app: web.Application) -> None:
    """Once the app has started, move everything it holds out of the collector's sight.

    Imports, settings, the catalog and the database engine are hundreds of thousands of objects
    that never become garbage; without `gc.freeze()` every full collection walks them again.
    """

    async def freeze(_: web.Application) -> None:
        gc.collect()
        gc.freeze()

    app.on_startup.append(freeze)
