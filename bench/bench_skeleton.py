"""Benchmark skeleton views over the running interpreter's standard library.

    python bench/bench_skeleton.py [--quick]

Corpus: every .py file under sysconfig's "stdlib" path, excluding directories named
test / tests / idle_test (test data includes deliberately broken files) and site-packages
(third-party code, not the stdlib).  --quick takes an evenly spaced sample of 50 files.

Metrics (best of N passes, so one slow pass from a noisy neighbour does not decide):
  cold_skeleton_mb_s     new FileCache per pass: stat + read + decode + parse + skeleton
  cold_skeleton_no_elision_mb_s  the same with ASTParser(elide_bodies=False), for comparison
  ast_parse_mb_s         ast.parse over the same sources, already in memory
  warm_ms_per_100k_lines repeat pass over the unchanged tree: the cache-hit path incl. stat
  token_reduction_pct    1 - tokens(skeleton) / tokens(full), with file_cache.estimate_tokens
Writes bench/results/skeleton.json and prints one line per metric.
"""
from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import file_cache  # noqa: E402  (needs the repo root on sys.path first)

log = logging.getLogger("bench_skeleton")
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
MB = 1024 * 1024


def stdlib_files(quick: bool) -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py")
                   if not SKIP_DIRS.intersection(p.relative_to(stdlib).parts[:-1]))
    if quick and len(files) > 50:
        step = len(files) / 50
        files = [files[int(i * step)] for i in range(50)]
    return files


def best_of(passes: int, run) -> float:
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true", help="~50 files instead of the whole stdlib")
    opts = args.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    files = stdlib_files(opts.quick)
    sources = [p.read_bytes() for p in files]
    total_bytes = sum(len(s) for s in sources)
    total_lines = sum(s.count(b"\n") for s in sources)
    passes = 5 if opts.quick else 3

    def ast_pass() -> None:
        for src in sources:
            try:
                ast.parse(src)
            except SyntaxError as exc:  # counted as work done; the stdlib has none outside tests
                log.info("ast.parse failed: %s", exc)

    cache_holder: list[file_cache.FileCache] = []

    def cold_pass(elide: bool = True) -> None:
        cache = file_cache.FileCache(file_cache.ASTParser(elide_bodies=elide))
        for path in files:
            cache.get_view(path, "skeleton")
        if elide:
            cache_holder[:] = [cache]

    # Interleave so all variants see the same machine state.
    ast_s = cold_s = exact_s = float("inf")
    for _ in range(passes):
        ast_s = min(ast_s, best_of(1, ast_pass))
        cold_s = min(cold_s, best_of(1, cold_pass))
        exact_s = min(exact_s, best_of(1, lambda: cold_pass(False)))
    cache = cache_holder[0]
    parses_before = cache.stats()["parses"]
    warm_s = best_of(passes * 2, lambda: [cache.get_view(p, "skeleton") for p in files])
    assert cache.stats()["parses"] == parses_before, "warm pass must not parse"

    full_tokens = skel_tokens = invalid = with_errors = 0
    for path in files:
        full = cache.get_view(path, "full").text
        view = cache.get_view(path, "skeleton")
        full_tokens += file_cache.estimate_tokens(full)
        skel_tokens += file_cache.estimate_tokens(view.text)
        with_errors += view.has_errors
        try:
            ast.parse(view.text)
        except SyntaxError as exc:
            invalid += 1
            log.warning("invalid skeleton for %s: %s", path, exc)

    metrics = {
        "files": len(files),
        "megabytes": round(total_bytes / MB, 2),
        "lines": total_lines,
        "cold_skeleton_mb_s": round(total_bytes / MB / cold_s, 2),
        "cold_skeleton_no_elision_mb_s": round(total_bytes / MB / exact_s, 2),
        "ast_parse_mb_s": round(total_bytes / MB / ast_s, 2),
        "warm_ms_per_100k_lines": round(warm_s * 1000 * 100_000 / max(total_lines, 1), 2),
        "token_reduction_pct": round(100 * (1 - skel_tokens / max(full_tokens, 1)), 1),
        "full_tokens": full_tokens,
        "skeleton_tokens": skel_tokens,
        "files_with_syntax_errors": with_errors,
        "invalid_skeletons": invalid,
    }
    targets = {
        "cold_skeleton_at_least_ast_parse": metrics["cold_skeleton_mb_s"] >= metrics["ast_parse_mb_s"],
        "warm_under_50ms_per_100k_lines": metrics["warm_ms_per_100k_lines"] < 50,
        "token_reduction_at_least_70pct": metrics["token_reduction_pct"] >= 70,
        "all_skeletons_valid_python": invalid == 0,
    }
    result = {"name": "skeleton", "quick": opts.quick, "python": sys.version.split()[0],
              "metrics": metrics, "targets": targets}
    out = ROOT / "bench" / "results" / "skeleton.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    for name, value in metrics.items():
        print(f"{name:<36} {value}")
    for name, ok in targets.items():
        print(f"{name:<36} {'PASS' if ok else 'FAIL'}")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
