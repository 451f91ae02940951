"""MMA Desk GUI package: state objects (pure logic) and Dear ImGui panels.

`gui_2.App` wires them up.  State, testable without a window: `mma_state`
(the MMA windows), `mma_display` (what the MMA windows compute),
`context_state` (+ `file_items`, `chat`, `comms_log`: the context panels),
`frame_stats`.  App helpers: `commands` (what the buttons do), `hook_actions`
(the hook API's fields, clicks and published snapshot), `layout` (runner
params, docking, menus, bars; mounts the panels), `screenshot` (PNG of the
rendered frame).

Panels, one module per window, each `draw(state[, actions][, view])`:
`panel_mma_dashboard`, `panel_dag`, `panel_streams`, `panel_usage`,
`panel_approvals`, `panel_diagnostics`, `panel_project`, `panel_discussion`,
`panel_budget`, `panel_comms`.  `state` is the plain object the window shows,
`actions` a `typing.Protocol` (declared in the panel module) of what it may
call, `view` the window's own state between frames (see docs/guide_gui.md).
"""
