"""Saving a track to its folder and loading it back for a resume.

`save_track` writes spec.md and plan.md once, then keeps plan.md's checkboxes, metadata.json,
state.json and the tracks.md entry in step with the track; unchanged files are not rewritten.
`load_track_state` re-queues tickets that were in progress when the last session ended.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from atomic_files import atomic_write_json, atomic_write_text, remove_stale_temp_files
from conductor_format.common import one_line, read_json_object, read_json_object_if_present, read_text, tracks_dir
from conductor_format.plan import render_plan, write_back_status
from conductor_format.registry import upsert_tracks_md
from models import IN_PROGRESS, TIERS, TODO, Track, new_tier_usage, utc_now, validate_id

log = logging.getLogger(__name__)

_STATE_KEYS = ("track", "tickets", "tier_usage", "updated_at")
_SAVE_LOCK = threading.Lock()   # save_track runs on the engine thread and the GUI thread


def _short_description(track: Track) -> str:
    desc = track.description.strip()
    return desc if desc and "\n" not in desc and len(desc) <= 300 else track.title


def _save_metadata(path: Path, track: Track, metadata: dict | None) -> None:
    try:
        existing = read_json_object_if_present(path)
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
    try:
        old = read_json_object_if_present(path)
    except ValueError as exc:
        log.warning("%s; replacing it", exc)
        old = {}
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
    folder = tracks_dir(project_dir) / track.id
    with _SAVE_LOCK:
        folder.mkdir(parents=True, exist_ok=True)
        spec = folder / "spec.md"
        if not spec.exists():
            atomic_write_text(spec, spec_text if spec_text is not None else
                              f"# Track Specification: {one_line(track.title)}\n\n"
                              f"{track.description.strip()}\n")
        plan = folder / "plan.md"
        if plan.exists():
            write_back_status(plan, track.tickets)
        else:
            atomic_write_text(plan, render_plan(track))
        _save_metadata(folder / "metadata.json", track, metadata)
        _save_state(folder / "state.json", track, tier_usage, extra_state)
        registry = folder.parent.parent / "tracks.md"
        old = read_text(registry) if registry.is_file() else None
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
        _check_counts(value, f"tier_usage['{tier}']", path)
        models = value.get("models", {})
        if not isinstance(models, dict):
            raise TrackStateError(f"{path}: tier_usage['{tier}'].models must be an object")
        for model, row in models.items():
            if not isinstance(row, dict):
                raise TrackStateError(f"{path}: tier_usage['{tier}'].models['{model}'] must be an object")
            _check_counts(row, f"tier_usage['{tier}'].models['{model}']", path)
        usage[tier] = {**usage.get(tier, {}), **value}
    for tier in TIERS:
        usage[tier].setdefault("model", "")
    return usage


def _check_counts(value: dict, where: str, path: Path) -> None:
    for key in ("input", "output"):
        n = value.get(key, 0)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise TrackStateError(f"{path}: {where}.{key} must be a count, got {n!r}")


def read_state(path: Path) -> tuple[Track, dict]:
    """state.json as saved (no resume adjustments); raises TrackStateError naming the file."""
    hint = "Fix or delete this file (the track can be imported again from its plan.md)."
    try:
        state = read_json_object(path)
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
    path = tracks_dir(project_dir) / track_id / "state.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved state for track {track_id!r}")
    remove_stale_temp_files(path.parent)
    remove_stale_temp_files(path.parent.parent.parent, names=("tracks.md",))
    track, usage = read_state(path)
    for ticket in track.tickets:
        if ticket.status == IN_PROGRESS:
            ticket.status = TODO
            ticket.result = f"{RESUME_NOTE}\n{ticket.result}" if ticket.result else RESUME_NOTE
            log.info("track %s: ticket %s re-queued (was in progress)", track.id, ticket.id)
    return track, usage



def load_track_extras(project_dir: str | Path, track_id: str) -> dict:
    """The extra keys saved beside a track's state (e.g. the epic and the provider)."""
    validate_id(track_id, "track")
    path = tracks_dir(project_dir) / track_id / "state.json"
    try:
        state = read_json_object(path)
    except ValueError as exc:
        raise TrackStateError(f"{path}: {exc}") from exc
    return {k: v for k, v in state.items() if k not in _STATE_KEYS}
