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

from conductor_format.plan import (
    ParsedPhase,
    ParsedPlan,
    ParsedSubtask,
    ParsedTask,
    apply_status_markers,
    parse_plan,
    plan_to_tickets,
    render_plan,
    write_back_status,
)
from conductor_format.registry import TrackEntry, parse_tracks_md, upsert_tracks_md
from conductor_format.state import RESUME_NOTE, TrackStateError, load_track_extras, load_track_state, save_track
from conductor_format.track_folder import (
    TrackSource,
    TrackSummary,
    import_track,
    list_tracks,
    read_conductor_tree,
    read_track_source,
)

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
]
