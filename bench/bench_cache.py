"""Prompt-cache bench: what a track's shared context costs with caching off and on, per provider.

    python bench/bench_cache.py [--quick]

A 16-ticket track (4 levels of 4 tickets; each level waits for the one before, so a level
releases 4 tickets at once) with a ~40,000-token curated context (the project's files, built by
`context_builder.project_context` as `mma-desk run` builds it), run by the real
`ConductorEngine` through the real Gemini and Anthropic SDKs against the loopback wire emulator
(`tests/wire_emulator.py`), whose caches bill deterministically (`tests/wire_cache.py`).  The
emulator holds every reply back `FIRST_BYTE_S` after reading the prompt, as a model does before
its first byte, so workers sent in the same instant all miss the cache.

For each provider, in one run: caching off (the baseline: the app marks nothing and the
emulated provider caches nothing), caching on with warm-up (the default) and caching on
without warm-up; for Gemini also the app's caching off with the provider's implicit cache on
(what Gemini does by itself).  Each mode runs `REPS` times, interleaved, after one discarded
run that loads the SDK; costs are deterministic, makespans are medians.  Input cost is the emulator's bill priced at the
catalog's prices: uncached input at the input price, cache reads at the cached price, cache
writes at the write price (Anthropic 1.25x; a Gemini explicit cache's tokens once at the input
price) and Gemini explicit cache storage per hour.  The app's own ledger is checked against
that bill.  Makespan is the engine's run time; the warm-up's cost in time is the makespan
with warm-up minus without.

Targets: input cost with caching >= 60 % lower than off, per provider; warm-up adds at most
one first-byte wait (the first level's; later levels find the cache warm) plus `NOISE_S`, and
costs less than going without it; the app's ledger equals the emulator's bill and no explicit
cache is left behind.
"""
from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import multi_agent_conductor as mac  # noqa: E402
import project  # noqa: E402
from bench import common  # noqa: E402
from context_builder import project_context  # noqa: E402
from models import Ticket, Track  # noqa: E402
from providers import catalog  # noqa: E402
from run_settings import RunSettings  # noqa: E402
from tests.wire_emulator import WireEmulator  # noqa: E402

log = logging.getLogger("bench_cache")

PROVIDERS = {"gemini": ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "AIzaBENCH-cache-0123456789"),
             "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "sk-ant-BENCH-cache-0123456789")}
WIDTH = 4
FIRST_BYTE_S = 0.4
SAVING_TARGET = 0.60
NOISE_S = 0.25                 # allowance for a shared, noisy machine in the makespan target
REPS = 3
# mode -> (RunSettings knobs, whether the emulated provider caches implicitly)
MODES = {"off": ({"prompt_cache": False}, False),
         "on": ({"prompt_cache": True, "cache_warmup": True}, True),
         "on_no_warmup": ({"prompt_cache": True, "cache_warmup": False}, True),
         "implicit_only": ({"prompt_cache": False}, True)}


def make_project(root: Path, tokens: int) -> str:
    """Source files adding up to about `tokens` tokens of curated context; returns the context."""
    src = root / "src"
    src.mkdir(parents=True)
    files, chars, i = [], 0, 0
    while chars < tokens * 4:
        text = "".join(f"def handler_{i}_{j}(request, store):\n    \"\"\"Handle case {j} of module {i}.\"\"\"\n"
                       f"    return store.get(request.key, {j}) + len('{i}-{j}')\n\n" for j in range(40))
        (src / f"module_{i:02d}.py").write_text(text, encoding="utf-8")
        files.append(project.FileEntry(f"src/module_{i:02d}.py", "full"))
        chars += len(text)
        i += 1
    cfg = project.load_project(root)
    cfg.files = files
    project.save_project(cfg)
    bundle = project_context(project.load_project(root))
    return bundle.markdown


def make_track(tickets: int) -> Track:
    out, previous = [], []
    for n in range(tickets):
        level = n // WIDTH
        out.append(Ticket(f"L{level}T{n % WIDTH}", f"Change {n}: update handler group {n}", depends_on=list(previous)))
        if n % WIDTH == WIDTH - 1:
            previous = [t.id for t in out[-WIDTH:]]
    return Track("bench_cache_20260101", "Shared context bench", "Sixteen changes over one code base.", tickets=out)


def input_cost(bill: dict, model: str) -> float:
    """USD of the billed input at the catalog's prices (see the module docstring)."""
    price = catalog.price(model)
    assert price is not None, model
    read, write = bill.get("cache_read_tokens", 0), bill.get("cache_write_tokens", 0)
    uncached = bill["input_tokens"] - read - write
    write_price = price.cache_write if price.cache_write is not None else price.input
    storage = bill.get("storage_token_s", 0) / 3600 * price.cache_storage
    return (uncached * price.input + read * price.cached_input + write * write_price + storage) / 1_000_000


def run_once(emu: WireEmulator, provider: str, project_dir: Path, md: str, tickets: int, knobs: dict,
             implicit: bool) -> dict:
    emu.reset()
    emu.caches.implicit = implicit
    settings = RunSettings.for_provider(provider, auto_queue=True, max_workers=WIDTH, diagnose_failures=False,
                                        tools_enabled=True, **knobs)
    model = settings.models.model_for("Tier 3")
    track = make_track(tickets)
    engine = mac.ConductorEngine(track, settings=settings, base_dir=str(project_dir))
    start = time.perf_counter()
    status = asyncio.run(engine.run(md))
    makespan = time.perf_counter() - start
    bill = emu.billed.get(model, {"input_tokens": 0, "output_tokens": 0, "requests": 0})
    booked = engine.tier_usage.snapshot()["Tier 3"]["models"].get(model, {})
    return {"status": status, "model": model, "makespan_s": round(makespan, 3), "bill": bill,
            "input_cost_usd": input_cost(bill, model),
            "ledger_matches_bill": all(booked.get(k, 0) == bill.get(b, 0) for k, b in (
                ("input", "input_tokens"), ("output", "output_tokens"), ("cache_read", "cache_read_tokens"),
                ("cache_write", "cache_write_tokens"))),
            "explicit_caches": len(emu.caches.explicit_caches()),
            "caches_left": len(emu.caches.listed()),
            "prefix_tokens": engine.prompt_cache.prefix_tokens}


def main(argv: list[str] | None = None) -> int:
    opts = common.arg_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.setup_logging(opts.verbose)
    tickets, context_tokens, first_byte = (8, 10_000, 0.1) if opts.quick else (16, 40_000, FIRST_BYTE_S)
    reps = 1 if opts.quick else REPS
    levels = tickets // WIDTH
    metrics: dict = {"tickets": tickets, "width": WIDTH, "levels": levels, "first_byte_s": first_byte,
                     "providers": {}}
    baseline: dict = {}
    targets: list[dict] = []
    notes = ["input cost = the emulator's bill at the catalog's prices (cache reads, writes and storage "
             "at theirs); output tokens are the same in every mode and left out",
             "off = nothing cached anywhere; gemini implicit_only = the app's caching off, Gemini's own "
             "implicit cache on (informational)"]
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp, WireEmulator(first_byte_delay=first_byte) as emu:
        root = Path(tmp)
        os.environ["MMA_CREDENTIALS_FILE"] = str(root / "no-credentials.toml")
        os.environ.pop("MMA_PROVIDER", None)
        for key_var, url_var, key in PROVIDERS.values():
            os.environ[key_var] = key
            os.environ[url_var] = emu.base_url
        md = make_project(root / "project", context_tokens)
        metrics["context_tokens_estimated"] = (len(md) + 3) // 4
        for provider in PROVIDERS:
            modes = {m: v for m, v in MODES.items() if m != "implicit_only" or provider == "gemini"}
            run_once(emu, provider, root / "project", md, WIDTH, *MODES["off"])      # loads the SDK; discarded
            every: dict[str, list[dict]] = {mode: [] for mode in modes}
            for _rep in range(reps):
                for mode, (knobs, implicit) in modes.items():
                    every[mode].append(run_once(emu, provider, root / "project", md, tickets, knobs, implicit))
            runs = {mode: {**results[0], "makespan_s": round(statistics.median(r["makespan_s"] for r in results), 3),
                           "makespans_s": [r["makespan_s"] for r in results],
                           "deterministic_cost": len({round(r["input_cost_usd"], 9) for r in results}) == 1}
                    for mode, results in every.items()}
            off, on, cold = runs["off"], runs["on"], runs["on_no_warmup"]
            saving = 1 - on["input_cost_usd"] / off["input_cost_usd"] if off["input_cost_usd"] else 0.0
            added = on["makespan_s"] - cold["makespan_s"]
            metrics["providers"][provider] = {
                "model": on["model"], "runs": runs, "saving_pct": round(100 * saving, 1),
                "warmup_added_makespan_s": round(added, 3),
                "warmup_saved_usd": round(cold["input_cost_usd"] - on["input_cost_usd"], 6),
                "all_completed": all(r["status"] == "completed" for rs in every.values() for r in rs),
                "ledger_matches_bill": all(r["ledger_matches_bill"] for rs in every.values() for r in rs),
                "caches_left": sum(r["caches_left"] for rs in every.values() for r in rs)}
            if "implicit_only" in runs:
                metrics["providers"][provider]["implicit_only_saving_pct"] = round(
                    100 * (1 - runs["implicit_only"]["input_cost_usd"] / off["input_cost_usd"]), 1)
            baseline[provider] = {"input_cost_off_usd": round(off["input_cost_usd"], 6),
                                  "makespan_no_warmup_s": cold["makespan_s"]}
            targets.append(common.target(
                f"{provider}: input cost with caching vs off ({on['model']})", f">= {100 * SAVING_TARGET:.0f} % lower",
                f"{100 * saving:.1f} % lower (${on['input_cost_usd']:.4f} vs ${off['input_cost_usd']:.4f})",
                saving >= SAVING_TARGET and on["status"] == "completed", baseline=f"${off['input_cost_usd']:.4f} off"))
            # only the first level finds the cache cold: the later ones start within its TTL
            targets.append(common.target(
                f"{provider}: warm-up's added makespan and saving",
                f"<= 1 first-byte wait ({first_byte:.2f} s) + {NOISE_S:.2f} s; saves money",
                f"{added:+.2f} s; saves ${cold['input_cost_usd'] - on['input_cost_usd']:.4f}",
                added <= first_byte + NOISE_S and on["input_cost_usd"] < cold["input_cost_usd"],
                baseline=f"{cold['makespan_s']:.2f} s without warm-up"))
            targets.append(common.target(
                f"{provider}: the app's ledger equals the emulator's bill; no cache left", "equal, 0 left",
                f"{'equal' if metrics['providers'][provider]['ledger_matches_bill'] else 'DIFFERENT'}, "
                f"{metrics['providers'][provider]['caches_left']} left",
                metrics["providers"][provider]["ledger_matches_bill"] and metrics["providers"][provider]["caches_left"] == 0))
            log.info("%s: %s", provider, metrics["providers"][provider])
    path = common.write_result("cache", quick=opts.quick, metrics=metrics, baseline=baseline, targets=targets,
                               notes=notes, out_dir=opts.out_dir)
    common.print_result(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
