"""Images on local disk, handed out as signed, expiring URLs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from pathlib import Path

from imagegate.core.errors import StorageError

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
MIME_BY_EXTENSION = {ext: mime for mime, ext in EXTENSIONS.items()}


class LocalImageStore:
    """Files under `root`, named by 128 random bits; URLs also carry an HMAC and an expiry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    async def put(self, data: bytes, mime_type: str) -> str:
        name = f"{secrets.token_urlsafe(16)}.{EXTENSIONS.get(mime_type, 'bin')}"
        try:
            await asyncio.to_thread(self._write, name, data)
        except OSError as exc:
            raise StorageError(f"cannot store image in {self.root}: {exc.strerror}") from exc
        return name

    def _write(self, name: str, data: bytes) -> None:
        temporary = self.root / f".{name}.part"
        temporary.write_bytes(data)
        temporary.replace(self.root / name)

    async def get(self, name: str) -> tuple[bytes, str] | None:
        if "/" in name or name.startswith("."):
            return None
        path = self.root / name
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            return None
        return data, MIME_BY_EXTENSION.get(path.suffix.lstrip("."), "application/octet-stream")

    async def delete_older_than(self, seconds: float) -> int:
        """Remove images past their URLs' lifetime; returns how many went."""
        return await asyncio.to_thread(self._sweep, time.time() - seconds)

    def _sweep(self, cutoff: float) -> int:
        removed = 0
        for path in self.root.iterdir():
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class UrlSigner:
    """Signs image names with an expiry, so a URL works for its lifetime and cannot be forged."""

    def __init__(self, secret: bytes, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    def sign(self, name: str, now: float | None = None) -> tuple[int, str]:
        expires = int((now if now is not None else time.time()) + self.ttl_seconds)
        return expires, self._mac(name, expires)

    def verify(self, name: str, expires: int, signature: str, now: float | None = None) -> bool:
        if expires < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(self._mac(name, expires), signature)

    def _mac(self, name: str, expires: int) -> str:
        message = f"{name}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]


def load_or_create_secret(path: Path) -> bytes:
    """A per-installation signing secret, kept beside the images so URLs survive restarts."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        secret = secrets.token_bytes(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secret)
        path.chmod(0o600)
        return secret
