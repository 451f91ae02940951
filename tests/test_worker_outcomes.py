"""The worker returns an outcome; the engine alone writes ticket state and decides retries."""
import asyncio
import threading

import pytest

import ai_client
import events
import multi_agent_conductor as mac
from models import BLOCKED, COMPLETED, TODO, Ticket, Track, WorkerContext
from providers.base import ServerError, Usage
from run_settings import RunSettings
from worker import OutcomeKind, WorkerOutcome


async def drain(q: events.AsyncEventQueue) -> list[tuple[str, object]]:
    await asyncio.sleep(0)
    out = []
    while not q.empty():
        out.append(await q.get())
    return out


# -- run_worker_lifecycle with the module-level ai_client.send replaced ---------------------
async def test_worker_pushes_response_when_ai_client_send_returns_a_fixed_string(monkeypatch):
    monkeypatch.setattr(ai_client, "send", lambda *args, **kwargs: "fixed string from the model")
    loop = asyncio.get_running_loop()
    event_queue = events.AsyncEventQueue()
    ticket = Ticket("T7", "do the thing")
    await loop.run_in_executor(None, mac.run_worker_lifecycle, ticket,
                               WorkerContext("T7", "gemini-2.5-flash-lite"), None, event_queue, None, "", loop)
    pushed = await drain(event_queue)
    responses = [payload for name, payload in pushed if name == "response"]
    assert len(responses) == 1
    assert responses[0]["stream_id"] == "Tier 3 (Worker): T7"
    assert responses[0]["text"] == "fixed string from the model"
    assert responses[0]["status"] == "done"


# -- one engine run per outcome kind ---------------------------------------------------------
class ScriptedSend:
    """Stands in for `ai_client.send`: one scripted behaviour per attempt, recording prompts."""

    def __init__(self, *behaviours):
        self.behaviours = list(behaviours)
        self.prompts: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, md_content, user_message, base_dir=".", **kwargs):
        with self.lock:
            self.prompts.append(user_message)
            behaviour = self.behaviours.pop(0) if len(self.behaviours) > 1 else self.behaviours[0]
        ai_client.current_session().usage = Usage(5, 2)      # what the provider billed
        if isinstance(behaviour, BaseException):
            raise behaviour
        if callable(behaviour):
            return behaviour()
        return behaviour


async def run_one(monkeypatch, send, *, answer_spawn=None, max_retries=2, **engine_kw):
    """Run a one-ticket track; `answer_spawn(payload)` answers each spawn approval."""
    monkeypatch.setattr(ai_client, "send", send)
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    track = Track("t_20260101", "t", tickets=[Ticket("A", "the ticket")])
    engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider(
        "mock", auto_queue=True, max_retries=max_retries, require_spawn_approval=answer_spawn is not None,
        **engine_kw))
    run = asyncio.create_task(engine.run())
    seen = []
    while not run.done():
        getter = asyncio.create_task(q.get())
        finished, _ = await asyncio.wait({getter, run}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert finished, "the run neither finished nor produced an event"
        if getter in finished:
            name, payload = getter.result()
            seen.append((name, payload))
            if name == "mma_spawn_approval" and answer_spawn is not None:
                answer_spawn(engine, payload)
        else:
            getter.cancel()
    seen += await drain(q)
    return engine, run.result(), seen


def responses(seen):
    return [p["status"] for n, p in seen if n == "response" and p["stream_id"].startswith("Tier 3")]


async def test_outcome_done_completes_the_ticket_with_its_result(monkeypatch):
    engine, status, seen = await run_one(monkeypatch, ScriptedSend("all done"), diagnose_failures=False)
    a = engine.dag.tickets["A"]
    assert status == "completed"
    assert (a.status, a.result, a.retry_count, a.blocked_reason) == (COMPLETED, "all done", 0, "")
    assert a.usage.input == 5 and engine.tier_usage["Tier 3"]["input"] == 5
    assert responses(seen) == ["done"]


async def test_outcome_model_says_blocked_is_diagnosed_and_retried(monkeypatch):
    send = ScriptedSend("BLOCKED: the spec is ambiguous", "done on the stronger model")
    engine, status, seen = await run_one(monkeypatch, send)
    a = engine.dag.tickets["A"]
    assert status == "completed" and a.status == COMPLETED and a.retry_count == 1
    assert a.diagnosis                                            # Tier 4 ran before the retry
    assert "retry 1" in send.prompts[1] and "the spec is ambiguous" in send.prompts[1]
    assert "QA diagnosis" in send.prompts[1]
    assert engine.tier_usage["Tier 4"]["input"] > 0
    assert responses(seen) == ["blocked", "done"]


async def test_outcome_provider_error_blocks_after_the_retries(monkeypatch):
    send = ScriptedSend(ServerError("upstream 503", provider="mock", status=503))
    engine, status, seen = await run_one(monkeypatch, send, diagnose_failures=False)
    a = engine.dag.tickets["A"]
    assert status == "blocked" and a.status == BLOCKED and a.retry_count == 2
    assert "upstream 503" in a.blocked_reason
    assert len(send.prompts) == 3                                 # first try + two retries
    assert [p["ticket_id"] for n, p in seen if n == "mma_error"] == ["A", "A", "A"]
    assert engine.tier_usage["Tier 3"]["input"] == 15              # every attempt's tokens booked


async def test_outcome_worker_exception_is_an_error_and_retried(monkeypatch):
    send = ScriptedSend(KeyError("bug in a tool"), "fine now")
    engine, status, seen = await run_one(monkeypatch, send, diagnose_failures=False)
    a = engine.dag.tickets["A"]
    assert status == "completed" and a.retry_count == 1 and a.result == "fine now"
    assert responses(seen) == ["error", "done"]
    assert "KeyError" in next(p["message"] for n, p in seen if n == "mma_error")


async def test_outcome_spawn_rejected_blocks_without_a_retry(monkeypatch):
    send = ScriptedSend("never called")
    engine, status, seen = await run_one(
        monkeypatch, send, answer_spawn=lambda _e, p: p["future"].set_result({"approved": False}))
    a = engine.dag.tickets["A"]
    assert status == "blocked" and a.status == BLOCKED and a.retry_count == 0
    assert a.blocked_reason == "spawn rejected by the user"
    assert send.prompts == []
    assert responses(seen) == ["rejected"]


async def test_outcome_spawn_approval_timed_out_is_not_called_a_rejection(monkeypatch):
    send = ScriptedSend("never called")
    engine, status, seen = await run_one(monkeypatch, send, answer_spawn=lambda _e, _p: None,
                                         approval_timeout=0.2)
    a = engine.dag.tickets["A"]
    assert status == "blocked" and a.status == BLOCKED and a.retry_count == 0
    assert a.blocked_reason.startswith("spawn approval timed out")
    assert "rejected" not in a.blocked_reason
    assert [p["outcome"] for n, p in seen if n == "mma_approval_closed"] == ["timeout"]
    assert responses(seen) == ["timed_out"]


async def test_outcome_abort_during_the_spawn_approval_leaves_the_ticket_todo(monkeypatch):
    send = ScriptedSend("never called")
    engine, status, seen = await run_one(monkeypatch, send, answer_spawn=lambda e, _p: e.abort())
    a = engine.dag.tickets["A"]
    assert status == "aborted" and a.status == TODO and a.retry_count == 0
    assert a.blocked_reason == "aborted"
    assert responses(seen) == ["aborted"]


async def test_outcome_abort_mid_call_leaves_the_ticket_todo(monkeypatch):
    started = threading.Event()

    def slow_reply():
        started.set()
        session = ai_client.current_session()
        assert session.cancel_event.wait(10), "abort never reached the worker's session"
        raise ai_client.CancelledByUser("cancelled", provider="mock")
    send = ScriptedSend(slow_reply)

    def abort_when_started(engine):
        started.wait(10)
        engine.abort()
    monkeypatch.setattr(ai_client, "send", send)
    track = Track("t_20260101", "t", tickets=[Ticket("A", "the ticket")])
    engine = mac.ConductorEngine(track, events.AsyncEventQueue(), True, settings=RunSettings.for_provider("mock"))
    aborter = threading.Thread(target=abort_when_started, args=(engine,))
    aborter.start()
    status = await asyncio.wait_for(engine.run(), 10)
    aborter.join()
    a = engine.dag.tickets["A"]
    assert status == "aborted" and a.status == TODO and a.retry_count == 0
    assert a.usage.input == 5                                     # billed tokens are kept


# -- the engine is the only writer -------------------------------------------------------------
class WatchedTicket(Ticket):
    """Records the thread of every write to the fields a worker used to set itself."""
    writes: list[tuple[str, int]]

    def __setattr__(self, name, value):
        if name in ("status", "result", "blocked_reason", "finished_at"):
            self.__dict__.setdefault("writes", []).append((name, threading.get_ident()))
        super().__setattr__(name, value)


async def test_ticket_state_is_written_only_on_the_engine_loop_thread(monkeypatch):
    monkeypatch.setattr(ai_client, "send", ScriptedSend("BLOCKED: first try", "ok"))
    tickets = [WatchedTicket(tid, f"ticket {tid}", depends_on=deps)
               for tid, deps in (("A", []), ("B", []), ("C", ["A", "B"]))]
    engine = mac.ConductorEngine(Track("t_20260101", "t", tickets=tickets), events.AsyncEventQueue(),
                                 settings=RunSettings.for_provider("mock", auto_queue=True,
                                                                   diagnose_failures=False))
    loop_thread = threading.get_ident()
    for t in tickets:
        t.writes = []
    assert await engine.run() == "completed"
    threads = {ident for t in tickets for _name, ident in t.writes}
    assert threads == {loop_thread}


async def test_snapshots_never_show_a_completed_ticket_without_its_result(monkeypatch):
    """Every state the engine publishes, and snapshots taken continuously on the loop
    while workers finish, show a completed ticket only with its result and end time."""
    def reply():
        return f"result of {threading.current_thread().name}"
    monkeypatch.setattr(ai_client, "send", ScriptedSend(reply))
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    track = Track("t_20260101", "t", tickets=[Ticket(f"T{i}", f"ticket {i}") for i in range(40)])
    engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider("mock", auto_queue=True, max_workers=8))
    snapshots = []
    stop = asyncio.Event()

    async def snapshot_continuously():
        while not stop.is_set():
            snapshots.append([dict(t) for t in engine.snapshot()["tickets"]])
            await asyncio.sleep(0)
    sampler = asyncio.create_task(snapshot_continuously())
    assert await engine.run() == "completed"
    stop.set()
    await sampler
    published = [p["tickets"] for n, p in await drain(q) if n == "mma_state_update"]
    checked = 0
    for tickets in snapshots + published:
        for t in tickets:
            if t["status"] == COMPLETED:
                checked += 1
                assert t["result"].startswith("result of") and t["finished_at"], t
    assert checked >= 40 and len(snapshots) > 10


# -- typed events ------------------------------------------------------------------------------
def test_typed_events_read_like_their_wire_dicts():
    response = events.Response("hi", "Tier 3 (Worker): A", "done", "A")
    assert response.name == "response"
    assert response == {"text": "hi", "stream_id": "Tier 3 (Worker): A", "status": "done", "ticket_id": "A"}
    assert dict(events.Response("plan", "Tier 1")) == {"text": "plan", "stream_id": "Tier 1", "status": "done"}
    update = events.StateUpdate("planning", None)
    assert dict(update) == {"status": "planning", "active_tier": None}
    assert update.get("tickets") is None


@pytest.mark.parametrize("name, payload, message", [
    ("mma_stream", {"text": "x"}, "missing stream_id"),
    ("mma_stream", ["not", "a", "dict"], "carries a list"),
    ("no_such_event", {}, "unknown event"),
    ("mma_spawn_approval", {"request_id": "r", "ticket_id": "A"}, "missing future"),
    ("mma_state_update", {"status": 3}, "status must be a string"),
])
def test_from_wire_names_what_is_wrong(name, payload, message):
    with pytest.raises(events.EventPayloadError, match=message):
        events.from_wire(name, payload)


def test_from_wire_builds_the_typed_event():
    import concurrent.futures
    future = concurrent.futures.Future()
    event = events.from_wire("mma_spawn_approval", {"request_id": "r1", "ticket_id": "A", "future": future,
                                                    "prompt": "p"})
    assert isinstance(event, events.ApprovalRequest)
    assert (event.kind, event.name, event.prompt, event.future) == ("spawn", "mma_spawn_approval", "p", future)


def test_worker_outcome_kinds_say_whether_a_retry_makes_sense():
    retryable = {kind for kind in OutcomeKind if WorkerOutcome("A", kind).retryable}
    assert retryable == {OutcomeKind.BLOCKED, OutcomeKind.ERROR}
    assert WorkerOutcome("A", OutcomeKind.ABORTED).ticket_status == TODO
    assert WorkerOutcome("A", OutcomeKind.APPROVAL_TIMED_OUT).ticket_status == BLOCKED



async def test_a_cancelled_diagnosis_still_lets_the_ticket_retry(monkeypatch):
    """A Tier 4 future that was cancelled (abort, shutdown) must not crash the run loop."""
    loop = asyncio.get_running_loop()
    track = Track("t_20260101", "t", tickets=[Ticket("A", "the ticket")])
    engine = mac.ConductorEngine(track, events.AsyncEventQueue(loop), settings=RunSettings.for_provider("mock"))
    engine._retry_base = {"A": 0}
    engine.execution.mark_blocked("A", "BLOCKED: first try")
    cancelled = loop.create_future()
    cancelled.cancel()
    engine._diagnosed("A", cancelled)
    a = engine.dag.tickets["A"]
    assert (a.status, a.retry_count, a.diagnosis) == (TODO, 1, "")
