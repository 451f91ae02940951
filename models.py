"""Plain data for the MMA pipeline: tickets, tracks, worker contexts.

Everything here is a dataclass with `to_dict()` / `from_dict()` so state can
cross threads as snapshots and land on disk as JSON.  `from_dict()` validates
and raises `ValueError` naming the bad field, because this data often comes
straight from a model's reply.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TODO = "todo"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
BLOCKED = "blocked"
TICKET_STATUSES = (TODO, IN_PROGRESS, COMPLETED, BLOCKED)

TIERS = ("Tier 1", "Tier 2", "Tier 3", "Tier 4")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,79}$")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _require(data: dict, key: str, kind: type | tuple, where: str) -> Any:
    if key not in data:
        raise ValueError(f"{where}: missing required field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(f"{where}: field '{key}' must be {names}, got {type(value).__name__}")
    return value


def _optional(data: dict, key: str, kind: type | tuple, default: Any, where: str) -> Any:
    if data.get(key) is None:
        return default
    return _require(data, key, kind, where)


def validate_id(value: Any, where: str, field_name: str = "id") -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _ID_RE.match(value.strip()):
        raise ValueError(
            f"{where}: field '{field_name}' must be a short identifier "
            f"(letters, digits, _ . : -), got {value!r}")
    return value.strip()


@dataclass
class TokenUsage:
    input: int = 0
    output: int = 0

    def add(self, input_tokens: int, output_tokens: int) -> None:
        self.input += int(input_tokens)
        self.output += int(output_tokens)


@dataclass
class Ticket:
    id: str
    description: str
    status: str = TODO
    assigned_to: str = ""          # model name the last/ current attempt ran on
    depends_on: list[str] = field(default_factory=list)
    step_mode: bool = False        # needs a step approval before it runs
    context_requirements: list[str] = field(default_factory=list)
    retry_count: int = 0
    blocked_reason: str = ""
    result: str = ""
    diagnosis: str = ""            # Tier 4 analysis of the last failure
    commit: str = ""               # its commit on the track branch (git workspace); "" if none
    usage: TokenUsage = field(default_factory=TokenUsage)
    started_at: float | None = None    # wall-clock time.time() of the last attempt's start
    finished_at: float | None = None   # and of its end (None while running)
    # What the last attempt's worker was sent (worker.WorkerOutcome.received): the shared
    # prefix's tokens, its own files with their tokens, the prompt's, and what was billed.
    received: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        # Hand-rolled instead of dataclasses.asdict (which deep-copies every field): the
        # engine snapshots every ticket on each state update, so this is on a hot path.
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["depends_on"] = list(self.depends_on)
        out["context_requirements"] = list(self.context_requirements)
        out["usage"] = {"input": self.usage.input, "output": self.usage.output}
        out["received"] = dict(self.received)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "ticket") -> Ticket:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        tid = validate_id(data.get("id"), where) if "id" in data else None
        if tid is None:
            raise ValueError(f"{where}: missing required field 'id'")
        where = f"ticket '{tid}'"
        desc = _require(data, "description", str, where)
        deps_raw = _optional(data, "depends_on", list, [], where)
        deps = [validate_id(d, where, "depends_on") for d in deps_raw]
        status = _optional(data, "status", str, TODO, where)
        if status not in TICKET_STATUSES:
            raise ValueError(f"{where}: field 'status' must be one of {TICKET_STATUSES}, got {status!r}")
        ctx = _optional(data, "context_requirements", list, [], where)
        if not all(isinstance(c, str) for c in ctx):
            raise ValueError(f"{where}: field 'context_requirements' must be a list of strings")
        usage = _optional(data, "usage", dict, {}, where)
        return cls(
            id=tid, description=desc, status=status,
            assigned_to=_optional(data, "assigned_to", str, "", where),
            depends_on=deps,
            step_mode=_optional(data, "step_mode", bool, False, where),
            context_requirements=list(ctx),
            retry_count=_optional(data, "retry_count", int, 0, where),
            blocked_reason=_optional(data, "blocked_reason", str, "", where),
            result=_optional(data, "result", str, "", where),
            diagnosis=_optional(data, "diagnosis", str, "", where),
            commit=_optional(data, "commit", str, "", where),
            usage=TokenUsage(int(usage.get("input", 0)), int(usage.get("output", 0))),
            started_at=_optional(data, "started_at", (int, float), None, where),
            finished_at=_optional(data, "finished_at", (int, float), None, where),
            received=dict(_optional(data, "received", dict, {}, where)),
        )


def slugify(text: str, limit: int = 40) -> str:
    """`Add a CLI flag!` -> `add_a_cli_flag`, cut at a word boundary within `limit`."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if len(slug) > limit:
        cut = slug[:limit + 1]
        slug = cut[:cut.rfind("_")] if "_" in cut[1:] else slug[:limit]
    return slug.strip("_") or "track"


@dataclass
class Track:
    id: str
    title: str
    description: str = ""
    tickets: list[Ticket] = field(default_factory=list)
    status: str = "new"            # new | in_progress | completed | blocked | aborted
    created_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)

    def ticket(self, ticket_id: str) -> Ticket:
        for t in self.tickets:
            if t.id == ticket_id:
                return t
        raise KeyError(ticket_id)

    def header_dict(self) -> dict:
        """Everything but the tickets (state updates carry tickets separately)."""
        return {
            "id": self.id, "title": self.title, "description": self.description,
            "status": self.status, "created_at": self.created_at, "updated_at": self.updated_at,
        }

    def to_dict(self) -> dict:
        return {**self.header_dict(), "tickets": [t.to_dict() for t in self.tickets]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "track") -> Track:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        if "id" not in data:
            raise ValueError(f"{where}: missing required field 'id'")
        tid = validate_id(data["id"], where)
        where = f"track '{tid}'"
        title = _require(data, "title", str, where)
        tickets_raw = _optional(data, "tickets", list, [], where)
        return cls(
            id=tid, title=title,
            description=_optional(data, "description", str, "", where),
            tickets=[Ticket.from_dict(t, f"{where} ticket #{i}") for i, t in enumerate(tickets_raw)],
            status=_optional(data, "status", str, "new", where),
            created_at=_optional(data, "created_at", str, utc_now(), where),
            updated_at=_optional(data, "updated_at", str, utc_now(), where),
        )


@dataclass
class WorkerContext:
    """What one Tier 3 worker gets: a clean context ("context amnesia")."""
    ticket_id: str
    model_name: str
    messages: list[dict] = field(default_factory=list)
    provider: str = ""
    base_dir: str = ""             # where its tools work (its git worktree); "" = the host's base_dir
    read_only: bool = False        # only the read-only tools (a project that is not a git repository)
    notes: str = ""                # engine notes for this attempt's prompt (e.g. a merge conflict)


# The prompt-cache counts a ledger bucket or model row carries once it has any (`Usage.cache_fields`):
# input tokens read from / written to the provider's cache, and explicit cache storage (tokens x s).
CACHE_KEYS = ("cache_read", "cache_write", "cache_storage_token_s")


class TierUsage(dict):
    """`{"Tier 1".."Tier 4": {"input", "output", "model", "models"}}` with a lock for cross-thread adds.

    A dict subclass so scripts and the hook API read it as `tier_usage["Tier 3"]["input"]`;
    workers add through `add()`, readers take `snapshot()`.  `input`/`output` are the
    tier's totals and `model` its last model (as before); `models` splits the totals per
    model (`{"gemini-2.5-flash": {"input", "output"}}`) so each model's tokens are priced
    at that model's price: after an escalation only the stronger model's tokens cost more.
    Prompt caching adds `cache_read` / `cache_write` (part of `input`) and
    `cache_storage_token_s` to a bucket and its model rows once there are any (`CACHE_KEYS`).
    """

    def __init__(self, *args, parent: TierUsage | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.parent = parent            # e.g. the session's total, when this is one track's ledger

    def add(self, tier: str, input_tokens: int, output_tokens: int, model: str | None = None,
            *, propagate: bool = True, cache: dict[str, int] | None = None) -> None:
        """Book tokens here and (unless `propagate=False`, for money spent earlier) in the parent.
        Without a `model` they count for the tier's current model.  `cache`: the counts of
        `CACHE_KEYS` that are not zero."""
        extra = {k: int(v) for k, v in (cache or {}).items() if k in CACHE_KEYS and v}
        with self.lock:
            bucket = self.setdefault(tier, {"input": 0, "output": 0, "model": ""})
            bucket["input"] += int(input_tokens)
            bucket["output"] += int(output_tokens)
            if model:
                bucket["model"] = model
            row = bucket.setdefault("models", {}).setdefault(model or bucket["model"], {"input": 0, "output": 0})
            row["input"] += int(input_tokens)
            row["output"] += int(output_tokens)
            for key, value in extra.items():
                bucket[key] = bucket.get(key, 0) + value
                row[key] = row.get(key, 0) + value
        if propagate and self.parent is not None:
            self.parent.add(tier, input_tokens, output_tokens, model, cache=extra)

    def add_usage(self, tier: str, usage: Any, model: str | None = None) -> None:
        """Book a `providers.base.Usage` (what one provider response billed)."""
        self.add(tier, usage.input_tokens, usage.output_tokens, model, cache=usage.cache_fields())

    def restore(self, saved: dict) -> None:
        """Add a saved ledger (state.json's `tier_usage`) model by model, not to the parent:
        that money was spent and counted in an earlier session."""
        for tier, bucket in saved.items():
            for model, row in per_model_usage(bucket).items():
                self.add(tier, row["input"], row["output"], model or None, propagate=False,
                         cache={k: row[k] for k in CACHE_KEYS if k in row})
            if bucket.get("model"):
                with self.lock:
                    self[tier]["model"] = bucket["model"]

    def snapshot(self) -> dict[str, dict]:
        with self.lock:
            return {tier: {**bucket, "models": {m: dict(r) for m, r in bucket.get("models", {}).items()}}
                    for tier, bucket in self.items()}


def per_model_usage(bucket: dict) -> dict[str, dict[str, int]]:
    """A tier bucket's tokens per model.  Tokens its `models` rows do not account for (a
    ledger saved before per-model rows existed) count for the bucket's `model`.  A row has
    `input` and `output`, and the `CACHE_KEYS` it has counts for."""
    rows: dict[str, dict[str, int]] = {}
    for m, r in (bucket.get("models") or {}).items():
        if isinstance(r, dict):
            rows[str(m)] = {"input": int(r.get("input", 0)), "output": int(r.get("output", 0)),
                            **{k: int(r[k]) for k in CACHE_KEYS if isinstance(r.get(k), (int, float)) and r[k]}}
    rest_in = int(bucket.get("input", 0)) - sum(r["input"] for r in rows.values())
    rest_out = int(bucket.get("output", 0)) - sum(r["output"] for r in rows.values())
    if rest_in > 0 or rest_out > 0:
        row = rows.setdefault(str(bucket.get("model") or ""), {"input": 0, "output": 0})
        row["input"] += max(0, rest_in)
        row["output"] += max(0, rest_out)
    return rows


def new_tier_usage(models: dict[str, str] | None = None) -> TierUsage:
    models = models or {}
    return TierUsage({tier: {"input": 0, "output": 0, "model": models.get(tier, ""), "models": {}}
                      for tier in TIERS})
