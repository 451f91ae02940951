"""Startup bench: launch to first frame of the real app under Xvfb.

    python bench/bench_startup.py [--quick]

Two measurements of `gui_2.py --max-frames 1 --no-ini --provider mock --window-size 800x600
--project <empty tmp dir>`, each in a new process, under a private Xvfb:
- first_frame_s (the target): launch -> the first frame on screen.  The parent notes
  `time.time()` just before `Popen`; the child is this script with --probe, which wraps
  `gui_2.build_runner_params` to add an `after_swap` callback that prints `time.time()` at the
  first swap, then calls `gui_2.main(argv)` unchanged.  Both clocks are the same wall clock.
- process_wall_s: `python gui_2.py --max-frames 1 ...` from Popen to exit, subtracting nothing
  (includes interpreter start, imports, App(), window + GL context, one frame, and teardown):
  an upper bound of launch -> first frame.
Baseline, same run: `python -c "import imgui_bundle"` wall time.
Median of 5 runs each, interleaved (--quick: 1); the first (coldest) run is also reported.
Target: first frame < 1.5 s.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_FRAME_MARK = "BENCH_FIRST_FRAME_AT"


def probe(argv: list[str]) -> int:
    """Child: run gui_2.main(argv) with an after_swap hook that prints the first frame's time."""
    sys.path.insert(0, str(ROOT))
    import gui_2
    original = gui_2.build_runner_params
    seen = {"done": False}

    def build_runner_params(app, *args, **kwargs):
        rp, addons = original(app, *args, **kwargs)
        previous = rp.callbacks.after_swap

        def after_swap() -> None:
            if previous is not None:
                previous()
            if not seen["done"]:
                seen["done"] = True
                print(f"{FIRST_FRAME_MARK} {time.time():.6f}", flush=True)
        rp.callbacks.after_swap = after_swap
        return rp, addons
    gui_2.build_runner_params = build_runner_params
    return gui_2.main(argv)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--probe":
    sys.exit(probe(sys.argv[2:]))

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

TARGET_S = 1.5


def app_args(project: str) -> list[str]:
    return ["--max-frames", "1", "--no-ini", "--provider", "mock", "--window-size", "800x600",
            "--project", project]


def run(cmd: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    t_launch = time.time()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return t_launch, wall, proc


def main(argv: list[str] | None = None) -> int:
    opts = common.arg_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.setup_logging(opts.verbose)
    reps = 1 if opts.quick else 5
    py = common.python_exe()
    first_frame: list[float] = []
    process_wall: list[float] = []
    import_wall: list[float] = []
    with common.xvfb_display(), tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = dict(os.environ)
        env.pop("MMA_TEST_HOOKS", None)
        env["HOME"] = tmp                     # no user config / ini from the developer's home
        for i in range(reps):
            project = tempfile.mkdtemp(prefix="proj-", dir=tmp)
            t_launch, _wall, proc = run([py, str(Path(__file__).resolve()), "--probe", *app_args(project)], env)
            marks = [ln for ln in proc.stdout.splitlines() if ln.startswith(FIRST_FRAME_MARK)]
            if not marks:
                raise RuntimeError(f"the probe printed no first-frame mark:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            first_frame.append(float(marks[0].split()[1]) - t_launch)
            project = tempfile.mkdtemp(prefix="proj-", dir=tmp)
            _t, wall, _p = run([py, str(ROOT / "gui_2.py"), *app_args(project)], env)
            process_wall.append(wall)
            _t, wall, _p = run([py, "-c", "import imgui_bundle"], env)
            import_wall.append(wall)
            print(f"run {i + 1}: first frame {first_frame[-1]:.3f} s, process wall {process_wall[-1]:.3f} s, "
                  f"import imgui_bundle {import_wall[-1]:.3f} s", flush=True)

    med_ff, med_pw, med_imp = (statistics.median(v) for v in (first_frame, process_wall, import_wall))
    metrics = {
        "runs": reps, "method": "probe: Popen -> first after_swap (time.time() in both processes)",
        "first_frame_s_median": round(med_ff, 3), "first_frame_s_first_run": round(first_frame[0], 3),
        "first_frame_s_max": round(max(first_frame), 3),
        "process_wall_s_median": round(med_pw, 3), "process_wall_s_first_run": round(process_wall[0], 3),
        "first_frame_over_import_s": round(med_ff - med_imp, 3),
    }
    baseline = {"import_imgui_bundle_s_median": round(med_imp, 3),
                "import_imgui_bundle_s_first_run": round(import_wall[0], 3)}
    targets = [common.target(
        "startup: launch -> first frame (gui_2.py --max-frames 1, Xvfb)", f"< {TARGET_S} s",
        f"{med_ff:.3f} s median (max {max(first_frame):.3f}; whole process incl. teardown {med_pw:.3f} s)",
        med_ff < TARGET_S, baseline=f"import imgui_bundle {med_imp:.3f} s")]
    notes = ["process_wall_s (Popen -> exit, nothing subtracted) is an upper bound of launch -> first frame"]
    path = common.write_result("startup", quick=opts.quick, metrics=metrics, baseline=baseline, targets=targets,
                               notes=notes, out_dir=opts.out_dir,
                               extra={"first_frame_s": first_frame, "process_wall_s": process_wall,
                                      "import_imgui_bundle_s": import_wall})
    common.print_result(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
