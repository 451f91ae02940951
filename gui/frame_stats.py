"""Frame timing and event-rate figures for the Diagnostics window and `GET /api/performance`.

`FrameStats` is owned by the GUI thread: `tick()` once per frame (at frame end),
`note_events(n)` after each drain of the engine inbox.  `report()` computes the
timing half of `App.get_performance()`; the App adds queue depths and workers.
"""
from __future__ import annotations

import collections
import time

FRAME_HISTORY = 600          # frame times kept (the Diagnostics plot shows them all)
FPS_WINDOW = 60              # frames the FPS figure averages over


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


class FrameStats:
    def __init__(self, history: int = FRAME_HISTORY):
        self.frame_times_ms: collections.deque[float] = collections.deque(maxlen=history)
        self.frame_count = 0
        self.events_applied_total = 0
        self._events_window: collections.deque[tuple[float, int]] = collections.deque()
        self._last_frame_t: float | None = None

    def tick(self) -> None:
        """One frame ended: record its duration (from the previous frame's end)."""
        now = time.perf_counter()
        if self._last_frame_t is not None:
            self.frame_times_ms.append((now - self._last_frame_t) * 1000.0)
        self._last_frame_t = now
        self.frame_count += 1

    def note_events(self, n: int) -> None:
        if n:
            self.events_applied_total += n
            self._events_window.append((time.monotonic(), n))

    def fps(self) -> float:
        recent = list(self.frame_times_ms)[-FPS_WINDOW:]
        total = sum(recent)
        return 1000.0 * len(recent) / total if recent and total > 0 else 0.0

    def events_per_s(self) -> float:
        """Events applied in the last second."""
        now = time.monotonic()
        while self._events_window and now - self._events_window[0][0] > 1.0:
            self._events_window.popleft()
        return float(sum(n for _t, n in self._events_window))

    def report(self) -> dict:
        times = sorted(self.frame_times_ms)
        return {
            "fps": round(self.fps(), 2),
            "frame_count": self.frame_count,
            "frame_time_ms_last": round(self.frame_times_ms[-1], 3) if self.frame_times_ms else 0.0,
            "frame_time_ms_p50": round(percentile(times, 0.50), 3),
            "frame_time_ms_p99": round(percentile(times, 0.99), 3),
            "events_applied_total": self.events_applied_total,
            "events_per_s": self.events_per_s(),
        }
