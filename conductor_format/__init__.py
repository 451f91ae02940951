"""The Conductor layout on disk, one module per file kind; `conductor_io` is the front door.

- `plan.py`: plan.md, parsed into phases and tasks, rendered from a track, checkboxes synced.
- `registry.py`: conductor/tracks.md, in the shapes real projects use; entries added or updated.
- `track_folder.py`: reading a track folder (or a lone plan file) and listing a project's tracks.
- `state.py`: saving a track (spec, plan, metadata.json, state.json, tracks.md) and resuming it.
- `common.py`: line patterns, the label rule and exact file reading they all share.

Import from `conductor_io`; these modules are its implementation.
"""
