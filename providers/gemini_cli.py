"""Gemini through the Gemini CLI (`gemini -p "" -o stream-json`) behind the `providers.base` seam.

- One adapter serves one MMA Desk session, so one CLI session id per session: the first call
  starts it (`--session-id`), later calls whose history continues what the CLI already has
  `--resume` it and send only the new user turn.  A session that does not keep history (the
  chat panel sends the discussion as context) or whose history was edited starts a new CLI
  session with the whole transcript.  `ai_client.reset_session()` makes a new Session, hence
  a new adapter and CLI session, for that session only.
- The system prompt goes in through `GEMINI_SYSTEM_MD` (a file in the private home, see
  `gemini_cli_setup.CliHome`); the model is always given with `-m`.
- Tools: the CLI's own tools are off (an allowlist with none of them).  When the request has
  tools, MMA Desk's tools are offered to the CLI as one MCP server, `gemini_cli_bridge`.  A
  call the model makes arrives here over the bridge's socket; `generate()` returns it as a
  `tool_use` response while the CLI process waits, `ai_client` asks the developer and runs
  it as for any provider, and the next `generate()` (whose last message is that tool result)
  hands the result back and reads on.  So the CLI never runs a write or a command unapproved.
- Streaming: assistant `message` deltas go to `on_chunk`.  Usage: the final `result` event's
  `stats.models` (what the server billed, per model), summed over its models, on the call
  that ends the CLI run (tool rounds before it report 0).
- Errors come from the `result` event (exit codes are unreliable): 429 -> RateLimitError,
  5xx -> ServerError, 401/403 -> AuthError, other 4xx -> BadRequestError, a stream cut short
  -> StreamInterruptedError; no `result` at all -> StreamInterruptedError / ServerError.
  The CLI's own retries are off (`maxAttempts: 1`); `providers.retry` retries.
- Cancel (`Session.cancel_event`, a `CancelSignal`) kills the CLI's process group at once.
"""
from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers import credentials, tool_schema
from providers.base import (
    AuthError,
    BadRequestError,
    CancelledByUser,
    ChatRequest,
    ChatResponse,
    ChunkCallback,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    ToolCall,
    Usage,
    check_cancel,
    interrupt_on_cancel,
)
from providers.gemini_cli_setup import PROVIDER, CliHome, find_cli

log = logging.getLogger(__name__)

BASE_URL_ENV = "GOOGLE_GEMINI_BASE_URL"
KEY_HINT = ("set GEMINI_API_KEY (or GOOGLE_API_KEY), or add [gemini] api_key to "
            "~/.config/mma-desk/credentials.toml")
BRIDGE_TOOL_TIMEOUT_MS = 3_600_000      # the CLI waits this long for one tool call (approval included)
EXIT_GRACE_S = 5.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class _BridgeCall:
    call_id: str
    name: str
    args: dict
    conn: socket.socket

    def answer(self, result: dict) -> None:
        try:
            self.conn.sendall((json.dumps(result) + "\n").encode("utf-8"))
        except OSError as exc:
            log.warning("the Gemini CLI's tool bridge went away before the result of %s: %s", self.name, exc)


@dataclass
class _Run:
    """One `gemini` process: its events (and tool calls from the bridge) arrive in `inbox`."""
    proc: subprocess.Popen
    inbox: queue.SimpleQueue
    stderr_path: Path
    listener: socket.socket | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    calls: int = 0
    # the cancel hook stays registered across tool rounds, until the run is closed
    cancel_hook: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        self.cancel_hook.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait(EXIT_GRACE_S)
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr_tail(self, size: int = 4000) -> str:
        try:
            data = self.stderr_path.read_bytes()[-size:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace")


@dataclass
class _Pending:
    """A CLI run suspended on a tool call that `ai_client` is now asking about and running."""
    run: _Run
    call: _BridgeCall
    text: list[str]


class _Suspended:
    """The run waiting for a tool result, kept apart from the adapter so a finalizer can end it."""

    def __init__(self) -> None:
        self.pending: _Pending | None = None

    def kill(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.run.kill()
            pending.run.close()


class GeminiCliAdapter:
    name = PROVIDER

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | None = 600.0, cli_path: str | os.PathLike | None = None):
        key = api_key or credentials.get_api_key("gemini")
        if not key:
            raise ProviderUnavailableError("no Gemini API key configured", provider=PROVIDER, hint=KEY_HINT)
        self._key = key
        self.base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        self.timeout = timeout or 600.0
        self._cli = Path(cli_path) if cli_path else None
        self._home: CliHome | None = None
        self.session_id = str(uuid.uuid4())
        self._seen: list[dict] = []              # the messages the CLI session holds
        self._suspended = _Suspended()
        self.last_pid: int | None = None         # the newest CLI process (its process group id too)
        self._lock = threading.Lock()            # one call at a time per session
        # a session dropped in the middle of a tool round must not leave its CLI waiting
        weakref.finalize(self, self._suspended.kill)

    @property
    def _pending(self) -> _Pending | None:
        return self._suspended.pending

    @_pending.setter
    def _pending(self, value: _Pending | None) -> None:
        self._suspended.pending = value

    # ------------------------------------------------------------------ public
    def generate(self, request: ChatRequest, on_chunk: ChunkCallback | None = None) -> ChatResponse:
        check_cancel(request)
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                last = request.messages[-1] if request.messages else {}
                if last.get("role") == "tool" and last.get("tool_call_id") == pending.call.call_id:
                    pending.call.answer(_bridge_result(last))
                    return self._read(pending.run, request, on_chunk, pending.text)
                log.warning("gemini-cli: the conversation moved on without the result of %s; ending that run",
                            pending.call.name)
                pending.run.kill()
                pending.run.close()
                self._new_session()
            run = self._start(request)
            return self._read(run, request, on_chunk, [])

    def close(self) -> None:
        with self._lock:
            self._suspended.kill()
        if self._home is not None:
            self._home.cleanup()

    # ------------------------------------------------------------------ starting a run
    def _new_session(self) -> None:
        self.session_id = str(uuid.uuid4())
        self._seen = []

    def _prompt(self, messages: list[dict]) -> tuple[str, bool]:
        """What to send on stdin, and whether to resume the CLI session."""
        seen = self._seen
        new = messages[len(seen):]
        if seen and messages[:len(seen)] == seen and new and all(m.get("role") == "user" for m in new):
            return "\n\n".join(self._user_text(m) for m in new), True
        if seen:
            log.info("gemini-cli: history differs from the CLI session's; starting a new CLI session")
        self._new_session()
        if len(messages) == 1 and messages[0].get("role") == "user":
            return self._user_text(messages[0]), False
        return _transcript(messages, self._user_text), False

    def _user_text(self, message: dict) -> str:
        """A user turn; its images are written into the CLI's working folder and referenced as
        `@attachments/<file>`, which the CLI reads and sends inline."""
        text = str(message.get("content", ""))
        images = message.get("images") or []
        if not images:
            return text
        assert self._home is not None
        folder = self._home.work / "attachments"
        folder.mkdir(exist_ok=True)
        refs = []
        for image in images:
            data = image["data"]
            raw = base64.b64decode(data) if isinstance(data, str) else bytes(data)
            suffix = _IMAGE_SUFFIX.get(str(image.get("mime_type")), ".bin")
            name = f"image-{uuid.uuid4().hex[:8]}{suffix}"
            (folder / name).write_bytes(raw)
            refs.append(f"@attachments/{name}")
        return f"{text}\n\nAttached: {' '.join(refs)}"

    def _start(self, request: ChatRequest) -> _Run:
        if self._cli is None:
            self._cli = find_cli()
        if self._home is None:
            self._home = CliHome()
        home = self._home
        prompt, resume = self._prompt(request.messages)
        home.write_system_prompt(request.system)
        tools = list(request.tools)
        listener = token = None
        if tools:
            token = secrets.token_hex(16)
            with contextlib.suppress(FileNotFoundError):
                home.socket_path.unlink()
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(home.socket_path))
            listener.listen(4)
        bridge = None if not tools else {
            "command": sys.executable, "args": ["-m", "providers.gemini_cli_bridge"], "cwd": _PACKAGE_ROOT,
            "env": {"MMA_BRIDGE_SOCKET": str(home.socket_path), "MMA_BRIDGE_TOKEN": token or "",
                    "PYTHONPATH": _PACKAGE_ROOT},
            "trust": True, "timeout": BRIDGE_TOOL_TIMEOUT_MS}
        home.write_settings(bridge, [t.name for t in tools])
        argv = [str(self._cli), "-p", "", "-m", request.model, "-o", "stream-json",
                *(["--resume", self.session_id] if resume else ["--session-id", self.session_id]),
                # with tools, the allowlist holds only the bridge's tools, and each of them asks
                # MMA Desk: the CLI may run them without its own prompt
                *(["--approval-mode", "yolo"] if tools else [])]
        stderr_path = home.tmp / f"stderr-{uuid.uuid4().hex[:8]}.log"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    cwd=home.work, env=home.environment(self._key, self.base_url),
                                    start_new_session=True)
        self.last_pid = proc.pid
        run = _Run(proc, queue.SimpleQueue(), stderr_path, listener)
        run.cancel_hook.enter_context(interrupt_on_cancel(request.cancel_event, lambda: self._cancel(run)))
        reader = threading.Thread(target=_read_stdout, args=(run,), name="gemini-cli-out", daemon=True)
        reader.start()
        run.threads.append(reader)
        if listener is not None:
            acceptor = threading.Thread(target=_accept, args=(run, listener, token, tools),
                                        name="gemini-cli-bridge", daemon=True)
            acceptor.start()
            run.threads.append(acceptor)
        assert proc.stdin is not None
        try:
            proc.stdin.write(prompt.encode("utf-8"))
            proc.stdin.close()
        except BrokenPipeError:
            log.warning("gemini-cli exited before reading its prompt")
        log.debug("gemini-cli %s session %s (%s, %d tools)", "resumed" if resume else "started",
                  self.session_id, request.model, len(tools))
        return run

    @staticmethod
    def _cancel(run: _Run) -> None:
        run.kill()
        run.inbox.put(("cancelled", None))

    # ------------------------------------------------------------------ reading a run
    def _read(self, run: _Run, request: ChatRequest, on_chunk: ChunkCallback | None,
              text: list[str]) -> ChatResponse:
        round_text: list[str] = []
        last_error = ""
        done = False
        try:
            while True:
                try:
                    kind, item = run.inbox.get(timeout=self.timeout)
                except queue.Empty:
                    run.kill()
                    raise ServerError(f"the Gemini CLI gave no output for {self.timeout:.0f} s",
                                      provider=PROVIDER) from None
                if kind == "cancelled" or (request.cancel_event is not None and request.cancel_event.is_set()):
                    run.kill()
                    raise CancelledByUser("cancelled by the user", provider=PROVIDER,
                                          partial_text="".join(text + round_text))
                if kind == "tool":
                    self._pending = _Pending(run, item, text + round_text)
                    done = True
                    return ChatResponse("".join(round_text), [ToolCall(item.call_id, item.name, item.args)],
                                        Usage(), "tool_use", request.model)
                if kind == "eof":
                    raise self._no_result(run, item, "".join(text + round_text), last_error)
                event = item
                etype = event.get("type")
                if etype == "message" and event.get("role") == "assistant":
                    piece = str(event.get("content") or "")
                    if piece:
                        round_text.append(piece)
                        if on_chunk is not None:
                            on_chunk(piece)
                elif etype == "error":
                    last_error = str(event.get("message") or "")
                    log.debug("gemini-cli %s: %s", event.get("severity"), self._clean(last_error))
                elif etype == "result":
                    return self._finish(run, request, event, "".join(round_text), "".join(text + round_text),
                                        last_error)
        finally:
            if not done:
                run.close()

    def _finish(self, run: _Run, request: ChatRequest, event: dict, round_text: str, full: str,
                last_error: str) -> ChatResponse:
        """The `result` event: the usage of the whole run, or the error it ended with."""
        if event.get("status") != "success":
            self._new_session()             # the CLI's copy of this session may hold half a turn
            raise self._error(event.get("error") or {}, last_error, run.stderr_tail(), full)
        stats = event.get("stats") or {}
        models = stats.get("models") or {}
        usage = Usage()
        for model, counts in models.items():
            usage = usage + Usage(int(counts.get("input_tokens") or 0), int(counts.get("output_tokens") or 0))
            if model != request.model:
                log.info("gemini-cli used %s besides %s: %s", model, request.model, counts)
        if not models:
            usage = Usage(int(stats.get("input_tokens") or 0), int(stats.get("output_tokens") or 0))
        # what the CLI session now holds, as ai_client will send it next time
        self._seen = [*request.messages, {"role": "assistant", "content": round_text}]
        return ChatResponse(round_text, usage=usage, stop_reason="end_turn", model=request.model)

    def _no_result(self, run: _Run, returncode: int | None, partial: str, last_error: str) -> ProviderError:
        self._new_session()
        tail = run.stderr_tail()
        if last_error or re.search(r"\bstatus:\s*\d{3}\b", tail):
            error = self._error({"message": last_error}, last_error, tail, partial)
            if not isinstance(error, (RateLimitError, AuthError, BadRequestError)) and partial:
                return StreamInterruptedError(f"the Gemini CLI ended without a result: {error}",
                                              provider=PROVIDER, partial_text=partial)
            return error
        detail = self._clean(tail.strip().splitlines()[-1] if tail.strip() else "no error output")[:300]
        if partial:
            return StreamInterruptedError(f"the Gemini CLI exited (code {returncode}) without a result: {detail}",
                                          provider=PROVIDER, partial_text=partial)
        return ServerError(f"the Gemini CLI exited (code {returncode}) without a result: {detail}",
                           provider=PROVIDER)

    # ------------------------------------------------------------------ errors
    def _clean(self, text: str) -> str:
        return credentials.redact(str(text), (self._key,))

    def _error(self, error: dict, last_error: str, stderr: str, partial: str) -> ProviderError:
        message = self._clean(str(error.get("message") or last_error or "the Gemini CLI reported an error"))
        status = None
        for pattern, source in ((r'"code"\s*:\s*(\d{3})', message), (r"\bstatus:\s*(\d{3})\b", stderr),
                                (r"\bcode:\s*(\d{3})\b", stderr)):
            match = re.search(pattern, source)
            if match:
                status = int(match.group(1))
                break
        lowered = message.lower()
        short = message[:600]
        if status == 429 or "resource_exhausted" in lowered or "exhausted" in lowered or "quota" in lowered:
            delay = re.search(r"retryDelayMs:\s*(\d+)", stderr)
            return RateLimitError(short, provider=PROVIDER, status=429,
                                  retry_after=int(delay.group(1)) / 1000 if delay else None,
                                  hint="rate limited or out of quota; retrying with backoff")
        if status in (401, 403) or "api key not valid" in lowered or "unauthenticated" in lowered:
            return AuthError(short, provider=PROVIDER, status=status, hint=KEY_HINT)
        if status is not None and (status >= 500 or status == 408):
            return ServerError(short, provider=PROVIDER, status=status)
        if status is not None and 400 <= status < 500:
            return BadRequestError(short, provider=PROVIDER, status=status,
                                   hint="check the model name and request" if status == 404 else "")
        if "without a finish reason" in lowered or "invalid stream" in lowered or "stream" in lowered:
            return StreamInterruptedError(f"the Gemini stream was cut short: {short}", provider=PROVIDER,
                                          partial_text=partial)
        return ProviderError(f"Gemini CLI: {short}", provider=PROVIDER)


# ---------------------------------------------------------------------- helpers (threads)

def _read_stdout(run: _Run) -> None:
    """The CLI's stdout, one JSON event per line, into the run's inbox; then ("eof", code)."""
    assert run.proc.stdout is not None
    for raw in run.proc.stdout:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            log.debug("gemini-cli: not JSON: %s", line[:200])
            continue
        if isinstance(event, dict):
            run.inbox.put(("event", event))
    run.inbox.put(("eof", run.proc.wait()))


def _accept(run: _Run, listener: socket.socket, token: str | None, tools: list) -> None:
    """The bridge's connections: `list` is answered here, `call` goes to the inbox."""
    specs = [{"name": t.name, "description": t.description, "parameters": tool_schema.for_gemini(t.parameters)}
             for t in tools]
    while True:
        try:
            conn, _addr = listener.accept()
        except OSError:
            return                       # the listener was closed: the run is over
        handler = threading.Thread(target=_serve_bridge, args=(run, conn, token, specs),
                                   name="gemini-cli-bridge-conn", daemon=True)
        handler.start()


def _serve_bridge(run: _Run, conn: socket.socket, token: str | None, specs: list[dict]) -> None:
    with conn, conn.makefile("r", encoding="utf-8") as reader:
        hello = _message(reader.readline())
        if hello.get("op") != "hello" or not token or not secrets.compare_digest(str(hello.get("token")), token):
            log.warning("gemini-cli bridge: a connection without the right token was refused")
            return
        for line in reader:
            message = _message(line)
            if message.get("op") == "list":
                conn.sendall((json.dumps({"tools": specs}) + "\n").encode("utf-8"))
            elif message.get("op") == "call":
                run.calls += 1
                raw_args = message.get("args")
                args = raw_args if isinstance(raw_args, dict) else {}
                call = _BridgeCall(f"cli_call_{run.calls}_{uuid.uuid4().hex[:6]}", str(message.get("name")),
                                   args, conn)
                run.inbox.put(("tool", call))


def _message(line: str) -> dict:
    try:
        value = json.loads(line) if line else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _bridge_result(message: dict) -> dict:
    return {"text": str(message.get("content", "")), "is_error": bool(message.get("is_error")),
            "images": [{"mime_type": i["mime_type"], "data": i["data"] if isinstance(i["data"], str) else
                        base64.b64encode(i["data"]).decode("ascii")}
                       for i in message.get("images") or []]}


_IMAGE_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


def _transcript(messages: list[dict], user_text: Any) -> str:
    """A conversation the CLI session has not seen, as one prompt (the last user turn last)."""
    lines = ["This conversation so far (continue it):", ""]
    for m in messages:
        role = m.get("role")
        if role == "user":
            lines.append(f"[user]\n{user_text(m)}")
        elif role == "assistant":
            calls = "".join(f"\n(called {c['name']} with {json.dumps(c.get('args', {}))})"
                            for c in m.get("tool_calls") or [])
            lines.append(f"[assistant]\n{m.get('content', '')}{calls}")
        elif role == "tool":
            lines.append(f"[result of {m.get('name')}]\n{m.get('content', '')}")
        lines.append("")
    return "\n".join(lines)
