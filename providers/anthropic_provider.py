"""Anthropic adapter (anthropic SDK) behind the `providers.base` seam.

- One `anthropic.Anthropic` client per adapter instance, `max_retries=0`: `providers.retry`
  owns retries.
- Streaming uses the raw event stream (`messages.create(stream=True)`) so a stream that ends
  without `message_stop` is detected and reported as `StreamInterruptedError`.
- Usage: `input_tokens` (+ cache creation/read input tokens when present) and `output_tokens`;
  in streams from `message_start`, updated by `message_delta` (cumulative counts).  The cache
  counts are kept apart too (`Usage.cache_write_tokens` / `cache_read_tokens`).
- Prompt caching (`ChatRequest.cache`): a `cache_control` breakpoint at the end of each shared
  part of the system prompt and, in a tool loop, on the last block of the conversation and of
  the previous request, so each tool round reads its history from the cache; never more than
  the API's `MAX_CACHE_BREAKPOINTS`.
- Errors map to `providers.base` classes; messages carry the provider's own text, redacted.
- `ChatRequest.temperature` is ignored: this SDK/API version has no temperature parameter.
- Abort: the client's httpx client carries our request hook, so a cancel shuts the call's
  socket down even before the first byte (`sdk_calls.cancellable`).
"""
from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

from providers import credentials, tool_schema
from providers.base import (
    AuthError,
    BadRequestError,
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
)
from providers.retry import parse_retry_after
from providers.sdk_calls import OpenSockets, cancellable, map_transport_failure, stream_items

log = logging.getLogger(__name__)

PROVIDER = "anthropic"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
KEY_HINT = "set ANTHROPIC_API_KEY, or add [anthropic] api_key to ~/.config/mma-desk/credentials.toml"
_SERVER_ERROR_TYPES = {"api_error", "overloaded_error", "timeout_error"}
MAX_CACHE_BREAKPOINTS = 4          # the Messages API refuses a request with more
_EPHEMERAL = {"type": "ephemeral"}  # the 5-minute cache (writes bill 1.25x input)
_CACHE_FIELDS = ("cache_creation_input_tokens", "cache_read_input_tokens")


class AnthropicAdapter:
    name = PROVIDER

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | None = 600.0):
        key = api_key or credentials.get_api_key(PROVIDER)
        if not key:
            raise ProviderUnavailableError("no Anthropic API key configured", provider=PROVIDER,
                                           hint=KEY_HINT)
        try:
            import anthropic
        except ImportError:
            raise ProviderUnavailableError("anthropic SDK is not installed", provider=PROVIDER,
                                           hint="pip install anthropic") from None
        self._sdk = anthropic
        self._key = key
        self.base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        self._sockets = OpenSockets()
        kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0,
                                  # the SDK's own defaults (limits, keep-alive), plus our request hook
                                  "http_client": anthropic.DefaultHttpxClient(event_hooks=self._sockets.event_hooks())}
        if self.base_url:
            kwargs["base_url"] = self.base_url
        if timeout:
            kwargs["timeout"] = timeout
        self._client = anthropic.Anthropic(**kwargs)

    # ------------------------------------------------------------------ public

    def generate(self, request: ChatRequest, on_chunk: ChunkCallback | None = None) -> ChatResponse:
        check_cancel(request)
        params = self._params(request)
        with cancellable(request, self._sockets):
            if on_chunk is None:
                return self._generate_once(request, params)
            return self._generate_stream(request, params, on_chunk)

    # ------------------------------------------------------------------ requests

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        messages = self._messages(request.messages)
        params: dict[str, Any] = {"model": request.model, "max_tokens": request.max_output_tokens,
                                  "messages": messages}
        cache = request.cache
        marks = 0
        if request.system:
            params["system"], marks = _system_blocks(request.system, cache.system_breaks if cache else ())
        if cache is not None and cache.conversation:
            _mark_conversation(messages, MAX_CACHE_BREAKPOINTS - marks)
        if request.temperature is not None:
            # anthropic SDK 2.x / API 2026-10-21 has no sampling temperature parameter
            log.debug("anthropic: ignoring temperature=%s (not supported by this API version)",
                      request.temperature)
        if request.tools:
            params["tools"] = [{"name": t.name, "description": t.description,
                                "input_schema": tool_schema.for_anthropic(t.parameters)}
                               for t in request.tools]
        return params

    @staticmethod
    def _messages(messages: list[dict]) -> list[dict]:
        out: list[dict] = []

        def add(role: str, blocks: list[dict]) -> None:
            if not blocks:
                return
            if out and out[-1]["role"] == role:
                merged = out[-1]["content"] + blocks
                # tool_result blocks must lead a user turn
                merged.sort(key=lambda b: 0 if b.get("type") == "tool_result" else 1)
                out[-1]["content"] = merged
            else:
                out.append({"role": role, "content": list(blocks)})

        for msg in messages:
            role = msg.get("role")
            if role == "user":
                blocks: list[dict] = []
                for image in msg.get("images") or []:
                    data = image["data"]
                    encoded = data if isinstance(data, str) else base64.b64encode(data).decode("ascii")
                    blocks.append({"type": "image", "source": {"type": "base64",
                                                               "media_type": image["mime_type"],
                                                               "data": encoded}})
                if msg.get("content"):
                    blocks.append({"type": "text", "text": msg["content"]})
                add("user", blocks)
            elif role == "assistant":
                blocks = [{"type": "text", "text": msg["content"]}] if msg.get("content") else []
                for call in msg.get("tool_calls") or []:
                    blocks.append({"type": "tool_use", "id": call["id"], "name": call["name"],
                                   "input": dict(call.get("args") or {})})
                add("assistant", blocks)
            elif role == "tool":
                block = {"type": "tool_result", "tool_use_id": msg["tool_call_id"],
                         "content": _tool_result_content(msg)}
                if msg.get("is_error"):
                    block["is_error"] = True
                add("user", [block])
            else:
                raise BadRequestError(f"unknown message role {role!r}", provider=PROVIDER)
        return out

    # ------------------------------------------------------------------ calls

    def _generate_once(self, request: ChatRequest, params: dict[str, Any]) -> ChatResponse:
        try:
            message = self._client.messages.create(**params)
        except Exception as exc:  # every SDK/transport failure becomes a ProviderError
            raise self._map_error(exc) from None
        check_cancel(request)
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content or []:
            btype = getattr(block, "type", None)
            if btype == "text":
                text.append(block.text)
            elif btype == "tool_use":
                calls.append(ToolCall(id=block.id, name=block.name, args=dict(block.input or {})))
        usage = message.usage
        return ChatResponse(text="".join(text), tool_calls=calls,
                            usage=Usage(_input_tokens(usage), int(getattr(usage, "output_tokens", 0) or 0),
                                        _count(usage, "cache_read_input_tokens"),
                                        _count(usage, "cache_creation_input_tokens")),
                            stop_reason=_stop(message.stop_reason, calls), model=request.model)

    def _generate_stream(self, request: ChatRequest, params: dict[str, Any],
                         on_chunk: ChunkCallback) -> ChatResponse:
        state = _State()
        try:
            stream = self._client.messages.create(**params, stream=True)
        except Exception as exc:
            raise self._map_error(exc) from None
        try:
            for event in stream_items(stream, lambda exc: self._map_error(exc, state=state)):
                state.events += 1
                check_cancel(request)
                self._absorb(event, state, on_chunk)
                if state.done:
                    break
        finally:
            stream.close()
        if not state.done:
            raise StreamInterruptedError(
                f"Anthropic stream ended without message_stop after {state.events} event(s)",
                provider=PROVIDER, partial_text="".join(state.text))
        return ChatResponse(text="".join(state.text), tool_calls=state.calls,
                            usage=Usage(state.input_tokens, state.output_tokens, state.cache_read, state.cache_write),
                            stop_reason=_stop(state.stop_reason, state.calls), model=request.model)

    def _absorb(self, event: Any, state: _State, on_chunk: ChunkCallback) -> None:
        etype = getattr(event, "type", None)
        if etype == "message_start":
            usage = event.message.usage
            state.input_tokens = _input_tokens(usage)
            state.output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
            state.cache_read = _count(usage, "cache_read_input_tokens")
            state.cache_write = _count(usage, "cache_creation_input_tokens")
        elif etype == "content_block_start":
            block = event.content_block
            btype = getattr(block, "type", None)
            state.blocks[event.index] = {"type": btype}
            if btype == "text" and block.text:
                state.text.append(block.text)
                on_chunk(block.text)
            elif btype == "tool_use":
                state.blocks[event.index].update(id=block.id, name=block.name, json=[],
                                                 input=dict(block.input or {}))
        elif etype == "content_block_delta":
            delta = event.delta
            dtype = getattr(delta, "type", None)
            if dtype == "text_delta" and delta.text:
                state.text.append(delta.text)
                on_chunk(delta.text)
            elif dtype == "input_json_delta":
                state.blocks.setdefault(event.index, {"type": "tool_use", "json": []}) \
                    .setdefault("json", []).append(delta.partial_json or "")
        elif etype == "content_block_stop":
            block = state.blocks.get(event.index, {})
            if block.get("type") == "tool_use":
                raw = "".join(block.get("json", []))
                try:
                    args = json.loads(raw) if raw.strip() else block.get("input", {})
                except ValueError:
                    raise StreamInterruptedError("Anthropic stream carried invalid tool input JSON",
                                                 provider=PROVIDER,
                                                 partial_text="".join(state.text)) from None
                if not isinstance(args, dict):
                    args = {"value": args}
                state.calls.append(ToolCall(id=block.get("id", ""), name=block.get("name", ""), args=args))
        elif etype == "message_delta":
            delta = getattr(event, "delta", None)
            if delta is not None and getattr(delta, "stop_reason", None):
                state.stop_reason = delta.stop_reason
            usage = getattr(event, "usage", None)
            if usage is not None:
                if getattr(usage, "output_tokens", None) is not None:
                    state.output_tokens = int(usage.output_tokens)
                if getattr(usage, "input_tokens", None) is not None:
                    state.input_tokens = _input_tokens(usage)
                if any(getattr(usage, name, None) is not None for name in _CACHE_FIELDS):
                    state.cache_read = _count(usage, "cache_read_input_tokens")
                    state.cache_write = _count(usage, "cache_creation_input_tokens")
        elif etype == "message_stop":
            state.done = True

    # ------------------------------------------------------------------ errors

    def _clean(self, text: str) -> str:
        return credentials.redact(str(text), (self._key,))

    def _map_error(self, exc: BaseException, state: _State | None = None) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        sdk = self._sdk
        partial = "".join(state.text) if state is not None else ""
        started = state is not None and state.events > 0
        log.debug("anthropic call failed: %s: %s", type(exc).__name__, self._clean(str(exc))[:500])
        if isinstance(exc, sdk.APIStatusError):
            code = int(exc.status_code or 0)
            etype = getattr(exc, "type", None) or ""
            message = self._clean(getattr(exc, "api_message", None) or exc.message)[:1000]
            text = f"HTTP {code} {etype}".rstrip() + f": {message}"
            if started or code == 200:
                # an `event: error` inside an accepted stream (e.g. overloaded_error)
                if started:
                    return StreamInterruptedError(f"Anthropic stream failed: {text}", provider=PROVIDER,
                                                  status=code, partial_text=partial)
                if etype == "rate_limit_error":
                    return RateLimitError(text, provider=PROVIDER, status=429)
                return ServerError(text, provider=PROVIDER, status=code)
            if code == 429:
                return RateLimitError(text, provider=PROVIDER, status=code,
                                      retry_after=self._retry_after(exc),
                                      hint="rate limited; retrying with backoff")
            if code in (401, 403):
                return AuthError(text, provider=PROVIDER, status=code, hint=KEY_HINT)
            if code in (408, 409) or code >= 500 or etype in _SERVER_ERROR_TYPES:
                return ServerError(text, provider=PROVIDER, status=code,
                                   retry_after=self._retry_after(exc))
            return BadRequestError(text, provider=PROVIDER, status=code,
                                   hint="check the model name and request" if code == 404 else "")
        if isinstance(exc, getattr(sdk, "APIResponseValidationError", ())) or _is_json_error(exc):
            if started:
                return StreamInterruptedError("Anthropic stream carried a malformed event (invalid JSON)",
                                              provider=PROVIDER, partial_text=partial)
            return ServerError("Anthropic returned a malformed response (invalid JSON)", provider=PROVIDER)
        return map_transport_failure(exc, provider=PROVIDER, display="Anthropic",
                                     base_url_env=BASE_URL_ENV, redact=self._clean, started=started,
                                     partial_text=partial,
                                     connection_error=isinstance(exc, sdk.APIConnectionError))

    @staticmethod
    def _retry_after(exc: Any) -> float | None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if headers is None:
            return None
        ms = headers.get("retry-after-ms")
        if ms:
            try:
                return max(0.0, float(ms) / 1000.0)
            except ValueError:
                log.debug("unparseable retry-after-ms header %r", ms[:40])
        return parse_retry_after(headers.get("retry-after"))


class _State:
    __slots__ = ("text", "calls", "blocks", "stop_reason", "input_tokens", "output_tokens", "cache_read",
                 "cache_write", "events", "done")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[ToolCall] = []
        self.blocks: dict[int, dict] = {}
        self.stop_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read = 0
        self.cache_write = 0
        self.events = 0
        self.done = False


def _tool_result_content(msg: dict) -> str | list[dict]:
    """Plain text, or text + image blocks (+ the structured content as JSON text) when there is more."""
    text = msg.get("content", "")
    if not msg.get("images") and not isinstance(msg.get("structured"), dict):
        return text
    blocks: list[dict] = [{"type": "text", "text": text}] if text else []
    if isinstance(msg.get("structured"), dict) and not _is_json_of(text, msg["structured"]):
        blocks.append({"type": "text", "text": "structuredContent: " + json.dumps(msg["structured"])})
    for image in msg.get("images") or []:
        data = image["data"]
        encoded = data if isinstance(data, str) else base64.b64encode(data).decode("ascii")
        blocks.append({"type": "image", "source": {"type": "base64", "media_type": image["mime_type"],
                                                   "data": encoded}})
    return blocks


def _is_json_of(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == value)
    except ValueError:
        return False


def _count(usage: Any, name: str) -> int:
    return int(getattr(usage, name, 0) or 0)


def _input_tokens(usage: Any) -> int:
    return sum(_count(usage, name) for name in ("input_tokens", *_CACHE_FIELDS))


def _system_blocks(system: str, breaks: tuple[int, ...]) -> tuple[str | list[dict], int]:
    """The system prompt as text blocks split at `breaks`, each ending in a breakpoint (at most
    `MAX_CACHE_BREAKPOINTS`, the last ones kept: the longest prefixes); plain text without
    breaks.  Returns it and how many breakpoints it holds."""
    cuts = sorted({b for b in breaks if 0 < b <= len(system)})[-MAX_CACHE_BREAKPOINTS:]
    if not cuts:
        return system, 0
    blocks: list[dict] = []
    start = 0
    for cut in cuts:
        blocks.append({"type": "text", "text": system[start:cut], "cache_control": dict(_EPHEMERAL)})
        start = cut
    if start < len(system):
        blocks.append({"type": "text", "text": system[start:]})
    return blocks, len(cuts)


def _mark_conversation(messages: list[dict], allowed: int) -> None:
    """Breakpoints on the last block of the conversation and on the end of the previous
    request (the last block of the user turn before the latest assistant turn), so each
    round of a tool loop writes its history once and the next round reads it."""
    if not messages or not messages[-1]["content"]:
        return
    targets = [messages[-1]]
    user_turns = [m for m in messages[:-1] if m["role"] == "user" and m["content"]]
    if user_turns:
        targets.append(user_turns[-1])
    for message in targets[:max(0, allowed)]:
        message["content"][-1]["cache_control"] = dict(_EPHEMERAL)


def _stop(stop_reason: str | None, calls: list[ToolCall]) -> str:
    if stop_reason:
        return str(stop_reason)
    return "tool_use" if calls else "end_turn"


def _is_json_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, json.JSONDecodeError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
