"""`run_shell`: one approved shell command in the project root, bounded in time and output.

How a command runs
------------------
* `bash --noprofile --norc -c COMMAND`, cwd = project root, stdin = /dev/null.
  Not a login shell (`-l`) on purpose: login shells source ~/.profile and
  friends, which commonly `export` API keys again and would undo the
  scrubbing below.  `BASH_ENV` / `ENV` are removed for the same reason.
* Its own session and process group (`start_new_session=True`).  On timeout
  the whole group gets SIGKILL and the model is told "timed out after N s",
  with whatever output arrived.  When the command finishes, any background
  job it left in the group is killed too: nothing a model starts outlives the
  approved call (unless the command itself detaches with `setsid`).  An abort
  (the session's `cancel` event) kills the group at once, the same way.
* stdout and stderr are read by two threads that keep only the first
  OUTPUT_HEAD_BYTES and the last OUTPUT_TAIL_BYTES of each stream, so a
  runaway command costs bounded memory; the cut is marked
  "[truncated: N bytes omitted]".

Environment scrubbing
---------------------
The command inherits the app's environment minus every variable whose name
contains KEY, TOKEN, SECRET, PASSWORD, PASSWD or CREDENTIAL (case-insensitive),
e.g. GEMINI_API_KEY, ANTHROPIC_API_KEY, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY.
This is name-based: a secret inside a differently named variable (say a
password embedded in DATABASE_URL) is *not* removed.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

from providers.base import interrupt_on_cancel
from tools.errors import ToolError

log = logging.getLogger(__name__)

SECRET_NAME_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
ALWAYS_STRIPPED = frozenset({"BASH_ENV", "ENV"})
OUTPUT_HEAD_BYTES = 16 * 1024
OUTPUT_TAIL_BYTES = 48 * 1024     # head + tail = 64 KB kept per stream
READER_JOIN_S = 5.0               # wait this long for the pipes to drain after the process ends
CANCEL_JOIN_S = 0.2               # ... and this long when the user aborted
MAX_TIMEOUT_S = 3600


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_NAME_MARKERS)


def scrubbed_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) without secret-looking variables, BASH_ENV and ENV."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not is_secret_name(k) and k not in ALWAYS_STRIPPED}
    dropped = sorted(k for k in source if k not in env)
    if dropped:
        log.debug("run_shell strips environment variables: %s", ", ".join(dropped))
    return env


class _BoundedReader(threading.Thread):
    """Drains one pipe, keeping the first `head` and the last `tail` bytes."""

    def __init__(self, stream, name: str):
        super().__init__(name=f"run_shell-{name}", daemon=True)
        self._stream = stream
        self._lock = threading.Lock()
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    def run(self) -> None:
        try:
            while True:
                chunk = self._stream.read1(65536)
                if not chunk:
                    break
                with self._lock:
                    self._add(chunk)
        except (OSError, ValueError) as exc:  # pipe closed under us
            log.debug("%s stopped reading: %s", self.name, exc)

    def _add(self, chunk: bytes) -> None:
        self._total += len(chunk)
        room = OUTPUT_HEAD_BYTES - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > OUTPUT_TAIL_BYTES:
                del self._tail[:len(self._tail) - OUTPUT_TAIL_BYTES]

    def text(self) -> str:
        with self._lock:
            head, tail, total = bytes(self._head), bytes(self._tail), self._total
        omitted = total - len(head) - len(tail)
        if omitted <= 0:
            return (head + tail).decode("utf-8", errors="replace")
        return (head.decode("utf-8", errors="replace")
                + f"\n[truncated: {omitted} bytes omitted]\n"
                + tail.decode("utf-8", errors="replace"))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        log.debug("process group %d already gone", pgid)
    except PermissionError as exc:
        log.warning("could not kill process group %d: %s", pgid, exc)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"exit code: {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"exit code: {code} (killed by signal {-code})"
    return f"exit code: {code}"


def run_shell(root: Path, command: str, timeout_s: float = 60, cancel: threading.Event | None = None) -> str:
    if not command.strip():
        raise ToolError("command is empty")
    env = scrubbed_env()
    env["PWD"] = str(root)
    log.info("run_shell in %s (timeout %ss): %s", root, timeout_s, command)
    try:
        proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", command],
            cwd=root, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
    except OSError as exc:
        raise ToolError(f"could not start bash: {exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None   # both are PIPE, so Popen opened them
    readers = [_BoundedReader(proc.stdout, "stdout"), _BoundedReader(proc.stderr, "stderr")]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        with interrupt_on_cancel(cancel, lambda: _kill_group(proc.pid)):
            code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        log.warning("run_shell timed out after %ss, killing process group %d", timeout_s, proc.pid)
        _kill_group(proc.pid)
        code = proc.wait()
    except BaseException:  # KeyboardInterrupt / thread teardown: never leave the group running
        _kill_group(proc.pid)
        proc.wait()
        raise
    else:
        _kill_group(proc.pid)  # background jobs left in the group do not outlive the call
    stuck = False
    cancelled = cancel is not None and cancel.is_set() and not timed_out
    for reader in readers:       # an abort does not wait long for a detached process's pipes
        reader.join(CANCEL_JOIN_S if cancelled else READER_JOIN_S)
        stuck = stuck or reader.is_alive()
    if stuck:
        log.warning("run_shell: a detached process still holds the output pipes of %r", command)
    else:
        proc.stdout.close()
        proc.stderr.close()

    out, err = readers[0].text(), readers[1].text()
    if cancelled:
        log.info("run_shell cancelled by the user: %s", command)
        header = "cancelled by the user: the command was killed (whole process group)"
        labels = ("--- stdout (partial) ---", "--- stderr (partial) ---")
    elif timed_out:
        header = f"timed out after {timeout_s:g} s: the command was killed (whole process group)"
        labels = ("--- stdout (partial) ---", "--- stderr (partial) ---")
    else:
        header = _exit_text(code)
        labels = ("--- stdout ---", "--- stderr ---")
    parts = [header, labels[0], out if out else "[no output]", labels[1], err if err else "[no output]"]
    if stuck:
        parts.append("[output may be incomplete: a detached background process still holds the pipes]")
    return "\n".join(parts)
