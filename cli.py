"""`mma-desk`: the console entry point.

  mma-desk                       open the desktop app (same as `mma-desk gui`)
  mma-desk run --epic TEXT ...   the MMA pipeline headless (see headless.py)
  mma-desk resume TRACK_ID ...   continue a saved track; completed tickets are not re-run
  mma-desk skeleton FILE...      print tree-sitter views of files
  mma-desk import-track PATH     import a Conductor track (plan.md) as a ticket DAG
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

PROVIDERS = ("mock", "gemini", "anthropic")


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
    return p


def _common_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", default=".", help="project folder (created if missing)")
    p.add_argument("--provider", choices=PROVIDERS, default=os.environ.get("MMA_PROVIDER") or None,
                   help="model provider (default: MMA_PROVIDER, the project file, a provider with a key, else mock)")
    p.add_argument("--auto", action="store_true",
                   help="approve every worker spawn and step up front and execute the tickets")
    p.add_argument("--max-workers", type=int, help="parallel Tier 3 workers (default: project file, 4)")
    p.add_argument("--allow-tools", choices=("none", "read", "all"), default="read",
                   help="tools workers may use: none, read-only (default), or all incl. writes and shell")
    p.add_argument("--show-streams", action="store_true", help="print model output as it streams")


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
        import file_cache
        return file_cache.cli_skeleton(args.files, args.mode)
    if args.command == "import-track":
        import conductor_io
        return conductor_io.cli_import_track(args.path, args.project)
    _parser().print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
