"""`mma-desk run` / `resume` as real processes: Ctrl-C and SIGTERM, a closed pipe, the track lock."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cli
from tests.wire_emulator import WireEmulator, parse_prompt

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
GEMINI_KEY = "AIzaFAKE-headless-stop-key-0123456789"


def cli_process(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "cli.py", *args], cwd=REPO, env={**os.environ, **env},
                            text=True, **kwargs)


def tier(n: str):
    def match(provider, model, body) -> bool:
        return f"Tier {n} (" in parse_prompt(provider, body).system
    return match


def only_state(project: Path) -> dict:
    return json.loads(next(project.glob("conductor/tracks/*/state.json")).read_text())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_aborts_the_headless_run_within_two_seconds_and_the_track_resumes(sig, tmp_path, monkeypatch,
                                                                                   capsys):
    with WireEmulator() as emu:
        env = {"GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": emu.base_url}
        emu.inject("hang", match=tier("3"))                       # T1 (it runs alone) hangs
        proc = cli_process(["run", "--epic", "Print the version", "--project", str(tmp_path), "--provider",
                            "gemini", "--auto"], env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            emu.wait_for_requests(1, 60, lambda r: tier("3")(r.provider, r.model, r.body))
            t0 = time.monotonic()
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=20)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
        log.info("%s: the headless run exited %.3f s after the signal", sig.name, elapsed)
        assert proc.returncode == 128 + sig, out
        assert elapsed < 2.0, f"exited {elapsed:.2f} s after {sig.name}"
        assert f"{sig.name} received: aborting track" in out and "resumable: mma-desk resume" in out
        state = only_state(tmp_path)
        assert "in_progress" not in {t["status"] for t in state["tickets"]}
        t1 = next(t for t in state["tickets"] if t["id"] == "T1")
        assert (t1["status"], t1["blocked_reason"]) == ("todo", "aborted")
        assert emu.requests[-1].disconnected                      # the hung call was cut, not left running

        for var, value in env.items():
            monkeypatch.setenv(var, value)
        workers_before = len([r for r in emu.requests if tier("3")(r.provider, r.model, r.body)])
        code = cli.main(["resume", state["track"]["id"], "--project", str(tmp_path), "--provider", "gemini",
                         "--auto"])
        assert code == 0, capsys.readouterr().out
        workers_after = [r for r in emu.requests if tier("3")(r.provider, r.model, r.body)]
        assert len(workers_after) - workers_before == 4           # T1 once more, then T2, T3, T4


def test_sigterm_during_planning_exits_at_once(tmp_path):
    with WireEmulator() as emu:
        emu.inject("hang", match=tier("1"))
        proc = cli_process(["run", "--epic", "Plan forever", "--project", str(tmp_path), "--provider", "gemini"],
                           {"GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": emu.base_url},
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            emu.wait_for_requests(1, 60)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=20)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
    log.info("SIGTERM during planning: exited %.3f s after the signal", elapsed)
    assert proc.returncode == 128 + signal.SIGTERM and elapsed < 2.0, (elapsed, out)
    assert "ABORTED: Tier 1 planning was aborted" in out


def test_output_to_a_closed_pipe_exits_cleanly(tmp_path):
    """`mma-desk run ... | head -1`: the reader goes away after one line."""
    stderr_file = tmp_path / "stderr.txt"
    with open(stderr_file, "w") as stderr:
        proc = cli_process(["run", "--epic", "Print the version", "--project", str(tmp_path / "p"), "--provider",
                            "mock", "--auto", "--max-workers", "1"], {"MMA_MOCK_CHUNK_DELAY": "0.05"},
                           stdout=subprocess.PIPE, stderr=stderr)
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            proc.stdout.close()                                      # what `head -1` does
            t0 = time.monotonic()
            proc.wait(timeout=30)
            log.info("closed pipe: the run exited %.3f s after its reader went away", time.monotonic() - t0)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert first.startswith("Tier 1 planning")
    errors = stderr_file.read_text()
    assert proc.returncode == 141, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
    for state_file in (tmp_path / "p").glob("conductor/tracks/*/state.json"):     # aborted: resumable
        assert "in_progress" not in {t["status"] for t in json.loads(state_file.read_text())["tickets"]}


def test_a_second_runner_of_a_track_is_refused_until_the_holder_is_killed(tmp_path, capsys):
    assert cli.main(["run", "--epic", "Lock me", "--project", str(tmp_path), "--provider", "mock"]) == 0
    track_id = only_state(tmp_path)["track"]["id"]
    capsys.readouterr()
    holder = cli_process(["resume", track_id, "--project", str(tmp_path), "--provider", "mock", "--auto",
                          "--max-workers", "1"], {"MMA_MOCK_CHUNK_DELAY": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert holder.stdout is not None
        for line in holder.stdout:                        # it holds the lock once a ticket runs
            if "in_progress" in line:
                break
        code = cli.main(["resume", track_id, "--project", str(tmp_path), "--provider", "mock", "--auto"])
        out = capsys.readouterr().out
        assert code == 2
        assert f"track {track_id} is being run by process {holder.pid}" in out
        holder.send_signal(signal.SIGKILL)                # dies holding the lock: nothing to clean up
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
        if holder.stdout is not None:
            holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    assert cli.main(["resume", track_id, "--project", str(tmp_path), "--provider", "mock", "--auto"]) == 0
    assert {t["status"] for t in only_state(tmp_path)["tickets"]} == {"completed"}
