"""Conductor layout: plan import, status write-back, tracks.md shapes, save/resume, CLI."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conductor_io
from cli import cmd_import_track
from conductor_io import (
    RESUME_NOTE,
    ParsedPlan,
    TrackStateError,
    apply_status_markers,
    import_track,
    list_tracks,
    load_track_state,
    parse_plan,
    parse_tracks_md,
    plan_to_tickets,
    read_conductor_tree,
    render_plan,
    save_track,
    upsert_tracks_md,
    write_back_status,
)
from models import Ticket, TokenUsage, Track, new_tier_usage

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE_PLAN = FIXTURES / "mma_pipeline_fix_plan.md"     # a real-world Conductor plan: 3 phases, 8 tasks
SAMPLE_IDS = ["1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "3.1", "3.2"]


def _sample_plan_text() -> str:
    return SAMPLE_PLAN.read_bytes().decode("utf-8")


def _dag(tickets: list[Ticket]) -> list[tuple]:
    return [(t.id, t.status, t.depends_on, t.step_mode, t.description) for t in tickets]


# ------------------------------------------------------------------ plan import

def test_sample_plan_gives_the_expected_dag():
    parsed = parse_plan(_sample_plan_text())
    assert parsed.title == "MMA Pipeline Fix & Worker Stream Verification"
    assert [(p.label, p.name) for p in parsed.phases] == [
        ("1", "Diagnose & Fix Worker Stream Pipeline"), ("2", "Fix Token Usage Tracking"),
        ("3", "End-to-End Verification")]
    tickets = plan_to_tickets(parsed)
    assert [t.id for t in tickets] == SAMPLE_IDS
    assert [t.depends_on for t in tickets] == [[], ["1.1"], ["1.2"], ["1.3"], ["1.4"], ["2.1"],
                                               ["2.2"], ["3.1"]]
    assert [t.id for t in tickets if t.step_mode] == ["3.2"]
    assert all(t.status == "todo" for t in tickets)
    by_id = {t.id: t for t in tickets}
    # long lines with inline code arrive whole, without the "Task N.M:" prefix
    assert by_id["1.3"].description.startswith("Verify the `run_in_executor` positional")
    assert "`(ticket, context, context_files, event_queue, engine, md_content, loop)`" in \
        by_id["1.3"].description
    assert by_id["1.1"].description.endswith("(c) any exceptions are being swallowed.")
    assert by_id["3.2"].description.startswith("Conductor - User Manual Verification")


def test_one_line_plan_gives_the_same_dag():
    text = _sample_plan_text()
    one_line = " ".join(text.split("\n"))
    assert "\n" not in one_line
    assert _dag(plan_to_tickets(parse_plan(one_line))) == _dag(plan_to_tickets(parse_plan(text)))
    assert parse_plan(one_line).title == "MMA Pipeline Fix & Worker Stream Verification"


def test_crlf_plan_gives_the_same_dag():
    text = _sample_plan_text()
    assert _dag(plan_to_tickets(parse_plan(text.replace("\n", "\r\n")))) == \
        _dag(plan_to_tickets(parse_plan(text)))


def test_nested_subtasks_markers_shas_and_headings():
    parsed = parse_plan((FIXTURES / "plan_nested.md").read_text(encoding="utf-8"))
    assert parsed.title == "Nested & messy"
    assert [(p.label, p.name) for p in parsed.phases] == [("1", "Setup"), ("2", "Ship it")]
    tasks = {t.id: t for t in parsed.tasks}
    assert list(tasks) == ["1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "2.3"]

    t11 = tasks["1.1"]
    assert (t11.status, t11.commit) == ("completed", "a1b2c3d")
    assert [s.text for s in t11.subtasks] == [
        "Add `tracks.md`", "Add `product.md`", "with a `- [ ] not a task` example"]
    assert [s.status for s in t11.subtasks] == ["completed", "todo", "todo"]
    assert t11.description == ("Create the `conductor/` folder\n  - [x] Add `tracks.md`\n"
                               "  - [ ] Add `product.md`\n      - [ ] with a `- [ ] not a task` example")
    t12 = tasks["1.2"]
    assert t12.status == "in_progress" and t12.label == "1.2"
    assert t12.description == ("Wire the loader into `cli.py:42`\nA continuation line with more "
                               "detail.\n\nA second paragraph, still part of the task.")
    assert tasks["1.3"].label is None            # no "Task N.M:": id is <phase>.<n>
    assert "inside a fence, not a task" in tasks["1.3"].description
    assert tasks["1.4"].description.startswith("Still phase 1")
    assert tasks["2.1"].commit == "0123456789abcdef0123456789abcdef01234567"
    assert tasks["2.1"].description == "Publish the package"
    assert tasks["2.2"].status == "completed"    # [X]
    assert tasks["2.3"].step_mode and not tasks["2.2"].step_mode

    tickets = plan_to_tickets(parsed)
    assert [t.depends_on for t in tickets] == [[], ["1.1"], ["1.2"], ["1.3"], ["1.4"], ["2.1"],
                                               ["2.2"]]


def test_fallback_ids_and_duplicates():
    text = ("Intro line\n- [ ] first, before any heading\n"
            "## Backend\n- [ ] a\n- [ ] Task 9: labelled\n- [ ] c\n"
            "### Phase 7 — Later\n- [ ] Task 9: again\n* [ ] Task: star bullet\n")
    ids = [t.id for t in parse_plan(text).tasks]
    assert ids == ["1.1", "2.1", "9", "2.3", "9-2", "7.2"]


def test_text_without_tasks_gives_an_empty_plan():
    parsed = parse_plan("# Just a title\n\nSome prose.\n")
    assert parsed.title == "Just a title" and parsed.tasks == []
    assert plan_to_tickets(parsed) == []


_PLANISH = st.lists(
    st.sampled_from(list("#- []xX~*+`:.1234567890abTPhasek\n\r\t |()\ufeff") + [
        "Task ", "Phase ", "- [ ] ", "- [x] ", "## ", "```", "  - [~] ", "**", "[abc1234]",
        "\r\n", "1. [ ] "]),
    max_size=120).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PLANISH, st.lists(st.sampled_from(["todo", "in_progress", "completed", "blocked"]),
                          max_size=12))
def test_random_planish_text_never_crashes(text, statuses):
    try:
        parsed = parse_plan(text)
        tickets = plan_to_tickets(parsed)
    except ValueError as exc:     # the only allowed failure, and it must explain itself
        assert str(exc)
        return
    assert isinstance(parsed, ParsedPlan)
    assert len({t.id for t in tickets}) == len(tickets)
    # write-back on anything parseable changes checkbox characters only
    for ticket, status in zip(tickets, statuses, strict=False):   # the two lists are drawn independently
        ticket.status = status
    new_text, changed = apply_status_markers(text, tickets)
    assert len(new_text) == len(text)
    diff = [i for i, (a, b) in enumerate(zip(text, new_text, strict=True)) if a != b]
    assert len(diff) == len(changed)
    assert all(text[i - 1] == "[" and text[i + 1] == "]" and new_text[i] in " x~" for i in diff)


def test_parse_plan_rejects_non_text():
    with pytest.raises(ValueError, match="must be str"):
        parse_plan(b"- [ ] Task 1: bytes")


# ------------------------------------------------------------------ write-back

def _assert_only_checkboxes_changed(old: str, new: str, expected: int) -> None:
    assert len(old) == len(new)
    diff = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    assert len(diff) == expected
    for i in diff:
        assert old[i - 1] == "[" and old[i + 1] == "]", old[i - 20:i + 20]
        assert old[i] in " xX~" and new[i] in " x~"


@pytest.mark.parametrize("variant", ["as_is", "crlf", "one_line"])
def test_write_back_changes_only_checkbox_chars(tmp_path, variant):
    text = _sample_plan_text()
    text = {"as_is": text, "crlf": text.replace("\n", "\r\n"),
            "one_line": " ".join(text.split("\n"))}[variant]
    plan = tmp_path / "plan.md"
    plan.write_bytes(text.encode("utf-8"))
    tickets = plan_to_tickets(parse_plan(text))
    status = {"1.1": "completed", "1.2": "completed", "1.3": "in_progress", "2.1": "blocked"}
    for t in tickets:
        t.status = status.get(t.id, t.status)
    assert write_back_status(plan, tickets) == ["1.1", "1.2", "1.3", "2.1"]
    new = plan.read_bytes().decode("utf-8")
    _assert_only_checkboxes_changed(text, new, 4)
    assert [t.status for t in plan_to_tickets(parse_plan(new))][:5] == \
        ["completed", "completed", "in_progress", "todo", "in_progress"]
    # idempotent: nothing to change, nothing written
    mtime = plan.stat().st_mtime_ns
    assert write_back_status(plan, tickets) == []
    assert plan.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == ["plan.md"]     # no temp files left


def test_write_back_keeps_capital_x_and_subtasks(tmp_path):
    text = (FIXTURES / "plan_nested.md").read_text(encoding="utf-8")
    tickets = plan_to_tickets(parse_plan(text))
    for t in tickets:
        t.status = "completed"
    new, changed = apply_status_markers(text, tickets)
    assert "2.2" not in changed          # [X] already means completed
    assert changed == ["1.2", "1.3", "1.4", "2.1", "2.3"]
    _assert_only_checkboxes_changed(text, new, 5)
    assert "    - [ ] Add `product.md`" in new    # sub-task markers belong to the user


# ------------------------------------------------------------------ tracks.md

def test_tracks_md_heading_shape():
    entries = parse_tracks_md((FIXTURES / "tracks_headings.md").read_text(encoding="utf-8"))
    assert [(e.id, e.title, e.status) for e in entries] == [
        ("mma_pipeline_fix_20260301", "MMA Pipeline Fix & Worker Stream Verification",
         "in_progress"),
        ("robust_live_simulation_20260225", "Robust live simulation", "completed"),
        ("theme_support_20260310", "Theme support", "new")]
    assert entries[1].link == "./conductor/tracks/robust_live_simulation_20260225/"


def test_tracks_md_list_shapes():
    entries = parse_tracks_md((FIXTURES / "tracks_list.md").read_text(encoding="utf-8"))
    assert [(e.id, e.title, e.status) for e in entries] == [
        ("dark_mode_20251101", "Add dark mode toggle", "completed"),
        ("csv_export_20251115", "Export to CSV", "new"),
        ("auth_refactor_20251201", "Refactor the auth middleware", "in_progress")]
    assert entries[2].link == "tracks/auth_refactor_20251201/plan.md"


def test_tracks_md_table_shape():
    entries = parse_tracks_md((FIXTURES / "tracks_table.md").read_text(encoding="utf-8"))
    assert [(e.id, e.title, e.status) for e in entries] == [
        ("setup_20250110", "Project setup", "completed"),
        ("docs_20250115", "Write the docs | guides", "in_progress"),
        ("api_20250201", "Public API", "new")]
    textual = "| Track | Status |\n|---|---|\n| [x1](tracks/x1/) | In Progress |\n| y2 | done |\n"
    assert [(e.id, e.status) for e in parse_tracks_md(textual)] == [
        ("x1", "in_progress"), ("y2", "completed")]


@pytest.mark.parametrize("fixture, track_id", [
    ("tracks_headings.md", "theme_support_20260310"),
    ("tracks_list.md", "csv_export_20251115"),
    ("tracks_table.md", "api_20250201"),
])
def test_upsert_updates_only_that_tracks_marker(fixture, track_id):
    text = (FIXTURES / fixture).read_text(encoding="utf-8")
    new = upsert_tracks_md(text, Track(id=track_id, title="ignored", status="completed"))
    assert len(new) == len(text)
    diff = [i for i, (a, b) in enumerate(zip(text, new, strict=True)) if a != b]
    assert len(diff) == 1 and new[diff[0]] == "x"
    assert {e.id: e.status for e in parse_tracks_md(new)}[track_id] == "completed"
    # same status again: text unchanged
    assert upsert_tracks_md(new, Track(id=track_id, title="t", status="completed")) == new


@pytest.mark.parametrize("fixture", ["tracks_headings.md", "tracks_list.md", "tracks_table.md"])
def test_upsert_appends_new_track_in_the_files_shape(fixture):
    text = (FIXTURES / fixture).read_text(encoding="utf-8")
    before = parse_tracks_md(text)
    new = upsert_tracks_md(text, Track(id="brand_new_20260401", title="Brand new",
                                       status="in_progress", created_at="2026-04-01T00:00:00"))
    after = parse_tracks_md(new)
    assert after[:len(before)] == before
    assert (after[-1].id, after[-1].title, after[-1].status) == \
        ("brand_new_20260401", "Brand new", "in_progress")
    # the old text is all still there, in order: the new entry was only inserted
    added = len(new) - len(text)
    start = next(i for i, (a, b) in enumerate(zip(text + "\0", new, strict=False)) if a != b)
    assert new[:start] + new[start + added:] == text
    if fixture == "tracks_table.md":
        assert "| [~] | [brand_new_20260401](./tracks/brand_new_20260401/) | Brand new | " \
               "2026-04-01 |" in new
        assert new.rstrip().endswith("Notes written after the table stay where they are.")


def test_upsert_keeps_crlf_line_endings():
    text = (FIXTURES / "tracks_list.md").read_text(encoding="utf-8").replace("\n", "\r\n")
    new = upsert_tracks_md(text, Track(id="n1", title="New one"))
    assert new.startswith(text) and "\n" not in new.replace("\r\n", "")
    assert parse_tracks_md(new)[-1].id == "n1"


def test_textual_status_cell_is_rewritten_as_a_word():
    text = "| Status | ID | Title |\n|---|---|---|\n| in progress | a1 | A |\n"
    new = upsert_tracks_md(text, Track(id="a1", title="A", status="completed"))
    assert new == "| Status | ID | Title |\n|---|---|---|\n| completed | a1 | A |\n"


# ------------------------------------------------------------------ save / resume

def _tier2_track() -> Track:
    """A Tier 2 style DAG (not a chain) with every status."""
    # Fixed timestamps: two calls a second apart must build equal tracks.
    return Track(id="auth_20260301", title="Auth: login & tokens",
                 description="Add login.\nWith tokens.", status="in_progress",
                 created_at="2026-03-01T09:00:00+00:00", updated_at="2026-03-01T09:30:00+00:00", tickets=[
                     Ticket("t1", "Create the user model", status="completed",
                            assigned_to="gemini-2.5-flash-lite", result="done",
                            usage=TokenUsage(120, 40)),
                     Ticket("t2", "Login endpoint\n- [ ] handle bad password\n```py\n# [HOT]\n```",
                            status="in_progress", depends_on=["t1"], retry_count=1,
                            result="partial output"),
                     Ticket("t3", "Token refresh", depends_on=["t1"],
                            context_requirements=["auth/tokens.py"]),
                     Ticket("t4", "Manual check", depends_on=["t2", "t3"], step_mode=True,
                            status="blocked", blocked_reason="needs a human"),
                 ])


def test_save_track_then_resume(tmp_path):
    track = _tier2_track()
    usage = new_tier_usage({"Tier 3": "gemini-2.5-flash-lite"})
    usage["Tier 3"].update(input=120, output=40)
    folder = save_track(tmp_path, track, tier_usage=usage, extra_state={"epic": "Make auth"})
    assert folder == tmp_path / "conductor" / "tracks" / "auth_20260301"
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "plan.md", "spec.md",
                                                        "state.json"]

    resumed, resumed_usage = load_track_state(tmp_path, "auth_20260301")
    assert resumed_usage == usage
    by_id = {t.id: t for t in resumed.tickets}
    assert by_id["t1"].status == "completed" and by_id["t1"].result == "done"
    assert by_id["t1"].usage == TokenUsage(120, 40)
    assert by_id["t2"].status == "todo"                      # was in progress: re-queued
    assert by_id["t2"].result == f"{RESUME_NOTE}\npartial output"
    assert by_id["t2"].retry_count == 1
    assert by_id["t4"].status == "blocked" and by_id["t4"].blocked_reason == "needs a human"
    expected = _tier2_track()
    expected.ticket("t2").status, expected.ticket("t2").result = "todo", by_id["t2"].result
    assert resumed == expected
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    assert set(state) == {"track", "tickets", "tier_usage", "updated_at", "epic"}
    assert "tickets" not in state["track"]

    # the generated plan parses back to the same ids, dependencies first
    plan_text = (folder / "plan.md").read_text(encoding="utf-8")
    assert plan_text.startswith("# Implementation Plan: Auth: login & tokens\n")
    parsed = parse_plan(plan_text)
    assert [t.id for t in parsed.tasks] == ["t1", "t2", "t3", "t4"]
    assert [t.status for t in parsed.tasks] == ["completed", "in_progress", "todo", "in_progress"]
    assert parsed.tasks[1].description == track.ticket("t2").description

    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["track_id"] == "auth_20260301" and meta["type"] == "feature"
    assert meta["status"] == "in_progress" and meta["created_at"] == track.created_at
    assert meta["description"] == "Auth: login & tokens"    # multi-line description: the title
    assert "# Track Specification: Auth: login & tokens" in (folder / "spec.md").read_text()
    entries = parse_tracks_md((tmp_path / "conductor" / "tracks.md").read_text())
    assert [(e.id, e.title, e.status) for e in entries] == \
        [("auth_20260301", "Auth: login & tokens", "in_progress")]


def test_save_track_after_state_changes_touches_only_markers(tmp_path):
    track = _tier2_track()
    folder = save_track(tmp_path, track, spec_text="# Spec\nmine\n")
    plan_before = (folder / "plan.md").read_text()
    registry = tmp_path / "conductor" / "tracks.md"
    registry.write_text(registry.read_text() + "\nA note the user added.\n")
    registry_before = registry.read_text()

    track.ticket("t2").status = "completed"
    track.ticket("t3").status = "completed"
    track.ticket("t4").status = "completed"
    track.status = "completed"
    save_track(tmp_path, track)
    _assert_only_checkboxes_changed(plan_before, (folder / "plan.md").read_text(), 3)
    _assert_only_checkboxes_changed(registry_before, registry.read_text(), 1)
    assert (folder / "spec.md").read_text() == "# Spec\nmine\n"
    resumed, _ = load_track_state(tmp_path, track.id)
    assert all(t.status == "completed" for t in resumed.tickets)
    assert json.loads((folder / "metadata.json").read_text())["status"] == "completed"


def test_save_track_skips_unchanged_files(tmp_path):
    track = _tier2_track()
    folder = save_track(tmp_path, track, tier_usage=new_tier_usage())
    files = [folder / n for n in ("plan.md", "metadata.json", "state.json", "spec.md")]
    files.append(tmp_path / "conductor" / "tracks.md")
    before = [f.stat().st_mtime_ns for f in files]
    save_track(tmp_path, track)          # tier_usage None keeps the saved usage
    assert [f.stat().st_mtime_ns for f in files] == before
    track.ticket("t3").retry_count = 2   # a state-only change rewrites state.json only
    save_track(tmp_path, track)
    after = [f.stat().st_mtime_ns for f in files]
    assert after[2] != before[2] and after[:2] + after[3:] == before[:2] + before[3:]


def test_save_track_keeps_unknown_metadata_fields(tmp_path):
    folder = tmp_path / "conductor" / "tracks" / "auth_20260301"
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({
        "track_id": "auth_20260301", "type": "bug", "status": "new", "version": 3,
        "created_at": "2026-03-01T00:00:00Z", "description": "Their words",
        "loop_state": {"iteration": 4, "phase": "review"}}))
    track = _tier2_track()
    save_track(tmp_path, track)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["version"] == 3 and meta["loop_state"] == {"iteration": 4, "phase": "review"}
    assert meta["type"] == "bug" and meta["description"] == "Their words"
    assert meta["created_at"] == "2026-03-01T00:00:00Z"
    assert meta["status"] == "in_progress" and meta["updated_at"] == track.updated_at


def test_extra_state_cannot_override_reserved_keys(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_track(tmp_path, _tier2_track(), extra_state={"tickets": []})


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"track": {"id": "auth_20260301", "title": "x"}}', "expected 'track' (object) and 'tickets'"),
    ('{"track": {"id": "auth_20260301", "title": "x"}, "tickets": [{"id": "a", '
     '"description": "d", "status": "weird"}]}', "field 'status' must be one of"),
    ('{"track": {"id": "auth_20260301", "title": "x"}, "tickets": [], '
     '"tier_usage": {"Tier 3": {"input": -1}}}', "tier_usage['Tier 3'].input must be a count"),
])
def test_invalid_state_json_names_the_file(tmp_path, content, needle):
    folder = tmp_path / "conductor" / "tracks" / "auth_20260301"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(content)
    with pytest.raises(TrackStateError) as info:
        load_track_state(tmp_path, "auth_20260301")
    assert needle in str(info.value)
    assert str(folder / "state.json") in str(info.value)


def test_missing_state_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved state"):
        load_track_state(tmp_path, "nothing_here")


def test_writes_leave_no_temp_files(tmp_path):
    track = _tier2_track()
    for status in ("todo", "in_progress", "completed"):
        track.ticket("t3").status = status
        save_track(tmp_path, track, tier_usage=new_tier_usage())
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_render_plan_keeps_ids_for_tricky_descriptions():
    track = Track(id="x1", title="Tricky\ntitle", tickets=[
        Ticket("b", "second ## not a heading", depends_on=["a"]),
        Ticket("a", "uses `- [ ] inline` code\n\n  indented detail\n### deep"),
        Ticket("c.1", "", status="completed", depends_on=["b"])])
    parsed = parse_plan(render_plan(track))
    assert [t.id for t in parsed.tasks] == ["a", "b", "c.1"]     # dependencies first
    assert parsed.title == "Tricky title"
    assert parsed.tasks[0].description == "uses `- [ ] inline` code\n\n  indented detail\n### deep"
    assert parsed.tasks[1].description == "second ## not a heading"
    assert parsed.tasks[2].status == "completed"


def test_render_plan_warns_when_a_description_breaks_the_mapping(caplog):
    track = Track(id="x1", title="T", tickets=[Ticket("a", "do this - [ ] and that")])
    with caplog.at_level("WARNING", logger="conductor_io"):
        render_plan(track)
    assert "will not map 1:1" in caplog.text


# ------------------------------------------------------------------ import & listing

def _make_track_folder(root: Path, track_id: str = "mma_pipeline_fix_20260301") -> Path:
    folder = root / "conductor" / "tracks" / track_id
    folder.mkdir(parents=True)
    shutil.copy(SAMPLE_PLAN, folder / "plan.md")
    shutil.copy(FIXTURES / "mma_pipeline_fix_spec.md", folder / "spec.md")
    (folder / "metadata.json").write_text(json.dumps({
        "track_id": track_id, "type": "bug", "status": "in_progress",
        "created_at": "2026-03-01T09:00:00Z", "updated_at": "2026-03-02T09:00:00Z",
        "description": "Fix the MMA pipeline", "version": 2}))
    return folder


def test_import_track_folder(tmp_path):
    folder = _make_track_folder(tmp_path)
    track = import_track(folder)
    assert track.id == "mma_pipeline_fix_20260301"
    assert track.title == "MMA Pipeline Fix & Worker Stream Verification"
    assert track.description.startswith("# Track Specification: MMA Pipeline Fix")
    assert track.status == "in_progress" and track.created_at == "2026-03-01T09:00:00Z"
    assert [t.id for t in track.tickets] == SAMPLE_IDS
    assert import_track(folder / "plan.md") == track


def test_import_plan_file_outside_a_track_folder():
    track = import_track(SAMPLE_PLAN)
    assert track.id == "mma_pipeline_fix"
    assert track.description.startswith("# Track Specification")    # the sibling *_spec.md
    assert track.status == "new"


def test_import_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such track folder"):
        import_track(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape("no plan.md")):
        import_track(tmp_path / "empty")
    (tmp_path / "prose.md").write_text("# Notes\n\nNo tasks here.\n")
    with pytest.raises(ValueError, match="no tasks found"):
        import_track(tmp_path / "prose.md")


def test_read_conductor_tree_and_list_tracks(tmp_path):
    _make_track_folder(tmp_path)
    conductor = tmp_path / "conductor"
    shutil.copy(FIXTURES / "tracks_headings.md", conductor / "tracks.md")
    save_track(tmp_path, _tier2_track())         # appends itself to tracks.md
    (conductor / "tracks" / "unlisted_1").mkdir()
    (conductor / "tracks" / "unlisted_1" / "plan.md").write_text(
        "# Implementation Plan: Unlisted\n- [x] Task 1: a\n- [ ] Task 2: b\n")
    entries = read_conductor_tree(tmp_path)
    assert [e.id for e in entries] == ["mma_pipeline_fix_20260301",
                                       "robust_live_simulation_20260225",
                                       "theme_support_20260310", "auth_20260301", "unlisted_1"]
    assert entries[-1].title == "Unlisted"
    summaries = {s.id: s for s in list_tracks(tmp_path)}
    sample = summaries["mma_pipeline_fix_20260301"]
    assert (sample.tickets_total, sample.tickets_done, sample.has_state) == (8, 0, False)
    auth = summaries["auth_20260301"]
    assert (auth.tickets_total, auth.tickets_done, auth.has_state) == (4, 1, True)
    assert auth.status == "in_progress"
    assert (summaries["unlisted_1"].tickets_total, summaries["unlisted_1"].tickets_done) == (2, 1)
    assert summaries["theme_support_20260310"].tickets_total == 0   # listed, no folder


# ------------------------------------------------------------------ CLI

def test_cli_import_prints_the_dag(capsys):
    assert cmd_import_track(str(SAMPLE_PLAN)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("Track mma_pipeline_fix: MMA Pipeline Fix & Worker Stream Verification "
                      "(8 tickets)")
    rows = [line.split() for line in out[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("1.1", "todo", "-"), ("1.2", "todo", "1.1"), ("1.3", "todo", "1.2"),
        ("1.4", "todo", "1.3"), ("2.1", "todo", "1.4"), ("2.2", "todo", "2.1"),
        ("3.1", "todo", "2.2"), ("3.2", "todo", "3.1")]
    assert all(len(line) < 130 for line in out)       # descriptions are truncated
    assert out[-1].endswith("[step]")


def test_cli_import_into_a_project_keeps_the_plan_text(tmp_path, capsys):
    one_line = " ".join(_sample_plan_text().split("\n"))
    src = tmp_path / "elsewhere" / "plan.md"
    src.parent.mkdir()
    src.write_text(one_line)
    assert cmd_import_track(str(src), str(tmp_path / "proj")) == 0
    folder = tmp_path / "proj" / "conductor" / "tracks" / "elsewhere"
    assert (folder / "plan.md").read_text() == one_line
    track, _ = load_track_state(tmp_path / "proj", "elsewhere")
    assert [t.id for t in track.tickets] == SAMPLE_IDS
    assert "saved to" in capsys.readouterr().out
    # importing a track id the project already has is refused: its progress stays
    track.ticket("1.1").status = "completed"
    save_track(tmp_path / "proj", track)
    state_before = (folder / "state.json").read_bytes()
    other = tmp_path / "x" / "elsewhere"
    other.mkdir(parents=True)
    shutil.copy(SAMPLE_PLAN, other / "plan.md")
    for source in (src, other):
        assert cmd_import_track(str(source), str(tmp_path / "proj")) == 1
        assert "already exists" in capsys.readouterr().err
    assert (folder / "state.json").read_bytes() == state_before
    assert (folder / "plan.md").read_text() == one_line.replace("- [ ] Task 1.1", "- [x] Task 1.1")


def test_cli_import_from_inside_the_project(tmp_path, capsys):
    folder = _make_track_folder(tmp_path)
    plan_before = (folder / "plan.md").read_bytes()
    assert cmd_import_track(str(folder), str(tmp_path)) == 0
    assert (folder / "plan.md").read_bytes() == plan_before
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["version"] == 2 and meta["type"] == "bug"
    entries = parse_tracks_md((tmp_path / "conductor" / "tracks.md").read_text())
    assert [e.id for e in entries] == ["mma_pipeline_fix_20260301"]


def test_cli_import_error_is_nonzero_with_message(tmp_path, capsys):
    assert cmd_import_track(str(tmp_path / "nope.md")) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ")
    assert "nope.md" in captured.err


def test_metadata_status_of_the_wrong_type_is_ignored_not_a_crash(tmp_path):
    import json as _json
    folder = tmp_path / "conductor" / "tracks" / "odd_20260101"
    folder.mkdir(parents=True)
    (folder / "plan.md").write_text("# Implementation Plan: Odd\n\n## Phase 1: A\n- [x] Task 1.1: a\n")
    (folder / "metadata.json").write_text(_json.dumps({"track_id": "odd_20260101", "status": ["weird"]}))
    track = conductor_io.import_track(folder)
    assert track.status == "completed"
    assert [e.status for e in conductor_io.read_conductor_tree(tmp_path)] == ["new"]
