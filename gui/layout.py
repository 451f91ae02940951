"""The window around the panels: hello_imgui runner params, docking layout, menus, bars.

`build_runner_params(app, ...)` is what `App.build_runner_params` (and so
`immapp.run` / `immapp.testing.run`) uses.  It wires the App's per-frame
callbacks:

    pre_new_frame                  App.frame_start   drain engine events, apply hook actions
    (dockable windows draw)
    post_render_dockable_windows   App.frame_end     frame stats, publish the snapshot
    before_swap                    App.before_swap   hook screenshots of the rendered frame
    before_exit                    App.shutdown

Window labels (WIN_*) are what the View menu and the Test Engine see.

Every panel is `draw(state[, actions][, view])` (docs/guide_gui.md, "Panels"):
`state` is the plain object the window shows, `actions` a Protocol of what it
may call (the App, `ContextState` or `CommsLog` satisfy them; mypy checks it
here, where each panel is mounted), `view` the window's own state between
frames, created here with the window.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from imgui_bundle import hello_imgui, imgui, immapp

from gui import (
    panel_approvals,
    panel_budget,
    panel_comms,
    panel_dag,
    panel_diagnostics,
    panel_discussion,
    panel_mcp,
    panel_mma_dashboard,
    panel_project,
    panel_streams,
    panel_usage,
    theme,
)

if TYPE_CHECKING:
    from gui_2 import App

APP_TITLE = "MMA Desk"
DEFAULT_WINDOW_SIZE = (1280, 800)
FPS_MAX = 60
MOCK_BANNER = "Offline mock provider — set GEMINI_API_KEY or ANTHROPIC_API_KEY for real models"

WIN_MMA = "MMA Dashboard"
WIN_DAG = "Ticket DAG"
WIN_STREAMS = "Tier Streams"
WIN_USAGE = "Usage & Cost"
WIN_APPROVALS = "Approvals"
WIN_DIAGNOSTICS = "Diagnostics"
WIN_MCP = "MCP Servers"


def _top_bar(app: App) -> None:
    """Mock-provider banner and the error bar (latest error with its hint)."""
    err = app.mma.latest_error
    # What this frame showed (tests and the hook API read it; text items have no ImGui id).
    app.views["top_bar"] = {"frame": app.stats.frame_count, "banner": MOCK_BANNER if app.is_mock else "",
                            "error": err["message"] if err else "", "hint": (err or {}).get("hint", "")}
    if app.is_mock:
        imgui.text_colored(theme.BANNER_TEXT, MOCK_BANNER)
    else:
        imgui.text(f"Provider: {app.provider}")
        imgui.same_line()
        imgui.text_disabled(f"project {app.project_dir}")
    if err is None:
        imgui.text_disabled(f"MMA: {app.mma.mma_status}"
                            + (f" · {app.mma.active_tier}" if app.mma.active_tier else "")
                            + f" · approvals pending: {len(app.mma.pending_approvals)}")
        return
    if imgui.small_button("Dismiss##error"):
        app.mma.dismiss_errors()
    imgui.same_line()
    message, hint = err["message"], err.get("hint") or ""
    if hint and hint in message:         # provider messages often carry the hint already
        message = message.replace(hint, "").rstrip(" —-:;(")
    message, hint = "Error: " + message, ("— " + hint) if hint else ""
    avail = imgui.get_content_region_avail().x
    if hint and imgui.calc_text_size(message + "  " + hint).x > avail:   # both must show: split the line
        message = _fit_text(message, avail * 0.55)
        hint = _fit_text(hint, avail * 0.45 - imgui.get_style().item_spacing.x)
    imgui.text_colored(theme.ERROR_TEXT, _fit_text(message, avail))
    if imgui.is_item_hovered():
        imgui.set_tooltip(err["message"] + ("\n\n" + err["hint"] if err.get("hint") else ""))
    if hint:
        imgui.same_line()
        imgui.text_colored(theme.HINT_TEXT, hint)
        if imgui.is_item_hovered():
            imgui.set_tooltip(err["hint"])


def _fit_text(text: str, width: float) -> str:
    """`text`, cut with an ellipsis so it is at most `width` pixels wide."""
    if imgui.calc_text_size(text).x <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:                       # longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if imgui.calc_text_size(text[:mid] + "...").x <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "..."


def _menus(app: App) -> None:
    if imgui.begin_menu("File"):
        if imgui.menu_item("Save project", "Ctrl+S", False)[0]:
            app.ui(app.save_project)
        imgui.separator()
        if imgui.menu_item("Quit", "", False)[0]:
            app.request_quit()
        imgui.end_menu()


def _status_bar(app: App) -> None:
    done = sum(1 for t in app.mma.active_tickets if t.get("status") == "completed")
    imgui.text(f"MMA {app.mma.mma_status} | tickets {done}/{len(app.mma.active_tickets)} | "
               f"workers {app.workers_busy()} | approvals {len(app.mma.pending_approvals)} | "
               f"queue {app.gui_queue_depth + app.event_queue.qsize()} | "
               f"{app.stats.fps():.0f} FPS ({'idling' if app.idling_enabled else 'live'})")


def _diagnostics(app: App) -> panel_diagnostics.DiagnosticsReport:
    return panel_diagnostics.DiagnosticsReport(
        performance=app.compute_performance(), frame_times_ms=app.stats.frame_times_ms, hook_url=app.hook_url,
        unknown_events=app.mma.unknown_events, event_counts=app.mma.event_counts)


def _shortcuts(app: App) -> None:
    if imgui.is_key_chord_pressed(imgui.Key.mod_ctrl | imgui.Key.s):
        app.ui(app.save_project)


def build_runner_params(app: App, window_size: tuple[int, int] = DEFAULT_WINDOW_SIZE, *,
                        ini_disable: bool = False, title: str = APP_TITLE):
    """hello_imgui RunnerParams with the docking layout, chrome and per-frame callbacks."""
    rp = hello_imgui.RunnerParams()
    rp.app_window_params.window_title = title
    rp.app_window_params.window_geometry.size = (int(window_size[0]), int(window_size[1]))
    rp.ini_disable = ini_disable
    if not ini_disable:
        rp.ini_folder_type = hello_imgui.IniFolderType.app_user_config_folder
        rp.ini_filename = "mma-desk/mma_desk.ini"
    theme.apply_dark_theme(rp)

    wp = rp.imgui_window_params
    wp.default_imgui_window_type = hello_imgui.DefaultImGuiWindowType.provide_full_screen_dock_space
    wp.enable_viewports = False
    wp.show_menu_bar = True
    wp.show_menu_app = False
    wp.show_menu_view = True
    wp.show_status_bar = True
    wp.show_status_fps = False      # its 'Enable idling' box would fight App.frame_start
    wp.remember_status_bar_settings = False

    # Idling: off while anything is in flight (App.frame_start toggles it), capped at 60 FPS.
    rp.fps_idling.enable_idling = True
    rp.fps_idling.fps_idle = 9.0
    rp.fps_idling.fps_max = FPS_MAX
    rp.fps_idling.remember_enable_idling = False

    cb = rp.callbacks
    cb.pre_new_frame = app.frame_start
    cb.post_render_dockable_windows = app.frame_end
    cb.before_swap = app.before_swap
    cb.show_menus = lambda: _menus(app)
    cb.show_status = lambda: _status_bar(app)
    cb.show_gui = lambda: _shortcuts(app)
    cb.add_edge_toolbar(hello_imgui.EdgeToolbarType.top, lambda: _top_bar(app),
                        hello_imgui.EdgeToolbarOptions(size_em=3.0, window_padding_em=imgui.ImVec2(0.6, 0.35)))

    # The windows' own view state (caches, the node editor, a text box), one per window.
    dag_view, streams_view, usage_view = panel_dag.DagView(), panel_streams.StreamsView(), panel_usage.UsageView()

    def before_exit() -> None:
        panel_dag.destroy_editor(dag_view)
        app.shutdown()
    cb.before_exit = before_exit

    splits = []

    def split(initial: str, new: str, direction, ratio: float) -> None:
        s = hello_imgui.DockingSplit()
        s.initial_dock, s.new_dock, s.direction, s.ratio = initial, new, direction, ratio
        splits.append(s)
    split("MainDockSpace", "LeftSpace", imgui.Dir.left, 0.22)
    split("MainDockSpace", "BottomSpace", imgui.Dir.down, 0.34)
    split("MainDockSpace", "RightSpace", imgui.Dir.right, 0.38)
    rp.docking_params.docking_splits = splits

    windows = []

    def window(label: str, fn: Callable[[], None], dock: str, focus: bool = False) -> None:
        w = hello_imgui.DockableWindow()
        w.label, w.dock_space_name, w.gui_function = label, dock, fn
        w.focus_window_at_next_frame = focus
        windows.append(w)
    window("Project", lambda: panel_project.draw(app.ctx, app.ctx), "LeftSpace", focus=True)
    window("Discussion", lambda: panel_discussion.draw(app.ctx, app.ctx), "LeftSpace")
    window("Budget", lambda: panel_budget.draw(app.ctx), "LeftSpace")
    window(WIN_MCP, lambda: panel_mcp.draw(app.mcp, app.mcp), "LeftSpace")
    window("Comms", lambda: panel_comms.draw(app.comms_log, app.comms_log), "BottomSpace")
    window(WIN_DAG, lambda: panel_dag.draw(app.mma, dag_view), "MainDockSpace")
    window(WIN_USAGE, lambda: panel_usage.draw(app.mma, app, usage_view), "MainDockSpace")
    window(WIN_MMA, lambda: panel_mma_dashboard.draw(app.mma, app), "MainDockSpace", focus=True)
    window(WIN_DIAGNOSTICS, lambda: panel_diagnostics.draw(_diagnostics(app)), "RightSpace")
    window(WIN_APPROVALS, lambda: panel_approvals.draw(app.mma, app), "RightSpace", focus=True)
    window(WIN_STREAMS, lambda: panel_streams.draw(app.mma.mma_streams, streams_view), "BottomSpace", focus=True)
    rp.docking_params.dockable_windows = windows

    addons = immapp.AddOnsParams(with_implot=True, with_markdown=True)
    return rp, addons
