"""What the Conductor file modules share: line patterns, the label rule, exact and tolerant reads."""
from __future__ import annotations

import json
import re
from pathlib import Path

NEWLINE_RE = re.compile(r"\r\n|\r|\n")
HEADING_RE = re.compile(r"^[ \t]{0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*))?$")
# A task label or track id as written in plan.md / tracks.md / a folder name.
LABEL_OK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


def one_line(text: str) -> str:
    return " ".join(text.split())


class ConductorFileError(ValueError):
    """A Conductor file cannot be read as it is; the message names the file and the fix."""


def _not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, exc.start) + 1
    return (f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def read_text(path: Path) -> str:
    """Read exactly (no newline translation), so write-back keeps CRLF and friends.

    Raises ConductorFileError naming the file when it is not UTF-8: writing such a file back
    would change bytes nobody asked to change."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConductorFileError(_not_utf8(path, data, exc)) from exc


def read_text_lenient(path: Path) -> tuple[str, str]:
    """(text, warning): a file that is not UTF-8 is read with U+FFFD for the bad bytes and a
    warning naming it; for reading only, never for a file that is written back."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        return data.decode("utf-8", "replace"), _not_utf8(path, data, exc)


def read_json_object(path: Path) -> dict:
    """A JSON object from `path` (a UTF-8 byte-order mark is allowed); raises ValueError."""
    try:
        data = json.loads(read_text(path).removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


# A string field as written in a damaged JSON object: `"key": "value"` on one line.
_JSON_STRING_FIELD = re.compile(r'^[ \t]*"(?P<key>[A-Za-z_][\w]*)"[ \t]*:[ \t]*"(?P<value>.*)"[ \t]*,?[ \t]*$', re.M)


def read_json_object_salvaged(path: Path) -> tuple[dict, str]:
    """(object, warning) from a metadata-like JSON file, taking what can be read.

    A valid file gives ("", no warning).  Otherwise: a stray patch line
    (`\\ No newline at end of file`) is dropped and the text tried again; failing that, every
    one-line `"key": "value"` field is taken as written (unescaped quotes inside the value
    included).  The warning names the file and says what was kept."""
    try:
        return read_json_object(path), ""
    except ConductorFileError:
        raise
    except ValueError as exc:
        error = str(exc)
    text = read_text(path).removeprefix("\ufeff")
    cleaned = "\n".join(line for line in text.splitlines() if not line.startswith("\\ No newline"))
    try:
        data = json.loads(cleaned)
        if isinstance(data, dict):
            return data, f"{error}; read it without the stray '\\ No newline at end of file' line"
    except json.JSONDecodeError:
        pass      # fall through to field-by-field salvage
    data = {}
    for m in _JSON_STRING_FIELD.finditer(cleaned):
        try:
            data[m.group("key")] = json.loads(f'"{m.group("value")}"')
        except json.JSONDecodeError:
            data[m.group("key")] = m.group("value").replace('\\"', '"')
    kept = ", ".join(sorted(data)) or "nothing"
    return data, f"{error}; kept the fields that could be read: {kept}"


def read_json_object_if_present(path: Path) -> dict:
    """`{}` when there is no such file; raises ValueError for a file that is not a JSON object."""
    return read_json_object(path) if path.is_file() else {}


def tracks_dir(project_dir: str | Path) -> Path:
    return Path(project_dir) / "conductor" / "tracks"
