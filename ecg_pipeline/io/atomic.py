"""Atomic file writes: a dot-named temp file beside the target, fsync, then one rename."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARKER = ".tmp-"


@contextmanager
def atomic_target(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``target`` in one rename.

    Readers see either the old file or the new one, never a partial one; on failure the temp
    file is removed and ``target`` is untouched. The temp name starts with ``.`` so that folder
    scans and pyarrow datasets skip it, and carries the writer's pid so that a later run can tell
    a dead writer's leftovers from a live writer's file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # pid: tells a dead writer's leftovers apart; random part: two threads never share a temp.
    tmp = target.with_name(f".{target.name}{TEMP_MARKER}{os.getpid()}.{secrets.token_hex(4)}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def atomic_write_bytes(target: str | os.PathLike, parts: Iterable[bytes]) -> None:
    """Write ``parts`` one after another to ``target``, atomically."""
    with atomic_target(target) as tmp, open(tmp, "wb") as f:
        for part in parts:
            f.write(part)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, [text.encode("utf-8")])


def remove_dead_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files under ``folder`` whose writer process no longer exists."""
    removed = []
    for f in Path(folder).rglob(f".*{TEMP_MARKER}*"):
        pid_text = f.name.rsplit(TEMP_MARKER, 1)[-1].split(".", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        f.unlink(missing_ok=True)
        removed.append(f)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform allows syncing a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def folder_lock(folder: str | os.PathLike, name: str = ".lock") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``fcntl.flock`` on ``<folder>/<name>``).

    Processes on one machine that take it run one at a time; the kernel releases it when its
    holder dies, so a killed writer never leaves the folder locked.
    """
    import fcntl  # POSIX; the project runs on Linux and macOS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
