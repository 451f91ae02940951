"""MCP tools in model calls: a Tier 3 worker and the headless run call real MCP servers through
the real SDKs (against the wire emulator) and the one approval path; results reach each
provider in its own tool-result format."""
from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

import ai_client
import cli
import events
import multi_agent_conductor as mac
import project
from models import COMPLETED, Ticket, Track
from run_settings import RunSettings
from tests.test_mcp import failing_server, git_repo, git_server, time_server
from tests.wire_emulator import Reply, WireEmulator, parse_prompt
from tools.mcp_client import McpHub

KEY = "AIzaFAKE-mcp-test-key-0123456789"


@pytest.fixture
def emulator(monkeypatch):
    with WireEmulator() as emu:
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-FAKE-mcp")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
        monkeypatch.delenv("MMA_PROVIDER", raising=False)
        yield emu


def call_tool_once(name: str, args: dict, tier: str = "Tier 3"):
    """A responder: the first request of `tier` without a tool result calls `name`."""
    def responder(provider, model, body):
        view = parse_prompt(provider, body)
        if tier in view.system and not view.tool_results:
            return Reply(tool_calls=[{"name": name, "args": args}])
        return None
    return responder


def staged(repo) -> str:
    return subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout


async def test_worker_calls_an_mcp_tool_after_approval_through_the_engine(emulator, tmp_path):
    root = git_repo(tmp_path / "repo")
    (root / "notes.txt").write_text("to stage\n")
    hub = McpHub(root)
    await asyncio.get_running_loop().run_in_executor(None, lambda: hub.apply([git_server(root)]).result(60))
    emulator.responder = call_tool_once("git__git_add", {"repo_path": str(root), "files": ["notes.txt"]})
    loop = asyncio.get_running_loop()
    queue = events.AsyncEventQueue()
    queue.bind(loop)
    track = Track("t_mcp", "mcp", tickets=[Ticket("T1", "Stage the notes file")])
    engine = mac.ConductorEngine(track, queue, base_dir=str(root), settings=RunSettings.for_provider(
        "gemini", auto_queue=True, tools_enabled=True, max_retries=0))
    run = asyncio.create_task(engine.run())
    asked = []
    try:
        while not run.done():
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, run}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            assert done, "the run neither finished nor produced an event"
            if getter not in done:
                getter.cancel()
                continue
            event = events.from_wire(*getter.result())
            if isinstance(event, events.ApprovalRequest) and event.kind == "tool":
                asked.append(event)
                assert staged(root) == "", "nothing runs before the approval"
                event.future.set_result({"approved": True})
        assert run.result() == "completed"
    finally:
        await loop.run_in_executor(None, hub.close)
    assert len(asked) == 1
    description = asked[0].description
    assert (asked[0].tool, description["server"], description["mcp_tool"]) == ("git__git_add", "git", "git_add")
    assert asked[0].args == {"repo_path": str(root), "files": ["notes.txt"]}
    assert "notes.txt" in staged(root)
    assert track.tickets[0].status == COMPLETED
    tool_results = [r for q in emulator.requests for r in parse_prompt("gemini", q.body).tool_results]
    assert tool_results and tool_results[0]["name"] == "git__git_add"
    assert "notes.txt" in tool_results[0]["content"] or "Files staged" in tool_results[0]["content"], tool_results
    declared = {d["name"] for q in emulator.requests for t in q.body.get("tools", [])
                for d in t.get("functionDeclarations", [])}
    assert {"git__git_add", "git__git_status", "read_file"} <= declared


@pytest.mark.parametrize("allow, staged_after", [("read", False), ("all", True)])
def test_headless_allow_tools_covers_mcp_tools(emulator, tmp_path, capsys, allow, staged_after):
    root = git_repo(tmp_path / "repo")
    (root / "notes.txt").write_text("to stage\n")
    cfg = project.load_project(root)
    cfg.provider = "gemini"
    cfg.mcp_servers = [git_server(root), time_server()]
    project.save_project(cfg)
    asked_time = []

    def responder(provider, model, body):
        view = parse_prompt(provider, body)
        if "Tier 3" not in view.system or "Lay the groundwork" not in view.last_user_text:
            return None
        done = {r["name"] for r in view.tool_results}
        if "time__get_current_time" not in done:
            asked_time.append(model)
            return Reply(tool_calls=[{"name": "time__get_current_time", "args": {"timezone": "UTC"}}])
        if "git__git_add" not in done:
            return Reply(tool_calls=[{"name": "git__git_add", "args": {"repo_path": str(root),
                                                                        "files": ["notes.txt"]}}])
        return None

    emulator.responder = responder
    code = cli.main(["run", "--epic", "Stage notes", "--project", str(root), "--auto", "--allow-tools", allow])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MCP server git:" in out and "MCP server time: 2 tool(s)" in out
    assert asked_time, "the worker was offered the MCP tools"
    assert ("notes.txt" in staged(root)) is staged_after
    verdict = "approved" if staged_after else "refused (use --allow-tools all)"
    assert f"tool git__git_add for T1: {verdict}" in out
    assert "tool time__get_current_time" not in out        # read-only: never asked
    results = {r["name"]: r["content"] for q in emulator.requests
               for r in parse_prompt("gemini", q.body).tool_results}
    assert '"timezone": "UTC"' in results["time__get_current_time"]
    if not staged_after:
        assert "REFUSED" in results["git__git_add"]


@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
def test_images_structured_content_and_errors_reach_each_provider(emulator, tmp_path, provider):
    hub = McpHub(tmp_path)
    try:
        hub.apply([failing_server(name="fs")]).result(60)
        emulator.script(provider, Reply(tool_calls=[{"name": "fs__image", "args": {}},
                                                     {"name": "fs__structured", "args": {"n": 3}},
                                                     {"name": "fs__fail", "args": {"reason": "disk full"}}]),
                        Reply(text="seen"))
        model = "gemini-2.5-flash" if provider == "gemini" else "claude-sonnet-4-6"
        with ai_client.session_scope(provider, model) as session:
            result = session.send("", "use the tools", str(tmp_path), tools=True)
        assert result.text == "seen"
        body = emulator.requests_for(provider)[-1].body
        if provider == "gemini":
            parts = [p for c in body["contents"] for p in c["parts"]]
            responses = {p["functionResponse"]["name"]: p["functionResponse"]["response"]
                         for p in parts if "functionResponse" in p}
            assert responses["fs__image"] == {"result": "a 1x1 png"}
            assert responses["fs__structured"]["structured"] == {"n": 3, "square": 9}
            assert "disk full" in responses["fs__fail"]["error"]
            inline = [p.get("inlineData") or p.get("inline_data") for p in parts]
            assert any(i and (i.get("mimeType") or i.get("mime_type")) == "image/png" for i in inline), parts
            declared = {d["name"]: d for t in body["tools"] for d in t["functionDeclarations"]}
            assert "$schema" not in json.dumps(declared["fs__structured"].get("parametersJsonSchema", {}))
        else:
            blocks = {b["tool_use_id"]: b for m in body["messages"] if m["role"] == "user"
                      for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"}
            image = next(b for b in blocks.values() if isinstance(b["content"], list)
                         and any(x["type"] == "image" for x in b["content"]))
            assert image["content"][0] == {"type": "text", "text": "a 1x1 png"}
            failed = next(b for b in blocks.values() if b.get("is_error"))
            assert "disk full" in json.dumps(failed["content"])
            assert any(isinstance(b["content"], list) and any('"square": 9' in x.get("text", "") for x in b["content"])
                       for b in blocks.values())
    finally:
        hub.close()
