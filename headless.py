"""`mma-desk run` / `mma-desk resume`: the MMA pipeline with no window.

Plans the epic (Tier 1), turns each track into tickets (Tier 2), runs them
(Tier 3, in parallel where the DAG allows), prints one line per state
change, writes every track in Conductor layout, and exits 0 only when every
ticket completed.  Every tier gets the curated context of `mma_project.toml`
(files in their view modes, screenshots, the active discussion), built as the
app builds it (`context_builder.project_context`).  The run ends with the token
table and the prompt-cache line the Usage & Cost window shows (`usage_cost`).

Approvals in headless mode: `--auto` is the user's up-front approval of
every spawn and step.  In a git repository each ticket works in its own
worktree and its changes land on the track branch `mma/<track>`, never on the
user's branch: file writes there are allowed (`--allow-tools write`, the
default), shell commands only with `--allow-tools all`.  Outside a repository
the workers get read-only tools unless `--git-init` makes the folder a
repository first.  Without `--auto` the run stops after planning so the user
can review the track files, then `mma-desk resume TRACK_ID --auto` executes
them.  `mma-desk apply|discard TRACK_ID` merge or drop a track branch
(`--apply` on `run` applies a track that completed with QA passing).

Stopping: Ctrl-C (SIGINT) or SIGTERM aborts the way the GUI's Abort does (the calls in
flight are cut, tickets go back to todo, the track is saved resumable) and the process
exits with 128 + the signal number within about a second; a second signal exits at once.
If the output is closed (`mma-desk run ... | head -1`) the run is aborted the same way
and the process exits with 141 (128 + SIGPIPE), without a traceback.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue as stdlib_queue
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import events
import multi_agent_conductor as mac
import prompt_cache
from models import BLOCKED, COMPLETED, IN_PROGRESS
from pipeline import Pipeline, PlanningAborted
from planning import PlanningError
from providers.base import ProviderError
from run_settings import RunSettings
from usage_cost import summary_line, usage_costs

if TYPE_CHECKING:
    from project import ProjectConfig

log = logging.getLogger(__name__)

SESSION_LOG_DIR = ".mma_desk/logs"     # per project: JSON Lines comms logs, keys redacted
EXIT_OUTPUT_CLOSED = 128 + 13          # as if killed by SIGPIPE
FILE_WRITES = ("write_file", "patch_file")   # what --allow-tools write approves (inside a ticket's worktree)


class ProgressPrinter:
    """Consumes the event queue on the loop: prints progress, answers approvals per policy."""

    def __init__(self, out: TextIO, auto: bool, allow_tools: str, show_streams: bool = False):
        self.out = out
        self.auto = auto
        self.allow_tools = allow_tools
        self.show_streams = show_streams
        self.last_status: dict[str, str] = {}
        self.final_text: dict[str, str] = {}
        self.closed = False                        # the reader of our output went away
        self.on_closed: Callable[[], None] | None = None

    def line(self, text: str) -> None:
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except OSError as exc:
            if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EPIPE:
                raise
            self._output_closed()

    def _output_closed(self) -> None:
        """`| head -1` exited: stop writing, and abort the run (nobody reads its output)."""
        self.closed = True
        log.info("the output was closed; aborting the run")
        if self.out is sys.stdout:             # the interpreter's final flush must not fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        if self.on_closed is not None:
            self.on_closed()

    def handle(self, event: events.Event) -> None:
        match event:
            case events.StateUpdate(tickets=list() as tickets):
                for t in tickets:
                    self._ticket_line(t)
            case events.TracksPlanned(tracks=tracks):
                for tr in tracks:
                    self.line(f"Tier 1 planned track {tr['id']}: {tr['title']}")
            case events.ApprovalRequest():
                self._answer(event)
            case events.Response(stream_id=stream_id, text=text):
                self.final_text[stream_id] = text
            case events.ErrorEvent(message=message, hint=hint):
                self.line(f"ERROR: {message}" + (f" — {hint}" if hint else ""))
            case events.LogLine(message=message):
                self.line(f"NOTE: {message}")
            case events.StreamChunk(text=text) if self.show_streams:
                self._write(text)

    def _ticket_line(self, t: dict) -> None:
        status = t["status"]
        if self.last_status.get(t["id"]) == status:
            return
        self.last_status[t["id"]] = status
        extra = f" ({t['blocked_reason']})" if status == BLOCKED and t.get("blocked_reason") else ""
        model = f" on {t.get('model') or t.get('assigned_to')}" if status == IN_PROGRESS else ""
        self.line(f"  [{status:>11}] {t['id']}{model}: {t['description'][:70]}{extra}")

    def _answer(self, request: events.ApprovalRequest) -> None:
        if request.kind == "tool":
            approved = self.allow_tools == "all" or (self.allow_tools == "write" and request.tool in FILE_WRITES)
            self.line(f"  tool {request.tool} for {request.ticket_id}: "
                      f"{'approved' if approved else 'refused (use --allow-tools all)'}")
        else:
            approved = self.auto
        if not request.future.done():
            request.future.set_result({"approved": approved})


def _show(printer: ProgressPrinter, name: str, payload: object) -> None:
    try:
        printer.handle(events.from_wire(name, payload))
    except events.EventPayloadError as exc:
        log.error("could not show event %s: %s", name, exc)


async def _consume(queue: events.AsyncEventQueue, printer: ProgressPrinter) -> None:
    while True:
        _show(printer, *await queue.get())


def _settle(queue: events.AsyncEventQueue, printer: ProgressPrinter) -> None:
    """Show what is queued now, so output lines come in the order things happened."""
    while True:
        try:
            name, payload = queue.get_nowait()
        except stdlib_queue.Empty:
            return
        _show(printer, name, payload)


def _timeline(engine: mac.ConductorEngine, line: Callable[[str], None]) -> None:
    """When each ticket ran, relative to the first start: overlapping spans ran in parallel."""
    ran = [(t.started_at, t.finished_at, t) for t in engine.dag.tickets.values()
           if t.started_at and t.finished_at]
    if not ran:
        return
    t0 = min(start for start, _end, _t in ran)
    line(f"Timeline of {engine.track.id} (ms from the first start):")
    for start, end, t in sorted(ran, key=lambda span: span[0]):
        overlap = sorted(o.id for o_start, o_end, o in ran if o is not t and o_start < end and start < o_end)
        together = f"  in parallel with {', '.join(overlap)}" if overlap else ""
        line(f"  {t.id:<6} {1000 * (start - t0):8.1f} .. {1000 * (end - t0):8.1f}  {t.assigned_to}{together}")


def _usage_table(pipeline: Pipeline, prices: dict, line: Callable[[str], None]) -> None:
    """Tokens per tier and model (input, of it read from the prompt cache, output), then the
    prompt-cache line: the cached share, what it cost and what it would have cost uncached."""
    costs = usage_costs(pipeline.tier_usage.snapshot(), prices, keep_empty=True)
    line("Token usage:")
    line(f"  {'tier':<8} {'model':<28} {'input':>9} {'cached':>9} {'output':>9}")
    for row in costs.rows:
        line(f"  {row.tier:<8} {row.model:<28} {row.input:>9} {row.cache_read:>9} {row.output:>9}")
    line(summary_line(costs))


class _Stop:
    """Why the run is being stopped early (a signal, or the output was closed), if it is.

    SIGINT / SIGTERM and a closed output all call `pipeline.abort()`: a planning call is
    cancelled, every running track aborted (resumable).  A second signal exits at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pipeline: Pipeline, printer: ProgressPrinter):
        self.loop = loop
        self.pipeline = pipeline
        self.printer = printer
        self.exit_code: int | None = None
        self.signals: list[int] = []
        printer.on_closed = lambda: self.request(EXIT_OUTPUT_CLOSED, "the output was closed")
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_signal, sig)
                self.signals.append(sig)

    def _on_signal(self, sig: int) -> None:
        if self.exit_code is not None:           # the second Ctrl-C: the user means now
            log.warning("%s again: exiting at once", signal.Signals(sig).name)
            os._exit(128 + sig)
        self.request(128 + sig, f"{signal.Signals(sig).name} received")

    def request(self, code: int, why: str) -> None:
        if self.exit_code is not None:
            return
        self.exit_code = code
        aborted = self.pipeline.stop()
        log.info("%s: aborting (%s)", why, aborted)
        self.printer.line(f"{why}: aborting" + (" the planning call" if aborted["planning"] else "")
                          + (f" track {', '.join(aborted['tracks'])}" if aborted["tracks"] else ""))

    def close(self) -> None:
        for sig in self.signals:
            self.loop.remove_signal_handler(sig)


async def _run(pipeline: Pipeline, printer: ProgressPrinter, epic: str | None, resume_id: str | None,
               auto: bool, prices: dict, apply: bool = False) -> tuple[int, bool]:
    """The run; returns (exit code, whether a signal or a closed output stopped it)."""
    stopped: list[_Stop] = []
    code = await _run_steps(pipeline, printer, epic, resume_id, auto, stopped, prices, apply)
    return code, bool(stopped) and stopped[0].exit_code is not None


async def _run_steps(pipeline: Pipeline, printer: ProgressPrinter, epic: str | None, resume_id: str | None,
                     auto: bool, stopped: list[_Stop], prices: dict, apply: bool = False) -> int:
    loop = asyncio.get_running_loop()
    pipeline.event_queue.bind(loop)
    consumer = asyncio.create_task(_consume(pipeline.event_queue, printer))
    stop = _Stop(loop, pipeline, printer)
    stopped.append(stop)
    results: dict[str, str] = {}
    try:
        if resume_id:
            printer.line(f"Resuming track {resume_id}")
            results[resume_id] = await pipeline.resume(resume_id)
        else:
            printer.line(f"Tier 1 planning with {pipeline.provider} ...")
            tracks = await pipeline.plan(epic or "", pipeline.md_content)
            _settle(pipeline.event_queue, printer)
            for track in tracks:
                if stop.exit_code is not None:
                    break
                printer.line(f"Tier 2 breaking down track {track.id} ...")
                engine = await pipeline.accept_track(track)
                _settle(pipeline.event_queue, printer)
                if not auto or stop.exit_code is not None:
                    engine.release_track()
                    printer.line(f"Planned {len(track.tickets)} tickets; review "
                                 f"conductor/tracks/{track.id}/plan.md, then run "
                                 f"`mma-desk resume {track.id} --auto`")
                    results[track.id] = "planned"
                    continue
                printer.line(f"Tier 3 running {len(track.tickets)} tickets of {track.id} "
                             f"(up to {pipeline.settings.max_workers} in parallel)")
                results[track.id] = await engine.run(pipeline.md_content)
    except PlanningAborted as exc:
        printer.line(f"ABORTED: {exc}")
        return stop.exit_code or 1
    except (PlanningError, ValueError, ProviderError) as exc:
        printer.line(f"FAILED: {exc}")
        return stop.exit_code or 2
    except Exception as exc:                      # a bug: shown, not a traceback mid-output
        log.exception("the run failed")
        printer.line(f"FAILED: {type(exc).__name__}: {exc} (a bug; the traceback is in the log)")
        return 2
    finally:
        stop.close()
        _settle(pipeline.event_queue, printer)
        consumer.cancel()
    for stream_id, text in sorted(printer.final_text.items()):
        if stream_id.startswith("Tier 3") and text:
            first = text.strip().splitlines()[0] if text.strip() else ""
            printer.line(f"{stream_id}: {first[:100]}")
    for engine in pipeline.engines.values():
        _timeline(engine, printer.line)
    _usage_table(pipeline, prices, printer.line)
    failed = 0
    for track_id, status in results.items():
        track_engine = pipeline.engines.get(track_id)
        printer.line(f"Track {track_id}: {status}")
        if status == "aborted":
            printer.line(f"  resumable: mma-desk resume {track_id} --auto")
        if track_engine is not None and status not in ("completed", "planned"):
            for t in track_engine.dag.tickets.values():
                if t.status != COMPLETED:
                    failed += 1
                    printer.line(f"  {t.id} {t.status}: {t.blocked_reason or 'not run'}")
        if track_engine is not None and track_engine.workspace is not None and track_engine.workspace.isolated:
            _review(pipeline, track_engine, status, apply, printer)
    if stop.exit_code is not None:
        return stop.exit_code
    return 1 if failed or any(s not in ("completed", "planned") for s in results.values()) else 0


def _review(pipeline: Pipeline, engine: mac.ConductorEngine, status: str, apply: bool,
            printer: ProgressPrinter) -> None:
    """How to look at the track branch and apply it; with `--apply`, apply a completed track."""
    import track_git
    workspace = engine.workspace
    assert workspace is not None
    tid, project = engine.track.id, pipeline.project_dir
    commits = [t for t in engine.dag.tickets.values() if t.commit]
    printer.line(f"  {len(commits)} commit(s) on {workspace.branch}: "
                 + ", ".join(f"{t.id} [{t.commit[:7]}]" for t in commits))
    qa = workspace.qa_results
    if qa:
        printer.line(f"  QA: {sum(r.passed for r in qa)} of {len(qa)} run(s) passed (last: {qa[-1].verdict})")
    if apply and status == "completed":
        try:
            result = track_git.apply_track(project, tid)
        except (ValueError, track_git.GitError) as exc:
            printer.line(f"  NOT applied: {exc}")
            return
        printer.line(f"  {'applied' if result.applied else 'NOT applied'}: {result.message}")
        return
    if apply:
        printer.line("  not applied: the track did not complete (--apply needs every ticket completed, QA passing)")
    printer.line(f"  review: git log --stat {workspace.base[:7]}..{workspace.branch}")
    printer.line(f"  apply:  mma-desk apply {tid} --project {project}   (merges it into your branch)")
    printer.line(f"  drop:   mma-desk discard {tid} --project {project}")


def run_headless(epic: str | None, project_dir: str, *, provider: str | None = None, auto: bool = False,
                 max_workers: int | None = None, allow_tools: str | None = None, resume_id: str | None = None,
                 out: TextIO | None = None, show_streams: bool = False, git_init: bool = False,
                 apply: bool = False) -> int:
    import ai_client
    import project
    import track_git
    root = Path(project_dir)
    root.mkdir(parents=True, exist_ok=True)
    in_git = track_git.Repo.find(root) is not None
    notes: list[str] = []
    if not in_git and git_init and auto:
        try:
            track_git.init_repository(root)
        except (track_git.GitError, ValueError) as exc:
            ProgressPrinter(out or sys.stdout, auto, "read").line(f"FAILED: git init of {root}: {exc}")
            return 2
        notes.append(f"Made {root} a git repository (git init, first commit of what was there)")
        in_git = True
    if in_git:
        from track_workspace import prune_abandoned
        pruned = prune_abandoned(root)
        if pruned:
            notes.append(f"NOTE: removed {pruned} worktree(s) left by an earlier run that did not end cleanly")
    allow_tools = allow_tools or ("write" if in_git else "read")
    ai_client.configure(session_log_dir=root / SESSION_LOG_DIR)
    cfg, error = project.load_project_or_last_good(root)
    printer = ProgressPrinter(out or sys.stdout, auto, allow_tools, show_streams)
    for note in notes:
        printer.line(note)
    if error is not None:
        printer.line(f"WARNING: {error} (using the last good settings)")
    # Precedence: --provider / MMA_PROVIDER, then a saved project file, then a key in the env, then mock.
    saved = cfg.path.exists()
    provider = provider or (cfg.provider if saved else None)
    models = cfg.models if saved and provider in (None, cfg.provider) else None
    settings = RunSettings.for_provider(
        provider, models, max_workers=max_workers or cfg.budgets.max_workers, auto_queue=True,
        require_spawn_approval=False, tools_enabled=allow_tools in ("read", "write", "all"),
        approval_timeout=cfg.budgets.approval_timeout_s)
    pipeline = Pipeline(root, settings)
    if not epic and not resume_id:
        printer.line("nothing to do: give --epic TEXT or resume TRACK_ID")
        return 2
    prompt_cache.sweep_in_background(root)        # caches a dead run left behind
    pipeline.md_content = _curated_context(cfg, printer)
    hub = _start_mcp_servers(root, cfg.mcp_servers, printer) if settings.tools_enabled else None
    try:
        code, interrupted = asyncio.run(_run(pipeline, printer, epic, resume_id, auto, cfg.prices, apply))
    finally:
        if hub is not None:
            hub.close()                # the servers stop with the run, also after Ctrl-C
    if interrupted:
        _exit_now(code)
    if auto and not in_git:
        printer.line(f"NOTE: {root} is not a git repository, so the workers ran with read-only tools and changed "
                     "nothing. Run again with --git-init to make it one (git init + a first commit of what is "
                     "there); each ticket then works in its own git worktree on a track branch.")
    return code


def _curated_context(cfg: ProjectConfig, printer: ProgressPrinter) -> str:
    """The project's curated context, as the app sends it; what is missing is named."""
    from context_builder import project_context
    bundle = project_context(cfg)
    for error in bundle.errors:
        printer.line(f"WARNING: context: {error} (left out)")
    if bundle.markdown:
        printer.line(f"Context: {len(bundle.items)} item(s), about {bundle.total_tokens:,} tokens, "
                     f"from {cfg.path.name}")
    return bundle.markdown


def _start_mcp_servers(root: Path, servers: list, printer: ProgressPrinter):
    """The project's MCP servers for the run's workers (stopped when the run ends); a server
    that fails to start is reported and left out."""
    if not any(server.enabled for server in servers):
        return None
    from tools.mcp_client import FAILED, RUNNING, McpHub
    hub = McpHub(root)
    hub.apply(servers).result(timeout=hub.start_timeout * 2)
    for status in hub.statuses():
        if status.state == RUNNING:
            printer.line(f"MCP server {status.name}: {len(status.tools)} tool(s)")
        elif status.state == FAILED:
            printer.line(f"WARNING: MCP server {status.name} failed to start: {status.error}")
    return hub


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown, which takes about a second with the SDKs
    loaded: the user asked to stop, the track is saved, its lock dies with the process."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):   # a closed pipe has nothing to flush to
            stream.flush()
    os._exit(code)


def apply_or_discard(command: str, track_id: str, project_dir: str, out: TextIO | None = None) -> int:
    """`mma-desk apply|discard TRACK_ID --project DIR`: what the Changes window's buttons do."""
    import track_git
    stream = out or sys.stdout
    try:
        if command == "apply":
            result = track_git.apply_track(project_dir, track_id)
            print(result.message, file=stream, flush=True)
            return 0 if result.applied else 1
        gone = track_git.discard_track(project_dir, track_id)
        print(f"discarded track {track_id}: deleted {', '.join(gone) if gone else 'no branch (none left)'}",
              file=stream, flush=True)
        return 0
    except (ValueError, track_git.GitError) as exc:
        print(f"error: {exc}", file=stream, flush=True)
        return 1
