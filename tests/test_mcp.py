"""MCP servers as tools: real servers from PyPI (mcp-server-time, mcp-server-git) over stdio,
and tests/mcp_failing_server.py for what goes wrong (errors, crash, hang, garbage)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import project
from providers import tool_schema
from providers.base import ToolResult
from tools import ToolError
from tools.mcp_client import DISABLED, FAILED, RUNNING, McpHub, qualified_name
from tools.mcp_config import McpConfigError, McpServerConfig, parse_servers
from tools.toolbox import Toolbox, hub_for, toolbox_for

BIN = Path(sys.executable).parent
FAILING = str(Path(__file__).with_name("mcp_failing_server.py"))


def time_server(**kw) -> McpServerConfig:
    return McpServerConfig("time", command=str(BIN / "mcp-server-time"), **kw)


def git_server(repo: Path, **kw) -> McpServerConfig:
    return McpServerConfig("git", command=str(BIN / "mcp-server-git"), args=("--repository", str(repo)), **kw)


def failing_server(mode: str = "ok", name: str = "flaky", marker: str = "", **kw) -> McpServerConfig:
    """`marker`: an extra argument, so a test can find the server's process (`processes_with`)."""
    return McpServerConfig(name, command=sys.executable, args=(FAILING, mode, *([marker] if marker else [])), **kw)


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    subprocess.run(["git", "init", "-q"], cwd=path, check=True, env=env)
    (path / "README.md").write_text("hello\n")
    subprocess.run(["git", "add", "README.md"], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "first"], cwd=path, check=True, env=env)
    return path


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains `marker` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def project_root(tmp_path_factory) -> Path:
    return git_repo(tmp_path_factory.mktemp("mcp_project"))


@pytest.fixture(scope="module")
def hub(project_root):
    """time + git + the failing server (ok mode, 1.5 s time limit), one hub for the module."""
    hub = McpHub(project_root)
    hub.apply([time_server(), git_server(project_root), failing_server(timeout_s=1.5)]).result(120)
    yield hub
    hub.close()


# ---------------------------------------------------------------- configuration

def test_project_file_round_trips_mcp_servers(tmp_path):
    (tmp_path / project.PROJECT_FILE).write_text(
        '[[mcp_servers]]\nname = "git"\ncommand = "mcp-server-git"\nargs = ["--repository", "."]\n'
        'env = { A = "1" }\ntrusted = true\ntimeout_s = 5\ncolor = "blue"\n'
        '[[mcp_servers]]\nname = "web"\nurl = "http://127.0.0.1:9/mcp"\nenabled = false\n')
    cfg = project.load_project(tmp_path)
    git, web = cfg.mcp_servers
    assert (git.command, git.args, dict(git.env), git.trusted, git.timeout_s) == (
        "mcp-server-git", ("--repository", "."), {"A": "1"}, True, 5.0)
    assert web.transport == "http" and not web.enabled
    cfg.name = "renamed"
    project.save_project(cfg)
    again = project.load_project(tmp_path)
    assert again.mcp_servers == cfg.mcp_servers
    assert 'color = "blue"' in (tmp_path / project.PROJECT_FILE).read_text()   # unknown keys are kept


@pytest.mark.parametrize("entry, where", [
    ('name = "a"', "mcp_servers[0]"),                                      # neither command nor url
    ('name = "a"\ncommand = "x"\nurl = "http://h/mcp"', "mcp_servers[0]"),  # both
    ('command = "x"', "mcp_servers[0].name"),
    ('name = "a b"\ncommand = "x"', "mcp_servers[0].name"),
    ('name = "a__b"\ncommand = "x"', "mcp_servers[0].name"),
    ('name = "a"\ncommand = "x"\nargs = ["ok", 3]', "mcp_servers[0].args[1]"),
    ('name = "a"\ncommand = "x"\ntimeout_s = 0', "mcp_servers[0].timeout_s"),
    ('name = "a"\nurl = "ftp://h"', "mcp_servers[0].url"),
    ('name = "a"\ncommand = "x"\n[[mcp_servers]]\nname = "a"\ncommand = "y"', "mcp_servers[1].name"),
])
def test_bad_mcp_entries_name_the_key(tmp_path, entry, where):
    (tmp_path / project.PROJECT_FILE).write_text(f"[[mcp_servers]]\n{entry}\n")
    with pytest.raises(project.ProjectFileError) as err:
        project.load_project(tmp_path)
    assert err.value.key_path == where, str(err.value)


def test_parse_servers_refuses_a_non_list():
    with pytest.raises(McpConfigError, match="array of tables"):
        parse_servers({"name": "x"})


def test_qualified_names_are_safe_and_unique():
    assert qualified_name("git", "git_status") == "git__git_status"
    assert qualified_name("my-srv", "do.thing/now") == "my-srv__do_thing_now"
    long = qualified_name("s", "x" * 100)
    assert len(long) == 64
    assert qualified_name("s", "x" * 100, [long]) == long[:62] + "_2"


# ---------------------------------------------------------------- schemas per provider

MCP_STYLE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "properties": {"when": {"$ref": "#/$defs/When"}, "mode": {"const": "fast", "default": "fast"},
                   "tags": {"type": "array", "items": {"type": "string", "examples": ["a"]}},
                   "node": {"$ref": "#/$defs/Node"}},
    "required": ["when", "missing"],
    "$defs": {"When": {"type": "string", "format": "date-time", "title": "When"},
              "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
}


def test_gemini_schema_inlines_refs_and_keeps_only_supported_keywords():
    out = tool_schema.for_gemini(MCP_STYLE_SCHEMA)
    assert "$schema" not in out and "$defs" not in out
    assert out["properties"]["when"] == {"type": "string", "format": "date-time", "title": "When"}
    assert out["properties"]["mode"] == {"enum": ["fast"]}
    assert out["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert out["required"] == ["when"]
    depth, node = 0, out["properties"]["node"]       # a recursive $ref is cut, not followed forever
    while "properties" in node:
        node, depth = node["properties"]["child"], depth + 1
    assert 0 < depth <= 10
    assert MCP_STYLE_SCHEMA["properties"]["when"] == {"$ref": "#/$defs/When"}   # input untouched


def test_anthropic_schema_keeps_json_schema_but_needs_an_object_root():
    out = tool_schema.for_anthropic(MCP_STYLE_SCHEMA)
    assert "$schema" not in out and out["$defs"] == MCP_STYLE_SCHEMA["$defs"]
    assert tool_schema.for_anthropic({"type": "string"}) == {
        "type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]}
    assert tool_schema.for_anthropic(None) == {"type": "object", "properties": {}}


# ---------------------------------------------------------------- real servers

def test_real_servers_list_their_tools_with_approval_policies(hub, project_root):
    states = {s.name: s.state for s in hub.statuses()}
    assert states == {"time": RUNNING, "git": RUNNING, "flaky": RUNNING}
    listing = {name: (server, policy) for name, server, policy in Toolbox(project_root, hub).listing()}
    assert listing["read_file"] == ("built-in", "runs unasked (read-only)")
    assert listing["write_file"] == ("built-in", "asks")
    assert listing["time__get_current_time"] == ("time", "runs unasked (readOnlyHint)")
    assert listing["git__git_status"] == ("git", "runs unasked (readOnlyHint)")
    assert listing["git__git_commit"] == ("git", "asks")
    assert listing["flaky__write_note"] == ("flaky", "asks")
    specs = {s.name: s for s in toolbox_for(project_root).specs()}
    assert hub_for(project_root) is hub
    assert specs["time__get_current_time"].parameters["properties"]["timezone"]["type"] == "string"
    assert specs["git__git_commit"].description.startswith("[MCP server git]")


def test_real_time_and_git_tools_answer(hub, project_root):
    box = toolbox_for(project_root)
    result = box.execute("time__get_current_time", {"timezone": "UTC"})
    assert not result.is_error and '"timezone": "UTC"' in result.text
    assert result.structured is not None and result.structured["timezone"] == "UTC"
    status = box.execute("git__git_status", {"repo_path": str(project_root)})
    assert "On branch" in status.text or "branch" in status.text.lower()
    bad = box.execute("time__get_current_time", {"timezone": "Not/AZone"})
    assert bad.is_error and "Invalid timezone" in bad.text


def test_a_tool_that_asks_is_refused_without_approval_and_runs_with_it(hub, project_root):
    box = toolbox_for(project_root)
    assert box.needs_approval("git__git_add") and not box.needs_approval("git__git_log")
    (project_root / "notes.txt").write_text("new\n")
    with pytest.raises(ToolError, match="approval"):
        box.execute("git__git_add", {"repo_path": str(project_root), "files": ["notes.txt"]})
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=project_root,
                            capture_output=True, text=True, check=True).stdout
    assert "notes.txt" not in staged
    result = box.execute("git__git_add", {"repo_path": str(project_root), "files": ["notes.txt"]}, approved=True)
    assert not result.is_error, result.text
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=project_root,
                            capture_output=True, text=True, check=True).stdout
    assert "notes.txt" in staged
    described = box.describe("git__git_add", {"repo_path": "r", "files": ["notes.txt"]})
    assert (described["server"], described["mcp_tool"], described["needs_approval"]) == ("git", "git_add", True)
    assert "notes.txt" in described["summary"]
    assert box.needs_approval("no_such_tool")             # unknown built-in: fail closed
    missing = box.execute("git__no_such_tool", {})        # nothing runs: the result says why
    assert missing.is_error and "not available" in missing.text


def test_results_map_text_images_structured_and_errors(hub, project_root):
    box = toolbox_for(project_root)
    image = box.execute("flaky__image", {})
    assert image.text == "a 1x1 png" and image.images[0]["mime_type"] == "image/png"
    only_structured = box.execute("flaky__structured", {"n": 7})
    assert only_structured.structured == {"n": 7, "square": 49} and '"square": 49' in only_structured.text
    failed = box.execute("flaky__fail", {"reason": "no disk"})
    assert failed.is_error and "cannot do it: no disk" in failed.text


def test_a_hanging_call_hits_the_time_limit_and_the_server_keeps_serving(hub, project_root):
    box = toolbox_for(project_root)
    started = time.monotonic()
    result = box.execute("flaky__hang", {})
    assert result.is_error and "time limit" in result.text
    assert time.monotonic() - started < 1.5 + 5
    assert box.execute("flaky__echo", {"text": "still here"}).text == "echo: still here"
    assert "time limit" in hub.status("flaky").error


def test_a_garbage_answer_is_a_clear_tool_error(hub, project_root):
    result = toolbox_for(project_root).execute("flaky__garbage", {})
    assert result.is_error and "not a tool result" in result.text, result.text
    assert toolbox_for(project_root).execute("flaky__echo", {"text": "x"}).text == "echo: x"


# ---------------------------------------------------------------- crash, restart, failures to start

def test_a_crash_is_reported_and_the_server_can_be_restarted(tmp_path):
    hub = McpHub(tmp_path)
    try:
        hub.apply([failing_server(name="crashy")]).result(60)
        box = toolbox_for(tmp_path)
        crashed = box.execute("crashy__crash", {})
        assert crashed.is_error and "crashed" in crashed.text
        status = hub.status("crashy")
        assert status.state == FAILED and "crashed" in status.error
        after = box.execute("crashy__echo", {"text": "x"})
        assert after.is_error and "not available" in after.text and "restart" in after.text
        hub.restart("crashy").result(60)
        assert hub.status("crashy").state == RUNNING
        assert box.execute("crashy__echo", {"text": "back"}).text == "echo: back"
    finally:
        hub.close()


def test_servers_that_do_not_start_are_failed_with_their_error(tmp_path):
    hub = McpHub(tmp_path, start_timeout=3)
    try:
        hub.apply([failing_server("exit-at-start", name="quits"), failing_server("garbage-at-start", name="junk"),
                   McpServerConfig("nope", command=str(tmp_path / "no-such-program")),
                   time_server(enabled=False)]).result(60)
        states = {s.name: s for s in hub.statuses()}
        assert states["quits"].state == FAILED and "refusing to start" in states["quits"].error
        assert states["junk"].state == FAILED and "handshake" in states["junk"].error
        assert states["nope"].state == FAILED and "no-such-program" in states["nope"].error
        assert states["time"].state == DISABLED
        assert [name for name, _s, _p in toolbox_for(tmp_path).listing() if "__" in name] == []
        assert (tmp_path / ".mma_desk" / "logs" / "mcp-quits.log").read_text().count("refusing to start") == 1
    finally:
        hub.close()


def test_close_stops_every_server_process(tmp_path):
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    config = failing_server(name="m", marker=marker)
    hub = McpHub(tmp_path)
    hub.apply([config]).result(60)
    assert processes_with(marker), "the server runs while the hub is open"
    hub.close()
    assert processes_with(marker) == []
    assert hub_for(tmp_path) is None
    hub.close()                                        # idempotent


def test_apply_follows_config_changes(tmp_path):
    hub = McpHub(tmp_path)
    try:
        hub.apply([failing_server(name="a")]).result(60)
        assert [s.name for s in hub.statuses()] == ["a"]
        hub.apply([failing_server(name="a", enabled=False), failing_server(name="b", trusted=True)]).result(60)
        states = {s.name: s.state for s in hub.statuses()}
        assert states == {"a": DISABLED, "b": RUNNING}
        assert not toolbox_for(tmp_path).needs_approval("b__write_note")      # trusted server
        hub.apply([]).result(60)
        assert hub.statuses() == [] and hub.tools() == []
    finally:
        hub.close()


def test_cli_tools_lists_every_tool_and_names_a_server_that_fails(tmp_path, capsys):
    import cli
    root = git_repo(tmp_path / "p")
    cfg = project.load_project(root)
    cfg.mcp_servers = [time_server(), git_server(root)]
    project.save_project(cfg)
    assert cli.main(["tools", "--project", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines}
    assert "time__get_current_time" in rows and "git__git_commit" in rows and "read_file" in rows
    assert rows["git__git_commit"].split()[1] == "git" and rows["git__git_commit"].endswith("asks")
    assert "readOnlyHint" in rows["time__convert_time"]
    cfg.mcp_servers.append(failing_server("exit-at-start", name="broken"))
    project.save_project(cfg)
    assert cli.main(["tools", "--project", str(root)]) == 1
    out = capsys.readouterr()
    assert "git__git_status" in out.out
    assert "MCP server 'broken' failed to start" in out.err


def test_tool_result_message_shapes():
    call = type("C", (), {"id": "c1", "name": "s__t"})()
    msg = ToolResult("t", is_error=True, images=[{"mime_type": "image/png", "data": "AA=="}],
                     structured={"a": 1}).message(call)
    assert msg == {"role": "tool", "tool_call_id": "c1", "name": "s__t", "content": "t", "is_error": True,
                   "images": [{"mime_type": "image/png", "data": "AA=="}], "structured": {"a": 1}}


def test_an_abort_stops_the_wait_for_a_hanging_call(tmp_path):
    import threading

    from providers.base import CancelSignal
    hub = McpHub(tmp_path)
    try:
        hub.apply([failing_server(name="slow", timeout_s=60)]).result(60)
        cancel = CancelSignal()
        threading.Timer(0.3, cancel.set).start()
        started = time.monotonic()
        result = toolbox_for(tmp_path).execute("slow__hang", {}, cancel=cancel)
        assert result.is_error and "cancelled" in result.text
        assert time.monotonic() - started < 5
        assert toolbox_for(tmp_path).execute("slow__echo", {"text": "ok"}).text == "echo: ok"
    finally:
        hub.close()
