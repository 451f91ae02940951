"""Tier 1 (epic -> tracks) and Tier 2 (track -> ticket DAG): prompts, calls, reply parsing.

Model replies are untrusted input.  `extract_json` finds the JSON in a reply
(```json fences, prose around it), reports a cut-off reply as truncated and a
malformed span with its line and column; tickets are validated field by field
and as a DAG.  An unusable reply is asked for once more with the error, then
the step fails with `PlanningError`, which keeps the raw replies.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import ai_client
import events
from dag_engine import DAGError, TrackDAG
from models import Ticket, Track, slugify, validate_id
from providers import catalog
from providers.base import CancelSignal, Usage
from repo_map import RepoMap, missing_context_files

log = logging.getLogger(__name__)

TIER1_STREAM = "Tier 1"
TIER2_STREAM = "Tier 2 (Tech Lead)"

TIER1_SYSTEM = """You are Tier 1 (Orchestrator), the product manager of a multi-model coding pipeline.
Split the user's epic into one to three independent tracks of work.
Reply with ONLY a JSON list: [{"id": "short_snake_case_id", "title": "...", "description": "..."}]."""

TIER2_SYSTEM = """You are Tier 2 (Tech Lead) of a multi-model coding pipeline.
Break the track into small tickets a worker model can do with a clean context.
Reply with ONLY a JSON list of tickets:
[{"id": "T1", "description": "...", "depends_on": [], "step_mode": false, "context_requirements": ["path/file.py"]}]
depends_on must name ids in the same list and form no cycle; tickets that do not depend on
each other run in parallel."""
TIER2_REPO_MAP_RULE = """
<REPO_MAP> lists the project's files (best first) with their top-level symbols.
context_requirements must name files from it, as written there; a file a ticket will create
is not a context requirement."""


class PlanningError(RuntimeError):
    """A tier's reply could not be used even after one repair round.  `raw` keeps the reply."""

    def __init__(self, message: str, raw: str = ""):
        super().__init__(message)
        self.raw = raw


_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)


def _closing_index(text: str, start: int) -> int:
    """Index just past the bracket that closes the one at `start` (strings respected), or -1."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def extract_json(text: str) -> Any:
    """The first JSON value in a model reply: inside ```json fences or surrounded by prose.

    A bracketed span that fails to parse is reported as such; values nested
    inside it are not mistaken for the answer.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the reply is empty; expected JSON")
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    first_error: str | None = None
    for chunk in candidates:
        skip_until = 0
        for match in re.finditer(r"[\[{]", chunk):
            begin = match.start()
            if begin < skip_until:
                continue
            try:
                value, _end = decoder.raw_decode(chunk, begin)
                return value
            except RecursionError:
                raise ValueError("the JSON in the reply is nested too deeply to be a plan") from None
            except json.JSONDecodeError as exc:
                close = _closing_index(chunk, begin)
                if close == -1:
                    kind = "list" if chunk[begin] == "[" else "object"
                    raise ValueError(f"the JSON in the reply is truncated: it ends before the {kind} "
                                     f"that starts at character {begin} is closed") from exc
                skip_until = close
                first_error = first_error or f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if first_error is not None:
        raise ValueError(f"no valid JSON found in the reply (first error: {first_error})")
    raise ValueError("no JSON list or object found in the reply")


def _as_list(value: Any, key: str, what: str) -> list:
    if isinstance(value, dict) and isinstance(value.get(key), list):
        value = value[key]
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list of {what}, got {type(value).__name__}")
    if not value:
        raise ValueError(f"the list of {what} is empty")
    return value


def parse_json_tickets(json_str: str) -> list[Ticket]:
    """Tickets from a Tier 2 reply, validated as a DAG.  Raises ValueError saying what is wrong."""
    raw = _as_list(extract_json(json_str), "tickets", "tickets")
    tickets = [Ticket.from_dict(item, f"ticket #{i + 1}") for i, item in enumerate(raw)]
    try:
        TrackDAG(tickets)
    except DAGError as exc:
        raise ValueError(f"the tickets do not form a valid DAG: {exc}") from exc
    return tickets


def parse_json_tracks(text: str) -> list[Track]:
    raw = _as_list(extract_json(text), "tracks", "tracks")
    tracks, seen = [], set()
    stamp = date.today().strftime("%Y%m%d")
    for i, item in enumerate(raw):
        where = f"track #{i + 1}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
        title = item.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"{where}: missing required field 'title'")
        base = slugify(str(item.get("id") or title), 32)
        base = base if re.search(r"_\d{8}$", base) else f"{base}_{stamp}"
        track_id, n = base, 2
        while track_id in seen:
            track_id, n = f"{base}_{n}", n + 1
        seen.add(track_id)
        desc = item.get("description", "")
        tracks.append(Track(id=validate_id(track_id, where), title=title.strip(),
                            description=desc if isinstance(desc, str) else json.dumps(desc)))
    return tracks


@dataclass
class PlanResult:
    value: Any
    usage: Usage
    model: str
    raw: list[str] = field(default_factory=list)


def _ask_tier(tier: str, stream_id: str, system: str, user: str, parse: Callable[[str], Any], *,
              md_content: str, provider: str | None, model: str,
              event_queue: events.AsyncEventQueue | None, cancel_event: CancelSignal | None,
              on_usage: ai_client.UsageSink | None) -> PlanResult:
    """One tier call with one repair round on a parse error.  Streams to `stream_id`.

    `cancel_event` aborts the call (even one waiting for its first byte); `on_usage` books
    each response as it arrives, so a step that fails after its repair round is paid for."""
    def stream(chunk: str) -> None:
        events.emit(event_queue, events.StreamChunk(stream_id, chunk))

    with ai_client.session_scope(provider, model, label=tier) as session:
        if cancel_event is not None:
            session.cancel_event = cancel_event
        session.on_usage = on_usage
        raw = []
        first = session.send(md_content, user, system_prompt=system, stream_callback=stream)
        raw.append(first.text)
        usage = first.usage
        try:
            value = parse(first.text)
        except ValueError as exc:
            log.warning("%s reply was not usable (%s); asking once more", tier, exc)
            stream(f"\n\n[reply was not usable: {exc}; asking again]\n\n")
            second = session.send("", f"Your previous reply could not be used: {exc}\n"
                                  "Reply again with only the corrected JSON, no prose.",
                                  system_prompt=system, stream_callback=stream)
            raw.append(second.text)
            usage = usage + second.usage
            try:
                value = parse(second.text)
            except ValueError as exc2:
                events.emit(event_queue, events.Response(second.text, stream_id, "error"))
                raise PlanningError(f"{tier} reply was still not usable after one retry: {exc2}",
                                    raw="\n\n".join(raw)) from exc2
        events.emit(event_queue, events.Response("\n\n".join(raw), stream_id, "done"))
        return PlanResult(value, usage, session.model, raw)


def plan_epic(epic: str, md_content: str = "", *, provider: str | None = None, model: str | None = None,
              event_queue: events.AsyncEventQueue | None = None, cancel_event: CancelSignal | None = None,
              on_usage: ai_client.UsageSink | None = None) -> PlanResult:
    """Tier 1: epic -> tracks."""
    if not epic or not epic.strip():
        raise ValueError("the epic is empty: describe what you want built")
    model = model or catalog.tier_defaults(provider).model_for("Tier 1")
    return _ask_tier("Tier 1", TIER1_STREAM, TIER1_SYSTEM, f"<EPIC>\n{epic.strip()}\n</EPIC>",
                     parse_json_tracks, md_content=md_content, provider=provider, model=model,
                     event_queue=event_queue, cancel_event=cancel_event, on_usage=on_usage)


def generate_tickets(track: Track, md_content: str = "", *, provider: str | None = None,
                     model: str | None = None, event_queue: events.AsyncEventQueue | None = None,
                     repo_map: RepoMap | None = None, cancel_event: CancelSignal | None = None,
                     on_usage: ai_client.UsageSink | None = None) -> PlanResult:
    """Tier 2: track -> ticket DAG.

    With a `repo_map` the prompt carries the project's files and symbols, and every
    `context_requirements` entry that names no file is reported (log + `ErrorEvent` with the
    ticket id); the ticket keeps the entry, so the worker's prompt still shows the intent."""
    model = model or catalog.tier_defaults(provider).model_for("Tier 2")
    user = f"<TRACK>\n{track.title}\n\n{track.description}\n</TRACK>"
    system = TIER2_SYSTEM
    if repo_map:
        user += f"\n\n<REPO_MAP>\n{repo_map.text}</REPO_MAP>"
        system += TIER2_REPO_MAP_RULE
    result = _ask_tier("Tier 2", TIER2_STREAM, system, user, parse_json_tickets,
                       md_content=md_content, provider=provider, model=model,
                       event_queue=event_queue, cancel_event=cancel_event, on_usage=on_usage)
    if repo_map is not None:
        for ticket in result.value:
            for path in missing_context_files(ticket.context_requirements, repo_map.root):
                log.warning("Tier 2: ticket %s names context file %r, which is not in %s",
                            ticket.id, path, repo_map.root)
                events.emit(event_queue, events.ErrorEvent(
                    f"Tier 2: ticket {ticket.id} names context file {path!r}, which does not exist",
                    "the worker will not see it; fix the path in the ticket or add the file",
                    ticket_id=ticket.id))
    return result
