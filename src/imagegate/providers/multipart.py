"""A multipart/form-data body as bytes, for upstreams that take file uploads (OpenAI edits).

Built as plain bytes rather than with aiohttp's FormData so that a provider's build function stays
pure and its output can be checked in a unit test.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FilePart:
    name: str
    filename: str
    content_type: str
    data: bytes


def new_boundary() -> str:
    return f"imagegate-{secrets.token_hex(16)}"


def encode_multipart(
    fields: Sequence[tuple[str, str]], files: Sequence[FilePart], boundary: str
) -> tuple[bytes, str]:
    """(body, content type). Text fields first, then files, the order OpenAI's SDK uses."""
    dash = f"--{boundary}".encode()
    chunks: list[bytes] = []
    for name, value in fields:
        chunks += [dash, b"\r\n", _disposition(name), b"\r\n\r\n", value.encode(), b"\r\n"]
    for part in files:
        chunks += [
            dash,
            b"\r\n",
            _disposition(part.name, part.filename),
            f"\r\nContent-Type: {part.content_type}\r\n\r\n".encode(),
            part.data,
            b"\r\n",
        ]
    chunks += [dash, b"--\r\n"]
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _disposition(name: str, filename: str | None = None) -> bytes:
    text = f'Content-Disposition: form-data; name="{_quoted(name)}"'
    if filename is not None:
        text += f'; filename="{_quoted(filename)}"'
    return text.encode()


def _quoted(text: str) -> str:
    # Names are ours (image[], mask, prompt...); escape anyway so a header can never be broken.
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")
