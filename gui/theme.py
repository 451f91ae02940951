"""Colours and the dark theme, in one place so every panel agrees."""
from __future__ import annotations

from imgui_bundle import hello_imgui

Color = tuple[float, float, float, float]

STATUS_COLORS: dict[str, Color] = {
    "todo": (0.62, 0.64, 0.68, 1.0),
    "in_progress": (0.36, 0.66, 1.00, 1.0),
    "completed": (0.35, 0.80, 0.42, 1.0),
    "blocked": (0.95, 0.36, 0.33, 1.0),
}
RUN_STATUS_COLORS: dict[str, Color] = {
    "idle": (0.62, 0.64, 0.68, 1.0),
    "planning": (0.95, 0.75, 0.30, 1.0),
    "tracks_ready": (0.95, 0.75, 0.30, 1.0),
    "running": (0.36, 0.66, 1.00, 1.0),
    "completed": (0.35, 0.80, 0.42, 1.0),
    "blocked": (0.95, 0.36, 0.33, 1.0),
    "aborted": (0.95, 0.55, 0.30, 1.0),
    "error": (0.95, 0.36, 0.33, 1.0),
}
BANNER_BG: Color = (0.45, 0.33, 0.05, 1.0)
BANNER_TEXT: Color = (1.0, 0.86, 0.45, 1.0)
ERROR_TEXT: Color = (1.0, 0.45, 0.42, 1.0)
HINT_TEXT: Color = (0.80, 0.80, 0.72, 1.0)
MUTED_TEXT: Color = (0.60, 0.62, 0.66, 1.0)
CRITICAL_LINK: Color = (1.0, 0.62, 0.20, 1.0)
NORMAL_LINK: Color = (0.60, 0.62, 0.68, 0.9)


def status_color(status: str | None) -> Color:
    return STATUS_COLORS.get(status or "", RUN_STATUS_COLORS.get(status or "", MUTED_TEXT))


def apply_dark_theme(runner_params: hello_imgui.RunnerParams) -> None:
    tweaked = runner_params.imgui_window_params.tweaked_theme
    tweaked.theme = hello_imgui.ImGuiTheme_.darcula_darker
    runner_params.imgui_window_params.tweaked_theme = tweaked
