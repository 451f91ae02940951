"""Real temporary git repositories for the track-workspace tests, and a way to run a track on one."""
from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import ai_client
import events
from models import Ticket, Track
from pipeline import Pipeline
from run_settings import RunSettings

# Passes on a healthy tree; fails once a mock worker wrote "BREAKS" into its file.
QA_COMMAND = "test -f README.md && ! grep -rqs BREAKS mma_mock"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, qa_command: str | None = QA_COMMAND, run_after: str = "merge") -> Path:
    """A repository with a few committed files and (untracked, like a user's) mma_project.toml."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.invalid")
    (path / "README.md").write_text("# demo\n")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('hello')\n")
    (path / ".gitignore").write_text("*.log\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    if qa_command is not None:
        (path / "mma_project.toml").write_text(
            f'provider = "mock"\n\n[qa]\ncommand = "{qa_command}"\ntimeout_s = 60\nrun_after = "{run_after}"\n')
    return path


def worktrees(path: Path) -> list[str]:
    return [line for line in git(path, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def branch_files(path: Path, ref: str) -> set[str]:
    return set(git(path, "ls-tree", "-r", "--name-only", ref).splitlines())


def ticket_commits(path: Path, base: str, ref: str) -> list[str]:
    """The MMA-Ticket trailer of each commit in base..ref, oldest first."""
    out = git(path, "log", "--reverse", "--format=%(trailers:key=MMA-Ticket,valueonly)", f"{base}..{ref}")
    return [line.strip() for line in out.splitlines() if line.strip()]


class Requests:
    """Every Tier 3 request's last user message, by ticket (from the comms log)."""

    def __init__(self):
        self.by_ticket: dict[str, list[str]] = {}

    def __call__(self, entry: dict) -> None:
        label = entry.get("label", "")
        if entry.get("kind") == "request" and label.startswith("Tier 3 (Worker): "):
            messages = entry["payload"]["messages"]
            users = [m["content"] for m in messages if m.get("role") == "user"]
            if len(messages) == 1:                  # a new attempt (tool rounds carry more messages)
                self.by_ticket.setdefault(label.split(": ", 1)[1], []).append(users[-1] if users else "")


async def approve_everything(queue: events.AsyncEventQueue) -> None:
    """Consume a pipeline's events and approve every request (spawn, step, tool)."""
    while True:
        _name, payload = await queue.get()
        if isinstance(payload, events.ApprovalRequest) and not payload.future.done():
            payload.future.set_result({"approved": True})


def run_track(project: Path, tickets: list[Ticket], *, answer_spawn: Callable | None = None,
              track_id: str = "trk", **settings: object) -> tuple[object, Pipeline, Requests]:
    """Run one track through the real Pipeline/engine on the mock provider; tool writes approved.

    `answer_spawn(request, pending, engine)` (with require_spawn_approval) decides spawn approvals:
    True/False to answer now, None to keep it pending (`pending` holds the unanswered requests); it
    is asked again after every event.
    """
    knobs = {"auto_queue": True, "tools_enabled": True, "max_workers": 4, **settings}
    if answer_spawn is not None:
        knobs["require_spawn_approval"] = True
    pipeline = Pipeline(project, RunSettings.for_provider("mock", **knobs))
    track = Track(track_id, "Test track", "a track for the tests", tickets=tickets)
    requests = Requests()

    async def main():
        loop = asyncio.get_running_loop()
        pipeline.event_queue.bind(loop)
        engine = pipeline.engine_for(track)
        pending: list[events.ApprovalRequest] = []

        async def consume():
            while True:
                name, payload = await pipeline.event_queue.get()
                event = events.from_wire(name, payload)
                if isinstance(event, events.ApprovalRequest):
                    if event.kind != "spawn":
                        event.future.set_result({"approved": True})
                        continue
                    pending.append(event)
                for request in list(pending):
                    decision = answer_spawn(request, pending, engine) if answer_spawn else True
                    if decision is not None and not request.future.done():
                        pending.remove(request)
                        request.future.set_result({"approved": decision})
        consumer = asyncio.create_task(consume())
        try:
            status = await engine.run()
        finally:
            consumer.cancel()
        return engine, status

    old = ai_client.comms_log_callback
    ai_client.comms_log_callback = requests
    try:
        engine, status = asyncio.run(main())
    finally:
        ai_client.comms_log_callback = old
    engine.final_status = status
    return engine, pipeline, requests
