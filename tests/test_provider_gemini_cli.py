"""The `gemini-cli` provider: the real Gemini CLI from npm (installed once per test session into a
temporary prefix) against the loopback wire emulator.  Skipped only when node is absent."""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import ai_client
import cli
import project
from providers.base import AuthError, CancelledByUser, ProviderUnavailableError, RateLimitError, ServerError
from providers.gemini_cli import GeminiCliAdapter
from providers.gemini_cli_setup import find_cli
from tests.wire_emulator import Reply, WireEmulator, parse_prompt

KEY = "AIzaFAKE-gemini-cli-planted-key-123456"
MODELS = {"Tier 1": "gemini-3.1-pro-preview", "Tier 2": "gemini-3-flash-preview",
          "Tier 3": ["gemini-2.5-flash-lite", "gemini-2.5-flash"], "Tier 4": "gemini-2.0-flash-qa"}
WORKER = "You are Tier 3 (Worker) of a test."


def _path_without(program: str) -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / program).exists())


@pytest.fixture(scope="session")
def gemini_cli(tmp_path_factory) -> Path:
    """The real CLI, installed from npm by `find_cli` into a private prefix, once per session."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the gemini-cli provider needs Node.js 20+ and npm")
    prefix = tmp_path_factory.mktemp("gemini-cli-prefix")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MMA_GEMINI_CLI", raising=False)
        mp.setenv("MMA_GEMINI_CLI_PREFIX", str(prefix))
        mp.setenv("PATH", _path_without("gemini"))       # not a global one: the private prefix
        path = find_cli()
    assert path == prefix / "node_modules" / ".bin" / "gemini" and path.is_file()
    return path


@pytest.fixture
def emulator(gemini_cli, monkeypatch, tmp_path):
    with WireEmulator() as emu:
        monkeypatch.setenv("MMA_GEMINI_CLI", str(gemini_cli))
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.delenv("MMA_PROVIDER", raising=False)
        monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))          # the CLI's private homes go here
        (tmp_path / "tmp").mkdir()
        import tempfile
        monkeypatch.setattr(tempfile, "tempdir", None)              # re-read TMPDIR
        yield emu


def generations(emu: WireEmulator) -> list:
    return [r for r in emu.requests if "countTokens" not in r.path]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def group_gone(pgid: int, timeout: float = 5.0) -> bool:
    """Whether every process of the group has gone within `timeout` (killed ones may need a
    moment to be reaped by init)."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def files_containing(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text in p.read_text(errors="replace")]


def test_chat_streams_resumes_its_cli_session_and_bills_exactly(emulator, tmp_path):
    chunks: list[str] = []
    with ai_client.session_scope("gemini-cli", "gemini-2.5-flash", label="chat") as session:
        first = session.send("", "Hello there", str(tmp_path), system_prompt=WORKER, stream_callback=chunks.append)
        assert first.text == "Working on: Hello there\nDone. The change is implemented and verified."
        assert "".join(chunks) == first.text and len(chunks) > 1
        adapter = session.adapter
        cli_session = adapter.session_id
        second = session.send("", "And now this", str(tmp_path), system_prompt=WORKER)
        assert adapter.session_id == cli_session                     # the same CLI session, resumed
        contents = generations(emulator)[-1].body["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"]
        assert second.text.startswith("Working on: And now this")
        billed = emulator.billed["gemini-2.5-flash"]
        assert (session.usage.input_tokens, session.usage.output_tokens) == (billed["input_tokens"],
                                                                            billed["output_tokens"])
        assert generations(emulator)[-1].body["systemInstruction"]["parts"][0]["text"] == WORKER
        home = adapter._home.root
        assert files_containing(home, KEY) == [], "the key is only in the child's environment"
        # reset_session(): a new CLI session for this context only
        fresh = ai_client.reset_session()
        fresh.send("", "Start over", str(tmp_path), system_prompt=WORKER)
        assert fresh.adapter.session_id != cli_session and len(generations(emulator)[-1].body["contents"]) == 1
    declared = [d for r in generations(emulator) for t in r.body.get("tools", []) for d in t["functionDeclarations"]]
    assert declared == []                                            # no tools asked for: none of the CLI's


def test_an_attached_image_reaches_the_model(emulator, tmp_path):
    import base64
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
    with ai_client.session_scope("gemini-cli", "gemini-2.5-flash") as session:
        session.send("", "What is in the picture?", str(tmp_path), system_prompt=WORKER,
                     images=[{"mime_type": "image/png", "data": png}])
    parts = [p for c in generations(emulator)[-1].body["contents"] for p in c["parts"]]
    inline = [p["inlineData"] for p in parts if "inlineData" in p]
    assert [(i["mimeType"], base64.b64decode(i["data"])) for i in inline] == [("image/png", png)]


def test_tool_calls_go_through_mma_desk_approval(emulator, tmp_path):
    emulator.script("gemini", Reply(tool_calls=[{"name": "mcp_mma_write_file",
                                                 "args": {"path": "notes.md", "content": "x"}}]),
                    Reply(text="refused, fine"))
    asked = []

    def refuse(name, args, description):
        asked.append((name, args, description.get("summary")))
        return False

    with ai_client.session_scope("gemini-cli", "gemini-2.5-flash") as session:
        result = session.send("", "Write notes", str(tmp_path), system_prompt=WORKER, tools=True,
                              pre_tool_callback=refuse)
    assert asked == [("write_file", {"path": "notes.md", "content": "x"}, "create notes.md (1 bytes)")]
    assert not (tmp_path / "notes.md").exists()
    assert result.text == "refused, fine"
    first, last = generations(emulator)[0], generations(emulator)[-1]
    names = {d["name"] for t in first.body["tools"] for d in t["functionDeclarations"]}
    assert names == {f"mcp_mma_{n}" for n in ("read_file", "list_directory", "search_text", "file_skeleton",
                                              "write_file", "patch_file", "run_shell")}
    results = parse_prompt("gemini", last.body).tool_results
    assert "REFUSED" in results[-1]["content"]
    billed = emulator.billed["gemini-2.5-flash"]
    assert (result.usage.input_tokens, result.usage.output_tokens) == (billed["input_tokens"], billed["output_tokens"])


def test_a_run_left_waiting_for_a_tool_result_is_ended(emulator, tmp_path):
    """ai_client may never come back with the result (an exception, max rounds): close() or
    garbage collection of the adapter ends the CLI that waits for it."""
    from providers.base import ChatRequest, ToolSpec
    emulator.script("gemini", Reply(tool_calls=[{"name": "mcp_mma_echo", "args": {"text": "x"}}]))
    adapter = GeminiCliAdapter()
    spec = ToolSpec("echo", "Echo the text", {"type": "object", "properties": {"text": {"type": "string"}}})
    response = adapter.generate(ChatRequest("gemini-2.5-flash", WORKER, [{"role": "user", "content": "go"}],
                                            tools=[spec]))
    assert response.stop_reason == "tool_use" and response.tool_calls[0].name == "echo"
    home, pgid = adapter._home.root, adapter.last_pid
    assert pgid is not None and group_alive(pgid), "the CLI waits for the result"
    adapter.close()
    assert group_gone(pgid)
    assert not home.exists()


def test_full_track_with_three_tier_models_bills_exactly(emulator, tmp_path, capsys):
    root = tmp_path / "p"
    cfg = project.load_project(root)
    cfg.provider = "gemini-cli"
    cfg.models = MODELS
    project.save_project(cfg)
    code = cli.main(["run", "--epic", "Add a version flag", "--project", str(root), "--provider", "gemini-cli",
                     "--auto"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    state = json.loads(next(root.glob("conductor/tracks/*/state.json")).read_text())
    assert {t["status"] for t in state["tickets"]} == {"completed"} and len(state["tickets"]) == 4
    billed, usage = emulator.billed, state["tier_usage"]
    for tier, model in (("Tier 1", MODELS["Tier 1"]), ("Tier 2", MODELS["Tier 2"]), ("Tier 3", MODELS["Tier 3"][0])):
        assert (usage[tier]["input"], usage[tier]["output"]) == (billed[model]["input_tokens"],
                                                                 billed[model]["output_tokens"]), tier
        assert usage[tier]["model"] == model
    assert {r.model for r in generations(emulator)} == {MODELS["Tier 1"], MODELS["Tier 2"], MODELS["Tier 3"][0]}
    assert files_containing(root, KEY) == [] and KEY not in out.out + out.err
    assert files_containing(tmp_path / "tmp", KEY) == []


def test_cancel_kills_the_cli_process_group(emulator, tmp_path):
    emulator.script("gemini", Reply(text="word " * 60, chunks=["word "] * 60))
    emulator.inject("slow", delay=0.3)
    got_chunk = threading.Event()
    outcome: dict = {}

    with ai_client.session_scope("gemini-cli", "gemini-2.5-flash") as session:
        def send() -> None:
            try:
                session.send("", "Talk slowly", str(tmp_path), system_prompt=WORKER,
                             stream_callback=lambda _c: got_chunk.set())
            except CancelledByUser as exc:
                outcome["error"] = exc
        worker = threading.Thread(target=send)
        worker.start()
        assert got_chunk.wait(60), "no chunk streamed"
        started = time.monotonic()
        session.cancel_event.set()
        worker.join(10)
        assert not worker.is_alive()
        assert time.monotonic() - started < 3
        assert isinstance(outcome.get("error"), CancelledByUser)
        pgid = session.adapter.last_pid
    assert pgid is not None and group_gone(pgid), "the CLI and its children are gone"


def test_500_and_429_become_typed_errors_and_mma_desk_retries(emulator, tmp_path):
    adapter = GeminiCliAdapter()
    from providers.base import ChatRequest
    request = ChatRequest("gemini-2.5-flash", WORKER, [{"role": "user", "content": "hi"}])
    emulator.inject("500")
    with pytest.raises(ServerError) as server_error:
        adapter.generate(request)
    assert server_error.value.status == 500
    emulator.inject("429")
    with pytest.raises(RateLimitError):
        adapter.generate(request)
    emulator.inject("401")
    with pytest.raises(AuthError) as auth:
        adapter.generate(request)
    assert KEY not in str(auth.value)
    adapter.close()
    # through ai_client: one retry after the 429, then success (the CLI itself tries once)
    emulator.inject("429")
    with ai_client.session_scope("gemini-cli", "gemini-2.5-flash") as session:
        result = session.send("", "Try again", str(tmp_path), system_prompt=WORKER)
        retries = [e for e in session.comms_log if e["kind"] == "retry"]
    assert result.text.startswith("Working on: Try again")
    assert [r["payload"]["error"] for r in retries] == ["RateLimitError"]
    failed = [r for r in generations(emulator) if r.fault]
    assert [r.fault for r in failed] == ["500", "429", "401", "429"]


def test_without_node_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("MMA_GEMINI_CLI", raising=False)
    monkeypatch.setenv("MMA_GEMINI_CLI_PREFIX", str(tmp_path / "prefix"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ProviderUnavailableError) as err:
        find_cli()
    assert "Node.js" in str(err.value) and "MMA_GEMINI_CLI" in err.value.hint
    monkeypatch.setenv("MMA_GEMINI_CLI", str(tmp_path / "missing"))
    with pytest.raises(ProviderUnavailableError, match="not an executable"):
        find_cli()
