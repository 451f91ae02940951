"""Read and write the Conductor layout (`conductor/tracks.md`, `conductor/tracks/<id>/`).

This is the front door; the code lives in `conductor_format/` (see docs/guide_persistence.md):

- `conductor_format.plan`: plan.md parsing (tolerant of real-world plans: long lines, inline
  code, nested sub-tasks, `[x]`/`[~]`/`[ ]` markers with a trailing commit SHA, CRLF, any
  heading level, lost line breaks), rendering, and checkbox write-back.  It also states the
  ticket id rule.
- `conductor_format.registry`: tracks.md entries, read in any known shape and updated in place.
- `conductor_format.track_folder`: importing a track folder or plan file; listing tracks.
- `conductor_format.state`: save_track (spec, plan, metadata.json, state.json, tracks.md) and
  load_track_state for a resume.

Write-back only ever changes the checkbox characters of task lines and the status marker of
our own tracks.md entry.  The `mma-desk import-track` CLI lives here.
"""
from __future__ import annotations

import sys

from conductor_format.common import one_line, tracks_dir
from conductor_format.plan import (ParsedPhase, ParsedPlan, ParsedSubtask, ParsedTask,
                                   apply_status_markers, parse_plan, plan_to_tickets, render_plan,
                                   write_back_status)
from conductor_format.registry import TrackEntry, parse_tracks_md, upsert_tracks_md
from conductor_format.state import (RESUME_NOTE, TrackStateError, load_track_extras, load_track_state,
                                    save_track)
from conductor_format.track_folder import (TrackSource, TrackSummary, import_track, list_tracks,
                                           read_conductor_tree, read_track_source)
from models import Track
from persistence import atomic_write_text

__all__ = [
    # plan.md
    "ParsedSubtask", "ParsedTask", "ParsedPhase", "ParsedPlan", "parse_plan", "plan_to_tickets",
    "apply_status_markers", "write_back_status", "render_plan",
    # tracks.md
    "TrackEntry", "parse_tracks_md", "upsert_tracks_md",
    # reading tracks
    "TrackSource", "read_track_source", "import_track", "read_conductor_tree", "TrackSummary",
    "list_tracks",
    # saving and resuming
    "save_track", "TrackStateError", "RESUME_NOTE", "load_track_state", "load_track_extras",
    # CLI
    "cli_import_track",
]


def _print_dag(track: Track, out=None) -> None:
    out = out or sys.stdout
    print(f"Track {track.id}: {track.title} ({len(track.tickets)} tickets)", file=out)
    width = max([len(t.id) for t in track.tickets] + [2])
    print(f"{'id':<{width}}  {'status':<11}  {'depends_on':<14}  description", file=out)
    for t in track.tickets:
        desc = one_line(t.description)
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
        dest = tracks_dir(project) / src.track.id
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
