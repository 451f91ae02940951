"""Faults, load and bad input with nothing lost (issue: reliability and security)."""
import asyncio
import json
import logging
import os
import random
import threading
import time

import events
import multi_agent_conductor as mac
from models import Ticket, Track
from run_settings import RunSettings
from tests.wire_emulator import FaultPlan, WireEmulator

log = logging.getLogger(__name__)

FULL = os.environ.get("MMA_RELIABILITY_FULL") == "1"


def random_track(n: int, seed: int) -> Track:
    rng = random.Random(seed)
    tickets = []
    for i in range(n):
        deps = sorted({f"T{j}" for j in rng.sample(range(i), k=min(i, rng.randint(0, 2)))}) if i else []
        tickets.append(Ticket(f"T{i}", f"ticket {i}", depends_on=deps))
    return Track("load_20261124", "load", tickets=tickets)


def test_200_tickets_8_workers_with_provider_faults_complete_and_bill_exactly(monkeypatch, tmp_path):
    n = 1000 if FULL else 200
    plan = FaultPlan(rate_429=0.10, rate_500=0.05, rate_truncate=0.05, seed=7, retry_after="1")
    with WireEmulator(fault_plan=plan) as emu:
        monkeypatch.setenv("GEMINI_API_KEY", "AIzaFAKE-reliability-key-123456")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        import ai_client
        ai_client.configure(session_log_dir=tmp_path / "logs")
        track = random_track(n, seed=3)
        q = events.AsyncEventQueue()
        engine = mac.ConductorEngine(track, q, settings=RunSettings.for_provider("gemini", auto_queue=True,
                                                                                  max_workers=8))
        t0 = time.monotonic()
        status = asyncio.run(engine.run())
        elapsed = time.monotonic() - t0
        faults = [r.fault for r in emu.requests if r.fault]
        billed_in, billed_out = emu.billed_total()
    assert status == "completed", [(t.id, t.blocked_reason) for t in track.tickets if t.status != "completed"]
    kinds = {k: faults.count(k) for k in set(faults)}
    assert kinds.get("429", 0) > 5 and kinds.get("500", 0) > 2 and kinds.get("truncate", 0) > 2, kinds
    usage = engine.tier_usage
    assert usage["Tier 3"]["input"] + usage["Tier 4"]["input"] == billed_in
    assert usage["Tier 3"]["output"] + usage["Tier 4"]["output"] == billed_out
    retries = 0
    for f in (tmp_path / "logs").glob("*.jsonl"):
        retries += sum(1 for line in f.read_text().splitlines() if json.loads(line)["kind"] == "retry")
    assert retries >= len(faults) - 3 * sum(t.retry_count for t in track.tickets)   # every fault was retried or escalated
    assert all(t.retry_count <= 2 for t in track.tickets)                            # bounded
    log.info("%d tickets, %d faults %s, %d retries, %.1fs", n, len(faults), kinds, retries, elapsed)


def test_one_million_events_from_16_threads_lose_nothing():
    async def main():
        q = events.AsyncEventQueue()
        q.bind(asyncio.get_running_loop())
        producers, per = 16, 62_500
        gate = threading.Barrier(producers)

        def produce(pid):
            gate.wait()
            for i in range(per):
                q.put_threadsafe("ev", (pid, i))
        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        for t in threads:
            t.start()
        counts = [0] * producers
        for _ in range(producers * per):
            _name, (pid, i) = await q.get()
            assert i == counts[pid]
            counts[pid] += 1
        for t in threads:
            t.join()
        return counts
    counts = asyncio.run(asyncio.wait_for(main(), 120))
    assert sum(counts) == 1_000_000 and len(set(counts)) == 1
