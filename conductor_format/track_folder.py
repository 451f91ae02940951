"""Reading tracks: a track folder or a lone plan file, and the list of a project's tracks."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conductor_format.common import (
    LABEL_OK_RE,
    read_json_object_if_present,
    read_json_object_salvaged,
    read_text,
    read_text_lenient,
    tracks_dir,
)
from conductor_format.plan import parse_plan, plan_to_tickets
from conductor_format.registry import TRACK_STATUS_MARK, TrackEntry, parse_tracks_md
from conductor_format.state import read_state
from models import COMPLETED, IN_PROGRESS, Ticket, Track, slugify

log = logging.getLogger(__name__)


@dataclass
class TrackSource:
    """Everything read from a track folder or plan file by `read_track_source`."""
    track: Track
    plan_path: Path
    plan_text: str
    spec_text: str | None
    metadata: dict            # metadata.json as found ({} if none), unknown fields included
    folder: Path | None       # the track folder, when the plan is `<folder>/plan.md`
    warnings: list[str] = field(default_factory=list)   # what the import had to guess or skip


def _valid_id(candidate: Any) -> str | None:
    return candidate if isinstance(candidate, str) and LABEL_OK_RE.match(candidate) else None


def _derive_status(tickets: list[Ticket]) -> str:
    if tickets and all(t.status == COMPLETED for t in tickets):
        return "completed"
    if any(t.status in (COMPLETED, IN_PROGRESS) for t in tickets):
        return "in_progress"
    return "new"


def read_track_source(path: str | Path) -> TrackSource:
    """Read a track folder (`.../tracks/<id>/`) or a plan file; raises ValueError/OSError."""
    path = Path(path)
    folder: Path | None                  # the track folder, when the plan is a folder's plan.md
    if path.is_dir():
        folder, plan_path = path, path / "plan.md"
        if not plan_path.is_file():
            raise FileNotFoundError(f"{path}: no plan.md in this track folder")
    elif path.is_file():
        plan_path = path
        folder = path.parent if path.name.lower() == "plan.md" else None
    else:
        raise FileNotFoundError(f"{path}: no such track folder or plan file")
    plan_text = read_text(plan_path)
    parsed = parse_plan(plan_text)
    warnings = [f"{plan_path}: {w}" for w in parsed.warnings]
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
    spec_text = None
    if spec_path.is_file():
        spec_text, problem = read_text_lenient(spec_path)
        warnings += [problem] if problem else []
    metadata: dict = {}
    if meta_path is not None and meta_path.is_file():
        metadata, problem = read_json_object_salvaged(meta_path)
        warnings += [problem] if problem else []
    for warning in warnings:
        log.warning("import: %s", warning)
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
                  status=status if isinstance(status, str) and status in TRACK_STATUS_MARK else _derive_status(tickets))
    for key in ("created_at", "updated_at"):
        if isinstance(metadata.get(key), str):
            setattr(track, key, metadata[key])
    return TrackSource(track, plan_path, plan_text, spec_text, metadata, folder, warnings)


def import_track(path: str | Path) -> Track:
    """A Track (tickets from plan.md, description from spec.md) from a folder or plan file."""
    return read_track_source(path).track


def read_conductor_tree(project_dir: str | Path) -> list[TrackEntry]:
    """Tracks in conductor/tracks.md, then track folders that tracks.md does not list."""
    conductor = Path(project_dir) / "conductor"
    registry = conductor / "tracks.md"
    entries = []
    if registry.is_file():
        text, problem = read_text_lenient(registry)
        if problem:
            log.warning("%s", problem)
        entries = parse_tracks_md(text)
    known = {e.id for e in entries}
    track_root = tracks_dir(project_dir)
    folders = sorted(p for p in track_root.iterdir() if p.is_dir()) if track_root.is_dir() else []
    for folder in folders:
        if folder.name in known or not (folder / "plan.md").is_file():
            continue
        try:
            meta = read_json_object_if_present(folder / "metadata.json")
        except ValueError as exc:
            log.warning("%s", exc)
            meta = {}
        raw_status, description = meta.get("status"), meta.get("description")
        status = raw_status if isinstance(raw_status, str) and raw_status in TRACK_STATUS_MARK else "new"
        title = description if isinstance(description, str) else ""
        if not title:
            title = parse_plan(read_text_lenient(folder / "plan.md")[0]).title or folder.name
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
        folder = tracks_dir(project_dir) / entry.id
        summary = TrackSummary(entry.id, entry.title, entry.status, folder, False, 0, 0)
        state_path = folder / "state.json"
        try:
            if state_path.is_file():
                track, _ = read_state(state_path)
                summary.status, summary.title = track.status, track.title
                summary.has_state, summary.updated_at = True, track.updated_at
                tickets = track.tickets
            elif (folder / "plan.md").is_file():
                tickets = plan_to_tickets(parse_plan(read_text_lenient(folder / "plan.md")[0]))
            else:
                tickets = []
        except (ValueError, OSError) as exc:
            log.warning("track %s: %s", entry.id, exc)
            tickets = []
        summary.tickets_total = len(tickets)
        summary.tickets_done = sum(t.status == COMPLETED for t in tickets)
        out.append(summary)
    return out
