"""The Conductor plans people actually write: each shape found in public repositories, as a
small plan of our own with the same shape (conductor_format/plan.py, common.py, track_folder.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import cli
import conductor_io
import events
from conductor_format.common import ConductorFileError, read_json_object_salvaged, read_text
from models import COMPLETED, IN_PROGRESS, TODO, Ticket
from pipeline import Pipeline
from run_settings import RunSettings

PLAN = """# Implementation Plan: Widgets

## Phase 1: Setup

- [ ] Task 1.1: Create the widget module
- [x] Task 1.2: Write the tests
"""


def _track(tmp_path: Path, plan: str = PLAN, metadata: bytes | None = None, name: str = "widgets_20260101") -> Path:
    folder = tmp_path / "conductor" / "tracks" / name
    folder.mkdir(parents=True)
    (folder / "plan.md").write_text(plan)
    if metadata is not None:
        (folder / "metadata.json").write_bytes(metadata)
    return folder


def test_metadata_with_a_byte_order_mark_is_read(tmp_path: Path):
    meta = {"track_id": "widgets_20260101", "status": "in_progress", "description": "Widgets, all of them"}
    folder = _track(tmp_path, metadata=b"\xef\xbb\xbf" + json.dumps(meta).encode())
    src = conductor_io.read_track_source(folder)
    assert src.warnings == []
    assert src.metadata == meta and src.track.status == "in_progress"
    conductor_io.save_track(tmp_path, src.track, metadata=src.metadata)    # write-back keeps working
    assert json.loads((folder / "metadata.json").read_text(encoding="utf-8-sig"))["description"] == meta["description"]


def test_metadata_with_unescaped_quotes_imports_the_plan_and_warns(tmp_path: Path):
    broken = b'{\n  "track_id": "widgets_20260101",\n  "status": "new",\n' \
             b'  "description": "Add the "fancy" widgets",\n  "type": "feature"\n}\n'
    folder = _track(tmp_path, metadata=broken)
    src = conductor_io.read_track_source(folder)
    assert [t.id for t in src.track.tickets] == ["1.1", "1.2"]
    assert len(src.warnings) == 1 and "metadata.json: not valid JSON" in src.warnings[0]
    assert "kept the fields that could be read: description, status, track_id, type" in src.warnings[0]
    assert src.metadata["description"] == 'Add the "fancy" widgets'
    before = (folder / "metadata.json").read_bytes()
    conductor_io.save_track(tmp_path, src.track, metadata=src.metadata)
    assert (folder / "metadata.json").read_bytes() == before, "a damaged file is left as it is"


def test_metadata_with_a_stray_patch_line_is_read_whole(tmp_path: Path):
    text = json.dumps({"track_id": "widgets_20260101", "status": "completed", "owner": "ana"}, indent=2)
    folder = _track(tmp_path, metadata=(text + "\n\\ No newline at end of file\n").encode())
    src = conductor_io.read_track_source(folder)
    assert src.metadata["owner"] == "ana" and src.track.status == "completed"
    assert "stray '\\ No newline at end of file' line" in src.warnings[0]


def test_a_fence_with_an_info_string_does_not_close_a_code_block(tmp_path: Path):
    plan = """## Phase 1: Docs

- [ ] Task 1.1: Document the setup
  ```markdown
  Example of a plan:
  ```python
  - [ ] this checkbox is an example, not a task
  ```
- [ ] Task 1.2: Publish the docs
~~~~
- [ ] still code
~~~
- [ ] still code, the fence above is too short to close
~~~~
- [ ] Task 1.3: Announce
"""
    parsed = conductor_io.parse_plan(plan)
    assert [t.id for t in parsed.tasks] == ["1.1", "1.2", "1.3"]
    assert "this checkbox is an example" in parsed.tasks[0].description
    assert "still code, the fence above" in parsed.tasks[1].description


def test_a_bare_checkbox_is_skipped_with_a_warning(tmp_path: Path):
    plan = "## Phase 1: Work\n\n- [ ]\n- [ ] Task 1.2: Real work\n- [x]  \n"
    parsed = conductor_io.parse_plan(plan)
    assert [t.id for t in parsed.tasks] == ["1.2"]
    assert parsed.warnings == ["line 3: a checkbox with no text; skipped",
                               "line 5: a checkbox with no text; skipped"]
    src = conductor_io.read_track_source(_track(tmp_path, plan))
    assert all(t.description for t in src.track.tickets)
    assert any("plan.md: line 3: a checkbox with no text" in w for w in src.warnings)


def test_tasks_written_as_headings(tmp_path: Path):
    plan = """# Plan

## Phase 1: Core

### [x] Task 1.1: Parse the input
- [x] read the file
- [x] split lines

### [ ] Task 1.2: Render the output
Render it as HTML.
"""
    parsed = conductor_io.parse_plan(plan)
    assert [(t.id, t.status) for t in parsed.tasks] == [("1.1", COMPLETED), ("1.2", TODO)]
    assert [s.text for s in parsed.tasks[0].subtasks] == ["read the file", "split lines"]
    assert "Render it as HTML." in parsed.tasks[1].description
    folder = _track(tmp_path, plan)
    assert len(conductor_io.import_track(folder).tickets) == 2
    changed = conductor_io.write_back_status(folder / "plan.md", [Ticket("1.2", "", status=COMPLETED)])
    assert changed == ["1.2"]
    assert (folder / "plan.md").read_text() == plan.replace("### [ ] Task 1.2", "### [x] Task 1.2")


def test_unknown_marks_keep_their_task_with_a_warning(tmp_path: Path):
    plan = "## Phase 1: Work\n\n- [/] Task 1.1: Half done\n- [-] Task 1.2: Dropped?\n- [x] Task 1.3: Done\n"
    parsed = conductor_io.parse_plan(plan)
    assert [(t.id, t.status, t.marker) for t in parsed.tasks] == [
        ("1.1", IN_PROGRESS, "/"), ("1.2", TODO, "-"), ("1.3", COMPLETED, "x")]
    assert parsed.warnings == ["line 3: unknown checkbox mark [/]; read as in progress",
                               "line 4: unknown checkbox mark [-]; read as todo"]
    folder = _track(tmp_path, plan)
    changed = conductor_io.write_back_status(folder / "plan.md", [
        Ticket("1.1", "", status=IN_PROGRESS), Ticket("1.2", "", status=COMPLETED)])
    assert changed == ["1.2"], "[/] already says in progress: left as written"
    assert (folder / "plan.md").read_text() == plan.replace("[-]", "[x]")


def test_cli_import_prints_the_warnings(tmp_path: Path, capsys: pytest.CaptureFixture):
    folder = _track(tmp_path, "## Phase 1\n\n- [/] Task 1.1: Half done\n")
    assert cli.main(["import-track", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "unknown checkbox mark [/]" in err


# --------------------------------------------------------------------------- not UTF-8

LATIN1_TRACKS = "# Tracks\n\n- [ ] **Track: Caf\u00e9 menu**\n  *Link: [./tracks/cafe/](./tracks/cafe/)*\n"


def test_a_latin1_file_gives_an_error_that_names_it(tmp_path: Path):
    path = tmp_path / "conductor" / "tracks.md"
    path.parent.mkdir()
    path.write_bytes(LATIN1_TRACKS.encode("latin-1"))
    with pytest.raises(ConductorFileError, match=r"tracks\.md: not UTF-8 text \(byte 0xe9 on line 3\)"):
        read_text(path)
    listed = conductor_io.list_tracks(tmp_path)       # listing reads it leniently
    assert [t.id for t in listed] == ["cafe"] and listed[0].title.startswith("Caf")
    meta = tmp_path / "m.json"
    meta.write_bytes('{"description": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(ConductorFileError, match=r"m\.json: not UTF-8"):
        read_json_object_salvaged(meta)


async def test_latin1_tracks_md_gives_a_visible_error_and_an_idle_pipeline(tmp_path: Path):
    """Issue 13: a latin-1 byte in conductor/tracks.md used to raise UnicodeDecodeError out of
    the first save, leaving the GUI in "starting" with Plan / Accept / Resume refused."""
    registry = tmp_path / "conductor" / "tracks.md"
    registry.parent.mkdir()
    registry.write_bytes(LATIN1_TRACKS.encode("latin-1"))
    pipeline = Pipeline(tmp_path, RunSettings.for_provider("mock", auto_queue=True, require_spawn_approval=False,
                                                           tools_enabled=False))
    tracks = await pipeline.plan("Build a tiny calculator")
    engine = await pipeline.accept_track(tracks[0])
    status = await engine.run(pipeline.md_content)
    assert status == "completed" and engine.status != "starting"
    seen = []
    while not pipeline.event_queue.empty():
        seen.append(pipeline.event_queue.get_nowait()[1])
    errors = [e for e in seen if isinstance(e, events.ErrorEvent)]
    assert len(errors) == 1, "shown once, not on every state change"
    assert "tracks.md: not UTF-8 text (byte 0xe9 on line 3)" in errors[0].message
    assert registry.read_bytes() == LATIN1_TRACKS.encode("latin-1"), "the file is not rewritten"
    state = tmp_path / "conductor" / "tracks" / tracks[0].id / "state.json"
    assert json.loads(state.read_text())["track"]["status"] == "completed", "the rest is saved"
