import json
import subprocess
import sys
from pathlib import Path

import ai_client
import cli
import conductor_io

REPO = Path(__file__).resolve().parents[1]


def run_cli(args, capsys):
    code = cli.main(args)
    return code, capsys.readouterr().out


def test_headless_run_plans_executes_and_writes_the_track(tmp_path, capsys):
    code, out = run_cli(["run", "--epic", "Add a CLI flag to print the version", "--project",
                         str(tmp_path), "--provider", "mock", "--auto"], capsys)
    assert code == 0, out
    assert "Tier 1 planned track" in out and "Token usage:" in out
    assert "Timeline of" in out and out.count("in parallel with") >= 2   # T2 and T3 overlap
    tracks = list((tmp_path / "conductor" / "tracks").iterdir())
    assert len(tracks) == 1
    folder = tracks[0]
    assert {p.name for p in folder.iterdir()} == {"spec.md", "plan.md", "metadata.json", "state.json", "context.md"}
    state = json.loads((folder / "state.json").read_text())
    assert [t["status"] for t in state["tickets"]] == ["completed"] * 4
    for tier in ("Tier 1", "Tier 2", "Tier 3"):
        assert state["tier_usage"][tier]["input"] > 0 and state["tier_usage"][tier]["output"] > 0
        assert f"  {tier}" in out
    plan = (folder / "plan.md").read_text()
    assert plan.count("- [x] Task") == 4 and "- [ ]" not in plan
    assert json.loads((folder / "metadata.json").read_text())["status"] == "completed"
    assert folder.name in (tmp_path / "conductor" / "tracks.md").read_text()


def test_headless_blocked_track_exits_nonzero_with_reasons(tmp_path, capsys):
    code, out = run_cli(["run", "--epic", "Break everything [fail]", "--project", str(tmp_path),
                         "--provider", "mock", "--auto"], capsys)
    assert code == 1
    assert "T1 blocked: " in out and "simulated failure" in out
    assert "T4 todo: not run" in out


def test_without_auto_it_only_plans(tmp_path, capsys):
    code, out = run_cli(["run", "--epic", "Plan only", "--project", str(tmp_path), "--provider", "mock"], capsys)
    assert code == 0 and "mma-desk resume" in out
    state = json.loads(next((tmp_path / "conductor" / "tracks").glob("*/state.json")).read_text())
    assert {t["status"] for t in state["tickets"]} == {"todo"}


def test_resume_does_not_rerun_completed_tickets(tmp_path, capsys):
    code, _ = run_cli(["run", "--epic", "Plan then resume", "--project", str(tmp_path), "--provider", "mock"], capsys)
    folder = next((tmp_path / "conductor" / "tracks").iterdir())
    track, usage = conductor_io.load_track_state(tmp_path, folder.name)
    track.tickets[0].status = "completed"                  # as if T1 finished before a crash
    track.tickets[1].status = "in_progress"                # and T2 was mid-flight
    conductor_io.save_track(tmp_path, track, tier_usage=usage)
    calls = []
    old = ai_client.comms_log_callback
    ai_client.comms_log_callback = lambda e: calls.append(e["label"]) if e["kind"] == "request" else None
    try:
        code, out = run_cli(["resume", folder.name, "--project", str(tmp_path), "--provider", "mock", "--auto"], capsys)
    finally:
        ai_client.comms_log_callback = old
    assert code == 0, out
    workers = sorted(label for label in calls if label.startswith("Tier 3"))
    assert workers == ["Tier 3 (Worker): T2", "Tier 3 (Worker): T3", "Tier 3 (Worker): T4"]


def test_console_entry_point_runs_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "cli.py", "run", "--epic", "Print the version", "--project",
                           str(tmp_path / "demo"), "--provider", "mock", "--auto"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed" in proc.stdout


def test_empty_epic_is_a_clear_error(tmp_path, capsys):
    code, out = run_cli(["run", "--epic", "  ", "--project", str(tmp_path), "--provider", "mock", "--auto"], capsys)
    assert code == 2 and "epic is empty" in out


def _state(tmp_path):
    return json.loads(next((tmp_path / "conductor" / "tracks").glob("*/state.json")).read_text())


def test_resuming_twice_keeps_usage_and_epic_exact(tmp_path, capsys):
    epic = "Plan, resume, resume again"
    assert run_cli(["run", "--epic", epic, "--project", str(tmp_path), "--provider", "mock"], capsys)[0] == 0
    planned = _state(tmp_path)
    track_id = planned["track"]["id"]
    assert run_cli(["resume", track_id, "--project", str(tmp_path), "--provider", "mock", "--auto"], capsys)[0] == 0
    first = _state(tmp_path)
    assert run_cli(["resume", track_id, "--project", str(tmp_path), "--provider", "mock", "--auto"], capsys)[0] == 0
    second = _state(tmp_path)
    assert first["tier_usage"] == second["tier_usage"]            # nothing ran, nothing counted twice
    assert first["tier_usage"]["Tier 1"] == planned["tier_usage"]["Tier 1"]
    assert first["tier_usage"]["Tier 3"]["input"] > 0 == planned["tier_usage"]["Tier 3"]["input"]
    assert planned["epic"] == first["epic"] == second["epic"] == epic


def test_resume_retries_blocked_tickets_from_scratch(tmp_path, capsys):
    code, _ = run_cli(["run", "--epic", "Break it [fail]", "--project", str(tmp_path), "--provider", "mock",
                       "--auto"], capsys)
    assert code == 1
    before = _state(tmp_path)
    t1 = next(t for t in before["tickets"] if t["id"] == "T1")
    assert t1["status"] == "blocked" and t1["retry_count"] == 2
    calls = []
    old = ai_client.comms_log_callback
    ai_client.comms_log_callback = lambda e: calls.append(e["label"]) if e["kind"] == "request" else None
    try:
        code, out = run_cli(["resume", before["track"]["id"], "--project", str(tmp_path), "--provider", "mock",
                             "--auto"], capsys)
    finally:
        ai_client.comms_log_callback = old
    assert code == 1 and "T1 blocked" in out
    assert calls.count("Tier 3 (Worker): T1") == 3                 # tried again: 1 + 2 retries
