"""`search_text`: the project's text files, line by line, matched by literal text or a regex.

A model's regex must not hang the app.  Python's backtracking `re` takes seconds on `(a+)+$`
against a 27-character line (hours at 40) and holds the GIL all the while, freezing the GUI,
the engine loop and the hook server.  So regexes are compiled by RE2 (`google-re2`), which
matches in time linear in the text, has no backreferences or lookaround to backtrack on, and
releases the GIL while it matches.  Linear still has a constant that grows with the compiled
program, so three bounds make every search answer within about a second:

- the compiled program is capped (SEARCH_REGEX_MAX_PROGRAM; everyday patterns are under 100),
  which keeps RE2 under ~5 us per character;
- no single engine call sees more than CHUNK_CHARS (lines longer than SEARCH_REGEX_LINE_CHARS
  are not regex-searched, and the answer says how many were left out);
- the search stops with a ToolError once it has run SEARCH_REGEX_TIME_LIMIT_S.

Matching goes by chunks: a file's text is cut at line ends into pieces of at most
CHUNK_CHARS, each piece is matched as a whole (one engine call for hundreds of lines), and
only a piece that matches is split into lines.  For regexes the chunk pattern is compiled in
multi-line mode, where `^` and `$` also match at line ends, so a line that matches always
makes its chunk match; the chunk test may say yes for nothing (e.g. `a\\sb` across two
lines), never no for a match.  Patterns for which that would not hold (`\\A`, `\\z`, or `m`
switched off) have every chunk split into lines.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import re2

from tools.errors import ToolError
from tools.files import BINARY_SNIFF_BYTES, is_binary
from tools.paths import display_path, is_inside, resolve_in_root

log = logging.getLogger(__name__)

SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "node_modules",
    ".mypy_cache", ".pytest_cache", ".hypothesis", ".tox", ".ruff_cache",
})
SEARCH_RESULTS_CAP = 1_000         # hard upper bound for search_text max_results
SEARCH_LINE_CHARS = 400            # a matching line is cut to this many characters
SEARCH_MAX_FILE_BYTES = 4_000_000  # larger files are skipped
SEARCH_REGEX_TIME_LIMIT_S = 1.0
SEARCH_REGEX_MAX_PROGRAM = 1_000   # RE2 program size
SEARCH_REGEX_LINE_CHARS = 20_000   # ~0.1 s for RE2 at its worst per-character cost
CHUNK_CHARS = SEARCH_REGEX_LINE_CHARS
# `\A` / `\z` (text start / end) or a flag group that turns `m` off: a chunk match would not
# imply a line match, so such patterns are matched line by line.
_LINE_ONLY_RE = re.compile(r"\\[Az]|\(\?[a-zA-Z]*-[a-zA-Z]*m")

Matcher = Callable[[str], Any]       # truthy when the text matches


def search_text(root: Path, pattern: str, path: str = ".", regex: bool = False,
                max_results: int = 100) -> str:
    """Matching lines as `path:line: text` (paths relative to the root).

    Walks `path` without following symlinked directories, skips SKIP_DIRS,
    binary files, files over SEARCH_MAX_FILE_BYTES, and symlinked files that
    point outside the root.
    """
    if pattern == "":
        raise ToolError("pattern is empty")
    if regex:
        line_match, chunk_match = _compile_regex(pattern)
    else:
        def contains_pattern(text: str) -> bool:
            return pattern in text
        line_match = chunk_match = contains_pattern
    target = resolve_in_root(root, path)
    if not target.exists():
        raise ToolError(f"path {path!r} does not exist")
    search = _Search(pattern, path, regex, min(max_results, SEARCH_RESULTS_CAP), line_match, chunk_match)
    for file_path in _walk_files(root, target):
        try:
            text = _read_text(file_path)
        except OSError as exc:
            log.debug("search_text skips %s: %s", file_path, exc)
            continue
        if text is None:
            search.skipped_large += 1
        elif text and not search.file(display_path(root, file_path), text):
            break
    return search.answer()


@dataclass
class _Search:
    pattern: str
    path: str
    regex: bool
    max_results: int
    line_match: Matcher
    chunk_match: Matcher
    results: list[str] = field(default_factory=list)
    capped: bool = False
    skipped_large: int = 0
    long_lines: int = 0
    files_searched: int = 0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.regex:
            self.deadline = time.monotonic() + SEARCH_REGEX_TIME_LIMIT_S

    def file(self, rel: str, text: str) -> bool:
        """Search one file's (non-empty) text; False once the results are capped."""
        self.files_searched += 1
        body = text[:-1] if text.endswith("\n") else text     # no phantom line after the last newline
        if "\r" in body:                   # lines end without their CRs, as `$` expects
            body = "\n".join(line.rstrip("\r") for line in body.split("\n"))
        pos, lineno, end = 0, 1, len(body)
        while True:
            self._check_time()
            if end - pos <= CHUNK_CHARS:
                chunk_end = end
            else:
                chunk_end = body.rfind("\n", pos, pos + CHUNK_CHARS)
                if chunk_end < 0:          # the line at `pos` alone is longer than a chunk
                    newline = body.find("\n", pos)
                    line_end = end if newline < 0 else newline
                    if not self._line(rel, lineno, body[pos:line_end]):
                        return False
                    if line_end == end:
                        return True
                    pos, lineno = line_end + 1, lineno + 1
                    continue
            chunk = body[pos:chunk_end]
            if self.chunk_match(chunk):
                for offset, line in enumerate(chunk.split("\n")):
                    if not self._line(rel, lineno + offset, line):
                        return False
            if chunk_end == end:
                return True
            pos, lineno = chunk_end + 1, lineno + chunk.count("\n") + 1

    def _line(self, rel: str, lineno: int, line: str) -> bool:
        if self.regex:
            self._check_time()
            if len(line) > SEARCH_REGEX_LINE_CHARS:
                self.long_lines += 1
                return True
        if not self.line_match(line):
            return True
        if len(self.results) >= self.max_results:
            self.capped = True
            return False
        if len(line) > SEARCH_LINE_CHARS:
            line = line[:SEARCH_LINE_CHARS] + " [line cut]"
        self.results.append(f"{rel}:{lineno}: {line}")
        return True

    def _check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ToolError(f"search_text stopped after {SEARCH_REGEX_TIME_LIMIT_S:g} s: the regular expression "
                            f"{self.pattern!r} is too slow for the text under {self.path!r} "
                            f"({self.files_searched} file(s) searched, {len(self.results)} matching line(s) "
                            f"so far); narrow the path or simplify the pattern")

    def answer(self) -> str:
        out = "\n".join(self.results) if self.results else f"no matches for {self.pattern!r} in {self.path!r}"
        if self.capped:
            out += f"\n[results capped at {self.max_results}; narrow the pattern or the path]"
        if self.skipped_large:
            out += f"\n[skipped {self.skipped_large} file(s) larger than {SEARCH_MAX_FILE_BYTES} bytes]"
        if self.long_lines:
            out += (f"\n[{self.long_lines} line(s) longer than {SEARCH_REGEX_LINE_CHARS} characters not searched "
                    f"with the regex; search them with a literal pattern]")
        return out


def _compile_regex(pattern: str) -> tuple[Matcher, Matcher]:
    """RE2 matchers for a line and for a chunk of lines, or a ToolError the model can act on."""
    options = re2.Options()
    options.log_errors = False           # RE2 would print every bad pattern to stderr
    try:
        line = re2.compile(pattern, options)
        chunk = None if _LINE_ONLY_RE.search(pattern) else re2.compile("(?m)" + pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", errors="replace")
        raise ToolError(f"invalid or unsupported regular expression {pattern!r}: {detail} (search_text uses "
                        f"RE2 syntax: like Python's re, without backreferences such as \\1 and without "
                        f"lookahead or lookbehind such as (?=...))") from None
    if line.programsize > SEARCH_REGEX_MAX_PROGRAM:
        raise ToolError(f"regular expression {pattern!r} is too complex (compiled size {line.programsize}, "
                        f"limit {SEARCH_REGEX_MAX_PROGRAM}); use a simpler pattern or several searches")
    if chunk is None:
        def every_chunk(text: str) -> bool:
            return True
        return line.search, every_chunk
    return line.search, chunk.search


def _read_text(file_path: Path) -> str | None:
    """The file's text ("" for a binary file), or None when it is over SEARCH_MAX_FILE_BYTES."""
    if file_path.stat().st_size > SEARCH_MAX_FILE_BYTES:
        return None
    with open(file_path, "rb") as fh:
        data = fh.read(SEARCH_MAX_FILE_BYTES + 1)
    if len(data) > SEARCH_MAX_FILE_BYTES:
        return None                      # grew since the stat
    if is_binary(data[:BINARY_SNIFF_BYTES]):
        return ""
    return data.decode("utf-8", errors="replace")


def _walk_files(root: Path, target: Path):
    """Files under `target` in sorted order, confined to the root (lexical paths, not resolved)."""
    if target.is_file():
        yield target
        return
    for dirpath, dirnames, filenames in os.walk(target, followlinks=False, onerror=_log_walk_error):
        # os.walk never descends into symlinked dirs with followlinks=False; prune the noise dirs too.
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        base = Path(dirpath)
        for name in sorted(filenames):
            file_path = base / name
            if file_path.is_symlink() and not is_inside(root, file_path):
                log.debug("search_text does not follow %s out of the root", file_path)
                continue
            if file_path.is_file():
                yield file_path


def _log_walk_error(exc: OSError) -> None:
    log.debug("search_text cannot read directory: %s", exc)
