"""The ledger's write-ahead journal: one orjson line per booking, appended before the answer.

Durability. A line is written with one `os.write` on an O_APPEND descriptor; once that returns,
the line is in the kernel's page cache, so a process that is killed (SIGKILL, the OOM killer, a
crash) loses nothing: the next start replays it. A machine crash or power cut can lose what the
kernel had not yet written back (seconds), unless `ledger: {durability: fsync}`, which flushes
every line to the disk before the answer goes out (one fdatasync per booking: ~0.1 ms on an NVMe
disk, 1–10 ms on network or spinning storage, serialised with the event loop).

Files, in `<data_dir>`: `ledger.journal` takes appends; the writer renames it to
`ledger.journal.<n>` when it takes a batch, applies that batch, then deletes the file. A file
is only deleted once everything in it is in the database, so after a crash, whatever files are
left hold every booking that may not have been applied; applying is idempotent, so replaying
more than that is harmless. `ledger.journal.lock` is held (flock) by the process that owns the
journal: two gateways cannot share one data_dir's journal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("imagegate.ledger")


class JournalBusy(RuntimeError):
    """Another process holds this journal."""


class Journal:
    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._written = 0  # bytes appended to the active file since it was opened
        self._next = 1  # suffix of the next rotated file

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> list[Path]:
        """Take the journal; returns the files a previous life left, oldest first, to replay.

        Raises JournalBusy when another live process holds it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        left = self._rotated()
        if left:
            self._next = _suffix(left[-1]) + 1
        if self.path.exists() and self.path.stat().st_size > 0:
            # The previous life's active file becomes the newest leftover; appends start afresh.
            moved = self._numbered(self._next)
            os.replace(self.path, moved)
            self._next += 1
            left.append(moved)
        self._open_active()
        return left

    def append(self, line: bytes) -> None:
        """Write one record (a whole line) before its answer is sent; raises OSError on failure."""
        fd = self._fd
        if fd is None:
            raise RuntimeError("the ledger journal is not open")
        view = memoryview(line)
        while view:  # a regular file takes it in one write unless the disk is full
            done = os.write(fd, view)
            view = view[done:]
        self._written += len(line)
        if self.fsync:
            _datasync(fd)

    def rotate(self) -> Path | None:
        """Close the active file under a new name and start another; None if it was empty.

        Every line appended before this call is in the returned file, none after it.
        """
        if self._fd is None or self._written == 0:
            return None
        os.close(self._fd)
        self._fd = None
        moved = self._numbered(self._next)
        self._next += 1
        os.replace(self.path, moved)
        self._open_active()
        return moved

    def remove(self, paths: Iterable[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self._written == 0:
                self.path.unlink(missing_ok=True)  # nothing to replay: leave no file behind
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _open_active(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o600)
        self._written = 0
        if self.fsync:
            _sync_directory(self.path.parent)  # the new name must survive a power cut too

    def _lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        if sys.platform != "win32":
            import fcntl  # noqa: PLC0415 - POSIX only

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise JournalBusy(
                    f"another imagegate process is using the ledger journal {self.path};"
                    " give each gateway its own server.data_dir"
                ) from None
        self._lock_fd = fd

    def _rotated(self) -> list[Path]:
        prefix = self.path.name + "."
        found = [p for p in self.path.parent.glob(prefix + "*") if p.name[len(prefix) :].isdigit()]
        return sorted(found, key=_suffix)

    def _numbered(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")


def encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def read(path: Path) -> list[dict[str, Any]]:
    """The records of one journal file. A torn last line (a power cut mid-write) is skipped."""
    records = []
    data = path.read_bytes()
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip(b"\0 \t\r"):
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("skipping an unreadable line %d of %s (torn by a crash?)", number, path)
            continue
        records.append(record)
    return records


def _suffix(path: Path) -> int:
    return int(path.name.rsplit(".", 1)[1])


def _datasync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def _sync_directory(directory: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
