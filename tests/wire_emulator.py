"""A loopback HTTP server speaking the Gemini and Anthropic wire formats.

Tests point the *real* SDKs at it (through the adapters' `base_url`) to exercise
plain and streamed replies, tool calls, usage accounting and failures (429, 5xx,
truncated streams, slow streams, malformed bodies, auth errors) without a network.

    with WireEmulator() as emu:
        emu.script("gemini", Reply(text="hello", usage=(10, 2)))
        adapter = GeminiAdapter(api_key="k", base_url=emu.base_url)
        ...
        emu.requests[-1].model, emu.billed["gemini-x"]

Endpoints:
  Gemini     POST /v1/models/{model}:generateContent
             POST /v1/models/{model}:streamGenerateContent?alt=sse   (also /v1beta/, /v1alpha/)
             POST /v1/models/{model}:countTokens -> {"totalTokens": prompt chars / 4} (not billed)
             POST /v1beta/cachedContents, GET (list), GET/PATCH/DELETE /v1beta/cachedContents/{id}
  Anthropic  POST /v1/messages   (SSE when the body has "stream": true)

Prompt caching (`tests/wire_cache.py`, `emu.caches`): Anthropic `cache_control` breakpoints give
`cache_creation_input_tokens` / `cache_read_input_tokens` for the prefix up to each breakpoint
seen within the TTL; Gemini reports `cachedContentTokenCount` for implicit hits and for requests
naming an explicit cached content.  The bill (`billed`) splits each model's input into
`cache_read_tokens` / `cache_write_tokens` and adds `storage_token_s` of explicit caches (keys
only present when not zero).  `first_byte_delay` holds every reply back that long after its
cache lookup (a model's time to first byte), so requests sent together all miss.

Which reply is sent, first match wins:
  1. the next scripted reply for the provider (`script(provider, reply)`; provider None = any),
  2. `responder(provider, model, body)` if set and it returns a Reply (None falls through),
  3. a Gemini request that asks for JSON (`generationConfig.responseMimeType: application/json`
     with `responseJsonSchema` / `responseSchema`) gets a JSON object that fits the schema
     (`json_for_schema`: each required property with the simplest value of its type),
  4. `default_reply(...)`: deterministic replies that let the MMA pipeline run — the first
     "Tier N" mentioned in the system prompt picks Tier 1 (one track, JSON list), Tier 2
     (a four-ticket DAG with two parallel tickets, JSON list), Tier 4 (a short diagnosis);
     anything else is answered as Tier 3 with text quoting the last user message's first line.

Faults (`inject(kind, count=1, match=None)` queue first, then the probabilistic `FaultPlan`):
  "429" (with Retry-After), "500", "503", "529", "401", "403", "400", "404" -> provider-shaped
  error bodies; "truncate" -> an SSE stream cut mid-way without its final marker (a JSON reply
  is cut short of its Content-Length); "stream_error" -> part of an SSE stream, then the
  provider's in-stream error event (Gemini `{"error":...}` chunk, Anthropic `event: error`
  overloaded_error); "slow" -> delay between chunks; "malformed" -> a 200 with an invalid
  JSON body / SSE event; "hang" -> no byte at all (not even the status line) until the client
  closes the connection, the emulator stops or `delay` seconds pass (default `HANG_S`); the
  request's `disconnected` then says whether the client went away (an abort that reached the
  socket) and nothing is billed.

Only ever binds 127.0.0.1.  Run as a process for subprocess tests:
    python -m tests.wire_emulator --port 0      # prints "WIRE_EMULATOR http://127.0.0.1:<port>"
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from tests.wire_cache import CacheRequestError, PromptCaches

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
GEMINI = "gemini"
ANTHROPIC = "anthropic"

_GEMINI_PATH = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$")
_ANTHROPIC_PATH = re.compile(r"^/v1/messages$")
_CACHES_PATH = re.compile(r"^/v1(?:beta|alpha)?/cachedContents(?:/([^/:?]+))?$")
_AUTH_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "proxy-authorization"}

ERROR_KINDS = {"400", "401", "403", "404", "429", "500", "502", "503", "529"}
FAULT_KINDS = ERROR_KINDS | {"truncate", "stream_error", "slow", "malformed", "hang"}
HANG_S = 60.0                  # how long a "hang" fault holds the first byte back by default

_GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                  404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                  502: "UNAVAILABLE", 503: "UNAVAILABLE", 529: "UNAVAILABLE"}
_ANTHROPIC_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 429: "rate_limit_error", 500: "api_error",
                   502: "api_error", 503: "api_error", 529: "overloaded_error"}
_GEMINI_FINISH = {"end_turn": "STOP", "tool_use": "STOP", "max_tokens": "MAX_TOKENS"}


# --------------------------------------------------------------------------- data

@dataclass
class Reply:
    """What the emulated model answers.

    `chunks`: the streamed text pieces (must concatenate to `text`; auto-split when None).
    `tool_calls`: [{"name": str, "args": dict, "id"?: str, "thought_signature"?: base64 str}]
                  (Gemini sends "id" / "thoughtSignature" only if given).
    `usage`: (input_tokens, output_tokens); None = computed (prompt chars / 4, reply chars / 4).
    `stop_reason`: neutral override ("end_turn" / "tool_use" / "max_tokens" / provider value).
    """
    text: str = ""
    chunks: list[str] | None = None
    tool_calls: list[dict] = field(default_factory=list)
    usage: tuple[int, int] | None = None
    stop_reason: str | None = None

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            if "".join(self.chunks) != self.text and self.text:
                raise ValueError("Reply.chunks must concatenate to Reply.text")
            return [c for c in self.chunks if c]
        return split_text(self.text)


class Billed(NamedTuple):
    """One reply's tokens: the prompt's (all of them), the reply's, and of the prompt the part
    read from and written to a prompt cache."""
    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0


@dataclass
class RecordedRequest:
    provider: str
    path: str                  # including the query string
    model: str
    body: Any                  # parsed JSON (or the raw text if it did not parse)
    headers: dict[str, str]    # auth headers replaced by "[REDACTED]"
    stream: bool
    fault: str | None = None   # the fault applied to this request, if any
    auth_present: bool = False
    disconnected: bool = False  # a "hang": the client closed the connection while waiting


@dataclass
class FaultPlan:
    """Probabilistic faults, rolled once per request with a seeded RNG (reproducible)."""
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_truncate: float = 0.0
    rate_slow: float = 0.0
    rate_malformed: float = 0.0
    seed: int = 0
    retry_after: str = "0"
    slow_delay: float = 0.05

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def roll(self) -> str | None:
        x = self._rng.random()
        for kind, rate in (("429", self.rate_429), ("500", self.rate_500),
                           ("truncate", self.rate_truncate), ("slow", self.rate_slow),
                           ("malformed", self.rate_malformed)):
            if x < rate:
                return kind
            x -= rate
        return None


@dataclass
class _Injected:
    kind: str
    remaining: int
    match: Any
    provider: str | None
    retry_after: str
    delay: float


@dataclass
class PromptView:
    """A provider-neutral view of a request body, for responders."""
    system: str = ""
    user_texts: list[str] = field(default_factory=list)
    tool_results: list[dict] = field(default_factory=list)   # {"name"/"id", "content"}
    tool_names: list[str] = field(default_factory=list)
    last_is_tool_result: bool = False
    text_chars: int = 0

    @property
    def last_user_text(self) -> str:
        return self.user_texts[-1] if self.user_texts else ""


def split_text(text: str, target: int = 12) -> list[str]:
    """Split `text` into pieces of roughly `target` chars at spaces; they concatenate to `text`."""
    if not text:
        return []
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + target)
        if end < len(text):
            space = text.find(" ", end)
            end = len(text) if space == -1 else space + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        if "text" in value and isinstance(value["text"], str):
            return value["text"]
        if "content" in value:
            return _text_of(value["content"])
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def parse_prompt(provider: str, body: Any) -> PromptView:
    view = PromptView()
    if not isinstance(body, dict):
        return view
    chars = 0
    if provider == GEMINI:
        sys_inst = body.get("systemInstruction") or body.get("system_instruction") or {}
        view.system = "".join(p.get("text", "") for p in sys_inst.get("parts", []) if isinstance(p, dict)) \
            if isinstance(sys_inst, dict) else _text_of(sys_inst)
        for content in body.get("contents") or []:
            role = content.get("role", "user")
            last_kind = None
            texts = []
            for part in content.get("parts") or []:
                if "text" in part:
                    chars += len(part["text"])
                    if not part["text"].startswith("<session_context>"):   # the Gemini CLI's preamble
                        texts.append(part["text"])
                    last_kind = "text"
                elif "functionResponse" in part:
                    fr = part["functionResponse"]
                    resp = json.dumps(fr.get("response", {}), sort_keys=True)
                    chars += len(resp)
                    view.tool_results.append({"name": fr.get("name"), "id": fr.get("id"), "content": resp})
                    last_kind = "tool"
                elif "functionCall" in part:
                    chars += len(json.dumps(part["functionCall"]))
            if role == "user":
                if texts:
                    view.user_texts.append("".join(texts))
                view.last_is_tool_result = last_kind == "tool"
            else:
                view.last_is_tool_result = False
        for tool in body.get("tools") or []:
            for decl in tool.get("functionDeclarations") or []:
                view.tool_names.append(decl.get("name", ""))
    else:
        system = body.get("system", "")
        view.system = _text_of(system)
        for message in body.get("messages") or []:
            role = message.get("role")
            content = message.get("content")
            last_kind = None
            texts = []
            if isinstance(content, str):
                texts.append(content)
                chars += len(content)
                last_kind = "text"
            else:
                for block in content or []:
                    btype = block.get("type")
                    if btype == "text":
                        texts.append(block.get("text", ""))
                        chars += len(block.get("text", ""))
                        last_kind = "text"
                    elif btype == "tool_result":
                        text = _text_of(block.get("content", ""))
                        chars += len(text)
                        view.tool_results.append({"id": block.get("tool_use_id"), "content": text})
                        last_kind = "tool"
                    elif btype == "tool_use":
                        chars += len(json.dumps(block.get("input", {})))
            if role == "user":
                if texts:
                    view.user_texts.append("".join(texts))
                view.last_is_tool_result = last_kind == "tool"
            else:
                view.last_is_tool_result = False
        for tool in body.get("tools") or []:
            view.tool_names.append(tool.get("name", ""))
    view.text_chars = chars + len(view.system)
    return view


def _first_line(text: str, limit: int = 120) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return text.strip()[:limit]


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug[:limit].rstrip("_") or "track"


def json_for_schema(schema: Any, depth: int = 0) -> Any:
    """The simplest value that fits a (Gemini-style) schema: enums take their first value,
    objects get their required properties (all of them when none is marked required)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return json_for_schema(schema[key][0], depth + 1)
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    kind = str(kind or ("object" if "properties" in schema else "string")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        wanted = schema.get("required") or list(props)
        return {name: json_for_schema(props.get(name, {}), depth + 1) for name in wanted}
    if kind == "array":
        return []
    return {"string": "", "integer": 0, "number": 0, "boolean": False}.get(kind)


def json_schema_of(body: Any) -> dict | None:
    """The schema of a Gemini request that asks for a JSON reply, else None."""
    config = body.get("generationConfig") if isinstance(body, dict) else None
    if not isinstance(config, dict) or config.get("responseMimeType") != "application/json":
        return None
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    return schema if isinstance(schema, dict) else {"type": "object"}


def default_reply(provider: str, model: str, body: Any) -> Reply:
    """Deterministic replies that make the MMA pipeline work end to end."""
    view = parse_prompt(provider, body)
    # "You are Tier N" names the tier even when a curated context mentioning tiers comes first
    tier_match = re.search(r"You are Tier\s*([1-4])", view.system) or re.search(r"Tier\s*([1-4])", view.system)
    tier = tier_match.group(1) if tier_match else "3"
    goal = _first_line(view.last_user_text) or "the task"
    if tier == "1":
        track = {"id": f"track_{_slug(goal, 30)}", "title": goal[:60],
                 "description": f"Implement: {goal}"}
        return Reply(text=json.dumps([track], indent=2))
    if tier == "2":
        tickets = [
            {"id": "T1", "description": f"Lay the groundwork for: {goal}", "depends_on": []},
            {"id": "T2", "description": "Implement the core logic", "depends_on": ["T1"]},
            {"id": "T3", "description": "Write the tests", "depends_on": ["T1"]},
            {"id": "T4", "description": "Integrate and document", "depends_on": ["T2", "T3"]},
        ]
        return Reply(text=json.dumps(tickets, indent=2))
    if tier == "4":
        return Reply(text=f"Diagnosis: the failure in '{goal}' comes from an unhandled edge case. "
                          "Suggested fix: validate the input before use and add a regression test.")
    if view.last_is_tool_result and view.tool_results:
        result = _first_line(view.tool_results[-1].get("content", ""), 80)
        return Reply(text=f"Tool result received ({result}). Work on '{goal}' is complete.")
    return Reply(text=f"Working on: {goal}\nDone. The change is implemented and verified.")


def _tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


# --------------------------------------------------------------------------- server

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: WireEmulator

    def __init__(self, addr, handler):
        super().__init__(addr, handler)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("closing emulator connection: %s", exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
        log.debug("wire emulator: " + fmt, *args)

    responded = False

    def do_POST(self) -> None:
        self.responded = False
        try:
            self.server.emulator._handle(self)
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.debug("wire emulator: client went away: %s", exc)
            self.close_connection = True
        except Exception as exc:  # a scripted responder or emulator bug: report it, keep serving
            log.exception("wire emulator: failed to handle %s", self.path)
            self.close_connection = True
            if not self.responded:
                self._send_json(500, {"error": {"code": 500, "status": "INTERNAL", "type": "api_error",
                                                "message": f"wire emulator failure: {type(exc).__name__}: {exc}"}})

    def do_GET(self) -> None:
        self._resource("GET")

    def do_DELETE(self) -> None:
        self._resource("DELETE")

    def do_PATCH(self) -> None:
        self._resource("PATCH")

    def _resource(self, method: str) -> None:
        try:
            if not self.server.emulator._cache_resource(self, method):
                self._send_json(404, {"error": {"code": 404, "message": f"no route for {method} {self.path}",
                                                "status": "NOT_FOUND"}})
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.debug("wire emulator: client went away: %s", exc)
            self.close_connection = True

    # -- helpers used by WireEmulator
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._send_bytes(status, data, "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, ctype: str,
                    headers: dict[str, str] | None = None, cut: int | None = None) -> None:
        self.responded = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if cut is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data if cut is None else data[:cut])
        self.wfile.flush()

    def _start_sse(self) -> None:
        self.responded = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.flush()

    def _sse(self, data: Any, event: str | None = None) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
        self.wfile.write(frame.encode())
        self.wfile.flush()


class WireEmulator:
    def __init__(self, *, port: int = 0, fault_plan: FaultPlan | None = None,
                 responder: Callable[[str, str, Any], Reply | None] | None = None,
                 expected_keys: dict[str, str] | None = None, retry_after: str = "0",
                 slow_delay: float = 0.05, caches: PromptCaches | None = None, first_byte_delay: float = 0.0):
        self._port = port
        self.fault_plan = fault_plan
        self.responder = responder
        # provider -> the only key accepted (others get the provider's auth error); None = any key
        self.expected_keys = dict(expected_keys or {})
        self.retry_after = retry_after
        self.slow_delay = slow_delay
        self.caches = caches or PromptCaches()
        self.first_byte_delay = first_byte_delay
        self._lock = threading.RLock()   # re-entrant: match predicates may call back in
        self._arrived = threading.Condition(self._lock)   # notified on every recorded request
        self._requests: list[RecordedRequest] = []
        self._billed: dict[str, dict[str, int]] = {}
        self._scripts: list[tuple[str | None, Reply | Callable[..., Reply]]] = []
        self._faults: list[_Injected] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = 0

    # -- lifecycle
    def start(self) -> WireEmulator:
        if self._server is not None:
            return self
        server = _Server((HOST, self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="wire-emulator", daemon=True)
        self._thread.start()
        log.debug("wire emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WireEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("wire emulator is not running")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- scripting and faults
    def script(self, provider: str | None, *replies: Reply | str | Callable[..., Reply]) -> None:
        """Queue replies (FIFO) for `provider` (None = any provider).  A str is `Reply(text=...)`;
        a callable is called as `fn(provider, model, body)` when its turn comes."""
        with self._lock:
            for reply in replies:
                self._scripts.append((provider, Reply(text=reply) if isinstance(reply, str) else reply))

    def inject(self, kind: str, count: int = 1, match: str | Callable[[str, str, Any], bool] | None = None,
               *, provider: str | None = None, retry_after: str | None = None,
               delay: float | None = None) -> None:
        """Apply fault `kind` to the next `count` requests that match.

        `match`: None (any), a substring of the model name or the last user text, or a
        predicate `fn(provider, model, body) -> bool`.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
        with self._lock:
            default_delay = HANG_S if kind == "hang" else self.slow_delay
            self._faults.append(_Injected(kind, count, match, provider,
                                          self.retry_after if retry_after is None else retry_after,
                                          default_delay if delay is None else delay))

    def reset(self) -> None:
        with self._lock:
            self.caches = PromptCaches(self.caches.clock, self.caches.ttl_s, self.caches.min_tokens,
                                       self.caches.implicit)
            self._requests.clear()
            self._billed.clear()
            self._scripts.clear()
            self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, provider: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.provider == provider]

    @property
    def billed(self) -> dict[str, dict[str, int]]:
        """model -> {"input_tokens", "output_tokens", "requests"} for every reply sent in full
        (error faults and truncated replies are not billed), plus, when not zero,
        "cache_read_tokens" / "cache_write_tokens" (parts of "input_tokens"; an explicit cache's
        creation bills its tokens as both) and "storage_token_s" (explicit caches, until now)."""
        storage = self.caches.storage_token_s()
        with self._lock:
            out = {m: dict(v) for m, v in self._billed.items()}
        for model, token_s in storage.items():
            if token_s:
                out.setdefault(model, {"input_tokens": 0, "output_tokens": 0, "requests": 0})["storage_token_s"] = token_s
        return out

    def billed_total(self) -> tuple[int, int]:
        b = self.billed
        return (sum(v["input_tokens"] for v in b.values()), sum(v["output_tokens"] for v in b.values()))

    def wait_for_requests(self, count: int, timeout: float = 10.0,
                          where: Callable[[RecordedRequest], bool] | None = None) -> list[RecordedRequest]:
        """Block until at least `count` requests (matching `where`) have arrived; return them.
        Raises TimeoutError naming how many came."""
        def matching() -> list[RecordedRequest]:
            return [r for r in self._requests if where is None or where(r)]
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"{len(matching())} of {count} request(s) arrived within {timeout} s")
            return matching()

    # -- internals
    def _hang(self, h: _Handler, delay: float) -> bool:
        """Send nothing until the client closes the connection (True), the emulator stops or
        `delay` passes (False).  The connection is closed afterwards."""
        h.close_connection = True
        h.responded = True
        readable, _w, _x = select.select([h.connection], [], [], delay)
        if not readable or self._server is None:     # timed out, or the emulator is stopping
            return False
        try:
            gone = h.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            gone = True
        log.debug("wire emulator: hung request ended, client %s", "gone" if gone else "still there")
        return gone

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}{self._ids:04d}"

    def _take_fault(self, provider: str, model: str, body: Any) -> _Injected | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining <= 0 or (fault.provider and fault.provider != provider):
                    continue
                if not self._matches(fault.match, provider, model, body):
                    continue
                fault.remaining -= 1
                self._faults = [f for f in self._faults if f.remaining > 0]
                return fault
            plan = self.fault_plan
            kind = plan.roll() if plan is not None else None
        if kind is None:
            return None
        return _Injected(kind, 0, None, None, plan.retry_after, plan.slow_delay)

    @staticmethod
    def _matches(match: Any, provider: str, model: str, body: Any) -> bool:
        if match is None:
            return True
        if callable(match):
            return bool(match(provider, model, body))
        text = str(match)
        return text in model or text in parse_prompt(provider, body).last_user_text

    def _pick_reply(self, provider: str, model: str, body: Any) -> Reply:
        scripted = None
        with self._lock:
            for i, (prov, _reply) in enumerate(self._scripts):
                if prov is None or prov == provider:
                    scripted = self._scripts.pop(i)[1]
                    break
        if scripted is not None:
            reply = scripted(provider, model, body) if callable(scripted) else scripted
            if reply is not None:
                return reply
        if self.responder is not None:
            reply = self.responder(provider, model, body)
            if reply is not None:
                return reply
        schema = json_schema_of(body) if provider == GEMINI else None
        if schema is not None:
            return Reply(text=json.dumps(json_for_schema(schema)))
        return default_reply(provider, model, body)

    def _bill(self, model: str, usage: Billed, requests: int = 1) -> None:
        with self._lock:
            entry = self._billed.setdefault(model, {"input_tokens": 0, "output_tokens": 0, "requests": 0})
            entry["input_tokens"] += usage.input
            entry["output_tokens"] += usage.output
            entry["requests"] += requests
            for key, value in (("cache_read_tokens", usage.cache_read), ("cache_write_tokens", usage.cache_write)):
                if value:
                    entry[key] = entry.get(key, 0) + value

    def _cache_resource(self, h: _Handler, method: str, raw: bytes | None = None) -> bool:
        """Gemini `cachedContents` (a create's body was read by `_handle`); False: not a cache path."""
        split = urlsplit(h.path)
        match = _CACHES_PATH.match(split.path)
        if match is None:
            return False
        if raw is None:
            length = int(h.headers.get("Content-Length") or 0)
            raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        headers = {k: ("[REDACTED]" if k.lower() in _AUTH_HEADERS else v) for k, v in h.headers.items()}
        name = f"cachedContents/{match.group(1)}" if match.group(1) else None
        with self._lock:
            self._requests.append(RecordedRequest(GEMINI, h.path, "", body, headers, False, fault=None,
                                                  auth_present=bool(h.headers.get("x-goog-api-key"))))
            self._arrived.notify_all()
        caches = self.caches
        try:
            if method == "POST" and name is None:
                cache = caches.create(body if isinstance(body, dict) else {})
                self._bill(cache.model, Billed(cache.tokens, 0, 0, cache.tokens), requests=0)
                h._send_json(200, cache.resource())
            elif method == "GET" and name is None:
                size = int((parse_qs(split.query).get("pageSize") or ["1000"])[0])
                listed = caches.listed()[:size]
                h._send_json(200, {"cachedContents": [c.resource() for c in listed]} if listed else {})
            elif method == "GET" and name is not None:
                h._send_json(200, caches.get(name).resource())
            elif method == "PATCH" and name is not None:
                h._send_json(200, caches.update(name, body if isinstance(body, dict) else {}).resource())
            elif method == "DELETE" and name is not None:
                caches.delete(name)
                h._send_json(200, {})
            else:
                self._send_error(h, GEMINI, 400, f"{method} is not supported on {split.path}")
        except CacheRequestError as exc:
            self._send_error(h, GEMINI, exc.status, exc.message)
        return True

    def _usage(self, provider: str, body: Any, reply: Reply) -> tuple[int, int]:
        if reply.usage is not None:
            return int(reply.usage[0]), int(reply.usage[1])
        prompt_chars = parse_prompt(provider, body).text_chars
        out_chars = len(reply.text) + sum(len(json.dumps(c.get("args", {}))) + len(c.get("name", ""))
                                          for c in reply.tool_calls)
        return _tokens(prompt_chars), _tokens(out_chars)

    def _cache_split(self, provider: str, model: str, body: dict, explicit: Any) -> tuple[int, int, Callable[[], None]]:
        """(read, write) tokens of this prompt and the call that stores its cache entries."""
        if provider == ANTHROPIC:
            split, store = self.caches.anthropic(model, body)
            return split.read, split.write, store
        cached, store = self.caches.gemini_cached_tokens(model, body, explicit)
        return cached, 0, store

    def _handle(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        headers = {k: ("[REDACTED]" if k.lower() in _AUTH_HEADERS else v) for k, v in h.headers.items()}
        auth_value = (h.headers.get("x-goog-api-key") or h.headers.get("x-api-key")
                      or (h.headers.get("authorization") or "").removeprefix("Bearer ").strip())

        if _CACHES_PATH.match(split.path):
            self._cache_resource(h, "POST", raw)
            return
        gm = _GEMINI_PATH.match(split.path)
        if gm and gm.group(2) == "countTokens":
            self._count_tokens(h, gm.group(1), raw, headers, bool(auth_value))
            return
        if gm:
            provider, model, stream = GEMINI, gm.group(1), gm.group(2) == "streamGenerateContent"
        elif _ANTHROPIC_PATH.match(split.path):
            provider, model, stream = ANTHROPIC, "", False
        else:
            h._send_json(404, {"error": {"code": 404, "message": f"no route for POST {split.path}",
                                         "status": "NOT_FOUND"}})
            return
        try:
            body: Any = json.loads(raw or b"{}")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if provider == ANTHROPIC and isinstance(body, dict):
            model = str(body.get("model", ""))
            stream = bool(body.get("stream"))

        record = RecordedRequest(provider, h.path, model, body, headers, stream,
                                 auth_present=bool(auth_value))
        with self._lock:
            self._requests.append(record)
            self._arrived.notify_all()

        if not isinstance(body, dict):
            self._send_error(h, provider, 400, "request body is not a JSON object")
            return
        expected = self.expected_keys.get(provider)
        if expected is not None and auth_value != expected:
            if provider == GEMINI:  # what the real Gemini API does for a bad key
                h._send_json(400, {"error": {
                    "code": 400, "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                 "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})
            else:
                self._send_error(h, provider, 401, "invalid x-api-key")
            return

        fault = self._take_fault(provider, model, body)
        record.fault = fault.kind if fault else None
        if fault is not None and fault.kind == "hang":
            record.disconnected = self._hang(h, fault.delay)
            return
        if fault is not None and fault.kind in ERROR_KINDS:
            status = int(fault.kind)
            extra = {"Retry-After": fault.retry_after} if status == 429 and fault.retry_after != "" else {}
            self._send_error(h, provider, status, _ERROR_MESSAGES.get(status, "injected error"), extra)
            return

        try:
            explicit = None
            if provider == GEMINI:
                body, explicit = self.caches.gemini_expand(model, body)
            read, write, store = self._cache_split(provider, model, body, explicit)
        except CacheRequestError as exc:
            self._send_error(h, provider, exc.status, exc.message)
            return
        reply = self._pick_reply(provider, model, body)
        total_in, total_out = self._usage(provider, body, reply)
        read = min(read, total_in)
        usage = Billed(total_in, total_out, read, min(write, total_in - read))
        if self.first_byte_delay > 0:           # the model reads the prompt before it answers
            time.sleep(self.first_byte_delay)
        store()                                 # what it wrote is visible once the response starts
        kind = fault.kind if fault else None
        delay = fault.delay if fault else 0.0
        if kind == "malformed":
            self._send_malformed(h, provider, stream)
            return
        if kind == "stream_error" and not stream:  # no stream to break: the plain HTTP equivalent
            status = 503 if provider == GEMINI else 529
            self._send_error(h, provider, status, _ERROR_MESSAGES[status])
            return
        if kind not in ("truncate", "stream_error"):
            # billed before the bytes go out, so a client holding the reply already sees it here
            self._bill(model, usage)
        if provider == GEMINI:
            if stream:
                self._gemini_stream(h, model, reply, usage, kind, delay)
            else:
                self._gemini_json(h, model, reply, usage, kind, delay)
        elif stream:
            self._anthropic_stream(h, model, reply, usage, kind, delay)
        else:
            self._anthropic_json(h, model, reply, usage, kind, delay)

    def _count_tokens(self, h: _Handler, model: str, raw: bytes, headers: dict[str, str], auth: bool) -> None:
        try:
            body: Any = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        with self._lock:
            self._requests.append(RecordedRequest(GEMINI, h.path, model, body, headers, False, auth_present=auth))
        inner = body.get("generateContentRequest", body) if isinstance(body, dict) else {}
        h._send_json(200, {"totalTokens": _tokens(parse_prompt(GEMINI, inner).text_chars)})

    def _send_error(self, h: _Handler, provider: str, status: int, message: str,
                    headers: dict[str, str] | None = None) -> None:
        if provider == GEMINI:
            payload = {"error": {"code": status, "message": message,
                                 "status": _GEMINI_STATUS.get(status, "UNKNOWN")}}
        else:
            payload = {"type": "error", "error": {"type": _ANTHROPIC_TYPE.get(status, "api_error"),
                                                  "message": message}}
        h._send_json(status, payload, headers)

    def _send_malformed(self, h: _Handler, provider: str, stream: bool) -> None:
        if not stream:
            h._send_bytes(200, b'{"candidates": [{"content": <<this is not json>>', "application/json")
            return
        h._start_sse()
        if provider == GEMINI:
            h._sse('{"candidates": [{"content": <<this is not json>>')
        else:
            h._sse('{"type": "message_start", "message": <<this is not json>>', event="message_start")

    # -- Gemini
    @staticmethod
    def _gemini_usage(usage: Billed, final: bool) -> dict:
        cached = {"cachedContentTokenCount": usage.cache_read} if usage.cache_read else {}
        if not final:
            return {"promptTokenCount": usage[0], "totalTokenCount": usage[0], **cached}
        return {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                "totalTokenCount": usage[0] + usage[1], **cached}

    @staticmethod
    def _gemini_finish(reply: Reply) -> str:
        reason = reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")
        return _GEMINI_FINISH.get(reason, reason.upper())

    @staticmethod
    def _gemini_call_parts(reply: Reply) -> list[dict]:
        parts = []
        for call in reply.tool_calls:
            fc = {"name": call["name"], "args": call.get("args", {})}
            if call.get("id"):
                fc["id"] = call["id"]
            part: dict = {"functionCall": fc}
            if call.get("thought_signature"):  # base64 text, as Gemini 3 sends it
                part["thoughtSignature"] = call["thought_signature"]
            parts.append(part)
        return parts

    def _gemini_json(self, h: _Handler, model: str, reply: Reply, usage: Billed,
                     kind: str | None, delay: float) -> None:
        if kind == "slow":
            time.sleep(delay)
        parts = ([{"text": reply.text}] if reply.text else []) + self._gemini_call_parts(reply)
        payload = {"candidates": [{"content": {"role": "model", "parts": parts},
                                   "finishReason": self._gemini_finish(reply), "index": 0}],
                   "usageMetadata": self._gemini_usage(usage, True), "modelVersion": model,
                   "responseId": self._next_id("resp_")}
        data = json.dumps(payload).encode()
        h._send_bytes(200, data, "application/json", cut=len(data) // 2 if kind == "truncate" else None)

    def _gemini_stream(self, h: _Handler, model: str, reply: Reply, usage: Billed,
                       kind: str | None, delay: float) -> None:
        pieces = reply.pieces()
        events: list[dict] = []
        for piece in pieces:
            events.append({"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]},
                                           "index": 0}],
                           "usageMetadata": self._gemini_usage(usage, False), "modelVersion": model})
        call_parts = self._gemini_call_parts(reply)
        final_parts = call_parts if call_parts else ([] if events else [{"text": ""}])
        events.append({"candidates": [{"content": {"role": "model", "parts": final_parts},
                                       "finishReason": self._gemini_finish(reply), "index": 0}],
                       "usageMetadata": self._gemini_usage(usage, True), "modelVersion": model})
        if not final_parts and events:
            # the finish marker travels on the last text chunk, as the real API does
            last = events.pop()
            events[-1]["candidates"][0]["finishReason"] = last["candidates"][0]["finishReason"]
            events[-1]["usageMetadata"] = last["usageMetadata"]
        send = events
        if kind in ("truncate", "stream_error"):
            send = events[:max(1, len(events) // 2)] if len(events) > 1 else []
            if len(events) == 1 and events[0]["candidates"][0]["content"]["parts"]:
                # one-event reply: send it without its finish marker
                ev = json.loads(json.dumps(events[0]))
                ev["candidates"][0].pop("finishReason", None)
                send = [ev]
        rid = self._next_id("resp_")
        h._start_sse()
        for i, event in enumerate(send):
            if kind == "slow" and i:
                time.sleep(delay)
            event["responseId"] = rid
            h._sse(event)
        if kind == "stream_error":  # the API reports a failure inside an accepted stream
            h._sse({"error": {"code": 503, "message": "The model is overloaded (injected mid-stream).",
                              "status": "UNAVAILABLE"}})

    # -- Anthropic
    def _anthropic_message(self, model: str, usage: Billed) -> dict:
        counts = {"input_tokens": usage.input - usage.cache_read - usage.cache_write, "output_tokens": usage.output}
        if usage.cache_read or usage.cache_write:
            counts.update(cache_creation_input_tokens=usage.cache_write, cache_read_input_tokens=usage.cache_read)
        return {"id": self._next_id("msg_emu_"), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": counts}

    def _anthropic_blocks(self, reply: Reply) -> list[dict]:
        blocks: list[dict] = []
        if reply.text:
            blocks.append({"type": "text", "text": reply.text})
        for call in reply.tool_calls:
            blocks.append({"type": "tool_use", "id": call.get("id") or self._next_id("toolu_emu_"),
                           "name": call["name"], "input": call.get("args", {})})
        return blocks

    @staticmethod
    def _anthropic_stop(reply: Reply) -> str:
        return reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")

    def _anthropic_json(self, h: _Handler, model: str, reply: Reply, usage: Billed,
                        kind: str | None, delay: float) -> None:
        if kind == "slow":
            time.sleep(delay)
        message = self._anthropic_message(model, usage)
        message["content"] = self._anthropic_blocks(reply)
        message["stop_reason"] = self._anthropic_stop(reply)
        data = json.dumps(message).encode()
        h._send_bytes(200, data, "application/json", cut=len(data) // 2 if kind == "truncate" else None)

    def _anthropic_stream(self, h: _Handler, model: str, reply: Reply, usage: Billed,
                          kind: str | None, delay: float) -> None:
        start = self._anthropic_message(model, usage._replace(output=1))
        events: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": start}),
                                          ("ping", {"type": "ping"})]
        index = 0
        pieces = reply.pieces()
        if pieces:
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}}))
            for piece in pieces:
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "text_delta", "text": piece}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        for block in self._anthropic_blocks(Reply(tool_calls=reply.tool_calls)):
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {**block, "input": {}}}))
            for part in split_text(json.dumps(block["input"]), 8):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "input_json_delta",
                                                                 "partial_json": part}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": self._anthropic_stop(reply),
                                                   "stop_sequence": None},
                                         "usage": {"output_tokens": usage[1]}}))
        events.append(("message_stop", {"type": "message_stop"}))
        if kind in ("truncate", "stream_error"):
            # keep message_start, ping, a block start and at least one delta; never the final marker
            events = events[:min(len(events) - 1, max(4, (len(events) - 2) // 2 + 1))]
        h._start_sse()
        for i, (name, data) in enumerate(events):
            if kind == "slow" and name == "content_block_delta" and i:
                time.sleep(delay)
            h._sse(data, event=name)
        if kind == "stream_error":  # the API reports a failure inside an accepted stream
            h._sse({"type": "error", "error": {"type": "overloaded_error",
                                               "message": "Overloaded (injected mid-stream)"}}, event="error")


_ERROR_MESSAGES = {
    400: "Request contains an invalid argument (injected).",
    401: "Request had invalid authentication credentials (injected).",
    403: "The caller does not have permission (injected).",
    404: "Requested entity was not found (injected).",
    429: "Resource has been exhausted (e.g. check quota) (injected).",
    500: "An internal error has occurred (injected).",
    502: "Bad gateway (injected).",
    503: "The service is currently unavailable (injected).",
    529: "Overloaded (injected).",
}


# --------------------------------------------------------------------------- process mode

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gemini/Anthropic wire emulator on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--rate-500", type=float, default=0.0)
    parser.add_argument("--rate-truncate", type=float, default=0.0)
    parser.add_argument("--rate-slow", type=float, default=0.0)
    parser.add_argument("--rate-malformed", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-after", default="0")
    parser.add_argument("--slow-delay", type=float, default=0.05)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    plan = None
    if any((args.rate_429, args.rate_500, args.rate_truncate, args.rate_slow, args.rate_malformed)):
        plan = FaultPlan(rate_429=args.rate_429, rate_500=args.rate_500, rate_truncate=args.rate_truncate,
                         rate_slow=args.rate_slow, rate_malformed=args.rate_malformed, seed=args.seed,
                         retry_after=args.retry_after, slow_delay=args.slow_delay)
    emulator = WireEmulator(port=args.port, fault_plan=plan, retry_after=args.retry_after,
                            slow_delay=args.slow_delay)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emulator.start()
    print(f"WIRE_EMULATOR {emulator.base_url}", flush=True)   # noqa: T201 - the stdout line callers read the URL from
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
