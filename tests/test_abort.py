"""Abort reaches the blocking call; resume knows what it knew; one runner per track.

The real SDKs talk to the loopback wire emulator; a "hang" fault holds back even the
status line, so the worker is blocked in a socket read when the abort comes.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

import ai_client
import conductor_io
import events
import multi_agent_conductor as mac
import track_lock
from models import Ticket, Track, new_tier_usage
from pipeline import Pipeline, PlanningAborted
from run_settings import RunSettings
from tests.wire_emulator import Reply, WireEmulator, parse_prompt

log = logging.getLogger(__name__)

KEYS = {"gemini": ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "AIzaFAKE-abort-test-key-0123456789"),
        "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "sk-ant-FAKE-abort-test-key-0123456789")}


@pytest.fixture
def emulator():
    with WireEmulator() as emu:
        yield emu


def use_emulator(monkeypatch, emu: WireEmulator, provider: str) -> None:
    key_var, url_var, key = KEYS[provider]
    monkeypatch.setenv(key_var, key)
    monkeypatch.setenv(url_var, emu.base_url)


def is_worker(ticket_id: str):
    def match(provider, model, body) -> bool:
        view = parse_prompt(provider, body)
        return "Tier 3 (Worker)" in view.system and f"Ticket {ticket_id}:" in " ".join(view.user_texts)
    return match


def worker_requests(emu: WireEmulator, ticket_id: str) -> list:
    match = is_worker(ticket_id)
    return [r for r in emu.requests if match(r.provider, r.model, r.body)]


def saved_track(project: Path, track_id: str, *tickets: Ticket) -> None:
    conductor_io.save_track(project, Track(track_id, "abort test", tickets=list(tickets)),
                            tier_usage=new_tier_usage(), extra_state={"epic": "the saved epic"})


def state_of(project: Path, track_id: str) -> dict:
    return json.loads((project / "conductor" / "tracks" / track_id / "state.json").read_text())


def settings(provider: str, **overrides) -> RunSettings:
    base = {"auto_queue": True, "require_spawn_approval": False, "diagnose_failures": False, "max_workers": 2}
    return RunSettings.for_provider(provider, **{**base, **overrides})


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# -- abort during a hung first byte --------------------------------------------------------
@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
async def test_abort_during_a_hung_first_byte_returns_within_a_second_and_resume_asks_once(
        provider, emulator, monkeypatch, tmp_path):
    use_emulator(monkeypatch, emulator, provider)
    track_id = f"hang_{provider}_20260101"
    saved_track(tmp_path, track_id, Ticket("T1", "the ticket that hangs"))
    emulator.inject("hang", match=is_worker("T1"))
    pipeline = Pipeline(tmp_path, settings(provider))
    run = asyncio.create_task(pipeline.resume(track_id))
    await in_thread(emulator.wait_for_requests, 1)         # the worker is blocked in its read now
    t0 = time.monotonic()
    assert pipeline.abort()["tracks"] == [track_id]
    status = await asyncio.wait_for(run, 10)
    elapsed = time.monotonic() - t0
    log.info("%s: abort during a hung first byte took %.3f s", provider, elapsed)
    assert status == "aborted"
    assert elapsed < 1.0, f"abort took {elapsed:.2f} s"
    await in_thread(emulator.wait_for_requests, 1, 5.0, lambda r: r.disconnected)   # the socket was closed
    ticket = state_of(tmp_path, track_id)["tickets"][0]
    assert (ticket["status"], ticket["blocked_reason"]) == ("todo", "aborted")

    again = Pipeline(tmp_path, settings(provider))
    assert await asyncio.wait_for(again.resume(track_id), 30) == "completed"
    assert len(worker_requests(emulator, "T1")) == 2               # the hung one + exactly one new


async def test_abort_during_planning_stops_the_call_and_says_so(emulator, monkeypatch, tmp_path):
    use_emulator(monkeypatch, emulator, "gemini")
    emulator.inject("hang")
    pipeline = Pipeline(tmp_path, settings("gemini"))
    seen: list[events.Event] = []
    plan = asyncio.create_task(pipeline.plan("An epic whose planning hangs"))
    await in_thread(emulator.wait_for_requests, 1)
    assert pipeline.planning
    t0 = time.monotonic()
    assert pipeline.abort() == {"planning": True, "tracks": []}
    with pytest.raises(PlanningAborted, match="Tier 1 planning was aborted"):
        await asyncio.wait_for(plan, 5)
    assert time.monotonic() - t0 < 1.0
    assert not pipeline.planning
    while not pipeline.event_queue.empty():
        seen.append(events.from_wire(*pipeline.event_queue.get_nowait()))
    assert any(isinstance(e, events.LogLine) and "Tier 1 planning aborted" in e.message for e in seen)
    assert isinstance(seen[-1], events.StateUpdate) and seen[-1].status == "aborted"     # idle again
    await in_thread(emulator.wait_for_requests, 1, 5.0, lambda r: r.disconnected)


# -- abort during a running approved shell command --------------------------------------------
async def test_abort_kills_a_running_approved_shell_command(emulator, monkeypatch, tmp_path):
    use_emulator(monkeypatch, emulator, "gemini")
    fifo = tmp_path / "shell.pid"
    os.mkfifo(fifo)
    # `exec` makes the sleep the process bash started; it writes its pid, then sleeps a minute
    emulator.script("gemini", Reply(tool_calls=[{"name": "run_shell", "args": {
        "command": "echo $$ > shell.pid; exec sleep 60", "timeout_s": 120}}]))
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    track = Track("shell_20260101", "t", tickets=[Ticket("T1", "run a long command")])
    engine = mac.ConductorEngine(track, q, settings=settings("gemini", tools_enabled=True),
                                 base_dir=str(tmp_path))
    run = asyncio.create_task(engine.run())
    while True:                                    # the user approves the command
        name, payload = await asyncio.wait_for(q.get(), 10)
        if name == "mma_step_approval" and payload["kind"] == "tool":
            assert payload["tool"] == "run_shell"
            payload["future"].set_result({"approved": True})
            break
    pid = int((await in_thread(fifo.read_text)).strip())   # blocks until the command runs
    os.kill(pid, 0)                                          # it is running
    t0 = time.monotonic()
    engine.abort()
    assert await asyncio.wait_for(run, 10) == "aborted"
    elapsed = time.monotonic() - t0
    log.info("abort during a shell command took %.3f s", elapsed)
    assert elapsed < 1.0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)                                      # killed and reaped
    ticket = engine.dag.tickets["T1"]
    assert (ticket.status, ticket.blocked_reason) == ("todo", "aborted")


async def test_abort_cancels_a_hung_tier_4_diagnosis(emulator, monkeypatch):
    use_emulator(monkeypatch, emulator, "gemini")
    emulator.inject("400", match=is_worker("T1"))              # the worker fails: Tier 4 diagnoses
    emulator.inject("hang", match=lambda p, m, body: "Tier 4 (QA)" in parse_prompt(p, body).system)
    track = Track("diag_20260101", "t", tickets=[Ticket("T1", "fails, then gets diagnosed")])
    engine = mac.ConductorEngine(track, settings=settings("gemini", diagnose_failures=True))
    run = asyncio.create_task(engine.run())
    await in_thread(emulator.wait_for_requests, 2)            # the worker's call, then Tier 4's
    t0 = time.monotonic()
    engine.abort()
    assert await asyncio.wait_for(run, 10) == "aborted"
    assert time.monotonic() - t0 < 1.0
    await in_thread(emulator.wait_for_requests, 1, 5.0, lambda r: r.disconnected)
    assert track.tickets[0].retry_count == 0                 # no retry after an abort


# -- a worker that does not stop keeps its track locked --------------------------------------
async def test_resume_is_refused_while_a_worker_of_the_track_is_still_alive(monkeypatch, tmp_path):
    release = threading.Event()
    started = threading.Event()

    def stubborn_worker(ticket, context, files, event_queue, engine, md, loop):
        started.set()
        release.wait(30)                   # ignores the abort, like a call nothing can interrupt
        return mac.WorkerOutcome(ticket.id, mac.OutcomeKind.DONE, "late")

    monkeypatch.setattr(mac, "run_worker_lifecycle", stubborn_worker)
    track_id = "stubborn_20260101"
    saved_track(tmp_path, track_id, Ticket("T1", "never stops"))
    pipeline = Pipeline(tmp_path, settings("mock"))
    run = asyncio.create_task(pipeline.resume(track_id))
    await in_thread(started.wait, 10)
    t0 = time.monotonic()
    pipeline.abort()
    assert await asyncio.wait_for(run, 10) == "aborted"
    assert time.monotonic() - t0 < mac.ABORT_GRACE_S + 0.5
    assert state_of(tmp_path, track_id)["tickets"][0]["status"] == "todo"
    try:
        with pytest.raises(track_lock.TrackBusyError, match="the worker for T1") as refused:
            await Pipeline(tmp_path, settings("mock")).resume(track_id)
        assert getattr(refused.value, "shown_to_user", False)       # shown as an error event
    finally:
        release.set()
    monkeypatch.undo()
    stubborn = [t for t in threading.enumerate() if t.name == f"mma-{track_id}-T1"]
    assert len(stubborn) == 1
    await in_thread(stubborn[0].join, 10)          # it ends and drops its hold on the track
    assert await Pipeline(tmp_path, settings("mock")).resume(track_id) == "completed"


# -- resume keeps what it knew -------------------------------------------------------------------
async def test_resume_keeps_the_escalated_model_the_epic_and_the_usage(emulator, monkeypatch, tmp_path):
    use_emulator(monkeypatch, emulator, "gemini")
    track_id = "escalated_20260101"
    t1 = Ticket("T1", "was on its second model", status="in_progress", retry_count=1)
    t2 = Ticket("T2", "was blocked on the last model", status="blocked", retry_count=2,
                blocked_reason="BLOCKED: too hard")
    conductor_io.save_track(tmp_path, Track(track_id, "t", tickets=[t1, t2]), extra_state={"epic": "the saved epic"},
                            tier_usage={"Tier 3": {"input": 100, "output": 10, "model": "gemini-2.5-flash",
                                                   "models": {"gemini-2.5-flash": {"input": 100, "output": 10}}}})
    pipeline = Pipeline(tmp_path, settings("gemini"))
    pipeline.epic = "this session's other epic"
    assert await asyncio.wait_for(pipeline.resume(track_id), 30) == "completed"
    models = pipeline.settings.models.models("Tier 3")
    assert [r.model for r in worker_requests(emulator, "T1")] == [models[1]]
    assert [r.model for r in worker_requests(emulator, "T2")] == [models[2]]
    state = state_of(tmp_path, track_id)
    assert state["epic"] == "the saved epic"
    billed = emulator.billed
    tier3 = state["tier_usage"]["Tier 3"]
    assert tier3["input"] == 100 + sum(b["input_tokens"] for b in billed.values())
    assert tier3["models"]["gemini-2.5-flash"]["input"] == 100 + billed.get(models[1], {}).get("input_tokens", 0)
    assert tier3["models"][models[2]]["input"] == billed[models[2]]["input_tokens"]


# -- any failure ends visible and idle ----------------------------------------------------------
async def test_an_unexpected_exception_in_tier_2_is_shown_and_leaves_the_pipeline_idle(monkeypatch, tmp_path):
    import planning

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug in the breakdown")
    monkeypatch.setattr(planning, "generate_tickets", broken)
    pipeline = Pipeline(tmp_path, settings("mock"))
    tracks = await pipeline.plan("Anything")
    with pytest.raises(RuntimeError):
        await pipeline.accept_track(tracks[0])
    seen = []
    while not pipeline.event_queue.empty():
        seen.append(events.from_wire(*pipeline.event_queue.get_nowait()))
    errors = [e for e in seen if isinstance(e, events.ErrorEvent)]
    assert len(errors) == 1 and "RuntimeError: a bug in the breakdown" in errors[0].message
    assert isinstance(seen[-1], events.StateUpdate) and seen[-1].status == "error"
    # and the track was not left locked: it can be accepted again once the bug is gone
    monkeypatch.undo()
    engine = await pipeline.accept_track(tracks[0])
    assert await engine.run() == "completed"


async def test_an_exception_inside_the_run_ends_it_as_error_not_running(monkeypatch, tmp_path):
    track = Track("boom_20260101", "t", tickets=[Ticket("A", "a")])
    engine = mac.ConductorEngine(track, settings=settings("mock"))

    def explode(*_args, **_kwargs):
        raise RuntimeError("scheduler bug")
    monkeypatch.setattr(engine.execution, "tick", explode)
    with pytest.raises(RuntimeError, match="scheduler bug"):
        await engine.run()
    assert engine.status == "error" and track.tickets[0].status == "todo"


def test_session_books_each_response_even_when_a_later_round_fails(emulator, monkeypatch, tmp_path):
    """A tool round that billed and then a failed second round: the first round is paid for."""
    use_emulator(monkeypatch, emulator, "gemini")
    emulator.script("gemini", Reply(tool_calls=[{"name": "list_directory", "args": {"path": "."}}], usage=(40, 7)))
    emulator.inject("400", match=lambda p, m, body: parse_prompt(p, body).last_is_tool_result)
    booked = []
    with ai_client.session_scope("gemini", "gemini-2.5-flash") as session:
        session.on_usage = lambda model, usage: booked.append((model, usage.input_tokens, usage.output_tokens))
        with pytest.raises(Exception, match="400"):
            session.send("", "list the files", str(tmp_path), tools=True)
    assert booked == [("gemini-2.5-flash", 40, 7)]
    assert (session.usage.input_tokens, session.usage.output_tokens) == emulator.billed_total() == (40, 7)


async def test_after_stop_nothing_new_starts(tmp_path):
    """Ctrl-C while a track is still being loaded: the run that would start is aborted."""
    track_id = "late_20260101"
    saved_track(tmp_path, track_id, Ticket("T1", "must not run"))
    pipeline = Pipeline(tmp_path, settings("mock"))
    assert pipeline.stop() == {"planning": False, "tracks": []}
    assert await pipeline.resume(track_id) == "aborted"
    assert state_of(tmp_path, track_id)["tickets"][0]["status"] == "todo"
    with pytest.raises(PlanningAborted):
        await pipeline.plan("an epic after the stop")
