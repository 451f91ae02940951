"""The wire emulator's prompt caches: what Anthropic and Gemini bill as cached, deterministically.

A request is cut into segments in the order the provider reads them (Anthropic: tools, system
blocks, message blocks; Gemini: system instruction, tools, content parts), each with the
characters the emulator counts for it (the same as `parse_prompt.text_chars`, so cached tokens
are a part of the prompt tokens the emulator bills) and a running hash of everything up to it.
A cache entry is that hash, per model, alive until its TTL runs out; a hit refreshes it.
Tokens are chars // 4 for a cached prefix, so a prefix never counts more than its prompt.

Anthropic (`cache_control` breakpoints): more than `MAX_BREAKPOINTS` is a 400; the longest
cached prefix at or up to `LOOKBACK_BLOCKS` before any breakpoint is read; every breakpoint
whose prefix is long enough (`min_tokens`) and not cached is written; `input_tokens` is the
rest.  Entries become visible when the response starts, so requests sent in the same instant
all miss (what the engine's warm-up avoids).

Gemini: implicit hits on any part boundary of an earlier request's prefix (long enough, same
model, within the TTL) report `cachedContentTokenCount`; explicit `cachedContents` hold a
system instruction, tools and contents with a TTL, are billed once at creation (their tokens as
input, `cache_write_tokens`) and for storage (tokens x seconds alive, `storage_token_s`) until
deleted or expired, and a request naming one is read from it in full.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_BREAKPOINTS = 4            # Anthropic's limit per request
LOOKBACK_BLOCKS = 20           # Anthropic checks this many blocks before a breakpoint for a hit
DEFAULT_TTL_S = 300.0          # Anthropic's ephemeral cache; also the emulator's implicit Gemini cache
DEFAULT_MIN_TOKENS = 1024
_TTL = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")


class CacheRequestError(Exception):
    """A request the provider refuses because of how it uses the cache (status + message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Segment:
    chars: int
    material: str              # what the hash covers (the block without its cache_control)
    breakpoint: bool = False


@dataclass
class CacheSplit:
    """How a prompt's tokens were billed: read from / written to the cache, and the rest."""
    read: int = 0
    write: int = 0


@dataclass
class ExplicitCache:
    name: str
    model: str
    display_name: str
    body: dict                 # systemInstruction / tools / toolConfig / contents
    tokens: int
    created: float
    expires: float
    deleted: float | None = None

    def resource(self) -> dict:
        def stamp(t: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"
        return {"name": self.name, "model": f"models/{self.model}", "displayName": self.display_name,
                "createTime": stamp(self.created), "updateTime": stamp(self.created),
                "expireTime": stamp(self.expires), "usageMetadata": {"totalTokenCount": self.tokens}}


def _material(block: Any) -> str:
    if isinstance(block, dict):
        block = {k: v for k, v in block.items() if k != "cache_control"}
    return json.dumps(block, sort_keys=True, ensure_ascii=False)


def _text_of(value: Any) -> str:
    from tests.wire_emulator import _text_of as text_of
    return text_of(value)


def anthropic_segments(body: dict) -> list[Segment]:
    segments = [Segment(0, "tool:" + _material(tool), bool(isinstance(tool, dict) and tool.get("cache_control")))
                for tool in body.get("tools") or []]
    system = body.get("system")
    if isinstance(system, str):
        segments.append(Segment(len(system), "system:" + system))
    elif isinstance(system, list):
        for block in system:
            segments.append(Segment(len(_text_of(block)), "system:" + _material(block),
                                    bool(isinstance(block, dict) and block.get("cache_control"))))
    for message in body.get("messages") or []:
        role = str(message.get("role"))
        content = message.get("content")
        if isinstance(content, str):
            segments.append(Segment(len(content), f"{role}:" + content))
            continue
        for block in content or []:
            kind = block.get("type")
            chars = (len(block.get("text", "")) if kind == "text" else
                     len(_text_of(block.get("content", ""))) if kind == "tool_result" else
                     len(json.dumps(block.get("input", {}))) if kind == "tool_use" else 0)
            segments.append(Segment(chars, f"{role}:" + _material(block), bool(block.get("cache_control"))))
    return segments


def gemini_segments(body: dict) -> list[Segment]:
    segments = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(system, dict):
        text = "".join(p.get("text", "") for p in system.get("parts", []) if isinstance(p, dict))
        segments.append(Segment(len(text), "system:" + _material(system)))
    if body.get("tools"):
        segments.append(Segment(0, "tools:" + _material(body["tools"])))
    if body.get("toolConfig"):
        segments.append(Segment(0, "toolConfig:" + _material(body["toolConfig"])))
    for content in body.get("contents") or []:
        role = str(content.get("role", "user"))
        for part in content.get("parts") or []:
            if "text" in part:
                chars = len(part["text"])
            elif "functionResponse" in part:
                chars = len(json.dumps(part["functionResponse"].get("response", {}), sort_keys=True))
            elif "functionCall" in part:
                chars = len(json.dumps(part["functionCall"]))
            else:
                chars = 0
            segments.append(Segment(chars, f"{role}:" + _material(part)))
    return segments


def _prefix_keys(model: str, segments: list[Segment]) -> tuple[list[str], list[int]]:
    """The running hash and character count after each segment."""
    digest = hashlib.sha256(model.encode())
    keys, cumulative, chars = [], [], 0
    for segment in segments:
        digest.update(b"\x00" + segment.material.encode("utf-8"))
        keys.append(digest.hexdigest())
        chars += segment.chars
        cumulative.append(chars)
    return keys, cumulative


def published_minimum(model: str) -> int:
    """Gemini Pro 4,096 and Flash 1,024; Claude Haiku 4.5+, Opus 4.5+ 4,096, Sonnet 4.6+ 2,048,
    older Sonnet and Opus 1,024 (newer versions are assumed to keep their family's minimum)."""
    version = re.search(r"-(\d+)-(\d+)", model)
    newer = version is not None and (int(version.group(1)), int(version.group(2))) >= (4, 5)
    if model.startswith("gemini-"):
        return 4096 if "-pro" in model else 1024
    if "haiku" in model or ("opus" in model and newer):
        return 4096
    if "sonnet" in model and version is not None and (int(version.group(1)), int(version.group(2))) >= (4, 6):
        return 2048
    return 1024


class PromptCaches:
    """Every cache the emulated providers hold; thread-safe.  `clock` is injectable for TTL tests."""

    def __init__(self, clock: Callable[[], float] = time.time, ttl_s: float = DEFAULT_TTL_S,
                 min_tokens: int | dict[str, int] | None = None, implicit: bool = True):
        self.clock = clock
        self.ttl_s = ttl_s
        self.min_tokens = min_tokens if min_tokens is not None else {}
        self.implicit = implicit             # Gemini implicit caching (on, as the API has it)
        self._lock = threading.Lock()
        self._entries: dict[str, float] = {}         # prefix key -> expiry
        self._explicit: dict[str, ExplicitCache] = {}
        self._ids = 0

    def minimum(self, model: str) -> int:
        """The shortest prefix the provider caches for `model`: `min_tokens` when it is a
        number, else its entry, else the providers' published minimum by model family."""
        if isinstance(self.min_tokens, int):
            return self.min_tokens
        if model in self.min_tokens:
            return self.min_tokens[model]
        return published_minimum(model)

    def _alive(self, key: str, now: float) -> bool:
        expiry = self._entries.get(key)
        return expiry is not None and expiry > now

    # -- Anthropic
    def anthropic(self, model: str, body: dict) -> tuple[CacheSplit, Callable[[], None]]:
        """The read/write split of a request, and the call that stores its writes (to run
        when the response starts).  Raises `CacheRequestError` for too many breakpoints."""
        segments = anthropic_segments(body)
        breaks = [i for i, s in enumerate(segments) if s.breakpoint]
        if len(breaks) > MAX_BREAKPOINTS:
            raise CacheRequestError(400, f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be "
                                         f"provided. Found {len(breaks)}.")
        if not breaks:
            return CacheSplit(), lambda: None
        keys, cumulative = _prefix_keys(model, segments)
        now = self.clock()
        minimum = self.minimum(model)
        with self._lock:
            hit = -1
            for bp in breaks:
                for i in range(max(0, bp - LOOKBACK_BLOCKS + 1), bp + 1):
                    if i > hit and self._alive(keys[i], now):
                        hit = i
            read = cumulative[hit] // 4 if hit >= 0 else 0
            to_write = [bp for bp in breaks if bp > hit and cumulative[bp] // 4 >= minimum
                        and not self._alive(keys[bp], now)]
            if hit >= 0:
                self._entries[keys[hit]] = now + self.ttl_s      # a hit refreshes the entry
        write = cumulative[to_write[-1]] // 4 - read if to_write else 0

        def store() -> None:
            stored = self.clock()
            with self._lock:
                for bp in to_write:
                    self._entries[keys[bp]] = stored + self.ttl_s
        return CacheSplit(read, write), store

    # -- Gemini
    def gemini_expand(self, model: str, body: dict) -> tuple[dict, ExplicitCache | None]:
        """A request naming a cached content, as the model sees it (the cache's parts first).
        Raises `CacheRequestError` for what the API refuses."""
        name = body.get("cachedContent")
        if not name:
            return body, None
        if any(body.get(k) for k in ("systemInstruction", "system_instruction", "tools", "toolConfig")):
            raise CacheRequestError(400, "CachedContent can not be used with GenerateContent request setting "
                                         "system_instruction, tools or tool_config.\n\nProposed fix: move "
                                         "those values to CachedContent from GenerateContent request.")
        with self._lock:
            cache = self._live_explicit(str(name), self.clock())
        if cache is None:
            raise CacheRequestError(403, f"CachedContent not found (or permission denied): {name}")
        if cache.model != model:
            raise CacheRequestError(400, f"Model used by GenerateContent request (models/{model}) and "
                                         f"CachedContent (models/{cache.model}) has to be the same.")
        expanded = {**{k: v for k, v in cache.body.items() if k != "contents"},
                    **{k: v for k, v in body.items() if k != "cachedContent"},
                    "contents": list(cache.body.get("contents") or []) + list(body.get("contents") or [])}
        return expanded, cache

    def gemini_cached_tokens(self, model: str, expanded: dict, explicit: ExplicitCache | None) -> tuple[int, Callable[[], None]]:
        """Tokens of the prompt served from a cache, and the call that records this prompt's
        prefixes for implicit hits (run when the response starts)."""
        if explicit is not None:
            return explicit.tokens, lambda: None
        if not self.implicit:
            return 0, lambda: None
        segments = gemini_segments(expanded)
        keys, cumulative = _prefix_keys(model, segments)
        now = self.clock()
        minimum = self.minimum(model)
        with self._lock:
            hit = max((i for i, key in enumerate(keys) if self._alive(key, now)), default=-1)
            if hit >= 0:
                self._entries[keys[hit]] = now + self.ttl_s
        cached = cumulative[hit] // 4 if hit >= 0 else 0

        def store() -> None:
            stored = self.clock()
            with self._lock:
                for key, chars in zip(keys, cumulative, strict=True):
                    if chars // 4 >= minimum:
                        self._entries[key] = stored + self.ttl_s
        return cached, store

    def _live_explicit(self, name: str, now: float) -> ExplicitCache | None:
        cache = self._explicit.get(name)
        if cache is None or cache.deleted is not None or cache.expires <= now:
            return None
        return cache

    def create(self, body: dict) -> ExplicitCache:
        model = str(body.get("model", "")).removeprefix("models/")
        if not model:
            raise CacheRequestError(400, "model is required")
        parts = {k: body[k] for k in ("systemInstruction", "tools", "toolConfig", "contents") if body.get(k)}
        if not parts:
            raise CacheRequestError(400, "Cached content must have contents, a system instruction or tools.")
        tokens = sum(s.chars for s in gemini_segments(parts)) // 4
        if tokens < self.minimum(model):
            raise CacheRequestError(400, f"Cached content is too small. total_token_count={tokens}, "
                                         f"min_total_token_count={self.minimum(model)}")
        ttl = self._ttl(body)
        now = self.clock()
        with self._lock:
            self._ids += 1
            cache = ExplicitCache(f"cachedContents/emu{self._ids:06d}", model, str(body.get("displayName", "")),
                                  parts, tokens, now, now + ttl)
            self._explicit[cache.name] = cache
        return cache

    def _ttl(self, body: dict) -> float:
        if "ttl" not in body:
            return 3600.0                     # the API's default
        match = _TTL.match(str(body["ttl"]))
        if not match:
            raise CacheRequestError(400, f"Invalid ttl {body['ttl']!r}: expected a duration like \"300s\"")
        return float(match.group(1))

    def get(self, name: str) -> ExplicitCache:
        with self._lock:
            cache = self._live_explicit(name, self.clock())
        if cache is None:
            raise CacheRequestError(403, f"CachedContent not found (or permission denied): {name}")
        return cache

    def update(self, name: str, body: dict) -> ExplicitCache:
        ttl = self._ttl(body)
        with self._lock:
            now = self.clock()
            cache = self._live_explicit(name, now)
            if cache is None:
                raise CacheRequestError(403, f"CachedContent not found (or permission denied): {name}")
            cache.expires = now + ttl
            return cache

    def delete(self, name: str) -> ExplicitCache:
        with self._lock:
            now = self.clock()
            cache = self._live_explicit(name, now)
            if cache is None:
                raise CacheRequestError(403, f"CachedContent not found (or permission denied): {name}")
            cache.deleted = now
            return cache

    def listed(self) -> list[ExplicitCache]:
        with self._lock:
            now = self.clock()
            return [c for c in self._explicit.values() if self._live_explicit(c.name, now) is not None]

    def explicit_caches(self) -> list[ExplicitCache]:
        """Every explicit cache ever created (deleted and expired ones too)."""
        with self._lock:
            return list(self._explicit.values())

    def storage_token_s(self) -> dict[str, int]:
        """model -> tokens x seconds of explicit cache storage so far (until deleted or expired)."""
        now = self.clock()
        out: dict[str, int] = {}
        with self._lock:
            for cache in self._explicit.values():
                end = min(x for x in (cache.deleted, cache.expires, now) if x is not None)
                out[cache.model] = out.get(cache.model, 0) + int(cache.tokens * max(0.0, end - cache.created))
        return out
