"""The QA gate: the project's own check command (`[qa] command` in mma_project.toml).

It runs in the track's worktree after a merge (or after a DAG level), under
`bash --noprofile --norc -c`, in its own process group, with the same scrubbed
environment as the `run_shell` tool (no variables named like KEY/TOKEN/SECRET).
Its output goes to a temporary file and only the last `OUTPUT_TAIL_BYTES` are
kept, so a chatty test suite costs bounded memory.  A time-out or an abort kills
the whole process group.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.shell import scrubbed_env

log = logging.getLogger(__name__)

OUTPUT_TAIL_BYTES = 16 * 1024
RUN_AFTER = ("merge", "level")


@dataclass(frozen=True)
class QaConfig:
    """`[qa]` of the project file: what to run, how long it may take, and when."""
    command: str = ""
    timeout_s: float = 600.0
    run_after: str = "merge"                   # "merge": after each ticket's merge; "level": after each DAG level
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def enabled(self) -> bool:
        return bool(self.command.strip())


@dataclass(frozen=True)
class QaResult:
    command: str
    passed: bool
    exit_code: int | None
    output: str                                # the last OUTPUT_TAIL_BYTES of stdout+stderr
    seconds: float
    head: str = ""                             # the commit it checked
    tickets: tuple[str, ...] = ()              # the tickets whose merge it checked
    timed_out: bool = False
    cancelled: bool = False

    @property
    def verdict(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.timed_out:
            return "timed out"
        return "passed" if self.passed else f"failed (exit code {self.exit_code})"

    def to_dict(self) -> dict:
        return {"command": self.command, "passed": self.passed, "exit_code": self.exit_code,
                "verdict": self.verdict, "seconds": round(self.seconds, 2), "head": self.head,
                "tickets": list(self.tickets), "output": self.output[-2000:]}


class QaRunner:
    """Runs the command; `cancel()` (any thread) kills a run in progress and refuses new ones."""

    def __init__(self, config: QaConfig):
        self.config = config
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._cancelled = False

    def run(self, cwd: Path, head: str = "", tickets: tuple[str, ...] = ()) -> QaResult:
        cmd, limit = self.config.command, self.config.timeout_s
        started = time.monotonic()
        with tempfile.TemporaryFile(prefix="mma-qa-") as out:
            with self._lock:
                if self._cancelled:
                    return QaResult(cmd, False, None, "", 0.0, head, tickets, cancelled=True)
                proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", cmd], cwd=cwd,
                                        env={**scrubbed_env(), "PWD": str(cwd)}, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                self._proc = proc
            timed_out = False
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                timed_out = True
                log.warning("QA command timed out after %.0f s: %s", limit, cmd)
                _kill_group(proc.pid)
                code = proc.wait()
            finally:
                _kill_group(proc.pid)          # nothing it started outlives the check
                with self._lock:
                    self._proc = None
                    cancelled = self._cancelled
            size = out.seek(0, os.SEEK_END)
            out.seek(max(0, size - OUTPUT_TAIL_BYTES))
            text = out.read().decode("utf-8", errors="replace")
        if size > OUTPUT_TAIL_BYTES:
            text = f"[... {size - OUTPUT_TAIL_BYTES} earlier bytes cut ...]\n{text}"
        seconds = time.monotonic() - started
        passed = code == 0 and not timed_out and not cancelled
        if timed_out:
            text += f"\n[killed: the QA command ran longer than its {limit:g} s limit]"
        log.info("QA %s in %.1f s at %s: %s", "passed" if passed else "failed", seconds, head[:7], cmd)
        return QaResult(cmd, passed, None if timed_out else code, text, seconds, head, tickets,
                        timed_out=timed_out, cancelled=cancelled and not passed)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is not None:
            _kill_group(proc.pid)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass                                   # the group has already exited: nothing to stop
    except PermissionError as exc:
        log.warning("could not stop the QA command's process group %d: %s", pgid, exc)
