"""The project file: `<project>/mma_project.toml`.

One human-readable TOML file per project holds what the user curates
(files and globs with a view mode, screenshots, named discussions), the
provider, the per-tier models, budgets and a price table.  Keys this module
does not know are kept in `extra` dicts and written back unchanged.

Safety rules:
- every write is atomic (`atomic_files.atomic_write_text`);
- a file that does not parse or has a wrong value raises `ProjectFileError`
  naming the line/column or the key path and saying what to do;
- each successful load or save keeps a copy in `.mma_project.last_good.toml`,
  so `load_project_or_last_good()` can carry on with the last good settings;
- `save_project()` refuses to write over a broken file (the user's edits
  would be lost) unless told to, and then it keeps a `.broken-<time>` copy.
"""
from __future__ import annotations

import copy
import logging
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import tomli_w

from atomic_files import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from models import TIERS, utc_now
from providers import catalog
from providers.catalog import TierConfigError, TierModels
from tools.mcp_config import McpConfigError, McpServerConfig, parse_servers
from track_qa import RUN_AFTER, QaConfig

log = logging.getLogger(__name__)

PROJECT_FILE = "mma_project.toml"
LAST_GOOD_FILE = ".mma_project.last_good.toml"
FILE_MODES = ("full", "skeleton", "curated", "outline")
ROLES = ("user", "assistant", "system")
PROVIDERS = catalog.provider_names()
DEFAULT_DISCUSSION = "main"

_FIX_HINT = ("Fix it in a text editor and reload the project; until then MMA Desk keeps the "
             "last good settings and does not overwrite the file.")


def default_tier_models(provider: str = "gemini") -> dict[str, Any]:
    """A provider's per-tier models in the `[models]` table shape (a fresh dict).

    `providers.catalog.default_tier_models` gives the same as a `TierModels` value.
    """
    return catalog.default_tier_models(provider).to_config()


class ProjectFileError(ValueError):
    """The project file cannot be used; the message says where and what to do."""

    def __init__(self, message: str, path: Path | None = None, line: int | None = None,
                 column: int | None = None, key_path: str | None = None):
        super().__init__(message)
        self.path, self.line, self.column, self.key_path = path, line, column, key_path


class _BadValue(ValueError):
    def __init__(self, key_path: str, detail: str):
        super().__init__(f"{key_path}: {detail}")
        self.key_path = key_path


# ---------------------------------------------------------------- data

@dataclass
class FileEntry:
    path: str                      # a path or glob, relative to the project root
    mode: str = "full"             # full | skeleton | curated | outline
    extra: dict = field(default_factory=dict)


@dataclass
class DiscussionEntry:
    role: str                      # user | assistant | system
    content: str
    ts: str = field(default_factory=utc_now)
    extra: dict = field(default_factory=dict)


@dataclass
class Budgets:
    max_context_tokens: int = 200_000
    max_workers: int = 4
    approval_timeout_s: float = 300.0
    # Tokens of the repo map Tier 2 gets (files + top-level symbols, see repo_map.py); 0: none.
    repo_map_tokens: int = 1024
    extra: dict = field(default_factory=dict)


@dataclass
class ModelPrice:
    input: float                   # USD per 1M input tokens
    output: float                  # USD per 1M output tokens
    # USD per 1M input tokens read from the provider's prompt cache; None: billed as input
    cached_input: float | None = None
    # USD per 1M input tokens written to the prompt cache; None: billed as input
    cache_write: float | None = None
    # USD per 1M tokens per hour an explicit (Gemini) cache is stored; None: free
    cache_storage: float | None = None
    extra: dict = field(default_factory=dict)

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
             cache_write_tokens: int = 0, storage_token_s: int = 0) -> float:
        """USD for a call; `input_tokens` excludes the `cached_input_tokens` and the
        `cache_write_tokens`; `storage_token_s` is tokens x seconds of explicit cache storage."""
        cached = self.input if self.cached_input is None else self.cached_input
        write = self.input if self.cache_write is None else self.cache_write
        storage = (self.cache_storage or 0.0) * storage_token_s / 3600
        return (input_tokens * self.input + output_tokens * self.output
                + cached_input_tokens * cached + cache_write_tokens * write + storage) / 1_000_000


_CACHE_PRICE_KEYS = ("cached_input", "cache_write", "cache_storage")


def default_prices() -> dict[str, ModelPrice]:
    """The catalog's price of every model it lists (`providers.catalog`)."""
    listed = (catalog.model_info(name) for name in catalog.model_names())
    return {m.name: ModelPrice(m.price.input, m.price.output, m.price.cached_input, m.price.cache_write,
                               m.price.cache_storage or None) for m in listed}


@dataclass
class ProjectConfig:
    root: Path
    name: str = ""
    provider: str = "mock"
    files: list[FileEntry] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)
    discussions: dict[str, list[DiscussionEntry]] = field(
        default_factory=lambda: {DEFAULT_DISCUSSION: []})
    active_discussion: str = DEFAULT_DISCUSSION
    models: dict[str, Any] = field(default_factory=default_tier_models)
    budgets: Budgets = field(default_factory=Budgets)
    prices: dict[str, ModelPrice] = field(default_factory=default_prices)
    qa: QaConfig = field(default_factory=QaConfig)     # [qa]: the check run after merges (track_qa.py)
    mcp_servers: list[McpServerConfig] = field(default_factory=list)   # [[mcp_servers]]
    epic: str = ""                 # the MMA Dashboard's epic box (kept across restarts)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.name:
            self.name = self.root.resolve().name or "project"

    @property
    def path(self) -> Path:
        return self.root / PROJECT_FILE

    def price_for(self, model: str) -> ModelPrice | None:
        return self.prices.get(model)

    def tier_models(self) -> TierModels:
        """`models` as a TierModels value (ValueError if an edit left a bad value in it)."""
        return TierModels.from_config(self.models, self.provider)

    def switch_provider(self, provider: str) -> None:
        """Change provider; models still at the old provider's defaults follow along."""
        old_defaults = default_tier_models(self.provider) if self.provider in PROVIDERS else None
        new_defaults = default_tier_models(provider)
        if self.models == old_defaults:
            self.models = new_defaults
        self.provider = provider

    # ------------------------------------------------ discussions
    def discussion(self, name: str | None = None) -> list[DiscussionEntry]:
        name = self.active_discussion if name is None else name
        if name not in self.discussions:
            raise KeyError(f"no discussion named {name!r}")
        return self.discussions[name]

    def add_entry(self, role: str, content: str, discussion: str | None = None,
                  ts: str | None = None) -> DiscussionEntry:
        entry = DiscussionEntry(_check_role(role), content, ts or utc_now())
        self.discussion(discussion).append(entry)
        return entry

    def edit_entry(self, index: int, *, content: str | None = None, role: str | None = None,
                   discussion: str | None = None) -> DiscussionEntry:
        entries = self.discussion(discussion)
        entry = entries[_check_index(entries, index)]
        if role is not None:
            entry.role = _check_role(role)
        if content is not None:
            entry.content = content
        return entry

    def delete_entry(self, index: int, discussion: str | None = None) -> DiscussionEntry:
        entries = self.discussion(discussion)
        return entries.pop(_check_index(entries, index))

    def move_entry(self, index: int, new_index: int, discussion: str | None = None) -> None:
        entries = self.discussion(discussion)
        entry = entries.pop(_check_index(entries, index))
        entries.insert(max(0, min(new_index, len(entries))), entry)

    def create_discussion(self, name: str, activate: bool = True) -> None:
        name = _check_discussion_name(name)
        if name in self.discussions:
            raise ValueError(f"a discussion named {name!r} already exists")
        self.discussions[name] = []
        if activate:
            self.active_discussion = name

    def rename_discussion(self, old: str, new: str) -> None:
        self.discussion(old)
        new = _check_discussion_name(new)
        if new == old:
            return
        if new in self.discussions:
            raise ValueError(f"a discussion named {new!r} already exists")
        self.discussions = {(new if k == old else k): v for k, v in self.discussions.items()}
        if self.active_discussion == old:
            self.active_discussion = new

    def delete_discussion(self, name: str) -> list[DiscussionEntry]:
        entries = self.discussion(name)
        if len(self.discussions) == 1:
            raise ValueError("cannot delete the only discussion; delete its entries instead")
        del self.discussions[name]
        if self.active_discussion == name:
            self.active_discussion = next(iter(self.discussions))
        return entries


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {'/'.join(ROLES)}, got {role!r}")
    return role


def _check_index(entries: list, index: int) -> int:
    if not -len(entries) <= index < len(entries):
        raise IndexError(f"no entry #{index} (the discussion has {len(entries)} entries)")
    return index % len(entries)


def _check_discussion_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a discussion needs a non-empty name")
    return name.strip()


# ---------------------------------------------------------------- dict <-> config

def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(table: dict, key: str, kinds: type | tuple, default: Any, where: str, what: str) -> Any:
    if key not in table:
        return copy.deepcopy(default)
    value = table[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise _BadValue(where + key, f"expected {what}, got {_show(value)}")
    if not isinstance(value, kinds):
        raise _BadValue(where + key, f"expected {what}, got {_show(value)}")
    return value


def _choice(table: dict, key: str, choices: tuple, default: str, where: str) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise _BadValue(where + key, f"expected one of {'/'.join(choices)}, got {_show(value)}")
    return value


def _table(value: Any, key_path: str) -> dict:
    if not isinstance(value, dict):
        raise _BadValue(key_path, f"expected a table, got {_show(value)}")
    return value


def _rest(table: dict, known: tuple) -> dict:
    return {k: v for k, v in table.items() if k not in known}


def _str_list(value: Any, key_path: str) -> list[str]:
    if not isinstance(value, list):
        raise _BadValue(key_path, f"expected a list of strings, got {_show(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _BadValue(f"{key_path}[{i}]", f"expected a string, got {_show(item)}")
    return list(value)


def _files(raw: Any) -> list[FileEntry]:
    if not isinstance(raw, list):
        raise _BadValue("files", f"expected a list of tables, got {_show(raw)}")
    out = []
    for i, item in enumerate(raw):
        where = f"files[{i}]"
        if isinstance(item, str):           # shorthand: files = ["a.py", "src/*.py"]
            item = {"path": item}
        t = _table(item, where)
        where += "."
        path = _get(t, "path", str, "", where, "a path or glob")
        if not path:
            raise _BadValue(where + "path", "missing: every [[files]] entry needs a path or glob")
        out.append(FileEntry(path, _choice(t, "mode", FILE_MODES, "full", where),
                             _rest(t, ("path", "mode"))))
    return out


def _discussions(raw: Any) -> dict[str, list[DiscussionEntry]]:
    out: dict[str, list[DiscussionEntry]] = {}
    for name, entries in _table(raw, "discussions").items():
        where = f"discussions.{_key(name)}"
        if not isinstance(entries, list):
            raise _BadValue(where, f"expected a list of entries, got {_show(entries)}")
        out[name] = []
        for i, item in enumerate(entries):
            t = _table(item, f"{where}[{i}]")
            w = f"{where}[{i}]."
            ts = t.get("ts", "")
            if isinstance(ts, (datetime, date, time)):   # unquoted TOML date/time
                ts = ts.isoformat()
            elif not isinstance(ts, str):
                raise _BadValue(w + "ts", f"expected a timestamp string, got {_show(ts)}")
            out[name].append(DiscussionEntry(
                _choice(t, "role", ROLES, "user", w),
                _get(t, "content", str, "", w, "a string"), ts,
                _rest(t, ("role", "content", "ts"))))
    return out


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


def _models(raw: Any, provider: str) -> dict[str, Any]:
    """The tiers checked and completed from the provider's defaults; other keys kept as they are."""
    table = _table(raw, "models")
    try:
        tiers = TierModels.from_config(table, provider)
    except TierConfigError as exc:
        index = "" if exc.index is None else f"[{exc.index}]"
        raise _BadValue(f"models.{_key(exc.tier)}{index}", exc.detail) from exc
    return {**tiers.to_config(), **{k: v for k, v in table.items() if k not in TIERS}}


def _budgets(raw: Any) -> Budgets:
    t, w = _table(raw, "budgets"), "budgets."
    b = Budgets(
        max_context_tokens=_get(t, "max_context_tokens", int, Budgets.max_context_tokens, w,
                                "a whole number of tokens"),
        max_workers=_get(t, "max_workers", int, Budgets.max_workers, w, "a whole number"),
        approval_timeout_s=float(_get(t, "approval_timeout_s", (int, float),
                                      Budgets.approval_timeout_s, w, "a number of seconds")),
        repo_map_tokens=_get(t, "repo_map_tokens", int, Budgets.repo_map_tokens, w,
                             "a whole number of tokens (0 turns the repo map off)"),
        extra=_rest(t, ("max_context_tokens", "max_workers", "approval_timeout_s", "repo_map_tokens")))
    for key in ("max_context_tokens", "max_workers", "approval_timeout_s"):
        if getattr(b, key) <= 0:
            raise _BadValue(w + key, f"expected a positive number, got {_show(getattr(b, key))}")
    if b.repo_map_tokens < 0:
        raise _BadValue(w + "repo_map_tokens", f"expected 0 or more, got {_show(b.repo_map_tokens)}")
    return b


def _qa(raw: Any) -> QaConfig:
    t, w = _table(raw, "qa"), "qa."
    timeout = float(_get(t, "timeout_s", (int, float), QaConfig.timeout_s, w, "a number of seconds"))
    if timeout <= 0:
        raise _BadValue(w + "timeout_s", f"expected a positive number, got {_show(timeout)}")
    return QaConfig(command=_get(t, "command", str, "", w, "a shell command, e.g. \"pytest -q\""),
                    timeout_s=timeout, run_after=_choice(t, "run_after", RUN_AFTER, "merge", w),
                    extra=_rest(t, ("command", "timeout_s", "run_after")))


def _prices(raw: Any) -> dict[str, ModelPrice]:
    out = {}
    for model, item in _table(raw, "prices").items():
        w = f"prices.{_key(model)}"
        t = _table(item, w)
        cache = {key: _price(t, key, w) for key in _CACHE_PRICE_KEYS if key in t}
        out[model] = ModelPrice(_price(t, "input", w), _price(t, "output", w), **cache,
                                extra=_rest(t, ("input", "output", *_CACHE_PRICE_KEYS)))
    return out


def _price(table: dict, key: str, where: str) -> float:
    v = _get(table, key, (int, float), 0.0, where + ".", "a price in USD per 1M tokens")
    if v < 0:
        raise _BadValue(f"{where}.{key}", f"expected a price >= 0, got {_show(v)}")
    return float(v)


_TOP_KEYS = ("name", "provider", "files", "screenshots", "discussions", "discussion_order",
             "active_discussion", "models", "budgets", "prices", "qa", "mcp_servers", "epic")


def _mcp_servers(raw: Any) -> list[McpServerConfig]:
    try:
        return parse_servers(raw)
    except McpConfigError as exc:
        raise _BadValue(exc.key_path, str(exc).split(": ", 1)[-1]) from exc


def _ordered(discussions: dict, order: list[str]) -> dict:
    """TOML writers group tables after plain values, so the tab order is kept in a list."""
    first = [n for n in dict.fromkeys(order) if n in discussions]
    return {n: discussions[n] for n in first + [n for n in discussions if n not in first]}


def config_from_dict(data: dict, root: str | Path) -> ProjectConfig:
    """Validate parsed TOML; raises `_BadValue` (a ValueError) naming the key path."""
    provider = _choice(data, "provider", PROVIDERS, "mock", "")
    cfg = ProjectConfig(
        root=Path(root),
        name=_get(data, "name", str, "", "", "a string"),
        provider=provider,
        files=_files(data.get("files", [])),
        screenshots=_str_list(data.get("screenshots", []), "screenshots"),
        discussions=_ordered(_discussions(data.get("discussions", {})),
                             _str_list(data.get("discussion_order", []), "discussion_order"))
        or {DEFAULT_DISCUSSION: []},
        active_discussion=_get(data, "active_discussion", str, "", "", "a discussion name"),
        models=_models(data.get("models", {}), provider),
        budgets=_budgets(data.get("budgets", {})),
        prices=_prices(data["prices"]) if "prices" in data else default_prices(),
        qa=_qa(data.get("qa", {})),
        mcp_servers=_mcp_servers(data.get("mcp_servers", [])),
        epic=_get(data, "epic", str, "", "", "a string"),
        extra=_rest(data, _TOP_KEYS))
    if cfg.active_discussion not in cfg.discussions:
        if cfg.active_discussion:   # tolerate a hand-typed name: start it empty
            cfg.discussions[cfg.active_discussion] = []
        else:
            cfg.active_discussion = next(iter(cfg.discussions))
    return cfg


def config_to_dict(cfg: ProjectConfig) -> dict:
    data = {
        "name": cfg.name, "provider": cfg.provider, "active_discussion": cfg.active_discussion,
        "epic": cfg.epic or None,      # left out while empty
        "discussion_order": list(cfg.discussions),
        "screenshots": list(cfg.screenshots),
        "files": [{**f.extra, "path": f.path, "mode": f.mode} for f in cfg.files],
        "models": dict(cfg.models),
        "budgets": {**cfg.budgets.extra, "max_context_tokens": cfg.budgets.max_context_tokens,
                    "max_workers": cfg.budgets.max_workers,
                    "approval_timeout_s": cfg.budgets.approval_timeout_s,
                    "repo_map_tokens": cfg.budgets.repo_map_tokens},
        "prices": {m: {**p.extra, "input": p.input, "output": p.output,      # None is left out
                       **{key: getattr(p, key) for key in _CACHE_PRICE_KEYS}}
                   for m, p in cfg.prices.items()},
        "discussions": {name: [{**e.extra, "role": e.role, "content": e.content, "ts": e.ts}
                               for e in entries]
                        for name, entries in cfg.discussions.items()},
    }
    if cfg.qa != QaConfig() or cfg.qa.extra:      # written only once the user has set it
        data["qa"] = {**cfg.qa.extra, "command": cfg.qa.command, "timeout_s": cfg.qa.timeout_s,
                      "run_after": cfg.qa.run_after}
    if cfg.mcp_servers:
        data["mcp_servers"] = [server.to_dict() for server in cfg.mcp_servers]
    data.update((k, v) for k, v in cfg.extra.items() if k not in data)
    return _toml_safe(data)


def _toml_safe(value: Any) -> Any:
    """TOML has no null: drop None values (and None list items); Paths become strings."""
    if isinstance(value, dict):
        return {str(k): _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_safe(v) for v in value if v is not None]
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_project(cfg: ProjectConfig) -> str:
    data = config_to_dict(cfg)
    text = tomli_w.dumps(data, multiline_strings=True)
    if tomllib.loads(text) != data:   # multi-line strings turn CRLF into LF: keep exact bytes
        text = tomli_w.dumps(data)
    return text


# ---------------------------------------------------------------- files

_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _parse_text(text: str, path: Path, root: Path) -> ProjectConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _POS_RE.search(msg)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        where = f"line {line}, column {col}: " if m else ""
        raise ProjectFileError(f"{path}: {where}{_POS_RE.sub('', msg)} (invalid TOML). {_FIX_HINT}",
                               path, line, col) from exc
    try:
        return config_from_dict(data, root)
    except _BadValue as exc:
        raise ProjectFileError(f"{path}: {exc}. {_FIX_HINT}", path,
                               key_path=exc.key_path) from exc


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProjectFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}). "
                               f"{_FIX_HINT}", path) from exc


def _remember_good(root: Path, text: str) -> None:
    copy_path = root / LAST_GOOD_FILE
    try:
        if copy_path.is_file() and copy_path.read_bytes() == text.encode("utf-8"):
            return
        atomic_write_text(copy_path, text)
    except OSError as exc:   # a read-only project still loads
        log.warning("could not keep the last good project copy %s: %s", copy_path, exc)


def load_project(root: str | Path) -> ProjectConfig:
    """Read `<root>/mma_project.toml`; a missing file gives the defaults."""
    root = Path(root)
    path = root / PROJECT_FILE
    if root.is_dir():      # a save killed mid-rename leaves .mma_project.toml.<rand>.tmp behind
        remove_stale_temp_files(root, names=(PROJECT_FILE, LAST_GOOD_FILE))
    if not path.exists():
        log.info("no %s yet; using defaults", path)
        return ProjectConfig(root=root)
    text = _read(path)
    cfg = _parse_text(text, path, root)
    _remember_good(root, text)
    return cfg


def load_project_or_last_good(root: str | Path) -> tuple[ProjectConfig, ProjectFileError | None]:
    """Like `load_project`, but a broken file yields the last good config and the error.

    The broken file is never written to, so the user's edits stay where they are.
    """
    root = Path(root)
    try:
        return load_project(root), None
    except ProjectFileError as err:
        log.warning("%s", err)
        good = root / LAST_GOOD_FILE
        if good.is_file():
            try:
                return _parse_text(_read(good), good, root), err
            except ProjectFileError as good_err:
                log.error("last good copy is unusable too: %s", good_err)
        return ProjectConfig(root=root), err


def save_project(cfg: ProjectConfig, *, overwrite_broken: bool = False) -> Path:
    """Write the project file atomically (skipped when unchanged).

    If the file on disk is broken (e.g. half-way through a hand edit) this raises
    `ProjectFileError` rather than lose those edits; `overwrite_broken=True` first
    keeps a copy next to it (`mma_project.toml.broken-<UTC time>`).
    """
    path = cfg.path
    text = dumps_project(cfg)
    if path.exists():
        current = path.read_bytes()
        if current == text.encode("utf-8"):
            _remember_good(cfg.root, text)
            return path
        try:
            _parse_text(current.decode("utf-8", errors="replace"), path, cfg.root)
        except ProjectFileError as err:
            if not overwrite_broken:
                raise ProjectFileError(f"not saving over a broken project file: {err}",
                                       path, err.line, err.column, err.key_path) from err
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            backup = path.with_name(f"{PROJECT_FILE}.broken-{stamp}")
            atomic_write_bytes(backup, current)
            log.warning("kept the broken project file as %s before overwriting it", backup)
    atomic_write_text(path, text)
    _remember_good(cfg.root, text)
    return path
