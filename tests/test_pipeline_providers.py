"""The whole headless pipeline through the real SDKs against the loopback wire emulator."""
import json
import logging

import pytest

import cli
import project
from tests.wire_emulator import WireEmulator

FAKE_KEYS = {"gemini": "AIzaFAKE-planted-gemini-key-9876543210",
             "anthropic": "sk-ant-FAKE-planted-anthropic-key-9876543210"}
ENV = {"gemini": ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL"),
       "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")}
# Distinct model per tier so every tier's bill can be checked on its own.
MODELS = {
    "gemini": {"Tier 1": "gemini-3.1-pro-preview", "Tier 2": "gemini-3-flash-preview",
               "Tier 3": ["gemini-2.5-flash-lite", "gemini-2.5-flash", "gemini-2.5-pro"],
               "Tier 4": "gemini-2.0-flash-qa"},
    "anthropic": {"Tier 1": "claude-opus-4-8", "Tier 2": "claude-sonnet-4-6",
                  "Tier 3": ["claude-haiku-5-5", "claude-sonnet-5", "claude-opus-4-9"],
                  "Tier 4": "claude-haiku-qa"},
}


@pytest.fixture
def emulator():
    with WireEmulator() as emu:
        yield emu


@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
def test_headless_run_through_real_sdk(provider, emulator, tmp_path, monkeypatch, capsys, caplog):
    key_var, url_var = ENV[provider]
    monkeypatch.setenv(key_var, FAKE_KEYS[provider])
    monkeypatch.setenv(url_var, emulator.base_url)
    monkeypatch.delenv("MMA_PROVIDER", raising=False)
    cfg = project.load_project(tmp_path)
    cfg.provider = provider
    cfg.models = MODELS[provider]
    project.save_project(cfg)
    caplog.set_level(logging.DEBUG)

    code = cli.main(["run", "--epic", "Add a CLI flag to print the version", "--project", str(tmp_path), "--auto"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err

    state = json.loads(next(tmp_path.glob("conductor/tracks/*/state.json")).read_text())
    assert len(state["tickets"]) == 4 and {t["status"] for t in state["tickets"]} == {"completed"}
    billed = emulator.billed
    usage = state["tier_usage"]
    for tier in ("Tier 1", "Tier 2"):
        model = MODELS[provider][tier]
        assert (usage[tier]["input"], usage[tier]["output"]) == (billed[model]["input_tokens"], billed[model]["output_tokens"]), tier
    tier3 = MODELS[provider]["Tier 3"][0]
    assert (usage["Tier 3"]["input"], usage["Tier 3"]["output"]) == (billed[tier3]["input_tokens"], billed[tier3]["output_tokens"])
    assert all(usage[t]["input"] > 0 and usage[t]["output"] > 0 for t in ("Tier 1", "Tier 2", "Tier 3"))
    seen_models = {r.model for r in emulator.requests}
    assert seen_models == {MODELS[provider]["Tier 1"], MODELS[provider]["Tier 2"], tier3}

    # the planted key is nowhere: files in the project, printed output, log records
    fake = FAKE_KEYS[provider]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert fake not in path.read_text(errors="replace"), path
    assert fake not in out.out + out.err
    assert all(fake not in r.getMessage() for r in caplog.records)
    assert list((tmp_path / ".mma_desk" / "logs").glob("*.jsonl")), "session logs were written"


def test_provider_429_then_success_in_the_pipeline(emulator, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEYS["gemini"])
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emulator.base_url)
    emulator.inject("429", count=2)
    code = cli.main(["run", "--epic", "Print the version", "--project", str(tmp_path), "--provider", "gemini", "--auto"])
    assert code == 0, capsys.readouterr().out
    logs = "".join(p.read_text() for p in (tmp_path / ".mma_desk" / "logs").glob("*.jsonl"))
    assert logs.count('"kind": "retry"') == 2


def test_missing_key_is_a_clear_error_not_a_crash(tmp_path, monkeypatch, capsys):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "none.toml"))
    code = cli.main(["run", "--epic", "x", "--project", str(tmp_path), "--provider", "gemini", "--auto"])
    out = capsys.readouterr().out
    assert code == 2
    assert "GEMINI_API_KEY" in out
