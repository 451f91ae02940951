"""Shared helpers for the benchmark scripts in bench/.

Every bench writes `bench/results/<name>.json`:

    {"name": str, "quick": bool, "machine": {"cpu_count", "python", "platform", ...},
     "metrics": {...}, "baseline": {...},
     "targets": [{"what": str, "target": str, "measured": str|number, "pass": bool}], "notes": [...]}

Benchmarks are not timed tests: each target is a ratio or threshold against a
baseline measured in the same run, on the same (2-core, shared, noisy) machine.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench")

FRAME_60FPS_S = 1.0 / 60.0


# -- machine and statistics ------------------------------------------------------------
def machine_info() -> dict:
    info = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return info


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): the value a `pct`% of samples are <= to."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = max(1, min(len(data), int(-(-pct * len(data) // 100))))   # ceil(pct/100 * n)
    return data[rank - 1]


def summary_ms(values_s: list[float]) -> dict:
    """p50/p99/max/mean in milliseconds for a list of seconds."""
    if not values_s:
        return {"n": 0}
    return {
        "n": len(values_s),
        "p50_ms": round(percentile(values_s, 50) * 1000, 3),
        "p99_ms": round(percentile(values_s, 99) * 1000, 3),
        "max_ms": round(max(values_s) * 1000, 3),
        "mean_ms": round(statistics.fmean(values_s) * 1000, 3),
    }


def target(what: str, target_text: str, measured: Any, passed: bool, baseline: Any = None) -> dict:
    """One target row; `baseline` is the same-run comparison figure shown beside `measured`."""
    row = {"what": what, "target": target_text, "measured": measured, "pass": bool(passed)}
    if baseline is not None:
        row["baseline"] = baseline
    return row


# -- results -------------------------------------------------------------------------------
def write_result(name: str, *, quick: bool, metrics: dict, baseline: dict, targets: list[dict],
                 notes: list[str] | None = None, out_dir: Path | None = None,
                 extra: dict | None = None) -> Path:
    """Write bench/results/<name>.json; `extra` holds raw per-run data (not printed)."""
    out_dir = Path(out_dir) if out_dir else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"name": name, "quick": quick, "machine": machine_info(), "metrics": metrics,
              "baseline": baseline, "targets": targets, "notes": list(notes or [])}
    if extra:
        result["raw"] = extra
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def print_result(path: Path) -> None:
    data = json.loads(Path(path).read_text())
    print(f"== {data['name']} ({'quick' if data.get('quick') else 'full'}) ==")
    for key, value in data["metrics"].items():
        print(f"  {key:<40} {value}")
    for key, value in data["baseline"].items():
        print(f"  baseline.{key:<31} {value}")
    for t in data["targets"]:
        base = f"; baseline {t['baseline']}" if t.get("baseline") is not None else ""
        print(f"  [{'PASS' if t['pass'] else 'FAIL'}] {t['what']}: {t['measured']} (target {t['target']}{base})")
    for note in data.get("notes", []):
        print(f"  note: {note}")
    try:
        shown = path.relative_to(ROOT)
    except ValueError:
        shown = path
    print(f"  wrote {shown}")


def arg_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help=f"where to write <name>.json (default {RESULTS_DIR.relative_to(ROOT)})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    return parser


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- process and thread CPU ----------------------------------------------------------------
def rss_bytes(pid: int | str = "self") -> int:
    """Current resident set size (VmRSS) from /proc."""
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int | str = "self") -> int:
    """High-water mark (VmHWM) from /proc."""
    return _status_kb(pid, "VmHWM") * 1024


def _status_kb(pid: int | str, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not found in /proc/{pid}/status")


def thread_cpu_ns() -> dict[int, tuple[str, int]]:
    """{tid: (comm, cpu_ns)} for every thread of this process (schedstat: ns on CPU)."""
    out: dict[int, tuple[str, int]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as fh:
                cpu_ns = int(fh.read().split()[0])
            with open(f"/proc/self/task/{tid}/comm") as fh:
                comm = fh.read().strip()
        except (OSError, ValueError, IndexError):
            continue                       # the thread ended between listdir and open
        out[int(tid)] = (comm, cpu_ns)
    return out


def cpu_delta_ns(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]) -> dict[int, tuple[str, int]]:
    """Per-thread CPU used between two `thread_cpu_ns()` samples (threads born in between count fully)."""
    return {tid: (comm, ns - before.get(tid, (comm, 0))[1]) for tid, (comm, ns) in after.items()}


# -- Xvfb ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def xvfb_display(screen: str = "1280x800x24") -> Iterator[str]:
    """A private Xvfb for benches and tests: -displayfd picks a free display; sets DISPLAY.

    An existing DISPLAY is reused as is.  Raises RuntimeError with Xvfb's log if it does not start.
    """
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed: run `apt-get install -y xvfb`")
    logf = tempfile.NamedTemporaryFile(prefix="bench-xvfb-", suffix=".log", delete=False)
    read_fd, write_fd = os.pipe()
    # -noreset: Xvfb otherwise resets when its last client disconnects, and a client
    # connecting during the reset fails with "Failed to open display".
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp",
                             "-noreset"],
                            pass_fds=(write_fd,), stdout=logf, stderr=logf)
    os.close(write_fd)
    buf = b""
    try:
        while not buf.endswith(b"\n"):       # Xvfb writes "N\n" once it accepts connections
            chunk = os.read(read_fd, 16)
            if not chunk:
                raise RuntimeError("Xvfb did not start: " + Path(logf.name).read_text())
            buf += chunk
    finally:
        os.close(read_fd)
    number = buf.decode().strip()
    socket_path = f"/tmp/.X11-unix/X{number}"
    deadline = time.monotonic() + 5
    while not os.path.exists(socket_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    try:
        yield os.environ["DISPLAY"]
    finally:
        os.environ.pop("DISPLAY", None)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            log.warning("Xvfb did not exit on SIGTERM; killing it")
            proc.kill()
            proc.wait(5)
        with contextlib.suppress(OSError):
            os.unlink(logf.name)


def python_exe() -> str:
    """The venv interpreter when it exists (benches run with it), else this one."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable
