"""build_context: glob expansion, modes, token accounting, errors, screenshots, trim plan."""
from __future__ import annotations

from pathlib import Path

import pytest

from file_cache import (
    IMAGE_TOKENS,
    MODEL_CONTEXT_WINDOWS,
    ContextItem,
    FileCache,
    build_context,
    context_window_for,
    estimate_tokens,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _body(name: str, lines: int) -> str:
    return f"def {name}(x):\n" + "".join(f"    x = x + {i}  # step {i}\n" for i in range(lines)) + "    return x\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "src" / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "__init__.py").write_text('"""Package."""\n')
    (tmp_path / "src" / "pkg" / "core.py").write_text("import os\n\n" + _body("core", 40))
    (tmp_path / "src" / "pkg" / "sub" / "util.py").write_text(_body("util", 5))
    (tmp_path / "src" / "notes.md").write_text("# Notes\nnot python\n")
    (tmp_path / "src" / ".hidden").mkdir()
    (tmp_path / "src" / ".hidden" / "secret.py").write_text("TOKEN = 'x'\n")
    (tmp_path / "src" / "__pycache__").mkdir()
    (tmp_path / "src" / "__pycache__" / "junk.py").write_text("x = 1\n")
    (tmp_path / "shot.png").write_bytes(PNG)
    return tmp_path


def test_estimate_tokens_is_ceil_of_quarter_length():
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]


def test_context_windows():
    assert context_window_for("gemini-2.5-flash-lite") == 1_048_576
    assert context_window_for("gemini-3.1-pro-preview") == MODEL_CONTEXT_WINDOWS["gemini-3.1-pro-preview"]
    assert context_window_for("claude-some-future-model") == 200_000
    assert context_window_for("gemini-9-ultra") == 1_048_576
    assert context_window_for("mock") == 1_000_000
    assert context_window_for("unknown-model") == 128_000
    assert context_window_for(None) == 128_000


def test_globs_expand_inside_root_and_modes_apply(project: Path):
    bundle = build_context([ContextItem("src/**/*.py", "skeleton")], root=project)
    labels = [e.label for e in bundle.items]
    assert labels == ["src/pkg/__init__.py", "src/pkg/core.py", "src/pkg/sub/util.py"]
    assert bundle.errors == []
    assert "### `src/pkg/core.py` (skeleton)\n\n```python\nimport os\n\ndef core(x):\n    ...\n```" \
        in bundle.markdown
    assert "x = x + 3" not in bundle.markdown
    assert "secret" not in bundle.markdown and "junk" not in bundle.markdown
    assert all(e.mode == "skeleton" and e.source == "files" for e in bundle.items)


def test_explicit_path_beats_glob_and_each_file_appears_once(project: Path):
    bundle = build_context([ContextItem("src/**/*.py", "outline"), ContextItem("src/pkg/core.py", "full"),
                            "src/notes.md", ("src/pkg/sub/util.py", "curated")], root=project)
    modes = {e.label: e.mode for e in bundle.items}
    assert modes == {"src/pkg/__init__.py": "outline", "src/pkg/core.py": "full",
                     "src/pkg/sub/util.py": "curated", "src/notes.md": "full"}
    assert bundle.markdown.count("### `src/pkg/core.py`") == 1
    assert "x = x + 39  # step 39" in bundle.markdown  # core.py in full
    assert "### `src/pkg/sub/util.py` (curated)\n\n```python\ndef util(x):\n    ...\n```" in bundle.markdown
    outline = build_context([ContextItem("src/pkg/sub/util.py", "outline")], root=project)
    assert "(outline)\n\n```\ndef util  [1-7]\n```" in outline.markdown  # plain text fence
    assert "```markdown\n# Notes\nnot python\n```" in bundle.markdown


def test_token_totals_add_up(project: Path):
    discussion = [{"role": "user", "content": "Why is core slow?", "ts": "2025-01-01T10:00:00"},
                  {"role": "assistant", "content": "Because of the loop.", "ts": "2025-01-01T10:00:05"}]
    bundle = build_context(["src/pkg/core.py", ContextItem("src/pkg/sub/util.py", "skeleton")],
                           screenshots=["shot.png"], discussion=discussion,
                           system_prompt="You are careful." * 10, root=project, model="claude-x")
    assert bundle.total_tokens == sum(e.tokens for e in bundle.items) == sum(bundle.by_source.values())
    assert bundle.by_source["screenshots"] == IMAGE_TOKENS
    assert bundle.by_source["system"] == estimate_tokens("You are careful." * 10)
    history = [e for e in bundle.items if e.source == "history"]
    assert [e.label for e in history] == ["discussion[0] user", "discussion[1] assistant"]
    assert bundle.share["files"] == pytest.approx(bundle.by_source["files"] / bundle.total_tokens)
    assert sum(bundle.share.values()) == pytest.approx(1.0)
    files = [e for e in bundle.items if e.source == "files"]
    for est in files:  # each estimate covers its own markdown section
        start = bundle.markdown.index(f"### `{est.label}`")
        end = bundle.markdown.find("### `", start + 1)
        section = bundle.markdown[start:end if end > 0 else bundle.markdown.index("## Screenshots")]
        assert est.tokens == estimate_tokens(section)
    assert bundle.context_window == 200_000 and not bundle.over_budget and bundle.trim_plan == []
    assert "**user** (2025-01-01T10:00:00):\nWhy is core slow?" in bundle.markdown
    assert bundle.discussion == discussion


def test_missing_files_are_reported_and_the_rest_builds(project: Path):
    bundle = build_context(["src/pkg/core.py", "src/pkg/gone.py", "../outside.py", "nothing/*.py",
                            ContextItem("src/pkg/core.py", "weird")], root=project)
    problems = {(e.path, e.message) for e in bundle.errors}
    assert ("src/pkg/gone.py", "file not found") in problems
    assert ("../outside.py", "outside the project root") in problems
    assert ("nothing/*.py", "glob matched no files") in problems
    assert any(e.path == "src/pkg/core.py" and "unknown mode" in e.message for e in bundle.errors)
    assert "src/pkg/gone.py" in str(next(e for e in bundle.errors if e.path == "src/pkg/gone.py"))
    assert [e.label for e in bundle.items] == ["src/pkg/core.py"]
    assert "def core(x):" in bundle.markdown


def test_screenshots_become_image_parts_and_missing_ones_are_errors(project: Path):
    bundle = build_context([], screenshots=["shot.png", "missing.png"], root=project)
    assert bundle.images == [{"mime_type": "image/png", "data": PNG, "path": str(project / "shot.png")}]
    assert [(e.source, e.path, e.message) for e in bundle.errors] == [
        ("screenshots", "missing.png", "file not found")]
    assert bundle.total_tokens == IMAGE_TOKENS
    assert f"- `{project / 'shot.png'}` (attached image)" in bundle.markdown


def test_bad_discussion_entries_are_reported(project: Path):
    bundle = build_context([], discussion=[{"role": "robot", "content": "hi"},
                                           {"role": "user", "content": "ok"}], root=project)
    assert [e.path for e in bundle.errors] == ["discussion[0]"]
    assert [e.label for e in bundle.items] == ["discussion[1] user"]


def test_fence_is_longer_than_backticks_inside_the_file(project: Path):
    (project / "doc.md").write_text("```python\nx = 1\n```\n")
    bundle = build_context(["doc.md"], root=project)
    assert "````markdown\n```python\nx = 1\n```\n````\n" in bundle.markdown


def test_over_budget_trim_plan_order(tmp_path: Path):
    (tmp_path / "big.py").write_text(_body("big", 400))
    (tmp_path / "mid.py").write_text(_body("mid", 150))
    (tmp_path / "data.txt").write_text("y" * 12_000)
    discussion = [{"role": "user", "content": "a" * 400, "ts": "1"},
                  {"role": "assistant", "content": "b" * 400, "ts": "2"},
                  {"role": "user", "content": "c" * 400, "ts": "3"}]
    cache = FileCache()
    roomy = build_context(["big.py", "mid.py", "data.txt"], discussion=discussion, root=tmp_path, cache=cache)
    assert not roomy.over_budget and roomy.trim_plan == [] and roomy.fits_after_trim

    # Budget that needs discussion trimmed, both downgrades, and one file dropped.
    skeleton_total = roomy.total_tokens - sum(e.tokens for e in roomy.items if e.label in ("big.py", "mid.py"))
    window = skeleton_total - 2500  # data.txt (~3000 tokens) must go
    bundle = build_context(["big.py", "mid.py", "data.txt"], discussion=discussion, root=tmp_path,
                           cache=cache, model_context_window=window)
    assert bundle.over_budget and bundle.context_window == window
    steps = [(s.action, s.label) for s in bundle.trim_plan]
    assert steps == [("drop_discussion", "discussion[0] user"),
                     ("drop_discussion", "discussion[1] assistant"),
                     ("downgrade_to_skeleton", "big.py"),
                     ("downgrade_to_skeleton", "mid.py"),
                     ("drop_file", "data.txt")]
    totals = [s.total_after for s in bundle.trim_plan]
    assert totals == sorted(totals, reverse=True)
    assert totals[0] == bundle.total_tokens - bundle.trim_plan[0].tokens_saved
    assert totals[-1] <= window < totals[-2] and bundle.fits_after_trim

    # A window too small for anything: everything droppable is listed and it still does not fit.
    hopeless = build_context(["big.py"], system_prompt="s" * 4000, root=tmp_path, cache=cache,
                             model_context_window=100)
    assert [s.action for s in hopeless.trim_plan] == ["downgrade_to_skeleton", "drop_file"]
    assert not hopeless.fits_after_trim


def test_trim_stops_as_soon_as_it_fits(tmp_path: Path):
    (tmp_path / "a.py").write_text(_body("a", 50))
    discussion = [{"role": "user", "content": "x" * 4000}, {"role": "user", "content": "y" * 40}]
    base = build_context(["a.py"], discussion=discussion, root=tmp_path)
    bundle = build_context(["a.py"], discussion=discussion, root=tmp_path,
                           model_context_window=base.total_tokens - 10)
    assert [(s.action, s.label) for s in bundle.trim_plan] == [("drop_discussion", "discussion[0] user")]
