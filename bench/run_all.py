"""Run every benchmark, print one table, write bench/results/summary.json.

    python bench/run_all.py [--quick] [--only events,scheduler,...] [--out-dir DIR]

Each bench runs in its own process (`python bench/bench_<name>.py [--quick]`), under one
private Xvfb that this script starts (benches that need a display reuse $DISPLAY).  A bench
that misses a target still counts as run: the table says FAIL and the exit code stays 0.  The
exit code is non-zero only when a bench crashed (no fresh, valid result file).

bench_skeleton.py (owned elsewhere) always writes bench/results/skeleton.json and exits 1 when
one of its targets is missed; its {"targets": {name: bool}} form is normalised for the table.
With --out-dir, its file is moved there and any previous bench/results/skeleton.json restored.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

log = logging.getLogger("run_all")

BENCHES = ("events", "scheduler", "frame", "skeleton", "languages", "startup", "memory", "git", "tools", "cache")
FIXED_OUTPUT = {"skeleton"}          # scripts that ignore --out-dir
TIMEOUT_S = 1800


def run_bench(name: str, quick: bool, out_dir: Path) -> dict:
    script = ROOT / "bench" / f"bench_{name}.py"
    cmd = [common.python_exe(), str(script)]
    if quick:
        cmd.append("--quick")
    fixed = name in FIXED_OUTPUT
    produced = (common.RESULTS_DIR if fixed else out_dir) / f"{name}.json"
    backup = None
    if fixed and out_dir.resolve() != common.RESULTS_DIR.resolve() and produced.exists():
        backup = produced.with_suffix(".json.run_all-backup")
        shutil.copy2(produced, backup)
    if not fixed:
        cmd += ["--out-dir", str(out_dir)]
    start_wall = time.time()
    start = time.perf_counter()
    print(f"--- {name}: {' '.join(cmd[1:])}", flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=TIMEOUT_S)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        log.error("bench %s timed out after %d s", name, TIMEOUT_S)
        code = "timeout"
    seconds = time.perf_counter() - start
    result, error = None, None
    try:
        if produced.exists() and produced.stat().st_mtime >= start_wall - 1:
            result = json.loads(produced.read_text())
            if fixed and produced.parent.resolve() != out_dir.resolve():
                out_dir.mkdir(parents=True, exist_ok=True)
                shutil.move(str(produced), out_dir / produced.name)
        else:
            error = f"no fresh {produced.name} (exit code {code})"
    except (OSError, json.JSONDecodeError) as exc:
        error = f"unreadable {produced.name}: {exc}"
    finally:
        if backup is not None:
            os.replace(backup, produced)
    if result is not None and code not in (0, 1):
        error = f"exit code {code}"
    if result is not None and code == 1 and name not in FIXED_OUTPUT:
        error = "exit code 1"        # our benches exit 0 when they ran, whatever the targets
    return {"name": name, "exit_code": code, "seconds": round(seconds, 1), "crashed": error is not None,
            "error": error, "result": result}


def rows_for(name: str, result: dict) -> list[dict]:
    """Table rows: one per target, from either result shape."""
    targets = result.get("targets", [])
    if isinstance(targets, dict):                       # bench_skeleton.py's shape
        return [_skeleton_row(key, ok, result.get("metrics", {})) for key, ok in targets.items()]
    return [{"bench": name, "metric": t.get("what", "?"), "measured": t.get("measured", ""),
             "baseline": t.get("baseline", ""), "target": t.get("target", ""), "pass": bool(t.get("pass"))}
            for t in targets]


def _skeleton_row(key: str, ok: bool, m: dict) -> dict:
    known = {
        "cold_skeleton_at_least_ast_parse": ("cold skeleton MB/s >= ast.parse MB/s",
                                             f"{m.get('cold_skeleton_mb_s')} MB/s", f"ast.parse {m.get('ast_parse_mb_s')} MB/s",
                                             ">= ast.parse"),
        "warm_under_50ms_per_100k_lines": ("warm (cache hit) per 100k lines", f"{m.get('warm_ms_per_100k_lines')} ms",
                                           "-", "< 50 ms"),
        "token_reduction_at_least_70pct": ("token reduction of skeletons", f"{m.get('token_reduction_pct')} %",
                                           f"{m.get('full_tokens')} full tokens", ">= 70 %"),
        "all_skeletons_valid_python": ("every skeleton is valid Python", f"{m.get('invalid_skeletons')} invalid",
                                       f"{m.get('files')} files", "0 invalid"),
    }
    what, measured, base, tgt = known.get(key, (key, "", "", key))
    return {"bench": "skeleton", "metric": what, "measured": measured, "baseline": base, "target": tgt,
            "pass": bool(ok)}


def print_table(rows: list[dict]) -> str:
    headers = ("bench", "metric", "measured", "baseline", "target", "result")
    data = [(r["bench"], r["metric"], str(r["measured"]), str(r["baseline"]), str(r["target"]),
             "PASS" if r["pass"] else ("CRASH" if r.get("crashed") else "FAIL")) for r in rows]
    widths = [min(max(len(h), *(len(d[i]) for d in data)) if data else len(h), 70) for i, h in enumerate(headers)]

    def fmt(cells) -> str:
        return " | ".join((c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(cells, widths, strict=True))
    lines = [fmt(headers), "-+-".join("-" * w for w in widths), *(fmt(d) for d in data)]
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(BENCHES)}")
    parser.add_argument("--out-dir", type=Path, default=common.RESULTS_DIR)
    opts = parser.parse_args(argv)
    common.setup_logging(False)
    names = [n.strip() for n in opts.only.split(",") if n.strip()] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    out_dir = opts.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    runs = []
    started = time.perf_counter()
    with common.xvfb_display():
        for name in names:
            runs.append(run_bench(name, opts.quick, out_dir))
    rows: list[dict] = []
    for r in runs:
        if r["crashed"]:
            rows.append({"bench": r["name"], "metric": "(bench crashed)", "measured": r["error"], "baseline": "",
                         "target": "runs", "pass": False, "crashed": True})
        else:
            rows.extend(rows_for(r["name"], r["result"]))
    print()
    table = print_table(rows)
    passed = sum(1 for r in rows if r["pass"])
    crashed = [r["name"] for r in runs if r["crashed"]]
    print(f"\n{passed} passed, {len(rows) - passed} failed" + (f"; crashed: {', '.join(crashed)}" if crashed else "")
          + f" ({time.perf_counter() - started:.0f} s)")
    summary = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": opts.quick, "machine": common.machine_info(),
        "benches": {r["name"]: {"exit_code": r["exit_code"], "seconds": r["seconds"], "crashed": r["crashed"],
                                "error": r["error"], "result_file": f"{r['name']}.json"} for r in runs},
        "rows": rows, "passed": passed, "failed": len(rows) - passed, "crashed": crashed, "table": table,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
