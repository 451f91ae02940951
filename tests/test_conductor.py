"""ConductorEngine and the worker lifecycle: worker output reaches the event queue, tokens are
the provider's real counts, sessions are per worker, and errors are visible."""
import asyncio
import threading

import pytest

import ai_client
import events
import multi_agent_conductor as mac
import planning
import providers
from models import BLOCKED, COMPLETED, TODO, Ticket, Track, WorkerContext
from providers.base import Usage
from run_settings import RunSettings
from tests import stub_providers


async def drain(q: events.AsyncEventQueue) -> list[tuple[str, dict]]:
    await asyncio.sleep(0)
    out = []
    while not q.empty():
        out.append(await q.get())
    return out


@pytest.fixture
def stub_provider(monkeypatch):
    def register(name: str, cls: str) -> str:
        monkeypatch.setitem(providers.PROVIDERS, name, ("tests.stub_providers", cls))
        return name
    return register


# -- a worker's reply reaches the event queue as a "response" event --------------
async def test_run_worker_lifecycle_pushes_response_with_stream_id(monkeypatch):
    def fake_send(self, md, user, base_dir=".", **kw):
        self.usage = Usage(11, 7)
        return ai_client.SendResult("fixed worker output", Usage(11, 7))
    monkeypatch.setattr(ai_client.Session, "send", fake_send)
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    ticket = Ticket("T42", "write the thing")
    outcome = await loop.run_in_executor(None, mac.run_worker_lifecycle, ticket,
                                         WorkerContext("T42", "gemini-2.5-flash-lite", provider="mock"),
                                         None, q, None, "", loop)
    got = await drain(q)
    responses = [p for n, p in got if n == "response"]
    assert outcome.text == "fixed worker output" and outcome.usage == Usage(11, 7)
    assert responses == [{"text": "fixed worker output", "stream_id": "Tier 3 (Worker): T42",
                          "status": "done", "ticket_id": "T42"}]
    assert ticket.status == COMPLETED and ticket.usage.input == 11 and ticket.usage.output == 7


async def test_streamed_chunks_arrive_in_order_and_join_to_the_reply():
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    ticket = Ticket("T1", "stream please")
    outcome = await loop.run_in_executor(None, mac.run_worker_lifecycle, ticket,
                                         WorkerContext("T1", "m", provider="mock"), None, q, None, "", loop)
    text = outcome.text
    got = await drain(q)
    chunks = [p["text"] for n, p in got if n == "mma_stream"]
    assert len(chunks) > 5
    assert "".join(chunks) == text
    assert {p["stream_id"] for n, p in got if n == "mma_stream"} == {"Tier 3 (Worker): T1"}
    assert [n for n, _ in got][-1] == "response"      # final event after every chunk


async def test_worker_exception_is_visible_and_blocks_the_ticket(stub_provider, caplog):
    provider = stub_provider("raising", "RaisingAdapter")
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    ticket = Ticket("T9", "explode")
    await loop.run_in_executor(None, mac.run_worker_lifecycle, ticket,
                               WorkerContext("T9", "m", provider=provider), None, q, None, "", loop)
    got = await drain(q)
    errors = [p for n, p in got if n == "mma_error"]
    assert errors and "adapter exploded" in errors[0]["message"] and errors[0]["ticket_id"] == "T9"
    assert ticket.status == BLOCKED and "adapter exploded" in ticket.blocked_reason
    assert [p["status"] for n, p in got if n == "response"] == ["error"]
    assert any("worker for ticket T9 crashed" in r.message for r in caplog.records)


def test_queue_put_without_loop_is_an_error_not_silence():
    q = events.AsyncEventQueue()
    with pytest.raises(RuntimeError):
        mac._queue_put(q, None, "response", {"text": "x"})


# -- reset_session is per context ------------------------------------------------------
def test_reset_session_in_a_worker_does_not_touch_other_threads():
    main = ai_client.current_session()
    main.history.append({"role": "user", "content": "keep me"})
    seen = {}

    def worker():
        ai_client.set_provider("mock", "worker-model")
        s = ai_client.reset_session()
        seen["worker"] = (s is not main, ai_client.get_model())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == (True, "worker-model")
    assert ai_client.current_session() is main and main.history[-1]["content"] == "keep me"
    assert ai_client.get_model() != "worker-model"


# -- full mock pipeline: usage equals what the provider reported ------------------------
async def run_pipeline(epic: str, **engine_kw):
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    entries = []
    lock = threading.Lock()

    def sink(entry):
        with lock:
            entries.append(entry)
    old = ai_client.comms_log_callback
    ai_client.comms_log_callback = sink
    try:
        plan = await loop.run_in_executor(None, lambda: planning.plan_epic(epic, provider="mock", event_queue=q))
        track = plan.value[0]
        tix = await loop.run_in_executor(None, lambda: planning.generate_tickets(track, provider="mock", event_queue=q))
        track.tickets = tix.value
        engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider("mock", auto_queue=True, **engine_kw))
        engine.add_usage("Tier 1", plan.usage.input_tokens, plan.usage.output_tokens)
        engine.add_usage("Tier 2", tix.usage.input_tokens, tix.usage.output_tokens)
        status = await engine.run()
    finally:
        ai_client.comms_log_callback = old
    return engine, status, await drain(q), entries


def reported(entries, prefix):
    got = [e["payload"]["usage"] for e in entries if e["kind"] == "response" and e["label"].startswith(prefix)]
    return sum(u["input_tokens"] for u in got), sum(u["output_tokens"] for u in got)


async def test_full_mock_run_tier_usage_equals_provider_reports():
    engine, status, got, entries = await run_pipeline("Add a CLI flag to print the version")
    assert status == "completed"
    for tier in ("Tier 1", "Tier 2", "Tier 3"):
        u = engine.tier_usage[tier]
        assert u["input"] > 0 and u["output"] > 0, tier
        assert (u["input"], u["output"]) == reported(entries, tier), tier
    streams = {p["stream_id"] for n, p in got if n in ("mma_stream", "response")}
    assert {"Tier 1", "Tier 2 (Tech Lead)"} <= streams
    assert {f"Tier 3 (Worker): {t}" for t in engine.dag.tickets} <= streams
    states = [p for n, p in got if n == "mma_state_update"]
    assert states[-1]["status"] == "completed"
    assert set(states[-1]) >= {"status", "active_tier", "tier_usage", "track", "tickets"}


async def test_blocked_ticket_escalates_models_then_succeeds():
    engine, status, got, entries = await run_pipeline("Refactor the parser [hard]")
    assert status == "completed"
    hard = next(t for t in engine.dag.tickets.values() if "[hard]" in t.description)
    assert hard.retry_count == 1 and hard.status == COMPLETED
    models_used = [e["model"] for e in entries if e["kind"] == "response" and e["label"].endswith(hard.id)]
    assert models_used == ["gemini-2.5-flash-lite", "gemini-2.5-flash"]
    assert engine.tier_usage["Tier 4"]["input"] > 0        # the failure was diagnosed
    assert hard.diagnosis


async def test_failure_after_max_retries_leaves_blocked_with_reason(stub_provider):
    track = Track("t_20260101", "t", tickets=[Ticket("A", "a"), Ticket("B", "b", depends_on=["A"])])
    provider = stub_provider("flaky", "FlakyServerAdapter")
    from providers.retry import RetryPolicy
    q = events.AsyncEventQueue()
    engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider(provider, auto_queue=True,
                                                                          diagnose_failures=False))
    import functools
    orig = ai_client.Session.send
    fast = functools.partialmethod(orig, retry_policy=RetryPolicy(max_attempts=1))
    ai_client.Session.send = fast
    try:
        status = await engine.run()
    finally:
        ai_client.Session.send = orig
    assert status == "blocked"
    a = engine.dag.tickets["A"]
    assert a.status == BLOCKED and a.retry_count == 2 and "provider answered 500" in a.blocked_reason
    assert engine.dag.tickets["B"].status == TODO
    errors = [p for n, p in await drain(q) if n == "mma_error"]
    assert len(errors) == 3                                  # one per attempt, none silent


async def test_two_independent_tickets_really_run_concurrently(stub_provider):
    stub_providers.BARRIER["b"] = threading.Barrier(2, timeout=10)
    track = Track("t_20260101", "t", tickets=[Ticket("A", "a"), Ticket("B", "b"), Ticket("C", "c", depends_on=["A", "B"])])
    stub_providers.BARRIER["b"] = threading.Barrier(2, timeout=10)
    engine = mac.ConductorEngine(track, events.AsyncEventQueue(), settings=RunSettings.for_provider(
        stub_provider("barrier", "BarrierAdapter"), auto_queue=True, max_retries=0))
    # C runs alone, so it needs a partner at the barrier: give it one from a helper thread.
    partner = threading.Thread(target=lambda: stub_providers.BARRIER["b"].wait(), daemon=True)

    def release_c(snapshot):
        if snapshot.dag.tickets["C"].status == "in_progress" and not partner.is_alive() and partner.ident is None:
            partner.start()
    engine.on_state_change = release_c
    status = await engine.run()
    # A and B only pass the 2-party barrier if they were in flight at the same time.
    assert status == "completed", [t.blocked_reason for t in engine.dag.tickets.values()]


async def test_spawn_approval_edit_reaches_worker_and_rejection_blocks():
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    track = Track("t_20260101", "t", tickets=[Ticket("A", "first"), Ticket("B", "second")])
    engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider(
        "mock", auto_queue=True, require_spawn_approval=True, max_retries=0))
    run = asyncio.create_task(engine.run())
    answered = {}
    while len(answered) < 2:
        name, payload = await asyncio.wait_for(q.get(), 10)
        if name == "mma_spawn_approval":
            assert payload["kind"] == "spawn" and payload["request_id"] not in answered
            if payload["ticket_id"] == "A":
                payload["future"].set_result({"approved": True,
                                              "prompt": payload["prompt"].replace("first", "first EDITED-BY-USER")})
            else:
                payload["future"].set_result({"approved": False})
            answered[payload["request_id"]] = payload["ticket_id"]
    assert await asyncio.wait_for(run, 10) == "blocked"
    a, b = engine.dag.tickets["A"], engine.dag.tickets["B"]
    assert a.status == COMPLETED and "EDITED-BY-USER" in a.result
    assert b.status == BLOCKED and b.blocked_reason == "spawn rejected by the user"


async def test_step_mode_ticket_waits_for_step_approval():
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    track = Track("t_20260101", "t", tickets=[Ticket("A", "a", step_mode=True)])
    engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider("mock", auto_queue=True))
    run = asyncio.create_task(engine.run())
    while True:
        name, payload = await asyncio.wait_for(q.get(), 10)
        if name == "mma_step_approval":
            break
    assert engine.dag.tickets["A"].status == TODO            # nothing ran before the approval
    payload["future"].set_result({"approved": True})
    assert await asyncio.wait_for(run, 10) == "completed"


async def test_abort_mid_stream_cancels_within_a_second_and_is_resumable(stub_provider):
    stub_providers.GATES["go"] = threading.Event()
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    track = Track("t_20260101", "t", tickets=[Ticket("A", "a")])
    engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider(
        stub_provider("gated", "GatedStreamAdapter"), auto_queue=True))
    run = asyncio.create_task(engine.run())
    while True:                                   # wait for the first streamed chunk
        name, payload = await asyncio.wait_for(q.get(), 10)
        if name == "mma_stream":
            break
    t0 = loop.time()
    engine.abort()
    assert await asyncio.wait_for(run, 5) == "aborted"
    assert loop.time() - t0 < 1.0
    assert engine.dag.tickets["A"].status == TODO             # resumable, not lost


@pytest.mark.parametrize("reply, message", [
    ('{"id": "T1"}', "expected a JSON list of tickets"),
    ('[{"description": "no id"}]', "missing required field 'id'"),
    ('[{"id": "A", "description": "a", "depends_on": ["Z"]}]', "unknown ticket 'Z'"),
    ('[{"id": "A", "description": "a", "depends_on": ["B"]}, {"id": "B", "description": "b", "depends_on": ["A"]}]',
     "dependency cycle: .* -> .* -> "),
    ('[{"id": "A", "description": "a"}, {"id": "B", "desc', "truncated: it ends before the list"),
    ('Plan: [{"id": "A", "description": "a"} {"id": "B"}] done', "no valid JSON found .*line 1"),
    ("I cannot help with that.", "no JSON list or object found"),
    ("[]", "is empty"),
])
def test_malformed_ticket_json_gives_clear_errors(reply, message):
    with pytest.raises(ValueError, match=message):
        mac.parse_json_tickets(reply)


def test_fenced_json_with_prose_is_accepted():
    reply = 'Sure! Here you go:\n```json\n[{"id": "A", "description": "a"}, {"id": "B", "description": "b", "depends_on": ["A"]}]\n```\nGood luck.'
    assert [t.id for t in mac.parse_json_tickets(reply)] == ["A", "B"]
    assert [t.id for t in mac.parse_json_tickets('{"tickets": [{"id": "A", "description": "x"}]}')] == ["A"]


async def test_invalid_reply_is_asked_once_more_then_fails_keeping_the_raw_reply(monkeypatch):
    replies = iter(["not json at all", "still not json"])

    def fake_send(self, md, user, base_dir=".", **kw):
        text = next(replies)
        self.log("IN", "response", {"text": text, "usage": {"input_tokens": 1, "output_tokens": 1}})
        return ai_client.SendResult(text, Usage(1, 1))
    monkeypatch.setattr(ai_client.Session, "send", fake_send)
    with pytest.raises(planning.PlanningError, match="still not usable after one retry") as info:
        planning.generate_tickets(Track("t_20260101", "t"), provider="mock")
    assert "not json at all" in info.value.raw and "still not json" in info.value.raw


async def test_repair_round_succeeds(monkeypatch):
    replies = iter(["oops", '[{"id": "A", "description": "a"}]'])
    prompts = []

    def fake_send(self, md, user, base_dir=".", **kw):
        prompts.append(user)
        return ai_client.SendResult(next(replies), Usage(2, 3))
    monkeypatch.setattr(ai_client.Session, "send", fake_send)
    result = planning.generate_tickets(Track("t_20260101", "t"), provider="mock")
    assert [t.id for t in result.value] == ["A"] and result.usage == Usage(4, 6)
    assert "could not be used" in prompts[1]


async def test_parallel_tickets_have_overlapping_start_and_finish_times(stub_provider):
    stub_providers.BARRIER["b"] = threading.Barrier(2, timeout=10)
    track = Track("t_20260101", "t", tickets=[Ticket("A", "a"), Ticket("B", "b")])
    engine = mac.ConductorEngine(track, events.AsyncEventQueue(), settings=RunSettings.for_provider(
        stub_provider("barrier", "BarrierAdapter"), auto_queue=True, max_retries=0))
    assert await engine.run() == "completed"
    a, b = engine.dag.tickets["A"], engine.dag.tickets["B"]
    assert a.started_at < b.finished_at and b.started_at < a.finished_at
    snap = engine.snapshot()["tickets"]
    assert all(t["started_at"] and t["finished_at"] for t in snap)


async def test_pause_stops_new_spawns_until_resume(stub_provider):
    stub_providers.GATES["go"] = threading.Event()
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    track = Track("t_20260101", "t", tickets=[Ticket("A", "a"), Ticket("B", "b", depends_on=["A"])])
    engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider(
        stub_provider("gated", "GatedStreamAdapter"), auto_queue=True))
    run = asyncio.create_task(engine.run())
    while (await asyncio.wait_for(q.get(), 10))[0] != "mma_stream":
        pass                                          # A is streaming
    engine.pause()
    stub_providers.GATES["go"].set()                  # A finishes while paused
    while engine.dag.tickets["A"].status != COMPLETED or engine.running:
        await asyncio.wait_for(q.get(), 10)
    for _ in range(5):
        await asyncio.sleep(0)
    assert engine.dag.tickets["B"].status == TODO and not run.done()
    engine.resume()
    assert await asyncio.wait_for(run, 10) == "completed"
