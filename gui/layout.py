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

Also here: the window title (project, unsaved marker and the pending-approval badge with
the time left, set through the bundled GLFW), the status bar's badge, the keyboard
(Ctrl+S saves, Ctrl+Q quits, keyboard navigation with a visible focus), the quit dialog
when the project could not be saved, fonts with CJK and emoji glyphs (`theme.load_fonts`),
and the layout's adaptation to the window size (`adapt_layout`).

Every panel is `draw(state[, actions][, view])` (docs/guide_gui.md, "Panels"):
`state` is the plain object the window shows, `actions` a Protocol of what it
may call (the App, `ContextState` or `CommsLog` satisfy them; mypy checks it
here, where each panel is mounted), `view` the window's own state between
frames, created here with the window.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from imgui_bundle import hello_imgui, imgui, immapp

from gui import (
    layout_fit,
    panel_approvals,
    panel_budget,
    panel_changes,
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
    widgets,
)

if TYPE_CHECKING:
    from gui_2 import App

APP_TITLE = "MMA Desk"
DEFAULT_WINDOW_SIZE = (1280, 800)
QUIT_POPUP = "Quit without saving?"
FPS_MAX = 60
MOCK_BANNER = "Offline mock provider — set GEMINI_API_KEY or ANTHROPIC_API_KEY for real models"

WIN_MMA = "MMA Dashboard"
WIN_DAG = "Ticket DAG"
WIN_STREAMS = "Tier Streams"
WIN_USAGE = "Usage & Cost"
WIN_APPROVALS = "Approvals"
WIN_DIAGNOSTICS = "Diagnostics"
WIN_CHANGES = panel_changes.WIN_CHANGES
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
                            + (f" · {app.mma.active_tier}" if app.mma.active_tier else ""))
        badge = approvals_badge(app)
        if badge:
            imgui.same_line()
            imgui.text_colored(theme.RUN_STATUS_COLORS["planning"], badge)
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
        message = widgets.fit_text(message, avail * 0.55)
        hint = widgets.fit_text(hint, avail * 0.45 - imgui.get_style().item_spacing.x)
    imgui.text_colored(theme.ERROR_TEXT, widgets.fit_text(message, avail))
    if imgui.is_item_hovered():
        imgui.set_tooltip(err["message"] + ("\n\n" + err["hint"] if err.get("hint") else ""))
    if hint:
        imgui.same_line()
        imgui.text_colored(theme.HINT_TEXT, hint)
        if imgui.is_item_hovered():
            imgui.set_tooltip(err["hint"])




def approvals_badge(app: App) -> str:
    """"2 approvals pending · 4:31 left" (the oldest's time before it times out), or ""."""
    pending = list(app.mma.pending_approvals.values())
    if not pending:
        return ""
    oldest = min(a.created_at for a in pending)
    left = panel_approvals.time_left(oldest, app.approval_timeout_s, time.time())
    return f"{len(pending)} approval{'s' if len(pending) > 1 else ''} pending · {left}"


def window_title(app: App) -> str:
    """The OS window's title: project, unsaved marker, pending approvals."""
    title = f"{APP_TITLE} — {app.project_dir.name}" + (" •" if app.ctx.unsaved else "")
    badge = approvals_badge(app)
    return f"({len(app.mma.pending_approvals)}) {title} — {badge}" if badge else title


def _menus(app: App) -> None:
    if imgui.begin_menu("File"):
        if imgui.menu_item("Save project", "Ctrl+S", False)[0]:
            app.ui(app.save_project)
        imgui.separator()
        if imgui.menu_item("Quit", "Ctrl+Q", False)[0]:
            app.quit_from_menu()
        imgui.end_menu()
    rp = app._runner_params
    if rp is not None:               # hello_imgui's View menu, after File as menus usually go
        hello_imgui.show_view_menu(rp)


def _quit_dialog(app: App) -> None:
    """File > Quit when the project file could not take the unsaved changes."""
    if app.quit_prompt and not imgui.is_popup_open(QUIT_POPUP):
        widgets.ask(QUIT_POPUP)
    reason = app.ctx.autosave.error or "the project file could not be written"
    chosen = widgets.dialog(QUIT_POPUP, f"Your changes are not saved: {reason}.",
                            ("Save anyway", "Discard and quit"),
                            "Save anyway overwrites mma_project.toml (a copy of a broken file is kept).",
                            danger="Discard and quit")
    if chosen == "Save anyway":
        app.quit_prompt = False
        if app.ctx.save(overwrite_broken=True):
            app.request_quit()
    elif chosen == "Discard and quit":
        app.discard_and_quit()
    elif chosen == widgets.CANCEL:
        app.quit_prompt = False


def _status_bar(app: App) -> None:
    done = sum(1 for t in app.mma.active_tickets if t.get("status") == "completed")
    imgui.text(f"MMA {app.mma.mma_status} | tickets {done}/{len(app.mma.active_tickets)} | "
               f"workers {app.workers_busy()} | ")
    imgui.same_line(0, 0)
    badge = approvals_badge(app)
    if badge:
        imgui.text_colored(theme.RUN_STATUS_COLORS["planning"], badge)
    else:
        imgui.text("approvals 0")
    imgui.same_line(0, 0)
    imgui.text(f" | project {app.ctx.autosave.status()} | "
               f"queue {app.gui_queue_depth + app.event_queue.qsize()} | "
               f"{app.stats.fps():.0f} FPS ({'idling' if app.idling_enabled else 'live'})")


def _diagnostics(app: App) -> panel_diagnostics.DiagnosticsReport:
    return panel_diagnostics.DiagnosticsReport(
        performance=app.compute_performance(), frame_times_ms=app.stats.frame_times_ms, hook_url=app.hook_url,
        unknown_events=app.mma.unknown_events, event_counts=app.mma.event_counts)


def _shortcuts(app: App) -> None:
    """Keyboard shortcuts and the per-frame chrome that is not a window."""
    if imgui.is_key_chord_pressed(imgui.Key.mod_ctrl | imgui.Key.s):
        app.ui(app.save_project)
    if imgui.is_key_chord_pressed(imgui.Key.mod_ctrl | imgui.Key.q):
        app.quit_from_menu()
    _quit_dialog(app)
    title = window_title(app)
    if title != app.views.get("title"):
        app.views["title"] = title
        theme.set_window_title(title)
    layout_fit.adapt_layout(app)


def build_runner_params(app: App, window_size: tuple[int, int] | None = DEFAULT_WINDOW_SIZE, *,
                        ini_disable: bool = False, title: str = APP_TITLE):
    """hello_imgui RunnerParams with the docking layout, chrome and per-frame callbacks."""
    rp = hello_imgui.RunnerParams()
    rp.app_window_params.window_title = title
    size = window_size or DEFAULT_WINDOW_SIZE
    rp.app_window_params.window_geometry.size = (int(size[0]), int(size[1]))
    rp.ini_disable = ini_disable
    if not ini_disable:
        # Per user: ~/.config/mma-desk/mma_desk.ini keeps the layout and, unless --window-size
        # says otherwise, the window's size and place.
        rp.ini_folder_type = hello_imgui.IniFolderType.app_user_config_folder
        rp.ini_filename = "mma-desk/mma_desk.ini"
        rp.app_window_params.restore_previous_geometry = window_size is None
    theme.apply_dark_theme(rp)
    rp.callbacks.load_additional_fonts = theme.load_fonts
    rp.callbacks.setup_imgui_config = theme.setup_imgui_config

    wp = rp.imgui_window_params
    wp.default_imgui_window_type = hello_imgui.DefaultImGuiWindowType.provide_full_screen_dock_space
    wp.enable_viewports = False
    wp.show_menu_bar = True
    wp.show_menu_app = False
    wp.show_menu_view = False       # drawn by _menus after File (hello_imgui would put it first)
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
    dashboard_view, approvals_view = panel_mma_dashboard.DashboardView(), panel_approvals.ApprovalsView()
    app.views.update(dashboard=dashboard_view, approvals=approvals_view, streams=streams_view)

    def before_exit() -> None:
        panel_dag.destroy_editor(dag_view)
        app.shutdown()
    cb.before_exit = before_exit

    splits = []

    def split(initial: str, new: str, direction, ratio: float) -> None:
        s = hello_imgui.DockingSplit()
        s.initial_dock, s.new_dock, s.direction, s.ratio = initial, new, direction, ratio
        splits.append(s)
    for initial, new, direction, ratio in layout_fit.SPLITS:
        split(initial, new, getattr(imgui.Dir, direction), ratio)
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
    window(WIN_MMA, lambda: panel_mma_dashboard.draw(app.mma, app, dashboard_view), "MainDockSpace", focus=True)
    window(WIN_DIAGNOSTICS, lambda: panel_diagnostics.draw(_diagnostics(app)), "RightSpace")
    window(WIN_APPROVALS, lambda: panel_approvals.draw(app.mma, app, approvals_view), "RightSpace", focus=True)
    window(WIN_STREAMS, lambda: panel_streams.draw(app.mma, streams_view), "BottomSpace", focus=True)
    window(WIN_CHANGES, lambda: panel_changes.draw(app.changes, app), "MainDockSpace")
    rp.docking_params.dockable_windows = windows

    addons = immapp.AddOnsParams(with_implot=True, with_markdown=True)
    return rp, addons
