"""File tools: read, list, skeleton (read-only) and write, patch (need approval); search is tools/search.py.

Every function takes the *resolved* project root and confines each path with
`resolve_in_root`.  Outputs are bounded so one tool call can never flood the
model's context: see the limits below.  Writes are atomic (temp file in the
same directory, fsync, `os.replace`), keep an existing file's permission bits,
and never follow a path out of the root.
"""
from __future__ import annotations

import difflib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from atomic_files import atomic_write_bytes
from tools.errors import ToolError
from tools.paths import display_path, is_inside, resolve_in_root

log = logging.getLogger(__name__)

READ_LIMIT_BYTES = 200_000        # read_file / file_skeleton output
LIST_LIMIT_ENTRIES = 1_000        # list_directory
DIFF_LIMIT_CHARS = 200_000        # describe(): diff shown in the approval dialog
BINARY_SNIFF_BYTES = 8_192        # a NUL byte in this prefix marks a file as binary


# ----------------------------------------------------------------- helpers

def _require_file(target: Path, user_path: str) -> None:
    if not target.exists():
        raise ToolError(f"file {user_path!r} does not exist")
    if target.is_dir():
        raise ToolError(f"{user_path!r} is a directory, not a file (use list_directory)")
    if not target.is_file():
        raise ToolError(f"{user_path!r} is not a regular file")


def is_binary(prefix: bytes) -> bool:
    return b"\x00" in prefix[:BINARY_SNIFF_BYTES]


def _refuse_binary(fh, user_path: str) -> None:
    """Raise ToolError when the open file `fh` looks binary; leaves it positioned at the start."""
    if is_binary(fh.read(BINARY_SNIFF_BYTES)):
        size = os.fstat(fh.fileno()).st_size
        raise ToolError(f"{user_path!r} looks like a binary file ({size} bytes); not shown")
    fh.seek(0)


def _utf8_cut(data: bytes, limit: int) -> int:
    """Largest cut <= limit that does not split a UTF-8 sequence."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    # Step back over continuation bytes (10xxxxxx) to the start of the character.
    while cut > 0 and limit - cut < 4 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def _truncate_text(text: str, limit: int, hint: str = "") -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    cut = _utf8_cut(data, limit)
    note = f"\n[truncated: {len(data) - cut} more bytes{hint}]"
    return data[:cut].decode("utf-8", errors="replace") + note


def _os_error(action: str, user_path: str, exc: OSError) -> ToolError:
    log.info("%s %r failed: %s", action, user_path, exc)
    return ToolError(f"could not {action} {user_path!r}: {exc.strerror or exc}")


# ---------------------------------------------------------------- read_file

def read_file(root: Path, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
    """The file's text (UTF-8, undecodable bytes replaced), at most READ_LIMIT_BYTES.

    With `start_line` / `end_line` (1-based, inclusive) only those lines.
    Binary files are refused.
    """
    target = resolve_in_root(root, path)
    _require_file(target, path)
    if start_line is not None and end_line is not None and end_line < start_line:
        raise ToolError(f"end_line ({end_line}) is before start_line ({start_line})")
    try:
        with open(target, "rb") as fh:
            _refuse_binary(fh, path)
            if start_line is None and end_line is None:
                return _read_whole(fh, path)
            return _read_lines(fh, path, start_line or 1, end_line)
    except OSError as exc:
        raise _os_error("read", path, exc) from exc


def _read_whole(fh, path: str) -> str:
    size = os.fstat(fh.fileno()).st_size
    data = fh.read(READ_LIMIT_BYTES + 4)
    if not data:
        return "[empty file: 0 bytes]"
    if len(data) <= READ_LIMIT_BYTES:
        return data.decode("utf-8", errors="replace")
    cut = _utf8_cut(data, READ_LIMIT_BYTES)
    remaining = max(size - cut, len(data) - cut)
    return (data[:cut].decode("utf-8", errors="replace")
            + f"\n[truncated: {remaining} more bytes; read the rest with start_line/end_line]")


def _read_lines(fh, path: str, start: int, end: int | None) -> str:
    chunks: list[bytes] = []
    kept = 0
    omitted = 0
    last_kept_line = 0
    lineno = 0
    for lineno, line in enumerate(fh, start=1):
        if lineno < start:
            continue
        if end is not None and lineno > end:
            break
        if omitted == 0 and kept + len(line) <= READ_LIMIT_BYTES:
            chunks.append(line)
            kept += len(line)
            last_kept_line = lineno
        else:
            omitted += len(line)
    if start > lineno:
        raise ToolError(f"start_line {start} is past the end of {path!r} ({lineno} lines)")
    text = b"".join(chunks).decode("utf-8", errors="replace")
    if omitted:
        text += (f"\n[truncated: {omitted} more bytes; continue with start_line={last_kept_line + 1}]")
    return text


# ----------------------------------------------------------- list_directory

def list_directory(root: Path, path: str = ".") -> str:
    """Entries of one directory, sorted by name; directories end with '/'.

    Symlinks are shown with their target and never followed out of the root.
    """
    target = resolve_in_root(root, path)
    if not target.exists():
        raise ToolError(f"directory {path!r} does not exist")
    if not target.is_dir():
        raise ToolError(f"{path!r} is a file, not a directory (use read_file)")
    try:
        with os.scandir(target) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise _os_error("list", path, exc) from exc
    if not entries:
        return "[empty directory]"
    lines = [_describe_entry(root, entry) for entry in entries[:LIST_LIMIT_ENTRIES]]
    if len(entries) > LIST_LIMIT_ENTRIES:
        lines.append(f"[truncated: {len(entries) - LIST_LIMIT_ENTRIES} more entries]")
    return "\n".join(lines)


def _describe_entry(root: Path, entry: os.DirEntry) -> str:
    try:
        if not entry.is_symlink():
            return entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "")
        link = Path(entry.path)
        if not is_inside(root, link):
            return f"{entry.name} -> [outside the project root; not followed]"
        resolved = link.resolve()
        if not resolved.exists():
            return f"{entry.name} -> [broken link]"
        suffix = "/" if resolved.is_dir() else ""
        return f"{entry.name}{suffix} -> {display_path(root, resolved)}{suffix}"
    except OSError as exc:
        log.debug("cannot stat %s: %s", entry.path, exc)
        return f"{entry.name} [unreadable: {exc.strerror or exc}]"


# ------------------------------------------------------------ file_skeleton

_file_cache = None
_file_cache_lock = threading.Lock()


def _shared_file_cache():
    """The process-wide `file_cache.FileCache` (it is thread-safe), created on first use.

    Imported lazily: file_cache pulls in tree-sitter, which the other tools never need.
    """
    global _file_cache
    with _file_cache_lock:
        if _file_cache is None:
            try:
                import file_cache
            except ImportError as exc:
                log.warning("file_skeleton unavailable: %s", exc)
                raise ToolError(f"file_skeleton is not available: {exc}") from exc
            _file_cache = file_cache.FileCache()
        return _file_cache


def file_skeleton(root: Path, path: str) -> str:
    """Imports, class/def headers and docstrings of a source file, bodies elided."""
    target = resolve_in_root(root, path)
    _require_file(target, path)
    cache = _shared_file_cache()
    try:
        with open(target, "rb") as fh:
            _refuse_binary(fh, path)
        view = cache.get_view(str(target), "skeleton")
    except OSError as exc:
        raise _os_error("read", path, exc) from exc
    except Exception as exc:  # file_cache/tree-sitter failures: logged, reported to the model
        log.warning("file_skeleton(%r) failed", path, exc_info=True)
        raise ToolError(f"could not build a skeleton of {path!r}: {exc}") from exc
    return _truncate_text(view.text, READ_LIMIT_BYTES, "; use read_file with start_line/end_line")


# ----------------------------------------------------- write_file/patch_file

@dataclass
class WritePlan:
    """What a write or patch would do; `describe()` shows it, `apply()` does it."""
    target: Path
    display: str
    old: bytes | None  # None: the file does not exist yet
    new: bytes
    note: str = ""

    def apply(self) -> int:
        try:
            atomic_write(self.target, self.new)
        except OSError as exc:
            raise _os_error("write", self.display, exc) from exc
        return len(self.new)


def _read_existing(target: Path, user_path: str) -> bytes | None:
    if not target.exists():
        return None
    if target.is_dir():
        raise ToolError(f"{user_path!r} is a directory, not a file")
    if not target.is_file():
        raise ToolError(f"{user_path!r} is not a regular file")
    try:
        return target.read_bytes()
    except OSError as exc:
        raise _os_error("read", user_path, exc) from exc


def _check_parent_chain(root: Path, target: Path, user_path: str) -> None:
    """Every existing ancestor up to the root must be a directory (not a file)."""
    for parent in target.parents:
        if parent == root or not parent.is_relative_to(root):
            break
        if parent.exists() and not parent.is_dir():
            raise ToolError(f"cannot write {user_path!r}: {display_path(root, parent)!r} is a file")


def plan_write(root: Path, path: str, content: str) -> WritePlan:
    target = resolve_in_root(root, path)
    if target == root:
        raise ToolError(f"{path!r} is the project root, not a file")
    _check_parent_chain(root, target, path)
    old = _read_existing(target, path)
    return WritePlan(target, display_path(root, target), old, content.encode("utf-8"))


def plan_patch(root: Path, path: str, old: str, new: str) -> WritePlan:
    if old == "":
        raise ToolError("'old' is empty; give the exact text to replace")
    if old == new:
        raise ToolError("'old' and 'new' are identical; nothing to change")
    target = resolve_in_root(root, path)
    _require_file(target, path)
    data = _read_existing(target, path)
    if data is None:                     # removed since _require_file looked
        raise ToolError(f"file {path!r} does not exist")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"{path!r} is not valid UTF-8 text; patch_file cannot edit it") from exc
    positions = _find_all(text, old)
    if not positions:
        hint = ""
        if "\r\n" in text and "\r\n" not in old and "\n" in old:
            hint = " (the file uses CRLF line endings; 'old' uses LF)"
        raise ToolError(f"'old' text was not found in {path!r}{hint}; "
                        "read the file and copy the text exactly, including whitespace")
    if len(positions) > 1:
        lines = ", ".join(str(text.count("\n", 0, p) + 1) for p in positions[:10])
        raise ToolError(f"'old' text matches {len(positions)} times in {path!r} (lines {lines}); "
                        "include more surrounding lines so it matches exactly once")
    pos = positions[0]
    new_text = text[:pos] + new + text[pos + len(old):]
    line = text.count("\n", 0, pos) + 1
    return WritePlan(target, display_path(root, target), data, new_text.encode("utf-8"),
                     note=f"line {line}")


def _find_all(text: str, sub: str, limit: int = 50) -> list[int]:
    """Start offsets of `sub` in `text`, overlapping matches included (so 'aa' in 'aaa' is 2)."""
    found: list[int] = []
    start = text.find(sub)
    while start != -1 and len(found) < limit:
        found.append(start)
        start = text.find(sub, start + 1)
    return found


def write_file(root: Path, path: str, content: str) -> str:
    plan = plan_write(root, path, content)
    written = plan.apply()
    verb = "created" if plan.old is None else "overwrote"
    return f"{verb} {plan.display}: wrote {written} bytes"


def patch_file(root: Path, path: str, old: str, new: str) -> str:
    plan = plan_patch(root, path, old, new)
    written = plan.apply()
    return f"patched {plan.display} at {plan.note}: replaced 1 occurrence, wrote {written} bytes"


def unified_diff(plan: WritePlan, limit: int = DIFF_LIMIT_CHARS) -> str:
    """A git-style unified diff of old vs new content (for the approval dialog)."""
    old_text = "" if plan.old is None else plan.old.decode("utf-8", errors="replace")
    new_text = plan.new.decode("utf-8", errors="replace")
    fromfile = "/dev/null" if plan.old is None else f"a/{plan.display}"
    out: list[str] = []
    for line in difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                     fromfile=fromfile, tofile=f"b/{plan.display}"):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return _truncate_text("".join(out), limit)


# ------------------------------------------------------------- atomic write

def atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to `target` atomically (`atomic_files.atomic_write_bytes`).

    Creates missing parent directories (the caller has confined `target` to the root).  An
    existing file keeps its permission bits, and a hard link to a file elsewhere is detached,
    never written through.
    """
    atomic_write_bytes(target, data, keep_mode=True)
