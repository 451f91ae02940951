"""Visual simulation v2: the REAL app, driven only through the hook API, epic -> completed track.

This is the end-to-end check that every Tier 3 worker's output reaches the GUI (a 'Tier 3'
stream per ticket in `mma_streams`, not only the planner's 'Tier 1' one).  It starts
`gui_2.py` as a subprocess under Xvfb with `--enable-test-hooks --hook-port 0`, reads the hook
URL (with the run's token) from the `MMA_HOOKS http://127.0.0.1:<port>/?token=<t>` line it prints on
stdout, and talks to it only through `api_hooks.ApiHookClient`:

  1. app up and healthy          /status ok, frames advancing, the right provider
  2. project and epic set        project_dir is ours; set_value mma_epic_input
  3. plan the epic               click btn_mma_plan_epic -> Tier 1 stream text, tracks listed
  4. accept a track              click btn_mma_accept_track -> Tier 2 stream, ticket DAG
  5. spawn approval, edited      approve T1's spawn with a marker in its prompt; the worker got it
  6. tool approval               T1 calls write_file; approve it; the file lands in the project
  7. parallel run to completion  T2 and T3 in progress together; auto_approve; track completed;
                                 the tickets' started_at/finished_at show T2 and T3 overlapping
  8. streams and usage           a non-empty "Tier 3" stream for EVERY ticket; Tier 1-3 tokens > 0;
                                 the comms log in /api/session has every tier's calls
  9. screenshot                  the hook `screenshot` action: the app's own window, 800x600,
                                 showing the completed run (test-artifacts/visual_sim_mma_v2_<variant>.png;
                                 `..._parallel.png` is taken in stage 7 with T2 and T3 both waiting;
                                 the app writes it to a temp folder, the only place besides the
                                 project it may write screenshots, and the sim copies it over)

and always stops the app with SIGTERM (it must exit 0), SIGKILL only as a fallback.

Variants: `mock` (offline provider, streamed with MMA_MOCK_CHUNK_DELAY) and `gemini` (the real
google-genai SDK inside the app, pointed at tests/wire_emulator.py via GOOGLE_GEMINI_BASE_URL).

Run:  .venv/bin/python -m pytest tests/visual_sim_mma_v2.py -v     (or tests/test_visual_sim.py)
      .venv/bin/python tests/visual_sim_mma_v2.py [--provider mock|gemini|all]
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__" and REPO not in sys.path:     # script mode: make the app modules importable
    sys.path.insert(0, REPO)

import pytest  # noqa: E402

from api_hooks import ApiHookClient, HookError  # noqa: E402

log = logging.getLogger("visual_sim")

MARKER = "SIMMARK-7F3A"
# >= 9 words before the marker: the mock's Tier 2 puts only T1's description past its 10-word title
# cut, so only T1 carries [write] (one tool approval to answer explicitly, not four).
EPIC = ("Add a small notes feature to the project so that users can keep and find "
        "their notes quickly [write]")
NOTES_FILE = "MMA_NOTES.md"
# gui_2.main prints it on stdout: the URL with the run's token, which every request needs
HOOK_LINE_RE = re.compile(r"^MMA_HOOKS (http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9._~-]+)\s*$")
STAGE_TIMEOUT = 60.0
WINDOW = (800, 600)


# ------------------------------------------------------------------------------------------
# the app process
# ------------------------------------------------------------------------------------------
class AppProcess:
    """`gui_2.py` in a subprocess; output teed to log files; the hook URL read from the
    `MMA_HOOKS http://127.0.0.1:<port>/?token=<t>` line the app prints on stdout."""

    def __init__(self, argv: list[str], env: dict[str, str], log_dir: str, name: str):
        self.argv, self.env = argv, env
        self.out_path = os.path.join(log_dir, f"{name}.stdout.log")
        self.err_path = os.path.join(log_dir, f"{name}.stderr.log")
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self._url_seen = threading.Event()
        self._readers: list[threading.Thread] = []

    def start(self) -> AppProcess:
        log.info("starting app: %s", " ".join(self.argv))
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        for stream, path, scan in ((self.proc.stdout, self.out_path, True), (self.proc.stderr, self.err_path, False)):
            t = threading.Thread(target=self._pump, args=(stream, path, scan), daemon=True,
                                 name=f"pump-{os.path.basename(path)}")
            t.start()
            self._readers.append(t)
        return self

    def _pump(self, stream, path: str, scan: bool) -> None:
        with open(path, "w", encoding="utf-8") as sink:
            for line in stream:
                sink.write(line)
                sink.flush()
                m = HOOK_LINE_RE.match(line) if scan else None
                if m and not self._url_seen.is_set():
                    self.url = m.group(1)
                    self._url_seen.set()

    def wait_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not self._url_seen.wait(0.1):
            if self.proc.poll() is not None:
                raise AssertionError(f"app exited with {self.proc.returncode} before announcing its "
                                     f"hook URL")
            if time.monotonic() > deadline:
                raise AssertionError(f"app announced no hook URL within {timeout}s")
        return self.url

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM (the app closes cleanly and exits 0), then SIGKILL; always reaps the process."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("app did not exit within %ss of SIGTERM; killing it", timeout)
                self.proc.kill()
                self.proc.wait(10)
        for t in self._readers:
            t.join(5)
        return self.proc.returncode

    def wait_exit(self, timeout: float) -> int:
        """Wait for the app to exit by itself (e.g. after btn_quit); SIGKILL if it does not."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the app did not exit within {timeout}s") from None
        finally:
            for t in self._readers:
                t.join(5)

    def log_text(self) -> str:
        """The app's stderr (its log) so far."""
        with open(self.err_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.out_path, self.err_path):
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read().splitlines()[-lines:]
                parts.append(f"--- {os.path.basename(path)} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)


# ------------------------------------------------------------------------------------------
# provider variants
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Variant:
    name: str
    provider: str
    env: dict[str, str]
    emulator: Any = None          # the wire emulator the app's SDK talks to (gemini variant)


def _gemini_responder(emulator_module) -> Callable[[str, str, Any], Any]:
    """The emulator's default replies, plus: a Tier 3 worker on T1 calls write_file once."""
    def responder(provider: str, model: str, body: Any):
        view = emulator_module.parse_prompt(provider, body)
        if "Tier 3" not in view.system or view.tool_results:
            return None                              # fall through to default_reply
        if "Ticket T1:" not in view.last_user_text or "write_file" not in view.tool_names:
            return None
        ticket_line = next((ln.strip() for ln in view.last_user_text.splitlines() if "Ticket T1:" in ln), "")
        return emulator_module.Reply(tool_calls=[{
            "name": "write_file",
            "args": {"path": NOTES_FILE, "content": f"# Notes\n\n{ticket_line}\n"}}])
    return responder


@contextlib.contextmanager
def provider_variant(name: str) -> Iterator[Variant]:
    base_env = {"MMA_MOCK_CHUNK_DELAY": "0.002"}
    if name == "mock":
        yield Variant("mock", "mock", base_env)
        return
    if name == "gemini":
        from tests import wire_emulator
        emu = wire_emulator.WireEmulator(responder=_gemini_responder(wire_emulator))
        emu.start()
        try:
            yield Variant("gemini", "gemini", {**base_env, "GOOGLE_GEMINI_BASE_URL": emu.base_url,
                                               "GEMINI_API_KEY": "sim-fake-key"}, emulator=emu)
        finally:
            emu.stop()
        return
    raise ValueError(f"unknown variant {name!r}")


# ------------------------------------------------------------------------------------------
# the simulation
# ------------------------------------------------------------------------------------------
class Simulation:
    def __init__(self, client: ApiHookClient, app: AppProcess, project_dir: str, artifacts_dir: str,
                 variant: Variant):
        self.client, self.app = client, app
        self.project_dir, self.artifacts_dir, self.variant = project_dir, artifacts_dir, variant
        self.track_id: str | None = None
        self.ticket_ids: list[str] = []
        self.overlap_seen: list[str] = []
        self.tool_request: dict | None = None

    @contextlib.contextmanager
    def stage(self, number: int, title: str) -> Iterator[None]:
        log.info("stage %d: %s", number, title)
        t0 = time.monotonic()
        try:
            yield
        except (AssertionError, TimeoutError, HookError) as exc:
            code = self.app.proc.poll()
            gone = f"the app process exited with code {code}\n" if code is not None else ""
            raise AssertionError(f"stage {number} ({title}) failed: {type(exc).__name__}: {exc}\n"
                                 f"{gone}{self._state_digest()}") from exc
        log.info("stage %d passed in %.2fs", number, time.monotonic() - t0)

    def _state_digest(self) -> str:
        try:
            mma = self.client.get_mma_status()
            errors = self.client.get_value("errors")
        except HookError as exc:
            return f"(no state: {exc})"
        tickets = [(t.get("id"), t.get("status")) for t in mma.get("tickets") or []]
        streams = {k: len(v or "") for k, v in (mma.get("mma_streams") or {}).items()}
        return (f"state: mma_status={mma.get('mma_status')!r} active_tier={mma.get('active_tier')!r} "
                f"tickets={tickets} streams(chars)={streams} "
                f"pending={[(p.get('kind'), p.get('ticket_id')) for p in mma.get('pending_approvals') or []]} "
                f"errors={errors}")

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = STAGE_TIMEOUT) -> Any:
        def alive_and(pred=predicate):
            code = self.app.proc.poll()
            assert code is None, f"the app exited with code {code} while waiting for {what}"
            return pred()
        return self.client.wait_for(alive_and, timeout=timeout, interval=0.05, message=what)

    def tickets(self) -> dict[str, dict]:
        return {t["id"]: t for t in self.client.get_mma_status().get("tickets") or []}

    # -- stages -----------------------------------------------------------------------------
    def run(self) -> None:
        stages = [(1, "app up and healthy", self.stage_1_healthy),
                  (2, "project and epic set", self.stage_2_project_and_epic),
                  (3, "plan the epic (Tier 1)", self.stage_3_plan_epic),
                  (4, "accept a track (Tier 2 tickets)", self.stage_4_accept_track),
                  (5, "spawn approval with an edited prompt", self.stage_5_spawn_approval),
                  (6, "tool approval (write_file)", self.stage_6_tool_approval),
                  (7, "parallel tickets, auto-approve, run to completion", self.stage_7_run_to_completion),
                  (8, "Tier 3 streams for every ticket and real token usage", self.stage_8_streams_and_usage)]
        for number, title, run_stage in stages:
            with self.stage(number, title):
                run_stage()
        if self.variant.emulator is not None:
            with self.stage(8, "Gemini wire traffic"):
                self.check_wire_traffic(self.variant.emulator)

    def stage_1_healthy(self) -> None:
        c = self.client
        assert c.wait_for_server(30), f"/status did not answer ok at {c.base_url}"
        first = c.get_status()
        assert first["ok"] is True, first
        assert first["provider"] == self.variant.provider, \
            f"app runs provider {first['provider']!r}, expected {self.variant.provider!r}"
        self.wait(lambda: c.get_status()["frame_count"] >= first["frame_count"] + 3,
                  "the frame counter to advance (is the GUI loop running?)", timeout=15)
        perf = c.get_performance()
        assert isinstance(perf, dict) and perf, f"empty performance report: {perf!r}"

    def stage_2_project_and_epic(self) -> None:
        c = self.client
        state = c.get_state()
        assert os.path.realpath(state["project_dir"]) == os.path.realpath(self.project_dir), \
            f"app opened project {state['project_dir']!r}, expected {self.project_dir!r}"
        assert state["mma_status"] in ("idle", None, ""), f"fresh app is not idle: {state['mma_status']!r}"
        result = c.set_value("mma_epic_input", EPIC)
        assert result["ok"] is True, result
        assert c.get_value("mma_epic_input") == EPIC, "set_value mma_epic_input did not stick"
        assert c.get_value("auto_approve") is False, "auto_approve must be off until stage 7"

    def stage_3_plan_epic(self) -> None:
        c = self.client
        assert c.click("btn_mma_plan_epic")["ok"] is True
        tracks = self.wait(lambda: c.get_state().get("tracks"), "Tier 1 to list tracks")
        streams = c.get_mma_status()["mma_streams"]
        tier1 = {k: v for k, v in streams.items() if "Tier 1" in k}
        assert tier1 and all(v.strip() for v in tier1.values()), \
            f"no non-empty Tier 1 stream after planning; stream keys: {sorted(streams)}"
        assert all(t.get("id") for t in tracks), f"tracks without ids: {tracks}"
        self.track_id = tracks[0]["id"]
        log.info("tracks: %s", [t["id"] for t in tracks])

    def stage_4_accept_track(self) -> None:
        c = self.client
        assert c.click("btn_mma_accept_track", track_id=self.track_id)["ok"] is True
        tickets = self.wait(lambda: self.tickets(), "Tier 2 to produce tickets")
        self.ticket_ids = sorted(tickets)
        assert {"T1", "T2", "T3", "T4"} <= set(tickets), f"unexpected ticket ids {self.ticket_ids}"
        assert tickets["T2"]["depends_on"] == ["T1"] and tickets["T3"]["depends_on"] == ["T1"], \
            f"T2/T3 should depend only on T1: {tickets['T2']['depends_on']}, {tickets['T3']['depends_on']}"
        mma = c.get_mma_status()
        tier2 = {k: v for k, v in mma["mma_streams"].items() if "Tier 2" in k}
        assert tier2 and all(v.strip() for v in tier2.values()), \
            f"no non-empty Tier 2 stream; stream keys: {sorted(mma['mma_streams'])}"
        active = mma["active_track"]
        active_id = active.get("id") if isinstance(active, dict) else active
        assert active_id == self.track_id, f"active track {active!r}, accepted {self.track_id!r}"

    def stage_5_spawn_approval(self) -> None:
        c = self.client
        req = c.wait_for_approval(kind="spawn", ticket_id="T1", timeout=STAGE_TIMEOUT)
        prompt = req["payload"]["prompt"]
        assert "Ticket T1:" in prompt, f"spawn prompt does not frame ticket T1: {prompt!r}"
        assert self.tickets()["T2"]["status"] == "todo", "T2 must wait for T1"
        # Prepend the marker, and also put it on the ticket line: the mock worker echoes the first
        # line of its TICKET block, the wire emulator the first line of the whole prompt.
        edited = f"{MARKER} " + prompt.replace("Ticket T1:", f"Ticket T1: {MARKER}", 1)
        result = c.approve(req["request_id"], True, prompt=edited)
        assert result["ok"] is True, result
        pending = [p["request_id"] for p in c.get_mma_status()["pending_approvals"]]
        assert req["request_id"] not in pending, f"approved request still pending: {pending}"
        # The worker's first move is the write_file call, whose content is built from the ticket text
        # the model received: the marker there proves the edited prompt reached the worker.
        tool = c.wait_for_approval(kind="tool", ticket_id="T1", timeout=STAGE_TIMEOUT)
        self.tool_request = tool
        content = (tool["payload"].get("args") or {}).get("content", "")
        assert MARKER in content, f"edited prompt did not reach the T1 worker; tool args: {tool['payload']}"

    def stage_6_tool_approval(self) -> None:
        c = self.client
        req = self.tool_request
        payload = req["payload"]
        assert payload.get("tool") == "write_file", f"expected a write_file approval, got {payload}"
        target = os.path.join(self.project_dir, payload["args"]["path"])
        assert not os.path.exists(target), f"{target} written before its approval"
        assert c.get_value("auto_approve") is False
        result = c.approve(req["request_id"], True)
        assert result["ok"] is True, result
        self.wait(lambda: os.path.exists(target), f"approved write_file to create {target}", timeout=20)
        with open(target, encoding="utf-8") as f:
            written = f.read()
        assert MARKER in written, f"{target} lacks the marker: {written!r}"
        self.wait(lambda: self.tickets()["T1"]["status"] == "completed", "T1 to complete")
        stream = c.get_mma_status()["mma_streams"].get("Tier 3 (Worker): T1", "")
        assert MARKER in stream, f"T1's Tier 3 stream lacks the edited prompt's marker: {stream!r}"

    def stage_7_run_to_completion(self) -> None:
        c = self.client
        # With auto_approve still off, T2 and T3 both ask for spawn approval once T1 is done: two
        # live worker lifecycles, each blocked on its own future, both tickets in progress at once.
        def both_waiting():
            mma = c.get_mma_status()
            status = {t["id"]: t["status"] for t in mma["tickets"]}
            kinds = {(p["kind"], p["ticket_id"]) for p in mma["pending_approvals"]}
            if status.get("T2") == status.get("T3") == "in_progress" and \
                    {("spawn", "T2"), ("spawn", "T3")} <= kinds:
                return status
            return None
        status = self.wait(both_waiting, "T2 and T3 to be in progress (awaiting spawn) together")
        assert status["T4"] == "todo", f"T4 started before T2 and T3 finished: {status}"
        # The same moment seen from the app process: two busy workers on two pool threads. Both
        # are blocked on their approvals, so this state holds until we answer (the performance
        # figures are refreshed every ~0.1 s, hence a wait rather than one read).
        diag = self.wait(lambda: (d := c.get_diagnostics())["performance"].get("workers_busy") == 2 and d,
                         "the engine to report 2 busy workers while T2 and T3 both wait", timeout=10)
        busy = diag["performance"]["workers_busy"]
        pool = [n for n in diag["threads"] if n.startswith(f"mma-{self.track_id}")]
        assert len(pool) >= 2, f"fewer than two worker threads alive: {diag['threads']}"
        self.overlap_seen.append(f"T2+T3 in_progress together, both awaiting spawn approval; "
                                 f"workers_busy={busy}; worker threads={pool}")
        self.screenshot(f"visual_sim_mma_v2_{self.variant.name}_parallel")
        assert c.set_value("auto_approve", True)["ok"] is True
        self.wait(lambda: not c.get_mma_status()["pending_approvals"],
                  "auto_approve to answer the pending spawn approvals", timeout=20)
        self.wait(lambda: c.get_mma_status()["mma_status"] in ("completed", "blocked", "aborted", "error"),
                  "the track to finish", timeout=STAGE_TIMEOUT * 2)
        mma = c.get_mma_status()
        statuses = {t["id"]: t["status"] for t in mma["tickets"]}
        assert mma["mma_status"] == "completed", f"track ended {mma['mma_status']!r}: {statuses}"
        assert all(s == "completed" for s in statuses.values()), f"not all tickets completed: {statuses}"
        self.check_intervals({t["id"]: t for t in mma["tickets"]})

    def check_intervals(self, tickets: dict[str, dict]) -> None:
        """The tickets' own clocks (`started_at`/`finished_at`, epoch seconds): T2 and T3 ran
        at the same time, and T4 started only after both had finished."""
        spans = {}
        for tid in ("T1", "T2", "T3", "T4"):
            start, end = tickets[tid].get("started_at"), tickets[tid].get("finished_at")
            assert isinstance(start, float) and isinstance(end, float) and start <= end, \
                f"{tid} lacks a started_at/finished_at interval: {start!r} .. {end!r}"
            spans[tid] = (start, end)
        (s2, e2), (s3, e3) = spans["T2"], spans["T3"]
        assert max(s2, s3) < min(e2, e3), f"T2 {spans['T2']} and T3 {spans['T3']} did not overlap"
        assert spans["T4"][0] >= max(e2, e3), f"T4 started {spans['T4'][0]} before T2/T3 ended ({e2}, {e3})"
        assert spans["T2"][0] >= spans["T1"][1], "T2 started before T1 (its dependency) finished"
        self.overlap_seen.append(f"T2 and T3 overlapped for {min(e2, e3) - max(s2, s3):.3f}s "
                                 f"(started_at/finished_at)")

    def stage_8_streams_and_usage(self) -> None:
        c = self.client
        mma = c.get_mma_status()
        streams = mma["mma_streams"]
        tier3 = {k: v for k, v in streams.items() if "Tier 3" in k}
        assert tier3, f"no 'Tier 3' key in mma_streams at all (worker output never reached the GUI); keys: {sorted(streams)}"
        for tid in self.ticket_ids:
            keys = [k for k in tier3 if k.endswith(f": {tid}") or k.endswith(f" {tid}")]
            assert keys, f"no Tier 3 stream for ticket {tid}; Tier 3 keys: {sorted(tier3)}"
            assert any(tier3[k].strip() for k in keys), f"Tier 3 stream for {tid} is empty: {keys}"
        usage = mma["mma_tier_usage"]
        for tier in ("Tier 1", "Tier 2", "Tier 3"):
            u = usage.get(tier) or {}
            assert u.get("input", 0) > 0 and u.get("output", 0) > 0, \
                f"{tier} token usage not recorded: {u} (all: {usage})"
        errors = c.get_value("errors")
        assert not errors, f"the app reported errors during the run: {errors}"
        session = c.get_session()
        comms = session["comms_log"]
        assert session["comms_count"] >= len(comms) > 0, f"no comms log in /api/session: {sorted(session)}"
        answered = {e["label"] for e in comms if e["direction"] == "IN" and e["kind"] == "response"
                    and (e["usage"] or {}).get("output_tokens")}
        for label in ("Tier 1", "Tier 2", *(f"Tier 3 (Worker): {tid}" for tid in self.ticket_ids)):
            assert any(a.startswith(label) for a in answered), \
                f"no response with usage for {label!r} in the comms log; labels: {sorted(answered)}"
        state_file = os.path.join(self.project_dir, "conductor", "tracks", self.track_id, "state.json")
        assert os.path.exists(state_file), f"track state was not persisted to {state_file}"

    def check_wire_traffic(self, emu) -> None:
        """The gemini variant really went through the SDK and the wire: one streamed call per tier
        step (Tier 1, Tier 2, T1 twice around its tool call, T2, T3, T4), each with the key."""
        reqs = [r for r in emu.requests if r.provider == "gemini"]
        assert len(reqs) >= 7, f"expected >= 7 Gemini calls on the wire, saw {len(reqs)}"
        assert all(r.auth_present for r in reqs), "a Gemini request went out without the API key"
        assert any(r.stream for r in reqs), "no streamed Gemini call: the app never used SSE"
        answered_tool = [r for r in reqs if MARKER in json.dumps(r.body) and "functionResponse" in json.dumps(r.body)]
        assert answered_tool, "no Gemini request carried the write_file result back to the model"

    def screenshot(self, name: str) -> str:
        """The app's own window, as the next frame rendered it (the hook `screenshot` action)."""
        from PIL import Image
        path = os.path.join(self.artifacts_dir, f"{name}.png")
        with tempfile.TemporaryDirectory() as tmp:
            shot = os.path.join(tmp, f"{name}.png")
            result = self.client.post_action({"action": "screenshot", "path": shot}, wait=True)
            assert result["ok"] is True and result["path"] == os.path.realpath(shot), result
            shutil.copyfile(shot, path)
        with Image.open(path) as img:
            size, colors = img.size, img.getcolors(maxcolors=1 << 16)
        assert size == (result["width"], result["height"]) == WINDOW, f"screenshot {size}, window {WINDOW}"
        assert colors is None or len(colors) > 50, f"{path} is nearly blank ({len(colors)} colours)"
        log.info("screenshot: %s", path)
        return path


def run_visual_sim(variant_name: str, display: str, artifacts_dir: str, project_dir: str) -> None:
    name = f"visual_sim_mma_v2_{variant_name}"
    with provider_variant(variant_name) as variant:
        env = {**os.environ, **variant.env, "DISPLAY": display}
        env.pop("MMA_HOOK_TOKEN", None)          # a fresh random token, read from the start-up line
        argv = [sys.executable, os.path.join(REPO, "gui_2.py"), "--enable-test-hooks", "--hook-port", "0",
                "--provider", variant.provider, "--project", project_dir,
                "--window-size", "{}x{}".format(*WINDOW), "--no-ini"]
        app = AppProcess(argv, env, artifacts_dir, name).start()
        failure: BaseException | None = None
        try:
            url = app.wait_url(60)
            client = ApiHookClient(url, timeout=10)
            sim = Simulation(client, app, project_dir, artifacts_dir, variant)
            try:
                sim.run()
                with sim.stage(9, "screenshot of the completed run"):
                    sim.screenshot(name)
            except AssertionError:
                if app.proc.poll() is None:      # best effort: what the window showed when it failed
                    try:
                        sim.screenshot(f"{name}_failed")
                    except (HookError, OSError, AssertionError) as exc:
                        log.error("could not save a screenshot: %s", exc)
                raise
            log.info("overlap evidence: %s", sim.overlap_seen)
        except AssertionError as exc:
            failure = exc
        finally:
            code = app.stop()
            log.info("app stopped with exit code %s; logs in %s", code, artifacts_dir)
        if failure is not None:                  # the app's own log, read after it stopped
            raise AssertionError(f"{failure}\n{app.tail()}") from failure
        assert code == 0, f"the app did not exit cleanly on SIGTERM (code {code})\n{app.tail()}"


@pytest.mark.parametrize("variant_name", ["mock", "gemini"])
def test_visual_sim_mma_v2(variant_name, xvfb_display, artifacts_dir, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("# Sim project\n")
    run_visual_sim(variant_name, xvfb_display, artifacts_dir, str(project))


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=["mock", "gemini", "all"], default="all")
    args, rest = parser.parse_known_args(argv)
    selection = [] if args.provider == "all" else ["-k", args.provider]
    return pytest.main([os.path.abspath(__file__), "-v", "-p", "no:cacheprovider",
                        "--log-cli-level=INFO", *selection, *rest])


if __name__ == "__main__":
    sys.exit(main())
