"""One runner per track: an OS file lock held while a track is planned, run or resumed.

Without it the desktop app and `mma-desk resume` (or two windows) could run the same
track at once: both billed, and the last writer of state.json won.

`claim(project_dir, track_id, what)` locks `<project>/.mma_desk/locks/<track id>.lock`
with the operating system's lock (filelock's `lock_descriptor`: `flock` on Unix,
`LockFileEx` on Windows) and writes the holder's pid into it, so a refused runner can say
who holds the track.  The kernel drops the lock when the process ends, however it ends
(kill -9 included): nothing is left to clean by hand, and the next holder overwrites the
stale pid.

Within a process the lock is counted: it stays taken while the run's `Claim` or any
worker thread it started (`Claim.hold`) is alive.  A worker that did not stop in time
after an abort therefore keeps its track locked, and Resume refuses (naming the ticket)
instead of starting a second call for the same ticket.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from filelock import lock_descriptor, unlock_descriptor

from models import validate_id

log = logging.getLogger(__name__)

LOCK_DIR = Path(".mma_desk") / "locks"


class TrackBusyError(ValueError):
    """The track is being run by another process, or by this one; the message says by whom."""

    def __init__(self, message: str, holder_pid: int | None = None, hint: str = ""):
        super().__init__(message)
        self.holder_pid = holder_pid
        self.hint = hint


class _TrackLock:
    """One track's lock file in this process: the OS lock plus who in here holds it."""

    def __init__(self, path: Path, track_id: str):
        self.path = path
        self.track_id = track_id
        self.fd: int | None = None
        self.holds: dict[int, str] = {}

    def lock_os(self) -> None:
        """Take the OS lock (raises TrackBusyError naming the holder's pid)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            locked = lock_descriptor(fd, blocking=False)
        except OSError:
            os.close(fd)
            raise
        if not locked:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder is not None else "another process"
            raise TrackBusyError(f"track {self.track_id} is being run by {who} (lock {self.path})", holder,
                                 "stop that run first, or wait for it to finish")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        log.info("track %s locked by pid %d", self.track_id, os.getpid())

    def unlock_os(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            unlock_descriptor(fd)
        finally:
            os.close(fd)
        log.info("track %s unlocked", self.track_id)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError as exc:
        log.debug("could not read the lock holder's pid: %s", exc)
        return None
    return int(text) if text.isdigit() else None


_registry: dict[Path, _TrackLock] = {}
_registry_lock = threading.Lock()
_hold_ids = itertools.count(1)


def _add_hold(lock: _TrackLock, name: str) -> Callable[[], None]:
    """Register a holder (registry lock held); returns its idempotent release."""
    key = next(_hold_ids)
    lock.holds[key] = name

    def release() -> None:
        with _registry_lock:
            if lock.holds.pop(key, None) is not None and not lock.holds:
                lock.unlock_os()
    return release


class Claim:
    """The right to run one track in this process.  `hold(name)` keeps the track locked
    for a worker thread until the function it returns is called; `release()` ends the
    claim itself (the OS lock goes when the last hold goes too)."""

    def __init__(self, project_dir: Path, lock: _TrackLock, release: Callable[[], None], what: str):
        self.project_dir = project_dir
        self.track_id = lock.track_id
        self.what = what
        self._lock = lock
        self._release = release
        self.released = False

    def hold(self, name: str) -> Callable[[], None]:
        with _registry_lock:
            if self._lock.fd is None:          # only a live claim can lend its lock
                raise RuntimeError(f"track {self.track_id}: hold({name!r}) without a live claim")
            return _add_hold(self._lock, name)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._release()

    def renewed(self) -> Claim:
        """This claim if still live, else a new one (for a second run of the same engine)."""
        return self if not self.released else claim(self.project_dir, self.track_id, self.what)


def claim(project_dir: str | os.PathLike, track_id: str, what: str = "run") -> Claim:
    """Claim `track_id` for `what` ("run", "resume", "planning"); raises TrackBusyError if
    another process holds it (naming its pid) or this process still runs it (naming what)."""
    track_id = validate_id(track_id, "track")
    root = Path(project_dir)
    path = (root / LOCK_DIR / f"{track_id}.lock").absolute()
    with _registry_lock:
        lock = _registry.setdefault(path, _TrackLock(path, track_id))
        if lock.holds:
            busy = ", ".join(sorted(set(lock.holds.values())))
            raise TrackBusyError(f"track {track_id} is still busy in this process ({busy})", os.getpid(),
                                 "wait a moment for it to stop, then try again")
        lock.lock_os()
        release = _add_hold(lock, what)
    return Claim(root, lock, release, what)
