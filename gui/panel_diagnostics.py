"""The Diagnostics window: frame times, queue depths, event rate, workers, approvals.

`draw(state)`: `state` is a `DiagnosticsReport`, built each frame by
`gui/layout.py` from the App (`App.compute_performance()`, the same figures
the hook API serves as `GET /api/performance`, plus the frame-time history,
the hook URL and the event counters).  The window calls no command.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from imgui_bundle import imgui, implot

from gui import theme


@dataclass
class DiagnosticsReport:
    performance: Mapping[str, Any]           # App.compute_performance()
    frame_times_ms: Iterable[float]          # the recent frame times, oldest first
    hook_url: str | None                     # None: no hook server
    unknown_events: Mapping[str, int]
    event_counts: Mapping[str, int]


def draw(state: DiagnosticsReport) -> None:
    perf = state.performance
    imgui.text(f"FPS {perf['fps']:.1f}")
    imgui.text(f"Frame p50 {perf['frame_time_ms_p50']:.1f} ms · p99 {perf['frame_time_ms_p99']:.1f} ms")
    imgui.text(f"Queue: {perf['event_queue_depth']} (engine {perf['engine_queue_depth']} · "
               f"GUI {perf['gui_queue_depth']})")
    imgui.text(f"Applied {perf['events_per_s']:.0f} events/s · {perf['events_applied_total']} total")
    imgui.text(f"Workers busy {perf['workers_busy']} · approvals {perf['pending_approvals']}")
    imgui.text("Frame loop: ")
    imgui.same_line()
    if perf["idling_enabled"]:
        imgui.text_colored(theme.MUTED_TEXT, "idling (nothing in flight)")
    else:
        imgui.text_colored(theme.STATUS_COLORS["in_progress"], "live (work in flight, idling off)")
    if state.hook_url:
        imgui.text(f"Hook API: {state.hook_url}")
    unknown = dict(state.unknown_events)
    if unknown:
        imgui.text_colored(theme.ERROR_TEXT, f"Unknown events ignored: {unknown}")
    times = np.array(list(state.frame_times_ms), dtype=np.float64)
    if times.size and implot.begin_plot("Frame time (ms)", imgui.ImVec2(-1, 170)):
        implot.setup_axes("frame", "ms", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
        implot.setup_legend(implot.Location_.north, implot.LegendFlags_.horizontal | implot.LegendFlags_.outside)
        implot.plot_line("frame ms", times)
        p99 = np.array([perf["frame_time_ms_p99"]] * 2)
        implot.plot_line("p99", np.array([0.0, float(times.size - 1)]), p99)
        implot.end_plot()
    if imgui.collapsing_header("Events by name"):
        for name, n in sorted(state.event_counts.items()):
            imgui.text(f"{name}: {n}")
