"""The Usage & Cost window: tokens and estimated USD per tier and model, a bar chart, the price table.

Above the table, the prompt-cache line (`UsageTable.summary`): the share of input tokens read
from the provider's cache, what the run cost and what it would have cost without caching;
*Copy* puts that line on the clipboard.  The table shows each row's cached input and its cost
without caching beside its cost.

`draw(state, actions, view)`: `state` is the `MMAState` (`mma_tier_usage`);
`actions` (`UsageActions`, satisfied by `gui_2.App`) gives the project's price
table (edited in place, USD per 1M tokens) and the commands; `view`
(`UsageView`, created by `gui/layout.py`) holds the *Add price* text box.
The table's numbers come from `gui/mma_display.py: usage_table`: one row per tier and model
(an escalated ticket's tokens are priced at each model's own price), plus the chat's row.

Labels: "Copy##cache_summary", "prices/##in-<model>", "prices/##out-<model>", "##new_price_model",
"Add price", "Save prices".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from imgui_bundle import imgui, implot

from gui import theme
from gui.actions import GuardedCalls
from gui.mma_display import usage_table
from gui.mma_state import MMAState
from project import ModelPrice


class UsageActions(GuardedCalls, Protocol):
    @property
    def prices(self) -> dict[str, ModelPrice]: ...
    def add_price(self, model: str, input_usd: float = 0.0, output_usd: float = 0.0) -> dict: ...
    def save_project(self) -> dict: ...


@dataclass
class UsageView:
    new_model: str = ""            # the *Add price* text box


def draw(state: MMAState, actions: UsageActions, view: UsageView) -> None:
    table = usage_table(state.mma_tier_usage, actions.prices)
    imgui.text_wrapped(table.summary)
    if imgui.small_button("Copy##cache_summary"):
        imgui.set_clipboard_text(table.summary)
    if imgui.is_item_hovered():
        imgui.set_tooltip("Copy this line: the cached share, the cost, and the cost without caching")
    flags = imgui.TableFlags_.borders | imgui.TableFlags_.row_bg | imgui.TableFlags_.sizing_fixed_fit
    if imgui.begin_table("tier_usage", 7, flags):
        for name in ("Tier", "Model", "Input", "Cached", "Output", "Est. USD", "Without cache"):
            imgui.table_setup_column(name)
        imgui.table_headers_row()
        for row in table.rows:
            imgui.table_next_row()
            for value in (row.tier, row.model, str(row.input), str(row.cache_read), str(row.output)):
                imgui.table_next_column()
                imgui.text(value)
            for cost in (row.cost, row.cost_uncached):
                imgui.table_next_column()
                if cost is None:
                    imgui.text_disabled("no price")
                else:
                    imgui.text(f"{cost:.4f}")
        imgui.table_next_row()
        for value in ("Total", "", str(table.total_input), str(table.cache_read), str(table.total_output),
                      f"{table.total_cost:.4f}", f"{table.cost_uncached:.4f}"):
            imgui.table_next_column()
            imgui.text(value)
        imgui.end_table()
    if table.unpriced:
        imgui.text_colored(theme.HINT_TEXT, "No price for: " + ", ".join(table.unpriced) + " (add it below)")
    groups = list(table.per_tier)
    values = np.array([float(table.per_tier[t][0]) for t in groups] + [float(table.per_tier[t][1]) for t in groups],
                      dtype=np.float64)
    if implot.begin_plot("Tokens per tier", imgui.ImVec2(-1, 180)):
        implot.setup_axes("", "tokens", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
        implot.setup_axis_ticks(implot.ImAxis_.x1, [float(i) for i in range(len(groups))], groups)
        implot.setup_legend(implot.Location_.north, implot.LegendFlags_.horizontal | implot.LegendFlags_.outside)
        implot.plot_bar_groups(["input", "output"], values, 0.67)
        implot.end_plot()
    _price_table(actions, view)


def _price_table(actions: UsageActions, view: UsageView) -> None:
    prices = actions.prices
    if not imgui.collapsing_header("Prices (USD per 1M tokens)"):
        return
    flags = imgui.TableFlags_.borders | imgui.TableFlags_.row_bg | imgui.TableFlags_.sizing_stretch_prop
    if imgui.begin_table("prices", 3, flags):
        imgui.table_setup_column("Model")
        imgui.table_setup_column("Input")
        imgui.table_setup_column("Output")
        imgui.table_headers_row()
        for model in sorted(prices):
            price = prices[model]
            imgui.table_next_row()
            imgui.table_next_column()
            imgui.text(model)
            imgui.table_next_column()
            imgui.set_next_item_width(-1)
            changed, v = imgui.input_float(f"##in-{model}", price.input, 0.0, 0.0, "%.2f")
            if changed:
                price.input = max(0.0, v)
            imgui.table_next_column()
            imgui.set_next_item_width(-1)
            changed, v = imgui.input_float(f"##out-{model}", price.output, 0.0, 0.0, "%.2f")
            if changed:
                price.output = max(0.0, v)
        imgui.end_table()
    imgui.set_next_item_width(220)
    _, view.new_model = imgui.input_text_with_hint("##new_price_model", "model name", view.new_model)
    imgui.same_line()
    if imgui.button("Add price") and view.new_model.strip():
        actions.ui(actions.add_price, view.new_model.strip())
        view.new_model = ""
    imgui.same_line()
    if imgui.button("Save prices"):
        actions.ui(actions.save_project)
