"""The docking layout's proportions, and putting it back when a window size squeezes it.

`SPLITS` is the default layout as ratios of the window (hello_imgui applies them on first
start and on *View > Restore default layout*): the context panels take a quarter on the
left, Tier Streams / Comms a third at the bottom, Approvals / Diagnostics 30% on the right,
so at 1280x800 the MMA Dashboard gets ~670 px and at 1024x700 ~540 px.

A layout restored from the ini file keeps its dock sizes in pixels: one saved on a large
screen and opened in a 1024x700 window squeezed the dashboard to ~110 px.  `adapt_layout`
(once per frame, cheap) notices when the dashboard is narrower than `MIN_DASHBOARD_PX`
while the window is wide enough for the default split, and re-applies the default split
(once per window size, logged), so the key windows always have room.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from imgui_bundle import imgui

if TYPE_CHECKING:
    from gui_2 import App

log = logging.getLogger(__name__)

# (initial dock, new dock, direction, ratio)
SPLITS = (("MainDockSpace", "LeftSpace", "left", 0.25),
          ("MainDockSpace", "BottomSpace", "down", 0.32),
          ("MainDockSpace", "RightSpace", "right", 0.30))
MIN_DASHBOARD_PX = 360.0
MIN_WINDOW_PX = 900.0          # narrower windows keep whatever the user arranged
SETTLE_FRAMES = 10
FRONT_WINDOWS = ("Project", "MMA Dashboard", "Approvals", "Tier Streams")


def adapt_layout(app: App) -> bool:
    """Re-apply the default split if the saved one squeezes the dashboard; returns whether it did."""
    rp = app._runner_params
    refocus_at = app.views.get("refocus_at")
    if rp is not None and refocus_at is not None and app.stats.frame_count >= refocus_at:
        # A reset docks every window anew and shows each dock's first tab: bring the
        # windows that matter back to the front.
        app.views.pop("refocus_at")
        for name in FRONT_WINDOWS:
            rp.docking_params.focus_dockable_window(name)
    dashboard = app.views.get("dashboard")
    # Only a layout restored from the ini file can be squeezed (the default split is made for
    # the window); the first frames' sizes are not settled yet.
    if rp is None or rp.ini_disable or dashboard is None or dashboard.window_width <= 0 \
            or app.stats.frame_count < SETTLE_FRAMES:
        return False
    display = imgui.get_io().display_size
    size = (int(display.x), int(display.y))
    if display.x < MIN_WINDOW_PX or dashboard.window_width >= MIN_DASHBOARD_PX:
        return False
    if app.views.get("layout_reset_for") == size:
        return False                 # already tried at this size: leave the user's layout alone
    app.views["layout_reset_for"] = size
    log.info("the MMA Dashboard is %.0f px wide in a %dx%d window: restoring the default layout",
             dashboard.window_width, *size)
    rp.docking_params.layout_reset = True
    dashboard.window_width = 0.0
    app.views["refocus_at"] = app.stats.frame_count + 2
    return True
