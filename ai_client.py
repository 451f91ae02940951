"""The one front door to every model: sessions, send, streaming, tools, comms log, usage.

Like httpx's client over swappable transports: `send()` builds a
provider-neutral `ChatRequest`, an adapter from `providers/` translates it to
one provider's wire format, and everything else (tool loop, approvals,
retries, comms log, token accounting) happens here once for all providers.

Sessions are per execution context (`contextvars`).  A worker thread that
calls `reset_session()` replaces only its own session; the GUI thread's or
another worker's call in flight is untouched, so a worker's reset cannot
race with a Tier 2 call on another thread.
"""
from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import providers
from providers import catalog
from providers.base import (
    CancelledByUser,
    CancelSignal,
    ChatRequest,
    ChatResponse,
    PromptCacheUse,
    ProviderError,
    ToolCall,
    ToolResult,
    Usage,
    prefix_fingerprint,
)

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 8
COMMS_LOG_LIMIT = 5000   # entries kept in memory per session; the JSONL file keeps everything

# A sink the GUI sets; called from whichever thread made the call, so it must
# hand off thread-safely (the GUI puts into a queue.SimpleQueue).
comms_log_callback: Callable[[dict], None] | None = None

_session_ids = itertools.count(1)
_config_lock = threading.Lock()
_default_provider: str | None = None      # names only: config, not shared provider state
_default_model: str | None = None
_session_log_dir: Path | None = None


def default_provider() -> str:
    """`MMA_PROVIDER`, else a provider whose key is set, else the offline mock."""
    with _config_lock:
        if _default_provider:
            return _default_provider
    env = os.environ.get("MMA_PROVIDER", "").strip().lower()
    if env:
        return env
    from providers import credentials
    for name in ("gemini", "anthropic"):
        if credentials.has_key(name):
            return name
    return "mock"


def configure(provider: str | None = None, model: str | None = None,
              session_log_dir: str | os.PathLike | None = None) -> None:
    """Set the defaults new sessions start with (names, not clients)."""
    global _default_provider, _default_model, _session_log_dir
    with _config_lock:
        if provider is not None:
            if provider not in providers.PROVIDERS:
                raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(providers.PROVIDERS)}")
            _default_provider = provider
        if model is not None:
            _default_model = model
        if session_log_dir is not None:
            _session_log_dir = Path(session_log_dir)


def _default_chat_model(provider: str) -> str:
    """The catalog's chat model; "" for an adapter registered at run time (it picks its own)."""
    return catalog.default_chat_model(provider) if catalog.is_provider(provider) else ""


def _redact(text: str) -> str:
    from providers import credentials
    return credentials.redact(text)


def _redact_obj(obj: Any) -> Any:
    if isinstance(obj, str):
        return _redact(obj)
    if isinstance(obj, dict):
        return {k: _redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact_obj(v) for v in obj]
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    return obj


@dataclass
class SendResult:
    text: str
    usage: Usage
    tool_calls: list[dict] = field(default_factory=list)
    stop_reason: str = "end_turn"
    rounds: int = 1


# Called with (model, usage) for every provider response, on the thread that made the call.
UsageSink = Callable[[str, Usage], None]


@dataclass(frozen=True)
class ExplicitCache:
    """A provider-side cache (Gemini `cachedContents/...`) holding a system prompt and tools.

    A request uses it only when its own system prompt and tools are exactly what the cache
    holds (`fingerprint`, from `providers.base.prefix_fingerprint`): a worker whose context
    the user edited in the spawn approval sends its own, uncached.
    """
    name: str
    model: str
    fingerprint: str


def layout_system(md_content: str, system_prompt: str) -> tuple[str, tuple[int, ...]]:
    """The system prompt as sent, and where its shared parts end (prompt-cache breakpoints).

    The curated context comes first and the role's instructions after it, so the chat and
    every tier given the same context send a byte-identical prefix (and long documents
    before the instructions is also the order models handle best)."""
    if not md_content:
        return system_prompt, ((len(system_prompt),) if system_prompt else ())
    context = f"<context>\n{md_content}\n</context>"
    if not system_prompt:
        return context, (len(context),)
    system = f"{context}\n\n{system_prompt}"
    return system, (len(context), len(system))


class Session:
    """One conversation with one provider: its own adapter, history, log and usage.

    Usage is booked per provider response, as it arrives (`usage`, `usage_by_model` and
    the `on_usage` sink), not when `send` returns: a tool round that billed and then
    failed, an aborted call or a planning repair round is paid for all the same.
    `cancel_event` is a `CancelSignal`: setting it also unblocks a call waiting for its
    first byte (the adapter's socket) or a running shell command.
    """

    def __init__(self, provider: str | None = None, model: str | None = None, *,
                 adapter_options: dict | None = None, log_dir: str | os.PathLike | None = None,
                 label: str = ""):
        self.id = next(_session_ids)
        self.provider = provider or default_provider()
        with _config_lock:
            fallback_model = _default_model if _default_provider in (None, self.provider) else None
            self._log_dir = Path(log_dir) if log_dir else _session_log_dir
        self.model = model or fallback_model or _default_chat_model(self.provider)
        self.label = label
        self.adapter_options = dict(adapter_options or {})
        self._adapter: providers.ProviderAdapter | None = None
        self.history: list[dict] = []
        self.comms_log: list[dict] = []
        self.usage = Usage()
        self.usage_by_model: dict[str, Usage] = {}
        self.on_usage: UsageSink | None = None
        # Prompt caching: mark the shared prefix (and a tool loop's history) for the provider's
        # cache; `explicit_cache`, when its model and prefix match, is referenced instead.
        self.prompt_cache = True
        self.explicit_cache: ExplicitCache | None = None
        # Called (on the calling thread) when a provider response starts arriving: its first
        # streamed chunk, or the whole response.  The engine's cache warm-up waits for it.
        self.on_response_start: Callable[[], None] | None = None
        self.last_result: SendResult | None = None
        self.cancel_event: CancelSignal = CancelSignal()
        self.comms_callback: Callable[[dict], None] | None = None
        self._log_lock = threading.Lock()
        self._log_file: Path | None = None

    @property
    def adapter(self):
        if self._adapter is None:
            self._adapter = providers.make_adapter(self.provider, **self.adapter_options)
        return self._adapter

    def set_provider(self, provider: str, model: str | None = None) -> None:
        if provider not in providers.PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(providers.PROVIDERS)}")
        self.provider = provider
        self.model = model or _default_chat_model(provider)
        self._adapter = None

    # -- comms log -------------------------------------------------------------
    def log(self, direction: str, kind: str, payload: dict, model: str | None = None) -> dict:
        entry = {"ts": time.time(), "direction": direction, "kind": kind, "provider": self.provider,
                 "model": model or self.model, "session": self.id, "label": self.label,
                 "payload": _redact_obj(payload)}
        with self._log_lock:
            self.comms_log.append(entry)
            if len(self.comms_log) > COMMS_LOG_LIMIT:
                del self.comms_log[: len(self.comms_log) - COMMS_LOG_LIMIT]
            self._write_jsonl(entry)
        for sink in (self.comms_callback, comms_log_callback):
            if sink is not None:
                try:
                    sink(entry)
                except Exception:  # a broken sink must not break the model call
                    log.exception("comms log callback failed")
        return entry

    def _write_jsonl(self, entry: dict) -> None:
        if self._log_dir is None:
            return
        if self._log_file is None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self._log_file = self._log_dir / f"session-{stamp}-{os.getpid()}-{self.id}.jsonl"
        with open(self._log_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    # -- the call --------------------------------------------------------------
    def send(self, md_content: str, user_message: str, base_dir: str = ".", *,
             system_prompt: str = "", pre_tool_callback: Callable | None = None,
             qa_callback: Callable[[str], str] | None = None,
             stream_callback: Callable[[str], None] | None = None,
             tools: bool | list | None = None, images: list[dict] | None = None,
             keep_history: bool = True, max_tool_rounds: int = MAX_TOOL_ROUNDS,
             retry_policy=None) -> SendResult:
        system, breaks = layout_system(md_content, system_prompt)
        user_msg: dict = {"role": "user", "content": user_message}
        if images:
            user_msg["images"] = images
        messages = [*self.history, user_msg]
        tool_specs = _tool_specs(tools, base_dir)
        cache = self._cache_use(system, breaks, tool_specs)
        total = Usage()
        calls_made: list[dict] = []
        text_parts: list[str] = []
        stop_reason = "end_turn"
        rounds = 0
        while True:
            rounds += 1
            request = ChatRequest(model=self.model, system=system, messages=list(messages),
                                  tools=tool_specs, cancel_event=self.cancel_event, cache=cache)
            response = self._generate(request, stream_callback, retry_policy)
            total = total + response.usage
            stop_reason = response.stop_reason
            if response.text:
                text_parts.append(response.text)
            messages.append({"role": "assistant", "content": response.text,
                             **({"tool_calls": [c.to_dict() for c in response.tool_calls]}
                                if response.tool_calls else {})})
            if not response.tool_calls:
                break
            if rounds > max_tool_rounds:
                stop_reason = "max_tool_rounds"
                text_parts.append(f"\n[stopped: more than {max_tool_rounds} tool rounds]")
                log.warning("session %s: tool loop stopped after %d rounds", self.id, max_tool_rounds)
                break
            for call in response.tool_calls:
                result = self._run_tool(call, base_dir, pre_tool_callback, qa_callback)
                calls_made.append({**call.to_dict(), "result": result.text})
                messages.append(result.message(call))
        text = "\n".join(p for p in text_parts if p)
        if keep_history:
            self.history = messages
        self.last_result = SendResult(text, total, calls_made, stop_reason, rounds)
        return self.last_result

    def _cache_use(self, system: str, breaks: tuple[int, ...], tool_specs: list) -> PromptCacheUse | None:
        if not self.prompt_cache:
            return None
        explicit = self.explicit_cache
        cached_content = None
        if explicit is not None and explicit.model == self.model:
            if explicit.fingerprint == prefix_fingerprint(system, tool_specs):
                cached_content = explicit.name
            else:
                log.info("session %s: the system prompt or tools differ from %s; sending them uncached",
                         self.id, explicit.name)
        return PromptCacheUse(system_breaks=breaks, conversation=bool(tool_specs), cached_content=cached_content)

    def _generate(self, request: ChatRequest, stream_callback, retry_policy) -> ChatResponse:
        from providers.retry import RetryPolicy, call_with_retries
        self.log("OUT", "request", {"system_chars": len(request.system),
                                    "messages": _summarise_messages(request.messages),
                                    "tools": [t.name for t in request.tools],
                                    **({"cached_content": request.cache.cached_content}
                                       if request.cache and request.cache.cached_content else {})},
                 request.model)
        delivered: list[str] = []          # text already shown to the user, across retries
        attempt_text: list[str] = []
        started: list[bool] = []

        def response_started() -> None:
            hook = self.on_response_start
            if started or hook is None:
                return
            started.append(True)
            try:
                hook()
            except Exception:  # a broken observer must not break the call
                log.exception("session %s: on_response_start failed", self.id)

        def on_chunk(piece: str) -> None:
            response_started()
            attempt_text.append(piece)
            seen = "".join(attempt_text)
            already = "".join(delivered)
            if len(seen) <= len(already) and already.startswith(seen):
                return                     # a retry re-streaming what the user already saw
            new = seen[len(already):] if seen.startswith(already) else piece
            delivered.append(new)
            stream_callback(new)

        def attempt() -> ChatResponse:
            attempt_text.clear()
            return self.adapter.generate(request, on_chunk if stream_callback else None)

        def on_retry(n: int, error: ProviderError, delay: float) -> None:
            log.warning("session %s: %s (attempt %d), retrying in %.2fs", self.id,
                        _redact(str(error)), n, delay)
            self.log("IN", "retry", {"attempt": n, "error": type(error).__name__,
                                     "message": str(error), "delay_s": round(delay, 3)}, request.model)

        try:
            response = call_with_retries(attempt, retry_policy or RetryPolicy(),
                                         on_retry=on_retry, cancel_event=self.cancel_event)
        except ProviderError as exc:
            self.log("IN", "error", {"error": type(exc).__name__, "message": str(exc),
                                     "hint": exc.hint, "partial_text": exc.partial_text}, request.model)
            raise
        response_started()
        self._book(response.model or request.model, response.usage)
        self.log("IN", "response", {
            "text": response.text, "stop_reason": response.stop_reason,
            "tool_calls": [c.to_dict() for c in response.tool_calls],
            "usage": {"input_tokens": response.usage.input_tokens,
                      "output_tokens": response.usage.output_tokens,
                      **{f"{k}_tokens": v for k, v in response.usage.cache_fields().items()}}},
            response.model or request.model)
        return response

    def _book(self, model: str, usage: Usage) -> None:
        """What one provider response billed: the session's totals, then the sink."""
        with self._log_lock:
            self.usage = self.usage + usage
            self.usage_by_model[model] = self.usage_by_model.get(model, Usage()) + usage
        sink = self.on_usage
        if sink is not None and (usage.input_tokens or usage.output_tokens):
            try:
                sink(model, usage)
            except Exception:  # a broken ledger must not lose the reply the tokens paid for
                log.exception("session %s: booking usage failed", self.id)

    def _run_tool(self, call: ToolCall, base_dir: str, pre_tool_callback, qa_callback) -> ToolResult:
        """One tool call: the project's toolbox (built-in + MCP) says whether to ask first."""
        import tools
        from tools.toolbox import toolbox_for
        box = toolbox_for(base_dir)
        self.log("IN", "tool_call", call.to_dict())
        approved = False
        args = dict(call.args)
        if box.needs_approval(call.name):
            description = box.describe(call.name, args)
            decision = pre_tool_callback(call.name, args, description) if pre_tool_callback else False
            if isinstance(decision, dict):           # approval with edits, e.g. {"approved": True, "args": {...}}
                args = decision.get("args", args)
                decision = decision.get("approved", False)
            approved = bool(decision)
            if not approved:
                result = ToolResult(f"REFUSED: the user did not approve {call.name}.", is_error=True)
                self._log_tool_result(call, result)
                return result
        try:
            result = box.execute(call.name, args, approved=approved, cancel=self.cancel_event)
        except tools.ToolError as exc:
            text = f"ERROR: {exc}"
            if qa_callback is not None:
                try:
                    text += f"\nQA: {qa_callback(text)}"
                except ProviderError as qa_exc:
                    log.warning("Tier 4 analysis failed: %s", qa_exc)
            result = ToolResult(text, is_error=True)
        self._log_tool_result(call, result)
        return result

    def _log_tool_result(self, call: ToolCall, result: ToolResult) -> None:
        """The tool message as sent, with images counted rather than copied into the log."""
        message = result.message(call)
        payload: dict[str, Any] = {"id": call.id, "name": call.name, "result": message.pop("content")}
        payload.update((k, len(v) if k == "images" else v) for k, v in message.items()
                       if k in ("is_error", "images", "structured"))
        self.log("OUT", "tool_result", payload)

    def bleed_stats(self) -> dict:
        from context_builder import context_window_for, estimate_tokens
        limit = context_window_for(self.model)
        per_message = [estimate_tokens(str(m.get("content", ""))) for m in self.history]
        history_tokens = sum(per_message)
        trim = [{"index": i, "role": m.get("role"), "tokens": per_message[i]}
                for i, m in enumerate(self.history[:-1])][:5]   # oldest first, never the newest turn
        last_input = self.last_result.usage.input_tokens if self.last_result else 0
        return {
            "provider": self.provider, "model": self.model,
            "total_input_tokens": self.usage.input_tokens,
            "total_output_tokens": self.usage.output_tokens,
            "context_limit": limit,
            "history_tokens": history_tokens,
            "last_input_tokens": last_input,
            "percent_used": round(100.0 * max(last_input, history_tokens) / limit, 2) if limit else 0.0,
            "trim_first": trim,
        }


def tool_specs(tools_arg, base_dir: str = ".") -> list:
    """The tool declarations `send(tools=..., base_dir)` offers the model: none, the project's
    toolbox (True), or the given list.  The prompt cache of a track holds exactly these."""
    return _tool_specs(tools_arg, base_dir)


def _tool_specs(tools_arg, base_dir: str = ".") -> list:
    """`tools=True`: the project's toolbox (built-in tools plus its MCP servers' tools)."""
    if not tools_arg:
        return []
    if tools_arg is True:
        from tools.toolbox import toolbox_for
        return toolbox_for(base_dir).specs()
    return list(tools_arg)


def _summarise_messages(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        item = {"role": m.get("role"), "content": str(m.get("content", ""))[:2000]}
        if m.get("tool_calls"):
            item["tool_calls"] = m["tool_calls"]
        if m.get("images"):
            item["images"] = len(m["images"])
        out.append(item)
    return out


# -- the current session (per thread / task context) ---------------------------
_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar("mma_ai_session", default=None)


def current_session() -> Session:
    session = _current.get()
    if session is None:
        session = Session()
        _current.set(session)
    return session


def bind_session(session: Session) -> contextvars.Token:
    return _current.set(session)


@contextlib.contextmanager
def session_scope(provider: str | None = None, model: str | None = None, **kwargs):
    """Bind a fresh session for the block, then restore whatever was bound before."""
    session = Session(provider, model, **kwargs)
    token = _current.set(session)
    try:
        yield session
    finally:
        _current.reset(token)


# -- module-level functions (act on the current session) ------------------------
def send(md_content: str, user_message: str, base_dir: str = ".", pre_tool_callback=None,
         qa_callback=None, stream_callback=None, **kwargs) -> str:
    return current_session().send(md_content, user_message, base_dir,
                                  pre_tool_callback=pre_tool_callback, qa_callback=qa_callback,
                                  stream_callback=stream_callback, **kwargs).text


def reset_session() -> Session:
    """Start a clean conversation in *this* context only (same provider and model)."""
    old = _current.get()
    session = Session(old.provider, old.model, adapter_options=old.adapter_options,
                      label=old.label) if old else Session()
    if old is not None:
        session.comms_callback = old.comms_callback
    _current.set(session)
    return session


def set_provider(provider: str, model: str | None = None) -> None:
    current_session().set_provider(provider, model)


def get_provider() -> str:
    return current_session().provider


def get_model() -> str:
    return current_session().model


def get_comms_log() -> list[dict]:
    session = current_session()
    with session._log_lock:
        return list(session.comms_log)


def get_history_bleed_stats() -> dict:
    return current_session().bleed_stats()


def last_usage() -> Usage:
    result = current_session().last_result
    return result.usage if result else Usage()


TIER4_SYSTEM = ("You are Tier 4 (QA) of a multi-model coding pipeline. Given a failed tool call, "
                "error output or a blocked worker report, reply with a short diagnosis (at most "
                "5 lines): the likely cause and the next step.")


def analyse_failure(error_text: str, provider: str | None = None, model: str | None = None,
                    stream_callback=None, *, cancel_event: CancelSignal | None = None,
                    on_usage: UsageSink | None = None) -> SendResult:
    """Tier 4 in its own throw-away session; returns text and usage.  `cancel_event` (the
    engine's abort) cancels it; `on_usage` books each response as it arrives."""
    current = _current.get()
    provider = provider or (current.provider if current else None)
    with session_scope(provider, model, label="Tier 4") as session:
        if cancel_event is not None:
            session.cancel_event = cancel_event
        session.on_usage = on_usage
        return session.send("", error_text[-6000:], system_prompt=TIER4_SYSTEM,
                            stream_callback=stream_callback, keep_history=False)


def run_tier4_analysis(stderr: str, provider: str | None = None, model: str | None = None) -> str:
    return analyse_failure(stderr, provider, model).text


__all__ = [
    "Session", "SendResult", "send", "reset_session", "set_provider", "get_provider", "get_model",
    "get_comms_log", "get_history_bleed_stats", "comms_log_callback", "run_tier4_analysis",
    "analyse_failure", "session_scope", "current_session", "configure", "CancelledByUser",
]
