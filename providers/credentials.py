"""API keys for the real providers, and redaction of secrets from text.

Lookup order for `get_api_key(provider)`:
  1. environment: gemini -> `GEMINI_API_KEY`, then `GOOGLE_API_KEY`; anthropic -> `ANTHROPIC_API_KEY`
  2. a private TOML file, `~/.config/mma-desk/credentials.toml` (override with
     `MMA_CREDENTIALS_FILE`)::

         [gemini]
         api_key = "..."
         [anthropic]
         api_key = "..."

     The file is ignored (with a warning) when it is readable by group or others
     (POSIX only; `chmod 600` fixes it).

`redact(text)` replaces every configured key value, plus anything shaped like an
API key or an auth header, with `[REDACTED]`.  Use it on anything that may end up
in a log, the comms log, an exception message or the GUI.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"

ENV_VARS: dict[str, tuple[str, ...]] = {
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "anthropic": ("ANTHROPIC_API_KEY",),
}
FILE_ENV = "MMA_CREDENTIALS_FILE"
DEFAULT_FILE = Path("~/.config/mma-desk/credentials.toml")

# Configured values shorter than this are not substring-redacted (a key of "x"
# would otherwise mangle every "x" in a log line); the patterns below still apply.
_MIN_SECRET_LEN = 6

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # header / field forms:  x-goog-api-key: VALUE   "x-api-key": "VALUE"   api_key=VALUE
    (re.compile(r"""(?i)((?:x-goog-api-key|x-api-key|api[_-]?key)["']?\s*[:=]\s*["']?)[^\s"',;}\]]+"""),
     r"\1" + REDACTED),
    (re.compile(r"""(?i)(authorization["']?\s*[:=]\s*["']?(?:bearer|basic)\s+)[^\s"',;}\]]+"""),
     r"\1" + REDACTED),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=\-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"([?&]key=)[^&\s\"']+"), r"\1" + REDACTED),
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]+"), REDACTED),
    (re.compile(r"AIza[0-9A-Za-z_\-]{8,}"), REDACTED),
]

_cache_lock = threading.Lock()
_cache: dict[str, object] = {"sig": None, "data": {}}


def credentials_path() -> Path:
    override = os.environ.get(FILE_ENV, "").strip()
    return Path(override).expanduser() if override else DEFAULT_FILE.expanduser()


def _file_is_private(path: Path, st: os.stat_result) -> bool:
    if os.name != "posix":
        return True
    if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("ignoring credentials file %s: it is readable by group/others "
                    "(mode %o); run `chmod 600 %s`", path, stat.S_IMODE(st.st_mode), path)
        return False
    return True


def _load_file() -> dict:
    """Parsed credentials file, or {} if absent/unsafe/invalid.  Cached by (path, mtime, size, mode)."""
    path = credentials_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot stat credentials file %s: %s", path, exc.strerror or type(exc).__name__)
        return {}
    sig = (str(path), st.st_mtime_ns, st.st_size, st.st_mode)
    with _cache_lock:
        if _cache["sig"] == sig:
            return _cache["data"]  # type: ignore[return-value]
    data: dict = {}
    if _file_is_private(path, st):
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            # The decode error text can quote file content (a key); report the position only.
            log.warning("ignoring credentials file %s: invalid TOML (line %s)", path,
                        getattr(exc, "lineno", "?"))
            data = {}
        except OSError as exc:
            log.warning("cannot read credentials file %s: %s", path, exc.strerror or type(exc).__name__)
            data = {}
    with _cache_lock:
        _cache["sig"] = sig
        _cache["data"] = data
    return data


def _file_key(provider: str) -> str | None:
    section = _load_file().get(provider)
    if isinstance(section, dict):
        value = section.get("api_key")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def get_api_key(provider: str) -> str | None:
    for var in ENV_VARS.get(provider, ()):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    if provider not in ENV_VARS:
        return None
    return _file_key(provider)


def has_key(provider: str) -> bool:
    return get_api_key(provider) is not None


_SECRETS_TTL_S = 1.0


@dataclass
class _SecretsCache:
    key: tuple[tuple[str, ...], str] | None = None    # (env values, credentials path) it was read for
    at: float = 0.0                                   # time.monotonic() of the read
    value: list[str] = field(default_factory=list)


_secrets_cache = _SecretsCache()


def known_secrets() -> list[str]:
    """Every key value currently configured (env and file, all providers), longest first.

    Redaction calls this for every string of every comms-log entry, so the answer is
    cached for a second per (environment, credentials path): re-reading the file each
    time cost most of a worker's per-ticket overhead.
    """
    env_key = tuple(os.environ.get(var, "") for names in ENV_VARS.values() for var in names)
    cache_key = (env_key, os.environ.get(FILE_ENV, ""))
    now = time.monotonic()
    with _cache_lock:
        if _secrets_cache.key == cache_key and now - _secrets_cache.at < _SECRETS_TTL_S:
            return list(_secrets_cache.value)
    found: set[str] = set()
    for provider, names in ENV_VARS.items():
        for var in names:
            value = os.environ.get(var, "").strip()
            if value:
                found.add(value)
        file_value = _file_key(provider)
        if file_value:
            found.add(file_value)
    secrets = sorted(found, key=len, reverse=True)
    with _cache_lock:
        _secrets_cache.key, _secrets_cache.at, _secrets_cache.value = cache_key, now, secrets
    return list(secrets)


def redact(text: str, extra_secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` with configured secrets and key-like tokens replaced by `[REDACTED]`."""
    if not text:
        return text
    if not isinstance(text, str):
        text = str(text)
    secrets = sorted({s for s in (*known_secrets(), *extra_secrets) if s and len(s) >= _MIN_SECRET_LEN},
                     key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from a record's final message.

    Attach it to a *handler* (handler filters see records propagated from child
    loggers such as `httpx2` or `anthropic`; logger filters do not).
    """

    _active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        # redact() may itself log (e.g. "ignoring credentials file ..."); that record comes
        # back through this filter on the same thread.  It names paths and modes, never a
        # key, so let it pass instead of recursing.
        if getattr(self._active, "busy", False):
            return True
        self._active.busy = True
        try:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                message = str(record.msg)
            cleaned = redact(message)
            if cleaned != message:
                record.msg = cleaned
                record.args = None
        finally:
            self._active.busy = False
        return True


def install_log_redaction() -> None:
    """Redact keys from everything the root logger's handlers write (SDK debug logs included)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
