"""`mma-desk run` / `resume` send the project's curated context, as the app does, and report the cache."""
from __future__ import annotations

import json

import pytest

import cli
import project
from context_builder import project_context
from gui.context_state import ContextState
from tests.wire_emulator import WireEmulator, parse_prompt

MARKER = "CURATED_MARKER_" + "q" * 12


def curated_project(root) -> project.ProjectConfig:
    """A project whose context has a file (full), a skeleton, a screenshot and a discussion."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "notes.py").write_text(f'"""{MARKER}"""\n' + "".join(
        f"def step_{i}(x):\n    return x + {i}\n\n" for i in range(900)), encoding="utf-8")
    (root / "src" / "big.py").write_text("class Big:\n    def method(self):\n        return 'BODY_NOT_SENT'\n",
                                         encoding="utf-8")
    (root / "shot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    cfg = project.load_project(root)
    cfg.files = [project.FileEntry("src/notes.py", "full"), project.FileEntry("src/big.py", "skeleton"),
                 project.FileEntry("src/missing.py", "full")]
    cfg.screenshots = ["shot.png"]
    cfg.add_entry("user", "DISCUSSION_MARKER: keep the API stable")
    return cfg


def test_headless_builds_the_context_the_app_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "none.toml"))
    root = tmp_path / "proj"
    root.mkdir()
    project.save_project(curated_project(root))
    state = ContextState(root, provider="mock")
    try:
        state.refresh(force=True)
        app_markdown = state.bundle.markdown
    finally:
        state.close()
    headless = project_context(project.load_project(root))
    assert headless.markdown == app_markdown
    assert MARKER in headless.markdown and "DISCUSSION_MARKER" in headless.markdown
    assert "shot.png" in headless.markdown and "BODY_NOT_SENT" not in headless.markdown   # the skeleton view
    assert [str(e) for e in headless.errors] == ["files: src/missing.py: file not found"]


@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
def test_a_headless_run_sends_the_curated_context_to_every_tier(provider, tmp_path, monkeypatch, capsys):
    keys = {"gemini": ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
            "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")}
    with WireEmulator() as emu:
        monkeypatch.setenv(keys[provider][0], "FAKE-key-for-the-context-test-0123456789")
        monkeypatch.setenv(keys[provider][1], emu.base_url)
        monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "none.toml"))
        monkeypatch.delenv("MMA_PROVIDER", raising=False)
        cfg = curated_project(tmp_path)
        cfg.provider = provider
        project.save_project(cfg)
        code = cli.main(["run", "--epic", "Add a version flag", "--project", str(tmp_path), "--auto"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "WARNING: context: files: src/missing.py: file not found" in out
        texts = {}
        for request in emu.requests:
            if not isinstance(request.body, dict):
                continue
            text = json.dumps(request.body)
            system = parse_prompt(provider, request.body).system
            tier = ("cache" if request.path.endswith("/cachedContents") else
                    next((t for t in ("Tier 1", "Tier 2", "Tier 3") if f"You are {t}" in system), "cached worker"))
            texts.setdefault(tier, []).append(text)
        for tier in ("Tier 1", "Tier 2"):
            assert texts[tier] and all(MARKER in t and "DISCUSSION_MARKER" in t for t in texts[tier]), tier
        workers = texts.get("Tier 3", []) + texts.get("cache", [])   # Gemini: the prefix is in the cache
        assert workers and all(MARKER in t for t in workers)
        # the last lines: the token table with the cached column, and the prompt-cache line
        assert "cached" in out and "Prompt cache: " in out and "without caching $" in out
        line = next(ln for ln in out.splitlines() if ln.startswith("Prompt cache: "))
        state = json.loads(next(tmp_path.glob("conductor/tracks/*/state.json")).read_text())
        read = sum(b.get("cache_read", 0) for b in state["tier_usage"].values())
        assert read > 0 and f"{read / sum(b['input'] for b in state['tier_usage'].values()) * 100:.1f} %" in line


def test_resume_sends_the_curated_context_too(tmp_path, monkeypatch, capsys):
    with WireEmulator() as emu:
        monkeypatch.setenv("GEMINI_API_KEY", "FAKE-key-for-the-resume-test-0123456789")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "none.toml"))
        monkeypatch.delenv("MMA_PROVIDER", raising=False)
        cfg = curated_project(tmp_path)
        cfg.provider = "gemini"
        project.save_project(cfg)
        assert cli.main(["run", "--epic", "Plan it first", "--project", str(tmp_path)]) == 0   # plans only
        track_id = next((tmp_path / "conductor" / "tracks").iterdir()).name
        emu.reset()
        code = cli.main(["resume", track_id, "--project", str(tmp_path), "--auto"])
        out = capsys.readouterr().out
        assert code == 0, out
        sent = [json.dumps(r.body) for r in emu.requests if isinstance(r.body, dict)]
        # the workers' shared prefix holds the context: in their requests, or in the track's cache
        assert sent and any(MARKER in text for text in sent)
        assert all(MARKER in text for text in sent if "You are Tier 3" in text)
        assert "Prompt cache: " in out
