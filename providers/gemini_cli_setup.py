"""Finding (or installing) the Gemini CLI, and the private home each CLI session runs in.

`find_cli()` returns the `gemini` program to run, first match wins:
  1. `MMA_GEMINI_CLI`: a path to a `gemini` executable;
  2. `gemini` on PATH;
  3. the private prefix (`MMA_GEMINI_CLI_PREFIX`, default `<python env>/mma-desk/gemini-cli`):
     `<prefix>/node_modules/.bin/gemini`, installed there on first use with
     `npm install --prefix <prefix> @google/gemini-cli@<GEMINI_CLI_VERSION>` -- never globally.
     Node.js 20+ and npm must be on PATH; without them a clear `ProviderUnavailableError`.

`CliHome` is one MMA Desk session's private `GEMINI_CLI_HOME` (a temporary folder, removed
when the adapter goes away): its `.gemini/settings.json` keeps the CLI offline-safe (API-key
auth, no telemetry or usage statistics, no auto-update, one attempt per request: MMA Desk
retries), its `work/` folder is the CLI's working directory (so it never reads a GEMINI.md or
.env of the project), `tmp/` its TMPDIR, `system.md` the system prompt (`GEMINI_SYSTEM_MD`).
The API key goes only into the child's environment, never into a file.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path

from providers.base import ProviderUnavailableError

log = logging.getLogger(__name__)

PROVIDER = "gemini-cli"
PACKAGE = "@google/gemini-cli"
GEMINI_CLI_VERSION = "0.61.0"          # the version measured against the wire emulator
MIN_NODE_MAJOR = 20
INSTALL_TIMEOUT_S = 600.0
NODE_HINT = ("install Node.js 20 or newer with npm (e.g. `apt-get install nodejs npm`), or set "
             "MMA_GEMINI_CLI to a `gemini` executable")

_install_lock = threading.Lock()


def default_prefix() -> Path:
    return Path(os.environ.get("MMA_GEMINI_CLI_PREFIX") or Path(sys.prefix) / "mma-desk" / "gemini-cli")


def find_cli(install: bool = True) -> Path:
    """The `gemini` program; installs it into the private prefix when allowed and missing."""
    explicit = os.environ.get("MMA_GEMINI_CLI", "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ProviderUnavailableError(f"MMA_GEMINI_CLI={explicit} is not an executable file",
                                           provider=PROVIDER, hint="point it at the `gemini` program")
        return path
    on_path = shutil.which("gemini")
    if on_path:
        return Path(on_path)
    prefix = default_prefix()
    local = prefix / "node_modules" / ".bin" / "gemini"
    if local.is_file():
        return local
    if not install:
        raise ProviderUnavailableError("the Gemini CLI is not installed", provider=PROVIDER, hint=NODE_HINT)
    return install_cli(prefix)


def node_version() -> tuple[int, ...] | None:
    node = shutil.which("node")
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("node --version failed: %s", exc)
        return None
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", out.strip())
    return tuple(int(x) for x in match.groups()) if match else None


def install_cli(prefix: Path, version: str | None = None) -> Path:
    """`npm install --prefix PREFIX @google/gemini-cli@VERSION`, once per prefix (threads and
    processes wait for each other on a lock file)."""
    version = version or os.environ.get("MMA_GEMINI_CLI_VERSION") or GEMINI_CLI_VERSION
    node = node_version()
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise ProviderUnavailableError("the Gemini CLI needs Node.js and npm, and "
                                       f"{'node' if node is None else 'npm'} is not on PATH",
                                       provider=PROVIDER, hint=NODE_HINT)
    if node[0] < MIN_NODE_MAJOR:
        raise ProviderUnavailableError(f"the Gemini CLI needs Node.js {MIN_NODE_MAJOR}+, found "
                                       f"{'.'.join(map(str, node))}", provider=PROVIDER, hint=NODE_HINT)
    target = prefix / "node_modules" / ".bin" / "gemini"
    prefix.mkdir(parents=True, exist_ok=True)
    with _install_lock, open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # another process may be installing it right now
        if target.is_file():
            return target
        log.warning("installing %s@%s into %s (first use of the gemini-cli provider)", PACKAGE, version, prefix)
        try:
            proc = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                                   "--loglevel=error", f"{PACKAGE}@{version}"],
                                  capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ProviderUnavailableError(f"npm install of {PACKAGE} took over {INSTALL_TIMEOUT_S:.0f} s",
                                           provider=PROVIDER, hint="check the npm registry connection") from None
        if proc.returncode != 0 or not target.is_file():
            raise ProviderUnavailableError(f"npm install of {PACKAGE}@{version} failed (exit {proc.returncode}): "
                                           f"{(proc.stderr or proc.stdout).strip()[-600:]}", provider=PROVIDER,
                                           hint="check the npm registry connection, or set MMA_GEMINI_CLI")
    return target


class CliHome:
    """A private `GEMINI_CLI_HOME` for one MMA Desk session; removed with its owner."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mma-gemini-cli-"))
        os.chmod(self.root, 0o700)
        self.settings_dir = self.root / ".gemini"
        self.work = self.root / "work"
        self.tmp = self.root / "tmp"
        self.system_file = self.root / "system.md"
        for folder in (self.settings_dir, self.work, self.tmp):
            folder.mkdir()
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.root, True)

    @property
    def socket_path(self) -> Path:
        return self.root / "bridge.sock"

    def write_settings(self, mcp_server: dict | None, tool_names: list[str]) -> None:
        """Offline-safe settings; the CLI's own tools off, only MMA Desk's (through the bridge) on."""
        settings: dict = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False, "maxAttempts": 1},
            "ide": {"enabled": False},
            "context": {"includeDirectoryTree": False},
            # an allowlist: no built-in tool of the CLI, only the bridge's (`mcp_mma_<name>`)
            "tools": {"useRipgrep": False, "core": [f"mcp_mma_{n}" for n in tool_names] or ["__none__"]},
        }
        if mcp_server is not None:
            settings["mcpServers"] = {"mma": mcp_server}
        path = self.settings_dir / "settings.json"
        path.write_text(json.dumps(settings, indent=1), encoding="utf-8")

    def write_system_prompt(self, text: str) -> None:
        # an empty file would leave the CLI without any instruction; one line of our own instead
        self.system_file.write_text(text.strip() or "You are a helpful assistant.", encoding="utf-8")

    def environment(self, api_key: str, base_url: str | None) -> dict[str, str]:
        """The child's whole environment: nothing of the app's is inherited but PATH and locale."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root),
               "GEMINI_CLI_HOME": str(self.root), "GEMINI_API_KEY": api_key,
               "GEMINI_CLI_TRUST_WORKSPACE": "true", "GEMINI_CLI_NO_RELAUNCH": "true", "NO_COLOR": "1",
               "TERM": "dumb", "TMPDIR": str(self.tmp), "GEMINI_SYSTEM_MD": str(self.system_file)}
        for name in ("LANG", "LC_ALL"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        if base_url:
            env["GOOGLE_GEMINI_BASE_URL"] = base_url
        return env

    def cleanup(self) -> None:
        with contextlib.suppress(TypeError):
            self._finalizer()
