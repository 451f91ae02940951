"""Skeleton and curated text of Python source, spliced from a tree-sitter tree.

`file_cache.ASTParser` drives `Emitter`; the view rules are stated in `file_cache`'s module
docstring.  `drop_invalid_chunks` makes a best-effort view of a broken file valid Python.
"""
from __future__ import annotations

import ast
import logging
import re

from tree_sitter import Node

log = logging.getLogger(__name__)

HOT_DECORATORS = frozenset({"core_logic", "hot"})

# Long literal tables (unicode maps, opcode lists) dominate some modules; their names matter
# to a model, their values rarely do.
MAX_ASSIGN_LINES = 8
MAX_ASSIGN_BYTES = 500
# Docstrings are ~60% of a skeleton; the first lines carry the summary and the parameters,
# long tails are mostly examples.  Longer triple-quoted docstrings are cut with a marker.
MAX_DOCSTRING_LINES = 20

# Node types, shared with `file_cache`'s outline walk.
DEFS = ("function_definition", "class_definition", "decorated_definition")
COMPOUND = ("if_statement", "try_statement", "with_statement", "for_statement", "while_statement")
CLAUSES = ("elif_clause", "else_clause", "except_clause", "except_group_clause", "finally_clause")
_SPACED = DEFS + COMPOUND
_KEEP_VERBATIM = ("import_statement", "import_from_statement", "future_import_statement",
                  "type_alias_statement")
_HOT_PREV_LINE = re.compile(rb"[ \t]*#.*\[HOT\]")  # used with .match(src, pos)
_HOT_DEF_LINE = re.compile(rb"#.*\[HOT\]")
_DOC_PREFIX_OK = frozenset(b"rRuU")


def find_errors(root: Node) -> tuple[tuple[int, ...], tuple[tuple[int, bytes], ...]]:
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


class Emitter:
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
            if kind in DEFS:
                chunk = self.definition(node, ind)
            elif kind in _KEEP_VERBATIM:
                chunk = ind + self.text(node) + b"\n"
            elif kind == "expression_statement":
                chunk = self.assignment(node, ind)
            elif kind in COMPOUND:
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
        for owner in [node] + [c for c in node.named_children if c.type in CLAUSES]:
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


def drop_invalid_chunks(chunks: list[bytes]) -> list[bytes]:
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

