"""MCP servers as tools: `McpHub` runs a project's servers and calls their tools.

The official `mcp` SDK is async, MMA Desk's model calls are threads.  So the hub owns
one asyncio loop in its own thread ("mcp-hub"); each server is one task on it that
enters the SDK's `Client` (stdio: the server runs as a child process; or streamable
HTTP), lists its tools and then waits until it is told to stop.  A worker thread
calls a tool with `call()`, which hands the coroutine to the loop with
`run_coroutine_threadsafe` and waits on the future (bounded by the server's time
limit).  Nothing polls.

Names: a server's tool `get_current_time` is offered to the models as
`<server>__get_current_time` (cut to 64 characters, only letters, digits, `_`, `-`),
so it can never shadow a built-in tool (built-in names have no `__`).

Approval: a tool runs unasked when its server marks it read-only (`readOnlyHint`) or
the project marks the server `trusted`; every other call asks like a write does.

Failures become tool results the model reads (`is_error`), never exceptions that end
the run: a server that does not start is `failed` with its error (and the tail of its
stderr, kept in `<project>/.mma_desk/logs/mcp-<name>.log`); a call that takes longer
than the server's `timeout_s` is a time-out error; a reply that is not a tool result
is a protocol error; a server that dies mid-call is `failed` ("crashed"), and
`restart(name)` starts it again.  `close()` stops every server (stdin closed, then
SIGTERM/SIGKILL by the SDK, each step bounded) and the loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from providers.base import ToolResult, interrupt_on_cancel
from tools.mcp_config import McpServerConfig

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0        # handshake + tools/list of one server
STOP_TIMEOUT_S = 10.0         # all servers together, at close()
CALL_MARGIN_S = 5.0           # the waiting thread allows this much beyond the server's own limit
MAX_TOOL_NAME = 64            # Gemini's limit for function names (Anthropic allows 128)
STDERR_TAIL_BYTES = 600
LOG_DIR = ".mma_desk/logs"

DISABLED, STARTING, RUNNING, FAILED, STOPPED = "disabled", "starting", "running", "failed", "stopped"


@dataclass(frozen=True)
class McpTool:
    """One tool of one server, as the models see it (`qualified`) and as the server knows it (`name`)."""
    server: str
    name: str
    qualified: str
    description: str
    input_schema: dict
    read_only: bool
    trusted: bool

    @property
    def needs_approval(self) -> bool:
        return not (self.read_only or self.trusted)

    @property
    def policy(self) -> str:
        if self.trusted:
            return "runs unasked (trusted server)"
        if self.read_only:
            return "runs unasked (readOnlyHint)"
        return "asks"


@dataclass(frozen=True)
class ServerStatus:
    name: str
    state: str                    # disabled | starting | running | failed | stopped
    error: str = ""               # the last error (also while running: a call that timed out)
    tools: tuple[McpTool, ...] = ()
    transport: str = "stdio"
    launch: str = ""
    trusted: bool = False
    enabled: bool = True
    since: float = field(default_factory=time.time)


def qualified_name(server: str, tool: str, taken: Iterable[str] = ()) -> str:
    """`<server>__<tool>` with only the characters every provider accepts, unique among `taken`."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", f"{server}__{tool}")[:MAX_TOOL_NAME]
    taken = set(taken)
    name, n = base, 2
    while name in taken:
        suffix = f"_{n}"
        name, n = base[:MAX_TOOL_NAME - len(suffix)] + suffix, n + 1
    return name


def result_from_mcp(server: str, tool: str, result: Any) -> ToolResult:
    """An MCP `CallToolResult` as a provider-neutral `ToolResult`."""
    texts: list[str] = []
    images: list[dict] = []
    for block in result.content or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(block.text)
        elif kind == "image":
            images.append({"mime_type": block.mime_type, "data": block.data})
        elif kind == "audio":
            texts.append(f"[audio result ({block.mime_type}) not passed to the model]")
        elif kind == "resource":
            res = block.resource
            text = getattr(res, "text", None)
            texts.append(text if text is not None
                         else f"[binary resource {res.uri} ({getattr(res, 'mime_type', '') or 'no type'})]")
        elif kind == "resource_link":
            texts.append(f"[resource {block.uri}" + (f": {block.description}]" if block.description else "]"))
        else:
            texts.append(f"[{kind or 'unknown'} content block not passed to the model]")
    structured = result.structured_content if isinstance(result.structured_content, dict) else None
    text = "\n".join(texts)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, indent=1)
    if not text and images:
        text = f"[{len(images)} image(s)]"
    if result.is_error:
        text = f"ERROR: {server}__{tool} failed: {text or 'no details'}"
    return ToolResult(text, bool(result.is_error), images, structured)


def _error_text(exc: BaseException) -> str:
    """One line for an exception, looking inside exception groups (anyio task groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    if getattr(exc, "code", None) == -32000 and "closed" in text.lower():   # mcp_types.CONNECTION_CLOSED
        return "the server closed the connection (it exited, or closed its stdout)"
    if isinstance(exc, FileNotFoundError):
        text = f"program not found: {exc.filename or text}"
    return f"{type(exc).__name__}: {text}"[:500]


class _Conn:
    """One server's task and what it found (touched only on the hub's loop thread)."""

    def __init__(self, config: McpServerConfig):
        self.config = config
        self.client: Any = None
        self.task: asyncio.Task | None = None
        self.stop = asyncio.Event()
        self.started: asyncio.Future = asyncio.get_running_loop().create_future()
        self.log_path: Path | None = None
        self.log_offset = 0
        self.failed = False


class McpHub:
    """The MCP servers of one project.  Thread-safe; every method may be called from any thread
    except the hub's own loop thread."""

    def __init__(self, root: str | Path, *, log_dir: str | Path | None = None,
                 start_timeout: float = START_TIMEOUT_S, register: bool = True):
        self.root = Path(root).resolve()
        self.log_dir = Path(log_dir) if log_dir is not None else self.root / LOG_DIR
        self.start_timeout = start_timeout
        self._register = register
        self._lock = threading.Lock()
        self._statuses: dict[str, ServerStatus] = {}
        self._configs: list[McpServerConfig] = []
        self._conns: dict[str, _Conn] = {}              # loop thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---------------------------------------------------------------- lifecycle
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the MCP hub is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="mcp-hub", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
                if self._register:
                    from tools import toolbox
                    toolbox.register_hub(self.root, self)
            return self._loop

    def _submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    def apply(self, servers: Iterable[McpServerConfig]) -> concurrent.futures.Future:
        """Make the running servers match `servers`: start new and changed ones, stop removed
        and disabled ones.  The future resolves (to the statuses) once each has started or failed."""
        configs = list(servers)
        with self._lock:
            self._configs = configs
            for cfg in configs:
                if not cfg.enabled:
                    self._statuses[cfg.name] = self._status_of(cfg, DISABLED)
            for name in [n for n in self._statuses if n not in {c.name for c in configs}]:
                del self._statuses[name]
        return self._submit(self._apply(configs))

    def restart(self, name: str) -> concurrent.futures.Future:
        """Stop and start one server (after a crash, or to pick up a changed program)."""
        with self._lock:
            config = next((c for c in self._configs if c.name == name), None)
        if config is None:
            raise KeyError(f"no MCP server named {name!r}")
        if not config.enabled:
            raise ValueError(f"MCP server {name!r} is disabled; enable it first")
        return self._submit(self._restart(config))

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every server and the loop thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if self._register:
            from tools import toolbox
            toolbox.unregister_hub(self.root, self)
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop_all(), loop).result(timeout)
        except concurrent.futures.TimeoutError:
            log.warning("MCP servers of %s did not stop within %.0f s", self.root, timeout)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            loop.close()
        log.info("MCP hub of %s closed", self.root)

    # ---------------------------------------------------------------- what the app reads
    def statuses(self) -> list[ServerStatus]:
        with self._lock:
            order = [c.name for c in self._configs]
            return [self._statuses[n] for n in order if n in self._statuses]

    def status(self, name: str) -> ServerStatus | None:
        with self._lock:
            return self._statuses.get(name)

    def tools(self) -> list[McpTool]:
        return [tool for status in self.statuses() if status.state == RUNNING for tool in status.tools]

    def tool(self, qualified: str) -> McpTool | None:
        return next((t for t in self.tools() if t.qualified == qualified), None)

    def knows(self, qualified: str) -> bool:
        """Whether `qualified` is (or was) one of this hub's tool names, running or not."""
        if "__" not in qualified:
            return False
        with self._lock:
            servers = [c.name for c in self._configs]
        return any(qualified.startswith(re.sub(r"[^A-Za-z0-9_-]", "_", s) + "__") for s in servers)

    # ---------------------------------------------------------------- calling a tool
    def call(self, qualified: str, args: dict | None, cancel: threading.Event | None = None) -> ToolResult:
        """Run one tool call (blocking; from a worker thread).  Every failure is an error result.
        `cancel` (the session's abort, a `CancelSignal`) stops the wait and the call at once."""
        tool = self.tool(qualified)
        if tool is None:
            server = qualified.split("__", 1)[0]
            status = self.status(server)
            state = f"{status.state}: {status.error}" if status is not None and status.error else (
                status.state if status is not None else "not configured")
            return ToolResult(f"ERROR: the MCP tool {qualified} is not available (server {server!r} is "
                              f"{state}); the developer can restart the server in the MCP Servers window",
                              is_error=True)
        with self._lock:
            config = next(c for c in self._configs if c.name == tool.server)
        future = self._submit(self._call(tool, dict(args or {})))
        try:
            with interrupt_on_cancel(cancel, future.cancel):
                return future.result(config.timeout_s + CALL_MARGIN_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return ToolResult(f"ERROR: MCP server {tool.server!r} did not answer {tool.name} within "
                              f"{config.timeout_s:.0f} s", is_error=True)
        except concurrent.futures.CancelledError:
            return ToolResult(f"ERROR: {tool.qualified} was cancelled (the run was aborted)", is_error=True)

    async def _call(self, tool: McpTool, args: dict) -> ToolResult:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
        from pydantic import ValidationError
        conn = self._conns.get(tool.server)
        if conn is None or conn.client is None:
            return ToolResult(f"ERROR: MCP server {tool.server!r} is not running", is_error=True)
        limit = conn.config.timeout_s
        where = f"MCP server {tool.server!r}"
        try:
            async with asyncio.timeout(limit):
                result = await conn.client.call_tool(tool.name, args, read_timeout_seconds=limit)
        except (TimeoutError, MCPError) as exc:
            code = exc.code if isinstance(exc, MCPError) else REQUEST_TIMEOUT
            if code == REQUEST_TIMEOUT:
                text = f"{where} did not answer {tool.name} within {limit:.0f} s (time limit)"
                self._set_error(conn, text)
            elif code == CONNECTION_CLOSED:
                text = f"{where} crashed during {tool.name} (connection closed){self._stderr_tail(conn)}"
                self._fail(conn, text)
            else:
                text = f"{where} refused {tool.name}: {exc.error.message if isinstance(exc, MCPError) else exc}"
            log.warning("%s", text)
            return ToolResult(f"ERROR: {text}", is_error=True)
        except ValidationError as exc:
            text = f"{where} answered {tool.name} with something that is not a tool result " \
                   f"({exc.error_count()} problem(s): {exc.errors()[0]['msg']})"
            log.warning("%s", text)
            self._set_error(conn, text)
            return ToolResult(f"ERROR: {text}", is_error=True)
        except Exception as exc:   # a broken pipe or an SDK failure: the tool failed, the app goes on
            text = f"{where} failed during {tool.name}: {_error_text(exc)}"
            log.warning("%s", text, exc_info=True)
            self._fail(conn, text)
            return ToolResult(f"ERROR: {text}", is_error=True)
        return result_from_mcp(tool.server, tool.name, result)

    # ---------------------------------------------------------------- on the loop
    async def _apply(self, configs: list[McpServerConfig]) -> list[ServerStatus]:
        wanted = {c.name: c for c in configs if c.enabled}
        for name in [n for n, conn in self._conns.items() if wanted.get(n) != conn.config]:
            await self._stop(name)
        for name, config in wanted.items():
            if name not in self._conns:
                self._start(config)
        await asyncio.gather(*(conn.started for conn in self._conns.values()))
        return self.statuses()

    async def _restart(self, config: McpServerConfig) -> ServerStatus | None:
        await self._stop(config.name)
        conn = self._start(config)
        await conn.started
        return self.status(config.name)

    def _start(self, config: McpServerConfig) -> _Conn:
        conn = _Conn(config)
        self._conns[config.name] = conn
        self._publish(conn, STARTING)
        conn.task = asyncio.get_running_loop().create_task(self._serve(conn), name=f"mcp-{config.name}")
        return conn

    async def _stop(self, name: str) -> None:
        conn = self._conns.pop(name, None)
        if conn is None or conn.task is None:
            return
        conn.stop.set()
        await asyncio.gather(conn.task, return_exceptions=True)

    async def _stop_all(self) -> None:
        await asyncio.gather(*(self._stop(name) for name in list(self._conns)))

    async def _serve(self, conn: _Conn) -> None:
        from mcp import Client
        from mcp_types import Implementation
        config = conn.config
        failed = False
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = self._transport(conn, stack)
                client = Client(transport, read_timeout_seconds=config.timeout_s,
                                client_info=Implementation(name="mma-desk", version="0.1.0"))
                try:
                    async with asyncio.timeout(self.start_timeout):
                        await stack.enter_async_context(client)
                        tools = await self._list_tools(conn, client)
                except TimeoutError:
                    raise TimeoutError(f"no answer to the handshake within {self.start_timeout:.0f} s") from None
                conn.client = client
                self._publish(conn, RUNNING, tools=tools)
                log.info("MCP server %s running: %d tool(s)", config.name, len(tools))
                conn.started.set_result(None)
                await conn.stop.wait()
                conn.client = None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:   # ExceptionGroups from the SDK's task groups included
            failed = True
            stderr = self._stderr_tail(conn)
            text = f"{_error_text(exc)}{stderr}"
            if conn.started.done():
                text = f"stopped unexpectedly: {text}"
            log.warning("MCP server %s: %s", config.name, text)
            self._publish(conn, FAILED, error=text)
        finally:
            conn.client = None
            if not conn.started.done():
                conn.started.set_result(None)
            if not failed and not conn.failed and self._current(conn):
                self._publish(conn, STOPPED)

    def _transport(self, conn: _Conn, stack: contextlib.AsyncExitStack) -> Any:
        config = conn.config
        if config.url:
            from mcp.client.streamable_http import streamable_http_client
            return streamable_http_client(config.url)
        from mcp.client.stdio import StdioServerParameters, stdio_client
        self.log_dir.mkdir(parents=True, exist_ok=True)
        conn.log_path = self.log_dir / f"mcp-{config.name}.log"
        errlog: TextIO = stack.enter_context(open(conn.log_path, "a", encoding="utf-8"))
        errlog.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {config.launch_line()}\n")
        errlog.flush()
        conn.log_offset = conn.log_path.stat().st_size
        params = StdioServerParameters(command=config.command, args=list(config.args), env=dict(config.env),
                                       cwd=str(config.working_dir(self.root)))
        return stdio_client(params, errlog=errlog)

    async def _list_tools(self, conn: _Conn, client: Any) -> tuple[McpTool, ...]:
        config = conn.config
        found: list[McpTool] = []
        cursor: str | None = None
        for _page in range(100):      # a server that pages forever cannot hang the start
            listing = await client.list_tools(cursor=cursor)
            for tool in listing.tools:
                annotations = tool.annotations
                read_only = bool(annotations is not None and annotations.read_only_hint)
                schema = tool.input_schema if isinstance(tool.input_schema, dict) else {"type": "object"}
                found.append(McpTool(config.name, tool.name,
                                     qualified_name(config.name, tool.name, (t.qualified for t in found)),
                                     tool.description or tool.title or tool.name, schema, read_only,
                                     config.trusted))
            cursor = listing.next_cursor
            if not cursor:
                break
        return tuple(found)

    def _stderr_tail(self, conn: _Conn) -> str:
        if conn.log_path is None:
            return ""
        try:
            with open(conn.log_path, "rb") as fh:
                fh.seek(conn.log_offset)
                tail = fh.read()[-STDERR_TAIL_BYTES:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f" (stderr: {tail})" if tail else ""

    # ---------------------------------------------------------------- status bookkeeping
    def _current(self, conn: _Conn) -> bool:
        return self._conns.get(conn.config.name) is conn or conn.config.name not in self._conns

    def _status_of(self, config: McpServerConfig, state: str, error: str = "",
                   tools: tuple[McpTool, ...] = ()) -> ServerStatus:
        return ServerStatus(config.name, state, error, tools, config.transport, config.launch_line(),
                            config.trusted, config.enabled)

    def _publish(self, conn: _Conn, state: str, *, error: str = "", tools: tuple[McpTool, ...] = ()) -> None:
        if not self._current(conn):
            return
        with self._lock:
            config = next((c for c in self._configs if c.name == conn.config.name), None)
            if config is not None:
                if not config.enabled:
                    state, error, tools = DISABLED, "", ()
                self._statuses[conn.config.name] = self._status_of(config, state, error, tools)

    def _set_error(self, conn: _Conn, error: str) -> None:
        with self._lock:
            status = self._statuses.get(conn.config.name)
            if status is not None:
                self._statuses[conn.config.name] = ServerStatus(
                    status.name, status.state, error, status.tools, status.transport, status.launch,
                    status.trusted, status.enabled)

    def _fail(self, conn: _Conn, error: str) -> None:
        """The server is gone: show it as failed and let its task end (its tools disappear)."""
        conn.failed = True
        self._publish(conn, FAILED, error=error)
        conn.stop.set()
