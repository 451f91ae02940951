"""Project panel: which files (and in which view mode) and screenshots go to the model.

`draw(state, actions)` draws into the current window (the app mounts it in a
dockable window): `state` is the `ContextState` it shows (its text boxes,
`state.inputs`, are edited in place), `actions` (`ProjectActions`) the
commands it calls -- the same `ContextState` satisfies both.

The panel fits a narrow column (a quarter of a 1024 px window): the path box has its own
line, the table's path column takes the free width (long paths are cut at the front, whole
on hover), a glob row says how many files it matched and how many an earlier row already
has (overlap), with the matches on hover.  *Browse* opens the file picker
(gui/panel_file_picker.py).  The line under the buttons says whether everything is saved
(autosave); *Reload* asks before it discards changes not saved yet.

Widget labels tests rely on: "##project_folder", "Open", "Reload" (then "//$FOCUSED/Discard
and reload"), "Save project", "Save anyway", "##new_file_path", "Browse##files", "##new_file_mode",
"Add file", table "files_table" with per-row combos "##mode_<i>" and buttons
"x##file_<i>", "##screenshot_path", "Add screenshot", "Remove##shot_<i>".
(Combos are only found by full path, e.g. "//Project/files_table/##mode_0".)
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol

from imgui_bundle import imgui

from gui import panel_file_picker, theme, widgets
from gui.context_build import Preview
from gui.context_state import ContextState
from project import FILE_MODES

ERROR_COLOR = imgui.ImVec4(*theme.ERROR_TEXT)
DIM_COLOR = imgui.ImVec4(*theme.MUTED_TEXT)
HINT_COLOR = imgui.ImVec4(*theme.HINT_TEXT)
MODE_HELP = {
    "full": "the file as it is on disk",
    "skeleton": "imports, signatures, doc comments; bodies become ... (Python, JS/TS, Go, Rust, Java, C/C++, C#)",
    "curated": "skeleton plus full bodies of functions marked [HOT] in a comment (Python: or @core_logic)",
    "outline": "one line per class/function with line ranges",
}


class ErrorActions(Protocol):
    def clear_errors(self, sources: Iterable[str] | None = None) -> None: ...


class ProjectActions(ErrorActions, Protocol):
    def open_project(self, project_dir: str | os.PathLike) -> bool: ...
    def save(self, overwrite_broken: bool = False) -> bool: ...
    def reload(self) -> bool: ...
    def add_file(self, path: str, mode: str = "full") -> bool: ...
    def set_file_mode(self, index_or_path: int | str, mode: str) -> bool: ...
    def remove_file(self, index_or_path: int | str) -> bool: ...
    def add_screenshot(self, path: str) -> bool: ...
    def remove_screenshot(self, index: int) -> bool: ...
    def request_preview(self, path: str, mode: str) -> Preview | None: ...


RELOAD_POPUP = "Discard unsaved changes?"

def mode_combo(label: str, current: str, width: float = 110.0) -> str | None:
    """A view-mode combo; returns the newly chosen mode or None."""
    chosen = None
    imgui.set_next_item_width(width)
    if imgui.begin_combo(label, current):
        for mode in FILE_MODES:
            if imgui.selectable(mode, mode == current)[0] and mode != current:
                chosen = mode
            imgui.set_item_tooltip(MODE_HELP.get(mode, ""))
        imgui.end_combo()
    return chosen


def draw_errors(state: ContextState, actions: ErrorActions, sources: tuple[str, ...], label: str) -> None:
    """The recent errors of some sources, newest last, with a Clear button."""
    errors = [e for e in state.errors if e.source in sources]
    if not errors:
        return
    for err in errors[-4:]:
        imgui.push_style_color(imgui.Col_.text, ERROR_COLOR)
        imgui.text_wrapped(f"{err.source}: {err.message}")
        imgui.pop_style_color()
        if err.hint:
            imgui.push_style_color(imgui.Col_.text, HINT_COLOR)
            imgui.text_wrapped(f"  {err.hint}")
            imgui.pop_style_color()
    if imgui.small_button(f"Clear errors##{label}"):
        actions.clear_errors(sources)


def _fit_front(text: str, width: float) -> str:
    """`text` cut at the front ("...pkg/mod.py") to fit `width` pixels: the file name stays."""
    if imgui.calc_text_size(text).x <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi) // 2
        if imgui.calc_text_size("..." + text[mid:]).x <= width:
            hi = mid
        else:
            lo = mid + 1
    return "..." + text[lo:]


def _fmt(n: int) -> str:
    return f"{n:,}"


def draw(state: ContextState, actions: ProjectActions) -> None:
    inputs = state.inputs
    # -- project folder ------------------------------------------------------------
    imgui.text("Project:")
    imgui.same_line()
    imgui.text_colored(DIM_COLOR, str(state.project_dir))
    if state.project_error:
        imgui.push_style_color(imgui.Col_.text, ERROR_COLOR)
        imgui.text_wrapped(f"Project file problem (working from the last good settings): "
                           f"{state.project_error}")
        imgui.pop_style_color()
    imgui.set_next_item_width(-imgui.calc_text_size("Open").x - 2 * imgui.get_style().frame_padding.x
                              - imgui.get_style().item_spacing.x)
    entered, inputs.open_path = imgui.input_text_with_hint(
        "##project_folder", "project folder", inputs.open_path, imgui.InputTextFlags_.enter_returns_true)
    imgui.same_line()
    if imgui.button("Open") or entered:
        actions.open_project(inputs.open_path)
    if imgui.button("Save project"):
        actions.save()
    imgui.same_line()
    if imgui.button("Reload"):
        if state.unsaved:
            widgets.ask(RELOAD_POPUP)
        else:
            actions.reload()
    if widgets.dialog(RELOAD_POPUP, "Reload reads mma_project.toml again; the changes made since "
                      "it was last saved are lost.", ("Discard and reload",),
                      danger="Discard and reload") == "Discard and reload":
        actions.reload()
    imgui.same_line()
    status = state.autosave.status()
    imgui.text_colored(ERROR_COLOR if state.autosave.error else DIM_COLOR, status)
    imgui.set_item_tooltip("The project saves itself a moment after each change, and on quit.")
    if state.save_blocked:
        imgui.same_line()
        if imgui.button("Save anyway"):
            actions.save(overwrite_broken=True)
        imgui.set_item_tooltip("overwrite the broken project file; a .broken-<time> copy is kept")
    draw_errors(state, actions, ("project", "provider"), "project")

    # -- files ---------------------------------------------------------------------
    imgui.separator_text("Files")
    browse_w = imgui.calc_text_size("Browse").x + imgui.get_style().frame_padding.x * 2
    imgui.set_next_item_width(-browse_w - imgui.get_style().item_spacing.x)
    entered, inputs.new_file_path = imgui.input_text_with_hint(
        "##new_file_path", "path or glob", inputs.new_file_path, imgui.InputTextFlags_.enter_returns_true)
    imgui.set_item_tooltip("relative to the project folder, e.g. src/app.py or src/**/*.py")
    imgui.same_line()
    if imgui.button("Browse##files"):
        inputs.picker_open = not inputs.picker_open
    imgui.set_item_tooltip("pick files and folders from a tree, preview any file")
    new_mode = mode_combo("##new_file_mode", inputs.new_file_mode, 95)
    if new_mode:
        inputs.new_file_mode = new_mode
    imgui.same_line()
    if (imgui.button("Add file") or entered) and actions.add_file(inputs.new_file_path, inputs.new_file_mode):
        inputs.new_file_path = ""
    if state.building:
        imgui.same_line()
        done, total = state.build_progress or (0, 0)
        imgui.text_colored(DIM_COLOR, f"measuring {done:,}/{total:,}" if total else "measuring…")
    if inputs.picker_open:
        panel_file_picker.draw(state, actions)

    # Rows are recomputed at the next poll(); until then a changed entry shows "…".
    rows = {(r.path, r.mode): r for r in state.file_rows}
    flags = (imgui.TableFlags_.borders_inner_h | imgui.TableFlags_.row_bg
             | imgui.TableFlags_.sizing_stretch_prop)
    mode_w = imgui.calc_text_size("skeleton").x + imgui.get_frame_height() + imgui.get_style().frame_padding.x * 2
    if imgui.begin_table("files_table", 4, flags):
        imgui.table_setup_column("File", imgui.TableColumnFlags_.width_stretch)
        imgui.table_setup_column("Mode", imgui.TableColumnFlags_.width_fixed, mode_w)
        imgui.table_setup_column("Tokens", imgui.TableColumnFlags_.width_fixed,
                                 imgui.calc_text_size("999,999").x)
        imgui.table_setup_column("##remove", imgui.TableColumnFlags_.width_fixed,
                                 imgui.calc_text_size("x").x + imgui.get_style().frame_padding.x * 2)
        imgui.table_headers_row()
        remove = None
        for i, entry in enumerate(state.config.files):
            row = rows.get((entry.path, entry.mode))
            imgui.table_next_row()
            imgui.table_next_column()
            note = ""
            if row is not None and row.n_files != 1 and not row.errors:
                note = f" ({row.n_files} files" + (f", {row.overlaps} already above" if row.overlaps else "") + ")"
            width = imgui.get_content_region_avail().x - (imgui.calc_text_size("(!)").x if row and row.errors else 0)
            imgui.text(_fit_front(entry.path + note, width))
            if imgui.is_item_hovered():
                matches = row.matches[:30] if row is not None else []
                more = f"\n... and {row.n_files - len(matches)} more" if row is not None and row.n_files > len(matches) else ""
                overlap = (f"\n{row.overlaps} of its files are also named by an earlier row: they are sent "
                           "once, in the earlier row's mode") if row is not None and row.overlaps else ""
                imgui.set_tooltip(entry.path + overlap + ("\n\n" + "\n".join(matches) + more
                                                          if matches and matches != [entry.path] else ""))
            if row is not None and row.errors:
                imgui.same_line()
                imgui.text_colored(ERROR_COLOR, "(!)")
                imgui.set_item_tooltip("\n".join(row.errors))
            imgui.table_next_column()
            chosen = mode_combo(f"##mode_{i}", entry.mode, -1)
            if chosen:
                actions.set_file_mode(i, chosen)
            imgui.table_next_column()
            imgui.text(_fmt(row.tokens) if row is not None else "…")
            imgui.table_next_column()
            if imgui.small_button(f"x##file_{i}"):
                remove = i
            imgui.set_item_tooltip(f"remove {entry.path} from the context")
        imgui.end_table()
        if remove is not None:
            actions.remove_file(remove)
    if not state.config.files:
        imgui.text_colored(DIM_COLOR, "No files yet: add a path or a glob above.")
    draw_errors(state, actions, ("files",), "files")

    # -- screenshots -----------------------------------------------------------------
    imgui.separator_text("Screenshots")
    imgui.set_next_item_width(-120)
    entered, inputs.screenshot_path = imgui.input_text_with_hint(
        "##screenshot_path", "image path (png, jpg, ...)", inputs.screenshot_path,
        imgui.InputTextFlags_.enter_returns_true)
    imgui.same_line()
    if (imgui.button("Add screenshot") or entered) and actions.add_screenshot(inputs.screenshot_path):
        inputs.screenshot_path = ""
    remove = None
    for i, shot in enumerate(state.config.screenshots):
        if imgui.small_button(f"Remove##shot_{i}"):
            remove = i
        imgui.same_line()
        imgui.text(shot)
    if remove is not None:
        actions.remove_screenshot(remove)
    draw_errors(state, actions, ("screenshots",), "screenshots")
