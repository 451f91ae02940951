"""MMA Desk GUI package: state objects (pure logic) and Dear ImGui panels.

Modules whose names start with `panel_` render one dockable window each and
expose `render(app)`; `mma_state` and `context_state` hold the state the
panels show, and are testable without a window.  `gui_2.App` wires them up.
"""
