"""Frame bench: the real app (gui_2.App) at 800x600 under Xvfb, idle vs 16 streaming workers.

    python bench/bench_frame.py [--quick]

Each phase runs in its own child process (this script with --child), in-process there:
`gui_2.App(tmp project, provider="mock", require_spawn_approval=False)` with the app's own
`build_runner_params` (docking layout, all panels, fps_max 60, idling toggled by the app),
run with `immapp.run`.  The bench wraps the app's own per-frame callbacks:
- `pre_new_frame` (= `App.frame_start`: drain engine events, hook actions, futures) is timed
  (wall and main-thread CPU) -> "event drain";
- `after_swap` timestamps the end of every frame.
- `before_swap` timestamps the hand-over to GL.
Frame *work* time = pre_new_frame start -> after_swap (everything the app does for a frame,
widgets + ImGui render + GL swap), i.e. what must stay under 16.7 ms for 60 FPS.  It is split
into the app side (pre_new_frame -> before_swap: Python panels, ImGui draw lists, GL command
submission) and the swap (before_swap -> after_swap: under Xvfb, Mesa llvmpipe rasterizes the
frame in software here, in its own threads).  Frame
*interval* = after_swap -> next after_swap (includes hello_imgui's fps_max sleep / idling);
FPS = 1 / mean interval.

CPU: per-thread CPU from /proc/self/task/*/schedstat over the measured window.
- render CPU = main thread (minus the event drain) + llvmpipe (Mesa software GL) threads;
- non-render CPU = every other thread (engine loop, 16 workers, ...) + the main thread's event
  drain.  Reported per frame.

Phases (same run):
- floor (second baseline): a trivial hello_imgui app (same size, theme, menu/status bars, add-ons,
  one line of text, idling off, fps_max 60) = what software GL costs this machine per frame.
- idle (baseline): the app with nothing running (the app turns idling on when nothing is in flight).
- load: a track of 16 independent tickets on the `bench_stream` adapter (bench/stub_workers.py:
  the mock provider, MockAdapter chunk delay 0.02 s = 50 chunks/s per worker), max_workers 16,
  started through the app's own Pipeline/ConductorEngine on its engine thread.  Measured after
  1 s of warm-up, for 5 s (--quick: 0.3 s warm-up, 1 s).

Targets: load frame-work p99 < 16.7 ms; non-render CPU < 2 ms per frame.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

log = logging.getLogger("bench_frame")

WORKERS = 16
CHUNK_DELAY_S = 0.02
WINDOW = (800, 600)
FRAME_TARGET_MS = common.FRAME_60FPS_S * 1000
NON_RENDER_TARGET_MS = 2.0


# ============================================================================== child side
def child(phase: str, warmup_s: float, measure_s: float, out: Path) -> int:
    os.environ["MMA_MOCK_CHUNK_DELAY"] = str(CHUNK_DELAY_S)
    from bench import stub_workers
    stub_workers.register()
    from imgui_bundle import hello_imgui, imgui, immapp

    import gui_2
    from models import Ticket, Track
    if phase == "floor":
        app = None
        rp, addons = floor_runner_params(hello_imgui, imgui, immapp)
    else:
        project = Path(tempfile.mkdtemp(prefix="bench-frame-"))
        app = gui_2.App(project, provider="mock", require_spawn_approval=False)
        rp, addons = app.build_runner_params(WINDOW, ini_disable=True)

    chunks = int((warmup_s + measure_s + 3.0) / CHUNK_DELAY_S)    # keep streaming past the window
    st = {"frame": 0, "t0": None, "phase": "warmup", "started": False, "t_start": None,
          "frame_start_t": 0.0, "before_swap_t": 0.0, "work": [], "app_side": [], "swap": [], "interval": [], "drain_wall": [], "drain_cpu": 0.0,
          "last_swap": None, "cpu0": None, "cpu1": None, "t_measure0": None, "t_measure1": None,
          "events0": 0, "events1": 0, "frames_measured": 0}

    def start_load() -> None:
        tickets = [Ticket(id=f"S{i:02d}", description=f"stream [chunks={chunks}]") for i in range(WORKERS)]
        track = Track(id="bench_frame", title="bench frame", tickets=tickets)

        async def run_track() -> str:
            app.pipeline.settings = app.pipeline.settings.with_provider(stub_workers.STREAM_PROVIDER).replace(
                max_workers=WORKERS, diagnose_failures=False)
            engine = app.pipeline.engine_for(track)
            return await engine.run("")
        app._active_track_id = track.id
        app._submit("bench track", run_track())

    frame_start = rp.callbacks.pre_new_frame

    def timed_frame_start() -> None:
        now = time.perf_counter()
        st["frame_start_t"] = now
        if st["t0"] is None:
            st["t0"] = now
            if phase == "load":
                start_load()
        c0 = time.thread_time()
        if frame_start is not None:
            frame_start()
        d_wall = time.perf_counter() - now
        if st["phase"] == "measure":
            st["drain_wall"].append(d_wall)
            st["drain_cpu"] += time.thread_time() - c0

    before_swap_orig = rp.callbacks.before_swap

    def before_swap() -> None:
        if before_swap_orig is not None:
            before_swap_orig()
        st["before_swap_t"] = time.perf_counter()

    def after_swap() -> None:
        now = time.perf_counter()
        if st["phase"] == "measure":
            st["work"].append(now - st["frame_start_t"])
            st["app_side"].append(st["before_swap_t"] - st["frame_start_t"])
            st["swap"].append(now - st["before_swap_t"])
            if st["last_swap"] is not None:
                st["interval"].append(now - st["last_swap"])
            st["frames_measured"] += 1
        st["last_swap"] = now
        elapsed = now - st["t0"]
        if st["phase"] == "warmup" and elapsed >= warmup_s:
            st["phase"] = "measure"
            st["cpu0"] = common.thread_cpu_ns()
            st["t_measure0"] = now
            st["events0"] = app.mma.event_counts.get("mma_stream", 0) if app else 0
        elif st["phase"] == "measure" and now - st["t_measure0"] >= measure_s:
            st["phase"] = "done"
            st["cpu1"] = common.thread_cpu_ns()
            st["t_measure1"] = now
            if app is not None:
                st["events1"] = app.mma.event_counts.get("mma_stream", 0)
                st["running_at_end"] = app.workers_busy()
                st["perf"] = app.get_performance()
                app.request_quit()
            else:
                rp.app_shall_exit = True

    rp.callbacks.pre_new_frame = timed_frame_start
    rp.callbacks.before_swap = before_swap
    rp.callbacks.after_swap = after_swap
    immapp.run(rp, addons)
    if app is not None:
        app.shutdown()

    if st["cpu1"] is None:
        raise RuntimeError(f"the app exited before the measurement window ended (phase {st['phase']})")
    pid = os.getpid()
    delta = common.cpu_delta_ns(st["cpu0"], st["cpu1"])
    main_ns = delta.get(pid, ("", 0))[1]
    llvmpipe_ns = sum(ns for tid, (comm, ns) in delta.items() if tid != pid and comm.startswith("llvmpipe"))
    other_ns = sum(ns for tid, (comm, ns) in delta.items() if tid != pid and not comm.startswith("llvmpipe"))
    frames = max(st["frames_measured"], 1)
    drain_ms = st["drain_cpu"] * 1000 / frames
    window_s = st["t_measure1"] - st["t_measure0"]
    res = {
        "phase": phase, "frames": st["frames_measured"], "window_s": round(window_s, 3),
        "fps": round(len(st["interval"]) / sum(st["interval"]), 2) if st["interval"] else 0.0,
        "frame_work": common.summary_ms(st["work"]),
        "frame_app_side": common.summary_ms(st["app_side"]),
        "frame_swap": common.summary_ms(st["swap"]),
        "frame_interval": common.summary_ms(st["interval"]),
        "drain_wall": common.summary_ms(st["drain_wall"]),
        "cpu_ms_per_frame": {
            "main_thread": round(main_ns / 1e6 / frames, 3),
            "event_drain_main_thread": round(drain_ms, 3),
            "llvmpipe_threads": round(llvmpipe_ns / 1e6 / frames, 3),
            "other_threads": round(other_ns / 1e6 / frames, 3),
            "render": round((main_ns / 1e6 - st["drain_cpu"] * 1000 + llvmpipe_ns / 1e6) / frames, 3),
            "non_render": round((other_ns / 1e6 + st["drain_cpu"] * 1000) / frames, 3),
        },
        "non_render_cpu_ms_per_s": round((other_ns / 1e6 + st["drain_cpu"] * 1000) / window_s, 2),
        "process_cpu_pct": round(100 * sum(ns for _c, ns in delta.values()) / 1e9 / window_s, 1),
        "stream_events": st["events1"] - st["events0"],
        "stream_events_per_s": round((st["events1"] - st["events0"]) / window_s, 1),
        "workers_running_at_end": st.get("running_at_end"),
        "app_performance": st.get("perf", {}),
        "threads": len(delta),
    }
    out.write_text(json.dumps(res, indent=2))
    return 0


def floor_runner_params(hello_imgui, imgui, immapp):
    """A trivial app with the same window size, theme, chrome and add-ons: software-GL floor."""
    from gui import theme
    rp = hello_imgui.RunnerParams()
    rp.app_window_params.window_geometry.size = WINDOW
    rp.ini_disable = True
    theme.apply_dark_theme(rp)
    wp = rp.imgui_window_params
    wp.default_imgui_window_type = hello_imgui.DefaultImGuiWindowType.provide_full_screen_dock_space
    wp.show_menu_bar = True
    wp.show_status_bar = True
    rp.fps_idling.enable_idling = False
    rp.fps_idling.fps_max = 60
    rp.callbacks.show_gui = lambda: imgui.text("GL floor: one line of text")
    return rp, immapp.AddOnsParams(with_implot=True, with_markdown=True)


# ============================================================================== parent side
def run_child(phase: str, quick: bool) -> dict:
    warmup, measure = (0.3, 1.0) if quick else (1.0, 5.0)
    with tempfile.TemporaryDirectory(prefix="bench-frame-out-") as tmp:
        out = Path(tmp) / f"{phase}.json"
        cmd = [common.python_exe(), str(Path(__file__).resolve()), "--child", phase,
               "--warmup", str(warmup), "--measure", str(measure), "--child-out", str(out)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"frame bench child '{phase}' failed (exit {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("floor", "idle", "load"), help=argparse_hidden())
    parser.add_argument("--warmup", type=float, default=1.0, help=argparse_hidden())
    parser.add_argument("--measure", type=float, default=5.0, help=argparse_hidden())
    parser.add_argument("--child-out", type=Path, help=argparse_hidden())
    opts = parser.parse_args(argv)
    common.setup_logging(opts.verbose)
    if opts.child:
        logging.getLogger().setLevel(logging.WARNING)
        return child(opts.child, opts.warmup, opts.measure, opts.child_out)

    with common.xvfb_display():
        floor = run_child("floor", opts.quick)
        idle = run_child("idle", opts.quick)
        load = run_child("load", opts.quick)
    for r in (floor, idle, load):
        print(f"{r['phase']}: {r['frames']} frames, {r['fps']} FPS, work p50 {r['frame_work'].get('p50_ms')} "
              f"p99 {r['frame_work'].get('p99_ms')} ms, cpu/frame {r['cpu_ms_per_frame']}, "
              f"stream ev/s {r['stream_events_per_s']}", flush=True)

    lw, lc = load["frame_work"], load["cpu_ms_per_frame"]
    metrics = {
        "window": f"{WINDOW[0]}x{WINDOW[1]}", "workers": WORKERS, "chunk_delay_s": CHUNK_DELAY_S,
        "load_fps": load["fps"], "load_frames": load["frames"],
        "load_frame_work_p50_ms": lw.get("p50_ms"), "load_frame_work_p99_ms": lw.get("p99_ms"),
        "load_frame_work_max_ms": lw.get("max_ms"),
        "load_frame_app_side_p50_ms": load["frame_app_side"].get("p50_ms"),
        "load_frame_app_side_p99_ms": load["frame_app_side"].get("p99_ms"),
        "load_frame_swap_p50_ms": load["frame_swap"].get("p50_ms"),
        "load_frame_swap_p99_ms": load["frame_swap"].get("p99_ms"),
        "load_frame_interval_p50_ms": load["frame_interval"].get("p50_ms"),
        "load_frame_interval_p99_ms": load["frame_interval"].get("p99_ms"),
        "load_stream_events_per_s": load["stream_events_per_s"],
        "load_event_drain_wall_p99_ms": load["drain_wall"].get("p99_ms"),
        "load_cpu_ms_per_frame": lc,
        "load_non_render_cpu_ms_per_s": load["non_render_cpu_ms_per_s"],
        "load_non_render_cpu_ms_per_60fps_frame": round(load["non_render_cpu_ms_per_s"] / 60, 3),
        "load_process_cpu_pct": load["process_cpu_pct"],
        "load_workers_running_at_end": load["workers_running_at_end"],
    }
    iw = idle["frame_work"]
    baseline = {
        "idle_fps": idle["fps"], "idle_frames": idle["frames"],
        "idle_frame_work_p50_ms": iw.get("p50_ms"), "idle_frame_work_p99_ms": iw.get("p99_ms"),
        "idle_frame_app_side_p99_ms": idle["frame_app_side"].get("p99_ms"),
        "idle_frame_swap_p50_ms": idle["frame_swap"].get("p50_ms"),
        "idle_cpu_ms_per_frame": idle["cpu_ms_per_frame"], "idle_process_cpu_pct": idle["process_cpu_pct"],
        "gl_floor_fps": floor["fps"], "gl_floor_frame_work_p50_ms": floor["frame_work"].get("p50_ms"),
        "gl_floor_frame_work_p99_ms": floor["frame_work"].get("p99_ms"),
        "gl_floor_swap_p50_ms": floor["frame_swap"].get("p50_ms"),
        "gl_floor_llvmpipe_cpu_ms_per_frame": floor["cpu_ms_per_frame"]["llvmpipe_threads"],
    }
    expected_rate = WORKERS / CHUNK_DELAY_S
    targets = [
        common.target("frame: p99 frame work, 800x600, 16 workers streaming", f"< {FRAME_TARGET_MS:.1f} ms",
                      f"{lw.get('p99_ms')} ms (p50 {lw.get('p50_ms')}; app side p99 "
                      f"{load['frame_app_side'].get('p99_ms')}, GL swap p99 {load['frame_swap'].get('p99_ms')}) "
                      f"at {load['fps']} FPS", (lw.get("p99_ms") or 1e9) < FRAME_TARGET_MS,
                      baseline=f"idle app p99 {iw.get('p99_ms')} ms; trivial GL app p99 "
                               f"{floor['frame_work'].get('p99_ms')} ms"),
        common.target("frame: non-render CPU per frame (16 workers streaming)", f"< {NON_RENDER_TARGET_MS} ms",
                      f"{lc['non_render']} ms at {load['fps']} FPS ({load['non_render_cpu_ms_per_s']} ms/s)",
                      lc["non_render"] < NON_RENDER_TARGET_MS,
                      baseline=f"idle app {idle['cpu_ms_per_frame']['non_render']} ms"),
    ]
    notes = [
        f"stream load: {load['stream_events_per_s']} mma_stream events/s applied by the GUI "
        f"(nominal {expected_rate:.0f}/s = {WORKERS} workers x 1/{CHUNK_DELAY_S} s)",
        "frame work = pre_new_frame start -> after_swap (widgets + ImGui render + swap under Xvfb/llvmpipe); "
        "frame interval adds hello_imgui's fps_max=60 sleep (or 9 FPS idling when idle)",
    ]
    path = common.write_result("frame", quick=opts.quick, metrics=metrics, baseline=baseline, targets=targets,
                               notes=notes, out_dir=opts.out_dir,
                               extra={"floor": floor, "idle": idle, "load": load})
    common.print_result(path)
    return 0


def argparse_hidden() -> str:
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
