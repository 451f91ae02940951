"""Skeleton, curated and outline views of brace languages (JS, TS, Go, Rust, Java, C, C++, C#).

A view is the original source with byte ranges replaced, so everything kept (signatures, types,
attributes, comments, formatting) is copied exactly:

- the body of every function, method, constructor, accessor and lambda becomes
  ``{ /* ... */ }``, which each of these languages parses as an empty block (an expression body
  of an arrow function, closure or lambda is replaced the same way when it spans lines);
- the inside of a long bracketed literal (array, object, initializer list, macro token tree)
  becomes ``/* ... */`` unless it may hold a function or class (`LanguageSpec.code_hint`);
- the value of a long ``#define`` becomes ``/* ... */``;
- in skeleton mode a run of comments keeps its first `MAX_DOC_COMMENT_LINES` lines that have
  words in them and ends with ``[... N more lines]``; curated mode keeps comments whole.

Curated mode keeps the full body of functions marked ``[HOT]`` in a comment on the line
above (attributes and other comment lines may sit between) or on the signature line.

Declarations are never removed, so every declared name outside function bodies survives;
`declared_names` lists them, and `file_cache` re-parses each view to check it adds no syntax
error (an outline marked as such replaces a view that would).
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from tree_sitter import Node

from skeleton.emitter import MAX_ASSIGN_BYTES, MAX_ASSIGN_LINES
from skeleton.languages import LanguageSpec

BODY_PLACEHOLDER = b"{ /* ... */ }"
LITERAL_PLACEHOLDER = b" /* ... */ "
MACRO_PLACEHOLDER = b"/* ... */"
# Doc comments dominate many Go and Rust files; the first lines carry the summary.
MAX_DOC_COMMENT_LINES = 1
MAX_EXPRESSION_BODY_BYTES = 120     # an expression body this long (or multi-line) is cut too
MAX_MACRO_BODY_BYTES = 60           # a function-like #define's value this long (or multi-line) is cut
_WORDS = re.compile(rb"[A-Za-z0-9]")
_LINE_COMMENT_PREFIX = re.compile(rb"//[/!]?")
_HOT_LINE_STARTS = (b"//", b"/*", b"*", b"@", b"#[", b"[")
_HOT_WRAPPERS = frozenset({"export_statement", "template_declaration", "decorated_definition"})
_NAME_TYPES = ("identifier", "name", "constant", "operator_name", "destructor_name")
# Node types that declare a name, by suffix (`function_item`, `type_spec`, `enumerator`, ...).
_DECLARES = ("declaration", "_definition", "_item", "_specifier", "_spec", "declarator", "enumerator",
             "_signature", "_variant", "_constant", "_def", "_elem", "internal_module", "module")
_declares: dict[str, bool] = {}     # node type -> ends with one of _DECLARES (memo)
_CLOSING = {ord("{"): ord("}"), ord("["): ord("]"), ord("("): ord(")")}


class BraceEmitter:
    """Builds one skeleton or curated view; `text()` splices the edits into the source."""

    def __init__(self, spec: LanguageSpec, src: bytes, root: Node, curated: bool):
        self.spec = spec
        self.src = src
        self.root = root
        self.curated = curated
        self.edits: list[tuple[int, int, bytes]] = []
        self._skip: set[int] = set()          # node ids scanned elsewhere or kept whole
        self._transparent: set[int] = set()   # callables whose body is the module (JS IIFE)
        self._hint = re.compile(spec.code_hint)

    def text(self) -> bytes:
        self._scan(self.root)
        out, last = [], 0
        for start, end, replacement in sorted(self.edits):
            out += [self.src[last:start], replacement]
            last = end
        out.append(self.src[last:])
        return b"".join(out)

    # ------------------------------------------------------------------ the walk
    def _scan(self, top: Node) -> None:
        if self.spec.name in ("javascript", "typescript", "tsx"):
            self._transparent.update(f.id for f in _iife_functions(top))
        spec = self.spec
        stack = [top]
        while stack:
            parent = stack.pop()
            group: list[Node] = []
            for child in parent.children:
                kind = child.type
                if kind in spec.comments:
                    if group and not self._adjacent(group[-1], child):
                        self._budget(group)
                        group = []
                    group.append(child)
                    continue
                if group:
                    self._budget(group)
                    group = []
                if not child.is_named or child.id in self._skip or kind in spec.opaque:
                    continue
                if kind in spec.callables:
                    self._callable(child, stack)
                elif kind in spec.literals:
                    self._literal(child, stack)
                elif kind in spec.macro_values:
                    self._macro(child)
                elif child.child_count:
                    stack.append(child)
            if group:
                self._budget(group)

    def _callable(self, node: Node, stack: list[Node]) -> None:
        body = callable_body(self.spec, node)
        if body is None or node.id in self._transparent:
            stack.append(node)
            return
        if self.curated and self._is_hot(node):
            return                                      # kept whole, comments included
        self._skip.add(body.id)
        stack.append(node)                              # the signature: attributes, defaults
        start, end = body.start_byte, body.end_byte
        text = self.src[start:end]
        before = body.prev_named_sibling
        if before is not None and before.type == "field_initializer_list":   # C++ `: a_(a) {...}`
            start = before.start_byte
            while start > 0 and self.src[start - 1] in b" \t\n":
                start -= 1
            start += 1 if self.src[start:start + 1] == b" " else 0
        if text[:1] == b"{":
            if end - start > len(BODY_PLACEHOLDER):
                self.edits.append((start, end, BODY_PLACEHOLDER))
        elif self.spec.callables[node.type][1] and (b"\n" in text or end - start > MAX_EXPRESSION_BODY_BYTES):
            self.edits.append((start, end, BODY_PLACEHOLDER))

    def _literal(self, node: Node, stack: list[Node]) -> None:
        start, end = node.start_byte, node.end_byte
        text = self.src[start:end]
        long = end - start > MAX_ASSIGN_BYTES or text.count(b"\n") >= MAX_ASSIGN_LINES
        closing = _CLOSING.get(text[0]) if text else None
        if long and closing == text[-1] and not self._hint.search(text):
            self.edits.append((start + 1, end - 1, LITERAL_PLACEHOLDER))
        else:
            stack.append(node)

    def _macro(self, node: Node) -> None:
        """A function-like macro's value is its body; an object-like one's is a constant."""
        value = node.child_by_field_name("value")
        if value is None:
            return
        text = self.src[value.start_byte:value.end_byte]
        if node.type == "preproc_function_def":
            long = len(text) > MAX_MACRO_BODY_BYTES or b"\n" in text
        else:
            long = len(text) > MAX_ASSIGN_BYTES or text.count(b"\n") >= MAX_ASSIGN_LINES
        if long:
            self.edits.append((value.start_byte, value.end_byte, MACRO_PLACEHOLDER))

    # ------------------------------------------------------------------ comments
    def _adjacent(self, before: Node, after: Node) -> bool:
        return after.start_point.row <= before.end_point.row + 1 and \
            not self.src[before.end_byte:after.start_byte].strip()

    def _budget(self, group: list[Node]) -> None:
        """Cut a run of comments to its first lines with words (skeleton mode only)."""
        if self.curated:
            return
        src = self.src
        start, end = group[0].start_byte, group[-1].end_byte
        if src[end - 1:end] == b"\n":      # some grammars end a line comment after its newline
            end -= 1
        lines = src[start:end].split(b"\n")
        worded = [i for i, line in enumerate(lines) if _WORDS.search(line)]
        if len(worded) <= MAX_DOC_COMMENT_LINES:
            return
        last_kept = worded[MAX_DOC_COMMENT_LINES - 1]
        hidden = len(lines) - last_kept - 1
        if hidden < 2:
            return
        cut = start + sum(len(line) + 1 for line in lines[:last_kept + 1]) - 1
        owner = next(c for c in group if c.start_byte <= cut <= c.end_byte)
        owner_text = src[owner.start_byte:owner.end_byte]
        line_start = src.rfind(b"\n", 0, cut) + 1
        indent = src[line_start:line_start + _indent_width(src, line_start)]
        marker = b"[... %d more lines]" % hidden
        if owner_text.startswith(b"/*") and cut < owner.end_byte - 1:
            if owner_text.count(b"/*") > 1:        # nested block comments (Rust): do not cut
                return
            self.edits.append((cut, end, b" " + marker + b" */"))
        else:
            prefix = _LINE_COMMENT_PREFIX.match(owner_text)
            token = prefix.group() if prefix else b"//"
            self.edits.append((cut, end, b"\n" + indent + token + b" " + marker))

    # ------------------------------------------------------------------ HOT
    def _is_hot(self, node: Node) -> bool:
        outer = node.parent if node.parent is not None and node.parent.type in _HOT_WRAPPERS else node
        src = self.src
        line_start = src.rfind(b"\n", 0, outer.start_byte) + 1
        line_end = src.find(b"\n", node.start_byte)
        first = src[line_start:line_end if line_end >= 0 else len(src)]
        hot_at = first.find(b"[HOT]")
        if hot_at >= 0 and (b"//" in first[:hot_at] or b"/*" in first[:hot_at]):
            return True
        pos = line_start
        while pos > 0:
            prev_start = src.rfind(b"\n", 0, pos - 1) + 1
            line = src[prev_start:pos - 1].strip()
            if not line.startswith(_HOT_LINE_STARTS):
                return False
            if b"[HOT]" in line:
                return True
            pos = prev_start
        return False


def _indent_width(src: bytes, line_start: int) -> int:
    n = 0
    while line_start + n < len(src) and src[line_start + n] in b" \t":
        n += 1
    return n


def callable_body(spec: LanguageSpec, node: Node) -> Node | None:
    where = spec.callables[node.type][0]
    if where.startswith("child:"):
        kind = where[6:]
        return next((c for c in node.named_children if c.type == kind), None)
    return node.child_by_field_name(where)


def _iife_functions(program: Node) -> Iterator[Node]:
    """Functions a top-level statement calls at once (`(function () { ... })()`): a UMD or
    module wrapper whose body is the real module, so it is walked like the top level."""
    for stmt in program.named_children:
        if stmt.type != "expression_statement" or not stmt.named_child_count:
            continue
        node: Node | None = stmt.named_children[0]
        for _ in range(6):
            if node is None:
                break
            if node.type in ("function_expression", "function", "arrow_function"):
                yield node
                break
            if node.type == "call_expression":
                node = node.child_by_field_name("function")
            elif node.type == "member_expression":      # (function () {...}).call(this)
                node = node.child_by_field_name("object")
            elif node.type in ("parenthesized_expression", "unary_expression") and node.named_child_count:
                node = node.named_children[-1]
            else:
                break


# ---------------------------------------------------------------------------------------------
# Outline and declared names

def _text(src: bytes, node: Node) -> str:
    return src[node.start_byte:node.end_byte].decode("utf-8", "replace")


def declaration_name(node: Node, src: bytes) -> str | None:
    if node.type == "impl_item":
        kind, trait = node.child_by_field_name("type"), node.child_by_field_name("trait")
        if kind is None:
            return None
        return f"{_text(src, trait)} for {_text(src, kind)}" if trait is not None else _text(src, kind)
    name = node.child_by_field_name("name")
    if name is not None:
        return _text(src, name)
    declarator = node.child_by_field_name("declarator")
    for _ in range(8):          # C: pointer_declarator -> function_declarator -> identifier
        if declarator is None:
            return None
        if declarator.type.endswith(_NAME_TYPES) or declarator.type in ("qualified_identifier", "type_identifier"):
            return _text(src, declarator)
        declarator = declarator.child_by_field_name("declarator")
    return None


def _go_receiver(node: Node, src: bytes) -> str:
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return ""
    text = _text(src, receiver).strip("()")
    return re.sub(r"\[.*", "", text.split()[-1].lstrip("*")) if text.split() else ""


def _kind(spec: LanguageSpec, node: Node, prefix: str) -> str:
    kind = spec.outline[node.type]
    if node.type == "type_spec":
        body = node.child_by_field_name("type")
        kind = {"struct_type": "struct", "interface_type": "interface"}.get(body.type if body else "", "type")
    if prefix and kind in ("function", "fn", "func"):
        return "method"
    return kind


def outline(spec: LanguageSpec, src: bytes, root: Node) -> list[tuple[str, str, str, int, int, int]]:
    """(kind, name, qualname, first line, last line, nesting) per declaration, lines 1-based,
    in file order.  Nothing declared inside a function body is listed."""
    items: list[tuple[str, str, str, int, int, int]] = []
    hint = re.compile(spec.code_hint)
    stack: list[tuple[Node, str, int]] = [(root, "", 0)]
    while stack:
        parent, prefix, level = stack.pop()
        for child in parent.named_children:
            kind = child.type
            if kind in spec.opaque or kind in spec.comments:
                continue
            if kind in spec.literals and not hint.search(src[child.start_byte:child.end_byte]):
                continue
            function_value = kind == "variable_declarator" and _is_function_value(spec, child)
            inner, inner_level = prefix, level
            if kind in spec.outline or function_value:
                name = declaration_name(child, src)
                if name:
                    receiver = _go_receiver(child, src) if spec.name == "go" else ""
                    qual = f"{receiver}.{name}" if receiver else prefix + name
                    word = _kind(spec, child, prefix) if not function_value else ("method" if prefix else "function")
                    items.append((word, name, qual, child.start_point.row + 1, child.end_point.row + 1, level))
                    inner, inner_level = qual + ".", level + 1
            if kind in spec.callables or function_value:
                continue
            stack.append((child, inner, inner_level))
    items.sort(key=lambda it: (it[3], -it[4]))
    return items


def _is_function_value(spec: LanguageSpec, declarator: Node) -> bool:
    value = declarator.child_by_field_name("value")
    return value is not None and value.type in spec.callables


def declared_names(spec: LanguageSpec, src: bytes, root: Node) -> set[str]:
    """Every name declared outside function bodies and cut literals (for the name check)."""
    names: set[str] = set()
    hint = re.compile(spec.code_hint)
    stack = [root]
    while stack:
        node = stack.pop()
        body = callable_body(spec, node) if node.type in spec.callables else None
        for child in node.named_children:
            kind = child.type
            if kind in spec.opaque or kind in spec.comments or (body is not None and child.id == body.id) \
                    or kind == "field_initializer_list":     # C++ `: a_(a)`, cut with the body
                continue
            if kind in spec.literals and not hint.search(src[child.start_byte:child.end_byte]):
                continue
            declares = _declares.get(kind)
            if declares is None:
                declares = _declares[kind] = kind.endswith(_DECLARES)
            name = declaration_name(child, src) if declares else None
            if name:
                names.add(name)
            stack.append(child)
    return names
