"""ASTParser views, body elision, FileCache and the CLI helper."""
from __future__ import annotations

import ast
import importlib.util
import os
import random
import sysconfig
import threading
from pathlib import Path

import pytest

import file_cache
from cli import cmd_skeleton
from file_cache import ASTParser, FileCache, OutlineItem

STDLIB = Path(sysconfig.get_paths()["stdlib"])
NAMED_MODULES = [
    "inspect", "dataclasses", "asyncio.base_events", "json.decoder", "typing", "argparse",
    "pathlib", "collections", "functools", "enum", "logging", "subprocess", "threading",
    "http.client", "email.message", "unittest.case", "concurrent.futures._base",
    "importlib._bootstrap", "tokenize", "ast", "difflib", "textwrap", "string", "os", "shutil",
    "tarfile", "decimal", "_pydecimal", "codecs",
]
SKIP_PARTS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


def _stdlib_sample() -> list[Path]:
    paths = []
    for name in NAMED_MODULES:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            paths.append(Path(spec.origin))
    pool = sorted(p for p in STDLIB.rglob("*.py")
                  if not SKIP_PARTS.intersection(p.relative_to(STDLIB).parts[:-1]))
    paths += random.Random(20240601).sample(pool, 10)
    return sorted(set(paths))


SAMPLE = _stdlib_sample()
ELLIPSIS_ONLY = "<ellipsis>"


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
        and isinstance(stmt.value.value, str)


def _is_ellipsis(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
        and stmt.value.value is Ellipsis


def _def_names(tree: ast.Module) -> set[str]:
    """Qualified names of defs/classes at module and class level, incl. inside if/try/with/for/while."""
    names: set[str] = set()

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + node.name)
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While, ast.TryStar)):
                for part in ("body", "orelse", "finalbody"):
                    walk(getattr(node, part, []), prefix)
                for handler in getattr(node, "handlers", []):
                    walk(handler.body, prefix)

    walk(tree.body, "")
    return names


def _function_bodies(tree: ast.AST) -> list[tuple[str, list[ast.stmt]]]:
    return [(n.name, n.body) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


ALLOWED_OUTSIDE_FUNCTIONS = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign,
                             ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.Try,
                             ast.TryStar, ast.With, ast.For, ast.While)


def _check_structure(body: list[ast.stmt]) -> None:
    """Module / class / kept-block bodies hold only declarations (and docstring / `...`)."""
    for stmt in body:
        assert isinstance(stmt, ALLOWED_OUTSIDE_FUNCTIONS) or _is_docstring(stmt) or _is_ellipsis(stmt), \
            ast.dump(stmt)[:200]
        if isinstance(stmt, ast.ClassDef):
            _check_structure(stmt.body)
        elif isinstance(stmt, (ast.If, ast.Try, ast.TryStar, ast.With, ast.For, ast.While)):
            for part in ("body", "orelse", "finalbody"):
                _check_structure(getattr(stmt, part, []))
            for handler in getattr(stmt, "handlers", []):
                _check_structure(handler.body)


def test_sample_is_big_enough():
    assert len(SAMPLE) >= 25
    assert any(p.name == "base_events.py" for p in SAMPLE)


@pytest.mark.parametrize("path", SAMPLE, ids=lambda p: str(p.relative_to(STDLIB)))
def test_stdlib_skeleton_is_valid_complete_and_bodiless(path: Path):
    source = path.read_text(encoding="utf-8")
    original = ast.parse(source)
    view = ASTParser().view(ASTParser().parse(source), "skeleton")
    assert not view.has_errors
    skeleton = ast.parse(view.text)

    missing = _def_names(original) - _def_names(skeleton)
    assert not missing, f"names lost from skeleton: {sorted(missing)[:10]}"
    for name, body in _function_bodies(skeleton):
        rest = body[1:] if _is_docstring(body[0]) else body
        assert len(rest) == 1 and _is_ellipsis(rest[0]), f"{name} kept body statements"
    _check_structure(skeleton.body)


def test_stdlib_sample_skeletons_are_much_smaller():
    parser = ASTParser()
    full = sum(len(p.read_text(encoding="utf-8")) for p in SAMPLE)
    skeleton = sum(len(parser.get_skeleton(p.read_text(encoding="utf-8"))) for p in SAMPLE)
    assert skeleton < full * 0.4


@pytest.mark.parametrize("path", SAMPLE, ids=lambda p: str(p.relative_to(STDLIB)))
def test_elided_parse_gives_the_same_views_as_a_full_parse(path: Path):
    source = path.read_text(encoding="utf-8")
    exact, fast = ASTParser(elide_bodies=False), ASTParser(elide_bodies=True)
    full_tree, reduced = exact.parse(source), fast.parse(source)
    assert not full_tree.elided
    if reduced.elided:
        assert len(reduced.src) < len(full_tree.src)
    else:  # nothing to cut (e.g. a module of re-exports): the original was parsed
        assert reduced.src == full_tree.src and not any(_function_bodies(ast.parse(source)))
    for mode in ("skeleton", "curated", "outline"):
        a, b = exact.view(full_tree, mode), fast.view(reduced, mode)
        assert a.text == b.text, mode
        assert a.outline == b.outline, mode


SAMPLE_CODE = '''\
#!/usr/bin/env python3
"""Module docstring."""
from __future__ import annotations

import os
import sys
from typing import (
    Any,
    Optional,
)

LIMIT = 10
NAME: str = "x"
TABLE = {
<TABLE_ROWS>}
counter: int


def simple(a, b=2, *args, key: Optional[str] = None, **kw) -> int:
    """Add things.

    More text.
    """
    total = a + b
    for x in args:
        total += x
    return total


def multi_line(
    first: int,
    second: "str" = "a  b",  # keep the double space inside the string
) -> dict[str, Any]:
    return {}


async def fetch(url: str) -> bytes:
    data = await get(url)
    return data


def one_liner(x): return x * 2


@decorator
@other.decorator(arg=1)
class Thing(Base, metaclass=Meta):
    """A thing."""

    kind = "thing"
    size: int = 3

    def __init__(self, value):
        self.value = value

    @property
    def doubled(self) -> int:
        """Twice the value."""
        return self.value * 2

    class Nested:
        def inner(self):
            return 1


if sys.platform == "win32":
    def platform_helper():
        return "win"
elif sys.platform == "darwin":
    import fcntl
else:
    def platform_helper():
        return "posix"

try:
    import tomllib
except ImportError:
    tomllib = None

print("side effect")

if __name__ == "__main__":
    simple(1)
'''.replace("<TABLE_ROWS>", "".join(f"    {i}: '{i}',\n" for i in range(30)))


def test_skeleton_keeps_declarations_and_drops_bodies():
    text = ASTParser().get_skeleton(SAMPLE_CODE)
    tree = ast.parse(text)
    assert text.startswith('"""Module docstring."""\nfrom __future__ import annotations\n')
    for kept in ("import os", "from typing import (\n    Any,\n    Optional,\n)", "LIMIT = 10",
                 'NAME: str = "x"', "counter: int", "TABLE = ...",
                 "def simple(a, b=2, *args, key: Optional[str] = None, **kw) -> int:",
                 '    """Add things.\n\n    More text.\n    """\n    ...',
                 'def multi_line(\n    first: int,\n    second: "str" = "a  b",  # keep the double space',
                 "async def fetch(url: str) -> bytes:\n    ...", "def one_liner(x): ...",
                 "@decorator\n@other.decorator(arg=1)\nclass Thing(Base, metaclass=Meta):",
                 '    kind = "thing"\n    size: int = 3', "    @property\n    def doubled(self) -> int:",
                 "    class Nested:\n        def inner(self):\n            ...",
                 'if sys.platform == "win32":\n    def platform_helper():\n        ...',
                 "elif sys.platform == \"darwin\":\n    import fcntl",
                 "try:\n    import tomllib\nexcept ImportError:\n    tomllib = None",
                 'if __name__ == "__main__":\n    ...'):
        assert kept in text, kept
    for dropped in ("total = a + b", "await get(url)", "self.value = value", 'print("side effect")',
                    "simple(1)", "'29'", "return"):
        assert dropped not in text, dropped
    assert _def_names(tree) == _def_names(ast.parse(SAMPLE_CODE))


def test_assignment_truncation_keeps_every_target():
    long_value = "[" + ", ".join(str(i) for i in range(300)) + "]"
    code = f"A = B = {long_value}\nC: list[int] = {long_value}\nD = [1, 2]\n"
    text = ASTParser().get_skeleton(code)
    assert text == "A = B = ...\nC: list[int] = ...\nD = [1, 2]\n"


def test_long_docstrings_are_cut_with_a_marker_and_stay_docstrings():
    doc_lines = "".join(f"    line {i} \\d\n" for i in range(40))
    code = f'def f():\n    r"""Summary.\n\n{doc_lines}    """\n    return 1\n\nclass C:\n    """Short."""\n'
    text = ASTParser().get_skeleton(code)
    tree = ast.parse(text)
    doc = ast.get_docstring(tree.body[0], clean=False)
    assert doc.startswith("Summary.\n\n    line 0 \\d\n") and "line 17" in doc and "line 18" not in doc
    assert doc.endswith("    [... 23 more lines]")
    assert ast.get_docstring(tree.body[1]) == "Short."


ELISION_TRAPS = '''\
import textwrap


def column_zero_string():
    text = """
def not_a_function():
    pass
"""
    return text


def bracket_continuation():
    value = call(1,
2, [3,
4])
    return value


def backslash():
    total = 1 + \\
2
    return total


def nested():
    def inner():
        return 1
    class Local:
        pass
    return inner


class After:
    """Doc with 'quotes' and a # hash."""
    def method(self):
        s = "it's" + 'say "hi"' + r"\\d+" + f"{1 + 2}"
        return s  # trailing ' quote in a comment


def after_all():
    return textwrap.dedent("""\\
        x
    """)
'''


def test_elision_survives_strings_brackets_and_continuations():
    exact, fast = ASTParser(elide_bodies=False), ASTParser(elide_bodies=True)
    reduced = fast.parse(ELISION_TRAPS)
    assert reduced.elided
    assert b"not_a_function" not in reduced.src and b"call(1" not in reduced.src
    text = fast.view(reduced, "skeleton").text
    assert text == exact.get_skeleton(ELISION_TRAPS)
    assert "not_a_function" not in text
    names = _def_names(ast.parse(text))
    assert names == {"column_zero_string", "bracket_continuation", "backslash", "nested",
                     "After", "After.method", "after_all"}
    outline_fast = fast.get_outline(ELISION_TRAPS)
    assert outline_fast == ASTParser(elide_bodies=False).get_outline(ELISION_TRAPS)
    assert [(i.qualname, i.line, i.end_line) for i in outline_fast][:3] == [
        ("column_zero_string", 4, 9), ("bracket_continuation", 12, 16), ("backslash", 19, 22)]


def test_tab_indented_and_crlf_sources_fall_back_to_a_full_parse():
    tabbed = "class A:\n\tdef m(self):\n\t\treturn 1\n"
    crlf = "def f():\r\n    return 1\r\n"
    for code in (tabbed, crlf):
        parsed = ASTParser().parse(code)
        assert not parsed.elided
        text = ASTParser().view(parsed, "skeleton").text
        ast.parse(text)
        assert "return" not in text
    assert ASTParser().get_skeleton(tabbed) == "class A:\n\tdef m(self):\n\t\t...\n"


CURATED_CODE = '''\
import functools


# [HOT] the retry loop is where the bugs live
def marked_by_comment(n):
    for attempt in range(n):
        pass
    return "comment-body"


def marked_on_def_line(x):  # [HOT]
    return "def-line-body"


@core_logic
def marked_by_decorator():
    return "decorator-body"


@functools.lru_cache()
@markers.core_logic(reason="pricing")
def marked_by_dotted_decorator():
    return "dotted-body"


def not_marked():
    return "cold-body"


# an ordinary comment
def also_not_marked():
    """Doc."""
    return "cold-body-2"


class Service:
    @hot
    def handle(self, request):
        return "method-body"

    def helper(self):
        return "helper-body"
'''

MARKED = {"marked_by_comment", "marked_on_def_line", "marked_by_decorator",
          "marked_by_dotted_decorator", "handle"}


@pytest.mark.parametrize("elide", [True, False])
def test_curated_view_expands_exactly_the_marked_functions(elide: bool):
    text = ASTParser(elide_bodies=elide).get_curated_view(CURATED_CODE)
    original = {name: body for name, body in _function_bodies(ast.parse(CURATED_CODE))}
    curated = {name: body for name, body in _function_bodies(ast.parse(text))}
    assert curated.keys() == original.keys()
    for name, body in curated.items():
        same = [ast.dump(s) for s in body] == [ast.dump(s) for s in original[name]]
        assert same == (name in MARKED), name
    for body_marker in ("comment-body", "def-line-body", "decorator-body", "dotted-body", "method-body"):
        assert body_marker in text
    for cold in ("cold-body", "helper-body"):
        assert f'"{cold}"' not in text
    assert "def marked_on_def_line(x):  # [HOT]" in text


def test_skeleton_never_expands_marked_functions():
    text = ASTParser().get_skeleton(CURATED_CODE)
    assert "-body" not in text


def test_outline_items_and_text():
    parser = ASTParser()
    items = parser.get_outline(SAMPLE_CODE)
    by_name = {i.qualname: i for i in items}
    assert by_name["simple"] == OutlineItem("function", "simple", "simple", 49, 57)
    assert by_name["Thing"].kind == "class" and by_name["Thing.doubled"].kind == "method"
    assert by_name["Thing.Nested.inner"].kind == "method"
    assert by_name["fetch"].line == 67 and by_name["fetch"].end_line == 69
    assert [i.qualname for i in items].count("platform_helper") == 2
    text = parser.get_outline_text(SAMPLE_CODE)
    assert text.startswith("def simple  [49-57]\ndef multi_line  [60-64]\n")
    assert "class Thing  [77-93]\n    def __init__  [83-84]\n" in text
    assert "        def inner  [92-93]\n" in text


BROKEN = '''\
import os

def fine(a):
    return a

def broken(:
    pass

class Kept:
    def method(self):
        return 1

x = (1,
'''


@pytest.mark.parametrize("mode", ["skeleton", "curated", "outline"])
def test_syntax_errors_give_a_valid_best_effort_view_that_says_so(mode: str):
    parser = ASTParser()
    view = parser.view(parser.parse(BROKEN), mode)
    assert view.has_errors
    assert 6 in view.error_lines and 13 in view.error_lines
    assert view.text.startswith("# NOTE: syntax errors near lines ")
    assert "best-effort view" in view.text.splitlines()[0]
    if mode != "outline":
        tree = ast.parse(view.text)
        assert {"fine", "Kept", "Kept.method"} <= _def_names(tree)
    else:
        assert "def fine  [3-4]" in view.text and "class Kept" in view.text


def test_errors_inside_bodies_exact_mode_reports_them_elided_mode_may_not():
    code = "def f():\n    x = = 1\n    return x\n\ndef g():\n    return 2\n"
    exact = ASTParser(elide_bodies=False)
    view = exact.view(exact.parse(code), "skeleton")
    assert view.has_errors and view.error_lines == (2,)
    fast = ASTParser()
    quiet = fast.view(fast.parse(code), "skeleton")
    assert not quiet.has_errors  # the documented trade-off: the skeleton itself is unaffected
    assert quiet.text == "def f():\n    ...\n\ndef g():\n    ...\n"
    unbalanced = "def f():\n    x = (1,\n\ndef g():\n    return 2\n"
    loud = fast.view(fast.parse(unbalanced), "skeleton")
    assert loud.has_errors
    ast.parse(loud.text)


def test_unknown_language_and_mode_are_rejected():
    with pytest.raises(ValueError, match="reads Python only"):
        ASTParser("rust")
    with pytest.raises(ValueError, match="unsupported language"):
        file_cache.parser_for("cobol")
    parser = ASTParser()
    with pytest.raises(ValueError, match="unknown view mode"):
        parser.view(parser.parse("x = 1\n"), "summary")


# --------------------------------------------------------------------------- FileCache


def _write(path: Path, text: str, mtime_ns: int | None = None) -> None:
    path.write_text(text, encoding="utf-8")
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_cache_views_and_hits(tmp_path: Path):
    src = tmp_path / "m.py"
    _write(src, "import os\n\ndef f():\n    return 1\n")
    cache = FileCache()
    assert cache.get_view(src, "full").text == src.read_text()
    skeleton = cache.get_view(src, "skeleton")
    assert skeleton.text == "import os\n\ndef f():\n    ...\n"
    assert cache.get_view(src, "skeleton") is skeleton
    outline = cache.get_view(src, "outline")
    assert outline.outline == (OutlineItem("function", "f", "f", 3, 4),)
    cache.get_view(src, "curated")
    assert cache.stats() == {"parses": 1, "hits": 1, "misses": 4, "entries": 1}


def test_changed_content_gives_a_new_view(tmp_path: Path):
    src = tmp_path / "m.py"
    _write(src, "def old():\n    pass\n", mtime_ns=1_000_000_000)
    cache = FileCache()
    assert "def old" in cache.get_view(src, "skeleton").text
    _write(src, "def new_name():\n    pass\n", mtime_ns=2_000_000_000)
    text = cache.get_view(src, "skeleton").text
    assert "def new_name" in text and "def old" not in text
    assert cache.stats()["parses"] == 2


def test_same_size_rewrite_with_new_mtime_invalidates(tmp_path: Path):
    src = tmp_path / "m.py"
    _write(src, "def aaa():\n    pass\n", mtime_ns=1_000_000_000)
    cache = FileCache()
    assert "aaa" in cache.get_view(src, "skeleton").text
    _write(src, "def bbb():\n    pass\n", mtime_ns=1_000_000_001)  # same size, 1 ns later
    assert "bbb" in cache.get_view(src, "skeleton").text
    os.utime(src, ns=(5_000_000_000, 5_000_000_000))  # touch only: same bytes, new key
    assert "bbb" in cache.get_view(src, "skeleton").text
    assert cache.stats()["parses"] == 3


def test_warm_pass_over_unchanged_tree_does_not_parse(tmp_path: Path):
    for i in range(20):
        (tmp_path / f"mod{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n")
    (tmp_path / "notes.md").write_text("# notes\n")
    paths = sorted(tmp_path.iterdir())
    cache = FileCache()
    first = [cache.get_view(p, mode).text for p in paths for mode in ("skeleton", "outline")]
    assert cache.stats()["parses"] == 20
    second = [cache.get_view(p, mode).text for p in paths for mode in ("skeleton", "outline")]
    stats = cache.stats()
    assert second == first
    assert stats["parses"] == 20 and stats["hits"] == len(paths) * 2


def test_concurrent_access_parses_each_file_once(tmp_path: Path):
    paths = []
    for i in range(6):
        path = tmp_path / f"m{i}.py"
        path.write_text("".join(f"def f{j}(a):\n    return a * {j}\n\n" for j in range(300)) + f"X = {i}\n")
        paths.append(path)
    cache = FileCache()
    barrier = threading.Barrier(8)
    results: list[list[str]] = [None] * 8  # type: ignore[list-item]
    failures: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            barrier.wait()
            order = paths if slot % 2 else list(reversed(paths))
            results[slot] = [cache.get_view(p, "skeleton").text for p in order]
        except BaseException as exc:  # surfaced to the main thread below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures
    expected = [ASTParser().get_skeleton(p.read_text()) for p in paths]
    for slot, got in enumerate(results):
        assert got == (expected if slot % 2 else list(reversed(expected)))
    stats = cache.stats()
    assert stats["parses"] == len(paths)
    assert stats["misses"] == len(paths) and stats["hits"] == 8 * len(paths) - len(paths)


def test_non_python_files_pass_through_in_every_mode(tmp_path: Path):
    doc = tmp_path / "README.md"
    doc.write_text("# Title\n\ndef not_code():\n    pass\n")
    cache = FileCache()
    for mode in file_cache.MODES:
        view = cache.get_view(doc, mode)
        assert view.text == doc.read_text() and not view.has_errors
        assert view.note == ("" if mode == "full" else f"no {mode} view for .md files; full text")
    assert cache.stats()["parses"] == 0


def test_cache_reports_errors_and_rejects_bad_input(tmp_path: Path):
    cache = FileCache()
    with pytest.raises(FileNotFoundError):
        cache.get_view(tmp_path / "nope.py", "skeleton")
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="unknown view mode"):
        cache.get_view(tmp_path / "a.py", "everything")
    broken = tmp_path / "broken.py"
    broken.write_text("def ok():\n    pass\n\ndef bad(:\n    pass\n")
    view = cache.get_view(broken, "skeleton")
    assert view.has_errors and view.error_lines == (4,)
    ast.parse(view.text)


def test_encoding_cookie_crlf_and_symlinks_share_an_entry(tmp_path: Path):
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"# -*- coding: latin-1 -*-\nNAME = '\xe9t\xe9'\r\ndef f():\r\n    return NAME\r\n")
    link = tmp_path / "link.py"
    link.symlink_to(latin)
    cache = FileCache()
    view = cache.get_view(latin, "skeleton")
    assert "NAME = 'été'\n" in view.text and "\r" not in view.text and "return" not in view.text
    assert cache.get_view(link, "skeleton") is view
    assert cache.get_text(latin).count("\r") == 0


def test_lru_bound_and_invalidate(tmp_path: Path):
    cache = FileCache(max_entries=2)
    paths = [tmp_path / f"m{i}.py" for i in range(3)]
    for p in paths:
        p.write_text("def f():\n    pass\n")
        cache.get_view(p, "skeleton")
    assert cache.stats()["entries"] == 2
    cache.get_view(paths[0], "skeleton")  # evicted earlier, so parsed again
    assert cache.stats()["parses"] == 4
    cache.invalidate(paths[0])
    cache.get_view(paths[0], "skeleton")
    assert cache.stats()["parses"] == 5
    cache.invalidate()
    assert cache.stats()["entries"] == 0


# --------------------------------------------------------------------------- CLI helper


def test_cli_skeleton_prints_each_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    a, b = tmp_path / "a.py", tmp_path / "b.txt"
    a.write_text("def f():\n    return 1\n")
    b.write_text("plain")
    assert cmd_skeleton([str(a), str(b)]) == 0
    out = capsys.readouterr()
    assert out.out == (f"# ==== {a} ====\ndef f():\n    ...\n"
                       f"# ==== {b} ==== (no skeleton view for .txt files; full text)\nplain\n")
    assert out.err == ""


def test_cli_skeleton_reports_missing_files_but_prints_the_rest(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture):
    a = tmp_path / "a.py"
    a.write_text("class C:\n    def m(self):\n        return 1\n")
    missing = tmp_path / "gone.py"
    assert cmd_skeleton([str(missing), str(a)], mode="outline") == 2
    out = capsys.readouterr()
    assert f"no such file: {missing}" in out.err
    assert out.out == f"# ==== {a} ====\nclass C  [1-3]\n    def m  [2-3]\n"
    assert cmd_skeleton([str(a)], mode="bogus") == 2
    assert "unknown mode" in capsys.readouterr().err

