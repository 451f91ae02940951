"""The adapter seam: provider-neutral request/response types and errors.

`ai_client` builds a `ChatRequest`, hands it to one adapter's `generate()`,
and gets a `ChatResponse` back.  The tool loop, comms log, usage accounting
and retries live in `ai_client`; an adapter only translates to and from one
provider's wire format.  The mock adapter and the real SDK adapters go
through exactly this interface, so tests of the mock exercise the same code
paths as production.

Neutral message shapes (`ChatRequest.messages`):
  {"role": "user", "content": str, "images"?: [{"mime_type": str, "data": bytes}]}
  {"role": "assistant", "content": str, "tool_calls"?: [ToolCall.to_dict()]}
  {"role": "tool", "tool_call_id": str, "name": str, "content": str,
   "is_error"?: bool, "images"?: [{"mime_type": str, "data": base64 str}], "structured"?: dict}
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass
class ToolSpec:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments object


@dataclass
class ToolCall:
    id: str
    name: str
    args: dict

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "args": dict(self.args)}


@dataclass
class ToolResult:
    """What a tool call gave back, before a provider translates it (`message()`).

    `text` is what every provider gets; `is_error` marks a failed call (Anthropic's
    `is_error`, Gemini's `error` key); `images` (base64) and `structured` (the MCP
    `structuredContent` object) go where the provider's tool-result format has room.
    """
    text: str
    is_error: bool = False
    images: list[dict] = field(default_factory=list)
    structured: dict | None = None

    def message(self, call: ToolCall) -> dict:
        msg: dict = {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": self.text}
        if self.is_error:
            msg["is_error"] = True
        if self.images:
            msg["images"] = list(self.images)
        if self.structured is not None:
            msg["structured"] = self.structured
        return msg


@dataclass
class Usage:
    """What one or more provider responses billed.

    `input_tokens` counts every prompt token, cached or not (as before); the cache fields
    say how many of them the provider's prompt cache served (`cache_read_tokens`, billed at
    the cached price) or stored (`cache_write_tokens`: Anthropic's cache creation, billed at
    1.25x input; a Gemini explicit cache's contents, billed once at the input price).
    `cache_storage_token_s` is a Gemini explicit cache's storage: tokens x seconds kept.
    """
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_storage_token_s: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.cache_read_tokens + other.cache_read_tokens,
                     self.cache_write_tokens + other.cache_write_tokens,
                     self.cache_storage_token_s + other.cache_storage_token_s)

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the full input price."""
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)

    def cache_fields(self) -> dict[str, int]:
        """The cache counts that are not zero, by the ledger's key names (`models.TierUsage`)."""
        fields = {"cache_read": self.cache_read_tokens, "cache_write": self.cache_write_tokens,
                  "cache_storage_token_s": self.cache_storage_token_s}
        return {k: v for k, v in fields.items() if v}


@dataclass(frozen=True)
class PromptCacheUse:
    """How one request uses the provider's prompt cache (`ChatRequest.cache`).

    `system_breaks`: offsets into `ChatRequest.system` where a shared part of it ends (the
    curated context that the chat and Tiers 1-2 share, then the whole system prompt that a
    track's workers share); Anthropic puts a `cache_control` breakpoint at each.
    `conversation`: also mark the growing conversation of a tool loop, so a tool round reads
    its history from the cache instead of paying for it again.
    `cached_content`: a Gemini explicit cache (`cachedContents/...`) that holds this request's
    system instruction and tools; the request then sends neither.
    """
    system_breaks: tuple[int, ...] = ()
    conversation: bool = False
    cached_content: str | None = None


@dataclass
class ChatRequest:
    model: str
    system: str
    messages: list[dict]
    tools: list[ToolSpec] = field(default_factory=list)
    max_output_tokens: int = 8192
    temperature: float | None = None
    # Set by ai_client when the user aborts; adapters check it between chunks and, when it is a
    # `CancelSignal`, register with `interrupt_on_cancel` what unblocks their call (a socket).
    cancel_event: threading.Event | None = None
    # Prompt caching (None: none asked for; Gemini still reports implicit cache hits).
    cache: PromptCacheUse | None = None


@dataclass
class ChatResponse:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "end_turn"  # end_turn | tool_use | max_tokens | other provider-specific value
    model: str = ""


ChunkCallback = Callable[[str], None]


def prefix_fingerprint(system: str, tools: list[ToolSpec]) -> str:
    """What identifies a request's cacheable prefix (system prompt + tool declarations):
    two requests with the same fingerprint send the same prefix bytes."""
    payload = json.dumps({"system": system, "tools": [[t.name, t.description, t.parameters] for t in tools]},
                         sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ProviderAdapter(Protocol):
    name: str

    def generate(self, request: ChatRequest, on_chunk: ChunkCallback | None = None) -> ChatResponse:
        """One model call.  Streams text through `on_chunk` when given.

        Raises a `ProviderError` subclass for anything that went wrong.
        """
        ...


class ProviderError(Exception):
    """Base of every error a provider call can raise.  `hint` tells the user what to do."""
    retryable = False

    def __init__(self, message: str, *, provider: str = "", status: int | None = None,
                 hint: str = "", retry_after: float | None = None, partial_text: str = ""):
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.hint = hint
        self.retry_after = retry_after
        self.partial_text = partial_text

    def user_message(self) -> str:
        text = f"{self.provider or 'provider'}: {self}"
        return f"{text} — {self.hint}" if self.hint else text


class RateLimitError(ProviderError):
    retryable = True


class ServerError(ProviderError):
    retryable = True


class AuthError(ProviderError):
    pass


class BadRequestError(ProviderError):
    pass


class StreamInterruptedError(ProviderError):
    """The stream stopped before the provider said it was done; `partial_text` keeps what arrived."""
    retryable = True


class ProviderUnavailableError(ProviderError):
    """No key, SDK missing, or connection refused."""


class CancelledByUser(ProviderError):
    pass


class CancelSignal(threading.Event):
    """A cancel flag that also interrupts calls blocked on something other than the flag.

    A check between stream chunks does not help a call waiting for a model's first byte
    or for a shell command: `set()` therefore also runs every hook registered with
    `interrupt_with()` (shut the request's socket down, kill the command's process
    group), on the thread that cancels.  Code that only knows `threading.Event` keeps
    working: `set()`, `is_set()`, `wait()` and `clear()` are the Event's.
    """

    def __init__(self) -> None:
        super().__init__()
        self._hooks_lock = threading.Lock()
        self._hooks: dict[int, Callable[[], object]] = {}
        self._hook_ids = itertools.count()

    def set(self) -> None:
        super().set()
        with self._hooks_lock:
            hooks = list(self._hooks.values())
        for hook in hooks:
            _run_hook(hook)

    @contextlib.contextmanager
    def interrupt_with(self, hook: Callable[[], object]) -> Iterator[None]:
        """While the block runs, a cancel calls `hook` (at once if already cancelled)."""
        with self._hooks_lock:
            key = next(self._hook_ids)
            self._hooks[key] = hook
        try:
            if self.is_set():
                _run_hook(hook)
            yield
        finally:
            with self._hooks_lock:
                self._hooks.pop(key, None)


def _run_hook(hook: Callable[[], object]) -> None:
    try:
        hook()
    except Exception:  # one broken hook must not stop the others (or the abort)
        log.exception("cancel hook %r failed", hook)


def interrupt_on_cancel(event: threading.Event | None, hook: Callable[[], object]) -> contextlib.AbstractContextManager:
    """`event.interrupt_with(hook)` for a `CancelSignal`; nothing for a plain Event or None
    (that caller only checks the flag between steps)."""
    if isinstance(event, CancelSignal):
        return event.interrupt_with(hook)
    return contextlib.nullcontext()


def check_cancel(request: ChatRequest) -> None:
    if request.cancel_event is not None and request.cancel_event.is_set():
        raise CancelledByUser("cancelled by the user")
