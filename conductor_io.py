"""Read and write the Conductor layout (`conductor/tracks.md`, `conductor/tracks/<id>/`).

Import is tolerant of real-world plans (see docs/guide_persistence.md):
long lines, inline code, nested sub-tasks, `[x]`/`[~]`/`[ ]` markers with a
trailing commit SHA, CRLF, any heading level, and plans whose line breaks
were lost altogether.  Write-back only ever changes the checkbox characters
of task lines and the status marker of our own tracks.md entry.

Ticket id rule: a task whose text starts with `Task <label>:` gets the id
`<label>` (e.g. "1.1"); any other task gets `<phase>.<n>`, where `<phase>` is
the number from a `Phase <number>` heading (else the phase's position) and `<n>`
the task's 1-based position among that phase's top-level tasks.  Repeated ids
get a `-2`, `-3`... suffix.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dag_engine import DAGError, TrackDAG
from models import (COMPLETED, IN_PROGRESS, TIERS, TODO, Ticket, Track, new_tier_usage,
                    slugify, utc_now, validate_id)
from persistence import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

_MARK_STATUS = {" ": TODO, "x": COMPLETED, "X": COMPLETED, "~": IN_PROGRESS}
_STATUS_MARK = {TODO: " ", IN_PROGRESS: "~", COMPLETED: "x", "blocked": "~"}
_TRACK_STATUS_MARK = {"new": " ", "in_progress": "~", "completed": "x", "blocked": "~",
                      "aborted": " "}
_TRACK_MARK_STATUS = {" ": "new", "~": "in_progress", "x": "completed", "X": "completed"}
_STATE_KEYS = ("track", "tickets", "tier_usage", "updated_at")


# ================================================================ plan.md: parsing

@dataclass
class ParsedSubtask:
    text: str
    status: str
    line: int                 # 1-based line number in the source text


@dataclass
class ParsedTask:
    id: str
    label: str | None         # the <label> of "Task <label>:", if any
    text: str                 # the task line as written (no marker, no commit SHA)
    description: str          # text minus "Task <label>:" + continuation lines + sub-tasks
    status: str
    marker: str               # the checkbox character: " ", "x", "X" or "~"
    marker_offset: int        # index of that character in the parsed text
    line: int                 # 1-based line number in the source text
    commit: str = ""          # trailing "[a1b2c3d]"
    step_mode: bool = False   # manual-verification task
    subtasks: list[ParsedSubtask] = field(default_factory=list)


@dataclass
class ParsedPhase:
    label: str                # "1" from "Phase 1: ...", else the phase's position
    name: str
    line: int
    tasks: list[ParsedTask] = field(default_factory=list)


@dataclass
class ParsedPlan:
    title: str
    phases: list[ParsedPhase]

    @property
    def tasks(self) -> list[ParsedTask]:
        return [t for p in self.phases for t in p.tasks]


_NEWLINE_RE = re.compile(r"\r\n|\r|\n")
_CHECKBOX_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?:[-*+]|\d{1,4}[.)])[ \t]+\[(?P<mark>[ xX~])\](?:[ \t]+(?P<text>.*))?$")
_HEADING_RE = re.compile(r"^[ \t]{0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*))?$")
# where a plan lost its line breaks: whitespace before a checkbox item or a ##..###### heading
_SPLIT_RE = re.compile(r"(?<=\S)[ \t]+(?=[-*+][ \t]+\[[ xX~]\](?:[ \t]|$)|#{2,6}[ \t]+\S)")
_FENCE_RE = re.compile(r"^[ \t]*(```|~~~)")
_LIST_RE = re.compile(r"^[ \t]*(?:[-*+]|\d{1,4}[.)])[ \t]")
_PHASE_RE = re.compile(
    r"^(?:\[[ xX~]\][ \t]*)?(?:\*\*)?Phase[ \t]+(?P<label>[A-Za-z0-9][A-Za-z0-9_.\-]*)"
    r"(?:\*\*)?[ \t]*[:.\-\u2013\u2014]?[ \t]*(?P<name>.*)$", re.I)
_TITLE_PREFIX_RE = re.compile(r"^(?:Implementation[ \t]+)?Plan[ \t]*[:\-\u2013\u2014][ \t]*", re.I)
_TASK_LABEL_RE = re.compile(r"^(?P<bold>\*\*)?Task[ \t]+(?P<label>\S+?)[ \t]*:(?:\*\*)?(?=\s|$)[ \t]*",
                            re.I)
_TASK_NOLABEL_RE = re.compile(r"^(?P<bold>\*\*)?Task[ \t]*:(?:\*\*)?[ \t]*", re.I)
_COMMIT_RE = re.compile(r"[ \t]*\[(?P<sha>[0-9a-fA-F]{7,40})\][ \t]*$")
_CHECKPOINT_RE = re.compile(r"[ \t]*\[checkpoint:[^\]]*\][ \t]*", re.I)
_LABEL_OK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
_MANUAL_RE = re.compile(r"manual[ \t]+verification", re.I)


@lru_cache(maxsize=16)
def _backtick_run_re(n: int) -> re.Pattern:
    return re.compile(r"(?<!`)" + "`" * n + r"(?!`)")


def _mask_code_spans(line: str) -> str:
    """Blank out inline code so markers inside `...` are not taken as structure."""
    out, pos, skip_until = [], 0, 0
    for m in re.finditer(r"`+", line):
        if m.start() < skip_until:
            continue
        close = _backtick_run_re(len(m.group())).search(line, m.end())
        if close is None:
            continue
        out.append(line[pos:m.end()])
        out.append("x" * (close.start() - m.end()))
        pos, skip_until = close.start(), close.end()
    out.append(line[pos:])
    return "".join(out)


def _logical_lines(text: str) -> list[tuple[int, int, str]]:
    """(offset, physical line number, line); lines are further split where breaks were lost."""
    result = []
    start = 1 if text.startswith("\ufeff") else 0
    bounds = [(m.start(), m.end()) for m in _NEWLINE_RE.finditer(text)] + [(len(text), len(text))]
    for line_no, (nl_start, nl_end) in enumerate(bounds, start=1):
        line = text[start:nl_start]
        masked = _mask_code_spans(line)
        cuts = list(_SPLIT_RE.finditer(masked))
        # split a line only when it is clearly several lines run together: it holds a
        # further checkbox item, or it is a heading with another heading after it
        if not any(masked[m.end()] != "#" for m in cuts) and not _HEADING_RE.match(line):
            cuts = []
        seg = 0
        for m in cuts:
            result.append((start + seg, line_no, line[seg:m.start()]))
            seg = m.end()
        result.append((start + seg, line_no, line[seg:]))
        start = nl_end
    return result


def _indent(line: str) -> int:
    ws = line[:len(line) - len(line.lstrip(" \t"))]
    return len(ws.expandtabs(4))


def _dedent(line: str, cols: int) -> str:
    """Remove up to `cols` columns of leading whitespace (tabs count as 4)."""
    body = line.lstrip(" \t")
    ws = line[:len(line) - len(body)].expandtabs(4)
    return ws[min(cols, len(ws)):] + body


def _heading_text(raw: str | None) -> str:
    text = (raw or "").strip()
    return re.sub(r"[ \t]+#+$", "", text).strip()


class _PlanBuilder:
    def __init__(self) -> None:
        self.title = ""
        self.phases: list[ParsedPhase] = []
        self.phase_level = 0
        self.pending_heading: tuple[int, str, int] | None = None
        self.task: ParsedTask | None = None
        self.task_indent = 0
        self.blank_run = 0
        self.prev_blank = False

    # -- phases
    def new_phase(self, label: str | None, name: str, line: int, level: int) -> ParsedPhase:
        phase = ParsedPhase(label or str(len(self.phases) + 1), name, line)
        self.phases.append(phase)
        self.phase_level = level
        self.pending_heading = None
        return phase

    def current_phase(self) -> ParsedPhase:
        if self.pending_heading is not None:
            level, name, line = self.pending_heading
            return self.new_phase(None, name, line, level)
        if not self.phases:
            return self.new_phase(None, "", 0, 6)   # any later heading ends it
        return self.phases[-1]

    def heading(self, level: int, text: str, line: int) -> None:
        self.task = None
        text = _CHECKPOINT_RE.sub(" ", text).strip()
        phase = _PHASE_RE.match(text)
        if phase:
            label = phase.group("label").rstrip(".:-")
            name = phase.group("name").replace("**", "").strip()
            self.new_phase(label if _LABEL_OK_RE.match(label) else None, name, line, level)
        elif not self.title and not self.phases and (level == 1 or _TITLE_PREFIX_RE.match(text)):
            self.title = _TITLE_PREFIX_RE.sub("", text).strip()
        elif not (self.phases and level > self.phase_level):
            # a non-"Phase" heading becomes a phase only if tasks follow it
            self.pending_heading = (level, text, line)

    # -- tasks
    def checkbox(self, m: re.Match, offset: int, line_no: int) -> None:
        indent = _indent(m.group("indent"))
        mark = m.group("mark")
        text = (m.group("text") or "").strip()
        if self.task is not None and indent > self.task_indent:
            self.task.subtasks.append(ParsedSubtask(text, _MARK_STATUS[mark], line_no))
            self.continuation(_dedent(m.group(), self.task_indent + 2))
            return
        phase = self.current_phase()
        commit = ""
        c = _COMMIT_RE.search(text)
        if c:
            commit, text = c.group("sha"), text[:c.start()].rstrip()
        label, desc = _split_label(text)
        tid = label or f"{phase.label}.{len(phase.tasks) + 1}"
        self.task = ParsedTask(
            id=tid, label=label, text=text, description=desc, status=_MARK_STATUS[mark],
            marker=mark, marker_offset=offset + m.start("mark"), line=line_no, commit=commit,
            step_mode=bool(_MANUAL_RE.search(text)))
        self.task_indent = indent
        self.blank_run = 0
        phase.tasks.append(self.task)

    def continuation(self, text: str) -> None:
        assert self.task is not None
        self.task.description += "\n" * (self.blank_run + 1) + text
        self.blank_run = 0


def _split_label(text: str) -> tuple[str | None, str]:
    m = _TASK_LABEL_RE.match(text)
    label = None
    if m:
        candidate = m.group("label").rstrip("*")
        if _LABEL_OK_RE.match(candidate):
            label = candidate
        else:
            m = None
    m = m or _TASK_NOLABEL_RE.match(text)
    if not m:
        return None, text
    rest = text[m.end():]
    if m.group("bold") and m.group().count("**") == 1:    # "**Task 1.1: Title** more"
        rest = rest.replace("**", "", 1)
    return label, rest.strip() or text


def parse_plan(text: str) -> ParsedPlan:
    """Parse a Conductor plan.md into phases and tasks (never raises on str input)."""
    if not isinstance(text, str):
        raise ValueError(f"plan text must be str, got {type(text).__name__}")
    b = _PlanBuilder()
    in_fence = False
    for offset, line_no, line in _logical_lines(text):
        fence = _FENCE_RE.match(line)
        if fence or in_fence:     # fenced code: never structure, part of the current task
            in_fence = in_fence != bool(fence)
            if b.task is not None:
                b.continuation(_dedent(line, b.task_indent + 2))
            continue
        if not line.strip():
            if b.task is not None:
                b.blank_run += 1
            b.prev_blank = True
            continue
        indent = _indent(line)
        box = _CHECKBOX_RE.match(line)
        heading = _HEADING_RE.match(line)
        if box:
            b.checkbox(box, offset, line_no)
        elif b.task is not None and (indent > b.task_indent or
                                     not (b.prev_blank or heading or _LIST_RE.match(line))):
            b.continuation(_dedent(line, b.task_indent + 2))
        elif heading:
            b.heading(len(heading.group("hashes")), _heading_text(heading.group("text")), line_no)
        else:
            b.task = None    # phase prose; not part of any task
        b.prev_blank = False
    _dedupe_ids(b.phases)
    for task in (t for p in b.phases for t in p.tasks):
        task.description = task.description.strip()
    return ParsedPlan(b.title, b.phases)


def _dedupe_ids(phases: list[ParsedPhase]) -> None:
    seen: set[str] = set()
    for task in (t for p in phases for t in p.tasks):
        base, k = task.id, 2
        while task.id in seen:
            task.id = f"{base}-{k}"
            k += 1
        if task.id != base:
            log.warning("plan line %d: task id %r is used twice; using %r", task.line, base, task.id)
        seen.add(task.id)


def plan_to_tickets(parsed: ParsedPlan) -> list[Ticket]:
    """Tasks in a phase run in order; each phase starts after the previous one ends."""
    tickets: list[Ticket] = []
    previous: str | None = None
    for task in parsed.tasks:
        tickets.append(Ticket(
            id=validate_id(task.id, f"plan line {task.line}"), description=task.description,
            status=task.status, depends_on=[previous] if previous else [],
            step_mode=task.step_mode))
        previous = task.id
    return tickets


# ================================================================ plan.md: writing

def apply_status_markers(text: str, tickets: list[Ticket]) -> tuple[str, list[str]]:
    """Return (new text, ids changed): only checkbox characters of matching task lines change."""
    wanted = {t.id: t.status for t in tickets}
    chars = list(text)
    changed = []
    for task in parse_plan(text).tasks:
        status = wanted.get(task.id)
        if status is None or _MARK_STATUS[task.marker] == _effective(status):
            continue
        chars[task.marker_offset] = _STATUS_MARK.get(status, " ")
        changed.append(task.id)
    return "".join(chars), changed


def _effective(status: str) -> str:
    """The status a checkbox can show (Conductor has no 'blocked' marker)."""
    return _MARK_STATUS[_STATUS_MARK.get(status, " ")]


def _read_text(path: Path) -> str:
    """Read exactly (no newline translation), so write-back keeps CRLF and friends."""
    return path.read_bytes().decode("utf-8")


def write_back_status(plan_path: str | Path, tickets: list[Ticket]) -> list[str]:
    """Sync plan.md checkboxes with ticket status; returns the ids whose marker changed."""
    plan_path = Path(plan_path)
    text = _read_text(plan_path)
    new_text, changed = apply_status_markers(text, tickets)
    if changed:
        atomic_write_text(plan_path, new_text)
        log.debug("%s: updated markers of %s", plan_path, changed)
    return changed


def _topological(tickets: list[Ticket]) -> list[Ticket]:
    """Dependencies first (TrackDAG's order); a graph that is not a DAG keeps list order."""
    try:
        order = TrackDAG(tickets).topological_order()
    except DAGError as exc:
        log.warning("writing plan.md in list order: %s", exc)
        return list(tickets)
    by_id = {t.id: t for t in tickets}
    return [by_id[tid] for tid in order]


def render_plan(track: Track) -> str:
    """A fresh plan.md whose `Task <id>:` lines parse back to the same ticket ids."""
    lines = [f"# Implementation Plan: {_one_line(track.title)}", "",
             f"## Phase 1: {_one_line(track.title)}"]
    for t in _topological(track.tickets):
        first, *rest = (_NEWLINE_RE.sub("\n", t.description).strip() or t.id).split("\n")
        lines.append(f"- [{_STATUS_MARK.get(t.status, ' ')}] Task {t.id}: {first}")
        lines.extend(f"  {r}" if r.strip() else "" for r in rest)
    text = "\n".join(lines) + "\n"
    parsed_ids = [t.id for t in parse_plan(text).tasks]
    if sorted(parsed_ids) != sorted(t.id for t in track.tickets):
        log.warning("track %s: plan.md will not map 1:1 to tickets (ids %s read back as %s); "
                    "a description probably holds a bare '- [ ]' mid-line", track.id,
                    [t.id for t in track.tickets], parsed_ids)
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ================================================================ tracks.md

@dataclass
class TrackEntry:
    id: str
    title: str
    status: str               # new | in_progress | completed | blocked | aborted
    link: str = ""


@dataclass
class _Found:
    entry: TrackEntry
    shape: str                # heading | item | link_item | table
    status_span: tuple[int, int] | None   # text to replace for a status change
    textual: bool = False     # status written as a word (table cell) rather than a marker
    end: int = 0              # offset just past the entry's last line
    columns: list[str] = field(default_factory=list)   # table header names


_TRACK_HEAD_RE = re.compile(
    r"^[ \t]{0,3}#{1,6}[ \t]+(?:\[(?P<mark>[ xX~])\][ \t]*)?(?:\*\*)?Track[ \t]*:[ \t]*(?P<title>.*)$",
    re.I)
_TRACK_ITEM_RE = re.compile(
    r"^[ \t]*[-*+][ \t]+\[(?P<mark>[ xX~])\][ \t]+\*\*Track[ \t]*:[ \t]*(?P<title>.*)$", re.I)
_TRACK_LINK_ITEM_RE = re.compile(
    r"^[ \t]*[-*+][ \t]+\[(?P<mark>[ xX~])\][ \t]+\[(?P<id>[^\]]+)\]\((?P<link>[^)]*)\)"
    r"[ \t]*[:\-\u2013\u2014]?[ \t]*(?P<title>.*)$")
_ID_LINE_RE = re.compile(
    r"^[ \t]*[*_]{0,2}[ \t]*ID[ \t]*:[ \t]*`?(?P<id>[^*`\s]+?)`?[ \t]*[*_]{0,2}[ \t]*$", re.I)
_MD_LINK_RE = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]*)\)")
_TRACK_DIR_RE = re.compile(r"tracks/(?P<id>[^/)\s#?]+)")
_TABLE_SEP_RE = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")
_INLINE_MARK_RE = re.compile(r"\[([ xX~])\]")


def _clean_title(text: str) -> str:
    return text.replace("**", "").strip().rstrip("*").strip()


def _status_word(text: str) -> str:
    low = text.lower()
    m = _INLINE_MARK_RE.search(text)
    if m:
        return _TRACK_MARK_STATUS[m.group(1)]
    for word, status in (("abort", "aborted"), ("block", "blocked"), ("progress", "in_progress"),
                         ("active", "in_progress"), ("complete", "completed"), ("done", "completed"),
                         ("finish", "completed"), ("\u2705", "completed")):
        if word in low:
            return status
    return "new"


def _id_from(link: str, title: str) -> str:
    m = _TRACK_DIR_RE.search(link)
    if m and _LABEL_OK_RE.match(m.group("id")):
        return m.group("id")
    return slugify(title)


def _line_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, end, next_start) per physical line."""
    spans, start = [], 0
    for m in _NEWLINE_RE.finditer(text):
        spans.append((start, m.start(), m.end()))
        start = m.end()
    spans.append((start, len(text), len(text)))
    return spans


def _table_cells(line: str, base: int) -> list[tuple[str, int, int]]:
    """Cells of a table row as (trimmed text, start, end) with absolute offsets."""
    plain = line.replace("\\|", "\0\0")    # escaped pipes are cell text, same length
    body_start = plain.index("|") + 1 if plain.lstrip().startswith("|") else 0
    body_end = plain.rstrip().rfind("|") if plain.rstrip().endswith("|") else len(plain)
    cells, pos = [], body_start
    for masked in plain[body_start:max(body_start, body_end)].split("|"):
        part = line[pos:pos + len(masked)]
        lead = len(part) - len(part.lstrip())
        stripped = part.strip()
        cells.append((stripped, base + pos + lead, base + pos + lead + len(stripped)))
        pos += len(part) + 1
    return cells


def _scan_table(text: str, spans: list, i: int) -> tuple[list[_Found], int]:
    start, end, _ = spans[i]
    header = [c[0].lower() for c in _table_cells(text[start:end], start)]
    col = {name: k for k, name in enumerate(header)}
    status_col = next((k for k, n in enumerate(header) if "status" in n), None)
    id_col = next((col[n] for n in ("track id", "track_id", "id") if n in col), None)
    title_col = next((col[n] for n in ("title", "description", "name", "track") if n in col), None)
    found, j = [], i + 2
    while j < len(spans) and "|" in text[spans[j][0]:spans[j][1]]:
        s, e, _ = spans[j]
        cells = _table_cells(text[s:e], s)
        cell = lambda k: cells[k] if k is not None and k < len(cells) else ("", s, s)  # noqa: E731
        links = [m for c in cells for m in _MD_LINK_RE.finditer(c[0])]
        link = links[0].group("target") if links else ""
        title = _MD_LINK_RE.sub(r"\g<text>", cell(title_col)[0]).replace("\\|", "|").strip()
        raw_id = _MD_LINK_RE.sub(r"\g<text>", cell(id_col)[0]).strip().strip("`")
        tid = raw_id if _LABEL_OK_RE.match(raw_id) else _id_from(link, title or raw_id)
        status_text, ss, se = cell(status_col)
        mark = _INLINE_MARK_RE.search(status_text)
        span = (ss + mark.start(1), ss + mark.start(1) + 1) if mark else (ss, se)
        if status_col is None:
            span = None
        found.append(_Found(TrackEntry(tid, title or tid, _status_word(status_text), link),
                            "table", span, textual=not mark, end=e, columns=header))
        j += 1
    return found, j


def _scan_tracks_md(text: str) -> list[_Found]:
    spans = _line_spans(text)
    found: list[_Found] = []
    current: _Found | None = None
    i = 0
    while i < len(spans):
        start, end, _ = spans[i]
        line = text[start:end]
        nxt = text[spans[i + 1][0]:spans[i + 1][1]] if i + 1 < len(spans) else ""
        if "|" in line and "|" in nxt and _TABLE_SEP_RE.match(nxt):
            rows, i = _scan_table(text, spans, i)
            found.extend(rows)
            current = None
            continue
        m = (_TRACK_HEAD_RE.match(line) or _TRACK_ITEM_RE.match(line)
             or _TRACK_LINK_ITEM_RE.match(line))
        if m:
            shape = ("heading" if m.re is _TRACK_HEAD_RE else
                     "item" if m.re is _TRACK_ITEM_RE else "link_item")
            title = _clean_title(m.group("title"))
            link = m.group("link") if shape == "link_item" else ""
            tid = m.group("id").strip("` ") if shape == "link_item" else ""
            if not _LABEL_OK_RE.match(tid):
                tid = _id_from(link, title) if link else ""
            mark = m.group("mark")
            span = (start + m.start("mark"), start + m.end("mark")) if mark else None
            current = _Found(TrackEntry(tid, title, _TRACK_MARK_STATUS.get(mark or " ", "new"),
                                        link), shape, span, end=end)
            found.append(current)
        elif _HEADING_RE.match(line) or line.strip() == "---":
            current = None
        elif current is not None and line.strip():
            idm = _ID_LINE_RE.match(line)
            if idm and _LABEL_OK_RE.match(idm.group("id")):
                current.entry.id = idm.group("id")
                current.end = end
            elif _MD_LINK_RE.search(line):
                current.entry.link = current.entry.link or _MD_LINK_RE.search(line).group("target")
                current.end = end
        i += 1
    for f in found:
        if not f.entry.id:
            f.entry.id = _id_from(f.entry.link, f.entry.title)
    return found


def parse_tracks_md(text: str) -> list[TrackEntry]:
    """Tracks listed in conductor/tracks.md, in any of the three known shapes."""
    return [f.entry for f in _scan_tracks_md(text)]


_WORDS = {"new": "New", "in_progress": "In Progress", "completed": "Completed",
          "blocked": "Blocked", "aborted": "Aborted"}


def _new_entry_text(track: Track, like: _Found | None) -> str:
    tid, title = track.id, _one_line(track.title)
    mark = _TRACK_STATUS_MARK.get(track.status, " ")
    if like is not None and like.shape == "link_item":
        return f"- [{mark}] [{tid}](./tracks/{tid}/plan.md): {title}\n"
    if like is not None and like.shape == "item":
        return f"- [{mark}] **Track: {title}**\n*Link: [./tracks/{tid}/](./tracks/{tid}/)*\n"
    return (f"## [{mark}] Track: {title}\n*ID: {tid}*\n"
            f"*Link: [spec](./tracks/{tid}/spec.md) | [plan](./tracks/{tid}/plan.md)*\n")


def _table_row(track: Track, columns: list[str]) -> str:
    cells = []
    for name in columns:
        if "status" in name:
            cells.append(f"[{_TRACK_STATUS_MARK.get(track.status, ' ')}]")
        elif name in ("track id", "track_id", "id"):
            cells.append(f"[{track.id}](./tracks/{track.id}/)")
        elif name in ("title", "description", "name", "track"):
            cells.append(_one_line(track.title).replace("|", "\\|"))
        elif "created" in name:
            cells.append(track.created_at[:10])
        elif "updated" in name:
            cells.append(track.updated_at[:10])
        else:
            cells.append("")
    return "| " + " | ".join(cells) + " |"


def upsert_tracks_md(text: str | None, track: Track) -> str:
    """tracks.md with `track` added or its status updated; nothing else changes."""
    if not text:
        return ("# Project Tracks\n\nThis file lists the tracks of the project; each has its own "
                "folder under `tracks/`.\n\n---\n\n" + _new_entry_text(track, None))
    found = _scan_tracks_md(text)
    mine = next((f for f in found if f.entry.id == track.id), None)
    if mine is not None:
        if mine.status_span is None or mine.entry.status == track.status:
            return text
        a, b = mine.status_span
        if mine.textual:
            word = _WORDS.get(track.status, track.status)
            new = word.lower() if text[a:b].islower() else word
        else:
            new = _TRACK_STATUS_MARK.get(track.status, " ")
            if _TRACK_MARK_STATUS[text[a]] == _TRACK_MARK_STATUS[new]:
                return text
        return text[:a] + new + text[b:]
    last = found[-1] if found else None
    nl = "\r\n" if "\r\n" in text else "\n"     # keep the file's line endings
    if last is not None and last.shape == "table":
        return text[:last.end] + nl + _table_row(track, last.columns) + text[last.end:]
    sep = "" if text.endswith("\n") else nl
    return text + sep + nl + _new_entry_text(track, last).replace("\n", nl)


# ================================================================ reading tracks

@dataclass
class TrackSource:
    """Everything read from a track folder or plan file by `read_track_source`."""
    track: Track
    plan_path: Path
    plan_text: str
    spec_text: str | None
    metadata: dict            # metadata.json as found ({} if none), unknown fields included
    folder: Path | None       # the track folder, when the plan is `<folder>/plan.md`


def _read_json_object(path: Path) -> dict:
    try:
        data = json.loads(_read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _valid_id(candidate: Any) -> str | None:
    return candidate if isinstance(candidate, str) and _LABEL_OK_RE.match(candidate) else None


def _derive_status(tickets: list[Ticket]) -> str:
    if tickets and all(t.status == COMPLETED for t in tickets):
        return "completed"
    if any(t.status in (COMPLETED, IN_PROGRESS) for t in tickets):
        return "in_progress"
    return "new"


def read_track_source(path: str | Path) -> TrackSource:
    """Read a track folder (`.../tracks/<id>/`) or a plan file; raises ValueError/OSError."""
    path = Path(path)
    if path.is_dir():
        folder, plan_path = path, path / "plan.md"
        if not plan_path.is_file():
            raise FileNotFoundError(f"{path}: no plan.md in this track folder")
    elif path.is_file():
        plan_path = path
        folder = path.parent if path.name.lower() == "plan.md" else None
    else:
        raise FileNotFoundError(f"{path}: no such track folder or plan file")
    plan_text = _read_text(plan_path)
    parsed = parse_plan(plan_text)
    tickets = plan_to_tickets(parsed)
    if not tickets:
        raise ValueError(f"{plan_path}: no tasks found (expected '- [ ] Task 1.1: ...' lines "
                         "under '## Phase N: ...' headings)")
    if folder is not None:
        spec_path, meta_path = folder / "spec.md", folder / "metadata.json"
    else:   # e.g. foo_plan.md next to foo_spec.md
        stem = re.sub(r"[_\-.]?plan$", "", plan_path.stem, flags=re.I)
        spec_path = plan_path.with_name(f"{stem}_spec.md" if stem else "spec.md")
        meta_path = None
    spec_text = _read_text(spec_path) if spec_path.is_file() else None
    metadata = _read_json_object(meta_path) if meta_path and meta_path.is_file() else {}
    track_id = (_valid_id(folder.name) if folder is not None else None) \
        or _valid_id(metadata.get("track_id")) \
        or slugify(re.sub(r"[_\-.]?plan$", "", plan_path.stem, flags=re.I) or parsed.title)
    spec_title = re.match(r"#[ \t]+(?:Track[ \t]+)?Spec(?:ification)?[ \t]*:[ \t]*(.+)",
                          spec_text or "", re.I)
    meta_desc = metadata.get("description") if isinstance(metadata.get("description"), str) else ""
    title = parsed.title or (spec_title.group(1).strip() if spec_title else "") \
        or meta_desc or track_id
    status = metadata.get("status")
    track = Track(id=track_id, title=title,
                  description=(spec_text or "").strip() or meta_desc or title, tickets=tickets,
                  status=status if status in _TRACK_STATUS_MARK else _derive_status(tickets))
    for key in ("created_at", "updated_at"):
        if isinstance(metadata.get(key), str):
            setattr(track, key, metadata[key])
    return TrackSource(track, plan_path, plan_text, spec_text, metadata, folder)


def import_track(path: str | Path) -> Track:
    """A Track (tickets from plan.md, description from spec.md) from a folder or plan file."""
    return read_track_source(path).track


def _tracks_dir(project_dir: str | Path) -> Path:
    return Path(project_dir) / "conductor" / "tracks"


def read_conductor_tree(project_dir: str | Path) -> list[TrackEntry]:
    """Tracks in conductor/tracks.md, then track folders that tracks.md does not list."""
    conductor = Path(project_dir) / "conductor"
    registry = conductor / "tracks.md"
    entries = parse_tracks_md(_read_text(registry)) if registry.is_file() else []
    known = {e.id for e in entries}
    tracks_dir = conductor / "tracks"
    folders = sorted(p for p in tracks_dir.iterdir() if p.is_dir()) if tracks_dir.is_dir() else []
    for folder in folders:
        if folder.name in known or not (folder / "plan.md").is_file():
            continue
        meta: dict = {}
        if (folder / "metadata.json").is_file():
            try:
                meta = _read_json_object(folder / "metadata.json")
            except ValueError as exc:
                log.warning("%s", exc)
        status = meta.get("status") if meta.get("status") in _TRACK_STATUS_MARK else "new"
        title = meta.get("description") if isinstance(meta.get("description"), str) else ""
        if not title:
            title = parse_plan(_read_text(folder / "plan.md")).title or folder.name
        entries.append(TrackEntry(folder.name, title, status, f"tracks/{folder.name}/plan.md"))
    return entries


@dataclass
class TrackSummary:
    id: str
    title: str
    status: str
    folder: Path
    has_state: bool           # state.json exists: the track can be resumed
    tickets_total: int
    tickets_done: int
    updated_at: str = ""


def list_tracks(project_dir: str | Path) -> list[TrackSummary]:
    """One summary per known track, for the GUI (state.json is the freshest source)."""
    out = []
    for entry in read_conductor_tree(project_dir):
        folder = _tracks_dir(project_dir) / entry.id
        summary = TrackSummary(entry.id, entry.title, entry.status, folder, False, 0, 0)
        state_path = folder / "state.json"
        try:
            if state_path.is_file():
                track, _ = _read_state(state_path)
                summary.status, summary.title = track.status, track.title
                summary.has_state, summary.updated_at = True, track.updated_at
                tickets = track.tickets
            elif (folder / "plan.md").is_file():
                tickets = plan_to_tickets(parse_plan(_read_text(folder / "plan.md")))
            else:
                tickets = []
        except (ValueError, OSError) as exc:
            log.warning("track %s: %s", entry.id, exc)
            tickets = []
        summary.tickets_total = len(tickets)
        summary.tickets_done = sum(t.status == COMPLETED for t in tickets)
        out.append(summary)
    return out


# ================================================================ saving and resuming

_SAVE_LOCK = threading.Lock()   # save_track runs on the engine thread and the GUI thread


def _short_description(track: Track) -> str:
    desc = track.description.strip()
    return desc if desc and "\n" not in desc and len(desc) <= 300 else track.title


def _save_metadata(path: Path, track: Track, metadata: dict | None) -> None:
    existing: dict = {}
    if path.is_file():
        try:
            existing = _read_json_object(path)
        except ValueError as exc:
            log.error("%s; leaving it untouched", exc)
            return
    data = {**(metadata or {}), **existing}
    data.update(track_id=track.id, status=track.status, updated_at=track.updated_at)
    data.setdefault("type", "feature")
    data.setdefault("created_at", track.created_at)
    data.setdefault("description", _short_description(track))
    if data != existing:
        atomic_write_json(path, data)


def _save_state(path: Path, track: Track, tier_usage: dict | None,
                extra_state: dict | None) -> None:
    clash = set(extra_state or {}) & set(_STATE_KEYS)
    if clash:
        raise ValueError(f"extra_state may not set {sorted(clash)}: those keys are reserved")
    old: dict = {}
    if path.is_file():
        try:
            old = _read_json_object(path)
        except ValueError as exc:
            log.warning("%s; replacing it", exc)
    track_dict = track.to_dict()
    tickets = track_dict.pop("tickets")
    state = {"track": track_dict, "tickets": tickets,
             "tier_usage": old.get("tier_usage", new_tier_usage()) if tier_usage is None
             else tier_usage}
    state.update((k, v) for k, v in old.items() if k not in _STATE_KEYS)
    state.update(extra_state or {})
    if {k: v for k, v in old.items() if k != "updated_at"} == state:
        return
    state["updated_at"] = utc_now()
    atomic_write_json(path, state)


def save_track(project_dir: str | Path, track: Track, spec_text: str | None = None,
               tier_usage: dict | None = None, extra_state: dict | None = None,
               metadata: dict | None = None) -> Path:
    """Write `conductor/tracks/<id>/` and register it in tracks.md; returns the folder.

    spec.md and plan.md are only created when missing (an existing plan.md just gets its
    checkboxes synced).  metadata.json keeps fields it does not own (plus `metadata`, the
    fields of an imported track).  Unchanged files are not rewritten.
    """
    validate_id(track.id, "track")
    folder = _tracks_dir(project_dir) / track.id
    with _SAVE_LOCK:
        folder.mkdir(parents=True, exist_ok=True)
        spec = folder / "spec.md"
        if not spec.exists():
            atomic_write_text(spec, spec_text if spec_text is not None else
                              f"# Track Specification: {_one_line(track.title)}\n\n"
                              f"{track.description.strip()}\n")
        plan = folder / "plan.md"
        if plan.exists():
            write_back_status(plan, track.tickets)
        else:
            atomic_write_text(plan, render_plan(track))
        _save_metadata(folder / "metadata.json", track, metadata)
        _save_state(folder / "state.json", track, tier_usage, extra_state)
        registry = folder.parent.parent / "tracks.md"
        old = _read_text(registry) if registry.is_file() else None
        new = upsert_tracks_md(old, track)
        if new != old:
            atomic_write_text(registry, new)
    return folder


class TrackStateError(ValueError):
    """state.json cannot be used; the message names the file."""


RESUME_NOTE = "Re-queued on resume: this ticket was in progress when the last session ended."


def _check_tier_usage(raw: Any, path: Path) -> dict:
    if not isinstance(raw, dict):
        raise TrackStateError(f"{path}: 'tier_usage' must be an object, got {type(raw).__name__}")
    usage = new_tier_usage()
    for tier, value in raw.items():
        if not isinstance(value, dict):
            raise TrackStateError(f"{path}: tier_usage['{tier}'] must be an object")
        for key in ("input", "output"):
            n = value.get(key, 0)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise TrackStateError(f"{path}: tier_usage['{tier}'].{key} must be a count, "
                                      f"got {n!r}")
        usage[tier] = {**usage.get(tier, {}), **value}
    for tier in TIERS:
        usage[tier].setdefault("model", "")
    return usage


def _read_state(path: Path) -> tuple[Track, dict]:
    """state.json as saved (no resume adjustments); raises TrackStateError naming the file."""
    hint = "Fix or delete this file (the track can be imported again from its plan.md)."
    try:
        state = _read_json_object(path)
        if not isinstance(state.get("track"), dict) or not isinstance(state.get("tickets"), list):
            raise ValueError(f"{path}: expected 'track' (object) and 'tickets' (list)")
        track = Track.from_dict({**state["track"], "tickets": state["tickets"]})
        usage = _check_tier_usage(state.get("tier_usage", {}), path)
    except TrackStateError:
        raise
    except ValueError as exc:
        msg = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        raise TrackStateError(f"{msg}. {hint}") from exc
    return track, usage


def load_track_state(project_dir: str | Path, track_id: str) -> tuple[Track, dict]:
    """(Track, tier_usage) from state.json, ready to resume.

    Completed tickets stay completed; tickets that were in progress come back as todo
    with a note in `result`, so nothing finished runs again and nothing started is lost.
    """
    validate_id(track_id, "track")
    path = _tracks_dir(project_dir) / track_id / "state.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved state for track {track_id!r}")
    track, usage = _read_state(path)
    for ticket in track.tickets:
        if ticket.status == IN_PROGRESS:
            ticket.status = TODO
            ticket.result = f"{RESUME_NOTE}\n{ticket.result}" if ticket.result else RESUME_NOTE
            log.info("track %s: ticket %s re-queued (was in progress)", track.id, ticket.id)
    return track, usage


# ================================================================ CLI

def _print_dag(track: Track, out=None) -> None:
    out = out or sys.stdout
    print(f"Track {track.id}: {track.title} ({len(track.tickets)} tickets)", file=out)
    width = max([len(t.id) for t in track.tickets] + [2])
    print(f"{'id':<{width}}  {'status':<11}  {'depends_on':<14}  description", file=out)
    for t in track.tickets:
        desc = _one_line(t.description)
        desc = desc if len(desc) <= 72 else desc[:71] + "\u2026"
        step = " [step]" if t.step_mode else ""
        print(f"{t.id:<{width}}  {t.status:<11}  {','.join(t.depends_on) or '-':<14}  "
              f"{desc}{step}", file=out)


def cli_import_track(path: str, project: str | None = None) -> int:
    """`mma-desk import-track PATH [--project DIR]`: print the ticket DAG, optionally save it."""
    try:
        src = read_track_source(path)
        _print_dag(src.track)
        if project is None:
            return 0
        dest = _tracks_dir(project) / src.track.id
        plan = dest / "plan.md"
        if plan.exists() and plan.resolve() != src.plan_path.resolve():
            print(f"error: {dest} already exists; a track with id {src.track.id!r} is already "
                  "in this project (rename the source folder or remove the old track)",
                  file=sys.stderr)
            return 1
        if not plan.exists():   # keep the original plan text, so its ids and layout stay
            atomic_write_text(plan, src.plan_text)
        folder = save_track(project, src.track, spec_text=src.spec_text, metadata=src.metadata)
        print(f"saved to {folder}")
        return 0
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
