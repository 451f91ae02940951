"""Colours, the dark theme, fonts and the window title, in one place so every panel agrees."""
from __future__ import annotations

import ctypes
import importlib
import logging
import os

from imgui_bundle import hello_imgui, imgui

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------- fonts, keyboard, window title
# The size the merged CJK and emoji fonts are loaded at: at 15 their glyphs drew about 70% as
# tall as hello_imgui's default Latin font; 20 matches it (checked on the day_one_cjk_emoji.png
# screenshot of tests/gui/test_day_one.py).
FONT_SIZE = 20.0


def fallback_font_paths() -> list[str]:
    """Fonts merged after the default one so CJK text and emoji render: Noto Sans CJK (the
    `noto-cjk-sans-jp-regular` package, all CJK ideographs, kana and hangul) and the
    monochrome Noto Emoji that imgui_bundle ships with its demos."""
    paths = []
    try:
        cjk = importlib.import_module("noto_cjk_sans_jp_regular")
        paths.append(str(cjk.FONT_PATH))
    except ImportError:
        log.warning("noto-cjk-sans-jp-regular is not installed: CJK text shows as '?'")
    import imgui_bundle
    emoji = os.path.join(os.path.dirname(imgui_bundle.__file__), "demos_assets", "fonts", "NotoEmoji-Regular.ttf")
    if os.path.isfile(emoji):
        paths.append(emoji)
    else:
        log.warning("imgui_bundle's NotoEmoji-Regular.ttf is missing: emoji show as '?'")
    return paths


def load_fonts() -> None:
    """hello_imgui's `load_additional_fonts`: the default font (with Font Awesome icons), then
    the CJK and emoji fonts merged into it (ImGui 1.92 loads glyphs on first use)."""
    hello_imgui.imgui_default_settings.load_default_font_with_font_awesome_icons()
    for path in fallback_font_paths():
        params = hello_imgui.FontLoadingParams(merge_to_last_font=True, inside_assets=False)
        hello_imgui.load_font(path, FONT_SIZE, params)


def setup_imgui_config() -> None:
    """hello_imgui's `setup_imgui_config`: its defaults plus keyboard navigation (Tab moves the
    focus, which is drawn as a visible frame; Escape closes popups and dialogs)."""
    hello_imgui.imgui_default_settings.setup_default_imgui_config()
    io = imgui.get_io()
    io.config_flags |= imgui.ConfigFlags_.nav_enable_keyboard
    io.config_nav_cursor_visible_auto = True


def set_window_title(title: str) -> None:
    """The OS window's title, through the GLFW library imgui_bundle ships (no-op without a window)."""
    get_address = getattr(hello_imgui, "get_glfw_window_address", None)   # not in the stubs
    if get_address is None:
        return
    try:
        address = get_address()
    except RuntimeError:
        return
    if not address:
        return
    import imgui_bundle
    lib = _glfw.get("lib")
    if lib is None:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(imgui_bundle.__file__), "libglfw.so.3"))
        lib.glfwSetWindowTitle.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.glfwSetWindowTitle.restype = None
        _glfw["lib"] = lib
    lib.glfwSetWindowTitle(ctypes.c_void_p(address), title.encode("utf-8"))


_glfw: dict[str, ctypes.CDLL] = {}
