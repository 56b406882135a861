"""The ImageStore protocol."""

from __future__ import annotations

from typing import Protocol


class ImageStore(Protocol):
    async def put(self, data: bytes, mime_type: str) -> str:
        """Store `data`; return its unguessable name. Raises StorageError."""
        ...

    async def get(self, name: str) -> tuple[bytes, str] | None:
        """(bytes, mime type) of a stored image, or None if there is none by that name."""
        ...
