"""The tool registry: specs for the model, argument checking, approval policy, dispatch.

`TOOL_SPECS` is what `ai_client` hands to a provider.  `describe()` feeds the
approval dialog and never raises.  `execute()` runs a tool and returns the
text the model sees; anything the model can fix comes back as `ToolError`.

Approval is enforced twice: the caller asks the developer when
`needs_approval(name)` is true, and `execute()` itself refuses a write or a
shell command unless it is passed `approved=True` -- so a caller that forgets
to ask can still never write a file or run a command.
"""
from __future__ import annotations

import logging
import os
import reprlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import ToolSpec
from tools import files, search, shell
from tools.errors import ToolError
from tools.paths import display_path, resolve_in_root, resolve_root

log = logging.getLogger(__name__)

_UNSET = object()


@dataclass(frozen=True)
class _Param:
    name: str
    schema: dict
    default: Any = _UNSET  # _UNSET: required

    @property
    def required(self) -> bool:
        return self.default is _UNSET


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    params: tuple[_Param, ...]
    needs_approval: bool
    run: Callable[..., str]                    # run(root, **args) -> str
    describe: Callable[[Path, dict], dict]      # describe(root, args) -> dict (may raise ToolError)

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            parameters={
                "type": "object",
                "properties": {p.name: dict(p.schema) for p in self.params},
                "required": [p.name for p in self.params if p.required],
            },
        )


def _string(description: str) -> dict:
    return {"type": "string", "description": description}


_PATH = _string("File path relative to the project root (absolute paths must be inside the root).")


# ------------------------------------------------------------------ describe

def _read_target(root: Path, user_path: str) -> str:
    """The confined display path of a read; raises ToolError so describe() can flag a bad path."""
    return display_path(root, resolve_in_root(root, user_path))


def _describe_read(root: Path, a: dict) -> dict:
    rng = ""
    if a["start_line"] is not None or a["end_line"] is not None:
        rng = f" (lines {a['start_line'] or 1}-{a['end_line'] or 'end'})"
    return {"summary": f"read {_read_target(root, a['path'])}{rng}"}


def _describe_list(root: Path, a: dict) -> dict:
    return {"summary": f"list directory {_read_target(root, a['path'])}"}


def _describe_search(root: Path, a: dict) -> dict:
    kind = "regex" if a["regex"] else "text"
    where = _read_target(root, a["path"])
    return {"summary": f"search {kind} {a['pattern']!r} in {where} (max {a['max_results']} results)"}


def _describe_skeleton(root: Path, a: dict) -> dict:
    return {"summary": f"skeleton of {_read_target(root, a['path'])}"}


def _describe_plan(plan: files.WritePlan, summary: str) -> dict:
    return {
        "summary": summary,
        "path": plan.display,
        "abs_path": str(plan.target),
        "new_file": plan.old is None,
        "bytes": len(plan.new),
        "diff": files.unified_diff(plan),
    }


def _describe_write(root: Path, a: dict) -> dict:
    plan = files.plan_write(root, a["path"], a["content"])
    verb = "create" if plan.old is None else "overwrite"
    return _describe_plan(plan, f"{verb} {plan.display} ({len(plan.new)} bytes)")


def _describe_patch(root: Path, a: dict) -> dict:
    plan = files.plan_patch(root, a["path"], a["old"], a["new"])
    return _describe_plan(plan, f"patch {plan.display} at {plan.note}")


def _describe_shell(root: Path, a: dict) -> dict:
    return {
        "summary": f"run: {a['command']}",
        "command": a["command"],
        "cwd": str(root),
        "timeout_s": a["timeout_s"],
    }


# -------------------------------------------------------------------- tools

_TOOLS: dict[str, _Tool] = {t.name: t for t in (
    _Tool(
        "read_file",
        "Read a text file of the project. Returns its content (at most 200 KB; longer files end with a "
        "'[truncated: N more bytes]' note). Use start_line/end_line (1-based, inclusive) for a part.",
        (_Param("path", _PATH),
         _Param("start_line", {"type": "integer", "minimum": 1, "description": "First line to return (1-based)."}, None),
         _Param("end_line", {"type": "integer", "minimum": 1, "description": "Last line to return (inclusive)."}, None)),
        False, files.read_file, _describe_read,
    ),
    _Tool(
        "list_directory",
        "List one directory of the project (not recursive), sorted by name; directories end with '/'.",
        (_Param("path", _string("Directory relative to the project root; default '.'."), "."),),
        False, files.list_directory, _describe_list,
    ),
    _Tool(
        "search_text",
        "Search the project's text files for a string (or, when regex is true, an RE2 regular expression: "
        "Python re syntax without backreferences or lookaround; at most 1 s of searching). "
        "Returns 'path:line: text' lines. Skips binary files and .git, .venv, __pycache__, node_modules.",
        (_Param("pattern", _string("Text to find (case-sensitive), or a regex if regex is true.")),
         _Param("path", _string("File or directory to search, relative to the project root; default '.'."), "."),
         _Param("regex", {"type": "boolean", "description": "Treat pattern as a regular expression; default false."},
                False),
         _Param("max_results", {"type": "integer", "minimum": 1, "maximum": search.SEARCH_RESULTS_CAP,
                                "description": "Maximum number of matching lines; default 100."}, 100)),
        False, search.search_text, _describe_search,
    ),
    _Tool(
        "file_skeleton",
        "Outline of a source file: imports, class and function signatures and docstrings, bodies elided. "
        "Much smaller than read_file for getting an overview.",
        (_Param("path", _PATH),),
        False, files.file_skeleton, _describe_skeleton,
    ),
    _Tool(
        "write_file",
        "Create or overwrite a file with the given content (parent directories are created). "
        "Needs the developer's approval. Prefer patch_file for small edits to existing files.",
        (_Param("path", _PATH), _Param("content", _string("The complete new content of the file."))),
        True, files.write_file, _describe_write,
    ),
    _Tool(
        "patch_file",
        "Replace one exact occurrence of 'old' with 'new' in a file. 'old' must match the file's text exactly "
        "(whitespace included) and exactly once; otherwise nothing changes and an error says why. "
        "Needs the developer's approval.",
        (_Param("path", _PATH),
         _Param("old", _string("Exact text to replace; include enough context to be unique.")),
         _Param("new", _string("Replacement text."))),
        True, files.patch_file, _describe_patch,
    ),
    _Tool(
        "run_shell",
        "Run a bash command in the project root and return its exit code, stdout and stderr "
        "(each cut to 64 KB). Killed after timeout_s seconds. Secret environment variables "
        "(names containing KEY, TOKEN, SECRET, PASSWORD) are not available. Needs the developer's approval.",
        (_Param("command", _string("The bash command line.")),
         _Param("timeout_s", {"type": "number", "minimum": 1, "maximum": shell.MAX_TIMEOUT_S,
                              "description": "Seconds before the command is killed; default 60."}, 60)),
        True, shell.run_shell, _describe_shell,
    ),
)}

# Tools that block for long and take a `cancel` event (the session's abort) to stop early.
_CANCELLABLE = frozenset({"run_shell"})

TOOL_SPECS: list[ToolSpec] = [tool.spec() for tool in _TOOLS.values()]
TOOL_NAMES: tuple[str, ...] = tuple(_TOOLS)


# ---------------------------------------------------------------- public API

def needs_approval(name: str) -> bool:
    """True for tools that change files or run commands -- and for unknown names (fail closed)."""
    tool = _TOOLS.get(name)
    return True if tool is None else tool.needs_approval


def describe(name: str, args: Any, root: str | os.PathLike) -> dict:
    """What a call would do, for the approval dialog.  Never raises.

    Always has "tool", "summary" and "needs_approval".  Writes add "path",
    "abs_path", "new_file", "bytes" and a unified "diff"; run_shell adds
    "command", "cwd" and "timeout_s".  A call that would fail has "error".
    """
    base = {"tool": name, "needs_approval": needs_approval(name)}
    try:
        tool = _lookup(name)
        values = _validate(tool, args)
        root_path = resolve_root(root)
        return {**base, **tool.describe(root_path, values)}
    except ToolError as exc:
        return {**base, "summary": _fallback_summary(name, args), "error": str(exc)}
    except Exception as exc:  # describe must never take the approval dialog down; log and report
        log.exception("describe(%r) failed", name)
        return {**base, "summary": _fallback_summary(name, args), "error": f"internal error: {exc}"}


def execute(name: str, args: Any, root: str | os.PathLike, *, approved: bool = False,
            cancel: threading.Event | None = None) -> str:
    """Run tool `name` with `args` in project `root`; returns the text for the model.

    Raises `ToolError` for an unknown tool, bad arguments, a path outside the
    root, a missing file, or an approval-requiring tool without `approved=True`.
    `cancel` (the session's abort) stops a running shell command.
    """
    tool = _lookup(name)
    if tool.needs_approval and approved is not True:
        log.warning("refused %s: not approved", name)
        raise ToolError(f"{name} needs the developer's approval and was not approved; nothing was done")
    values = _validate(tool, args)
    root_path = resolve_root(root)
    log.info("tool %s %s", name, _fallback_summary(name, values))
    if cancel is not None and tool.name in _CANCELLABLE:
        values["cancel"] = cancel
    try:
        return tool.run(root_path, **values)
    except OSError as exc:
        log.warning("tool %s failed: %s", name, exc)
        raise ToolError(f"{name} failed: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------- internals

def _lookup(name: Any) -> _Tool:
    tool = _TOOLS.get(name) if isinstance(name, str) else None
    if tool is None:
        raise ToolError(f"unknown tool {name!r}; available tools: {', '.join(TOOL_NAMES)}")
    return tool


def _validate(tool: _Tool, args: Any) -> dict:
    """Check `args` against the tool's parameters; returns all parameters with defaults filled in."""
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ToolError(f"{tool.name} arguments must be an object, got {type(args).__name__}")
    known = {p.name for p in tool.params}
    unknown = sorted(str(k) for k in args if k not in known)
    if unknown:
        raise ToolError(f"{tool.name} got unknown argument(s) {', '.join(unknown)}; "
                        f"it accepts: {', '.join(p.name for p in tool.params)}")
    values: dict[str, Any] = {}
    for p in tool.params:
        value = args.get(p.name)
        if value is None:  # models often send null for "not given"
            if p.required:
                raise ToolError(f"{tool.name} is missing required argument '{p.name}'")
            values[p.name] = p.default
            continue
        values[p.name] = _check_value(tool.name, p, value)
    return values


def _check_value(tool_name: str, p: _Param, value: Any) -> Any:
    kind = p.schema["type"]
    where = f"{tool_name}: '{p.name}'"
    if kind == "string":
        if not isinstance(value, str):
            raise ToolError(f"{where} must be a string, got {type(value).__name__}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ToolError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolError(f"{where} must be a number, got {type(value).__name__}")
    if kind == "integer":
        if isinstance(value, float):  # JSON-via-protobuf providers send 10.0 for 10
            if not value.is_integer():
                raise ToolError(f"{where} must be a whole number, got {value!r}")
            value = int(value)
    elif value != value or value in (float("inf"), float("-inf")):
        raise ToolError(f"{where} must be a finite number, got {value!r}")
    if "minimum" in p.schema and value < p.schema["minimum"]:
        raise ToolError(f"{where} must be at least {p.schema['minimum']}, got {value!r}")
    if "maximum" in p.schema and value > p.schema["maximum"]:
        raise ToolError(f"{where} must be at most {p.schema['maximum']}, got {value!r}")
    return value


_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80


def _fallback_summary(name: Any, args: Any) -> str:
    """A one-line description from raw arguments; safe for any input."""
    try:
        if isinstance(args, dict):
            inner = ", ".join(f"{k}={_short.repr(v)}" for k, v in list(args.items())[:6])
        else:
            inner = _short.repr(args)
        return f"{name}({inner})"
    except Exception as exc:  # a hostile __repr__ must not break the approval dialog
        log.warning("cannot summarise arguments of %r: %s", name, exc)
        return f"{name}(<unprintable arguments>)"


__all__ = ["TOOL_SPECS", "TOOL_NAMES", "ToolError", "needs_approval", "describe", "execute"]
