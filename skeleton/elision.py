"""Body elision: Python source with non-HOT function bodies cut to `...` before parsing.

Skeleton, curated and outline views never look inside a function body (apart from its
docstring), so `file_cache.ASTParser` hands tree-sitter a copy of the source in which those
bodies are replaced by `...` on the body's last line (line numbers stay exact).  That parses
roughly a third of the bytes.  The scanner below only needs Python's lexical structure (strings,
comments, brackets, continuation lines); whenever it is unsure it keeps the body, and if the
reduced tree has any error the caller re-parses the original, so reported errors are exact.
The cost: a syntax error that sits entirely inside an elided body, with balanced brackets and
quotes, is not reported by these views (it does not change them either).
"""
from __future__ import annotations

import re


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
_BODY_RES: dict[int, re.Pattern[bytes]] = {}


def _body_re(indent: int) -> re.Pattern[bytes]:
    """Blank/comment lines and logical lines indented deeper than `indent`; group 1 ends at
    the last code line."""
    pattern = _BODY_RES.get(indent)
    if pattern is None:
        pattern = _BODY_RES[indent] = re.compile(
            rb"(?s)(?:[ \t]*(?:#[^\n]*)?\n|([ ]{%d,}(?=[^ \t\n#])" % (indent + 1) + _REST + rb"))*+")
    return pattern


def elide_bodies(src: bytes) -> bytes | None:
    """`src` with non-HOT function bodies reduced to docstring + `...`; None when unsure or
    when there is nothing to cut."""
    if b"\r" in src:  # the patterns expect "\n" line ends (FileCache normalises them)
        return None
    if (b"\t" in src or b"\f" in src) and _TAB_INDENT.search(src):  # tab widths: not modelled
        return None
    out: list[bytes] = []
    last, pos, size = 0, 0, len(src)
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
        # Both patterns below match the empty string, so they always match; were one not to,
        # the body is kept (the rule when in doubt).
        body = _body_re(len(m.group(1))).match(src, end)
        code_end = body.end(1) if body is not None else -1
        if code_end <= end:
            continue
        first = _SKIP_LINES.match(src, end)
        if first is None:
            continue
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

