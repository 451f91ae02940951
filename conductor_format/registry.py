"""conductor/tracks.md: the project's list of tracks, read and updated in place.

Three entry shapes are understood (heading + `*ID:*` line, checkbox item, link item) plus
tables; `upsert_tracks_md` changes only the status marker of an existing entry, or appends
a new entry in the shape the file already uses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from conductor_format.common import HEADING_RE, LABEL_OK_RE, NEWLINE_RE, one_line
from models import Track, slugify

TRACK_STATUS_MARK = {"new": " ", "in_progress": "~", "completed": "x", "blocked": "~",
                     "aborted": " "}
_TRACK_MARK_STATUS = {" ": "new", "~": "in_progress", "x": "completed", "X": "completed"}


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
    if m and LABEL_OK_RE.match(m.group("id")):
        return m.group("id")
    return slugify(title)


def _line_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, end, next_start) per physical line."""
    spans, start = [], 0
    for m in NEWLINE_RE.finditer(text):
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


def _cell(cells: list[tuple[str, int, int]], k: int | None, row_start: int) -> tuple[str, int, int]:
    """Cell `k` of a table row, or an empty cell at the row start when the table has no such column."""
    return cells[k] if k is not None and k < len(cells) else ("", row_start, row_start)


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
        links = [m for c in cells for m in _MD_LINK_RE.finditer(c[0])]
        link = links[0].group("target") if links else ""
        title = _MD_LINK_RE.sub(r"\g<text>", _cell(cells, title_col, s)[0]).replace("\\|", "|").strip()
        raw_id = _MD_LINK_RE.sub(r"\g<text>", _cell(cells, id_col, s)[0]).strip().strip("`")
        tid = raw_id if LABEL_OK_RE.match(raw_id) else _id_from(link, title or raw_id)
        status_text, ss, se = _cell(cells, status_col, s)
        mark = _INLINE_MARK_RE.search(status_text)
        span: tuple[int, int] | None = None        # where the status is written back, if anywhere
        if status_col is not None:
            span = (ss + mark.start(1), ss + mark.start(1) + 1) if mark else (ss, se)
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
            if not LABEL_OK_RE.match(tid):
                tid = _id_from(link, title) if link else ""
            mark = m.group("mark")
            span = (start + m.start("mark"), start + m.end("mark")) if mark else None
            current = _Found(TrackEntry(tid, title, _TRACK_MARK_STATUS.get(mark or " ", "new"),
                                        link), shape, span, end=end)
            found.append(current)
        elif HEADING_RE.match(line) or line.strip() == "---":
            current = None
        elif current is not None and line.strip():
            idm = _ID_LINE_RE.match(line)
            if idm and LABEL_OK_RE.match(idm.group("id")):
                current.entry.id = idm.group("id")
                current.end = end
            elif link_match := _MD_LINK_RE.search(line):
                current.entry.link = current.entry.link or link_match.group("target")
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
    tid, title = track.id, one_line(track.title)
    mark = TRACK_STATUS_MARK.get(track.status, " ")
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
            cells.append(f"[{TRACK_STATUS_MARK.get(track.status, ' ')}]")
        elif name in ("track id", "track_id", "id"):
            cells.append(f"[{track.id}](./tracks/{track.id}/)")
        elif name in ("title", "description", "name", "track"):
            cells.append(one_line(track.title).replace("|", "\\|"))
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
            new = TRACK_STATUS_MARK.get(track.status, " ")
            if _TRACK_MARK_STATUS[text[a]] == _TRACK_MARK_STATUS[new]:
                return text
        return text[:a] + new + text[b:]
    last = found[-1] if found else None
    nl = "\r\n" if "\r\n" in text else "\n"     # keep the file's line endings
    if last is not None and last.shape == "table":
        return text[:last.end] + nl + _table_row(track, last.columns) + text[last.end:]
    sep = "" if text.endswith("\n") else nl
    return text + sep + nl + _new_entry_text(track, last).replace("\n", nl)
