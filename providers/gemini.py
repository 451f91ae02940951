"""Gemini adapter (google-genai SDK) behind the `providers.base` seam.

- One `genai.Client` per adapter instance; an instance serves one session.
- The SDK's own retries are off (`HttpRetryOptions(attempts=1)`): `providers.retry` owns retries.
- Tool calls without an id from the API get a local id (`gcall_...`); local ids never go back
  on the wire.  Thought signatures (Gemini 3) are remembered per call id and echoed back with
  the call in later requests, which the API requires for multi-turn tool use.
- Usage: `promptTokenCount` in, `candidatesTokenCount + thoughtsTokenCount` out (thinking
  tokens are billed as output), from the last response/stream chunk that carries them;
  `cachedContentTokenCount` (an implicit or explicit cache hit, part of the prompt) as
  `Usage.cache_read_tokens`.
- Explicit caches (`client.caches`): `create_cache` / `extend_cache` / `delete_cache`.  A request
  whose `ChatRequest.cache.cached_content` names one sends neither system instruction nor
  tools (the cache holds them); if the cache is gone (expired, deleted) the request is sent
  once more without it.
- Errors map to `providers.base` classes; messages carry the provider's own text, redacted.
- Abort: the SDK's httpx client gets our request hook (`client_args`), so a cancel shuts the
  call's socket down even before the first byte (`sdk_calls.cancellable`).
"""
from __future__ import annotations

import base64
import logging
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any

from providers import credentials, tool_schema
from providers.base import (
    AuthError,
    BadRequestError,
    CancelledByUser,
    CancelSignal,
    ChatRequest,
    ChatResponse,
    ChunkCallback,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    ToolCall,
    ToolSpec,
    Usage,
    check_cancel,
    interrupt_on_cancel,
)
from providers.retry import parse_retry_after
from providers.sdk_calls import OpenSockets, cancellable, map_transport_failure, stream_items

log = logging.getLogger(__name__)

PROVIDER = "gemini"
BASE_URL_ENV = "GOOGLE_GEMINI_BASE_URL"
KEY_HINT = ("set GEMINI_API_KEY (or GOOGLE_API_KEY), or add [gemini] api_key to "
            "~/.config/mma-desk/credentials.toml")
_FINISH = {"STOP": "end_turn", "MAX_TOKENS": "max_tokens"}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")


@dataclass(frozen=True)
class CacheInfo:
    """An explicit cache as the API describes it: its name, the tokens it holds, when it expires."""
    name: str
    tokens: int
    expire_time: float | None        # epoch seconds


class GeminiAdapter:
    name = PROVIDER

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *,
                 timeout: float | None = 600.0, api_version: str | None = None):
        key = api_key or credentials.get_api_key(PROVIDER)
        if not key:
            raise ProviderUnavailableError("no Gemini API key configured", provider=PROVIDER, hint=KEY_HINT)
        try:
            from google import genai
            from google.genai import errors as genai_errors
            from google.genai import types
        except ImportError as exc:
            raise ProviderUnavailableError(f"google-genai SDK is not installed ({exc.name})",
                                           provider=PROVIDER, hint="pip install google-genai") from None
        self._types = types
        self._errors = genai_errors
        self._key = key
        self.base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        self._sockets = OpenSockets()
        http_options = types.HttpOptions(
            base_url=self.base_url,
            api_version=api_version,
            timeout=int(timeout * 1000) if timeout else None,
            retry_options=types.HttpRetryOptions(attempts=1),  # ours: providers.retry
            client_args={"event_hooks": self._sockets.event_hooks()},
        )
        self._client = genai.Client(api_key=key, vertexai=False, http_options=http_options)
        # local call id -> (id the API gave or None, thought signature bytes or None)
        self._calls: dict[str, tuple[str | None, bytes | None]] = {}

    # ------------------------------------------------------------------ public

    def generate(self, request: ChatRequest, on_chunk: ChunkCallback | None = None) -> ChatResponse:
        check_cancel(request)
        contents = self._contents(request.messages)
        try:
            return self._call(request, contents, self._config(request), on_chunk)
        except (BadRequestError, AuthError) as exc:
            if not (request.cache and request.cache.cached_content and _cache_missing(exc)):
                raise
            log.warning("gemini: cached content %s is gone (%s); sending the prompt uncached",
                        request.cache.cached_content, exc)
            return self._call(request, contents, self._config(request, use_cache=False), on_chunk)

    def _call(self, request: ChatRequest, contents: list[Any], config: Any,
              on_chunk: ChunkCallback | None) -> ChatResponse:
        with cancellable(request, self._sockets):
            if on_chunk is None:
                return self._generate_once(request, contents, config)
            return self._generate_stream(request, contents, config, on_chunk)

    # ------------------------------------------------------------------ explicit caches

    def create_cache(self, model: str, system: str, tools: list[ToolSpec], ttl_s: int, display_name: str,
                     cancel: CancelSignal | None = None) -> CacheInfo:
        """`client.caches.create`: a cache holding `system` and `tools` for `ttl_s` seconds."""
        t = self._types
        config = t.CreateCachedContentConfig(system_instruction=system or None, tools=self._tools(tools) or None,
                                             ttl=f"{int(ttl_s)}s", display_name=display_name)
        cached = self._cache_call(lambda: self._client.caches.create(model=model, config=config), cancel)
        usage = getattr(cached, "usage_metadata", None)
        return CacheInfo(str(cached.name), int(getattr(usage, "total_token_count", 0) or 0),
                         _epoch(getattr(cached, "expire_time", None)))

    def extend_cache(self, name: str, ttl_s: int, cancel: CancelSignal | None = None) -> float | None:
        """`client.caches.update`: keep the cache `ttl_s` seconds from now; its new expiry."""
        config = self._types.UpdateCachedContentConfig(ttl=f"{int(ttl_s)}s")
        cached = self._cache_call(lambda: self._client.caches.update(name=name, config=config), cancel)
        return _epoch(getattr(cached, "expire_time", None))

    def delete_cache(self, name: str, cancel: CancelSignal | None = None) -> bool:
        """`client.caches.delete`; False when it was gone already (expired, or deleted)."""
        try:
            self._cache_call(lambda: self._client.caches.delete(name=name), cancel)
        except (BadRequestError, AuthError) as exc:
            if exc.status in (403, 404):
                return False
            raise
        return True

    def _cache_call(self, call: Any, cancel: CancelSignal | None) -> Any:
        with interrupt_on_cancel(cancel, self._sockets.shutdown):
            try:
                return call()
            except Exception as exc:  # every SDK/transport failure becomes a ProviderError
                if cancel is not None and cancel.is_set():
                    raise CancelledByUser("cancelled by the user", provider=PROVIDER) from None
                raise self._map_error(exc) from None

    # ------------------------------------------------------------------ requests

    def _tools(self, specs: list[ToolSpec]) -> list[Any]:
        t = self._types
        if not specs:
            return []
        return [t.Tool(function_declarations=[
            t.FunctionDeclaration(name=spec.name, description=spec.description,
                                  parameters_json_schema=tool_schema.for_gemini(spec.parameters))
            for spec in specs])]

    def _config(self, request: ChatRequest, use_cache: bool = True) -> Any:
        t = self._types
        kwargs: dict[str, Any] = {"max_output_tokens": request.max_output_tokens}
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        cached = request.cache.cached_content if request.cache is not None and use_cache else None
        if cached:                      # the cache holds the system instruction and the tools
            kwargs["cached_content"] = cached
            return t.GenerateContentConfig(**kwargs)
        if request.system:
            kwargs["system_instruction"] = request.system
        if request.tools:
            kwargs["tools"] = self._tools(request.tools)
            kwargs["automatic_function_calling"] = t.AutomaticFunctionCallingConfig(disable=True)
        return t.GenerateContentConfig(**kwargs)

    def _contents(self, messages: list[dict]) -> list[Any]:
        t = self._types
        contents: list[Any] = []

        def add(role: str, parts: list[Any]) -> None:
            if not parts:
                return
            if contents and contents[-1].role == role:
                contents[-1].parts.extend(parts)
            else:
                contents.append(t.Content(role=role, parts=parts))

        for msg in messages:
            role = msg.get("role")
            if role == "user":
                parts = []
                if msg.get("content"):
                    parts.append(t.Part(text=msg["content"]))
                for image in msg.get("images") or []:
                    parts.append(t.Part.from_bytes(data=_image_bytes(image["data"]), mime_type=image["mime_type"]))
                add("user", parts)
            elif role == "assistant":
                parts = [t.Part(text=msg["content"])] if msg.get("content") else []
                for call in msg.get("tool_calls") or []:
                    wire_id, signature = self._calls.get(call["id"], (None, None))
                    parts.append(t.Part(
                        function_call=t.FunctionCall(name=call["name"], args=dict(call.get("args") or {}),
                                                     id=wire_id),
                        thought_signature=signature))
                add("model", parts)
            elif role == "tool":
                wire_id, _ = self._calls.get(msg.get("tool_call_id", ""), (None, None))
                add("user", [t.Part(function_response=t.FunctionResponse(
                    name=msg["name"], id=wire_id, response=_function_response(msg))),
                    *(t.Part.from_bytes(data=_image_bytes(image["data"]), mime_type=image["mime_type"])
                      for image in msg.get("images") or [])])
            else:
                raise BadRequestError(f"unknown message role {role!r}", provider=PROVIDER)
        return contents

    # ------------------------------------------------------------------ calls

    def _generate_once(self, request: ChatRequest, contents: list[Any], config: Any) -> ChatResponse:
        try:
            response = self._client.models.generate_content(model=request.model, contents=contents,
                                                            config=config)
        except Exception as exc:  # every SDK/transport failure becomes a ProviderError
            raise self._map_error(exc) from None
        check_cancel(request)
        state = _State()
        self._absorb(response, state, None)
        if state.finish is None and not state.blocked:
            raise ServerError("Gemini response has no finishReason (incomplete response)",
                              provider=PROVIDER)
        return self._response(request, state)

    def _generate_stream(self, request: ChatRequest, contents: list[Any], config: Any,
                         on_chunk: ChunkCallback) -> ChatResponse:
        state = _State()
        try:  # a generator: the HTTP request itself happens on the first next()
            stream = self._client.models.generate_content_stream(model=request.model, contents=contents,
                                                                 config=config)
        except Exception as exc:
            raise self._map_error(exc) from None
        try:
            for chunk in stream_items(stream, lambda exc: self._map_error(exc, state=state)):
                state.chunks += 1
                check_cancel(request)
                self._absorb(chunk, state, on_chunk)
                check_cancel(request)
        finally:
            # Releases the HTTP response when we stop early.  The SDK declares an Iterator but
            # returns a generator; look the method up rather than assume it.
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if state.finish is None and not state.blocked:
            raise StreamInterruptedError(
                f"Gemini stream ended without a finishReason after {state.chunks} chunk(s)",
                provider=PROVIDER, partial_text="".join(state.text))
        return self._response(request, state)

    def _absorb(self, response: Any, state: _State, on_chunk: ChunkCallback | None) -> None:
        usage = getattr(response, "usage_metadata", None)
        if usage is not None:
            if usage.prompt_token_count is not None:
                state.input_tokens = usage.prompt_token_count
            if usage.candidates_token_count is not None or usage.thoughts_token_count is not None:
                state.output_tokens = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
            if usage.cached_content_token_count is not None:
                state.cached_tokens = usage.cached_content_token_count
        feedback = getattr(response, "prompt_feedback", None)
        if feedback is not None and feedback.block_reason is not None:
            state.blocked = "blocked_" + _enum_name(feedback.block_reason).lower()
        for candidate in (response.candidates or [])[:1]:
            content = candidate.content
            for part in (content.parts if content is not None and content.parts else []):
                if part.function_call is not None:
                    fc = part.function_call
                    local_id = fc.id or f"gcall_{uuid.uuid4().hex[:12]}"
                    self._calls[local_id] = (fc.id, part.thought_signature)
                    state.calls.append(ToolCall(id=local_id, name=fc.name or "", args=dict(fc.args or {})))
                elif part.text and not part.thought:
                    state.text.append(part.text)
                    if on_chunk is not None:
                        on_chunk(part.text)
            if candidate.finish_reason is not None:
                state.finish = _enum_name(candidate.finish_reason)

    def _response(self, request: ChatRequest, state: _State) -> ChatResponse:
        if state.calls:
            stop = "tool_use"
        elif state.finish is None:
            stop = state.blocked or "end_turn"
        else:
            stop = _FINISH.get(state.finish, state.finish.lower())
        return ChatResponse(text="".join(state.text), tool_calls=state.calls,
                            usage=Usage(state.input_tokens, state.output_tokens,
                                        min(state.cached_tokens, state.input_tokens)),
                            stop_reason=stop, model=request.model)

    # ------------------------------------------------------------------ errors

    def _clean(self, text: str) -> str:
        return credentials.redact(str(text), (self._key,))

    def _map_error(self, exc: BaseException, state: _State | None = None) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        partial = "".join(state.text) if state is not None else ""
        started = state is not None and state.chunks > 0
        log.debug("gemini call failed: %s: %s", type(exc).__name__, self._clean(str(exc))[:500])
        errors = self._errors
        if isinstance(exc, errors.APIError):
            code = int(exc.code or 0)
            message = self._clean(exc.message or str(exc.details))[:1000]
            text = f"HTTP {code} {exc.status or ''}".rstrip() + f": {message}"
            if started:
                return StreamInterruptedError(f"Gemini stream failed: {text}", provider=PROVIDER,
                                              status=code, partial_text=partial)
            if code == 429:
                return RateLimitError(text, provider=PROVIDER, status=code,
                                      retry_after=self._retry_after(exc),
                                      hint="rate limited or out of quota; retrying with backoff")
            if code in (401, 403) or _is_bad_key(exc):
                return AuthError(text, provider=PROVIDER, status=code, hint=KEY_HINT)
            if code == 408 or code >= 500:
                return ServerError(text, provider=PROVIDER, status=code)
            return BadRequestError(text, provider=PROVIDER, status=code,
                                   hint="check the model name and request" if code == 404 else "")
        if isinstance(exc, (errors.UnknownApiResponseError, ValueError)) and _looks_malformed(exc):
            if started:
                return StreamInterruptedError("Gemini stream carried a malformed chunk (invalid JSON)",
                                              provider=PROVIDER, partial_text=partial)
            return ServerError("Gemini returned a malformed response (invalid JSON)", provider=PROVIDER)
        return map_transport_failure(exc, provider=PROVIDER, display="Gemini",
                                     base_url_env=BASE_URL_ENV, redact=self._clean, started=started,
                                     partial_text=partial)

    @staticmethod
    def _retry_after(exc: Any) -> float | None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if headers is not None:
            value = parse_retry_after(headers.get("retry-after"))
            if value is not None:
                return value
        details = exc.details if isinstance(exc.details, dict) else {}
        for item in (details.get("error", {}) or {}).get("details", []) or []:
            if isinstance(item, dict) and "RetryInfo" in str(item.get("@type", "")):
                match = _DURATION.match(str(item.get("retryDelay", "")))
                if match:
                    return float(match.group(1))
        return None


class _State:
    __slots__ = ("text", "calls", "finish", "blocked", "input_tokens", "output_tokens", "cached_tokens", "chunks")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[ToolCall] = []
        self.finish: str | None = None
        self.blocked: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens = 0
        self.chunks = 0


def _image_bytes(data: str | bytes) -> bytes:
    return base64.b64decode(data) if isinstance(data, str) else data


def _function_response(msg: dict) -> dict:
    """A tool result as Gemini's `response` object: `result` (or `error` for a failed call),
    plus the MCP structured content when there is some.  Images follow as their own parts."""
    response: dict[str, Any] = {"error" if msg.get("is_error") else "result": msg.get("content", "")}
    if isinstance(msg.get("structured"), dict):
        response["structured"] = msg["structured"]
    return response


def _epoch(value: Any) -> float | None:
    """A datetime from the SDK as epoch seconds."""
    timestamp = getattr(value, "timestamp", None)
    return float(timestamp()) if callable(timestamp) else None


def _cache_missing(exc: ProviderError) -> bool:
    """The API's answer to a request naming a cached content that no longer exists."""
    return exc.status in (403, 404) and "cachedcontent" in str(exc).lower().replace(" ", "")


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", None) or getattr(value, "name", None) or value)


def _is_bad_key(exc: Any) -> bool:
    """The Gemini API answers a bad key with 400 INVALID_ARGUMENT / reason API_KEY_INVALID."""
    if getattr(exc, "code", None) != 400:
        return False
    text = f"{exc.message or ''} {exc.details}"
    return "API_KEY_INVALID" in text or "API key not valid" in text


def _looks_malformed(exc: BaseException) -> bool:
    import json
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, json.JSONDecodeError) or type(seen).__name__ in (
                "UnknownApiResponseError", "ValidationError"):
            return True
        seen = seen.__cause__
    return False
