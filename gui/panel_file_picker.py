"""The file picker beside the Project panel's path box, and the preview of a file.

`draw(state, actions)` draws, inside the Project window (when *Browse* is on): a filter box,
then the project's folders and files as a tree with a checkbox each.  A checked file is a
`[[files]]` entry (in the mode chosen next to *Add file*); checking a folder adds the glob
`<folder>/**/*`; a file that a glob already brings in shows checked and greyed, with the
glob on hover.  Clicking a file's name previews it below in any view mode (full / skeleton /
curated / outline) with its token count, computed off the GUI thread.

Labels ("/" in a path becomes "|" in an id, since the Test Engine splits references at "/"):
"##picker_filter", "Rescan##picker", folders "##pick_dir:<path>" (checkbox) and tree nodes
"<name>##dir:<path>", files "##pick:<path>" (checkbox) and "<name>##name:<path>" (selectable:
preview), the preview's mode combo "##preview_mode" and "Close##preview"; e.g. the checkbox
of src/app.py is "//Project/##picker/src##dir:src/##pick:src|app.py".
"""
from __future__ import annotations

from typing import Protocol

from imgui_bundle import imgui

from gui import theme
from gui.context_build import Preview
from gui.context_state import ContextState
from project import FILE_MODES

PICKER_LINES = 12
PREVIEW_LINES = 14


class PickerActions(Protocol):
    def add_file(self, path: str, mode: str = "full") -> bool: ...
    def remove_file(self, index_or_path: int | str) -> bool: ...
    def request_preview(self, path: str, mode: str) -> Preview | None: ...


def _glob_of(folder: str) -> str:
    return f"{folder}/**/*"


def item_id(path: str) -> str:
    return path.replace("/", "|")


def draw(state: ContextState, actions: PickerActions) -> None:
    tree = state.file_tree
    tree.ensure()
    inputs = state.inputs
    imgui.set_next_item_width(-imgui.calc_text_size("Rescan").x - imgui.get_style().frame_padding.x * 2
                              - imgui.get_style().item_spacing.x)
    _, inputs.picker_filter = imgui.input_text_with_hint("##picker_filter", "filter files", inputs.picker_filter)
    imgui.same_line()
    if imgui.small_button("Rescan##picker"):
        tree.rescan()
    explicit = {f.path for f in state.config.files}
    via_glob: dict[str, str] = {}
    for row in state.file_rows:
        if row.path not in explicit or "*" in row.path:
            for m in row.matches:
                via_glob.setdefault(m, row.path)
    height = imgui.get_text_line_height_with_spacing() * PICKER_LINES
    imgui.begin_child("##picker", imgui.ImVec2(0, height), imgui.ChildFlags_.borders)
    if inputs.picker_filter.strip():
        hits = tree.matches(inputs.picker_filter)
        for path in hits:
            _file(state, actions, path, path, explicit, via_glob)
        if not hits:
            imgui.text_disabled("no file matches")
    else:
        _folder(state, actions, "", explicit, via_glob)
    if tree.truncated:
        imgui.text_colored(theme.RUN_STATUS_COLORS["aborted"], "(only the first files are listed)")
    imgui.end_child()
    _preview(state, actions)


def _folder(state: ContextState, actions: PickerActions, folder: str, explicit: set[str],
            via_glob: dict[str, str]) -> None:
    subfolders, files = state.file_tree.children(folder)
    parts = folder.split("/") if folder else []
    inherited = next((g for g in (_glob_of("/".join(parts[:i])) for i in range(len(parts), 0, -1))
                      if g in explicit), None)
    for sub in subfolders:
        glob = _glob_of(sub)
        checked = glob in explicit or inherited is not None
        imgui.begin_disabled(inherited is not None and glob not in explicit)
        changed, value = imgui.checkbox(f"##pick_dir:{item_id(sub)}", checked)
        imgui.end_disabled()
        if changed:
            if value:
                actions.add_file(glob, state.inputs.new_file_mode)
            else:
                actions.remove_file(glob)
        if imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
            imgui.set_tooltip(f"in the context through {inherited}" if inherited and glob not in explicit
                              else f"{'remove' if checked else 'add'} the glob {glob}")
        imgui.same_line()
        if imgui.tree_node(f"{sub.rsplit('/', 1)[-1]}##dir:{item_id(sub)}"):
            _folder(state, actions, sub, explicit, via_glob)
            imgui.tree_pop()
    for path in files:
        _file(state, actions, path, path.rsplit("/", 1)[-1], explicit, via_glob)


def _file(state: ContextState, actions: PickerActions, path: str, name: str, explicit: set[str],
          via_glob: dict[str, str]) -> None:
    glob = via_glob.get(path)
    checked = path in explicit or glob is not None
    imgui.begin_disabled(glob is not None and path not in explicit)
    changed, value = imgui.checkbox(f"##pick:{item_id(path)}", checked)
    imgui.end_disabled()
    if glob is not None and path not in explicit:
        if imgui.is_item_hovered(imgui.HoveredFlags_.allow_when_disabled):
            imgui.set_tooltip(f"in the context through {glob}")
    if changed:
        if value:
            actions.add_file(path, state.inputs.new_file_mode)
        else:
            actions.remove_file(path)
    imgui.same_line()
    if imgui.selectable(f"{name}##name:{item_id(path)}", state.inputs.preview_path == path)[0]:
        state.inputs.preview_path = path


def _preview(state: ContextState, actions: PickerActions) -> None:
    path = state.inputs.preview_path
    if not path:
        imgui.text_disabled("Click a file's name to preview it in each view mode.")
        return
    if imgui.small_button("Close##preview"):
        state.inputs.preview_path = ""
        return
    imgui.same_line()
    imgui.set_next_item_width(100)
    if imgui.begin_combo("##preview_mode", state.inputs.preview_mode):
        for mode in FILE_MODES:
            if imgui.selectable(mode, mode == state.inputs.preview_mode)[0]:
                state.inputs.preview_mode = mode
        imgui.end_combo()
    preview = actions.request_preview(path, state.inputs.preview_mode)
    imgui.same_line()
    if preview is None:
        imgui.text_disabled("measuring…")
    else:
        imgui.text_colored(theme.HINT_TEXT, f"{preview.tokens:,} tokens")
    imgui.same_line()
    imgui.text_disabled(path)
    imgui.set_item_tooltip(path)
    if preview is None:
        return
    if preview.error:
        imgui.text_colored(theme.ERROR_TEXT, preview.error)
        return
    imgui.input_text_multiline("##preview_text", preview.text,
                               imgui.ImVec2(-1, imgui.get_text_line_height() * PREVIEW_LINES),
                               imgui.InputTextFlags_.read_only)
