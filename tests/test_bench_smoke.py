"""Smoke test of `make bench`: every bench runs with --quick and writes a valid result.

Runs `bench/run_all.py --quick --out-dir <tmp>` once (about 30 s) under the session's Xvfb,
then checks each result file's schema and the correctness checks the benches make (no event
lost, every ticket completed, every stream within its cap).  Timing targets are NOT asserted:
benchmarks are not timed tests (see docs/performance.md).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ("events", "scheduler", "frame", "skeleton", "languages", "startup", "memory", "git", "tools", "cache")


@pytest.fixture(scope="module")
def quick_results(xvfb_display, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--out-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"run_all crashed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out, proc.stdout


def _load(out: Path, name: str) -> dict:
    path = out / f"{name}.json"
    assert path.exists(), f"{name}.json was not written"
    return json.loads(path.read_text())


def test_summary_lists_every_bench(quick_results):
    out, stdout = quick_results
    summary = _load(out, "summary")
    assert set(summary["benches"]) == set(BENCHES)
    assert summary["crashed"] == []
    assert summary["rows"] and all(isinstance(r["pass"], bool) for r in summary["rows"])
    assert "bench" in stdout and "measured" in stdout and "baseline" in stdout   # the one table


@pytest.mark.parametrize("name", [b for b in BENCHES if b != "skeleton"])
def test_result_schema(quick_results, name):
    out, _ = quick_results
    data = _load(out, name)
    assert data["name"] == name
    assert data["quick"] is True
    assert {"cpu_count", "python", "platform"} <= set(data["machine"])
    assert isinstance(data["metrics"], dict) and data["metrics"]
    assert isinstance(data["baseline"], dict) and data["baseline"]
    assert isinstance(data["targets"], list) and data["targets"]
    for t in data["targets"]:
        assert {"what", "target", "measured", "pass"} <= set(t), t
        assert isinstance(t["pass"], bool)


def test_skeleton_result_present(quick_results):
    out, _ = quick_results
    data = _load(out, "skeleton")
    assert data["name"] == "skeleton" and data["metrics"] and data["targets"]


def test_events_lose_nothing(quick_results):
    m = _load(quick_results[0], "events")["metrics"]
    assert m["events_lost_total"] == 0
    assert m["order_errors_total"] == 0
    assert m["all_events_applied_to_state"] is True


def test_scheduler_completes_every_ticket(quick_results):
    m = _load(quick_results[0], "scheduler")["metrics"]
    assert m["all_completed"] is True
    assert m["dags"] and all(d["all_completed"] for d in m["dags"].values())


def test_frame_measured_the_streaming_app(quick_results):
    data = _load(quick_results[0], "frame")
    m = data["metrics"]
    assert m["load_frames"] > 0 and data["baseline"]["idle_frames"] > 0
    assert m["load_stream_events_per_s"] > 0           # the 16 workers really streamed into the GUI
    assert m["load_workers_running_at_end"] == m["workers"]


def test_startup_saw_a_first_frame(quick_results):
    m = _load(quick_results[0], "startup")["metrics"]
    assert 0 < m["first_frame_s_median"] < 60


def test_cache_bench_ran_every_mode_and_matched_the_bill(quick_results):
    m = _load(quick_results[0], "cache")["metrics"]
    assert set(m["providers"]) == {"gemini", "anthropic"}
    for provider, figures in m["providers"].items():
        assert figures["all_completed"] and figures["ledger_matches_bill"], provider
        assert figures["caches_left"] == 0, provider                     # no paid storage left behind
        assert {"off", "on", "on_no_warmup"} <= set(figures["runs"]), provider


def test_memory_caps_and_completion(quick_results):
    m = _load(quick_results[0], "memory")["metrics"]
    assert m["completed"] == m["tickets"] and m["engine_status"] == "completed"
    assert m["max_stream_chars"] <= m["stream_cap_chars"]


def test_git_bench_landed_every_ticket(quick_results):
    m = _load(quick_results[0], "git")["metrics"]
    assert m["all_landed"] is True and m["commits_on_track_branch"] == m["tickets"]
    assert m["worktrees_left"] == 0 and m["per_ticket_overhead_s_median"] > 0
