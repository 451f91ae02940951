"""Prompt caching across a track's workers, through the real SDKs against the wire emulator.

The emulator's bill (`emu.billed`, `tests/wire_cache.py`) is the reference: what the app books
per tier and model must be what the emulated provider billed, split into uncached / cache
write / cache read (and explicit cache storage, which is time-based: equal within the time a
delete call takes).
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

import events
import multi_agent_conductor as mac
import prompt_cache
from models import Ticket, Track
from pipeline import Pipeline
from providers.anthropic_provider import MAX_CACHE_BREAKPOINTS, _system_blocks
from run_settings import RunSettings
from tests.wire_emulator import Reply, WireEmulator, parse_prompt

KEYS = {"gemini": ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "AIzaFAKE-cache-test-key-0123456789"),
        "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "sk-ant-FAKE-cache-test-key-0123456789")}
WORKER = {"gemini": "gemini-2.5-flash-lite", "anthropic": "claude-sonnet-4-5"}
# ~6,000 tokens of curated context: above every model's minimum cacheable prefix
CONTEXT = "## Files\n\n### `lib/core.py` (full)\n\n```python\n" + "".join(
    f"def helper_{i}(value):\n    return value * {i} + len('shared context line {i}')\n\n" for i in range(300)) + "```\n"


@pytest.fixture
def emu(monkeypatch, tmp_path):
    with WireEmulator() as emulator:
        for key_var, url_var, key in KEYS.values():
            monkeypatch.setenv(key_var, key)
            monkeypatch.setenv(url_var, emulator.base_url)
        monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "no-credentials.toml"))
        monkeypatch.delenv("MMA_PROVIDER", raising=False)
        yield emulator


def settings(provider: str, **overrides) -> RunSettings:
    base = {"auto_queue": True, "require_spawn_approval": False, "diagnose_failures": False, "max_workers": 4}
    return RunSettings.for_provider(provider, {"Tier 3": [WORKER[provider]]}, **{**base, **overrides})


def project_files(root, count: int = 4) -> list[str]:
    """One file per ticket, each with a text only that ticket may see."""
    (root / "src").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(1, count + 1):
        (root / "src" / f"part{i}.py").write_text(f"OWN_FILE_OF_T{i} = {i}\n", encoding="utf-8")
        names.append(f"src/part{i}.py")
    return names


def diamond(files: list[str] | None = None) -> Track:
    """T1, then T2 and T3 together, then T4: a level that releases two tickets at once."""
    deps = {"T1": [], "T2": ["T1"], "T3": ["T1"], "T4": ["T2", "T3"]}
    tickets = [Ticket(tid, f"ticket {tid}", depends_on=d,
                      context_requirements=[files[i]] if files else [])
               for i, (tid, d) in enumerate(deps.items())]
    return Track("cache_track_20260101", "Cache the shared context", "Every worker shares this brief.",
                 tickets=tickets)


def flat(count: int) -> Track:
    return Track("flat_track_20260101", "Flat", "Independent tickets.",
                 tickets=[Ticket(f"T{i}", f"ticket T{i}") for i in range(1, count + 1)])


def worker_requests(emulator: WireEmulator, provider: str) -> list:
    out = []
    for r in emulator.requests_for(provider):
        if not isinstance(r.body, dict) or "cachedContents" in r.path:
            continue
        if "Tier 3 (Worker)" in parse_prompt(provider, r.body).system or r.body.get("cachedContent"):
            out.append(r)
    return out


def strip_marks(value):
    if isinstance(value, dict):
        return {k: strip_marks(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_marks(v) for v in value]
    return value


def prefix_bytes(provider: str, body: dict) -> bytes:
    """The part of a request every worker of the track must send identically."""
    if provider == "anthropic":
        shared = [strip_marks(body.get("tools")), strip_marks(body.get("system"))]
    else:
        shared = [body.get("systemInstruction"), body.get("tools"), body.get("cachedContent")]
    return json.dumps(shared, sort_keys=True).encode()


def user_text(provider: str, body: dict) -> str:
    return " ".join(parse_prompt(provider, body).user_texts)


def run(engine: mac.ConductorEngine, md: str = CONTEXT) -> str:
    return asyncio.run(engine.run(md))


# ----------------------------------------------------------------- the shared prefix
@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
@pytest.mark.parametrize("caching", [True, False], ids=["cache-on", "cache-off"])
def test_every_worker_of_a_track_sends_a_byte_identical_prefix(provider, caching, emu, tmp_path):
    files = project_files(tmp_path)
    track = diamond(files)
    engine = mac.ConductorEngine(track, settings=settings(provider, tools_enabled=True, prompt_cache=caching),
                                 base_dir=str(tmp_path))
    assert run(engine) == "completed"
    requests = worker_requests(emu, provider)
    assert len(requests) == 4
    prefixes = {prefix_bytes(provider, r.body) for r in requests}
    assert len(prefixes) == 1, "the workers' prefixes differ"
    prefix = prefixes.pop().decode()
    if provider == "gemini" and caching:       # held by the explicit cache: the create call has it
        [create] = [r for r in emu.requests if r.path.endswith("/cachedContents")]
        prefix = json.dumps(create.body, sort_keys=True)
    assert "helper_299" in prefix and "Every worker shares this brief." in prefix   # context + track brief
    assert "read_file" in prefix                                                   # the tool declarations
    for i, request in enumerate(sorted(requests, key=lambda r: user_text(provider, r.body)), start=1):
        own = user_text(provider, request.body)
        assert f"Ticket T{i}:" in own and f"OWN_FILE_OF_T{i}" in own               # its files, in full, after
        assert all(f"OWN_FILE_OF_T{j}" not in own for j in range(1, 5) if j != i)
        assert "OWN_FILE_OF" not in prefix


def test_a_worker_whose_context_was_edited_is_sent_uncached(emu, tmp_path):
    """An edited spawn approval changes the prefix: that worker must not claim the track's cache."""
    track = flat(4)
    queue = events.AsyncEventQueue()

    async def main():
        queue.bind(asyncio.get_running_loop())
        engine = mac.ConductorEngine(track, queue, settings=settings("gemini", require_spawn_approval=True))

        async def approve():
            while True:
                name, payload = await queue.get()
                if name == "mma_spawn_approval":
                    edits = {"context_md": CONTEXT + "\nEDITED"} if payload["ticket_id"] == "T3" else {}
                    payload["future"].set_result({"approved": True, **edits})
        answering = asyncio.create_task(approve())
        try:
            return await engine.run(CONTEXT)
        finally:
            answering.cancel()
    assert asyncio.run(main()) == "completed"
    by_ticket = {user_text("gemini", r.body).split("Ticket ")[1][:2]: r.body for r in worker_requests(emu, "gemini")}
    assert by_ticket["T3"].get("cachedContent") is None and "EDITED" in json.dumps(by_ticket["T3"])
    assert {by_ticket[t]["cachedContent"] for t in ("T1", "T2", "T4")} == {prompt_cache_name(emu)}


def prompt_cache_name(emulator: WireEmulator) -> str:
    [cache] = emulator.caches.explicit_caches()
    return cache.name


# ----------------------------------------------------------------- Anthropic breakpoints
def test_anthropic_breakpoints_sit_at_the_prefix_end_and_on_the_tool_loop(emu, tmp_path):
    emu.script("anthropic", Reply(tool_calls=[{"name": "list_directory", "args": {"path": "."}}]),
               Reply(tool_calls=[{"name": "list_directory", "args": {"path": "src"}}]))
    project_files(tmp_path, 1)
    track = Track("loop_20260101", "Loop", "A tool loop.", tickets=[Ticket("T1", "look around twice")])
    engine = mac.ConductorEngine(track, settings=settings("anthropic", tools_enabled=True), base_dir=str(tmp_path))
    assert run(engine) == "completed"
    first, second, third = worker_requests(emu, "anthropic")

    def marks(body) -> list[str]:
        found = [f"system[{i}]" for i, b in enumerate(body["system"]) if "cache_control" in b]
        for m, message in enumerate(body["messages"]):
            found += [f"messages[{m}][{b}]" for b, block in enumerate(message["content"]) if "cache_control" in block]
        return found
    # the curated context (shared with the chat and Tiers 1-2), then the whole system prompt
    assert first.body["system"][0]["text"].startswith("<context>") and first.body["system"][0]["text"].endswith("</context>")
    assert "Tier 3 (Worker)" in first.body["system"][1]["text"]
    assert marks(first.body) == ["system[0]", "system[1]", "messages[0][0]"]
    # a tool round marks its last block and the end of the previous request: <= 4 in all
    assert marks(second.body) == ["system[0]", "system[1]", "messages[0][0]", "messages[2][0]"]
    assert marks(third.body) == ["system[0]", "system[1]", "messages[2][0]", "messages[4][0]"]
    assert all(len(marks(r.body)) <= MAX_CACHE_BREAKPOINTS for r in (first, second, third))
    # so each round read the history the previous one wrote
    received = engine.track.tickets[0].received
    assert received["cache_read"] > 0 and received["cache_write"] > 0


def test_system_breakpoints_never_exceed_the_limit():
    blocks, marks = _system_blocks("abcdefghij", (1, 2, 3, 4, 5, 6, 0, 99))
    assert marks == MAX_CACHE_BREAKPOINTS == 4
    assert "".join(b["text"] for b in blocks) == "abcdefghij"           # nothing lost or repeated
    assert [b["text"] for b in blocks if "cache_control" in b][-1] == "f"    # the longest prefixes kept
    assert _system_blocks("plain", ()) == ("plain", 0)


def test_the_emulator_refuses_more_than_four_breakpoints(emu):
    import anthropic
    client = anthropic.Anthropic(api_key="sk-ant-x", base_url=emu.base_url, max_retries=0)
    marked = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control"):
        client.messages.create(model="claude-x", max_tokens=10, system=marked,
                               messages=[{"role": "user", "content": "hi"}])


# ----------------------------------------------------------------- warm-up
@pytest.mark.parametrize("warmup", [True, False], ids=["warm-up", "no-warm-up"])
def test_warm_up_lets_the_first_worker_write_the_cache_before_the_others_start(warmup, emu):
    emu.first_byte_delay = 0.3                   # the model reads the prompt before it answers
    engine = mac.ConductorEngine(flat(4), settings=settings("anthropic", cache_warmup=warmup))
    assert run(engine) == "completed"
    bill = emu.billed[WORKER["anthropic"]]
    prefix = bill["cache_write_tokens"] // (1 if warmup else 4)
    if warmup:                                   # one write, three reads
        assert bill.get("cache_read_tokens") == 3 * prefix > 0
    else:                                        # all four start together and all miss
        assert "cache_read_tokens" not in bill and bill["cache_write_tokens"] == 4 * prefix
    starts = sorted(t.started_at for t in engine.track.tickets)
    assert starts[-1] - starts[0] < 0.05         # the engine released them together; the wait is in the worker


def test_warm_up_passes_to_the_next_worker_when_the_first_one_fails(emu):
    emu.first_byte_delay = 0.2
    emu.inject("400", count=1)                  # the first worker's call fails before any byte
    engine = mac.ConductorEngine(flat(3), settings=settings("anthropic", max_retries=0))
    assert run(engine) == "blocked"
    bill = emu.billed[WORKER["anthropic"]]
    assert bill["requests"] == 2 and bill.get("cache_read_tokens", 0) > 0   # the second wrote, the third read


def test_abort_releases_workers_waiting_for_the_warm_up(emu):
    emu.inject("hang", count=1)                 # the cache writer never gets a response
    track = flat(3)

    async def main():
        engine = mac.ConductorEngine(track, settings=settings("anthropic"))
        running = asyncio.create_task(engine.run(CONTEXT))
        await asyncio.get_running_loop().run_in_executor(None, emu.wait_for_requests, 1)
        await asyncio.sleep(0.2)                # the other two are waiting for the cache
        assert len(emu.requests) == 1
        engine.abort()
        return await asyncio.wait_for(running, 5)
    assert asyncio.run(main()) == "aborted"
    assert len(emu.requests) == 1 and {t.status for t in track.tickets} == {"todo"}


# ----------------------------------------------------------------- Gemini explicit caches
def persisted_engine(project_dir, track: Track, run_settings: RunSettings) -> mac.ConductorEngine:
    """An engine made by a saving `Pipeline` (it records explicit caches in the project)."""
    pipeline = Pipeline(project_dir, run_settings)
    pipeline.event_queue.bind(asyncio.get_running_loop())
    return pipeline.engine_for(track)


async def test_gemini_explicit_cache_is_created_once_used_by_every_worker_and_deleted(emu, tmp_path):
    engine = persisted_engine(tmp_path, diamond(), settings("gemini"))
    record = prompt_cache.CacheRecord(tmp_path)
    seen_in_record: list = []
    emu.responder = lambda p, m, body: (seen_in_record.append(record.entries()), None)[1]
    assert await engine.run(CONTEXT) == "completed"
    creates = [r for r in emu.requests if r.path.endswith("/cachedContents")]
    deletes = [r for r in emu.requests if "cachedContents/" in r.path]
    assert len(creates) == 1 and len(deletes) == 1
    name = prompt_cache_name(emu)
    assert deletes[0].path.endswith(name)
    workers = worker_requests(emu, "gemini")
    assert len(workers) == 4 and {r.body.get("cachedContent") for r in workers} == {name}
    assert all("systemInstruction" not in r.body and "tools" not in r.body for r in workers)
    assert all([e.name for e in entries] == [name] and entries[0].pid == os.getpid() for entries in seen_in_record)
    assert record.entries() == [] and emu.caches.listed() == []        # no paid storage left behind


@pytest.mark.parametrize("ending", ["abort", "failure"])
async def test_gemini_explicit_cache_is_deleted_after_an_abort_or_a_failure(ending, emu, tmp_path):
    if ending == "abort":
        emu.inject("hang", match=lambda p, m, body: bool(body.get("cachedContent")))
    else:
        emu.inject("400", count=10, match=lambda p, m, body: bool(body.get("cachedContent")))
    engine = persisted_engine(tmp_path, flat(4), settings("gemini", max_retries=0))
    running = asyncio.create_task(engine.run(CONTEXT))
    if ending == "abort":
        await asyncio.get_running_loop().run_in_executor(None, emu.wait_for_requests, 2)
        engine.abort()
    assert await asyncio.wait_for(running, 20) == ("aborted" if ending == "abort" else "blocked")
    assert [c.deleted is not None for c in emu.caches.explicit_caches()] == [True]
    assert prompt_cache.CacheRecord(tmp_path).entries() == []
    storage = engine.tier_usage["Tier 3"]["models"][WORKER["gemini"]]["cache_storage_token_s"]
    assert 0 < storage <= emu.billed[WORKER["gemini"]]["storage_token_s"] * 1.5 + 10_000


def test_no_explicit_cache_when_too_few_tickets_would_read_it(emu):
    engine = mac.ConductorEngine(flat(2), settings=settings("gemini"))
    assert run(engine) == "completed"
    assert emu.caches.explicit_caches() == []
    bill = emu.billed[WORKER["gemini"]]      # the implicit cache still served the second worker
    assert bill.get("cache_read_tokens", 0) > 0 and "cache_write_tokens" not in bill


def test_a_cache_that_vanished_mid_run_falls_back_to_sending_the_prefix(emu):
    deleted: list[str] = []

    def delete_behind_its_back(provider, model, body):
        live = emu.caches.listed()
        if live and not deleted:               # the first worker's call deletes the track's cache
            deleted.append(live[0].name)
            emu.caches.delete(live[0].name)
        return None
    emu.responder = delete_behind_its_back
    engine = mac.ConductorEngine(flat(4), settings=settings("gemini", max_retries=0))
    assert run(engine) == "completed"
    workers = worker_requests(emu, "gemini")
    assert deleted and any(r.body.get("cachedContent") == deleted[0] for r in workers)
    assert any(r.body.get("systemInstruction") for r in workers)        # sent again, uncached


def test_start_up_deletes_only_this_apps_caches_whose_owner_is_gone(emu, tmp_path):
    from providers.gemini import GeminiAdapter
    adapter = GeminiAdapter(base_url=emu.base_url)
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
    orphan = adapter.create_cache("gemini-2.5-flash", CONTEXT, [], 600, "mma-desk:old").name
    busy = adapter.create_cache("gemini-2.5-flash", CONTEXT, [], 600, "mma-desk:busy").name
    foreign = adapter.create_cache("gemini-2.5-flash", CONTEXT, [], 600, "someone else's").name
    record = prompt_cache.CacheRecord(tmp_path)
    now = __import__("time").time()
    record.add(prompt_cache.CachedEntry(orphan, "gemini", "gemini-2.5-flash", "t1", int(dead_pid), now, now + 600))
    record.add(prompt_cache.CachedEntry(busy, "gemini", "gemini-2.5-flash", "t2", os.getppid(), now, now + 600))
    record.add(prompt_cache.CachedEntry("cachedContents/expired", "gemini", "m", "t3", int(dead_pid), now - 900, now - 300))
    assert prompt_cache.sweep_stale(tmp_path) == [orphan]
    assert {c.name for c in emu.caches.listed()} == {busy, foreign}
    assert [e.name for e in record.entries()] == [busy]            # the expired one is forgotten
    assert not any(r.path.endswith("cachedContents/expired") for r in emu.requests)   # without a call


# ----------------------------------------------------------------- the bill
@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
def test_the_usage_split_equals_the_emulators_bill(provider, emu, tmp_path):
    files = project_files(tmp_path)
    emu.script(provider, *[Reply(tool_calls=[{"name": "list_directory", "args": {"path": "."}}])] * 1)
    engine = mac.ConductorEngine(diamond(files), settings=settings(provider, tools_enabled=True),
                                 base_dir=str(tmp_path))
    assert run(engine) == "completed"
    bill = emu.billed[WORKER[provider]]
    row = engine.tier_usage.snapshot()["Tier 3"]["models"][WORKER[provider]]
    assert (row["input"], row["output"]) == (bill["input_tokens"], bill["output_tokens"])
    assert row.get("cache_read", 0) == bill.get("cache_read_tokens", 0) > 0
    assert row.get("cache_write", 0) == bill.get("cache_write_tokens", 0) > 0
    if provider == "gemini":                 # storage: time-based, measured on either side of a call
        assert row["cache_storage_token_s"] == pytest.approx(bill["storage_token_s"], rel=0.5, abs=20_000)
    # the tickets' own records add up to the workers' share of it
    assert sum(t.received["input"] for t in engine.track.tickets) == sum(
        t.usage.input for t in engine.track.tickets)


# ----------------------------------------------------------------- Tiers 1-2 and the chat
async def test_the_chat_and_tiers_1_and_2_share_the_context_prefix(emu, tmp_path):
    import ai_client
    md = CONTEXT + "\n## Discussion\n\n**user**:\nkeep it small\n"
    pipeline = Pipeline(tmp_path, RunSettings.for_provider("anthropic", auto_queue=True), persist=False)
    pipeline.event_queue.bind(asyncio.get_running_loop())
    chat = ai_client.Session("anthropic", "claude-sonnet-4-6")          # the chat's default model
    await asyncio.to_thread(chat.send, md, "what does helper_3 do?", system_prompt="You are the chat.")
    [track] = await pipeline.plan("Add a flag", md)
    await pipeline.accept_track(track)
    chat_req, tier1, tier2 = [r.body for r in emu.requests_for("anthropic")]
    blocks = [strip_marks(body["system"][0]) for body in (chat_req, tier1, tier2)]
    assert blocks[0] == blocks[1] == blocks[2] and "helper_299" in blocks[0]["text"]
    assert all(body["system"][0]["cache_control"] == {"type": "ephemeral"} for body in (chat_req, tier1, tier2))
    # Tier 2 runs on the chat's model: it read the context the chat wrote
    tier2_usage = pipeline.engines[track.id].tier_usage["Tier 2"]
    assert tier2_usage.get("cache_read", 0) >= len(md) // 4 - 10


# ----------------------------------------------------------------- the offline mock
def test_the_mock_simulates_an_implicit_prefix_cache():
    from providers.base import ChatRequest, PromptCacheUse
    from providers.mock import MockAdapter
    system = "You are Tier 3 (Worker). " + "context line\n" * 600
    mock = MockAdapter(chunk_delay=0)

    def ask(cache):
        return mock.generate(ChatRequest("mock-cache-test", system, [{"role": "user", "content": "<TICKET>x</TICKET>"}],
                                         cache=cache)).usage
    assert ask(None).cache_read_tokens == 0                  # caching off: nothing cached, nothing recorded
    assert ask(PromptCacheUse()).cache_read_tokens == 0      # the first one writes
    second = ask(PromptCacheUse())
    assert second.cache_read_tokens == (len(system) + 3) // 4 and second.input_tokens > second.cache_read_tokens


def test_what_a_worker_received_survives_the_state_file():
    from models import Ticket as T
    ticket = T("T1", "x", received={"prefix_tokens": 10, "files": [{"path": "a.py", "tokens": 3}],
                                    "cache_read": 10, "input": 15})
    assert T.from_dict(json.loads(json.dumps(ticket.to_dict()))).received == ticket.received
    with pytest.raises(ValueError, match="'received' must be dict"):
        T.from_dict({"id": "T2", "description": "y", "received": ["not", "a", "dict"]})


def test_a_ledgers_cache_split_adds_up_to_the_parent_and_survives_a_resume():
    from models import TierUsage
    from providers.base import Usage
    session = TierUsage()
    track = TierUsage(parent=session)
    track.add_usage("Tier 3", Usage(1000, 50, cache_read_tokens=800, cache_write_tokens=100), "m")
    track.add_usage("Tier 3", Usage(0, 0, cache_storage_token_s=3600), "m")
    row = {"input": 1000, "output": 50, "cache_read": 800, "cache_write": 100, "cache_storage_token_s": 3600}
    assert track.snapshot()["Tier 3"]["models"]["m"] == row == session.snapshot()["Tier 3"]["models"]["m"]
    resumed = TierUsage(parent=TierUsage())
    resumed.restore(json.loads(json.dumps(track.snapshot())))
    assert resumed.snapshot()["Tier 3"]["models"]["m"] == row
    assert resumed.parent is not None and resumed.parent.snapshot() == {}        # spent earlier: not added again


@pytest.mark.parametrize("provider", ["mock", "gemini"])
def test_a_context_that_mentions_the_tiers_does_not_confuse_the_offline_models(provider, emu):
    """The curated context now comes before the role's instructions; a project whose files talk
    about "Tier 1 (Orchestrator)" must still be answered as the tier that asks."""
    noisy = "Our docs: Tier 1 (Orchestrator) plans; Tier 2 (Tech Lead) splits; Tier 4 (QA) checks.\n" * 3
    engine = mac.ConductorEngine(flat(2), settings=settings(provider) if provider != "mock" else
                                 RunSettings.for_provider("mock", auto_queue=True, diagnose_failures=False))
    assert run(engine, noisy) == "completed"
    worker_reply = "### Worker report" if provider == "mock" else "Working on:"     # each one's Tier 3 answer
    assert all(t.result.startswith(worker_reply) for t in engine.track.tickets), [t.result for t in engine.track.tickets]
