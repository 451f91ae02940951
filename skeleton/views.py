"""The value types of file views, shared by the Python and the brace-language parsers.

`file_cache` re-exports them; import them from there.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tree_sitter import Tree


@dataclass(frozen=True)
class OutlineItem:
    # Python: "class" | "function" | "method"; other languages add their own words
    # ("struct", "interface", "enum", "trait", "impl", "namespace", "type", "fn", "func", ...).
    kind: str
    name: str
    qualname: str
    line: int  # 1-based line of the declaration
    end_line: int  # 1-based, inclusive
    level: int = -1  # nesting depth; -1: count the dots of `qualname` (Python)

    @property
    def depth(self) -> int:
        return self.level if self.level >= 0 else self.qualname.count(".")


@dataclass(frozen=True)
class ViewResult:
    text: str
    mode: str
    has_errors: bool = False
    error_lines: tuple[int, ...] = ()  # 1-based; a tuple because cached results are shared
    outline: tuple[OutlineItem, ...] = ()
    language: str = ""  # "python", "go", ...; "" when the file has no parser
    note: str = ""      # why the view is not what the mode promises (full text, outline only)


@dataclass(frozen=True)
class ParsedSource:
    """A tree and the bytes it was parsed from; views are pure functions of this.

    `src` is the original UTF-8 source, or with `elided` set, the copy whose function bodies
    were reduced to `...` before parsing (see `skeleton.elision`); `original` is always the input.
    For C and C++ the tree comes from a macro-masked copy of the same length as `src`.
    """
    src: bytes
    tree: Tree
    error_lines: tuple[int, ...]
    missing: tuple[tuple[int, bytes], ...] = ()  # (byte offset, token) the parser had to invent
    original: bytes = b""
    elided: bool = False
    language: str = "python"

    @property
    def has_errors(self) -> bool:
        return bool(self.error_lines)


def render_outline(items: Iterable[OutlineItem], language: str = "python") -> str:
    lines = []
    for it in items:
        if language == "python":
            word, name = ("class" if it.kind == "class" else "def"), it.name
        else:   # a Go method sits at the top level: show its receiver (`Client.Do`)
            word, name = it.kind, it.qualname if it.depth == 0 else it.name
        lines.append(f"{'    ' * it.depth}{word} {name}  [{it.line}-{it.end_line}]")
    return "\n".join(lines) + ("\n" if lines else "")


class ViewShortcuts:
    """`get_skeleton(code)` and friends for a parser with `parse`, `view` and `outline_items`."""

    def parse(self, code: str | bytes) -> ParsedSource:
        raise NotImplementedError

    def view(self, parsed: ParsedSource, mode: str) -> ViewResult:
        raise NotImplementedError

    def outline_items(self, parsed: ParsedSource) -> tuple[OutlineItem, ...]:
        raise NotImplementedError

    def get_skeleton(self, code: str) -> str:
        return self.view(self.parse(code), "skeleton").text

    def get_curated_view(self, code: str) -> str:
        return self.view(self.parse(code), "curated").text

    def get_outline(self, code: str) -> list[OutlineItem]:
        return list(self.outline_items(self.parse(code)))

    def get_outline_text(self, code: str) -> str:
        return self.view(self.parse(code), "outline").text
