"""Behaviour of the model-callable tools (happy paths, limits, errors, shell)."""
from __future__ import annotations

import os
import re
import stat
import sys
import time
from pathlib import Path

import pytest

import tools
from providers.base import ToolSpec
from tools import ToolError, describe, execute, needs_approval
from tools import files as tool_files
from tools import search as tool_search
from tools import shell as tool_shell


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "src" / "app.py").write_text("import os\n\n\ndef main():\n    return os.getcwd()\n")
    (root / "src" / "pkg" / "util.py").write_text("def helper(x):\n    return x + 1  # helper\n")
    (root / "README.md").write_text("# Title\nhello world\nsecond hello\n")
    (root / "docs" / "guide.md").write_text("hello from docs\n")
    return root


def run(name: str, args: dict | None, root: Path, **kw) -> str:
    return execute(name, args, root, **kw)


def approved(name: str, args: dict, root: Path) -> str:
    return execute(name, args, root, approved=True)


# ------------------------------------------------------------------- registry

def test_tool_specs_cover_every_tool_with_json_schemas():
    names = [s.name for s in tools.TOOL_SPECS]
    assert names == ["read_file", "list_directory", "search_text", "file_skeleton",
                     "write_file", "patch_file", "run_shell"]
    by_name = {s.name: s for s in tools.TOOL_SPECS}
    for spec in tools.TOOL_SPECS:
        assert isinstance(spec, ToolSpec)
        assert spec.description
        assert spec.parameters["type"] == "object"
        for prop in spec.parameters["properties"].values():
            assert prop["type"] in {"string", "integer", "boolean", "number"}
            assert prop["description"]
        assert set(spec.parameters["required"]) <= set(spec.parameters["properties"])
    assert by_name["read_file"].parameters["required"] == ["path"]
    assert set(by_name["read_file"].parameters["properties"]) == {"path", "start_line", "end_line"}
    assert by_name["list_directory"].parameters["required"] == []
    assert by_name["search_text"].parameters["required"] == ["pattern"]
    assert set(by_name["search_text"].parameters["properties"]) == {"pattern", "path", "regex", "max_results"}
    assert by_name["write_file"].parameters["required"] == ["path", "content"]
    assert by_name["patch_file"].parameters["required"] == ["path", "old", "new"]
    assert by_name["run_shell"].parameters["required"] == ["command"]
    assert set(by_name["run_shell"].parameters["properties"]) == {"command", "timeout_s"}


def test_needs_approval_policy():
    assert {n for n in tools.TOOL_NAMES if needs_approval(n)} == {"write_file", "patch_file", "run_shell"}
    assert needs_approval("read_file") is False
    assert needs_approval("no_such_tool") is True  # unknown names fail closed


def test_unknown_tool_and_bad_arguments_raise_tool_error(proj):
    with pytest.raises(ToolError, match="unknown tool 'rm_rf'; available tools: read_file"):
        run("rm_rf", {}, proj)
    with pytest.raises(ToolError, match="missing required argument 'path'"):
        run("read_file", {}, proj)
    with pytest.raises(ToolError, match="unknown argument"):
        run("read_file", {"path": "README.md", "encoding": "latin-1"}, proj)
    with pytest.raises(ToolError, match="must be an object"):
        run("read_file", ["README.md"], proj)
    with pytest.raises(ToolError, match="'path' must be a string"):
        run("read_file", {"path": 3}, proj)
    with pytest.raises(ToolError, match="whole number"):
        run("read_file", {"path": "README.md", "start_line": 1.5}, proj)
    with pytest.raises(ToolError, match="must be a number"):
        run("read_file", {"path": "README.md", "start_line": True}, proj)
    with pytest.raises(ToolError, match="at least 1"):
        run("read_file", {"path": "README.md", "start_line": 0}, proj)
    with pytest.raises(ToolError, match="true or false"):
        run("search_text", {"pattern": "x", "regex": "yes"}, proj)
    with pytest.raises(ToolError, match="at most 1000"):
        run("search_text", {"pattern": "x", "max_results": 5000}, proj)
    with pytest.raises(ToolError, match="not a directory"):
        run("read_file", {"path": "README.md"}, proj / "missing-root")


def test_null_optional_args_mean_default_and_integral_floats_are_accepted(proj):
    # Gemini sends JSON numbers as floats; some models send null for "not given".
    assert run("read_file", {"path": "README.md", "start_line": 2.0, "end_line": None}, proj) == \
        "hello world\nsecond hello\n"
    assert run("list_directory", {"path": None}, proj) == run("list_directory", {}, proj)


# ------------------------------------------------------------------ read_file

def test_read_file_whole_and_line_ranges(proj):
    assert run("read_file", {"path": "README.md"}, proj) == "# Title\nhello world\nsecond hello\n"
    assert run("read_file", {"path": "README.md", "start_line": 2, "end_line": 2}, proj) == "hello world\n"
    assert run("read_file", {"path": "README.md", "end_line": 1}, proj) == "# Title\n"
    assert run("read_file", {"path": "README.md", "start_line": 3, "end_line": 99}, proj) == "second hello\n"
    assert run("read_file", {"path": "./src/../README.md"}, proj).startswith("# Title")
    assert run("read_file", {"path": str(proj / "README.md")}, proj).startswith("# Title")  # absolute inside


def test_read_file_errors(proj):
    with pytest.raises(ToolError, match=re.escape("past the end of 'README.md' (3 lines)")):
        run("read_file", {"path": "README.md", "start_line": 4}, proj)
    with pytest.raises(ToolError, match="before start_line"):
        run("read_file", {"path": "README.md", "start_line": 3, "end_line": 2}, proj)
    with pytest.raises(ToolError, match=re.escape("file 'nope.txt' does not exist")):
        run("read_file", {"path": "nope.txt"}, proj)
    with pytest.raises(ToolError, match="is a directory"):
        run("read_file", {"path": "src"}, proj)
    (proj / "blob.bin").write_bytes(b"\x89PNG\x00\x01\x02" * 10)
    with pytest.raises(ToolError, match="binary file \\(70 bytes\\)"):
        run("read_file", {"path": "blob.bin"}, proj)


def test_read_file_empty_and_undecodable(proj):
    (proj / "empty.txt").write_bytes(b"")
    assert run("read_file", {"path": "empty.txt"}, proj) == "[empty file: 0 bytes]"
    (proj / "latin.txt").write_bytes(b"caf\xe9\n")
    assert run("read_file", {"path": "latin.txt"}, proj) == "caf\ufffd\n"


def test_read_file_truncates_at_limit_with_note(proj):
    limit = tool_files.READ_LIMIT_BYTES
    (proj / "big.txt").write_bytes(b"x" * (limit + 12345))
    out = run("read_file", {"path": "big.txt"}, proj)
    body, note = out.rsplit("\n", 1)
    assert body == "x" * limit
    assert note == "[truncated: 12345 more bytes; read the rest with start_line/end_line]"


def test_read_file_truncation_never_splits_a_utf8_character(proj):
    limit = tool_files.READ_LIMIT_BYTES
    data = b"a" + "é".encode() * limit  # 2-byte chars straddle the limit
    (proj / "u.txt").write_bytes(data)
    out = run("read_file", {"path": "u.txt"}, proj)
    body, note = out.rsplit("\n", 1)
    assert "\ufffd" not in body
    assert len(body.encode()) in (limit, limit - 1)
    assert note.startswith(f"[truncated: {len(data) - len(body.encode())} more bytes")


def test_read_file_line_range_truncates_and_says_where_to_continue(proj):
    line = b"y" * 999 + b"\n"  # 1000 bytes per line
    (proj / "lines.txt").write_bytes(line * 500)
    out = run("read_file", {"path": "lines.txt", "start_line": 1, "end_line": 400}, proj)
    kept = tool_files.READ_LIMIT_BYTES // 1000
    assert out.count("y" * 999) == kept
    assert out.endswith(f"[truncated: {(400 - kept) * 1000} more bytes; continue with start_line={kept + 1}]")


# ------------------------------------------------------------- list_directory

def test_list_directory_sorted_with_dir_slashes(proj):
    (proj / ".hidden").write_text("h")
    assert run("list_directory", {}, proj) == ".hidden\nREADME.md\ndocs/\nsrc/"
    assert run("list_directory", {"path": "src"}, proj) == "app.py\npkg/"
    (proj / "emptydir").mkdir()
    assert run("list_directory", {"path": "emptydir"}, proj) == "[empty directory]"


def test_list_directory_errors(proj):
    with pytest.raises(ToolError, match="is a file, not a directory"):
        run("list_directory", {"path": "README.md"}, proj)
    with pytest.raises(ToolError, match="directory 'missing' does not exist"):
        run("list_directory", {"path": "missing"}, proj)


def test_list_directory_caps_entries(proj):
    many = proj / "many"
    many.mkdir()
    for i in range(tool_files.LIST_LIMIT_ENTRIES + 7):
        (many / f"f{i:05d}").touch()
    lines = run("list_directory", {"path": "many"}, proj).splitlines()
    assert len(lines) == tool_files.LIST_LIMIT_ENTRIES + 1
    assert lines[0] == "f00000"
    assert lines[-2] == f"f{tool_files.LIST_LIMIT_ENTRIES - 1:05d}"
    assert lines[-1] == "[truncated: 7 more entries]"


def test_list_directory_shows_symlinks_inside_root_with_target(proj):
    (proj / "link_to_src").symlink_to(proj / "src")
    (proj / "link_to_readme").symlink_to("README.md")
    (proj / "broken").symlink_to(proj / "gone.txt")
    out = run("list_directory", {}, proj).splitlines()
    assert "link_to_src/ -> src/" in out
    assert "link_to_readme -> README.md" in out
    assert "broken -> [broken link]" in out


# ---------------------------------------------------------------- search_text

def test_search_text_literal_with_line_numbers(proj):
    out = run("search_text", {"pattern": "hello"}, proj)
    assert out.splitlines() == [
        "README.md:2: hello world",
        "README.md:3: second hello",
        "docs/guide.md:1: hello from docs",
    ]
    assert run("search_text", {"pattern": "hello", "path": "docs"}, proj) == "docs/guide.md:1: hello from docs"
    assert run("search_text", {"pattern": "hello", "path": "README.md"}, proj).count("\n") == 1
    # literal mode: regex metacharacters are plain text
    assert run("search_text", {"pattern": "x + 1"}, proj) == "src/pkg/util.py:2:     return x + 1  # helper"


def test_search_text_regex(proj):
    out = run("search_text", {"pattern": r"^def \w+\(", "regex": True}, proj)
    assert out.splitlines() == ["src/app.py:4: def main():", "src/pkg/util.py:1: def helper(x):"]
    with pytest.raises(ToolError, match="invalid or unsupported regular expression"):
        run("search_text", {"pattern": "(unclosed", "regex": True}, proj)
    with pytest.raises(ToolError, match="pattern is empty"):
        run("search_text", {"pattern": ""}, proj)
    with pytest.raises(ToolError, match="does not exist"):
        run("search_text", {"pattern": "x", "path": "missing"}, proj)


def test_search_text_no_matches(proj):
    assert run("search_text", {"pattern": "zebra"}, proj) == "no matches for 'zebra' in '.'"


def test_search_text_caps_results(proj):
    (proj / "many.txt").write_text("needle\n" * 50)
    out = run("search_text", {"pattern": "needle", "max_results": 10}, proj).splitlines()
    assert out[:10] == [f"many.txt:{i}: needle" for i in range(1, 11)]
    assert out[10] == "[results capped at 10; narrow the pattern or the path]"
    assert len(out) == 11
    exact = run("search_text", {"pattern": "needle", "max_results": 50}, proj)
    assert "capped" not in exact and exact.count("\n") == 49


def test_search_text_skips_binary_noise_dirs_and_cuts_long_lines(proj):
    (proj / "bin.dat").write_bytes(b"needle\x00\x01")
    for noise in (".git", ".venv", "__pycache__", "src/__pycache__", "node_modules"):
        (proj / noise).mkdir(parents=True, exist_ok=True)
        (proj / noise / "x.txt").write_text("needle\n")
    (proj / "long.txt").write_text("needle" + "z" * 1000 + "\n")
    out = run("search_text", {"pattern": "needle"}, proj)
    assert out.splitlines() == [f"long.txt:1: needle{'z' * (tool_search.SEARCH_LINE_CHARS - 6)} [line cut]"]
    # an explicit path into a skipped dir is still searchable
    assert run("search_text", {"pattern": "needle", "path": ".git"}, proj) == ".git/x.txt:1: needle"


def test_search_text_skips_oversized_files(proj, monkeypatch):
    monkeypatch.setattr(tool_search, "SEARCH_MAX_FILE_BYTES", 100)
    (proj / "huge.txt").write_text("needle\n" * 50)
    out = run("search_text", {"pattern": "needle"}, proj)
    assert out == "no matches for 'needle' in '.'\n[skipped 1 file(s) larger than 100 bytes]"


# -------------------------------------------------------------- file_skeleton

def test_file_skeleton_uses_file_cache(proj):
    (proj / "mod.py").write_text(
        'import os\n\n\nclass Box:\n    """A box."""\n\n    def size(self) -> int:\n'
        '        total = 0\n        for i in range(10):\n            total += i\n        return total\n')
    out = run("file_skeleton", {"path": "mod.py"}, proj)
    assert "import os" in out
    assert "class Box:" in out and '"""A box."""' in out
    assert "def size(self) -> int:" in out
    assert "total += i" not in out  # body elided
    compile(out, "mod.py", "exec")  # still valid Python


def test_file_skeleton_errors(proj):
    with pytest.raises(ToolError, match="does not exist"):
        run("file_skeleton", {"path": "nope.py"}, proj)
    with pytest.raises(ToolError, match="is a directory"):
        run("file_skeleton", {"path": "src"}, proj)
    (proj / "blob.py").write_bytes(b"ab\x00cd")
    with pytest.raises(ToolError, match=re.escape("'blob.py' looks like a binary file (5 bytes)")):
        run("file_skeleton", {"path": "blob.py"}, proj)


def test_file_skeleton_reports_file_cache_failure_as_tool_error(proj, monkeypatch):
    class Broken:
        def get_view(self, path, mode):
            raise ValueError("parser exploded")
    monkeypatch.setattr(tool_files, "_file_cache", Broken())
    with pytest.raises(ToolError, match=re.escape("could not build a skeleton of 'src/app.py': parser exploded")):
        run("file_skeleton", {"path": "src/app.py"}, proj)


def test_file_skeleton_without_file_cache_module_is_a_tool_error(proj, monkeypatch):
    monkeypatch.setattr(tool_files, "_file_cache", None)
    monkeypatch.setitem(sys.modules, "file_cache", None)  # makes `import file_cache` raise ImportError
    with pytest.raises(ToolError, match="file_skeleton is not available"):
        run("file_skeleton", {"path": "src/app.py"}, proj)


# ------------------------------------------------------------------ write_file

def test_write_file_creates_parents_and_reports_bytes(proj):
    out = approved("write_file", {"path": "new/deep/dir/f.txt", "content": "héllo\n"}, proj)
    assert out == "created new/deep/dir/f.txt: wrote 7 bytes"
    assert (proj / "new/deep/dir/f.txt").read_bytes() == "héllo\n".encode()
    out = approved("write_file", {"path": "new/deep/dir/f.txt", "content": ""}, proj)
    assert out == "overwrote new/deep/dir/f.txt: wrote 0 bytes"
    assert (proj / "new/deep/dir/f.txt").read_bytes() == b""


def test_write_file_keeps_mode_and_leaves_no_temp_files(proj):
    script = proj / "run.sh"
    script.write_text("old\n")
    script.chmod(0o750)
    approved("write_file", {"path": "run.sh", "content": "#!/bin/sh\necho hi\n"}, proj)
    assert stat.S_IMODE(script.stat().st_mode) == 0o750
    assert script.read_text() == "#!/bin/sh\necho hi\n"
    assert sorted(p.name for p in proj.iterdir()) == ["README.md", "docs", "run.sh", "src"]


def test_write_file_is_atomic_when_replace_fails(proj, monkeypatch):
    def boom(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tool_files.os, "replace", boom)
    with pytest.raises(ToolError, match=re.escape("could not write 'README.md': No space left on device")):
        approved("write_file", {"path": "README.md", "content": "new"}, proj)
    assert (proj / "README.md").read_text() == "# Title\nhello world\nsecond hello\n"
    assert sorted(p.name for p in proj.iterdir()) == ["README.md", "docs", "src"]


def test_write_file_errors(proj):
    with pytest.raises(ToolError, match="is a directory"):
        approved("write_file", {"path": "src", "content": "x"}, proj)
    with pytest.raises(ToolError, match="project root, not a file"):
        approved("write_file", {"path": ".", "content": "x"}, proj)
    with pytest.raises(ToolError, match=re.escape("'README.md' is a file")):
        approved("write_file", {"path": "README.md/child.txt", "content": "x"}, proj)
    with pytest.raises(ToolError, match="'content' must be a string"):
        approved("write_file", {"path": "a.txt", "content": 5}, proj)
    assert not (proj / "a.txt").exists()


# ------------------------------------------------------------------ patch_file

def test_patch_file_replaces_unique_match(proj):
    out = approved("patch_file", {"path": "src/app.py", "old": "return os.getcwd()",
                                  "new": "return os.getcwd() + '/'"}, proj)
    expected = "import os\n\n\ndef main():\n    return os.getcwd() + '/'\n"
    assert out == f"patched src/app.py at line 5: replaced 1 occurrence, wrote {len(expected)} bytes"
    assert (proj / "src/app.py").read_text() == expected


def test_patch_file_zero_matches_is_error_and_file_untouched(proj):
    before = (proj / "README.md").read_bytes()
    with pytest.raises(ToolError, match=re.escape("'old' text was not found in 'README.md'")):
        approved("patch_file", {"path": "README.md", "old": "goodbye", "new": "x"}, proj)
    assert (proj / "README.md").read_bytes() == before


def test_patch_file_two_matches_is_error_and_file_untouched(proj):
    before = (proj / "README.md").read_bytes()
    with pytest.raises(ToolError, match=re.escape("matches 2 times in 'README.md' (lines 2, 3)")):
        approved("patch_file", {"path": "README.md", "old": "hello", "new": "bye"}, proj)
    assert (proj / "README.md").read_bytes() == before


def test_patch_file_counts_overlapping_matches(proj):
    (proj / "a.txt").write_text("aaa")
    with pytest.raises(ToolError, match="matches 2 times"):
        approved("patch_file", {"path": "a.txt", "old": "aa", "new": "b"}, proj)
    assert (proj / "a.txt").read_text() == "aaa"


def test_patch_file_other_errors(proj):
    with pytest.raises(ToolError, match="'old' is empty"):
        approved("patch_file", {"path": "README.md", "old": "", "new": "x"}, proj)
    with pytest.raises(ToolError, match="identical"):
        approved("patch_file", {"path": "README.md", "old": "hello world", "new": "hello world"}, proj)
    with pytest.raises(ToolError, match="does not exist"):
        approved("patch_file", {"path": "nope.txt", "old": "a", "new": "b"}, proj)
    (proj / "crlf.txt").write_bytes(b"one\r\ntwo\r\n")
    with pytest.raises(ToolError, match="CRLF"):
        approved("patch_file", {"path": "crlf.txt", "old": "one\ntwo", "new": "x"}, proj)
    (proj / "latin.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ToolError, match="not valid UTF-8"):
        approved("patch_file", {"path": "latin.txt", "old": "caf", "new": "x"}, proj)
    assert (proj / "crlf.txt").read_bytes() == b"one\r\ntwo\r\n"
    assert (proj / "latin.txt").read_bytes() == b"caf\xe9"


def test_patch_file_keeps_crlf_and_mode(proj):
    target = proj / "crlf.txt"
    target.write_bytes(b"one\r\ntwo\r\n")
    target.chmod(0o600)
    approved("patch_file", {"path": "crlf.txt", "old": "two", "new": "2"}, proj)
    assert target.read_bytes() == b"one\r\n2\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


# -------------------------------------------------------------------- describe

def test_describe_write_new_file_shows_diff_against_dev_null(proj):
    d = describe("write_file", {"path": "notes/todo.md", "content": "a\nb\n"}, proj)
    assert d["tool"] == "write_file" and d["needs_approval"] is True
    assert d["summary"] == "create notes/todo.md (4 bytes)"
    assert d["path"] == "notes/todo.md"
    assert d["abs_path"] == str(proj.resolve() / "notes" / "todo.md")
    assert d["new_file"] is True and d["bytes"] == 4
    assert d["diff"] == "--- /dev/null\n+++ b/notes/todo.md\n@@ -0,0 +1,2 @@\n+a\n+b\n"
    assert "error" not in d
    assert not (proj / "notes").exists()  # describe never writes


def test_describe_overwrite_and_patch_show_unified_diff(proj):
    d = describe("write_file", {"path": "README.md", "content": "# Title\nhello there\nsecond hello"}, proj)
    assert d["summary"] == "overwrite README.md (32 bytes)" and d["new_file"] is False
    assert d["diff"] == ("--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # Title\n-hello world\n"
                         "-second hello\n+hello there\n+second hello\n\\ No newline at end of file\n")
    p = describe("patch_file", {"path": "src/app.py", "old": "def main():", "new": "def run():"}, proj)
    assert p["summary"] == "patch src/app.py at line 4"
    assert "-def main():\n+def run():\n" in p["diff"]
    assert (proj / "src/app.py").read_text().count("def main():") == 1  # unchanged


def test_describe_shell_and_reads(proj):
    d = describe("run_shell", {"command": "pytest -q"}, proj)
    assert d == {"tool": "run_shell", "needs_approval": True, "summary": "run: pytest -q",
                 "command": "pytest -q", "cwd": str(proj.resolve()), "timeout_s": 60}
    r = describe("read_file", {"path": "README.md", "start_line": 2}, proj)
    assert r == {"tool": "read_file", "needs_approval": False, "summary": "read README.md (lines 2-end)"}
    s = describe("search_text", {"pattern": "x", "regex": True}, proj)
    assert s["summary"] == "search regex 'x' in . (max 100 results)"


def test_describe_never_raises_on_bad_input(proj):
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no repr for you")
    cases = [
        ("write_file", {"path": "../evil", "content": "x"}, "outside the project root"),
        ("patch_file", {"path": "README.md", "old": "hello", "new": "x"}, "matches 2 times"),
        ("patch_file", {"path": "README.md"}, "missing required argument 'old'"),
        ("nope", {"a": 1}, "unknown tool"),
        ("run_shell", "ls", "must be an object"),
        ("write_file", {"path": Hostile(), "content": "x"}, "must be a string"),
        ("read_file", {"path": "a\x00b"}, "NUL"),
        ("list_directory", {"path": "../.."}, "outside the project root"),
    ]
    for name, args, error in cases:
        d = describe(name, args, proj)
        assert error in d["error"], (name, d)
        assert isinstance(d["summary"], str) and d["summary"]
    assert describe("read_file", {"path": "x"}, proj / "no-root")["error"].endswith("is not a directory")


# ------------------------------------------------------------------- run_shell

def test_run_shell_captures_exit_code_stdout_stderr_and_cwd(proj):
    out = approved("run_shell", {"command": "pwd; echo out; echo err >&2; exit 3"}, proj)
    assert out == (f"exit code: 3\n--- stdout ---\n{proj.resolve()}\nout\n\n--- stderr ---\nerr\n")
    ok = approved("run_shell", {"command": "true"}, proj)
    assert ok == "exit code: 0\n--- stdout ---\n[no output]\n--- stderr ---\n[no output]"


def test_run_shell_reports_signal_deaths_and_has_no_stdin(proj):
    assert approved("run_shell", {"command": "kill -9 $$"}, proj).startswith("exit code: -9 (killed by SIGKILL)")
    started = time.monotonic()
    out = approved("run_shell", {"command": "cat; echo done", "timeout_s": 10}, proj)
    assert out.startswith("exit code: 0") and "done" in out
    assert time.monotonic() - started < 5  # stdin is /dev/null, cat does not wait


def test_run_shell_timeout_kills_sleep_and_reports(proj):
    started = time.monotonic()
    out = approved("run_shell", {"command": "echo started; sleep 30", "timeout_s": 1}, proj)
    elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert out.startswith("timed out after 1 s: the command was killed (whole process group)")
    assert "--- stdout (partial) ---\nstarted\n" in out


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie is dead, only not yet reaped


def _wait_dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_run_shell_timeout_kills_the_whole_process_group(proj):
    out = approved("run_shell", {"command": "sleep 30 & echo $! > bg.pid; wait", "timeout_s": 1}, proj)
    assert out.startswith("timed out after 1 s")
    pid = int((proj / "bg.pid").read_text())
    assert _wait_dead(pid), f"background sleep {pid} survived the timeout"


def test_run_shell_background_jobs_do_not_outlive_the_call(proj):
    out = approved("run_shell", {"command": "sleep 30 >/dev/null 2>&1 & echo $!"}, proj)
    assert out.startswith("exit code: 0")
    pid = int(out.split("--- stdout ---\n")[1].split("\n")[0])
    assert _wait_dead(pid), f"background sleep {pid} outlived run_shell"


def test_run_shell_output_is_bounded_head_and_tail(proj):
    total = 200_000
    out = approved("run_shell", {"command": f"printf START; head -c {total} /dev/zero | tr '\\0' a; printf END"},
                   proj)
    stdout = out.split("--- stdout ---\n", 1)[1].split("\n--- stderr ---", 1)[0]
    omitted = total + 8 - tool_shell.OUTPUT_HEAD_BYTES - tool_shell.OUTPUT_TAIL_BYTES
    assert stdout.startswith("START")
    assert stdout.endswith("END")
    assert f"\n[truncated: {omitted} bytes omitted]\n" in stdout
    assert len(stdout) < tool_shell.OUTPUT_HEAD_BYTES + tool_shell.OUTPUT_TAIL_BYTES + 100


def test_run_shell_strips_secret_env_vars(proj, monkeypatch):
    secrets = {"FAKE_API_KEY": "sk-fake-0123456789", "GITHUB_TOKEN": "ghp_fake_token_value",
               "MY_SECRET": "s3cr3t-value", "DB_PASSWORD": "hunter2-value", "lower_api_key": "lower-key-value"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HARMLESS_SETTING", "visible-value")
    out = approved("run_shell", {"command": "env"}, proj)
    for name, value in secrets.items():
        assert value not in out, name
        assert f"{name}=" not in out
    assert "HARMLESS_SETTING=visible-value" in out
    assert f"PWD={proj.resolve()}" in out


def test_run_shell_does_not_source_profiles_or_bash_env(proj, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    for rc in (".profile", ".bash_profile", ".bash_login", ".bashrc"):
        (home / rc).write_text("export LEAKED_FROM_PROFILE=sk-profile-secret\n")
    bash_env = tmp_path / "bash_env.sh"
    bash_env.write_text(f"touch {tmp_path / 'bash_env_ran'}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("BASH_ENV", str(bash_env))
    out = approved("run_shell", {"command": "env"}, proj)
    assert "sk-profile-secret" not in out
    assert "BASH_ENV=" not in out
    assert not (tmp_path / "bash_env_ran").exists()


def test_scrubbed_env_is_name_based_and_case_insensitive():
    env = tool_shell.scrubbed_env({"PATH": "/bin", "OPENAI_API_KEY": "k", "aws_secret_access_key": "s",
                                   "NPM_TOKEN": "t", "SMTP_PASSWD": "p", "GOOGLE_APPLICATION_CREDENTIALS": "c",
                                   "ENV": "/x", "HOME": "/h"})
    assert env == {"PATH": "/bin", "HOME": "/h"}


def test_run_shell_argument_checks(proj):
    with pytest.raises(ToolError, match="command is empty"):
        approved("run_shell", {"command": "   "}, proj)
    with pytest.raises(ToolError, match="at least 1"):
        approved("run_shell", {"command": "true", "timeout_s": 0}, proj)
    with pytest.raises(ToolError, match="finite"):
        approved("run_shell", {"command": "true", "timeout_s": float("nan")}, proj)
    with pytest.raises(ToolError, match="must be a number"):
        approved("run_shell", {"command": "true", "timeout_s": "5"}, proj)


def test_execute_converts_unexpected_os_errors(proj, monkeypatch):
    if os.geteuid() == 0:
        # root ignores file permissions; simulate the failure instead
        def denied(*a, **kw):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(tool_files.os, "scandir", denied)
    else:
        (proj / "src").chmod(0)
    try:
        with pytest.raises(ToolError, match="could not list 'src': Permission denied"):
            run("list_directory", {"path": "src"}, proj)
    finally:
        (proj / "src").chmod(0o755)
