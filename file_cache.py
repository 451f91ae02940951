"""File views for model context: skeletons, curated views, outlines, a file cache, aggregation.

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
``# NOTE: syntax errors near lines ...; best-effort view`` comment.  Files that are not Python
(by extension) pass through unchanged in every mode.

Views never need function bodies, so by default the source handed to tree-sitter has non-HOT
bodies cut to `...` first (`_elide_bodies`; same output, about half the parse time).

`FileCache` keys each file by (resolved path, mtime_ns, size) and keeps its text, parse tree and
every view computed so far.  `build_context` turns a list of `ContextItem`s plus screenshots,
discussion and a system prompt into the markdown a model receives, with token estimates and a
trim plan for when the model's context window is too small.
"""
from __future__ import annotations

import ast
import io
import logging
import mimetypes
import os
import re
import sys
import threading
import tokenize
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import tree_sitter_python as tspython
from tree_sitter import Language, Node, Parser, Tree

log = logging.getLogger(__name__)

MODES = ("full", "skeleton", "curated", "outline")
PYTHON_SUFFIXES = frozenset({".py", ".pyi", ".pyw"})
HOT_DECORATORS = frozenset({"core_logic", "hot"})

# Long literal tables (unicode maps, opcode lists) dominate some modules; their names matter
# to a model, their values rarely do.
MAX_ASSIGN_LINES = 8
MAX_ASSIGN_BYTES = 500
# Docstrings are ~60% of a skeleton; the first lines carry the summary and the parameters,
# long tails are mostly examples.  Longer triple-quoted docstrings are cut with a marker.
MAX_DOCSTRING_LINES = 20

_DEFS = ("function_definition", "class_definition", "decorated_definition")
_COMPOUND = ("if_statement", "try_statement", "with_statement", "for_statement", "while_statement")
_SPACED = _DEFS + _COMPOUND
_CLAUSES = ("elif_clause", "else_clause", "except_clause", "except_group_clause", "finally_clause")
_KEEP_VERBATIM = ("import_statement", "import_from_statement", "future_import_statement",
                  "type_alias_statement")
_HOT_PREV_LINE = re.compile(rb"[ \t]*#.*\[HOT\]")  # used with .match(src, pos)
_HOT_DEF_LINE = re.compile(rb"#.*\[HOT\]")
_DOC_PREFIX_OK = frozenset(b"rRuU")


@dataclass(frozen=True)
class OutlineItem:
    kind: str  # "class" | "function" | "method"
    name: str
    qualname: str
    line: int  # 1-based line of the `def` / `class` keyword
    end_line: int  # 1-based, inclusive

    @property
    def depth(self) -> int:
        return self.qualname.count(".")


@dataclass(frozen=True)
class ViewResult:
    text: str
    mode: str
    has_errors: bool = False
    error_lines: tuple[int, ...] = ()  # 1-based; a tuple because cached results are shared
    outline: tuple[OutlineItem, ...] = ()


@dataclass(frozen=True)
class ParsedSource:
    """A tree and the bytes it was parsed from; views are pure functions of this.

    `src` is the original UTF-8 source, or with `elided` set, the copy whose function bodies
    were reduced to `...` before parsing (see `_elide_bodies`); `original` is always the input.
    """
    src: bytes
    tree: Tree
    error_lines: tuple[int, ...]
    missing: tuple[tuple[int, bytes], ...] = ()  # (byte offset, token) the parser had to invent
    original: bytes = b""
    elided: bool = False

    @property
    def has_errors(self) -> bool:
        return bool(self.error_lines)


def render_outline(items: Iterable[OutlineItem]) -> str:
    lines = []
    for it in items:
        word = "class" if it.kind == "class" else "def"
        lines.append(f"{'    ' * it.depth}{word} {it.name}  [{it.line}-{it.end_line}]")
    return "\n".join(lines) + ("\n" if lines else "")


def _find_errors(root: Node) -> tuple[tuple[int, ...], tuple[tuple[int, bytes], ...]]:
    """1-based error lines, and the anonymous tokens (like ')' or ':') tree-sitter inserted."""
    if not root.has_error:
        return (), ()
    lines: set[int] = set()
    missing = []
    stack = [root]
    while stack:  # only descend into subtrees that contain an error
        node = stack.pop()
        if node.is_missing and not node.is_named:
            missing.append((node.start_byte, node.type.encode()))
        if node.is_error or node.is_missing:
            lines.add(node.start_point.row + 1)
        stack.extend(c for c in node.children if c.has_error)
    return tuple(sorted(lines)), tuple(sorted(missing))


class _Emitter:
    """Builds skeleton / curated text from a tree by splicing original source bytes.

    Statements are copied verbatim (so signatures, hints and docstrings keep their exact
    formatting) and re-indented only at their first line; continuation lines live inside
    brackets or strings, where indentation does not matter.
    """

    def __init__(self, src: bytes, expand_hot: bool, missing: tuple[tuple[int, bytes], ...] = ()):
        self.src = src
        self.expand_hot = expand_hot
        self.missing = missing

    def slice(self, start: int, end: int) -> bytes:
        text = self.src[start:end]
        if not self.missing:
            return text
        # Best-effort repair for broken files: put back the tokens the parser assumed.
        for offset, token in reversed(self.missing):
            if start <= offset <= end:
                text = text[:offset - start] + token + text[offset - start:]
        return text

    def text(self, node: Node) -> bytes:
        return self.slice(node.start_byte, node.end_byte)

    def module_chunks(self, root: Node) -> list[bytes]:
        doc = _docstring(root, self.src)
        chunks = [self.docstring(doc, b"") + b"\n"] if doc is not None else []
        return chunks + self.statements(root, b"", skip=doc, spaced=True)

    def statements(self, block: Node, ind: bytes, skip: Node | None = None,
                   spaced: bool = False) -> list[bytes]:
        out = []
        for node in block.named_children:
            kind = node.type
            if skip is not None and node.start_byte == skip.start_byte:
                continue
            if kind in _DEFS:
                chunk = self.definition(node, ind)
            elif kind in _KEEP_VERBATIM:
                chunk = ind + self.text(node) + b"\n"
            elif kind == "expression_statement":
                chunk = self.assignment(node, ind)
            elif kind in _COMPOUND:
                chunk = self.compound(node, ind)
            elif kind == "ERROR":  # salvage whole statements the parser recognised inside
                chunk = b"".join(self.statements(node, ind))
            else:
                chunk = None
            if chunk:
                # A blank line before each top-level block keeps the skeleton readable.
                out.append(b"\n" + chunk if spaced and kind in _SPACED else chunk)
        return out

    def docstring(self, stmt: Node, ind: bytes) -> bytes:
        text = self.text(stmt)
        lines = text.split(b"\n")
        if len(lines) <= MAX_DOCSTRING_LINES + 1:
            return text
        quote = next(i for i, byte in enumerate(text) if byte in (34, 39))
        delimiter = text[quote:quote + 3]
        if delimiter not in (b'"""', b"'''") or not text.endswith(delimiter):
            return text  # implicit concatenation or the like: rare, keep it whole
        hidden = len(lines) - MAX_DOCSTRING_LINES
        return b"\n".join(lines[:MAX_DOCSTRING_LINES]) + b"\n%s[... %d more lines]%s" % (ind, hidden, delimiter)

    def assignment(self, node: Node, ind: bytes) -> bytes | None:
        target = node.named_children[0] if node.named_child_count else None
        if target is None or target.type not in ("assignment", "augmented_assignment"):
            return None
        text = self.text(node)
        if len(text) <= MAX_ASSIGN_BYTES and text.count(b"\n") < MAX_ASSIGN_LINES:
            return ind + text + b"\n"
        while True:  # `a = b = value`: keep every target, drop only the final value
            right = target.child_by_field_name("right")
            if right is None:
                return ind + text + b"\n"
            if right.type not in ("assignment", "augmented_assignment"):
                break
            target = right
        return ind + self.slice(node.start_byte, right.start_byte) + b"...\n"

    def definition(self, node: Node, ind: bytes) -> bytes | None:
        defn = node.child_by_field_name("definition") if node.type == "decorated_definition" else node
        if defn is None:
            return None
        if self.expand_hot and defn.type == "function_definition" and self.is_hot(node, defn):
            return ind + self.text(node) + b"\n"
        decorators = b"".join(ind + self.text(d) + b"\n"
                              for d in node.named_children if d.type == "decorator")
        header, body = self.header(defn)
        if body is None:
            return None
        body_ind = self.body_indent(body, ind)
        if body_ind is None:  # `def f(): return 1` on one line
            return decorators + ind + header + b" ...\n"
        parts = [decorators, ind, header, b"\n"]
        doc = _docstring(body, self.src)
        if doc is not None:
            parts += [body_ind, self.docstring(doc, body_ind), b"\n"]
        members = self.statements(body, body_ind, skip=doc) if defn.type == "class_definition" else []
        parts += members
        if not members:
            parts += [body_ind, b"...\n"]
        return b"".join(parts)

    def compound(self, node: Node, ind: bytes) -> bytes | None:
        parts, kept = [], False
        for owner in [node] + [c for c in node.named_children if c.type in _CLAUSES]:
            block = next((c for c in owner.named_children if c.type == "block"), None)
            if block is None:
                return None
            header = self.header_before(owner, block)
            body_ind = self.body_indent(block, ind) or ind + b"    "
            inner = self.statements(block, body_ind)
            kept = kept or bool(inner)
            parts += [ind, header, b"\n"] + (inner or [body_ind, b"...\n"])
        # `if __name__ == "__main__":` is worth showing even when its body is all calls.
        condition = node.child_by_field_name("condition") if node.type == "if_statement" else None
        if not kept and not (condition is not None and b"__name__" in self.text(condition)):
            return None
        return b"".join(parts)

    def header(self, defn: Node) -> tuple[bytes, Node | None]:
        body = defn.child_by_field_name("body")
        if body is None:
            return b"", None
        return self.header_before(defn, body), body

    def header_before(self, owner: Node, block: Node) -> bytes:
        colon = block.prev_sibling
        while colon is not None and colon.type in ("comment", "ERROR"):
            colon = colon.prev_sibling
        end = colon.end_byte if colon is not None else block.start_byte
        header = self.slice(owner.start_byte, end).rstrip()
        return header if header.endswith(b":") else header + b":"

    def body_indent(self, block: Node, ind: bytes) -> bytes | None:
        """Original indentation of a block's first line, or None when it shares the header line."""
        line_start = self.src.rfind(b"\n", 0, block.start_byte) + 1
        prefix = self.src[line_start:block.start_byte]
        if prefix.strip():
            return None
        return prefix if len(prefix) > len(ind) else ind + b"    "

    def is_hot(self, outer: Node, defn: Node) -> bool:
        src = self.src
        line_start = src.rfind(b"\n", 0, outer.start_byte) + 1
        if line_start > 0:
            prev_start = src.rfind(b"\n", 0, line_start - 1) + 1
            if _HOT_PREV_LINE.match(src, prev_start, line_start - 1):
                return True
        def_start = src.rfind(b"\n", 0, defn.start_byte) + 1
        def_end = src.find(b"\n", defn.start_byte)
        if _HOT_DEF_LINE.search(src, def_start, def_end if def_end >= 0 else len(src)):
            return True
        return any(_decorator_name(d, src) in HOT_DECORATORS
                   for d in outer.named_children if d.type == "decorator")


def _docstring(block: Node, src: bytes) -> Node | None:
    first = next((c for c in block.named_children if c.type != "comment"), None)
    if first is None or first.type != "expression_statement" or first.named_child_count != 1:
        return None
    string = first.named_children[0]
    if string.type not in ("string", "concatenated_string"):
        return None
    # f-strings and bytes are not docstrings to Python; keep them out of the skeleton.
    prefix = src[string.start_byte:string.start_byte + 3]
    for byte in prefix:
        if byte in (34, 39):  # quote
            return first
        if byte not in _DOC_PREFIX_OK:
            return None
    return first


def _decorator_name(decorator: Node, src: bytes) -> str:
    expr = decorator.named_children[0] if decorator.named_child_count else None
    if expr is not None and expr.type == "call":
        expr = expr.child_by_field_name("function")
    if expr is None:
        return ""
    return src[expr.start_byte:expr.end_byte].decode("utf-8", "replace").rsplit(".", 1)[-1].strip()


# ---------------------------------------------------------------------------------------------
# Body elision: skeleton, curated and outline views never look inside a function body (apart
# from its docstring), so the cache hands tree-sitter a copy of the source in which those bodies
# are replaced by `...` on the body's last line (line numbers stay exact).  That parses roughly
# a third of the bytes.  The scanner below only needs Python's lexical structure (strings,
# comments, brackets, continuation lines); whenever it is unsure it keeps the body, and if the
# reduced tree has any error the caller re-parses the original, so reported errors are exact.
# The cost: a syntax error that sits entirely inside an elided body, with balanced brackets and
# quotes, is not reported by these views (it does not change them either).

def _lexical_patterns(depth: int = 12) -> bytes:
    string = (rb"'''(?:[^'\\]|\\.|'(?!''))*+'''|\"\"\"(?:[^\"\\]|\\.|\"(?!\"\"))*+\"\"\""
              rb"|'(?:[^'\\\n]|\\.)*+'|\"(?:[^\"\\\n]|\\.)*+\"")
    common = rb"(?:" + string + rb")|#[^\n]*|\\."
    group = rb"[(\[{](?:[^'\"#()\[\]{}\\]++|" + common + rb")*+[)\]}]"
    for _ in range(depth - 1):  # `re` has no recursion; nest explicitly, deep enough for real code
        group = rb"[(\[{](?:[^'\"#()\[\]{}\\]++|" + common + rb"|" + group + rb")*+[)\]}]"
    rest = rb"(?:[^'\"#()\[\]{}\\\n]++|" + common + rb"|" + group + rb")*+(?:\n|\Z)"
    return rest


_REST = _lexical_patterns()
# Blank/comment lines, then one logical line: a def, a decorator or any other statement
# (group 2 matches at the end of the file instead).  (?s) lets `\\.` take a backslash-newline.
_LOGICAL = re.compile(rb"(?s)(?:[ ]*(?:#[^\n]*)?\n)*+([ ]*)(?:(#[^\n]*\Z|\Z)|(?:(def\b|async[ \t]+def\b)|(@))?"
                      + _REST + rb")")
_DOC_LINE = re.compile(rb"(?s)" + _REST)
_SKIP_LINES = re.compile(rb"(?:[ \t]*(?:#[^\n]*)?\n)*+([ ]*)")
_TAB_INDENT = re.compile(rb"^[ ]*[\t\f]", re.M)
_COLON_END = re.compile(rb":[ \t]*#[^\n]*\Z")
_BODY_RES: dict[int, re.Pattern] = {}


def _body_re(indent: int) -> re.Pattern:
    """Blank/comment lines and logical lines indented deeper than `indent`; group 1 ends at
    the last code line."""
    pattern = _BODY_RES.get(indent)
    if pattern is None:
        pattern = _BODY_RES[indent] = re.compile(
            rb"(?s)(?:[ \t]*(?:#[^\n]*)?\n|([ ]{%d,}(?=[^ \t\n#])" % (indent + 1) + _REST + rb"))*+")
    return pattern


def _elide_bodies(src: bytes) -> bytes | None:
    """`src` with non-HOT function bodies reduced to docstring + `...`; None when unsure or
    when there is nothing to cut."""
    if b"\r" in src:  # the patterns expect "\n" line ends (FileCache normalises them)
        return None
    if (b"\t" in src or b"\f" in src) and _TAB_INDENT.search(src):  # tab widths: not modelled
        return None
    out, last, pos, size = [], 0, 0, len(src)
    run_start = None  # where the current run of decorators began
    while pos < size:
        m = _LOGICAL.match(src, pos)
        if m is None or m.end() == pos:
            return None
        start, end = m.start(1), m.end()
        pos = end
        if m.group(2) is not None:  # only blank or comment lines were left
            continue
        if m.group(4) is not None:
            run_start = start if run_start is None else run_start
            continue
        outer, run_start = (run_start if run_start is not None else start), None
        if m.group(3) is None:
            continue
        header = src[start:end].rstrip()
        if not header.endswith(b":") and not (b"#" in header and _COLON_END.search(header)):
            continue  # a one-line def
        # Superset of the HOT rule (substring tests are cheap): when in doubt keep the body.
        marks = src[src.rfind(b"\n", 0, max(outer - 1, 0)) + 1:start]
        if b"hot" in marks or b"core_logic" in marks or b"[HOT]" in marks \
                or b"[HOT]" in src[start:src.find(b"\n", start)]:
            continue  # curated views show this body in full
        body = _body_re(len(m.group(1))).match(src, end)
        code_end = body.end(1)
        if code_end <= end:
            continue
        first = _SKIP_LINES.match(src, end)
        keep_end = first.start(1)
        head = src[first.end(1):first.end(1) + 2]
        if head[:1] in (b"'", b'"') or (head[:1] in b"rRuU" and head[1:2] in (b"'", b'"')):
            doc = _DOC_LINE.match(src, first.end(1))
            if doc is None:
                continue
            keep_end = doc.end()  # keep the docstring line
        elided = src[keep_end:code_end]
        lines = elided.count(b"\n") + (0 if elided.endswith(b"\n") else 1)
        if not elided.strip():
            continue
        out += [src[last:keep_end], b"\n" * (lines - 1), first.group(1), b"...\n"]
        last = pos = code_end
    if not out:
        return None  # nothing to cut: parse the original and get exact error lines for free
    out.append(src[last:])
    return b"".join(out)


class ASTParser:
    """tree-sitter views of Python source. Safe to share between threads.

    With `elide_bodies` (the default) non-HOT function bodies are cut before parsing, which
    makes views about 2-3x cheaper and gives the same text; pass False to have every syntax
    error in the file reported (see the note above `_lexical_patterns`).
    """

    def __init__(self, language: str = "python", elide_bodies: bool = True):
        if language != "python":
            raise ValueError(f"unsupported language {language!r}; only 'python' is available")
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
        reduced = _elide_bodies(src) if elide else None
        if reduced is not None:
            tree = self._parser().parse(reduced)
            if not tree.root_node.has_error:
                return ParsedSource(reduced, tree, (), (), src, True)
            log.debug("reduced source has errors; parsing the original for exact error lines")
        tree = self._parser().parse(src)
        return ParsedSource(src, tree, *_find_errors(tree.root_node), original=src)

    def get_skeleton(self, code: str) -> str:
        return self.view(self.parse(code), "skeleton").text

    def get_curated_view(self, code: str) -> str:
        return self.view(self.parse(code), "curated").text

    def get_outline(self, code: str) -> list[OutlineItem]:
        return list(self.outline_items(self.parse(code)))

    def get_outline_text(self, code: str) -> str:
        return self.view(self.parse(code), "outline").text

    def view(self, parsed: ParsedSource, mode: str) -> ViewResult:
        if mode == "full":
            return ViewResult((parsed.original or parsed.src).decode("utf-8", "replace"), mode)
        if mode == "outline":
            items = self.outline_items(parsed)
            return self._result(parsed, mode, render_outline(items), items)
        if mode not in ("skeleton", "curated"):
            raise ValueError(f"unknown view mode {mode!r}; expected one of {', '.join(MODES)}")
        emitter = _Emitter(parsed.src, mode == "curated", parsed.missing)
        chunks = emitter.module_chunks(parsed.tree.root_node)
        if parsed.has_errors:
            chunks = _drop_invalid_chunks(chunks)
        text = b"".join(chunks).lstrip(b"\n").decode("utf-8", "replace")
        return self._result(parsed, mode, text)

    @staticmethod
    def _result(parsed: ParsedSource, mode: str, text: str,
                items: tuple[OutlineItem, ...] = ()) -> ViewResult:
        if not parsed.has_errors:
            return ViewResult(text, mode, outline=items)
        shown = ", ".join(map(str, parsed.error_lines[:10])) + (", ..." if len(parsed.error_lines) > 10 else "")
        note = f"# NOTE: syntax errors near lines {shown}; best-effort view\n"
        return ViewResult(note + text, mode, True, parsed.error_lines, items)

    def outline_items(self, parsed: ParsedSource) -> tuple[OutlineItem, ...]:
        out: list[OutlineItem] = []
        _outline(parsed.tree.root_node, parsed.src, "", False, out)
        return tuple(out)


def _outline(block: Node, src: bytes, prefix: str, in_class: bool, out: list[OutlineItem]) -> None:
    for node in block.named_children:
        kind = node.type
        if kind in _DEFS:
            defn = node.child_by_field_name("definition") if kind == "decorated_definition" else node
            name_node = defn.child_by_field_name("name") if defn is not None else None
            if name_node is None:
                continue
            name = src[name_node.start_byte:name_node.end_byte].decode("utf-8", "replace")
            is_class = defn.type == "class_definition"
            out.append(OutlineItem("class" if is_class else "method" if in_class else "function",
                                   name, prefix + name, defn.start_point.row + 1, node.end_point.row + 1))
            body = defn.child_by_field_name("body")
            if is_class and body is not None:
                _outline(body, src, prefix + name + ".", True, out)
        elif kind in _COMPOUND or kind in _CLAUSES or kind in ("block", "ERROR"):
            _outline(node, src, prefix, in_class, out)


def _drop_invalid_chunks(chunks: list[bytes]) -> list[bytes]:
    """Drop top-level chunks until `ast` accepts the rest (only used for trees with errors)."""
    chunks = list(chunks)
    while chunks:
        try:
            ast.parse(b"".join(chunks))
            return chunks
        except (SyntaxError, ValueError) as exc:
            lineno = getattr(exc, "lineno", None) or 0
            line, victim = 1, len(chunks) - 1
            for i, chunk in enumerate(chunks):
                line += chunk.count(b"\n")
                if lineno < line:
                    victim = i
                    break
            log.debug("best-effort view: dropping chunk %d (%s)", victim, exc)
            del chunks[victim]
    return chunks


# ---------------------------------------------------------------------------------------------
# File cache

def is_python_path(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in PYTHON_SUFFIXES


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
        if entry.text is None:
            with open(resolved, "rb") as fh:
                entry.text, entry.src = _decode(fh.read(), python)
        if mode == "full" or not python:
            return ViewResult(entry.text, mode)
        if entry.parsed is None:
            entry.parsed = self._parser.parse(entry.src)
            self._count(parses=1)
        return self._parser.view(entry.parsed, mode)


# ---------------------------------------------------------------------------------------------
# Context aggregation

IMAGE_TOKENS = 258  # what Gemini bills per image up to 384x384; used as a flat estimate
DEFAULT_CONTEXT_WINDOW = 128_000
MODEL_CONTEXT_WINDOWS = {
    "gemini-2.5-flash-lite": 1_048_576,
    "gemini-2.5-flash": 1_048_576,
    "gemini-2.5-pro": 1_048_576,
    "gemini-3-flash-preview": 1_048_576,
    "gemini-3.1-pro-preview": 1_048_576,
    "claude-sonnet-4-5": 200_000,
    "claude-opus-4-1": 200_000,
    "claude-haiku-4-5": 200_000,
    "mock": 1_000_000,
}
_PREFIX_WINDOWS = (("claude-", 200_000), ("gemini-", 1_048_576), ("mock", 1_000_000))
_FENCE_LANG = {".py": "python", ".pyi": "python", ".pyw": "python", ".md": "markdown",
               ".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".js": "javascript",
               ".ts": "typescript", ".rs": "rust", ".go": "go", ".c": "c", ".h": "c", ".cpp": "cpp",
               ".sh": "bash", ".html": "html", ".css": "css", ".sql": "sql", ".ini": "ini"}
_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})
DISCUSSION_ROLES = ("user", "assistant", "system")
_BACKTICKS = re.compile("`{3,}")


def estimate_tokens(text: str) -> int:
    """Rough token count: ceil(chars / 4). An estimate for budgeting, not a tokenizer."""
    return (len(text) + 3) // 4


def context_window_for(model: str | None) -> int:
    if model in MODEL_CONTEXT_WINDOWS:
        return MODEL_CONTEXT_WINDOWS[model]
    for prefix, window in _PREFIX_WINDOWS:
        if model and model.startswith(prefix):
            return window
    log.debug("unknown model %r, assuming a %d-token context window", model, DEFAULT_CONTEXT_WINDOW)
    return DEFAULT_CONTEXT_WINDOW


@dataclass(frozen=True)
class ContextItem:
    path_or_glob: str
    mode: str = "full"


@dataclass(frozen=True)
class TokenEstimate:
    source: str  # "files" | "screenshots" | "history" | "system"
    label: str  # file path relative to root, screenshot path, "discussion[i] role", "system prompt"
    tokens: int
    mode: str = ""  # view mode, files only


@dataclass(frozen=True)
class TrimStep:
    action: str  # "drop_discussion" | "downgrade_to_skeleton" | "drop_file"
    label: str
    tokens_saved: int
    total_after: int


@dataclass(frozen=True)
class ContextError:
    source: str  # "files" | "screenshots" | "history"
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


@dataclass
class ContextBundle:
    markdown: str
    items: list[TokenEstimate]
    images: list[dict]  # {"mime_type", "data": bytes, "path"}
    discussion: list[dict]
    total_tokens: int
    by_source: dict[str, int]
    share: dict[str, float]  # fraction of total_tokens per source
    context_window: int
    over_budget: bool
    trim_plan: list[TrimStep] = field(default_factory=list)
    fits_after_trim: bool = True
    errors: list[ContextError] = field(default_factory=list)


@dataclass
class _FileSection:
    path: Path
    label: str
    mode: str
    text: str
    tokens: int
    explicit: bool


def _fence(body: str, lang: str) -> str:
    # A fence must be longer than any backtick run inside the body.
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    ticks = "`" * max(3, longest + 1)
    newline = "" if body.endswith("\n") else "\n"
    return f"{ticks}{lang}\n{body}{newline}{ticks}\n"


def _file_section(label: str, mode: str, view: ViewResult, suffix: str) -> str:
    note = ", best-effort: syntax errors" if view.has_errors else ""
    lang = "" if mode == "outline" else _FENCE_LANG.get(suffix.lower(), "")
    return f"### `{label}` ({mode}{note})\n\n{_fence(view.text, lang)}\n"


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _expand(item: ContextItem, root: Path, errors: list[ContextError]) -> list[tuple[Path, bool]]:
    """Files for one item as (resolved path, explicit?); problems go to `errors`."""
    spec = item.path_or_glob
    if not _is_glob(spec):
        path = (root / spec).resolve()
        if not path.is_relative_to(root):
            errors.append(ContextError("files", spec, "outside the project root"))
            return []
        return [(path, True)]
    pattern = spec
    if os.path.isabs(pattern):
        try:
            pattern = str(Path(pattern).relative_to(root))
        except ValueError:
            errors.append(ContextError("files", spec, "glob outside the project root"))
            return []
    found = []
    for match in root.glob(pattern):
        rel_parts = match.relative_to(root).parts[:-1]
        if any(p.startswith(".") or p in _SKIP_DIRS for p in rel_parts) or not match.is_file():
            continue
        resolved = match.resolve()
        if resolved.is_relative_to(root):
            found.append((resolved, False))
    if not found:
        errors.append(ContextError("files", spec, "glob matched no files"))
    return sorted(found)


def _as_item(item: ContextItem | str | Sequence) -> ContextItem:
    if isinstance(item, ContextItem):
        return item
    if isinstance(item, str):
        return ContextItem(item)
    return ContextItem(*item)


def build_context(items: Iterable[ContextItem | str | Sequence], screenshots: Iterable[str] = (),
                  discussion: Iterable[dict] = (), system_prompt: str = "",
                  model_context_window: int | None = None, cache: FileCache | None = None, *,
                  root: str | os.PathLike = ".", model: str = "mock") -> ContextBundle:
    """Assemble what a model receives; never raises for a missing file, reports it in `errors`.

    A file named by several items appears once: an explicit path beats a glob match, otherwise
    the first item wins.  Glob matches skip hidden directories, `__pycache__` and `node_modules`.
    """
    root_path = Path(root).resolve()
    cache = cache or FileCache()
    window = model_context_window or context_window_for(model)
    errors: list[ContextError] = []

    chosen: dict[Path, tuple[ContextItem, bool]] = {}
    for raw in items:
        item = _as_item(raw)
        if item.mode not in MODES:
            errors.append(ContextError("files", item.path_or_glob, f"unknown mode {item.mode!r}"))
            continue
        for path, explicit in _expand(item, root_path, errors):
            if path not in chosen or (explicit and not chosen[path][1]):
                chosen[path] = (item, explicit)

    sections: list[_FileSection] = []
    for path, (item, explicit) in chosen.items():
        label = path.relative_to(root_path).as_posix()
        try:
            view = cache.get_view(path, item.mode)
        except OSError as exc:
            reason = "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
            errors.append(ContextError("files", label, reason))
            continue
        text = _file_section(label, item.mode, view, path.suffix)
        sections.append(_FileSection(path, label, item.mode, text, estimate_tokens(text), explicit))

    images = []
    for shot in screenshots:
        shot_path = Path(root_path, shot)
        try:
            data = shot_path.read_bytes()
        except OSError as exc:
            reason = "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
            errors.append(ContextError("screenshots", str(shot), reason))
            continue
        mime = mimetypes.guess_type(shot_path.name)[0] or "application/octet-stream"
        images.append({"mime_type": mime, "data": data, "path": str(shot_path)})

    entries, history = [], []
    for i, entry in enumerate(discussion):
        role, content = entry.get("role"), entry.get("content")
        if role not in DISCUSSION_ROLES or not isinstance(content, str):
            errors.append(ContextError("history", f"discussion[{i}]",
                                       "needs role user/assistant/system and string content"))
            continue
        ts = entry.get("ts", "")
        text = f"**{role}**{f' ({ts})' if ts else ''}:\n{content}\n\n"
        entries.append(dict(entry))
        history.append((f"discussion[{i}] {role}", text))

    parts = []
    if sections:
        parts.append("## Files\n\n" + "".join(s.text for s in sections))
    if images:
        parts.append("## Screenshots\n\n" + "".join(f"- `{img['path']}` (attached image)\n" for img in images) + "\n")
    if history:
        parts.append("## Discussion\n\n" + "".join(text for _, text in history))
    markdown = "".join(parts)

    estimates = [TokenEstimate("files", s.label, s.tokens, s.mode) for s in sections]
    estimates += [TokenEstimate("screenshots", img["path"], IMAGE_TOKENS) for img in images]
    estimates += [TokenEstimate("history", label, estimate_tokens(text)) for label, text in history]
    if system_prompt:
        estimates.append(TokenEstimate("system", "system prompt", estimate_tokens(system_prompt)))
    by_source = {src: 0 for src in ("files", "screenshots", "history", "system")}
    for est in estimates:
        by_source[est.source] += est.tokens
    total = sum(by_source.values())
    share = {src: (n / total if total else 0.0) for src, n in by_source.items()}

    plan, fits = ([], True) if total <= window else _trim_plan(
        sections, [e for e in estimates if e.source == "history"], total, window, cache)
    return ContextBundle(markdown, estimates, images, entries, total, by_source, share, window,
                         total > window, plan, fits, errors)


def _trim_plan(sections: list[_FileSection], history: list[TokenEstimate], total: int,
               window: int, cache: FileCache) -> tuple[list[TrimStep], bool]:
    """Trim order: oldest discussion entries (the newest one stays), then full Python files
    downgraded to skeleton (biggest saving first), then the largest files dropped."""
    plan: list[TrimStep] = []

    def step(action: str, label: str, saved: int) -> bool:
        nonlocal total
        total -= saved
        plan.append(TrimStep(action, label, saved, total))
        return total <= window

    for est in history[:-1]:
        if step("drop_discussion", est.label, est.tokens):
            return plan, True

    sizes = {s.label: s.tokens for s in sections}
    downgrades = []
    for s in sections:
        if s.mode != "full" or not is_python_path(s.path):
            continue
        try:
            skeleton = _file_section(s.label, "skeleton", cache.get_view(s.path, "skeleton"), s.path.suffix)
        except OSError as exc:
            log.warning("cannot compute skeleton of %s for the trim plan: %s", s.label, exc)
            continue
        saved = s.tokens - estimate_tokens(skeleton)
        if saved > 0:
            downgrades.append((saved, s.label))
    for saved, label in sorted(downgrades, key=lambda d: -d[0]):
        sizes[label] -= saved
        if step("downgrade_to_skeleton", label, saved):
            return plan, True

    for label, tokens in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if step("drop_file", label, tokens):
            return plan, True
    return plan, False


# ---------------------------------------------------------------------------------------------
# CLI helper (wired to `mma-desk skeleton FILE... [--mode]`)

def cli_skeleton(paths: list[str], mode: str = "skeleton", cache: FileCache | None = None) -> int:
    if mode not in MODES:
        print(f"mma-desk skeleton: unknown mode {mode!r} (choose from {', '.join(MODES)})", file=sys.stderr)
        return 2
    cache = cache or FileCache()
    status = 0
    for path in paths:
        try:
            view = cache.get_view(path, mode)
        except FileNotFoundError:
            print(f"mma-desk skeleton: no such file: {path}", file=sys.stderr)
            status = 2
            continue
        except OSError as exc:
            print(f"mma-desk skeleton: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 2
            continue
        sys.stdout.write(f"# ==== {path} ====\n{view.text}")
        if view.text and not view.text.endswith("\n"):
            sys.stdout.write("\n")
    return status
