"""mma_project.toml: round trips, clear errors, last-good fallback, discussion helpers."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from project import (
    LAST_GOOD_FILE,
    PROJECT_FILE,
    Budgets,
    DiscussionEntry,
    FileEntry,
    ModelPrice,
    ProjectConfig,
    ProjectFileError,
    default_tier_models,
    load_project,
    load_project_or_last_good,
    save_project,
)


def _rich_config(root: Path) -> ProjectConfig:
    cfg = ProjectConfig(root=root, name="Démo ✓", provider="anthropic")
    cfg.models = default_tier_models("anthropic")
    cfg.files = [FileEntry("src/**/*.py", "skeleton"), FileEntry("README.md"),
                 FileEntry("core/engine.py", "curated", extra={"pinned": True})]
    cfg.screenshots = ["shots/before.png", "shots/ünïcode after.png"]
    cfg.discussions = {
        "main": [
            DiscussionEntry("system", "You are terse.", "2026-03-01T10:00:00+00:00"),
            DiscussionEntry("user", "Line one\nline two with \"quotes\" and '''\n\ttab\\back",
                            "2026-03-01T10:01:00+00:00", extra={"tokens": 12}),
            DiscussionEntry("assistant", 'Code:\n```python\nx = """doc"""\n```\n',
                            "2026-03-01T10:02:00+00:00"),
        ],
        "refactor ideas / 日本語": [DiscussionEntry("user", "CRLF\r\nkept\r\n", "t1")],
        "empty": [],
    }
    cfg.active_discussion = "refactor ideas / 日本語"
    cfg.budgets = Budgets(max_context_tokens=123_456, max_workers=2, approval_timeout_s=12.5,
                          extra={"max_cost_usd": 3.5})
    cfg.prices["claude-opus-4-8"] = ModelPrice(4.0, 20.0, extra={"note": "edited"})
    cfg.extra = {"future_feature": {"enabled": True, "levels": [1, 2, 3]}, "theme": "dark"}
    return cfg


def test_missing_file_gives_defaults(tmp_path):
    cfg = load_project(tmp_path)
    assert cfg.root == tmp_path and cfg.name == tmp_path.name
    assert cfg.provider == "mock" and cfg.budgets.max_workers == 4
    assert cfg.models["Tier 1"] == "gemini-3.1-pro-preview"
    assert cfg.models["Tier 3"] == ["gemini-2.5-flash-lite", "gemini-2.5-flash",
                                    "gemini-3.1-pro-preview"]
    assert cfg.discussions == {"main": []} and cfg.active_discussion == "main"
    assert not (tmp_path / PROJECT_FILE).exists()   # loading never creates the file


def test_default_tier_models_per_provider():
    assert default_tier_models("gemini")["Tier 2"] == "gemini-3-flash-preview"
    assert default_tier_models("mock") == default_tier_models("gemini")
    anth = default_tier_models("anthropic")
    assert anth == {"Tier 1": "claude-opus-4-8", "Tier 2": "claude-sonnet-4-6",
                    "Tier 3": ["claude-haiku-5-5", "claude-sonnet-4-6", "claude-opus-4-8"],
                    "Tier 4": "claude-haiku-5-5"}
    anth["Tier 3"].append("x")   # a copy: callers may edit it
    assert len(default_tier_models("anthropic")["Tier 3"]) == 3
    with pytest.raises(ValueError, match="unknown provider 'openai'"):
        default_tier_models("openai")


def test_round_trip_keeps_everything(tmp_path):
    cfg = _rich_config(tmp_path)
    save_project(cfg)
    again = load_project(tmp_path)
    assert again == cfg
    assert again.discussions["refactor ideas / 日本語"][0].content == "CRLF\r\nkept\r\n"
    assert list(again.discussions) == ["main", "refactor ideas / 日本語", "empty"]
    # and the saved form is stable: saving the loaded config gives the same bytes
    first = (tmp_path / PROJECT_FILE).read_bytes()
    save_project(again)
    assert (tmp_path / PROJECT_FILE).read_bytes() == first


def test_hand_written_unknown_keys_survive_a_save(tmp_path):
    text = '''
name = "hand"
provider = "gemini"
plugin_settings = { colour = "teal" }
screenshots = []

[[files]]
path = "a.py"
mode = "outline"
weight = 3

[budgets]
max_workers = 8
mystery = "kept"

[models]
"Tier 3" = "gemini-2.5-flash"
"Tier 5" = "future-model"

[discussions]
[[discussions.main]]
role = "user"
content = """multi
line"""
ts = 2026-03-01T10:00:00Z
'''
    (tmp_path / PROJECT_FILE).write_text(text, encoding="utf-8")
    cfg = load_project(tmp_path)
    assert cfg.files == [FileEntry("a.py", "outline", {"weight": 3})]
    assert cfg.budgets.max_workers == 8 and cfg.budgets.max_context_tokens == 200_000
    assert cfg.models["Tier 3"] == ["gemini-2.5-flash"]          # a single name is a list of one
    assert cfg.models["Tier 1"] == "gemini-3.1-pro-preview"      # missing tiers: defaults
    assert cfg.discussions["main"][0].ts == "2026-03-01T10:00:00+00:00"
    cfg.add_entry("assistant", "reply")
    save_project(cfg)
    saved = tomllib.loads((tmp_path / PROJECT_FILE).read_text(encoding="utf-8"))
    assert saved["plugin_settings"] == {"colour": "teal"}
    assert saved["files"][0]["weight"] == 3
    assert saved["budgets"]["mystery"] == "kept"
    assert saved["models"]["Tier 5"] == "future-model"
    assert [e["content"] for e in saved["discussions"]["main"]] == ["multi\nline", "reply"]


def test_none_values_are_left_out(tmp_path):
    cfg = ProjectConfig(root=tmp_path)
    cfg.extra = {"maybe": None, "nested": {"gone": None, "kept": 1}, "items": [1, None, 2]}
    cfg.files.append(FileEntry("x.py", extra={"note": None}))
    save_project(cfg)
    again = load_project(tmp_path)
    assert again.extra == {"nested": {"kept": 1}, "items": [1, 2]}
    assert again.files[0].extra == {}


def _write(root: Path, text: str) -> bytes:
    data = text.encode("utf-8")
    (root / PROJECT_FILE).write_bytes(data)
    return data


def test_syntax_error_names_line_and_column_and_loses_nothing(tmp_path):
    good = _rich_config(tmp_path)
    save_project(good)
    broken = (tmp_path / PROJECT_FILE).read_text(encoding="utf-8").replace(
        'provider = "anthropic"', 'provider = "anthropic', 1)
    line_no = broken.splitlines().index('provider = "anthropic') + 1
    broken_bytes = _write(tmp_path, broken)

    with pytest.raises(ProjectFileError) as info:
        load_project(tmp_path)
    err = info.value
    assert err.line == line_no and err.column is not None
    assert f"line {line_no}, column" in str(err) and PROJECT_FILE in str(err)
    assert "text editor" in str(err)     # says what to do

    cfg, err2 = load_project_or_last_good(tmp_path)
    assert err2 is not None and err2.line == line_no
    assert cfg == good                       # the last good settings
    assert (tmp_path / PROJECT_FILE).read_bytes() == broken_bytes

    # saving would destroy the user's half-done edit: refused, file untouched
    cfg.add_entry("user", "typed while the file was broken")
    with pytest.raises(ProjectFileError, match="not saving over a broken project file"):
        save_project(cfg)
    assert (tmp_path / PROJECT_FILE).read_bytes() == broken_bytes

    # an explicit overwrite keeps a copy of the broken file first
    save_project(cfg, overwrite_broken=True)
    backups = list(tmp_path.glob(PROJECT_FILE + ".broken-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == broken_bytes
    assert load_project(tmp_path) == cfg


def test_broken_file_without_last_good_gives_defaults_and_error(tmp_path):
    _write(tmp_path, "name = \n")
    cfg, err = load_project_or_last_good(tmp_path)
    assert err is not None and err.line == 1
    assert cfg == ProjectConfig(root=tmp_path)
    assert (tmp_path / PROJECT_FILE).read_text() == "name = \n"


@pytest.mark.parametrize("snippet, message", [
    ('[[files]]\npath = "a"\n[[files]]\npath = "b"\n[[files]]\npath = "c"\nmode = "bogus"\n',
     "files[2].mode: expected one of full/skeleton/curated/outline, got 'bogus'"),
    ('provider = "openai"\n', "provider: expected one of mock/gemini/anthropic/gemini-cli, got 'openai'"),
    ('[budgets]\nmax_workers = "four"\n', "budgets.max_workers: expected a whole number, got 'four'"),
    ('[budgets]\nmax_workers = 0\n', "budgets.max_workers: expected a positive number, got 0"),
    ('[budgets]\napproval_timeout_s = true\n', "budgets.approval_timeout_s: expected a number"),
    ('[models]\n"Tier 3" = 5\n', 'models."Tier 3": expected a list of strings, got 5'),
    ('[models]\n"Tier 1" = ["a"]\n', 'models."Tier 1": expected a model name'),
    ('screenshots = ["a.png", 3]\n', "screenshots[1]: expected a string, got 3"),
    ('[[discussions.main]]\nrole = "robot"\ncontent = "hi"\n',
     "discussions.main[0].role: expected one of user/assistant/system, got 'robot'"),
    ('[prices.m]\ninput = -1\n', "prices.m.input: expected a price >= 0, got -1"),
    ('files = [{mode = "full"}]\n', "files[0].path: missing"),
    ('budgets = 3\n', "budgets: expected a table, got 3"),
])
def test_wrong_types_name_the_key_path(tmp_path, snippet, message):
    data = _write(tmp_path, snippet)
    with pytest.raises(ProjectFileError) as info:
        load_project(tmp_path)
    assert message in str(info.value)
    assert info.value.key_path == message.split(":")[0]
    assert "reload" in str(info.value)
    assert (tmp_path / PROJECT_FILE).read_bytes() == data


def test_not_utf8_is_a_clear_error(tmp_path):
    (tmp_path / PROJECT_FILE).write_bytes(b'name = "\xff"\n')
    with pytest.raises(ProjectFileError, match="not UTF-8"):
        load_project(tmp_path)


def test_last_good_copy_is_kept_on_load_and_save(tmp_path):
    _write(tmp_path, '# my comment\nname = "p"\n')
    load_project(tmp_path)
    assert (tmp_path / LAST_GOOD_FILE).read_text() == '# my comment\nname = "p"\n'
    cfg = load_project(tmp_path)
    cfg.screenshots.append("s.png")
    save_project(cfg)
    assert (tmp_path / LAST_GOOD_FILE).read_bytes() == (tmp_path / PROJECT_FILE).read_bytes()


def test_save_skips_unchanged_file_and_leaves_no_temp_files(tmp_path):
    cfg = _rich_config(tmp_path)
    save_project(cfg)
    before = (tmp_path / PROJECT_FILE).stat().st_mtime_ns
    for _ in range(3):
        save_project(cfg)
    assert (tmp_path / PROJECT_FILE).stat().st_mtime_ns == before
    cfg.add_entry("user", "more")
    save_project(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST_GOOD_FILE, PROJECT_FILE]


def test_discussion_entry_helpers(tmp_path):
    cfg = ProjectConfig(root=tmp_path)
    a = cfg.add_entry("user", "first")
    cfg.add_entry("assistant", "second")
    cfg.add_entry("system", "third", ts="T3")
    assert a.ts and [e.content for e in cfg.discussion()] == ["first", "second", "third"]
    cfg.edit_entry(1, content="second (edited)", role="user")
    assert (cfg.discussion()[1].role, cfg.discussion()[1].content) == ("user", "second (edited)")
    cfg.move_entry(2, 0)
    assert [e.content for e in cfg.discussion()] == ["third", "first", "second (edited)"]
    cfg.move_entry(0, 99)      # clamps to the end
    assert [e.content for e in cfg.discussion()] == ["first", "second (edited)", "third"]
    assert cfg.delete_entry(-1).content == "third"
    assert len(cfg.discussion()) == 2
    with pytest.raises(IndexError, match="no entry #5"):
        cfg.edit_entry(5, content="x")
    with pytest.raises(ValueError, match="role must be one of"):
        cfg.add_entry("robot", "x")
    with pytest.raises(KeyError, match="nope"):
        cfg.add_entry("user", "x", discussion="nope")


def test_discussion_create_rename_delete(tmp_path):
    cfg = ProjectConfig(root=tmp_path)
    cfg.add_entry("user", "in main")
    cfg.create_discussion("ideas")
    assert cfg.active_discussion == "ideas"
    cfg.add_entry("user", "an idea")
    cfg.create_discussion("later", activate=False)
    assert cfg.active_discussion == "ideas"
    with pytest.raises(ValueError, match="already exists"):
        cfg.create_discussion("main")
    with pytest.raises(ValueError, match="non-empty name"):
        cfg.create_discussion("  ")
    cfg.rename_discussion("ideas", "brainstorm")
    assert list(cfg.discussions) == ["main", "brainstorm", "later"]   # order kept
    assert cfg.active_discussion == "brainstorm"
    assert cfg.discussion()[0].content == "an idea"
    with pytest.raises(ValueError, match="already exists"):
        cfg.rename_discussion("later", "main")
    cfg.delete_discussion("brainstorm")
    assert cfg.active_discussion == "main" and list(cfg.discussions) == ["main", "later"]
    cfg.delete_discussion("later")
    with pytest.raises(ValueError, match="only discussion"):
        cfg.delete_discussion("main")
    save_project(cfg)
    assert load_project(tmp_path).discussions == cfg.discussions


def test_active_discussion_typed_by_hand_is_tolerated(tmp_path):
    _write(tmp_path, 'active_discussion = "new one"\n')
    cfg = load_project(tmp_path)
    assert cfg.active_discussion == "new one" and cfg.discussions == {"main": [], "new one": []}


def test_switch_provider_moves_default_models_only(tmp_path):
    cfg = ProjectConfig(root=tmp_path)
    cfg.switch_provider("anthropic")
    assert cfg.models == default_tier_models("anthropic")
    cfg.models["Tier 2"] = "my-custom-model"
    cfg.switch_provider("gemini")
    assert cfg.provider == "gemini" and cfg.models["Tier 2"] == "my-custom-model"


def test_prices_and_cost(tmp_path):
    cfg = ProjectConfig(root=tmp_path)
    price = cfg.price_for("gemini-2.5-flash")
    assert price is not None
    assert price.cost(1_000_000, 0) == pytest.approx(price.input)
    assert price.cost(2_000_000, 500_000) == pytest.approx(2 * price.input + price.output / 2)
    assert cfg.price_for("unknown-model") is None
    cfg.prices["local-llm"] = ModelPrice(0, 0)
    save_project(cfg)
    assert load_project(tmp_path).prices["local-llm"] == ModelPrice(0.0, 0.0)



def test_load_sweeps_temp_files_of_an_interrupted_save(tmp_path):
    import project as project_mod
    cfg = project_mod.load_project(tmp_path)
    project_mod.save_project(cfg)
    (tmp_path / ".mma_project.toml.k1l2m3.tmp").write_text("half a file")
    (tmp_path / "..mma_project.last_good.toml.n4o5p6.tmp").write_text("half")
    (tmp_path / ".notes.txt.tmp").write_text("the user's")
    project_mod.load_project(tmp_path)
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == [".notes.txt.tmp"]
