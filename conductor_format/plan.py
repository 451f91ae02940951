"""plan.md: parsing into phases and tasks, rendering from a track, syncing checkboxes.

Import is tolerant of real-world plans (see docs/guide_persistence.md):
long lines, inline code, nested sub-tasks, `[x]`/`[~]`/`[ ]` markers with a
trailing commit SHA, CRLF, any heading level, tasks written as headings
(`### [x] Task 1.1: ...`), fenced code closed by CommonMark's rules, and plans
whose line breaks were lost altogether.  What it has to guess is reported in
`ParsedPlan.warnings`: `[/]` (read as in progress) and other marks like `[-]`
(read as to do) keep their task; a checkbox with no text is skipped.
Write-back only ever changes the checkbox characters of task lines.

Ticket id rule: a task whose text starts with `Task <label>:` gets the id
`<label>` (e.g. "1.1"); any other task gets `<phase>.<n>`, where `<phase>` is
the number from a `Phase <number>` heading (else the phase's position) and `<n>`
the task's 1-based position among that phase's top-level tasks.  Repeated ids
get a `-2`, `-3`... suffix.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from atomic_files import atomic_write_text
from conductor_format.common import HEADING_RE, LABEL_OK_RE, NEWLINE_RE, one_line, read_text
from dag_engine import DAGError, TrackDAG
from models import COMPLETED, IN_PROGRESS, TODO, Ticket, Track, validate_id

log = logging.getLogger(__name__)

_MARK_STATUS = {" ": TODO, "x": COMPLETED, "X": COMPLETED, "~": IN_PROGRESS}
_GUESSED_MARK_STATUS = {"/": IN_PROGRESS}    # other unknown marks count as to do


def _mark_status(mark: str) -> str:
    return _MARK_STATUS.get(mark) or _GUESSED_MARK_STATUS.get(mark, TODO)
_STATUS_MARK = {TODO: " ", IN_PROGRESS: "~", COMPLETED: "x", "blocked": "~"}


# ================================================================ parsing

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
    warnings: list[str] = field(default_factory=list)   # what the reader had to guess or skip

    @property
    def tasks(self) -> list[ParsedTask]:
        return [t for p in self.phases for t in p.tasks]


# A mark is one of ` xX~`, or any other single symbol (`[/]`, `[-]`, `[>]`), kept with a warning.
_MARK = r"\[(?P<mark>[ xX~]|[^\]\w\s])\]"
_CHECKBOX_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?:[-*+]|\d{1,4}[.)])[ \t]+" + _MARK + r"(?:[ \t]+(?P<text>.*))?$")
# `### [x] Task 1.1: ...`: a task written as a heading (its list items are its sub-tasks)
_HEADING_TASK_RE = re.compile(r"^(?P<indent>)[ \t]{0,3}#{1,6}[ \t]+" + _MARK + r"[ \t]+(?P<text>.*?)[ \t]*#*[ \t]*$")
# where a plan lost its line breaks: whitespace before a checkbox item or a ##..###### heading
_SPLIT_RE = re.compile(r"(?<=\S)[ \t]+(?=[-*+][ \t]+\[[ xX~]\](?:[ \t]|$)|#{2,6}[ \t]+\S)")
# CommonMark: a fence opens with 3+ backticks or tildes (an info string may follow) and closes
# with the same character, at least as many, and nothing but spaces after.
_FENCE_RE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
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
    bounds = [(m.start(), m.end()) for m in NEWLINE_RE.finditer(text)] + [(len(text), len(text))]
    for line_no, (nl_start, nl_end) in enumerate(bounds, start=1):
        line = text[start:nl_start]
        masked = _mask_code_spans(line)
        cuts = list(_SPLIT_RE.finditer(masked))
        # split a line only when it is clearly several lines run together: it holds a
        # further checkbox item, or it is a heading with another heading after it
        if not any(masked[m.end()] != "#" for m in cuts) and not HEADING_RE.match(line):
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
        self.warnings: list[str] = []

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
            self.new_phase(label if LABEL_OK_RE.match(label) else None, name, line, level)
        elif not self.title and not self.phases and (level == 1 or _TITLE_PREFIX_RE.match(text)):
            self.title = _TITLE_PREFIX_RE.sub("", text).strip()
        elif not (self.phases and level > self.phase_level):
            # a non-"Phase" heading becomes a phase only if tasks follow it
            self.pending_heading = (level, text, line)

    # -- tasks
    def checkbox(self, m: re.Match, offset: int, line_no: int, heading: bool = False) -> None:
        indent = _indent(m.group("indent"))
        mark = m.group("mark")
        text = (m.group("text") or "").strip()
        if mark not in _MARK_STATUS:
            self.warnings.append(f"line {line_no}: unknown checkbox mark [{mark}]; read as "
                                 f"{_mark_status(mark).replace('_', ' ')}")
        if self.task is not None and indent > self.task_indent and not heading:
            self.task.subtasks.append(ParsedSubtask(text, _mark_status(mark), line_no))
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
            id=tid, label=label, text=text, description=desc, status=_mark_status(mark),
            marker=mark, marker_offset=offset + m.start("mark"), line=line_no, commit=commit,
            step_mode=bool(_MANUAL_RE.search(text)))
        self.task_indent = -1 if heading else indent     # under a task heading, every line is its own
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
        if LABEL_OK_RE.match(candidate):
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
    fence_open = ""               # the opening fence of the code block we are in, if any
    for offset, line_no, line in _logical_lines(text):
        fence = _FENCE_RE.match(line)
        if fence or fence_open:   # fenced code: never structure, part of the current task
            if not fence_open and fence is not None:
                fence_open = fence.group("fence")
            elif fence is not None and fence.group("fence")[0] == fence_open[0] \
                    and len(fence.group("fence")) >= len(fence_open) and not fence.group("info").strip():
                fence_open = ""
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
        heading = HEADING_RE.match(line)
        heading_task = _HEADING_TASK_RE.match(line) if heading and not box else None
        if heading_task and _PHASE_RE.match(heading_task.group("text")):
            heading_task = None      # `## [x] Phase 1: ...` is a phase
        if box:
            b.checkbox(box, offset, line_no)
        elif heading_task:
            b.checkbox(heading_task, offset, line_no, heading=True)
        elif b.task is not None and (indent > b.task_indent or
                                     not (b.prev_blank or heading or _LIST_RE.match(line))):
            b.continuation(_dedent(line, b.task_indent + 2))
        elif heading:
            b.heading(len(heading.group("hashes")), _heading_text(heading.group("text")), line_no)
        else:
            b.task = None    # phase prose; not part of any task
        b.prev_blank = False
    for phase in b.phases:
        for task in [t for t in phase.tasks if not t.description.strip()]:
            b.warnings.append(f"line {task.line}: a checkbox with no text; skipped")
            phase.tasks.remove(task)
    _dedupe_ids(b.phases)
    for task in (t for p in b.phases for t in p.tasks):
        task.description = task.description.strip()
    for warning in b.warnings:
        log.warning("plan.md %s", warning)
    return ParsedPlan(b.title, b.phases, b.warnings)


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


# ================================================================ writing

def apply_status_markers(text: str, tickets: list[Ticket]) -> tuple[str, list[str]]:
    """Return (new text, ids changed): only checkbox characters of matching task lines change."""
    wanted = {t.id: t.status for t in tickets}
    chars = list(text)
    changed = []
    for task in parse_plan(text).tasks:
        status = wanted.get(task.id)
        if status is None or _mark_status(task.marker) == _effective(status):
            continue
        chars[task.marker_offset] = _STATUS_MARK.get(status, " ")
        changed.append(task.id)
    return "".join(chars), changed


def _effective(status: str) -> str:
    """The status a checkbox can show (Conductor has no 'blocked' marker)."""
    return _MARK_STATUS[_STATUS_MARK.get(status, " ")]


def write_back_status(plan_path: str | Path, tickets: list[Ticket]) -> list[str]:
    """Sync plan.md checkboxes with ticket status; returns the ids whose marker changed."""
    plan_path = Path(plan_path)
    text = read_text(plan_path)
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
    lines = [f"# Implementation Plan: {one_line(track.title)}", "",
             f"## Phase 1: {one_line(track.title)}"]
    for t in _topological(track.tickets):
        first, *rest = (NEWLINE_RE.sub("\n", t.description).strip() or t.id).split("\n")
        lines.append(f"- [{_STATUS_MARK.get(t.status, ' ')}] Task {t.id}: {first}")
        lines.extend(f"  {r}" if r.strip() else "" for r in rest)
    text = "\n".join(lines) + "\n"
    parsed_ids = [t.id for t in parse_plan(text).tasks]
    if sorted(parsed_ids) != sorted(t.id for t in track.tickets):
        log.warning("track %s: plan.md will not map 1:1 to tickets (ids %s read back as %s); "
                    "a description probably holds a bare '- [ ]' mid-line", track.id,
                    [t.id for t in track.tickets], parsed_ids)
    return text
