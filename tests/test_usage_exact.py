"""Every token a provider reported is booked, per tier and model, and priced at its own model."""
from __future__ import annotations

import asyncio

import pytest

import events
import multi_agent_conductor as mac
from gui import mma_display
from gui.context_state import ContextState
from models import Ticket, Track
from pipeline import Pipeline
from planning import PlanningError
from project import ModelPrice
from run_settings import RunSettings
from tests.wire_emulator import Reply, WireEmulator, default_reply, parse_prompt

LITE, FLASH, PRO = "gemini-2.5-flash-lite", "gemini-2.5-flash", "gemini-2.5-pro"


@pytest.fixture
def emulator(monkeypatch, tmp_path):
    with WireEmulator() as emu:
        monkeypatch.setenv("GEMINI_API_KEY", "AIzaFAKE-usage-test-key-0123456789")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "no-credentials.toml"))
        yield emu


def gemini_settings(**overrides) -> RunSettings:
    models = {"Tier 1": PRO, "Tier 2": FLASH, "Tier 3": [LITE, FLASH, PRO], "Tier 4": LITE}
    base = {"auto_queue": True, "require_spawn_approval": False, "diagnose_failures": False}
    return RunSettings.for_provider("gemini", models, **{**base, **overrides})


async def test_cost_is_priced_per_model_after_an_escalation(emulator):
    def lite_gives_up(provider, model, body):
        if model == LITE and "Tier 3 (Worker)" in parse_prompt(provider, body).system:
            return Reply(text="BLOCKED: this needs a stronger model", usage=(1000, 100))
        return None
    emulator.responder = lite_gives_up
    track = Track("escalate_20260101", "t", tickets=[Ticket("T1", "a hard ticket")])
    engine = mac.ConductorEngine(track, settings=gemini_settings())
    assert await engine.run() == "completed"
    assert track.tickets[0].retry_count == 1
    billed = emulator.billed
    assert set(billed) == {LITE, FLASH}
    tier3 = engine.tier_usage.snapshot()["Tier 3"]
    assert tier3["models"] == {m: {"input": billed[m]["input_tokens"], "output": billed[m]["output_tokens"]}
                               for m in (LITE, FLASH)}
    prices = {LITE: ModelPrice(0.10, 0.40), FLASH: ModelPrice(0.30, 2.50)}
    table = mma_display.usage_table(engine.tier_usage.snapshot(), prices)
    rows = {(r.tier, r.model): r for r in table.rows}
    expected = {m: prices[m].cost(billed[m]["input_tokens"], billed[m]["output_tokens"]) for m in (LITE, FLASH)}
    assert rows[("Tier 3", LITE)].cost == pytest.approx(expected[LITE])
    assert rows[("Tier 3", FLASH)].cost == pytest.approx(expected[FLASH])
    assert table.total_cost == pytest.approx(expected[LITE] + expected[FLASH])
    # the old view priced the whole tier at the last model: more than what was billed
    whole_tier_at_flash = prices[FLASH].cost(tier3["input"], tier3["output"])
    assert whole_tier_at_flash > table.total_cost


async def test_usage_after_a_failed_second_tool_round_equals_what_was_billed(emulator, tmp_path):
    emulator.script("gemini", Reply(tool_calls=[{"name": "list_directory", "args": {"path": "."}}], usage=(300, 20)))
    emulator.inject("400", match=lambda p, m, body: parse_prompt(p, body).last_is_tool_result)
    track = Track("toolfail_20260101", "t", tickets=[Ticket("T1", "look around, then fail")])
    engine = mac.ConductorEngine(track, settings=gemini_settings(max_retries=0, tools_enabled=True),
                                 base_dir=str(tmp_path))
    assert await engine.run() == "blocked"
    assert emulator.billed_total() == (300, 20)
    usage = engine.tier_usage["Tier 3"]
    assert (usage["input"], usage["output"]) == (300, 20)
    assert (track.tickets[0].usage.input, track.tickets[0].usage.output) == (300, 20)


async def test_an_aborted_workers_billed_rounds_are_booked(emulator, tmp_path):
    emulator.script("gemini", Reply(tool_calls=[{"name": "list_directory", "args": {"path": "."}}], usage=(250, 15)))
    emulator.inject("hang", match=lambda p, m, body: parse_prompt(p, body).last_is_tool_result)
    q = events.AsyncEventQueue()
    q.bind(asyncio.get_running_loop())
    track = Track("abortbill_20260101", "t", tickets=[Ticket("T1", "look around, then hang")])
    engine = mac.ConductorEngine(track, q, settings=gemini_settings(tools_enabled=True), base_dir=str(tmp_path))
    run = asyncio.create_task(engine.run())
    await asyncio.get_running_loop().run_in_executor(None, emulator.wait_for_requests, 2)
    engine.abort()
    assert await asyncio.wait_for(run, 10) == "aborted"
    usage = engine.tier_usage["Tier 3"]
    assert (usage["input"], usage["output"]) == emulator.billed_total() == (250, 15)


async def test_a_planning_call_that_failed_after_its_repair_round_is_booked(emulator, tmp_path):
    emulator.script("gemini", Reply(text="no JSON here", usage=(80, 5)), Reply(text="still none", usage=(90, 6)))
    pipeline = Pipeline(tmp_path, gemini_settings())
    with pytest.raises(PlanningError, match="still not usable"):
        await pipeline.plan("An epic the model cannot plan")
    tier1 = pipeline.tier_usage["Tier 1"]
    assert (tier1["input"], tier1["output"]) == emulator.billed_total() == (170, 11)
    assert tier1["models"][PRO] == {"input": 170, "output": 11}


def test_chat_calls_are_billed_and_appear_in_usage_and_cost(emulator, tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    emulator.responder = lambda p, m, body: Reply(text="a chat answer", usage=(120, 30)) \
        if "Tier" not in parse_prompt(p, body).system else default_reply(p, m, body)
    state = ContextState(root, provider="gemini")
    try:
        for text in ("first question", "second question"):
            state.ai_input = text
            assert state.send_message() and state.wait_idle(10)
        assert state.chat_usage_version == 2
        bucket = state.chat_usage.snapshot()[mma_display.CHAT_USAGE]
        assert (bucket["input"], bucket["output"]) == emulator.billed_total() == (240, 60)
        model = state.current_model
        table = mma_display.usage_table({mma_display.CHAT_USAGE: bucket}, {model: ModelPrice(1.0, 2.0)})
        chat = [r for r in table.rows if r.tier == mma_display.CHAT_USAGE]
        assert [(r.model, r.input, r.output) for r in chat] == [(model, 240, 60)]
        assert chat[0].cost == pytest.approx((240 * 1.0 + 60 * 2.0) / 1_000_000)
    finally:
        state.close()
