"""Offline, deterministic provider: the whole app works with no key and no network.

It answers each MMA tier in that tier's format (recognised by the tier tag in
the system prompt), streams text in small chunks, can call tools, and bills
tokens with the same estimate every time (`ceil(chars / 4)`), so tests can
compare totals exactly.

Markers in a ticket or epic text steer it, for demos and tests:
  `[hard]`  -> a "lite" model answers `BLOCKED: ...` (exercises retry escalation)
  `[tool]`  -> calls the read-only `list_directory` tool first
  `[write]` -> calls `write_file` (needs approval) before answering
  `[fail]`  -> raises a BadRequestError (exercises error surfacing, no retry delay)
  `[conflict]` -> its shared-file edit also rewrites the file's "Last edit:" line, so two
                tickets that run in parallel edit the same line (a merge conflict)

Real edits: a Tier 3 worker that is offered `write_file` (a git workspace with write tools)
and carries neither `[write]` nor `[tool]` changes files through the real tools, so
worktrees, commits, merges and conflicts are exercised offline.  It writes
`mma_mock/<ticket>.md` (derived from the ticket and the model), reads
`mma_mock/shared.md` and writes it back with its own section filled in.  Only T1 (or a
`[conflict]` ticket) creates that file when it is missing, with a section for T1..T4 far
enough apart that parallel tickets merge cleanly.

Prompt caching is simulated like Gemini's implicit cache (`SimulatedPrefixCache`): a request
that asks for caching and sends a system prompt of at least `MIN_CACHED_TOKENS` that an earlier
request of the same model sent within `CACHE_TTL_S` bills it as read from the cache, so an
offline run shows cached tokens and the saving in Usage & Cost.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time

from context_builder import estimate_tokens  # the same estimate the token budget shows
from models import slugify
from providers.base import BadRequestError, ChatRequest, ChatResponse, ChunkCallback, ToolCall, Usage, check_cancel

TIER_TAGS = {
    "Tier 1 (Orchestrator)": 1,
    "Tier 2 (Tech Lead)": 2,
    "Tier 3 (Worker)": 3,
    "Tier 4 (QA)": 4,
}


MIN_CACHED_TOKENS = 1024
CACHE_TTL_S = 300.0


class SimulatedPrefixCache:
    """System prompts seen per model (shared by every mock session of the process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def cached_tokens(self, request: ChatRequest) -> int:
        """The system prompt's tokens when an earlier request cached it; remembers this one."""
        tokens = estimate_tokens(request.system)
        if request.cache is None or tokens < MIN_CACHED_TOKENS:
            return 0
        key = hashlib.sha256(f"{request.model}\0{request.system}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(key, 0.0) > now
            self._seen[key] = now + CACHE_TTL_S
        return tokens if hit else 0


PREFIX_CACHE = SimulatedPrefixCache()


def _request_chars(request: ChatRequest) -> str:
    parts = [request.system]
    for m in request.messages:
        parts.append(str(m.get("content", "")))
        for call in m.get("tool_calls", []) or []:
            parts.append(json.dumps(call))
    return "\n".join(parts)


def _tier_of(request: ChatRequest) -> int:
    """The tier whose instructions the system prompt ends with ("You are Tier N (...)"); the
    curated context before them may mention any tier."""
    found = [(request.system.rfind(f"You are {tag}"), tier) for tag, tier in TIER_TAGS.items()]
    position, tier = max(found)
    if position >= 0:
        return tier
    for tag, tier in TIER_TAGS.items():
        if tag in request.system:
            return tier
    return 0


def _last_user_text(request: ChatRequest) -> str:
    for m in reversed(request.messages):
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def _epic_items(epic: str) -> list[str]:
    lines = [re.sub(r"^\s*(?:[-*]|\d+[.)])\s*", "", ln).strip() for ln in epic.splitlines()]
    items = [ln for ln in lines if ln]
    return items[:3] if len(items) > 1 else [epic.strip() or "Untitled epic"]


def _short_title(text: str, words: int = 8) -> str:
    parts = re.sub(r"\s+", " ", text).strip().split(" ")
    title = " ".join(parts[:words])
    return title + ("..." if len(parts) > words else "")


class MockAdapter:
    name = "mock"

    def __init__(self, chunk_delay: float | None = None, chunk_words: int = 3, **_ignored):
        if chunk_delay is None:
            chunk_delay = float(os.environ.get("MMA_MOCK_CHUNK_DELAY", "0") or 0)
        self.chunk_delay = chunk_delay
        self.chunk_words = max(1, chunk_words)

    # -- tier answers --------------------------------------------------------
    def _tier1(self, request: ChatRequest) -> str:
        epic = _extract_block(_last_user_text(request), "EPIC")
        tracks = []
        for item in _epic_items(epic):
            title = _short_title(item, 12)
            tracks.append({"id": slugify(title, 32), "title": title, "description": item})
        return "Here is the plan:\n```json\n" + json.dumps(tracks, indent=2) + "\n```"

    def _tier2(self, request: ChatRequest) -> str:
        track = _extract_block(_last_user_text(request), "TRACK")
        title = _short_title(track.strip().splitlines()[0] if track.strip() else "the track", 10)
        marker = " [hard]" if "[hard]" in track else ""
        extra = "".join(f" {m}" for m in ("[tool]", "[write]", "[fail]") if m in track)
        # With a repo map, the first file listed (the best-ranked) is the context of T1 and T2.
        prompt = _last_user_text(request)
        listed = [ln for ln in _extract_block(prompt, "REPO_MAP").splitlines()
                  if ln.strip() and not ln.startswith((" ", "("))] if "<REPO_MAP>" in prompt else []
        context = {"context_requirements": listed[:1]} if listed else {}
        tickets = [
            {"id": "T1", "description": f"Survey the code that '{title}' touches{extra}", "depends_on": [], **context},
            {"id": "T2", "description": f"Implement: {title}{marker}", "depends_on": ["T1"], **context},
            {"id": "T3", "description": f"Write tests for: {title}", "depends_on": ["T1"]},
            {"id": "T4", "description": f"Document and verify: {title}", "depends_on": ["T2", "T3"]},
        ]
        return json.dumps(tickets, indent=2)

    def _tier3(self, request: ChatRequest) -> str | ToolCall:
        task = _last_user_text(request)
        ticket = _extract_block(task, "TICKET") or task
        if "[fail]" in ticket:
            raise BadRequestError("mock provider: simulated failure ([fail] marker)",
                                  provider=self.name, status=400,
                                  hint="remove the [fail] marker from the epic or ticket")
        if "[hard]" in ticket and "lite" in request.model:
            return f"BLOCKED: '{_short_title(ticket)}' needs a stronger model than {request.model}."
        had_tool_result = any(m.get("role") == "tool" for m in request.messages)
        tool_names = {t.name for t in request.tools}
        if "write_file" in tool_names and "[write]" not in ticket and "[tool]" not in ticket:
            edit = _real_edit(ticket, request)
            if edit is not None:
                return edit
        if not had_tool_result:
            if "[write]" in ticket and "write_file" in tool_names:
                return ToolCall("mock_call_1", "write_file",
                                {"path": "MMA_NOTES.md", "content": f"# Notes\n\n{ticket.strip()}\n"})
            if "[tool]" in ticket and "list_directory" in tool_names:
                return ToolCall("mock_call_1", "list_directory", {"path": "."})
        first = ticket.strip().splitlines()[0] if ticket.strip() else "the task"
        tool_note = "\n\nI used the tool result above." if had_tool_result else ""
        return (f"### Worker report ({request.model})\n\n"
                f"Task: {first}\n\n"
                "1. Read the relevant context.\n"
                "2. Made the change in small steps.\n"
                "3. Checked the result against the ticket."
                f"{tool_note}\n\nDONE")

    def _tier4(self, request: ChatRequest) -> str:
        error = _last_user_text(request).strip().splitlines()
        head = error[-1] if error else "unknown error"
        return f"Diagnosis: the step failed with '{_short_title(head, 12)}'. Retry on a stronger model or fix the input."

    def _chat(self, request: ChatRequest) -> str:
        user = _last_user_text(request).strip()
        return (f"**Mock reply** (offline provider, model `{request.model}`).\n\n"
                f"You said: {_short_title(user, 30)}\n\n"
                f"Context received: {estimate_tokens(request.system)} tokens of curated context.")

    # -- adapter interface ---------------------------------------------------
    def generate(self, request: ChatRequest, on_chunk: ChunkCallback | None = None) -> ChatResponse:
        check_cancel(request)
        tier = _tier_of(request)
        answer = {1: self._tier1, 2: self._tier2, 3: self._tier3, 4: self._tier4}.get(tier, self._chat)(request)
        usage_in = estimate_tokens(_request_chars(request))
        cached = min(PREFIX_CACHE.cached_tokens(request), usage_in)
        if isinstance(answer, ToolCall):
            return ChatResponse(text="", tool_calls=[answer],
                                usage=Usage(usage_in, estimate_tokens(json.dumps(answer.to_dict())), cached),
                                stop_reason="tool_use", model=request.model)
        if on_chunk is not None:
            for chunk in self._chunks(answer):
                check_cancel(request)
                on_chunk(chunk)
                if self.chunk_delay and request.cancel_event is not None:
                    request.cancel_event.wait(self.chunk_delay)
                elif self.chunk_delay:
                    time.sleep(self.chunk_delay)
        return ChatResponse(text=answer, usage=Usage(usage_in, estimate_tokens(answer), cached),
                            stop_reason="end_turn", model=request.model)

    def _chunks(self, text: str) -> list[str]:
        pieces = re.findall(r"\S+\s*|\s+", text)
        n = self.chunk_words
        return ["".join(pieces[i:i + n]) for i in range(0, len(pieces), n)]


SHARED_FILE = "mma_mock/shared.md"
SHARED_SLOTS = ("T1", "T2", "T3", "T4")      # the tickets the mock's Tier 2 plans
_PENDING = "(pending)"


def _real_edit(ticket: str, request: ChatRequest) -> ToolCall | None:
    """The next tool call of a mock worker's real edit, or None once it is done."""
    m = re.search(r"Ticket (\S+?):\s*(.*)", ticket)
    tid, desc = (m.group(1), m.group(2).strip()) if m else ("ticket", ticket.strip())
    results = [m for m in request.messages if m.get("role") == "tool"]
    step = len(results)
    if step == 0:
        content = f"# {tid}\n\n{desc.splitlines()[0] if desc else tid}\n\nMade by {request.model} (mock provider).\n"
        return ToolCall("mock_edit_1", "write_file", {"path": f"mma_mock/{tid}.md", "content": content})
    if step == 1:
        return ToolCall("mock_edit_2", "read_file", {"path": SHARED_FILE})
    if step == 2:
        current = str(results[-1].get("content", ""))
        conflict = "[conflict]" in ticket
        if _missing(current) and tid != SHARED_SLOTS[0] and not conflict:
            return None          # only T1 creates it: parallel creations of one file would always clash
        text = _shared_text(current, tid, f"{tid} done by {request.model}", conflict)
        return ToolCall("mock_edit_3", "write_file", {"path": SHARED_FILE, "content": text})
    return None


def _missing(read_result: str) -> bool:
    return read_result.startswith(("ERROR", "REFUSED")) or "## " not in read_result


def _shared_text(current: str, tid: str, line: str, conflict: bool) -> str:
    """`mma_mock/shared.md` with `tid`'s section set to `line` (created with all slots if missing)."""
    if _missing(current):
        slots = list(dict.fromkeys([*SHARED_SLOTS, tid]))
        current = "# Shared file of the mock workers\n\nLast edit: nobody\n" + "".join(
            f"\n## {s}\n{_PENDING}\n" for s in slots)
    lines = current.splitlines()
    header = f"## {tid}"
    if header in lines:
        at = lines.index(header) + 1
        if at < len(lines):
            lines[at] = line
        else:
            lines.append(line)
    else:
        lines += ["", header, line]
    if conflict:
        lines = [f"Last edit: {tid}" if ln.startswith("Last edit:") else ln for ln in lines]
    return "\n".join(lines) + "\n"


def _extract_block(text: str, tag: str) -> str:
    """Return the text between `<TAG>` and `</TAG>` (the conductor's prompt framing), else all."""
    m = re.search(rf"<{tag}>\s*(.*?)\s*</{tag}>", text, re.S)
    return m.group(1) if m else text
