"""`mma-desk`: the console entry point.

  mma-desk                       open the desktop app (same as `mma-desk gui`)
  mma-desk --enable-test-hooks   ... with the loopback hook API; stdout's first line is
                                 `MMA_HOOKS http://127.0.0.1:<port>/?token=<t>` (MMA_HOOK_TOKEN
                                 chooses the token; MMA_TEST_HOOKS alone opens nothing)
  mma-desk run --epic TEXT ...   the MMA pipeline headless (see headless.py)
  mma-desk resume TRACK_ID ...   continue a saved track; completed tickets are not re-run
  mma-desk skeleton FILE...      print tree-sitter views of files (Python, JS, TS/TSX, Go,
                                 Rust, Java, C, C++, C#; other files: full text and a note)
  mma-desk import-track PATH     import a Conductor track (plan.md) as a ticket DAG
  mma-desk tools [--project DIR] every tool the models would get (built-in and MCP), one per line
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from providers.catalog import provider_names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mma-desk", description="AI-assisted programming cockpit: "
                                "curated context and a four-tier multi-model agent pipeline.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command")

    sub.add_parser("gui", help="open the desktop app (the default); takes the app's own flags",
                   add_help=False)

    run = sub.add_parser("run", help="plan and execute an epic with no window")
    run.add_argument("--epic", required=True, help="what you want built")
    _common_run_args(run)

    resume = sub.add_parser("resume", help="continue a saved track")
    resume.add_argument("track_id")
    _common_run_args(resume)

    sk = sub.add_parser("skeleton", help="print tree-sitter views of files")
    sk.add_argument("files", nargs="+")
    sk.add_argument("--mode", choices=("skeleton", "curated", "outline", "full"), default="skeleton")

    imp = sub.add_parser("import-track", help="import a Conductor track folder or plan.md")
    imp.add_argument("path")
    imp.add_argument("--project", help="also write it into this project's conductor/ folder")

    tl = sub.add_parser("tools", help="list every tool the models would get (built-in and MCP servers)")
    tl.add_argument("--project", default=".", help="project folder (its mma_project.toml names the MCP servers)")
    return p


def _common_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", default=".", help="project folder (created if missing)")
    p.add_argument("--provider", choices=provider_names(), default=os.environ.get("MMA_PROVIDER") or None,
                   help="model provider (default: MMA_PROVIDER, the project file, a provider with a key, else mock)")
    p.add_argument("--auto", action="store_true",
                   help="approve every worker spawn and step up front and execute the tickets")
    p.add_argument("--max-workers", type=int, help="parallel Tier 3 workers (default: project file, 4)")
    p.add_argument("--allow-tools", choices=("none", "read", "all"), default="read",
                   help="tools workers may use: none, read-only (default), or all incl. writes and shell")
    p.add_argument("--show-streams", action="store_true", help="print model output as it streams")


def cmd_skeleton(paths: list[str], mode: str = "skeleton", cache=None) -> int:
    """`mma-desk skeleton FILE... [--mode]`: print each file's view under a header."""
    from file_cache import MODES, FileCache
    if mode not in MODES:
        print(f"mma-desk skeleton: unknown mode {mode!r} (choose from {', '.join(MODES)})", file=sys.stderr)
        return 2
    cache = cache or FileCache()
    status = 0
    for path in paths:
        try:
            view = cache.get_view(path, mode)
        except FileNotFoundError:
            print(f"mma-desk skeleton: no such file: {path}", file=sys.stderr)
            status = 2
            continue
        except OSError as exc:
            print(f"mma-desk skeleton: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 2
            continue
        note = f" ({view.note})" if view.note else ""
        sys.stdout.write(f"# ==== {path} ===={note}\n{view.text}")
        if view.text and not view.text.endswith("\n"):
            sys.stdout.write("\n")
    return status


def _print_dag(track, out=None) -> None:
    from conductor_format.common import one_line
    out = out or sys.stdout
    print(f"Track {track.id}: {track.title} ({len(track.tickets)} tickets)", file=out)
    width = max([len(t.id) for t in track.tickets] + [2])
    print(f"{'id':<{width}}  {'status':<11}  {'depends_on':<14}  description", file=out)
    for t in track.tickets:
        desc = one_line(t.description)
        desc = desc if len(desc) <= 72 else desc[:71] + "\u2026"
        step = " [step]" if t.step_mode else ""
        print(f"{t.id:<{width}}  {t.status:<11}  {','.join(t.depends_on) or '-':<14}  "
              f"{desc}{step}", file=out)


def cmd_import_track(path: str, project: str | None = None) -> int:
    """`mma-desk import-track PATH [--project DIR]`: print the ticket DAG, optionally save it."""
    from atomic_files import atomic_write_text
    from conductor_format.common import tracks_dir
    from conductor_io import read_track_source, save_track
    try:
        src = read_track_source(path)
        for warning in src.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        _print_dag(src.track)
        if project is None:
            return 0
        dest = tracks_dir(project) / src.track.id
        plan = dest / "plan.md"
        if plan.exists() and plan.resolve() != src.plan_path.resolve():
            print(f"error: {dest} already exists; a track with id {src.track.id!r} is already "
                  "in this project (rename the source folder or remove the old track)",
                  file=sys.stderr)
            return 1
        if not plan.exists():   # keep the original plan text, so its ids and layout stay
            atomic_write_text(plan, src.plan_text)
        folder = save_track(project, src.track, spec_text=src.spec_text, metadata=src.metadata)
        print(f"saved to {folder}")
        return 0
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_tools(project_dir: str, out=None, err=None) -> int:
    """`mma-desk tools --project DIR`: one line per tool: name, server (or built-in), approval.

    Starts the project's enabled MCP servers to list their tools, then stops them.  Exits 1,
    naming the server, when one fails to start (the other tools are still listed)."""
    from project import load_project_or_last_good
    from tools.mcp_client import DISABLED, FAILED, McpHub
    from tools.toolbox import Toolbox
    out, err = out or sys.stdout, err or sys.stderr
    cfg, error = load_project_or_last_good(project_dir)
    if error is not None:
        print(f"mma-desk tools: {error} (using the last good settings)", file=err)
    hub = McpHub(project_dir, register=False)
    try:
        if cfg.mcp_servers:
            hub.apply(cfg.mcp_servers).result(timeout=hub.start_timeout * 2)
        rows = Toolbox(project_dir, hub).listing()
        name_w = max(len(name) for name, _s, _p in rows)
        server_w = max(len(server) for _n, server, _p in rows)
        for name, server, policy in rows:
            print(f"{name:<{name_w}}  {server:<{server_w}}  {policy}", file=out)
        statuses = hub.statuses()
    finally:
        hub.close()
    for status in statuses:
        if status.state == DISABLED:
            print(f"mma-desk tools: MCP server {status.name!r} is disabled (enabled = false)", file=err)
    failed = [s for s in statuses if s.state == FAILED]
    for status in failed:
        print(f"mma-desk tools: MCP server {status.name!r} failed to start: {status.error}", file=err)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] == "gui" or argv[0].startswith("--") and argv[0] not in ("--help", "-h", "-v", "--verbose"):
        import gui_2
        return gui_2.main(argv[1:] if argv and argv[0] == "gui" else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from providers.credentials import install_log_redaction
    install_log_redaction()
    if args.command in ("run", "resume"):
        import headless
        return headless.run_headless(
            getattr(args, "epic", None), args.project, provider=args.provider, auto=args.auto,
            max_workers=args.max_workers, allow_tools=args.allow_tools,
            resume_id=getattr(args, "track_id", None), show_streams=args.show_streams)
    if args.command == "skeleton":
        return cmd_skeleton(args.files, args.mode)
    if args.command == "import-track":
        return cmd_import_track(args.path, args.project)
    if args.command == "tools":
        return cmd_tools(args.project)
    _parser().print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
