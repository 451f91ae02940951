"""A ticket's context files that cannot be given whole are named, never silently dropped.

A real engine run (the Gemini SDK against the loopback wire emulator): the ticket asks for a
file that exists, one that does not, one outside the project root, one too big for the budget
and a Python file that fits only as a skeleton.  The model's request must carry the files that
fit and a note naming each of the others with the reason; the user gets an `ErrorEvent` (and
a `LogLine` for the skeleton) naming them; the log says so too.
"""
from __future__ import annotations

import asyncio
import logging

import pytest

import context_builder
import events
import multi_agent_conductor as mac
import worker
from models import COMPLETED, Ticket, Track
from run_settings import RunSettings
from tests.wire_emulator import WireEmulator

MID_PY = "".join(f"def step_{i}(x):\n    total = x * {i}\n    return total + {i} - 1\n\n" for i in range(40))


@pytest.fixture
def emulator():
    with WireEmulator() as emu:
        yield emu


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "small.txt").write_text("SMALL-FILE-CONTENT\n")
    (root / "big.txt").write_text("BIG-FILE-CONTENT " * 300 + "\n")
    (root / "mid.py").write_text(MID_PY)
    (tmp_path / "secret.txt").write_text("OUTSIDE-SECRET\n")
    return root


async def _run(track: Track, settings: RunSettings, base_dir: str) -> list:
    loop = asyncio.get_running_loop()
    q = events.AsyncEventQueue()
    q.bind(loop)
    engine = mac.ConductorEngine(track, q, settings=settings, base_dir=base_dir)
    status = await asyncio.wait_for(engine.run(), 60)
    seen = []
    while not q.empty():
        seen.append(await q.get())
    return status, engine, seen


async def test_left_out_context_files_are_told_to_the_worker_and_the_user(emulator, project, monkeypatch, caplog):
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaFAKE-context-files-test-0123456789")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emulator.base_url)
    model = "gemini-2.5-flash-lite"
    budget = 300
    monkeypatch.setattr(worker, "TICKET_FILES_SHARE", budget / context_builder.context_window_for(model))
    asked = ["small.txt", "missing.py", "../secret.txt", "big.txt", "mid.py"]
    track = Track("t_ctx", "context files", tickets=[Ticket("A", "use the files", context_requirements=asked)])
    settings = RunSettings.for_provider("gemini", auto_queue=True, diagnose_failures=False, tools_enabled=False)
    caplog.set_level(logging.INFO, logger="worker")

    status, engine, seen = await _run(track, settings, str(project))

    assert status == "completed" and engine.dag.tickets["A"].status == COMPLETED
    tier3 = [r for r in emulator.requests if r.model == model]
    assert len(tier3) == 1
    sent = _texts(tier3[0].body)
    assert "SMALL-FILE-CONTENT" in sent                          # what fits is there, whole
    assert "def step_0(x)" in sent and "total = x * 0" not in sent   # mid.py as a skeleton
    assert "BIG-FILE-CONTENT" not in sent and "OUTSIDE-SECRET" not in sent
    assert "Context files not included as asked" in sent
    for needle in ("`missing.py`: file not found", "`../secret.txt`: outside the project root",
                   "`big.txt`: over the context budget", "`mid.py`: shown as a skeleton"):
        assert needle in sent, f"the worker was not told: {needle}"

    errors = [p for n, p in seen if n == events.MMA_ERROR]
    assert len(errors) == 1 and errors[0]["ticket_id"] == "A"
    for name, why in (("missing.py", "file not found"), ("../secret.txt", "outside the project root"),
                      ("big.txt", "over the context budget")):
        assert f"{name} ({why}" in errors[0]["message"], errors[0]["message"]
    assert "small.txt" not in errors[0]["message"] and errors[0]["hint"]
    logs = [p["message"] for n, p in seen if n == events.MMA_LOG]
    assert any("mid.py" in m and "skeleton" in m for m in logs), logs
    assert any(r.levelno == logging.WARNING and "missing.py" in r.getMessage() for r in caplog.records)


def _texts(body) -> str:
    """Every string in a request body, joined (the context may sit in any part of it)."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return "\n".join(_texts(v) for v in body.values())
    if isinstance(body, list):
        return "\n".join(_texts(v) for v in body)
    return ""


def test_files_that_all_fit_come_with_no_note(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    files = context_builder.files_within_budget(["a.py"], tmp_path, 10_000)
    assert "x = 1" in files.markdown and "not included" not in files.markdown
    assert files.left_out == () and files.trimmed == ()


def test_a_glob_that_matches_nothing_is_named(tmp_path):
    files = context_builder.files_within_budget(["src/**/*.rs"], tmp_path, 10_000)
    assert [(e.path, e.message) for e in files.left_out] == [("src/**/*.rs", "glob matched no files")]
    assert "- `src/**/*.rs`: glob matched no files; not included" in files.markdown
