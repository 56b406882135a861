"""Stored images: unguessable names, signed URLs that expire, and a sweep of expired files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from imagegate.storage.local import LocalImageStore, UrlSigner, load_or_create_secret


async def test_put_get_and_sweep(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "images")
    name = await store.put(b"\x89PNG...", "image/png")
    assert name.endswith(".png") and len(name) > 20
    assert await store.get(name) == (b"\x89PNG...", "image/png")
    assert await store.get("../secret") is None
    old = tmp_path / "images" / name
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert await store.delete_older_than(3600) == 1
    assert await store.get(name) is None


def test_signed_urls_expire_and_cannot_be_forged(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path / "key")
    assert load_or_create_secret(tmp_path / "key") == secret  # survives restarts
    signer = UrlSigner(secret, ttl_seconds=60)
    expires, signature = signer.sign("abc.png", now=1000)
    assert signer.verify("abc.png", expires, signature, now=1030)
    assert not signer.verify("abc.png", expires, signature, now=1061)  # expired
    assert not signer.verify("abd.png", expires, signature, now=1030)  # another image
    assert not signer.verify("abc.png", expires + 3600, signature, now=1030)  # stretched expiry
