"""Memory bench: RSS of the GUI state after a 1,000-ticket track and 10 MB of streamed text.

    python bench/bench_memory.py [--quick]

Each phase runs in a fresh child process (this script with --child), so RSS starts clean:
- baseline: the same imports (events, pipeline, multi_agent_conductor, gui.mma_state,
  imgui_bundle, the stub adapters) and nothing else -> RSS.
- load, on the app's path (pipeline.EngineThread loop, AsyncEventQueue, a forwarder identical to
  gui_2.App._process_event_queue, a queue.SimpleQueue inbox drained into gui.mma_state.MMAState on
  the main thread, the app's default stream cap):
  1. a 1,000-ticket track (--quick: 100) through ConductorEngine(auto_queue=True, max_workers=8,
     the `bench_work` stub adapter); every worker streams 10,000 characters in 128-char chunks
     (10 MB in all, one stream per worker) -> RSS;
  2. 10 MB more (--quick: 5 MB) into 4 long streams (over the 1 MB per-stream cap each) -> RSS;
  3. the same again, 6 rounds in all, into the same 4 streams -> RSS and the live Python heap
     (tracemalloc, started after the track) after every round: a capped buffer must not grow.
  gc.collect() before every sample.  Also reported: characters kept per stream and in all,
  the number of streams, log/comms lengths, peak RSS (VmHWM).

Targets: every stream buffer <= the cap; rounds 2-6 into capped streams add < 10% of a round to
the live heap, and the last round < 10% to RSS (RSS also shows allocator retention, so round 2's
growth is reported too); the total is stated (there is no cap on the number of streams).
"""
from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

log = logging.getLogger("bench_memory")

MB = 1024 * 1024
PER_TICKET_CHARS = 10_000
BIG_STREAMS = 4
CHUNK = 128
GROWTH_LIMIT_FRACTION = 0.10
ROUNDS = 6


def _imports():
    """The imports both phases share (so the baseline is the same process minus the work)."""
    import asyncio  # noqa: F401
    import queue  # noqa: F401

    import imgui_bundle  # noqa: F401

    import events  # noqa: F401
    import multi_agent_conductor  # noqa: F401
    import pipeline  # noqa: F401
    from bench import stub_workers
    from gui import mma_state  # noqa: F401
    stub_workers.register()


def _sample(label: str, samples: dict) -> None:
    gc.collect()
    samples[label] = common.rss_bytes()


def child(phase: str, quick: bool, out: Path) -> int:
    _imports()
    samples: dict[str, int] = {}
    _sample("imports", samples)
    if phase == "baseline":
        out.write_text(json.dumps({"rss": samples, "peak_rss": common.peak_rss_bytes()}))
        return 0

    import asyncio
    import queue
    import threading

    import events
    import multi_agent_conductor as mac
    from bench import stub_workers
    from bench.bench_scheduler import layered_dag
    from gui.mma_state import MMAState
    from models import COMPLETED, Ticket, Track
    from pipeline import EngineThread
    from run_settings import RunSettings

    n_tickets = 100 if quick else 1000
    big_total = (5 * MB) if quick else (10 * MB)   # > cap per stream in round 1 either way
    state = MMAState()
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    engine_thread = EngineThread(name="bench-memory-engine")
    aq = events.AsyncEventQueue(loop=engine_thread.loop)

    async def process_event_queue() -> None:              # == gui_2.App._process_event_queue
        while True:
            name, payload = await aq.get()
            inbox.put((name, payload))
    pump = engine_thread.submit(process_event_queue())

    backlog = {"max": 0}

    def drain_until(done) -> None:
        """The GUI thread: apply events (no frame budget here: memory, not latency) until done()."""
        applied = 0
        while True:
            try:
                name, payload = inbox.get(timeout=0.05)
            except queue.Empty:
                if done() and inbox.empty():
                    return
                continue
            state.apply(name, payload)
            applied += 1
            if applied % 500 == 0:      # events queued but not applied yet (engine queue + GUI inbox)
                backlog["max"] = max(backlog["max"], aq.qsize() + inbox.qsize())

    # 1. the track
    specs, _levels = layered_dag(n_tickets, 8, 0.0, seed=3)
    track = Track(id="bench_memory", title="bench memory", tickets=[
        Ticket(id=s.id, description=f"memory ticket [stream_bytes={PER_TICKET_CHARS}]", depends_on=s.deps)
        for s in specs])
    engine = mac.ConductorEngine(track, aq, settings=RunSettings.for_provider(
        stub_workers.WORK_PROVIDER, auto_queue=True, max_workers=8, diagnose_failures=False))
    t0 = time.perf_counter()
    fut = engine_thread.submit(engine.run())
    drain_until(fut.done)
    status = fut.result()
    track_s = time.perf_counter() - t0
    completed = sum(t.status == COMPLETED for t in track.tickets)
    worker_streams = [sid for sid in state.mma_streams if sid.startswith("Tier 3 (Worker)")]
    track_chars = sum(state.mma_streams.length(sid) for sid in worker_streams)
    _sample("after_track", samples)

    # 2./3. 10 MB into 4 long streams, twice, from 4 producer threads through the same path
    def stream_big(round_no: int) -> None:
        per_stream = big_total // BIG_STREAMS
        chunk = ("x" * (CHUNK - 1)) + "\n"
        pending = threading.Semaphore(0)

        def produce(i: int) -> None:
            sid = f"Bench stream {i}"
            for _ in range(per_stream // CHUNK):
                mac._queue_put(aq, engine_thread.loop, events.MMA_STREAM, {"stream_id": sid, "text": chunk})
            pending.release()
        threads = [threading.Thread(target=produce, args=(i,), daemon=True) for i in range(BIG_STREAMS)]
        for t in threads:
            t.start()
        finished = [0]

        def done() -> bool:
            while pending.acquire(blocking=False):
                finished[0] += 1
            return finished[0] == BIG_STREAMS and aq.empty()
        drain_until(done)
        for t in threads:
            t.join(10)
    import tracemalloc
    tracemalloc.start()
    live: dict[str, int] = {}
    backlogs: dict[str, int] = {"track": backlog["max"]}
    for r in range(1, ROUNDS + 1):
        backlog["max"] = 0
        stream_big(r)
        backlogs[f"round{r}"] = backlog["max"]
        _sample(f"after_round{r}", samples)
        live[f"after_round{r}"] = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    pump.cancel()
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0.01), engine_thread.loop).result(5)
    engine_thread.stop()
    store = state.mma_streams
    big = [sid for sid in store if sid.startswith("Bench stream")]
    res = {
        "rss": samples, "peak_rss": common.peak_rss_bytes(),
        "tickets": n_tickets, "completed": completed, "engine_status": status, "track_s": round(track_s, 2),
        "worker_streams": len(worker_streams), "worker_stream_chars": track_chars,
        "worker_chars_expected": n_tickets * PER_TICKET_CHARS,
        "big_stream_chars": {sid: store.length(sid) for sid in big},
        "big_stream_dropped": {sid: store.dropped.get(sid, 0) for sid in big},
        "big_round_bytes": big_total, "rounds": ROUNDS, "live_python_bytes": live,
        "max_backlog_events": backlogs,
        "stream_cap": store.cap_chars, "streams": len(store),
        "all_streams_chars": sum(store.length(sid) for sid in store),
        "max_stream_chars": max((store.length(sid) for sid in store), default=0),
        "logs": len(state.logs), "comms": len(state.comms), "errors": len(state.errors),
        "events_applied": state.events_applied,
        "state_updates": state.event_counts.get(events.MMA_STATE_UPDATE, 0),
        "ticket_result_chars_in_engine": sum(len(t.result) for t in track.tickets),
    }
    out.write_text(json.dumps(res))
    return 0


def run_child(phase: str, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [common.python_exe(), str(Path(__file__).resolve()), "--child", phase, "--child-out", str(out)]
        if quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"memory bench child '{phase}' failed (exit {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("baseline", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    common.setup_logging(opts.verbose)
    if opts.child:
        logging.getLogger().setLevel(logging.WARNING)
        return child(opts.child, opts.quick, opts.child_out)

    base = run_child("baseline", opts.quick)
    load = run_child("load", opts.quick)
    b_rss = base["rss"]["imports"]
    rss = load["rss"]
    live = load["live_python_bytes"]
    rounds = load["rounds"]
    round_mb = load["big_round_bytes"] / MB
    mb = lambda v: round(v / MB, 1)  # noqa: E731
    first, last, prev = "after_round1", f"after_round{rounds}", f"after_round{rounds - 1}"
    growth_2nd = rss["after_round2"] - rss["after_round1"]
    growth_last = rss[last] - rss[prev]
    live_growth = live[last] - live[first]
    growth_limit = GROWTH_LIMIT_FRACTION * load["big_round_bytes"]
    cap_ok = load["max_stream_chars"] <= load["stream_cap"]
    bounded = cap_ok and live_growth < growth_limit and growth_last < growth_limit
    complete_ok = (load["completed"] == load["tickets"] and load["engine_status"] == "completed"
                   and load["worker_stream_chars"] == load["worker_chars_expected"])
    metrics = {
        "tickets": load["tickets"], "engine_status": load["engine_status"], "completed": load["completed"],
        "track_wall_s": load["track_s"],
        "rss_mb_imports": mb(rss["imports"]), "rss_mb_after_track": mb(rss["after_track"]),
        "rss_mb_after_streams": [mb(rss[f"after_round{r}"]) for r in range(1, rounds + 1)],
        "stream_round_mb": round(round_mb, 1),
        "peak_rss_mb": mb(load["peak_rss"]),
        "rss_over_baseline_mb_after_track_and_first_round": mb(rss[first] - b_rss),
        "rss_growth_mb_round2": round(growth_2nd / MB, 2),
        "rss_growth_mb_last_round": round(growth_last / MB, 2),
        "live_python_mb_after_rounds": [round(live[f"after_round{r}"] / MB, 2) for r in range(1, rounds + 1)],
        "max_queue_backlog_events": load["max_backlog_events"],
        "stream_cap_chars": load["stream_cap"], "streams": load["streams"],
        "max_stream_chars": load["max_stream_chars"],
        "kept_stream_text_mb": round(load["all_streams_chars"] / MB, 2),
        "worker_streams": load["worker_streams"],
        "worker_stream_text_mb": round(load["worker_stream_chars"] / MB, 2),
        "ticket_result_text_mb_in_engine": round(load["ticket_result_chars_in_engine"] / MB, 2),
        "big_stream_chars": load["big_stream_chars"],
        "logs_kept": load["logs"], "comms_kept": load["comms"],
        "events_applied": load["events_applied"], "state_updates_applied": load["state_updates"],
    }
    baseline = {"rss_mb_fresh_imports": mb(b_rss), "peak_rss_mb": mb(base["peak_rss"])}
    targets = [
        common.target("memory: every stream buffer within the cap", f"<= {load['stream_cap']:,} chars",
                      f"max {load['max_stream_chars']:,} chars over {load['streams']} streams", cap_ok,
                      baseline="-"),
        common.target(f"memory: live Python heap, {rounds - 1} more {round_mb:.0f} MB rounds into capped streams",
                      f"growth < {growth_limit / MB:.1f} MB",
                      f"{live_growth / MB:+.2f} MB (tracemalloc, round 1 -> {rounds})", live_growth < growth_limit,
                      baseline=f"{live[first] / MB:.2f} MB live after round 1"),
        common.target(f"memory: RSS growth, last {round_mb:.0f} MB round into capped streams",
                      f"< {growth_limit / MB:.1f} MB (10%)",
                      f"{growth_last / MB:+.2f} MB (round 2: {growth_2nd / MB:+.2f} MB)", growth_last < growth_limit,
                      baseline=f"RSS {mb(rss[first])} MB after round 1"),
        common.target(f"memory: RSS after {load['tickets']:,}-ticket track + {round_mb:.0f} MB, over fresh imports",
                      "bounded and stated",
                      f"+{mb(rss[first] - b_rss)} MB (peak {mb(load['peak_rss'])} MB); "
                      f"{round(load['all_streams_chars'] / MB, 1)} MB of text kept in {load['streams']} streams",
                      bounded, baseline=f"fresh imports {mb(b_rss)} MB"),
        common.target("memory: every ticket completed, every chunk applied", "all",
                      f"{load['completed']}/{load['tickets']} tickets, {load['worker_stream_chars']:,}/"
                      f"{load['worker_chars_expected']:,} chars", complete_ok, baseline="-"),
    ]
    notes = [
        "RSS vs live heap: tracemalloc shows the live Python heap flat across rounds while RSS creeps up; the "
        "difference is the transient event backlog (max_queue_backlog_events: events queued between the "
        "producers and the GUI, unbounded - no backpressure) whose pages the allocator keeps after the drain",
        "the per-stream cap bounds each stream, not the number of streams: every finished worker keeps "
        f"its stream ({load['worker_streams']} worker streams = {round(load['worker_stream_chars'] / MB, 1)} MB here), "
        "so GUI text grows with the number of tickets until something evicts finished streams",
        f"the engine also keeps every ticket's full result ({round(load['ticket_result_chars_in_engine'] / MB, 1)} MB) "
        "and puts it in every mma_state_update snapshot (shared str objects, so no copy in RAM)",
    ]
    path = common.write_result("memory", quick=opts.quick, metrics=metrics, baseline=baseline, targets=targets,
                               notes=notes, out_dir=opts.out_dir, extra={"baseline": base, "load": load})
    common.print_result(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
