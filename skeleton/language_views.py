"""`LanguageParser`: skeleton, curated and outline views of one brace language.

The same interface as `file_cache.ASTParser` (Python): `parse(code) -> ParsedSource`,
`view(parsed, mode) -> ViewResult`, `outline_items(parsed)` and the `get_*` helpers.

Every skeleton or curated view is parsed again before it is returned: if it has more syntax
errors than its source (or loses a declared name), the view becomes the outline, marked
``// NOTE: outline only: ...``; `file_cache` never hands out a skeleton its own grammar rejects.
A source that has errors itself (common in C and C++ headers the preprocessor would fix) gets a
best-effort view that starts with ``// NOTE: the parser could not read lines ...``.
"""
from __future__ import annotations

import logging
import threading

from tree_sitter import Node, Parser, Tree

from skeleton import brace_emitter
from skeleton.languages import SPECS, LanguageSpec, load_language, mask_c_macros
from skeleton.views import OutlineItem, ParsedSource, ViewResult, ViewShortcuts, render_outline

log = logging.getLogger(__name__)


def count_errors(root: Node) -> tuple[int, tuple[int, ...]]:
    """(number of ERROR / MISSING nodes, their sorted 1-based lines)."""
    if not root.has_error:
        return 0, ()
    count, lines = 0, set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
            lines.add(node.start_point.row + 1)
        stack.extend(c for c in node.children if c.has_error or c.is_missing)
    return count, tuple(sorted(lines))


class LanguageParser(ViewShortcuts):
    """tree-sitter views of one language in `skeleton.languages.SPECS`.  Thread-safe.

    Raises `skeleton.languages.GrammarMissing` when the language's wheel is not installed.
    """

    def __init__(self, language: str):
        if language not in SPECS:
            raise ValueError(f"unsupported language {language!r}; choose one of python, {', '.join(SPECS)}")
        self.spec: LanguageSpec = SPECS[language]
        self.language = language
        self._language = load_language(self.spec)
        self._local = threading.local()

    def _parser(self) -> Parser:
        parser = getattr(self._local, "parser", None)
        if parser is None:
            parser = self._local.parser = Parser(self._language)
        return parser

    def parse_tree(self, src: bytes) -> Tree:
        """The grammar's tree of `src` (C and C++: of its macro-masked copy, same offsets)."""
        return self._parser().parse(mask_c_macros(src) if self.spec.mask_macros else src)

    def parse(self, code: str | bytes) -> ParsedSource:
        src = code.encode("utf-8", "surrogatepass") if isinstance(code, str) else code
        tree = self.parse_tree(src)
        _count, lines = count_errors(tree.root_node)
        return ParsedSource(src, tree, lines, original=src, language=self.language)

    def outline_items(self, parsed: ParsedSource) -> tuple[OutlineItem, ...]:
        return tuple(OutlineItem(kind, name, qual, line, end, level)
                     for kind, name, qual, line, end, level
                     in brace_emitter.outline(self.spec, parsed.src, parsed.tree.root_node))

    def declared_names(self, parsed: ParsedSource) -> set[str]:
        return brace_emitter.declared_names(self.spec, parsed.src, parsed.tree.root_node)

    def view(self, parsed: ParsedSource, mode: str) -> ViewResult:
        if mode == "full":
            return ViewResult(parsed.src.decode("utf-8", "replace"), mode, language=self.language)
        items = self.outline_items(parsed)
        if mode == "outline":
            return self._result(parsed, mode, render_outline(items, self.language), items)
        if mode not in ("skeleton", "curated"):
            raise ValueError(f"unknown view mode {mode!r}; expected one of full, skeleton, curated, outline")
        text = brace_emitter.BraceEmitter(self.spec, parsed.src, parsed.tree.root_node, mode == "curated").text()
        problem = self._check(parsed, text)
        if problem:
            log.warning("%s %s view falls back to the outline: %s", self.language, mode, problem)
            note = f"outline only: the {mode} view {problem}"
            body = f"// NOTE: {note}\n" + render_outline(items, self.language)
            return self._result(parsed, mode, body, items, note)
        return self._result(parsed, mode, text.decode("utf-8", "replace"), items)

    def _check(self, parsed: ParsedSource, text: bytes) -> str:
        """Why `text` is not a faithful view of `parsed` ("" when it is)."""
        tree = self.parse_tree(text)
        errors, _ = count_errors(tree.root_node)
        before, _ = count_errors(parsed.tree.root_node)
        if errors > before:
            return f"would not parse ({errors} syntax errors, the source has {before})"
        if before:     # a misread source: make sure no declaration was swallowed by the cut
            lost = self.declared_names(parsed) - brace_emitter.declared_names(self.spec, text, tree.root_node)
            if lost:
                return f"would lose {len(lost)} declared names (e.g. {sorted(lost)[0]})"
        return ""

    def _result(self, parsed: ParsedSource, mode: str, text: str, items: tuple[OutlineItem, ...],
                note: str = "") -> ViewResult:
        if not parsed.has_errors:
            return ViewResult(text, mode, outline=items, language=self.language, note=note)
        shown = ", ".join(map(str, parsed.error_lines[:10])) + (", ..." if len(parsed.error_lines) > 10 else "")
        header = f"// NOTE: the parser could not read lines {shown}; best-effort view\n"
        return ViewResult(header + text, mode, True, parsed.error_lines, items, self.language, note)
