"""MMA Desk GUI package: state objects (pure logic) and Dear ImGui panels.

`gui_2.App` wires them up.  State, testable without a window: `mma_state`
(the MMA dashboard), `context_state` (+ `file_items`, `chat`, `comms_log`: the
context panels), `frame_stats`.  App helpers: `commands` (what the buttons do),
`hook_actions` (the hook API's fields, clicks and published snapshot),
`layout` (runner params, docking, menus, bars), `screenshot` (PNG of the
rendered frame).  Panels: `panel_mma`, `panel_approvals`, `panel_diagnostics`
expose `render(app)`; `panel_project`, `panel_discussion`, `panel_budget`,
`panel_comms` expose `draw(state)`.
"""
