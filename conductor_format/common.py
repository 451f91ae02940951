"""What the Conductor file modules share: line patterns, the label rule, exact reads."""
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


def read_text(path: Path) -> str:
    """Read exactly (no newline translation), so write-back keeps CRLF and friends."""
    return path.read_bytes().decode("utf-8")


def read_json_object(path: Path) -> dict:
    try:
        data = json.loads(read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_json_object_if_present(path: Path) -> dict:
    """`{}` when there is no such file; raises ValueError for a file that is not a JSON object."""
    return read_json_object(path) if path.is_file() else {}


def tracks_dir(project_dir: str | Path) -> Path:
    return Path(project_dir) / "conductor" / "tracks"
