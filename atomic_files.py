"""Crash-safe file writes: temp file in the same folder, fsync, rename.

A reader (or a restart after kill -9) sees either the old file or the new
one, never a half-written file.  A temp file's name carries the writer's pid
(`.<name>.<pid>-<random>.tmp`), so the sweep after a crash
(`remove_stale_temp_files`) leaves alone the temp file of a process that is
still writing.  Replacing the directory entry (rather than
writing through it) also means a hard link to the old file is detached, never
written through.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _default_file_mode() -> int:
    """0o666 minus the process umask, read without the racy os.umask() set/restore dance."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError) as exc:
        log.debug("umask not readable from /proc: %s", exc)
    return 0o644


_NEW_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, keep_mode: bool = False) -> None:
    """Replace `path` with `data` atomically, creating missing parent folders.

    Without `keep_mode` the file ends up with the temp file's mode (0o600).  With it, an
    existing file keeps its permission bits and a new one gets what a plain `open()` would
    give (0o666 minus the umask): the file tools write the user's own files this way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_to_keep(path) if keep_mode else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            log.debug("temp file %s already gone", tmp)
        raise
    _fsync_dir(path.parent)


def _mode_to_keep(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return _NEW_FILE_MODE


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        log.debug("cannot open %s to fsync it: %s", folder, exc)
        return
    try:
        os.fsync(dir_fd)
    except OSError as exc:  # some filesystems refuse fsync on a directory; the data itself is synced
        log.debug("directory fsync of %s not supported: %s", folder, exc)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def remove_stale_temp_files(folder: str | os.PathLike, names: tuple[str, ...] | None = None) -> list[Path]:
    """Delete temp files an interrupted atomic write left behind (kill -9 between create and rename).

    Only names of the form `.<name>.<pid>-<random>.tmp` (or the older `.<name>.<random>.tmp`)
    that this module creates are touched, and with `names` only those whose `<name>` is
    listed (for folders shared with the user's files); a temp file of a live process (this
    one included: another thread may be writing it) is left alone.  The real files next to
    them are always whole.
    """
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        parts = path.name[1:].rsplit(".", 2)              # ".state.json.77-ab12cd.tmp"
        target = parts[0]                                 # -> "state.json"
        if names is not None and target not in names:
            continue
        writer = parts[1].split("-", 1)[0] if len(parts) == 3 and "-" in parts[1] else ""
        if writer.isdigit() and process_alive(int(writer)):
            log.debug("keeping %s: process %s may still be writing it", path, writer)
            continue
        if path.is_file():
            path.unlink()
            removed.append(path)
            log.info("removed %s left by an interrupted write", path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or someone else's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # alive, owned by someone else
        return True
    except OverflowError:
        return False
    return True
