"""`[[mcp_servers]]` in `mma_project.toml`: which MCP servers a project's models may use.

    [[mcp_servers]]
    name = "git"                       # letters, digits, '-' and '_'; the tools' prefix
    command = "mcp-server-git"         # a stdio server: the program and its arguments ...
    args = ["--repository", "."]
    env = { GIT_AUTHOR_NAME = "me" }   # added to a minimal environment (PATH, HOME, ...)
    cwd = "."                          # relative to the project root; default: the root
    # url = "http://127.0.0.1:8000/mcp"  ... or a streamable-HTTP server instead of command
    enabled = true                     # default true
    trusted = false                    # true: its tools run without asking (default false)
    timeout_s = 60                     # time limit of one tool call (default 60)

`McpServerConfig.from_dict` checks one entry and raises `McpConfigError` (a ValueError)
naming the key; `parse_servers` checks the list (names must be unique).  Keys this module
does not know are kept in `extra` and written back unchanged.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
DEFAULT_CALL_TIMEOUT_S = 60.0
MAX_CALL_TIMEOUT_S = 3600.0
_KNOWN = ("name", "command", "args", "env", "cwd", "url", "enabled", "trusted", "timeout_s")


class McpConfigError(ValueError):
    """A bad `[[mcp_servers]]` entry; `key_path` says where (e.g. `mcp_servers[1].args`)."""

    def __init__(self, key_path: str, detail: str):
        super().__init__(f"{key_path}: {detail}")
        self.key_path = key_path


@dataclass(frozen=True)
class McpServerConfig:
    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = ""
    url: str = ""
    enabled: bool = True
    trusted: bool = False
    timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        where = f"mcp server {self.name!r}"
        if not isinstance(self.name, str) or not NAME_RE.match(self.name) or "__" in self.name:
            raise McpConfigError("name", f"{self.name!r} is not a server name: use 1-32 letters, digits, "
                                         "'-' or '_' (no '__'), starting with a letter or digit")
        if bool(self.command) == bool(self.url):
            raise McpConfigError(where, "give exactly one of `command` (a stdio server) or `url` "
                                        "(a streamable-HTTP server)")
        if self.url and not re.match(r"^https?://", self.url):
            raise McpConfigError(f"{where}.url", f"expected an http:// or https:// URL, got {self.url!r}")
        if not 0 < self.timeout_s <= MAX_CALL_TIMEOUT_S:
            raise McpConfigError(f"{where}.timeout_s",
                                 f"expected seconds in (0, {MAX_CALL_TIMEOUT_S:.0f}], got {self.timeout_s!r}")

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def working_dir(self, root: str | Path) -> Path:
        """Where a stdio server starts: `cwd` relative to the project root (default: the root)."""
        base = Path(root)
        return (base / self.cwd) if self.cwd else base

    def launch_line(self) -> str:
        """What is started, for status lines and the approval dialog."""
        return self.url or " ".join([self.command, *self.args])

    def replace(self, **changes: Any) -> McpServerConfig:
        import dataclasses
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "mcp_servers[?]") -> McpServerConfig:
        if not isinstance(raw, dict):
            raise McpConfigError(where, f"expected a table, got {type(raw).__name__}")

        def get(key: str, kinds: type | tuple[type, ...], default: Any, what: str) -> Any:
            value = raw.get(key, default)
            kinds_t = kinds if isinstance(kinds, tuple) else (kinds,)
            if isinstance(value, bool) and bool not in kinds_t or not isinstance(value, kinds_t):
                raise McpConfigError(f"{where}.{key}", f"expected {what}, got {value!r}"[:200])
            return value

        name = get("name", str, "", "a server name")
        if not name:
            raise McpConfigError(f"{where}.name", "missing: every [[mcp_servers]] entry needs a name")
        args = get("args", list, [], "a list of strings")
        for i, arg in enumerate(args):
            if not isinstance(arg, str):
                raise McpConfigError(f"{where}.args[{i}]", f"expected a string, got {arg!r}"[:200])
        env = get("env", dict, {}, "a table of NAME = \"value\"")
        for key, value in env.items():
            if not isinstance(value, str):
                raise McpConfigError(f"{where}.env.{key}", f"expected a string, got {value!r}"[:200])
        try:
            return cls(
                name=name, command=get("command", str, "", "a program name or path"),
                args=tuple(args), env=tuple(sorted(env.items())), cwd=get("cwd", str, "", "a folder"),
                url=get("url", str, "", "a URL"), enabled=get("enabled", bool, True, "true or false"),
                trusted=get("trusted", bool, False, "true or false"),
                timeout_s=float(get("timeout_s", (int, float), DEFAULT_CALL_TIMEOUT_S, "a number of seconds")),
                extra=tuple((k, v) for k, v in raw.items() if k not in _KNOWN))
        except McpConfigError as exc:
            if exc.key_path.startswith(where):
                raise
            key = exc.key_path.split(".")[-1] if "." in exc.key_path else exc.key_path
            raise McpConfigError(f"{where}.{key}" if key in _KNOWN else where,
                                 str(exc).split(": ", 1)[-1]) from None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {**dict(self.extra), "name": self.name}
        if self.command:
            data["command"] = self.command
            data["args"] = list(self.args)
        if self.url:
            data["url"] = self.url
        if self.env:
            data["env"] = dict(self.env)
        if self.cwd:
            data["cwd"] = self.cwd
        data["enabled"] = self.enabled
        data["trusted"] = self.trusted
        if self.timeout_s != DEFAULT_CALL_TIMEOUT_S:
            data["timeout_s"] = self.timeout_s
        return data


def parse_servers(raw: Any) -> list[McpServerConfig]:
    """The `mcp_servers` array of tables; raises McpConfigError for a bad entry or a repeated name."""
    if not isinstance(raw, list):
        raise McpConfigError("mcp_servers", f"expected an array of tables ([[mcp_servers]]), got {raw!r}"[:200])
    servers = [McpServerConfig.from_dict(item, f"mcp_servers[{i}]") for i, item in enumerate(raw)]
    check_unique(servers)
    return servers


def check_unique(servers: Iterable[McpServerConfig]) -> None:
    seen: set[str] = set()
    for i, server in enumerate(servers):
        if server.name in seen:
            raise McpConfigError(f"mcp_servers[{i}].name", f"the name {server.name!r} is used twice")
        seen.add(server.name)


def parse_command_line(text: str) -> tuple[str, tuple[str, ...]]:
    """`mcp-server-git --repository .` -> ("mcp-server-git", ("--repository", ".")) (shell quoting)."""
    import shlex
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise McpConfigError("command", f"cannot split {text!r}: {exc}") from None
    if not parts:
        raise McpConfigError("command", "empty: give the program to start and its arguments")
    return parts[0], tuple(parts[1:])
