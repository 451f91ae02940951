"""providers/catalog.py: providers, models, prices, and the TierModels value."""
import dataclasses
import importlib
import tomllib

import pytest

import ai_client
import cli
import providers
from context_builder import context_window_for
from models import TIERS
from project import (
    PROJECT_FILE,
    ModelPrice,
    ProjectConfig,
    ProjectFileError,
    load_project,
    save_project,
)
from providers import catalog
from providers.catalog import TierConfigError, TierModels

GEMINI_T3 = ["gemini-2.5-flash-lite", "gemini-2.5-flash", "gemini-3.1-pro-preview"]


# ---------------------------------------------------------------- providers

def test_providers_and_their_adapters(capsys):
    assert catalog.provider_names() == ("mock", "gemini", "anthropic", "gemini-cli")
    for name in catalog.provider_names():
        assert cli._parser().parse_args(["run", "--epic", "e", "--provider", name]).provider == name
    for name, (module, cls) in catalog.adapter_classes().items():
        assert isinstance(getattr(importlib.import_module(module), cls), type)
        assert providers.PROVIDERS[name] == (module, cls)
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["run", "--epic", "e", "--provider", "openai"])
    assert "invalid choice: 'openai'" in capsys.readouterr().err
    assert catalog.is_provider("gemini") and not catalog.is_provider("openai")
    assert not catalog.is_provider(None)
    with pytest.raises(ValueError, match="unknown provider 'openai'; expected one of mock/gemini/anthropic/gemini-cli"):
        catalog.default_tier_models("openai")


def test_gemini_tier_defaults():
    tiers = catalog.default_tier_models("gemini")
    assert tiers.first_models() == {"Tier 1": "gemini-3.1-pro-preview", "Tier 2": "gemini-3-flash-preview",
                                    "Tier 3": "gemini-2.5-flash-lite", "Tier 4": "gemini-2.5-flash-lite"}
    assert tiers.models("Tier 3") == tuple(GEMINI_T3)
    assert catalog.default_tier_models("mock") == tiers
    assert catalog.default_tier_models("anthropic").model_for("Tier 1").startswith("claude-")


@pytest.mark.parametrize("provider", catalog.provider_names())
def test_every_default_model_has_a_context_window_and_a_price(provider):
    names = [*catalog.default_tier_models(provider).all_models(), catalog.default_chat_model(provider)]
    for model in names:
        assert catalog.is_known(model), model
        info = catalog.model_info(model)
        assert info.context_window > 0 and catalog.context_window(model) == info.context_window
        price = catalog.price(model)
        assert price is info.price
        assert 0 <= price.cached_input <= price.input <= price.output


def test_tier_models_use_the_providers_own_models():
    for provider in ("gemini", "anthropic"):
        for model in catalog.default_tier_models(provider).all_models():
            assert catalog.model_info(model).provider == provider


def test_cache_prices_follow_the_published_ratios():
    for model in catalog.model_names():
        info = catalog.model_info(model)
        price = info.price
        if info.provider == "anthropic":      # reads 0.1x, 5-minute writes 1.25x, no storage
            assert (price.cached_input, price.cache_write, price.cache_storage) == pytest.approx(
                (0.1 * price.input, 1.25 * price.input, 0.0)), model
        elif info.provider == "gemini":       # hits 0.1x, an explicit cache's tokens once at input, storage/h
            assert (price.cached_input, price.cache_write) == pytest.approx((0.1 * price.input, price.input)), model
            assert price.cache_storage == (4.50 if "pro" in model else 1.00), model
    assert catalog.price("gemini-2.5-flash").cached_input == pytest.approx(0.03)
    assert catalog.price("claude-sonnet-4-6").cache_write == pytest.approx(3.75)


def test_minimum_cacheable_prefixes():
    assert catalog.min_cache_tokens("gemini-2.5-flash-lite") == 1024
    assert catalog.min_cache_tokens("gemini-3.1-pro-preview") == 4096
    assert catalog.min_cache_tokens("claude-sonnet-4-5") == 1024
    assert catalog.min_cache_tokens("claude-sonnet-4-6") == 2048
    assert catalog.min_cache_tokens("claude-haiku-4-5") == 4096
    assert catalog.min_cache_tokens("gemini-9-pro-future") == 4096       # unlisted: by family
    assert catalog.min_cache_tokens("claude-sonnet-9") == 1024
    assert catalog.prompt_cache_kind("anthropic") == "breakpoints"
    assert catalog.prompt_cache_kind("gemini") == "gemini"
    assert catalog.prompt_cache_kind("mock") == "" and catalog.prompt_cache_kind(None) == ""


# ---------------------------------------------------------------- models

def test_unknown_models_fall_back_by_prefix():
    assert not catalog.is_known("claude-some-future-model")
    assert catalog.context_window("claude-some-future-model") == 200_000
    assert catalog.context_window("gemini-9-ultra") == 1_048_576
    assert catalog.context_window("mock") == 1_000_000
    assert catalog.context_window("unknown-model") == catalog.DEFAULT_CONTEXT_WINDOW == 128_000
    assert catalog.context_window(None) == 128_000
    assert catalog.price("claude-some-future-model") is None     # no guessed prices
    assert catalog.price(None) is None
    with pytest.raises(KeyError, match="not in the catalog"):
        catalog.model_info("claude-some-future-model")


def test_context_builder_reads_the_catalog():
    for model in (*catalog.model_names(), "claude-x", "other", None):
        assert context_window_for(model) == catalog.context_window(model)
    with pytest.raises(TypeError):
        catalog.context_windows()["gemini-2.5-flash"] = 1       # a read-only view


# ---------------------------------------------------------------- TierModels

def test_model_for_clamps_to_the_last_model_of_the_escalation_list():
    tiers = catalog.default_tier_models("gemini")
    assert [tiers.model_for("Tier 3", retry) for retry in range(5)] == GEMINI_T3 + [GEMINI_T3[-1]] * 2
    assert tiers.model_for("Tier 1", 3) == "gemini-3.1-pro-preview"
    with pytest.raises(ValueError, match="retry must be >= 0"):
        tiers.model_for("Tier 3", -1)
    with pytest.raises(KeyError, match="unknown tier 'Tier 9'"):
        tiers.model_for("Tier 9")


def test_from_config_round_trip():
    raw = {"Tier 1": "a", "Tier 2": "b", "Tier 3": ["c", "d"], "Tier 4": "e"}
    tiers = TierModels.from_config(raw, "anthropic")
    assert tiers.to_config() == raw
    assert TierModels.from_config(tiers.to_config(), "gemini") == tiers
    assert tiers.first_models() == {"Tier 1": "a", "Tier 2": "b", "Tier 3": "c", "Tier 4": "e"}
    assert tiers.all_models() == ("a", "b", "c", "d", "e")


def test_from_config_fills_missing_tiers_and_ignores_other_keys():
    tiers = TierModels.from_config({"Tier 3": "only-one", "Tier 5": "future", "note": 3}, "anthropic")
    defaults = catalog.default_tier_models("anthropic")
    assert tiers.models("Tier 3") == ("only-one",)
    assert tiers.to_config()["Tier 3"] == ["only-one"]          # an escalation tier stays a list
    assert {t: tiers.models(t) for t in ("Tier 1", "Tier 2", "Tier 4")} == \
        {t: defaults.models(t) for t in ("Tier 1", "Tier 2", "Tier 4")}
    assert list(tiers.to_config()) == list(TIERS)
    assert TierModels.from_config({}, "mock") == catalog.default_tier_models("gemini")


@pytest.mark.parametrize("raw, message", [
    ({"Tier 3": 5}, "Tier 3: expected a list of strings, got 5"),
    ({"Tier 3": []}, "Tier 3: expected at least one model (the escalation list)"),
    ({"Tier 3": ["a", 3]}, "Tier 3[1]: expected a string, got 3"),
    ({"Tier 3": ["a", " "]}, "Tier 3[1]: expected a model name, got ' '"),
    ({"Tier 1": ["a"]}, "Tier 1: expected a model name, got ['a']"),
    ({"Tier 2": ""}, "Tier 2: expected a model name, got ''"),
    ({"Tier 4": True}, "Tier 4: expected a model name, got True"),
])
def test_from_config_names_the_bad_value(raw, message):
    with pytest.raises(TierConfigError) as info:
        TierModels.from_config(raw, "gemini")
    assert str(info.value) == message
    assert info.value.tier == message.split(":")[0].split("[")[0]


def test_from_config_rejects_what_is_not_a_table_or_provider():
    with pytest.raises(ValueError, match="expected a table of tier -> model, got 'x'"):
        TierModels.from_config("x", "gemini")
    with pytest.raises(ValueError, match="unknown provider"):
        TierModels.from_config({}, "openai")


def test_constructor_needs_exactly_the_four_tiers():
    full = catalog.default_tier_models("gemini").to_config()
    with pytest.raises(TierConfigError, match="Tier 4: missing"):
        TierModels({k: v for k, v in full.items() if k != "Tier 4"})
    with pytest.raises(TierConfigError, match="Tier 5: unknown tier"):
        TierModels({**full, "Tier 5": "x"})


def test_merged_is_a_new_value():
    base = catalog.default_tier_models("gemini")
    changed = base.merged({"Tier 2": "my-model", "Tier 3": ("x", "y")})
    assert changed.model_for("Tier 2") == "my-model" and changed.models("Tier 3") == ("x", "y")
    assert changed.model_for("Tier 1") == base.model_for("Tier 1")
    assert base.model_for("Tier 2") == "gemini-3-flash-preview"          # unchanged
    assert base.merged(changed) == changed
    with pytest.raises(TierConfigError, match="Tier 9: unknown tier"):
        base.merged({"Tier 9": "x"})
    with pytest.raises(TierConfigError, match="Tier 1: expected a model name"):
        base.merged({"Tier 1": ["x", "y"]})


def test_tier_models_is_immutable_and_hashable():
    tiers = catalog.default_tier_models("gemini")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiers._by_tier = ()
    config = tiers.to_config()
    config["Tier 3"].append("extra")
    assert tiers.models("Tier 3") == tuple(GEMINI_T3)
    assert hash(tiers) == hash(TierModels.from_config({}, "gemini"))
    assert "gemini-3-flash-preview" in repr(tiers)


# ---------------------------------------------------------------- consumers

def test_tier_defaults_for_any_provider():
    assert catalog.tier_defaults(None) == catalog.default_tier_models("gemini")
    assert catalog.tier_defaults("a_stub_adapter") == catalog.default_tier_models("gemini")
    assert catalog.tier_defaults("anthropic") == catalog.default_tier_models("anthropic")


def test_sessions_start_with_the_catalogs_chat_model(monkeypatch):
    for provider in catalog.provider_names():
        assert ai_client.Session(provider).model == catalog.default_chat_model(provider)
    monkeypatch.setitem(providers.PROVIDERS, "stub", ("tests.stub_providers", "RetryOnceAdapter"))
    assert ai_client.Session("stub").model == ""


def test_project_reads_tier_models(tmp_path):
    cfg = ProjectConfig(root=tmp_path, provider="anthropic")
    cfg.models = {**catalog.default_tier_models("anthropic").to_config(), "Tier 2": "custom"}
    assert cfg.tier_models().model_for("Tier 2") == "custom"
    assert cfg.tier_models().model_for("Tier 3", 9) == "claude-opus-4-8"


def test_project_file_names_a_bad_escalation_list_item(tmp_path):
    (tmp_path / PROJECT_FILE).write_text('[models]\n"Tier 3" = ["a", 3]\n', encoding="utf-8")
    with pytest.raises(ProjectFileError) as info:
        load_project(tmp_path)
    assert info.value.key_path == 'models."Tier 3"[1]'
    assert 'models."Tier 3"[1]: expected a string, got 3' in str(info.value)


# ---------------------------------------------------------------- prices

def test_default_prices_come_from_the_catalog(tmp_path):
    cfg = ProjectConfig(root=tmp_path)
    for model in catalog.model_names():
        listed = catalog.price(model)
        assert cfg.price_for(model) == ModelPrice(listed.input, listed.output, listed.cached_input,
                                                  listed.cache_write, listed.cache_storage or None)
    assert cfg.price_for("claude-some-future-model") is None


def test_usage_and_cost_price_lookup_uses_the_project_prices(tmp_path):
    from gui import mma_display
    cfg = ProjectConfig(root=tmp_path)
    usage = {"model": "gemini-2.5-flash", "input": 1_000_000, "output": 1_000_000}
    assert mma_display.tier_cost(usage, cfg.prices) == pytest.approx(0.30 + 2.50)
    cfg.prices["gemini-2.5-flash"] = ModelPrice(1.0, 1.0)                # a user override
    assert mma_display.tier_cost(usage, cfg.prices) == pytest.approx(2.0)
    assert mma_display.tier_cost({**usage, "model": "local"}, cfg.prices) is None


def test_cached_input_price_round_trips_through_the_project_file(tmp_path):
    cfg = ProjectConfig(root=tmp_path)
    cfg.prices = {"with-cache": ModelPrice(2.0, 8.0, 0.5, extra={"note": "kept"}),
                  "no-cache": ModelPrice(1.0, 4.0)}
    save_project(cfg)
    saved = tomllib.loads((tmp_path / PROJECT_FILE).read_text(encoding="utf-8"))["prices"]
    assert saved == {"with-cache": {"note": "kept", "input": 2.0, "output": 8.0, "cached_input": 0.5},
                     "no-cache": {"input": 1.0, "output": 4.0}}
    assert load_project(tmp_path).prices == cfg.prices


def test_cached_input_price_is_checked(tmp_path):
    (tmp_path / PROJECT_FILE).write_text('[prices.m]\ninput = 1\ncached_input = -1\n', encoding="utf-8")
    with pytest.raises(ProjectFileError, match=r"prices\.m\.cached_input: expected a price >= 0, got -1"):
        load_project(tmp_path)


def test_cost_bills_cached_input_tokens_at_their_price():
    price = ModelPrice(input=2.0, output=10.0, cached_input=0.5)
    assert price.cost(1_000_000, 100_000, 2_000_000) == pytest.approx(2.0 + 1.0 + 1.0)
    assert ModelPrice(2.0, 10.0).cost(0, 0, 1_000_000) == pytest.approx(2.0)   # no cache price: as input


def test_cost_bills_cache_writes_and_storage():
    price = ModelPrice(input=2.0, output=10.0, cached_input=0.2, cache_write=2.5, cache_storage=4.5)
    # 1M written at 2.5, 1M tokens kept for an hour at 4.5
    assert price.cost(0, 0, 0, 1_000_000, 3600 * 1_000_000) == pytest.approx(2.5 + 4.5)
    assert ModelPrice(2.0, 10.0).cost(0, 0, 0, 1_000_000, 3600) == pytest.approx(2.0)   # write as input, free storage


def test_cache_prices_round_trip_through_the_project_file(tmp_path):
    cfg = ProjectConfig(root=tmp_path)
    cfg.prices = {"m": ModelPrice(1.0, 4.0, 0.1, 1.25, 4.5)}
    save_project(cfg)
    saved = tomllib.loads((tmp_path / PROJECT_FILE).read_text(encoding="utf-8"))["prices"]
    assert saved == {"m": {"input": 1.0, "output": 4.0, "cached_input": 0.1, "cache_write": 1.25,
                           "cache_storage": 4.5}}
    assert load_project(tmp_path).prices == cfg.prices
    (tmp_path / PROJECT_FILE).write_text('[prices.m]\ninput = 1\ncache_storage = -2\n', encoding="utf-8")
    with pytest.raises(ProjectFileError, match=r"prices\.m\.cache_storage: expected a price >= 0, got -2"):
        load_project(tmp_path)
