"""The floor: the least a gateway can do on this stack, to measure imagegate against.

``python bench/reference_gateway.py --port P --upstream URL --kind openai|gemini --key K``

One route, no config, no router, no ledger, no storage, no checks beyond the image header.
It is what shared/PERFORMANCE.md describes as the best throwaway it measured: aiohttp.web and
aiohttp's client on uvloop, answers streamed piece by piece (each write waits for drain),
the base64 text found by a byte search and passed on untouched, with the allocator settings
(the bench starts it with them in the environment, as it starts imagegate).

- ``openai``: the request's JSON is sent upstream as is (model replaced); the answer is read
  until the image text starts, its PNG signature checked, and head + rest are streamed back.
- ``gemini``: the OpenAI request becomes a generateContent call; the answer's ``"data"``
  text goes out inside OpenAI's JSON (head, the same bytes, tail).

Not part of imagegate: it handles no error beyond answering 502.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
import uvloop
from aiohttp import http_writer, web

PNG_B64 = b"iVBORw0KGgo"
MARKERS = {"openai": re.compile(rb'"b64_json"\s*:\s*"'), "gemini": re.compile(rb'"data"\s*:\s*"')}
SESSION = web.AppKey("session", aiohttp.ClientSession)


@dataclass(frozen=True)
class Upstream:
    kind: str
    url: str
    headers: dict[str, str]
    model: str

    def body(self, request: dict[str, object]) -> bytes:
        if self.kind == "openai":
            return orjson.dumps({**request, "model": self.model})
        return orjson.dumps(
            {
                "contents": [{"role": "user", "parts": [{"text": request["prompt"]}]}],
                "generationConfig": {
                    "responseModalities": ["IMAGE"],
                    "imageConfig": {"aspectRatio": "1:1"},
                },
            }
        )


UPSTREAM = web.AppKey("upstream", Upstream)


async def generations(request: web.Request) -> web.StreamResponse:
    upstream = request.app[UPSTREAM]
    body = orjson.loads(await request.read())
    async with request.app[SESSION].post(
        upstream.url, data=upstream.body(body), headers=upstream.headers
    ) as answer:
        content = answer.content
        buf = b""
        while (match := MARKERS[upstream.kind].search(buf)) is None:
            chunk, _ = await content.readchunk()
            if not chunk:
                return web.json_response({"error": "no image"}, status=502)
            buf += chunk
        start = match.end()
        while len(buf) < start + len(PNG_B64):
            chunk, _ = await content.readchunk()
            if not chunk:
                return web.json_response({"error": "truncated"}, status=502)
            buf += chunk
        if buf[start : start + len(PNG_B64)] != PNG_B64:
            return web.json_response({"error": "not a PNG"}, status=502)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if upstream.kind == "openai":
            await response.write(buf)  # the upstream's own head, image text and all
            while chunk := (await content.readchunk())[0]:
                await response.write(chunk)
        else:
            await response.write(b'{"created":%d,"data":[{"b64_json":"' % int(time.time()))
            while (end := buf.find(b'"', start)) < 0:
                await response.write(memoryview(buf)[start:])
                buf, start = (await content.readchunk())[0], 0
                if not buf:
                    break
            await response.write(memoryview(buf)[start:end])
            while (await content.readchunk())[0]:
                pass  # the rest of the Gemini answer: its skeleton, not needed here
            await response.write(b'"}],"output_format":"png"}')
        await response.write_eof()
        return response


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def client_session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    app[SESSION] = aiohttp.ClientSession(connector=connector)
    yield
    await app[SESSION].close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the fake's base URL")
    parser.add_argument("--kind", choices=sorted(MARKERS), required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    if args.kind == "openai":
        url = f"{args.upstream}/v1/images/generations"
        headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    else:
        url = f"{args.upstream}/v1beta/models/{args.model}:generateContent"
        headers = {"x-goog-api-key": args.key, "Content-Type": "application/json"}
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = Upstream(args.kind, url, headers, args.model)
    app.router.add_post("/v1/images/generations", generations)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(client_session)
    uvloop.install()
    # The same vectored chunk writes imagegate turns on under uvloop (imagegate/runtime.py).
    http_writer.SKIP_WRITELINES = False
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    sys.exit(main())
