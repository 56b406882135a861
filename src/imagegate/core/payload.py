"""The base64 text of one generated image, held in memory or still arriving from the upstream.

Images cross the gateway as base64 text, never decoded on the hot path (shared/PERFORMANCE.md):
a provider finds the base64 slice in the upstream answer and hands it on; the surface writes the
same slice into its own answer. A `StreamedB64` keeps the upstream connection open and yields the
text as it arrives, so 500 answers in flight do not pile up 1.5 MB each in memory.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

# A piece of base64 text: bytes, or a view into a buffer received from the upstream (the first
# and last pieces of a streamed image start or end inside one; a view spares copying them).
Piece = bytes | memoryview


class B64Source(ABC):
    """Base64 text (standard alphabet) of one encoded image. A source can be read once."""

    @abstractmethod
    def chunks(self) -> AsyncIterator[Piece]:
        """Yield the base64 text in pieces. Raises `TruncatedImage` if the upstream breaks off."""

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release what the source holds (an upstream connection). Safe to call twice."""


class HeldB64(B64Source):
    """Base64 text already in memory."""

    __slots__ = ("_b64",)

    def __init__(self, b64: bytes) -> None:
        self._b64 = b64

    @classmethod
    def from_bytes(cls, raw: bytes) -> HeldB64:
        return cls(base64.b64encode(raw))

    async def chunks(self) -> AsyncIterator[Piece]:
        yield self._b64

    async def read(self) -> bytes:
        return self._b64

    @property
    def size(self) -> int:
        return len(self._b64)


class TruncatedImage(Exception):
    """The upstream connection ended in the middle of an image's base64 text."""


async def decode(source: B64Source) -> bytes:
    """The image's bytes. Only for paths that must touch the pixels (storage, transcoding)."""
    text = await source.read()
    if b"-" in text or b"_" in text:
        return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    return base64.b64decode(text + b"=" * (-len(text) % 4))
