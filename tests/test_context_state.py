"""ContextState and CommsLog without a window: the logic behind the context panels."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import ai_client
import providers
from file_cache import IMAGE_TOKENS
from gui.chat import CHAT_SYSTEM_PROMPT
from gui.comms_log import CommsLog
from gui.context_state import ContextState
from project import PROJECT_FILE, load_project
from providers.mock import MockAdapter

APP_PY = '''"""Demo module."""
import os


class Greeter:
    """Says hello."""

    def greet(self, name):
        words = ["hello", name]
        for i in range(3):
            words.append(str(i) * 10)
        return " ".join(words)


# [HOT] the entry point
def main():
    greeter = Greeter()
    text = greeter.greet(os.environ.get("USER", "you"))
    return len(text)
'''
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
       b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


class RecordingAdapter(MockAdapter):
    """The mock provider, recording each request and the thread/session it ran on."""
    calls: list[dict] = []

    def generate(self, request, on_chunk=None):
        RecordingAdapter.calls.append({"system": request.system, "messages": list(request.messages),
                                       "thread": threading.current_thread().name,
                                       "session": ai_client.current_session()})
        return super().generate(request, on_chunk)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("MMA_MOCK_CHUNK_DELAY", "0")
    for var in ("MMA_PROVIDER", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "no-credentials.toml"))


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "proj"
    (path / "src").mkdir(parents=True)
    (path / "app.py").write_text(APP_PY)
    (path / "src" / "a.py").write_text("def a():\n    return 1\n")
    (path / "README.md").write_text("# Demo\n\nA tiny project.\n")
    (path / "shot.png").write_bytes(PNG)
    return path


@pytest.fixture
def recording(monkeypatch):
    RecordingAdapter.calls = []
    monkeypatch.setitem(providers.PROVIDERS, "mock", ("tests.test_context_state", "RecordingAdapter"))
    return RecordingAdapter.calls


@pytest.fixture
def make_state():
    states = []

    def make(*args, **kwargs) -> ContextState:
        state = ContextState(*args, **kwargs)
        states.append(state)
        return state
    yield make
    for state in states:
        state.close()


def tokens(state: ContextState, path: str) -> int:
    state.refresh()
    return next(r.tokens for r in state.file_rows if r.path == path)


# ---------------------------------------------------------------- project and provider

def test_new_project_starts_with_defaults_on_mock(root, make_state):
    state = make_state(root)
    assert state.project_error == "" and not state.errors
    assert state.current_provider == "mock" and state.current_model == "mock-model"
    assert state.session.provider == "mock" and state.session.model == "mock-model"
    assert state.active_discussion == "main" and state.entries == []
    assert state.budget()["by_source"]["system"] > 0


def test_provider_precedence_flag_env_project(root, make_state, monkeypatch):
    (root / PROJECT_FILE).write_text('provider = "gemini"\n')
    assert make_state(root).current_provider == "gemini"
    monkeypatch.setenv("MMA_PROVIDER", "anthropic")
    assert make_state(root).current_provider == "anthropic"
    state = make_state(root, provider="mock")
    assert state.current_provider == "mock" and state.current_model == "mock-model"


def test_unknown_provider_is_reported_and_falls_back(root, make_state, monkeypatch):
    monkeypatch.setenv("MMA_PROVIDER", "openai")
    state = make_state(root)
    assert state.current_provider == "mock"
    assert any("unknown provider 'openai' from MMA_PROVIDER" in e.message for e in state.errors)


def test_broken_project_file_keeps_last_good_and_refuses_to_save(root, make_state):
    good = make_state(root)
    assert good.add_file("app.py", "skeleton")
    assert good.save()
    (root / PROJECT_FILE).write_text('provider = "mock"\nfiles = [ = \n')   # half-way through an edit
    state = make_state(root)
    assert "invalid TOML" in state.project_error and "line 2" in state.project_error
    assert [f.path for f in state.config.files] == ["app.py"]          # last good settings
    assert state.config.files[0].mode == "skeleton"
    assert tokens(state, "app.py") > 0                                  # and it keeps working
    assert not state.save()
    assert state.save_blocked
    assert "broken" in state.errors[-1].message and "Save anyway" in state.errors[-1].hint
    assert (root / PROJECT_FILE).read_text().endswith("files = [ = \n")  # the user's edit is intact
    assert state.save(overwrite_broken=True)
    assert not state.save_blocked and state.project_error == ""
    assert list(root.glob(f"{PROJECT_FILE}.broken-*"))
    assert load_project(root).files[0].path == "app.py"


def test_save_round_trip_keeps_files_discussion_and_chat_model(root, make_state):
    state = make_state(root, provider="gemini")
    state.set_model("gemini-2.5-flash-lite")
    state.add_file("app.py", "curated")
    state.add_file("src/*.py", "outline")
    state.add_screenshot("shot.png")
    state.add_entry("user", "why?")
    state.new_discussion("refactor")
    state.add_entry("system", "be brief")
    assert state.save()
    again = make_state(root)
    assert again.current_provider == "gemini" and again.current_model == "gemini-2.5-flash-lite"
    assert [(f.path, f.mode) for f in again.config.files] == [("app.py", "curated"), ("src/*.py", "outline")]
    assert again.config.screenshots == ["shot.png"]
    assert again.active_discussion == "refactor" and again.entries[0].content == "be brief"
    assert again.config.discussions["main"][0].content == "why?"


def test_open_project_switches_and_rejects_non_folder(root, tmp_path, make_state):
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.py").write_text("x = 1\n")
    state = make_state(root)
    state.add_file("app.py")
    assert not state.open_project(tmp_path / "missing")
    assert "not a folder" in state.errors[-1].message
    assert state.open_project(other)
    assert state.project_dir == other.resolve() and state.config.files == []
    assert state.add_file("b.py")


# ---------------------------------------------------------------- files

def test_add_file_validation(root, make_state, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("x = 1\n")
    state = make_state(root)
    assert not state.add_file("")
    assert not state.add_file("missing.py")
    assert not state.add_file("../outside.py")
    assert not state.add_file(str(outside))
    assert not state.add_file("app.py", "summary")
    assert state.add_file(str(root / "app.py"))                 # absolute inside -> relative
    assert not state.add_file("app.py")                         # duplicate
    assert [f.path for f in state.config.files] == ["app.py"]
    messages = [e.message for e in state.errors]
    assert messages[:3] == ["type a file path or a glob first", "no such file: missing.py",
                            "../outside.py is outside the project " + str(root.resolve())]
    assert "unknown mode 'summary'" in messages[4] and "already in the list" in messages[5]


def test_clear_errors_of_some_sources_keeps_the_others(root, make_state):
    """A panel's "Clear errors" button clears only the errors that panel shows."""
    state = make_state(root)
    assert not state.add_file("missing.py")
    assert not state.add_screenshot("missing.png")
    state.add_error("send", "boom")
    state.clear_errors(("files", "screenshots"))
    assert [(e.source, e.message) for e in state.errors] == [("send", "boom")]
    state.clear_errors()
    assert not state.errors


def test_glob_rows_count_files_and_report_empty_globs(root, make_state):
    state = make_state(root)
    assert state.add_file("**/*.py", "skeleton")
    assert state.add_file("docs/*.txt")                          # a glob may match nothing yet
    state.refresh()
    py, txt = state.file_rows
    assert py.n_files == 2 and py.tokens > 0 and py.errors == []
    assert txt.n_files == 0 and txt.errors == ["glob matched no files"]


def test_modes_give_different_token_estimates(root, make_state):
    state = make_state(root)
    state.add_file("app.py")
    estimates = {}
    for mode in ("full", "curated", "skeleton", "outline"):
        assert state.set_file_mode(0, mode)
        state.poll()
        assert state.file_rows[0].mode == mode
        estimates[mode] = state.file_rows[0].tokens
    assert estimates["full"] > estimates["curated"] > estimates["skeleton"] > estimates["outline"] > 0
    assert state.bundle.by_source["files"] == estimates["outline"]
    assert "class Greeter  [" in state.bundle.markdown and "def greet  [" in state.bundle.markdown


def test_typescript_and_go_files_show_views_with_token_counts(root, make_state):
    """Issue 18: a .ts and a .go file added in the Project panel get skeleton / curated /
    outline views with their own token counts, like a Python file."""
    (root / "web").mkdir()
    (root / "web" / "cart.ts").write_text(
        "/**\n * A shopping cart.\n * It keeps the items and their prices.\n * Totals are in cents.\n */\n"
        "export class Cart {\n  private items: number[] = [];\n"
        "  // [HOT] pricing rules live here\n  total(): number {\n"
        "    return this.items.reduce((sum, price) => sum + price, 0);\n  }\n"
        "  add(price: number): void {\n    if (price < 0) throw new Error('negative price');\n"
        "    this.items.push(price);\n  }\n}\n")
    (root / "server.go").write_text(
        "package main\n\n// Server answers requests.\n// It is safe for concurrent use.\n// Start it with Run.\n"
        "type Server struct {\n\tAddr string\n}\n\n// Run serves until the context ends.\n"
        "func (s *Server) Run() error {\n\tfmt.Println(\"listening on\", s.Addr)\n\treturn nil\n}\n")
    state = make_state(root)
    assert state.add_file("web/cart.ts") and state.add_file("server.go")
    estimates: dict[str, dict[str, int]] = {"web/cart.ts": {}, "server.go": {}}
    for mode in ("full", "curated", "skeleton", "outline"):
        assert state.set_file_mode(0, mode) and state.set_file_mode(1, mode)
        state.poll()
        for row in state.file_rows:
            assert row.mode == mode and not row.errors
            estimates[row.path][mode] = row.tokens
        markdown = state.bundle.markdown
        if mode == "skeleton":
            assert "total(): number { /* ... */ }" in markdown and "func (s *Server) Run() error { /* ... */ }" in markdown
            assert "```typescript" in markdown and "```go" in markdown
        if mode == "curated":
            assert "this.items.reduce" in markdown and "negative price" not in markdown
        if mode == "outline":
            assert "class Cart  [" in markdown and "method Server.Run  [" in markdown
    for path, by_mode in estimates.items():
        assert by_mode["full"] > by_mode["skeleton"] > by_mode["outline"] > 0, (path, by_mode)
        assert by_mode["full"] >= by_mode["curated"] >= by_mode["skeleton"], (path, by_mode)
    assert estimates["web/cart.ts"]["curated"] > estimates["web/cart.ts"]["skeleton"]


def test_refresh_is_lazy_and_reuses_the_cache(root, make_state):
    state = make_state(root, disk_check_interval=3600)
    state.add_file("app.py", "skeleton")
    assert state.refresh() is True
    generation, parses = state.generation, state.cache.stats()["parses"]
    for _ in range(50):                                          # 50 frames, nothing changed
        state.poll()
        state.budget()
    assert state.generation == generation and state.refresh() is False
    state.add_entry("user", "hello")                             # discussion change: rebuild
    state.poll()
    assert state.generation == generation + 1
    stats = state.cache.stats()
    assert stats["parses"] == parses and stats["hits"] > 0       # the file was not parsed again


def test_files_changed_on_disk_are_picked_up(root, make_state):
    state = make_state(root, disk_check_interval=0)
    state.add_file("app.py")
    state.add_file("src/*.py")
    state.poll()
    before = {r.path: r.tokens for r in state.file_rows}
    assert state.check_disk() is False                           # nothing changed yet
    (root / "app.py").write_text(APP_PY + "\n\ndef extra():\n    return 'more text here'\n")
    (root / "src" / "b.py").write_text("def b():\n    return 2\n")
    state.poll()
    after = {r.path: r.tokens for r in state.file_rows}
    assert after["app.py"] > before["app.py"]
    assert after["src/*.py"] > before["src/*.py"] and state.file_rows[1].n_files == 2
    assert state.disk_rebuilds == 1
    (root / "app.py").unlink()
    state.poll()
    assert state.file_rows[0].errors == ["file not found"] and state.file_rows[0].tokens == 0


def test_screenshots_count_as_images(root, make_state):
    (root / "notes.txt").write_text("not an image")
    state = make_state(root)
    assert not state.add_screenshot("missing.png")
    assert not state.add_screenshot("notes.txt")
    assert state.add_screenshot("shot.png")
    assert not state.add_screenshot("shot.png")
    assert state.budget()["by_source"]["screenshots"] == IMAGE_TOKENS
    assert state.remove_screenshot(0) and state.budget()["by_source"]["screenshots"] == 0
    assert not state.remove_screenshot(3)


def test_over_budget_trim_plan_and_preview(root, make_state):
    state = make_state(root)
    state.add_file("app.py")
    state.add_entry("user", "one " * 50)
    state.add_entry("assistant", "two " * 50)
    preview = state.trim_preview()
    assert [s.action for s in preview][:2] == ["drop_discussion", "downgrade_to_skeleton"]
    assert not state.budget()["over_budget"]
    state.config.budgets.max_context_tokens = 150
    state.mark_changed()
    budget = state.budget()
    assert budget["limit"] == 150 and budget["over_budget"] and budget["fraction"] > 1
    assert budget["trim_plan"] and budget["trim_plan"][0]["action"] == "drop_discussion"
    assert [s.label for s in state.trim_preview()] == [s["label"] for s in budget["trim_plan"]][:6]


# ---------------------------------------------------------------- discussions

def test_discussion_edit_delete_move(root, make_state):
    state = make_state(root)
    for text in ("a", "b", "c"):
        state.add_entry("user", text)
    assert state.edit_entry(1, content="B", role="assistant")
    assert not state.edit_entry(1, role="robot")
    assert not state.edit_entry(7, content="x")
    assert state.toggle_edit(0) and state.is_editing(0)
    assert state.move_entry(0, +1)                               # the edit flag follows the entry
    assert [e.content for e in state.entries] == ["B", "a", "c"]
    assert state.is_editing(1) and not state.is_editing(0)
    assert not state.move_entry(0, -1) and not state.move_entry(2, +1)
    assert state.delete_entry(1) and not state.is_editing(1)
    assert [(e.role, e.content) for e in state.entries] == [("assistant", "B"), ("user", "c")]
    assert not state.delete_entry(5)
    state.refresh()
    history = [e.label for e in state.bundle.items if e.source == "history"]
    assert history == ["discussion[0] assistant", "discussion[1] user"]


def test_new_and_select_discussion(root, make_state):
    state = make_state(root)
    state.add_entry("user", "in main")
    assert state.new_discussion("  feature-x ")
    assert state.active_discussion == "feature-x" and state.entries == []
    assert not state.new_discussion("feature-x") and not state.new_discussion("   ")
    assert not state.select_discussion("nope")
    assert state.select_discussion("main") and state.entries[0].content == "in main"
    assert state.discussion_names == ["main", "feature-x"]


# ---------------------------------------------------------------- provider and model

def test_choosing_a_provider_sets_its_models(root, make_state):
    state = make_state(root)
    assert state.set_provider("anthropic")
    assert state.current_model == "claude-sonnet-4-6"
    assert all(m.startswith("claude-") for m in state.models_for("anthropic"))
    assert state.config.models["Tier 3"][0].startswith("claude-")        # tiers follow along
    assert state.session.provider == "anthropic" and state.session.model == "claude-sonnet-4-6"
    assert state.budget()["context_window"] == 200_000
    assert state.set_provider("gemini") and state.current_model == "gemini-2.5-flash"
    assert "gemini-3.1-pro-preview" in state.models_for("gemini")
    assert not state.set_provider("openai")
    assert not state.set_model("  ")
    assert state.set_model("gemini-3-flash-preview") and state.session.model == "gemini-3-flash-preview"


# ---------------------------------------------------------------- sending

def test_send_uses_curated_context_on_the_chat_thread(root, make_state, recording):
    state = make_state(root)
    state.add_file("app.py", "skeleton")
    state.add_entry("user", "earlier question")
    state.add_entry("assistant", "earlier answer")
    state.edit_entry(1, content="an edited answer")
    state.ai_input = "  What does main do?  "
    assert state.send_message()
    assert state.busy and state.ai_input == ""
    assert state.wait_idle(10)
    (call,) = recording
    # the curated context first (the prefix the chat shares with Tiers 1-2), the instructions last
    assert call["system"].startswith("<context>\n") and call["system"].endswith(CHAT_SYSTEM_PROMPT)
    assert "class Greeter:" in call["system"] and "words.append" not in call["system"]   # skeleton
    assert "an edited answer" in call["system"] and "earlier answer" not in call["system"]
    assert call["messages"] == [{"role": "user", "content": "What does main do?"}]
    assert call["thread"].startswith("chat-send") and call["session"] is state.session
    roles = [(e.role, e.content.split("\n")[0]) for e in state.entries]
    assert roles[-2] == ("user", "What does main do?") and roles[-1][0] == "assistant"
    assert "You said: What does main do?" in state.entries[-1].content
    assert state.last_reply == state.entries[-1].content and state.stream_text == ""
    assert state.stream_chunks > 1 and state.last_usage["output_tokens"] > 0
    assert state.session.history == []                           # the discussion is the history
    state.ai_input = "again"
    assert state.send_message() and state.wait_idle(10)
    assert "What does main do?" in recording[1]["system"]       # previous turn is now context
    assert state.session.usage.output_tokens > state.last_usage["output_tokens"]


def test_send_refuses_empty_or_concurrent(root, make_state, monkeypatch):
    monkeypatch.setenv("MMA_MOCK_CHUNK_DELAY", "0.02")
    state = make_state(root)
    state.ai_input = "   "
    assert not state.send_message() and "empty" in state.errors[-1].message
    state.ai_input = "a long answer please"
    assert state.send_message()
    state.ai_input = "second"
    assert not state.send_message() and "still streaming" in state.errors[-1].message
    assert not state.set_provider("gemini") and state.current_provider == "mock"
    assert state.wait_idle(10)
    assert [e.role for e in state.entries] == ["user", "assistant"]


def test_send_error_is_shown_with_hint(root, make_state):
    state = make_state(root, provider="gemini")                 # no key configured
    state.ai_input = "hello"
    assert state.send_message()
    assert state.wait_idle(10)
    err = state.errors[-1]
    assert err.source == "send" and "no Gemini API key" in err.message
    assert "GEMINI_API_KEY" in err.hint
    assert [e.role for e in state.entries] == ["user"]          # no empty assistant entry
    assert not state.busy and state.snapshot()["errors"][-1]["hint"] == err.hint


def test_stop_keeps_the_partial_reply(root, make_state, monkeypatch):
    monkeypatch.setenv("MMA_MOCK_CHUNK_DELAY", "0.05")
    state = make_state(root)
    state.ai_input = "tell me a long story"
    assert state.send_message()
    deadline = time.monotonic() + 5
    while not state.stream_text and time.monotonic() < deadline:
        state.poll()
        time.sleep(0.005)
    assert state.stream_text
    assert state.cancel()
    assert state.wait_idle(10)
    last = state.entries[-1]
    assert last.role == "assistant" and "[incomplete:" in last.content
    assert last.content.startswith(state.last_reply.split("\n")[0])
    assert state.errors[-1].source == "send"


def test_reply_goes_to_the_discussion_it_was_asked_in(root, make_state, monkeypatch):
    monkeypatch.setenv("MMA_MOCK_CHUNK_DELAY", "0.01")
    state = make_state(root)
    state.ai_input = "question in main"
    assert state.send_message()
    assert state.new_discussion("side")                          # switch while streaming
    assert state.wait_idle(10)
    assert state.entries == []
    assert [e.role for e in state.config.discussions["main"]] == ["user", "assistant"]


# ---------------------------------------------------------------- hook API

def test_snapshot_is_json_and_hook_actions_work(root, make_state):
    state = make_state(root)
    state.set_value("ai_input", "from a script")
    result = state.click("btn_add_file", path="app.py", mode="outline")
    assert result == {"ok": True}
    assert state.click("btn_add_file", path="nope.py") == {
        "ok": False, "error": f"no such file: nope.py — paths are relative to {root.resolve()}"}
    state.set_value("current_provider", "anthropic")
    state.set_value("current_model", "claude-opus-4-8")
    with pytest.raises(ValueError, match="unknown field"):
        state.set_value("busy", True)
    with pytest.raises(ValueError, match="unknown provider"):
        state.set_value("current_provider", "openai")
    with pytest.raises(ValueError, match="needs a string"):
        state.set_value("ai_input", 3)
    with pytest.raises(ValueError, match="unknown item"):
        state.click("btn_launch")
    state.set_value("current_provider", "mock")
    assert state.click("btn_send") == {"ok": True}
    assert state.wait_idle(10)
    assert state.click("btn_save_project") == {"ok": True}
    snap = json.loads(json.dumps(state.snapshot()))
    assert snap["files"] == [{"path": "app.py", "mode": "outline", "tokens": snap["files"][0]["tokens"],
                              "n_files": 1, "errors": [], "overlaps": 0}]
    assert snap["files"][0]["tokens"] > 0
    assert snap["current_provider"] == "mock" and snap["current_model"] == "mock-model"
    assert snap["busy"] is False and snap["ai_input"] == ""
    assert [e["role"] for e in snap["discussion"]["entries"]] == ["user", "assistant"]
    assert snap["last_reply"] and snap["budget"]["by_source"]["files"] == snap["files"][0]["tokens"]
    assert state.get_value("current_model") == "mock-model"
    with pytest.raises(ValueError):
        state.get_value("nope")
    assert (root / PROJECT_FILE).exists()


# ---------------------------------------------------------------- comms log

def _entry(kind="request", provider="mock", direction="OUT", **payload):
    return {"ts": time.time(), "direction": direction, "kind": kind, "provider": provider,
            "model": "m", "payload": payload}


def test_comms_sink_is_thread_safe_and_capped():
    comms = CommsLog(limit=1000)
    threads = [threading.Thread(target=lambda: [comms.sink(_entry(text=str(i))) for i in range(400)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert comms.drain() == 3200
    assert len(comms.rows) == 1000 and comms.dropped == 2200
    assert [r.seq for r in comms.rows] == list(range(2201, 3201))    # oldest dropped first
    assert comms.drain() == 0


def test_comms_filters_preview_and_selection():
    comms = CommsLog()
    comms.sink(_entry("request", messages=[{"role": "user", "content": "fix the parser"}], system_chars=10))
    comms.sink(_entry("response", direction="IN", text="Patched the parser.",
                      usage={"input_tokens": 120, "output_tokens": 8}))
    comms.sink(_entry("request", provider="gemini", messages=[{"role": "user", "content": "hi"}]))
    comms.sink(_entry("error", provider="gemini", direction="IN", error="AuthError", message="no key"))
    comms.sink("not a dict")
    assert comms.drain() == 5
    response = comms.rows[1]
    assert (response.tokens_in, response.tokens_out) == (120, 8)
    assert response.preview == "Patched the parser."
    assert comms.rows[0].preview == "1 msg, system 10 chars: fix the parser"
    assert comms.rows[3].preview == "AuthError: no key" and comms.rows[4].kind == "invalid"
    comms.set_filter(kind="request")
    assert [r.seq for r in comms.visible()] == [1, 3]
    comms.set_filter(provider="gemini")
    assert [r.seq for r in comms.visible()] == [3]
    comms.set_filter(kind="", provider="", direction="IN")
    assert [r.seq for r in comms.visible()] == [2, 4]
    comms.set_filter(direction="", text="PARSER patched")
    assert [r.seq for r in comms.visible()] == [2]
    comms.sink(_entry("response", direction="IN", text="parser patched again"))
    comms.drain()
    assert [r.seq for r in comms.visible()] == [2, 6]            # new rows are filtered too
    comms.select(2)
    assert json.loads(comms.selected_payload())["usage"]["input_tokens"] == 120
    assert comms.snapshot()["visible"] == 2 and comms.kinds >= {"request", "response", "error"}
    comms.clear()
    assert comms.rows == [] and comms.selected is None and comms.selected_payload() == ""


def test_comms_install_receives_every_session(root, make_state):
    comms = CommsLog()
    previous = ai_client.comms_log_callback
    comms.install()
    try:
        assert ai_client.comms_log_callback == comms.sink
        state = make_state(root)
        state.ai_input = "ping"
        assert state.send_message() and state.wait_idle(10)
        with ai_client.session_scope("mock", label="other") as other:
            other.send("", "pong")
    finally:
        comms.uninstall()
    assert ai_client.comms_log_callback is previous
    comms.drain()
    kinds = [(r.kind, r.entry["label"]) for r in comms.rows]
    assert kinds == [("request", "chat"), ("response", "chat"), ("request", "other"), ("response", "other")]


def test_provider_change_callback_lets_the_app_follow(root, make_state):
    state = make_state(root)
    seen = []
    state.on_provider_changed = seen.append
    assert state.set_provider("gemini") and state.set_provider("gemini")
    assert seen == ["gemini"]                                   # only real switches

    def refuse(name):
        raise ValueError("a track is running")
    state.on_provider_changed = refuse
    assert state.set_provider("anthropic")
    assert state.current_provider == "anthropic"
    assert "could not follow the switch to anthropic: a track is running" in state.errors[-1].message


def test_typing_in_an_entry_rebuilds_once_the_text_settles(root, make_state, recording):
    state = make_state(root)
    state.add_entry("user", "draft")
    state.poll()
    generation = state.generation
    for text in ("draft 1", "draft 12", "draft 123"):             # keystrokes, frame by frame
        assert state.edit_entry(0, content=text)
        state.poll()
    assert state.generation == generation                        # not rebuilt per keystroke
    time.sleep(0.35)
    state.poll()
    assert state.generation == generation + 1
    assert "draft 123" in state.bundle.markdown
    state.edit_entry(0, content="sent right away")
    state.ai_input = "go"
    assert state.send_message() and state.wait_idle(10)         # a send never uses stale text
    assert "sent right away" in recording[0]["system"]


def test_comms_summary_keeps_the_newest_and_counts_everything():
    comms = CommsLog(limit=5)
    for i in range(8):
        comms.sink({**_entry("response", direction="IN", usage={"input_tokens": i, "output_tokens": 1}),
                    "label": f"L{i}"})
    comms.sink(_entry("request"))                       # no usage, no label
    comms.drain()
    summary = comms.summary(3)
    assert summary["comms_count"] == 9 and comms.dropped == 4
    assert [e["label"] for e in summary["comms_log"]] == ["L6", "L7", ""]
    assert summary["comms_log"][0]["usage"] == {"input_tokens": 6, "output_tokens": 1}
    assert summary["comms_log"][-1]["usage"] is None
    assert comms.summary(3) is summary                  # cached until a row arrives
    comms.clear()
    assert comms.summary(3)["comms_log"] == [] and comms.summary(3)["comms_count"] == 4


def test_each_project_gets_a_chat_session_logging_into_it(root, tmp_path, make_state):
    state = make_state(root)
    assert state.log_dir == root.resolve() / ".mma_desk" / "logs"
    state.ai_input = "first"
    assert state.send_message() and state.wait_idle(10)
    logged = [json.loads(line) for p in state.log_dir.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert {e["label"] for e in logged} == {"chat"} and any("first" in json.dumps(e) for e in logged)
    first_session = state.session
    assert state.reload() and state.session is first_session          # same folder: same session
    other = tmp_path / "other"
    other.mkdir()
    assert state.open_project(other)
    assert state.session is not first_session and state.log_dir == other.resolve() / ".mma_desk" / "logs"
    state.ai_input = "second"
    assert state.send_message() and state.wait_idle(10)
    assert list(state.log_dir.glob("*.jsonl")), "the new project's chat did not log there"
    # a session passed in is the caller's: kept across projects, its log folder untouched
    mine = ai_client.Session("mock", label="mine")
    kept = make_state(root, session=mine)
    assert kept.open_project(other) and kept.session is mine and kept.log_dir is None


# ================================================================== autosave (hot exit)
def test_autosave_writes_once_the_edits_settle(root, make_state):
    state = make_state(root, autosave=True)
    state.autosave.delay_s = 0.2
    state.add_file("app.py")
    state.add_entry("user", "remember me")
    state.poll()
    assert state.unsaved and not (root / PROJECT_FILE).exists()      # debounced: not yet
    time.sleep(0.25)
    state.poll()
    assert not state.unsaved and state.autosave.saves == 1
    cfg = load_project(root)
    assert [f.path for f in cfg.files] == ["app.py"] and cfg.discussion()[-1].content == "remember me"
    state.poll()
    assert state.autosave.saves == 1                                  # nothing new: no write


def test_autosave_never_overwrites_an_edit_made_on_disk(root, make_state):
    state = make_state(root, autosave=True)
    state.autosave.delay_s = 0.0
    state.add_file("app.py")
    state.poll()
    assert state.autosave.saves == 1
    edited = (root / PROJECT_FILE).read_text().replace('name = "proj"', 'name = "renamed-by-hand"')
    (root / PROJECT_FILE).write_text(edited)                           # someone's editor
    state.add_file("README.md")
    state.poll()
    assert (root / PROJECT_FILE).read_text() == edited                 # kept
    assert state.unsaved and state.save_blocked
    assert "changed on disk" in state.errors[-1].message
    errors = len(state.errors)
    state.poll()
    assert len(state.errors) == errors                                 # reported once, not per frame
    assert state.save()                                                # an explicit Save decides
    assert [f.path for f in load_project(root).files] == ["app.py", "README.md"]


def test_flush_on_exit_writes_a_recovery_file_when_the_project_file_is_broken(root, make_state):
    state = make_state(root, autosave=True)
    (root / PROJECT_FILE).write_text("this = is [broken\n")
    state.add_file("app.py")
    recovered = state.flush_on_exit()
    assert recovered is not None and recovered.is_relative_to(root / ".mma_desk" / "unsaved")
    assert (root / PROJECT_FILE).read_text() == "this = is [broken\n"
    assert "app.py" in recovered.read_text()


def test_opening_another_project_saves_this_one_first(root, tmp_path, make_state):
    other = tmp_path / "other"
    other.mkdir()
    state = make_state(root, autosave=True)
    state.add_entry("user", "do not lose me")
    assert state.open_project(other)
    assert load_project(root).discussion()[-1].content == "do not lose me"


# ================================================================== Send and the token budget
def _big_state(root, make_state, *, budget: int, model: str = "mock-model"):
    (root / "big.txt").write_text("lorem ipsum dolor sit amet " * 40_000)     # ~270k tokens
    state = make_state(root)
    state.config.budgets.max_context_tokens = budget
    state.set_model(model)
    state.add_file("app.py")
    state.add_file("big.txt")
    state.refresh()
    return state


def test_send_over_the_model_window_is_refused_and_a_measured_trim_is_offered(root, make_state, recording):
    state = _big_state(root, make_state, budget=10_000_000, model="claude-sonnet-4-5")   # 200k window
    state.ai_input = "summarise"
    assert state.send_message() is False
    check = state.pending_send
    assert check.verdict == "refuse" and check.over_window and check.total > 200_000
    assert "not sent" in state.errors[-1].message and "200,000" in state.errors[-1].message
    assert state.send_message(confirmed=True) is False                # confirming is no way round
    assert recording == [] and state.entries == []
    offer = state.pending_send.offer
    assert offer is not None and offer.fits and offer.tokens <= offer.target < 200_000
    assert any(step.label == "big.txt" for step in offer.steps)
    assert state.send_message(trimmed=True) is True and state.wait_idle(10)
    sent = recording[0]["system"]
    assert "big.txt" not in sent and "class Greeter" in sent


def test_send_over_the_project_budget_waits_for_confirmation(root, make_state, recording):
    state = _big_state(root, make_state, budget=100_000)                # mock window is 1M
    state.ai_input = "go"
    assert state.send_message() is False
    check = state.pending_send
    assert check.verdict == "confirm" and check.over_budget and not check.over_window
    assert recording == [] and not state.errors                       # a question, not an error
    out = state.click("btn_send")
    assert out["ok"] is False and "needs confirmation" in out["error"]
    state.cancel_send()
    assert state.pending_send is None and state.ai_input == "go"
    assert state.click("btn_send", confirm=True) == {"ok": True}
    assert state.wait_idle(10) and "big.txt" in recording[0]["system"]


def test_a_large_send_shows_its_estimated_cost_first(root, make_state):
    (root / "mid.txt").write_text("word " * 48_000)                     # ~60k tokens
    state = make_state(root, provider="gemini")
    state.set_model("gemini-2.5-pro")                                    # $1.25 per 1M input
    state.add_file("mid.txt")
    state.refresh()
    state.ai_input = "hello"
    assert state.send_message() is False
    check = state.pending_send
    assert check.verdict == "confirm" and check.large and not check.over_budget
    assert check.cost_usd == pytest.approx(check.total * 1.25 / 1e6)
    assert "~$0.08 input" in check.describe()


def test_no_trim_is_offered_when_even_the_message_alone_is_over_the_window(root, make_state, recording):
    state = make_state(root)
    state.set_model("claude-sonnet-4-5")                                  # 200k window
    state.config.budgets.max_context_tokens = 10_000_000
    state.add_file("app.py")
    state.refresh()
    state.ai_input = "x" * 900_000                                        # ~225k tokens by itself
    assert state.send_message() is False
    offer = state.pending_send.offer
    assert offer is not None and not offer.fits                           # nothing to offer
    assert state.send_message(trimmed=True) is False
    assert "does not get under" in state.errors[-1].message and recording == []


def test_regenerate_asks_the_last_question_again(root, make_state, recording):
    state = make_state(root)
    state.ai_input = "what is 2+2?"
    assert state.send_message() and state.wait_idle(10)
    assert [e.role for e in state.entries] == ["user", "assistant"]
    first_reply = state.entries[-1].content
    assert state.can_regenerate()
    assert state.regenerate() and state.wait_idle(10)
    assert [e.role for e in state.entries] == ["user", "assistant"]
    assert state.entries[0].content == "what is 2+2?" and len(recording) == 2
    assert state.entries[-1].content == first_reply                   # the mock answers alike
    state.delete_entry(1)
    assert not state.can_regenerate() and state.regenerate() is False


def test_comms_filter_reset_and_search_by_tier_and_ticket():
    comms = CommsLog()
    comms.sink({**_entry("request"), "label": "Tier 3 (Worker): T2"})
    comms.sink({**_entry("request"), "label": "chat"})
    comms.drain()
    comms.set_filter(text="worker t2")
    assert [r.label for r in comms.visible()] == ["Tier 3 (Worker): T2"] and comms.filtering
    comms.reset_filters()
    assert not comms.filtering and len(comms.visible()) == 2
