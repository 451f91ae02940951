"""Tools a model may call, provider-neutral.

    from tools import TOOL_SPECS, ToolError, needs_approval, describe, execute

* `TOOL_SPECS` -- `providers.base.ToolSpec`s (JSON-schema parameters) for
  read_file, list_directory, search_text, file_skeleton (read-only) and
  write_file, patch_file, run_shell (need the developer's approval).
* `needs_approval(name)` -- True for write_file, patch_file, run_shell and for
  unknown names.
* `describe(name, args, root)` -- dict for the approval dialog (summary, and a
  unified diff for writes / command, cwd, timeout for the shell); never raises,
  puts problems under "error".
* `execute(name, args, root, *, approved=False)` -- runs the tool, returns the
  text the model sees; raises `ToolError` (message meant for the model).
  Approval-requiring tools are refused unless `approved=True`.

Every path is confined to the project root by `tools.paths.resolve_in_root`
(no `..`, absolute paths or symlinks out of the root).  See `tools.shell` for
how commands run and which environment variables are stripped.
"""
from tools.errors import ToolError
from tools.paths import resolve_in_root
from tools.registry import TOOL_NAMES, TOOL_SPECS, describe, execute, needs_approval

__all__ = ["TOOL_SPECS", "TOOL_NAMES", "ToolError", "needs_approval", "describe", "execute", "resolve_in_root"]
