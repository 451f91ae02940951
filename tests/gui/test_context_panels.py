"""The context panels driven by the Dear ImGui Test Engine (real clicks and typing under Xvfb).

A small harness mounts the four panels in plain imgui windows inside an 800x600
viewport and, like the app, calls `state.poll()` and `comms.drain()` every frame.
Everything runs on the offline mock provider.
"""
from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

import pytest
from imgui_bundle import imgui
from imgui_bundle.immapp import testing

import ai_client
import providers
from gui import panel_budget, panel_comms, panel_discussion, panel_project
from gui.comms_log import CommsLog
from gui.context_state import ContextState
from providers.mock import MockAdapter

pytestmark = pytest.mark.usefixtures("xvfb_display")

WINDOW = (800, 600)
APP_PY = '''"""A small module."""
import os


class Greeter:
    """Says hello."""

    def greet(self, name: str) -> str:
        words = ["hello", name]
        for i in range(3):
            words.append(str(i) * 10)
        return " ".join(words)


def main() -> int:
    greeter = Greeter()
    text = greeter.greet(os.environ.get("USER", "you"))
    return len(text)
'''


def _png(width: int = 4, height: int = 3) -> bytes:
    raw = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MMA_MOCK_CHUNK_DELAY", "0")
    monkeypatch.delenv("MMA_PROVIDER", raising=False)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "app.py").write_text(APP_PY)
    (root / "notes.md").write_text("# Notes\n\nThe greeter must stay polite.\n")
    (root / "shot.png").write_bytes(_png())
    return root


class HalfwayGateAdapter(MockAdapter):
    """The mock provider, pausing after 3 streamed chunks until `gate` is set."""
    gate = threading.Event()

    def generate(self, request, on_chunk=None):
        count = 0

        def chunk(text: str) -> None:
            nonlocal count
            on_chunk(text)
            count += 1
            if count == 3 and not HalfwayGateAdapter.gate.wait(20):
                raise TimeoutError("the test never released the stream")
        return super().generate(request, chunk if on_chunk else None)


class Harness:
    """The four panels in fixed windows, as the app's docked windows would host them."""

    def __init__(self, root: Path, artifacts: str = ""):
        self.artifacts = artifacts
        self.state = ContextState(root, provider="mock")
        self.comms = CommsLog()
        self.comms.install()
        self.frames = 0

    def gui(self) -> None:
        self.frames += 1
        self.comms.drain()
        self.state.poll()
        layout = {
            "Project": ((0, 0), (400, 310), lambda: panel_project.draw(self.state, self.state)),
            "Budget": ((0, 310), (400, 290), lambda: panel_budget.draw(self.state)),
            "Discussion": ((400, 0), (400, 360), lambda: panel_discussion.draw(self.state, self.state)),
            "Comms": ((400, 360), (400, 240), lambda: panel_comms.draw(self.comms, self.comms)),
        }
        for name, (pos, size, draw) in layout.items():
            imgui.set_next_window_pos(imgui.ImVec2(*pos), imgui.Cond_.always)
            imgui.set_next_window_size(imgui.ImVec2(*size), imgui.Cond_.always)
            if imgui.begin(name, None, imgui.WindowFlags_.no_collapse)[0]:
                draw()
            imgui.end()

    def run(self, test_fn, with_markdown: bool = True) -> None:
        try:
            testing.run(self.gui, test_fn, window_size=WINDOW, with_markdown=with_markdown,
                        fps_idle=0)
        finally:
            self.comms.uninstall()
            self.state.close()

    def wait(self, ctx, predicate, frames: int = 600) -> None:
        """Let frames run until `predicate()` holds (fails the test after `frames` frames)."""
        for _ in range(frames):
            if predicate():
                return
            ctx.yield_()
        assert predicate(), "condition not reached while frames ran"


def _select(ctx, combo_ref: str, item: str) -> None:
    """Open a combo by its full reference and pick an item from its popup."""
    ctx.item_click(combo_ref)
    ctx.item_click(f"//$FOCUSED/{item}")


def _in_history(ctx) -> None:
    """Refer to items inside the discussion's "history" child window.

    Direct references (not `//**/` wildcards) also reach entries scrolled out of view:
    the engine finds them by ID and scrolls them in before clicking."""
    ctx.set_ref(ctx.window_info("//Discussion/history").window)


def _type_into(ctx, ref: str, text: str) -> None:
    """Click a text box and replace its text (no Enter, unlike item_input_value)."""
    ctx.item_click(ref)
    ctx.key_chars_replace(text)


def _add_file_via_gui(ctx, path: str) -> None:
    _type_into(ctx, "//**/##new_file_path", path)
    ctx.item_click("//**/Add file")


def test_add_file_then_change_mode(project):
    h = Harness(project)
    seen = {}

    def t(ctx):
        _add_file_via_gui(ctx, "app.py")
        h.wait(ctx, lambda: len(h.state.file_rows) == 1)
        seen["full"] = h.state.snapshot()["files"][0]
        _select(ctx, "//Project/files_table/##mode_0", "skeleton")
        h.wait(ctx, lambda: h.state.file_rows and h.state.file_rows[0].mode == "skeleton")
        seen["skeleton"] = h.state.snapshot()["files"][0]
        _select(ctx, "//Project/files_table/##mode_0", "outline")
        h.wait(ctx, lambda: h.state.file_rows[0].mode == "outline")
        seen["outline"] = h.state.snapshot()["files"][0]

    h.run(t)
    assert h.state.config.files[0].path == "app.py"
    assert h.state.config.files[0].mode == "outline"
    assert seen["full"]["mode"] == "full" and seen["full"]["tokens"] > 0
    assert seen["skeleton"]["mode"] == "skeleton"
    assert 0 < seen["skeleton"]["tokens"] < seen["full"]["tokens"]
    assert 0 < seen["outline"]["tokens"] < seen["skeleton"]["tokens"]
    assert h.state.inputs.new_file_path == ""          # the box clears after a successful add
    assert not h.state.errors


def test_add_missing_file_shows_error_and_adds_nothing(project):
    h = Harness(project)

    def t(ctx):
        _add_file_via_gui(ctx, "nope.py")
        ctx.yield_(2)

    h.run(t)
    assert h.state.config.files == []
    assert [e.message for e in h.state.errors] == ["no such file: nope.py"]
    assert h.state.inputs.new_file_path == "nope.py"     # kept so it can be corrected


def test_budget_panel_reflects_added_file(project):
    h = Harness(project)
    seen = {}

    def t(ctx):
        ctx.yield_(2)
        seen["before"] = h.state.budget()
        _add_file_via_gui(ctx, "app.py")
        h.wait(ctx, lambda: h.state.budget()["by_source"]["files"] > 0)
        seen["after"] = h.state.budget()
        _type_into(ctx, "//**/##screenshot_path", "shot.png")
        ctx.item_click("//**/Add screenshot")
        h.wait(ctx, lambda: h.state.budget()["by_source"]["screenshots"] > 0)
        seen["shot"] = h.state.budget()

    h.run(t)
    before, after, shot = seen["before"], seen["after"], seen["shot"]
    assert before["by_source"]["files"] == 0
    assert before["by_source"]["system"] > 0           # the chat system prompt always counts
    file_tokens = h.state.file_rows[0].tokens
    assert after["by_source"]["files"] == file_tokens
    assert after["total_tokens"] == before["total_tokens"] + file_tokens
    assert after["fraction"] > before["fraction"]
    assert shot["by_source"]["screenshots"] > 0
    assert shot["cache"]["hits"] > after["cache"]["hits"]   # rebuilds reuse cached views
    assert shot["cache"]["parses"] <= 1                # only the trim preview's skeleton parses
    assert not h.state.errors
    assert h.state.refresh_count >= 3                  # rebuilt on change, not every frame
    assert h.state.refresh_count < h.frames / 2


def test_send_message_streams_reply_into_discussion(project, monkeypatch, artifacts_dir):
    # The mock provider, held half-way through its stream until the test has seen the
    # partial reply on screen: deterministic however slow the machine is.
    monkeypatch.setitem(providers.PROVIDERS, "mock", (__name__, "HalfwayGateAdapter"))
    HalfwayGateAdapter.gate = threading.Event()
    h = Harness(project, artifacts_dir)
    h.state.add_file("notes.md")
    seen = {}

    def t(ctx):
        ctx.item_click("//**/##ai_input")
        ctx.key_chars("What does the greeter do?")
        ctx.item_click("//**/Send")
        h.wait(ctx, lambda: h.state.stream_chunks >= 3)
        ctx.yield_(2)                                  # drawn while streaming
        seen["partial"] = h.state.stream_text
        seen["busy"] = h.state.busy
        seen["entries_mid"] = [e.role for e in h.state.entries]
        testing.capture(ctx, os.path.join(h.artifacts, "context_panels_streaming.png"))
        HalfwayGateAdapter.gate.set()
        h.wait(ctx, lambda: not h.state.busy)
        seen["markdown"] = panel_discussion.markdown_available()

    h.run(t)
    HalfwayGateAdapter.gate.set()
    entries = h.state.entries
    assert seen["busy"] and seen["entries_mid"] == ["user"]
    assert [e.role for e in entries] == ["user", "assistant"]
    assert entries[0].content == "What does the greeter do?"
    reply = entries[1].content
    assert "You said: What does the greeter do?" in reply
    assert seen["partial"] and seen["partial"] != reply and reply.startswith(seen["partial"])
    assert h.state.last_reply == reply and h.state.ai_input == "" and h.state.stream_text == ""
    assert h.state.stream_chunks > 3
    assert seen["markdown"] is True
    assert h.state.last_usage["output_tokens"] > 0


def test_edit_entry_with_edit_button_and_text_input(project):
    h = Harness(project)
    h.state.add_entry("user", "first draft")
    h.state.add_entry("assistant", "an answer")

    def t(ctx):
        _in_history(ctx)
        ctx.item_click("Edit##entry_0")
        ctx.yield_()
        assert h.state.is_editing(0)
        ctx.item_click("##text_0")
        ctx.key_chars_replace("second draft")
        ctx.item_click("Done##entry_0")
        ctx.yield_()
        _select(ctx, "##role_1", "system")

    h.run(t)
    assert h.state.entries[0].content == "second draft"
    assert not h.state.is_editing(0)
    assert h.state.entries[1].role == "system"
    history = [e for e in h.state.bundle.items if e.source == "history"]
    assert [e.label for e in history] == ["discussion[0] user", "discussion[1] system"]


def test_delete_and_reorder_entries(project):
    h = Harness(project)
    for text in ("alpha", "beta", "gamma", "delta"):
        h.state.add_entry("user", text)

    def order():
        return [e.content for e in h.state.entries]

    def t(ctx):
        _in_history(ctx)
        ctx.item_click("Down##entry_0")
        h.wait(ctx, lambda: order()[0] == "beta")
        ctx.item_click("Up##entry_3")
        h.wait(ctx, lambda: order()[2] == "delta")
        ctx.item_click("Delete##entry_1")
        h.wait(ctx, lambda: len(order()) == 3)

    h.run(t)
    assert order() == ["beta", "delta", "gamma"]


def test_comms_log_shows_request_and_response_and_filters(project, artifacts_dir):
    h = Harness(project)
    h.state.add_file("app.py", "skeleton")
    seen = {}

    def t(ctx):
        ctx.item_click("//**/##ai_input")
        ctx.key_chars("hello comms")
        ctx.item_click("//**/Send")
        h.wait(ctx, lambda: not h.state.busy and len(h.comms.rows) >= 2)
        ctx.yield_(2)
        seen["all"] = [(r.direction, r.kind) for r in h.comms.visible()]
        _type_into(ctx, "//**/##comms_filter", "response")
        ctx.yield_()
        seen["text"] = [r.kind for r in h.comms.visible()]
        _type_into(ctx, "//**/##comms_filter", "")
        ctx.yield_()
        _select(ctx, "//Comms/##comms_kind", "request")
        seen["kind"] = [r.kind for r in h.comms.visible()]
        request_seq = h.comms.visible()[0].seq
        # The row spans all (horizontally scrollable) columns: click near its left end.
        rect = ctx.item_info(f"//Comms/comms_table/#{request_seq}").rect_full
        ctx.mouse_move_to_pos(imgui.ImVec2(rect.min.x + 12, (rect.min.y + rect.max.y) / 2))
        ctx.mouse_click(0)
        ctx.yield_(2)
        seen["selected"] = h.comms.selected_payload()
        testing.capture(ctx, os.path.join(artifacts_dir, "context_panels_comms.png"))

    h.run(t)
    assert ("OUT", "request") in seen["all"] and ("IN", "response") in seen["all"]
    assert seen["text"] == ["response"]
    assert seen["kind"] == ["request"]
    assert '"hello comms"' in seen["selected"]
    response = next(r for r in h.comms.rows if r.kind == "response")
    assert response.tokens_in > 0 and response.tokens_out > 0
    assert response.provider == "mock" and response.model == h.state.current_model


def test_provider_model_and_discussion_pickers(project):
    h = Harness(project)
    h.state.add_entry("user", "in main")
    seen = {}

    def t(ctx):
        _select(ctx, "//Discussion/##provider", "anthropic")
        ctx.yield_()
        seen["model"] = h.state.models_for("anthropic")[1]
        _select(ctx, "//Discussion/##model", seen["model"])
        _type_into(ctx, "//**/##new_discussion_name", "feature-x")
        ctx.item_click("//**/New discussion")
        ctx.yield_()
        seen["new"] = (h.state.active_discussion, len(h.state.entries))
        _select(ctx, "//Discussion/##discussion", "main")

    h.run(t)
    assert h.state.current_provider == "anthropic"
    assert h.state.current_model == seen["model"] and seen["model"].startswith("claude-")
    assert h.state.session.provider == "anthropic" and h.state.session.model == seen["model"]
    assert h.state.config.models["Tier 1"].startswith("claude-")
    assert seen["new"] == ("feature-x", 0)
    assert h.state.active_discussion == "main" and h.state.entries[0].content == "in main"
    assert h.state.discussion_names == ["main", "feature-x"]


def test_discussion_renders_without_markdown_runner(project):
    """Without with_markdown the panel falls back to wrapped text instead of crashing."""
    h = Harness(project)
    h.state.add_entry("assistant", "**bold** and `code`")
    seen = {}

    def t(ctx):
        ctx.yield_(3)
        seen["markdown"] = panel_discussion.markdown_available()
        _in_history(ctx)
        ctx.item_click("Edit##entry_0")

    h.run(t, with_markdown=False)
    assert seen["markdown"] is False
    assert h.state.is_editing(0)


def test_screenshot_of_panels(project, artifacts_dir):
    h = Harness(project)
    h.state.add_file("app.py", "curated")
    h.state.add_file("*.md")
    h.state.add_screenshot("shot.png")
    h.state.add_entry("user", "Summarise `Greeter`.")
    h.state.add_entry("assistant", "## Greeter\n\n- `greet(name)` joins **hello** and the name.")
    out = os.path.join(artifacts_dir, "context_panels.png")

    def t(ctx):
        ctx.item_click("//**/##ai_input")
        ctx.key_chars("And main()?")
        ctx.item_click("//**/Send")
        h.wait(ctx, lambda: not h.state.busy and len(h.comms.rows) >= 2)
        ctx.yield_(3)
        testing.capture(ctx, out)

    h.run(t)
    assert Path(out).stat().st_size > 5000
    assert ai_client.comms_log_callback != h.comms.sink   # uninstalled after the run
