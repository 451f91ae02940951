"""Usage & Cost shows the prompt cache: cached input, what the track cost and what it would have
cost without caching.  A mock track (the offline provider simulates an implicit prefix cache)
driven by clicks; the window's line is read back through its Copy button."""
from __future__ import annotations

import os

import pytest

import project
from gui import mma_display
from tests.gui.helpers import make_app, run_gui, wait_until
from usage_cost import summary_line, usage_costs


@pytest.fixture
def app(xvfb_display, mock_env, tmp_path):
    root = tmp_path / "project"
    (root / "lib").mkdir(parents=True)
    # ~5,000 tokens of curated context: above the simulated cache's minimum
    (root / "lib" / "shared.py").write_text("".join(f"def shared_{i}(x):\n    return x * {i}\n\n"
                                                    for i in range(600)), encoding="utf-8")
    cfg = project.load_project(root)
    cfg.files = [project.FileEntry("lib/shared.py", "full")]
    project.save_project(cfg)
    the_app = make_app(tmp_path)
    yield the_app
    the_app.shutdown()


def test_usage_and_cost_shows_the_cached_share_and_the_saving(app, artifacts_dir):
    seen: dict = {}

    def test(ctx):
        from imgui_bundle import hello_imgui, imgui
        from imgui_bundle.immapp import testing
        ctx.item_click("//MMA Dashboard/Auto-approve")
        ctx.item_click("//MMA Dashboard/##epic")
        ctx.key_chars("Add a version flag")
        ctx.item_click("//MMA Dashboard/Plan Epic")
        wait_until(ctx, lambda: app.mma.tracks, "Tier 1 to propose tracks")
        ctx.item_click(f"//MMA Dashboard/tracks/Accept##{app.mma.tracks[0]['id']}")
        wait_until(ctx, lambda: app.mma.mma_status == "completed", "the track to complete")
        hello_imgui.get_runner_params().docking_params.focus_dockable_window("Usage & Cost")
        ctx.yield_(3)
        imgui.set_clipboard_text("")
        ctx.item_click("//Usage & Cost/Copy##cache_summary")
        ctx.yield_(2)
        seen["clipboard"] = imgui.get_clipboard_text()
        testing.capture(ctx, os.path.join(artifacts_dir, "usage_prompt_cache.png"), window="Usage & Cost")
        seen["usage"] = {k: dict(v) for k, v in app.mma.mma_tier_usage.items()}

    run_gui(app, test)
    usage, line = seen["usage"], seen["clipboard"]
    tier3 = usage["Tier 3"]
    assert tier3.get("cache_read", 0) > 0                      # workers after the first read the prefix
    table = mma_display.usage_table(usage, app.prices)
    assert line == table.summary == summary_line(usage_costs(
        {t: usage[t] for t in mma_display.TIERS if t in usage}, app.prices))
    assert f"{100 * table.cached_share:.1f} % of {table.total_input:,} input tokens" in line
    assert f"cost ${table.total_cost:.4f}, without caching ${table.cost_uncached:.4f}" in line
    assert table.cost_uncached > table.total_cost > 0 and " less)" in line
    rows = {(r.tier, r.model): r for r in table.rows}
    worker = rows[("Tier 3", tier3["model"])]
    assert worker.cache_read == tier3["cache_read"] and worker.cost < worker.cost_uncached
    # a ticket's details say what its worker received
    t4 = app.mma.ticket("T4")
    assert t4 is not None and t4["received"]["cache_read"] > 0
    assert "read from the cache" in mma_display.ticket_received(t4)
