"""The base64 image strings are cut out of an answer by byte search; the rest stays valid JSON."""

from __future__ import annotations

import re

import orjson

from imagegate.providers.b64_stream import split_b64_fields

MARKER = re.compile(rb'"b64_json"\s*:\s*"')


def test_split_keeps_a_parseable_skeleton_and_every_image() -> None:
    body = b'{"created":1,"data":[{"b64_json":"AAAA"},{"b64_json": "BB\\/B"}],"usage":{"total_tokens":7}}'
    skeleton, slices = split_b64_fields(body, MARKER)
    assert slices == [b"AAAA", b"BB/B"]  # a JSON-escaped slash is unescaped
    parsed = orjson.loads(skeleton)
    assert parsed["data"] == [{"b64_json": ""}, {"b64_json": ""}]
    assert parsed["usage"]["total_tokens"] == 7


def test_text_that_mentions_the_field_name_is_not_cut() -> None:
    body = b'{"text":"the \\"b64_json\\":\\"x\\" field","data":[]}'
    skeleton, slices = split_b64_fields(body, MARKER)
    assert slices == [] and skeleton == body
