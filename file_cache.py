"""File views for model context: skeletons, curated views, outlines, and a file cache.

Views of a Python file (tree-sitter based, see `ASTParser`):

- ``full``      the text as it is on disk.
- ``skeleton``  imports, module/class-level assignments, top-level ``if``/``try``/``with``/``for``/
                ``while`` blocks that hold any of those, class and def headers with decorators,
                type hints and docstrings; every function body becomes ``...``.  Assignments whose
                text is longer than 8 lines or 500 bytes keep their target and annotation but
                their value becomes ``...``.  The result is valid Python.
- ``curated``   the skeleton plus the FULL source of functions marked important.  A function is
                marked when any of these holds:
                  * the line just before the def (or before its first decorator) is a comment
                    containing ``[HOT]``, e.g. ``# [HOT] retry logic lives here``;
                  * the ``def`` line itself carries a comment containing ``[HOT]``;
                  * it has a decorator whose dotted name ends in ``core_logic`` or ``hot``
                    (``@core_logic``, ``@markers.core_logic``, ``@hot(reason="...")``).
                Only functions the skeleton shows (top-level, class-level, or inside kept
                top-level blocks) can be expanded; a def nested inside another function's body
                is part of that body.
- ``outline``   one line per class/function/method with its line range (`OutlineItem`).

A file whose tree has syntax errors still gets a valid-Python best-effort view; the
`ViewResult` says so (``has_errors``, ``error_lines``) and the text starts with a
``# NOTE: syntax errors near lines ...; best-effort view`` comment.

JavaScript, TypeScript/TSX, Go, Rust, Java, C, C++ and C# get the same three views from
`skeleton.language_views.LanguageParser` (rules in `skeleton.brace_emitter`; `parser_for(name)`
returns the parser of any language).  Files of other languages keep their full text in every
mode, with `ViewResult.note` saying so; so does a file whose grammar wheel is missing.

Views never need function bodies, so by default the source handed to tree-sitter has non-HOT
bodies cut to `...` first (`skeleton.elision`; same output, about half the parse time).  The
text itself is spliced out of the tree by `skeleton.emitter`.

`FileCache` keys each file by (resolved path, mtime_ns, size) and keeps its text, parse tree and
every view computed so far.  Context aggregation (`build_context`, `ContextItem`, token
estimates, the trim plan) lives in `context_builder` and is re-exported here.
"""
from __future__ import annotations

import io
import logging
import os
import threading
import tokenize
from collections import OrderedDict

import tree_sitter_python as tspython
from tree_sitter import Language, Node, Parser

from skeleton import elision, emitter, languages

# The tuning values and the HOT rule live with the emitter; re-exported as part of this API.
from skeleton.emitter import HOT_DECORATORS, MAX_ASSIGN_BYTES, MAX_ASSIGN_LINES, MAX_DOCSTRING_LINES  # noqa: F401
from skeleton.language_views import LanguageParser
from skeleton.languages import GrammarMissing
from skeleton.views import OutlineItem, ParsedSource, ViewResult, ViewShortcuts, render_outline

log = logging.getLogger(__name__)

MODES = ("full", "skeleton", "curated", "outline")
PYTHON_SUFFIXES = frozenset({".py", ".pyi", ".pyw"})


class ASTParser(ViewShortcuts):
    """tree-sitter views of Python source. Safe to share between threads.

    With `elide_bodies` (the default) non-HOT function bodies are cut before parsing, which
    makes views about 2-3x cheaper and gives the same text; pass False to have every syntax
    error in the file reported (see `skeleton.elision`).
    """

    def __init__(self, language: str = "python", elide_bodies: bool = True):
        if language != "python":
            raise ValueError(f"ASTParser reads Python only, not {language!r}; "
                             "use file_cache.parser_for(language) for the other languages")
        self.language = language
        self.elide_bodies = elide_bodies
        self._language = Language(tspython.language())
        self._local = threading.local()  # a tree-sitter Parser is not safe to share

    def _parser(self) -> Parser:
        parser = getattr(self._local, "parser", None)
        if parser is None:
            parser = self._local.parser = Parser(self._language)
        return parser

    def parse(self, code: str | bytes, elide_bodies: bool | None = None) -> ParsedSource:
        src = code.encode("utf-8", "surrogatepass") if isinstance(code, str) else code
        elide = self.elide_bodies if elide_bodies is None else elide_bodies
        reduced = elision.elide_bodies(src) if elide else None
        if reduced is not None:
            tree = self._parser().parse(reduced)
            if not tree.root_node.has_error:
                return ParsedSource(reduced, tree, (), (), src, True)
            log.debug("reduced source has errors; parsing the original for exact error lines")
        tree = self._parser().parse(src)
        return ParsedSource(src, tree, *emitter.find_errors(tree.root_node), original=src)

    def view(self, parsed: ParsedSource, mode: str) -> ViewResult:
        if mode == "full":
            return ViewResult((parsed.original or parsed.src).decode("utf-8", "replace"), mode,
                              language="python")
        if mode == "outline":
            items = self.outline_items(parsed)
            return self._result(parsed, mode, render_outline(items), items)
        if mode not in ("skeleton", "curated"):
            raise ValueError(f"unknown view mode {mode!r}; expected one of {', '.join(MODES)}")
        chunks = emitter.Emitter(parsed.src, mode == "curated", parsed.missing).module_chunks(
            parsed.tree.root_node)
        if parsed.has_errors:
            chunks = emitter.drop_invalid_chunks(chunks)
        text = b"".join(chunks).lstrip(b"\n").decode("utf-8", "replace")
        return self._result(parsed, mode, text)

    @staticmethod
    def _result(parsed: ParsedSource, mode: str, text: str,
                items: tuple[OutlineItem, ...] = ()) -> ViewResult:
        if not parsed.has_errors:
            return ViewResult(text, mode, outline=items, language="python")
        shown = ", ".join(map(str, parsed.error_lines[:10])) + (", ..." if len(parsed.error_lines) > 10 else "")
        note = f"# NOTE: syntax errors near lines {shown}; best-effort view\n"
        return ViewResult(note + text, mode, True, parsed.error_lines, items, "python")

    def outline_items(self, parsed: ParsedSource) -> tuple[OutlineItem, ...]:
        out: list[OutlineItem] = []
        _outline(parsed.tree.root_node, parsed.src, "", False, out)
        return tuple(out)


def _outline(block: Node, src: bytes, prefix: str, in_class: bool, out: list[OutlineItem]) -> None:
    for node in block.named_children:
        kind = node.type
        if kind in emitter.DEFS:
            defn = node.child_by_field_name("definition") if kind == "decorated_definition" else node
            name_node = defn.child_by_field_name("name") if defn is not None else None
            if defn is None or name_node is None:
                continue
            name = src[name_node.start_byte:name_node.end_byte].decode("utf-8", "replace")
            is_class = defn.type == "class_definition"
            out.append(OutlineItem("class" if is_class else "method" if in_class else "function",
                                   name, prefix + name, defn.start_point.row + 1, node.end_point.row + 1))
            body = defn.child_by_field_name("body")
            if is_class and body is not None:
                _outline(body, src, prefix + name + ".", True, out)
        elif kind in emitter.COMPOUND or kind in emitter.CLAUSES or kind in ("block", "ERROR"):
            _outline(node, src, prefix, in_class, out)


# ---------------------------------------------------------------------------------------------
# File cache

def is_python_path(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in PYTHON_SUFFIXES


def has_views(path: str | os.PathLike) -> bool:
    """Whether skeleton / curated / outline views of this file differ from its full text
    (by suffix: Python or a language in `skeleton.languages.SPECS`)."""
    return is_python_path(path) or languages.has_grammar(path)


def language_of(path: str | os.PathLike, head: bytes = b"") -> str | None:
    """"python", "go", "cpp", ...; None for a file without views.  `head` (the start of the
    text) decides whether a `.h` file is C or C++."""
    if is_python_path(path):
        return "python"
    spec = languages.spec_for_path(path, head)
    return spec.name if spec is not None else None


_PARSERS: dict[str, LanguageParser] = {}
_PARSERS_LOCK = threading.Lock()


def parser_for(language: str) -> ASTParser | LanguageParser:
    """A shared parser with `parse` / `view` / `outline_items` for any supported language.
    Raises ValueError for an unknown language, `GrammarMissing` when its wheel is absent."""
    if language == "python":
        return ASTParser()
    with _PARSERS_LOCK:
        parser = _PARSERS.get(language)
        if parser is None:
            parser = _PARSERS[language] = LanguageParser(language)
        return parser


_SNIFF_BYTES = 65536    # how much of a `.h` file decides between C and C++


def _decode(data: bytes, python: bool) -> tuple[str, bytes]:
    """Text for humans plus UTF-8 bytes for tree-sitter (same content, universal newlines)."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    encoding = "utf-8"
    if python:
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError as exc:
            log.debug("bad coding cookie, assuming utf-8: %s", exc)
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        text = data.decode("utf-8", "replace")
        return text, text.encode("utf-8")
    if encoding == "utf-8":
        return text, data
    if encoding == "utf-8-sig":
        return text, data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    return text, text.encode("utf-8")


class _Entry:
    __slots__ = ("key", "text", "src", "parsed", "views", "lock")

    def __init__(self, key: tuple[int, int]):
        self.key = key
        self.text: str | None = None
        self.src: bytes | None = None
        self.parsed: ParsedSource | None = None
        self.views: dict[str, ViewResult] = {}
        self.lock = threading.Lock()


class FileCache:
    """Views of files keyed by (resolved path, mtime_ns, size).

    A global lock guards only the entry table; each entry has its own lock, so different files
    parse in parallel and concurrent requests for the same file version parse it once.
    A rewrite that keeps both size and mtime_ns (possible within one filesystem timestamp tick)
    is not detected; call `invalidate()` in that case.
    """

    def __init__(self, parser: ASTParser | None = None, max_entries: int = 4096):
        self._parser = parser or ASTParser()
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._parses = self._hits = self._misses = 0

    def get_view(self, path: str | os.PathLike, mode: str = "full") -> ViewResult:
        """Raises OSError (e.g. FileNotFoundError) when the file cannot be read."""
        if mode not in MODES:
            raise ValueError(f"unknown view mode {mode!r}; expected one of {', '.join(MODES)}")
        resolved = os.path.realpath(path)
        st = os.stat(resolved)
        entry = self._entry(resolved, (st.st_mtime_ns, st.st_size))
        view = entry.views.get(mode)  # lock-free fast path: dict reads are atomic
        if view is None:
            with entry.lock:
                view = entry.views.get(mode)
                if view is None:
                    view = entry.views[mode] = self._render(entry, resolved, mode)
                    self._count(misses=1)
                    return view
        self._count(hits=1)
        return view

    def get_text(self, path: str | os.PathLike) -> str:
        return self.get_view(path, "full").text

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"parses": self._parses, "hits": self._hits, "misses": self._misses,
                    "entries": len(self._entries)}

    def invalidate(self, path: str | os.PathLike | None = None) -> None:
        with self._lock:
            if path is None:
                self._entries.clear()
            else:
                self._entries.pop(os.path.realpath(path), None)

    def _count(self, hits: int = 0, misses: int = 0, parses: int = 0) -> None:
        with self._lock:
            self._hits += hits
            self._misses += misses
            self._parses += parses

    def _entry(self, resolved: str, key: tuple[int, int]) -> _Entry:
        with self._lock:
            entry = self._entries.get(resolved)
            if entry is None or entry.key != key:
                entry = self._entries[resolved] = _Entry(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(resolved)
            return entry

    def _render(self, entry: _Entry, resolved: str, mode: str) -> ViewResult:
        # Called with entry.lock held. Reading after the stat means the content can only be
        # newer than the key; the next stat then sees a new key and reloads.
        python = is_python_path(resolved)
        if entry.text is None or entry.src is None:      # both are set together
            with open(resolved, "rb") as fh:
                entry.text, entry.src = _decode(fh.read(), python)
        if python:
            if mode == "full":
                return ViewResult(entry.text, mode, language="python")
            if entry.parsed is None:
                entry.parsed = self._parser.parse(entry.src)
                self._count(parses=1)
            return self._parser.view(entry.parsed, mode)
        language = language_of(resolved, entry.src[:_SNIFF_BYTES])
        if mode == "full" or language is None:
            suffix = os.path.splitext(resolved)[1] or "extension-less"
            note = "" if mode == "full" else f"no {mode} view for {suffix} files; full text"
            return ViewResult(entry.text, mode, language=language or "", note=note)
        try:
            parser = parser_for(language)
        except GrammarMissing as exc:
            log.warning("%s: %s", resolved, exc)
            return ViewResult(entry.text, mode, language=language, note=f"full text: {exc}")
        if entry.parsed is None:
            entry.parsed = parser.parse(entry.src)
            self._count(parses=1)
        return parser.view(entry.parsed, mode)


# ---------------------------------------------------------------------------------------------
# Context aggregation, re-exported from `context_builder`.  That module builds on FileCache, so
# importing it eagerly here would be circular; PEP 562 resolves these names on first use.

_CONTEXT_BUILDER_NAMES = frozenset({
    "IMAGE_TOKENS", "DEFAULT_CONTEXT_WINDOW", "MODEL_CONTEXT_WINDOWS", "DISCUSSION_ROLES",
    "estimate_tokens", "context_window_for", "ContextItem", "TokenEstimate", "TrimStep",
    "ContextError", "ContextBundle", "build_context",
    "_is_glob",  # gui.context_state shares the one definition of "glob"
})


def __getattr__(name: str):
    if name in _CONTEXT_BUILDER_NAMES:
        import context_builder
        return getattr(context_builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _CONTEXT_BUILDER_NAMES)
