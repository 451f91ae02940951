"""`search_text` with `regex=true` cannot hang the app (tools/files.py, RE2).

Python's backtracking `re` takes seconds on `(a+)+$` against a 27-character line, and hours at
40, holding the GIL all the while: the GUI, the engine loop and the hook server would freeze.
These tests run the search through `tools.execute`, as a model's call arrives, while another
thread counts, and check both the answer time and that the other thread kept running.
"""
from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tools import ToolError, execute
from tools import search as tool_search

CATASTROPHIC = "(a+)+$"


class ProgressProbe:
    """Another thread doing pure-Python work, stamping the time every 1,000 steps.

    If the search held the GIL, the stamps would stop for as long as it did: `max_gap` is the
    longest stretch with no progress, `steps` how much work got done in the window."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in range(1_000):
                self.steps += 1
            self.stamps.append(time.monotonic())

    def __enter__(self) -> ProgressProbe:
        self._thread.start()
        while not self.stamps:              # running before the search starts
            time.sleep(0.001)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def max_gap(self, start: float, end: float) -> float:
        inside = [start] + [t for t in self.stamps if start <= t <= end] + [end]
        return max(b - a for a, b in zip(inside, inside[1:], strict=False))


def _timed(fn):
    start = time.monotonic()
    try:
        return fn(), start, time.monotonic()
    except ToolError as exc:
        return exc, start, time.monotonic()


@pytest.fixture
def hostile_proj(tmp_path: Path) -> Path:
    """20,000 lines of 27-40 'a's and a non-matching tail (each one is catastrophic for `re`)."""
    lines = ["a" * (27 + i % 14) + "!" for i in range(20_000)]
    lines[12_345] = "a" * 30                     # the one line that matches `(a+)+$`
    (tmp_path / "data.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_catastrophic_pattern_is_answered_fast_while_another_thread_runs(hostile_proj):
    with ProgressProbe() as probe:
        out, start, end = _timed(lambda: execute("search_text", {"pattern": CATASTROPHIC, "regex": True},
                                                 hostile_proj))
        steps_before = probe.steps
    elapsed = end - start
    assert out == f"data.txt:12346: {'a' * 30}", out
    assert elapsed < 1.0, f"the search took {elapsed:.2f} s"
    gap = probe.max_gap(start, end)
    assert gap < 0.25, f"the other thread made no progress for {gap:.3f} s (the GIL was held)"
    assert steps_before > 0 and len([t for t in probe.stamps if start <= t <= end]) >= 2, \
        "the other thread did not progress during the search"


def test_a_pattern_too_slow_for_the_text_is_stopped_with_an_error_in_about_a_second(tmp_path):
    """Linear, but with a big constant: a bounded-repeat pattern over 'a'/'b' text costs RE2
    microseconds per character; the search is stopped at the time limit, not at the end."""
    rng = random.Random(7)
    lines = ["".join(rng.choice("ab") for _ in range(20_000)) for _ in range(25)]
    (tmp_path / "ab.txt").write_text("\n".join(lines) + "\n")
    with ProgressProbe() as probe:
        out, start, end = _timed(lambda: execute(
            "search_text", {"pattern": "(?:a|b)*a(?:a|b){990}c", "regex": True}, tmp_path))
    assert isinstance(out, ToolError), out
    assert "too slow" in str(out) and "narrow the path" in str(out)
    assert end - start < tool_search.SEARCH_REGEX_TIME_LIMIT_S + 1.0, f"stopped after {end - start:.2f} s"
    assert probe.max_gap(start, end) < 0.25, "the other thread stalled while RE2 matched"


@pytest.mark.parametrize("pattern, needle", [
    (r"(a)\1", "backreferences"),
    (r"foo(?=bar)", "lookahead"),
    (r"(?<=x)y", "lookahead"),
    ("(unclosed", "invalid or unsupported regular expression"),
])
def test_unsupported_or_invalid_patterns_are_clear_tool_errors(hostile_proj, pattern, needle):
    out, start, end = _timed(lambda: execute("search_text", {"pattern": pattern, "regex": True}, hostile_proj))
    assert isinstance(out, ToolError) and needle in str(out) and repr(pattern) in str(out), out
    assert end - start < 1.0


def test_a_pattern_that_compiles_too_big_is_refused_before_searching(hostile_proj):
    out, _, _ = _timed(lambda: execute("search_text", {"pattern": "(.*a){200}c", "regex": True}, hostile_proj))
    assert isinstance(out, ToolError) and "too complex" in str(out), out


def test_overlong_lines_are_skipped_by_the_regex_and_said_so(tmp_path):
    long_line = "x" * (tool_search.SEARCH_REGEX_LINE_CHARS + 1) + "needle"
    (tmp_path / "min.js").write_text(f"{long_line}\nshort needle\n")
    out = execute("search_text", {"pattern": "need(le)", "regex": True}, tmp_path)
    assert out.splitlines()[0] == "min.js:2: short needle"
    assert f"1 line(s) longer than {tool_search.SEARCH_REGEX_LINE_CHARS} characters not searched with the regex" in out
    literal = execute("search_text", {"pattern": "needle"}, tmp_path)      # literal mode reads them
    assert literal.startswith("min.js:1: ") and "min.js:2: short needle" in literal


def test_everyday_regex_syntax_still_works(tmp_path):
    (tmp_path / "m.py").write_text("def main(argv):\nclass Foo(Base):\n    x = 0x1F\n")
    assert execute("search_text", {"pattern": r"^(?P<kw>def|class)\s+\w+\(", "regex": True}, tmp_path) \
        .splitlines() == ["m.py:1: def main(argv):", "m.py:2: class Foo(Base):"]
    assert execute("search_text", {"pattern": r"(?i)0X[0-9a-f]+$", "regex": True}, tmp_path) == "m.py:3:     x = 0x1F"


# ---------------------------------------------------------------- chunks change nothing
def _reference(text: bytes, pattern: str, regex: bool) -> list[str]:
    """What search_text answers when every line is matched on its own (the definition)."""
    import re2
    options = re2.Options()
    options.log_errors = False
    line_re = re2.compile(pattern, options) if regex else None
    out = []
    lines = text.split(b"\n")                   # only LF ends a line, as `for raw in file` did
    if lines and lines[-1] == b"":
        lines.pop()
    for lineno, raw in enumerate(lines, start=1):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if (line_re.search(line) if regex else pattern in line):
            out.append(f"f.txt:{lineno}: {line}")
    return out


PATTERNS = ["^a", "b$", "^$", r"\bab\b", r"a\sb", r"\Aa", r"b\z", "(?-m)^a", "[^a]+$", "^b+a$", r"(?s)a.b", "x"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(text=b"b\na", pattern=r"\Aa", regex=True, chunk=64)          # a text-start anchor on line 2
@example(text=b"ab\nb x\n", pattern=r"b\z", regex=True, chunk=64)
@example(text=b"b\na\n", pattern="(?-m)^a", regex=True, chunk=64)
@example(text=b"ab\r\nb\r\r\n", pattern="b$", regex=True, chunk=64)  # CRLF: `$` before the CR
@example(text=b"a\n\n", pattern="^$", regex=True, chunk=64)          # an empty line, no phantom after it
@given(text=st.binary(max_size=300).map(lambda b: bytes(b"ab\r\n x\xff"[c % 7] for c in b)),
       pattern=st.sampled_from(PATTERNS), regex=st.booleans(), chunk=st.sampled_from([1, 3, 8, 64]))
def test_chunked_search_answers_exactly_what_line_by_line_matching_does(tmp_path, monkeypatch, text, pattern,
                                                                         regex, chunk):
    """Random texts of a, b, spaces, CR, LF and a broken UTF-8 byte, tiny chunks: the chunk test
    never hides a matching line and never adds one."""
    monkeypatch.setattr(tool_search, "CHUNK_CHARS", chunk)
    (tmp_path / "f.txt").write_bytes(text)
    expected = _reference(text, pattern, regex)
    got = tool_search.search_text(tmp_path.resolve(), pattern, regex=regex, max_results=1000)
    assert got.split("\n") == (expected or [f"no matches for {pattern!r} in '.'"])
