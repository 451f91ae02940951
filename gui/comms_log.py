"""The comms log the GUI shows: every model call's request, response, errors and retries.

`CommsLog` collects the entries every `ai_client.Session` logs (chat, MMA tiers,
Tier 4) once `install()`ed as `ai_client.comms_log_callback`.  `sink(entry)` is
safe from any thread (it only puts into a `queue.SimpleQueue`); `drain()` moves
entries into `rows` on the GUI thread once per frame.  The Comms panel
(`gui/panel_comms.py`) draws `visible()`; the hook API publishes `summary()`.
Entries arrive already redacted (`ai_client` redacts payloads before logging).
"""
from __future__ import annotations

import itertools
import json
import queue
import time
from dataclasses import dataclass
from typing import Any

import ai_client


@dataclass
class CommsRow:
    seq: int
    ts: float
    time_str: str
    direction: str
    kind: str
    provider: str
    model: str
    label: str
    tokens_in: int | None
    tokens_out: int | None
    preview: str
    entry: dict
    haystack: str

    def full_payload(self) -> str:
        return json.dumps(self.entry.get("payload"), indent=2, ensure_ascii=False, default=str)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _preview(kind: str, payload: Any) -> str:
    if not isinstance(payload, dict):
        return _one_line(payload)
    if kind == "request":
        messages = payload.get("messages") or []
        last = messages[-1] if messages else {}
        return _one_line(f"{len(messages)} msg, system {payload.get('system_chars', 0)} chars: "
                         f"{last.get('content', '')}")
    if kind == "response":
        return _one_line(payload.get("text") or json.dumps(payload.get("tool_calls", []), default=str))
    if kind in ("error", "retry"):
        return _one_line(f"{payload.get('error', '')}: {payload.get('message', '')}")
    return _one_line(json.dumps(payload, ensure_ascii=False, default=str))


class CommsLog:
    """The comms log the GUI shows: a thread-safe inbox, a capped list, filters.

    `sink(entry)` is safe from any thread (it only puts into a `SimpleQueue`), so it can be
    `ai_client.comms_log_callback` (see `install()`).  `drain()` moves entries into the list on
    the GUI thread, once per frame; beyond `limit` entries the oldest are dropped and counted.
    """

    def __init__(self, limit: int = 10_000):
        self.limit = limit
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.rows: list[CommsRow] = []
        self.dropped = 0
        self._seq = itertools.count(1)
        self.filter_kind = ""          # "" = any
        self.filter_provider = ""
        self.filter_direction = ""
        self.filter_text = ""
        self.selected_seq: int | None = None
        self.follow = True             # keep the newest row in view while at the bottom
        self._payload_cache: tuple[int, str] | None = None
        self._visible: list[CommsRow] | None = None
        self.kinds: set[str] = set()
        self.providers: set[str] = set()
        self._installed_prev: Any = None
        self._installed = False
        self._summary: tuple[tuple, dict] | None = None
        self._changes = 0              # bumped whenever `rows` changes (summary cache key)

    # -- any thread ------------------------------------------------------------
    def sink(self, entry: dict) -> None:
        self._inbox.put(entry)

    # -- GUI thread ------------------------------------------------------------
    def install(self) -> None:
        """Make this log `ai_client.comms_log_callback` (every session's entries arrive here)."""
        if not self._installed:
            self._installed_prev = ai_client.comms_log_callback
            ai_client.comms_log_callback = self.sink
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            if ai_client.comms_log_callback == self.sink:
                ai_client.comms_log_callback = self._installed_prev
            self._installed = False

    def drain(self, max_items: int = 100_000) -> int:
        added: list[CommsRow] = []
        while len(added) < max_items:
            try:
                entry = self._inbox.get_nowait()
            except queue.Empty:
                break
            added.append(self._row(entry))
        if not added:
            return 0
        self._changes += 1
        self.rows.extend(added)
        excess = len(self.rows) - self.limit
        if excess > 0:
            del self.rows[:excess]
            self.dropped += excess
            self._visible = None
        elif self._visible is not None:
            self._visible.extend(r for r in added if self._matches(r))
        return len(added)

    def _row(self, entry: dict) -> CommsRow:
        if not isinstance(entry, dict):
            entry = {"kind": "invalid", "payload": {"value": repr(entry)}}
        payload = entry.get("payload", {})
        usage = payload.get("usage") if isinstance(payload, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        ts = entry.get("ts")
        ts = float(ts) if isinstance(ts, (int, float)) else time.time()
        kind = str(entry.get("kind", ""))
        provider = str(entry.get("provider", ""))
        self.kinds.add(kind)
        self.providers.add(provider)
        row = CommsRow(
            seq=next(self._seq), ts=ts,
            time_str=time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}",
            direction=str(entry.get("direction", "")), kind=kind, provider=provider,
            model=str(entry.get("model", "")), label=str(entry.get("label", "")),
            tokens_in=usage.get("input_tokens"), tokens_out=usage.get("output_tokens"),
            preview=_preview(kind, payload), entry=entry, haystack="")
        body = json.dumps(payload, ensure_ascii=False, default=str)
        row.haystack = " ".join((row.direction, kind, provider, row.model, row.label, body)).lower()
        return row

    def set_filter(self, *, kind: str | None = None, provider: str | None = None,
                   direction: str | None = None, text: str | None = None) -> None:
        changed = False
        for attr, value in (("filter_kind", kind), ("filter_provider", provider),
                            ("filter_direction", direction), ("filter_text", text)):
            if value is not None and getattr(self, attr) != value:
                setattr(self, attr, value)
                changed = True
        if changed:
            self._visible = None

    def _matches(self, row: CommsRow) -> bool:
        if self.filter_kind and row.kind != self.filter_kind:
            return False
        if self.filter_provider and row.provider != self.filter_provider:
            return False
        if self.filter_direction and row.direction != self.filter_direction:
            return False
        text = self.filter_text.strip().lower()
        return not text or all(word in row.haystack for word in text.split())

    @property
    def filtering(self) -> bool:
        return bool(self.filter_kind or self.filter_provider or self.filter_direction or self.filter_text.strip())

    def reset_filters(self) -> None:
        """Show every row again (the filter row's *Reset filters*, the warning's *Show all*)."""
        self.set_filter(kind="", provider="", direction="", text="")

    def visible(self) -> list[CommsRow]:
        if self._visible is None:
            self._visible = [r for r in self.rows if self._matches(r)]
        return self._visible

    def select(self, seq: int | None) -> None:
        self.selected_seq = seq

    @property
    def selected(self) -> CommsRow | None:
        if self.selected_seq is None:
            return None
        for row in reversed(self.rows):
            if row.seq == self.selected_seq:
                return row
        return None

    def selected_payload(self) -> str:
        """Pretty JSON of the selected entry's payload (formatted once per selection)."""
        row = self.selected
        if row is None:
            return ""
        if self._payload_cache is None or self._payload_cache[0] != row.seq:
            self._payload_cache = (row.seq, row.full_payload())
        return self._payload_cache[1]

    def clear(self) -> None:
        self._changes += 1
        self.rows.clear()
        self._visible = None
        self.selected_seq = None

    def snapshot(self, last: int = 20) -> dict:
        visible = self.visible()
        return {
            "count": len(self.rows), "dropped": self.dropped, "visible": len(visible),
            "filters": {"kind": self.filter_kind, "provider": self.filter_provider,
                        "direction": self.filter_direction, "text": self.filter_text},
            "last": [{"seq": r.seq, "direction": r.direction, "kind": r.kind, "provider": r.provider,
                      "model": r.model, "tokens_in": r.tokens_in, "tokens_out": r.tokens_out,
                      "preview": r.preview} for r in visible[-last:]],
        }

    @property
    def total(self) -> int:
        """Entries received so far, including the ones dropped over `limit`."""
        return len(self.rows) + self.dropped

    def summary(self, last: int = 200) -> dict:
        """For the hook API: `comms_count` and the newest `last` entries as `comms_log`
        (ts, direction, kind, provider, model, label, usage).  Cached until a row arrives."""
        key = (self._changes, last)
        if self._summary is None or self._summary[0] != key:
            entries = []
            for r in self.rows[-last:] if last > 0 else []:
                usage = None
                if r.tokens_in is not None or r.tokens_out is not None:
                    usage = {"input_tokens": r.tokens_in, "output_tokens": r.tokens_out}
                entries.append({"seq": r.seq, "ts": r.ts, "direction": r.direction, "kind": r.kind,
                                "provider": r.provider, "model": r.model, "label": r.label, "usage": usage})
            self._summary = (key, {"comms_count": self.total, "comms_log": entries})
        return self._summary[1]
