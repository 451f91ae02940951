"""The repo map Tier 2 gets (repo_map.py) and the check of the files its tickets name."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import events
import planning
import project
import repo_map
from file_cache import estimate_tokens
from models import Track
from pipeline import Pipeline
from providers import mock
from run_settings import RunSettings


def _mixed_project(root: Path) -> Path:
    (root / "web").mkdir(parents=True)
    (root / "server").mkdir()
    (root / "node_modules" / "left-pad").mkdir(parents=True)
    (root / "web" / "api.ts").write_text(
        "export interface Order { id: string }\nexport function fetchOrders(): Promise<Order[]> {\n"
        "  return fetch('/orders').then(r => r.json());\n}\n")
    (root / "web" / "view.tsx").write_text(
        "import { fetchOrders } from './api';\nexport function OrderList() {\n  fetchOrders();\n"
        "  return <ul></ul>;\n}\n")
    (root / "server" / "orders.go").write_text(
        "package server\n\ntype OrderStore struct{}\n\nfunc (s *OrderStore) ListOrders() []string {\n"
        "\treturn nil\n}\n")
    (root / "server" / "main.go").write_text(
        "package server\n\nfunc main() {\n\tstore := OrderStore{}\n\tstore.ListOrders()\n}\n")
    (root / "tool.py").write_text("def reindex_orders():\n    '''Rebuild the index.'''\n    return 1\n")
    (root / "README.md").write_text("# Shop\n")
    (root / "node_modules" / "left-pad" / "index.js").write_text("module.exports = function leftPad() {};\n")
    return root


def test_map_lists_files_and_top_level_symbols_ranked_and_within_budget(tmp_path: Path):
    root = _mixed_project(tmp_path)
    rmap = repo_map.build_repo_map(root, 1024)
    assert "node_modules/left-pad/index.js" not in rmap.files
    assert set(rmap.files) == {"web/api.ts", "web/view.tsx", "server/orders.go", "server/main.go",
                               "tool.py", "README.md"}
    lines = rmap.text.splitlines()
    for file, symbols in (("web/api.ts", ["  function fetchOrders", "  interface Order"]),
                          ("server/orders.go", ["  struct OrderStore", "  method OrderStore.ListOrders"]),
                          ("tool.py", ["  function reindex_orders"])):
        at = lines.index(file)
        assert sorted(lines[at + 1:at + 1 + len(symbols)]) == sorted(symbols)
    # api.ts and orders.go are used by another file each: they rank above the files that use them
    assert rmap.files.index("web/api.ts") < rmap.files.index("web/view.tsx")
    assert rmap.files.index("server/orders.go") < rmap.files.index("server/main.go")
    assert rmap.shown == 6 and rmap.tokens <= 1024 and estimate_tokens(rmap.text) == rmap.tokens


def test_a_small_budget_cuts_the_map_and_says_so(tmp_path: Path):
    root = _mixed_project(tmp_path)
    rmap = repo_map.build_repo_map(root, 30)
    assert rmap.tokens <= 30 and 0 < rmap.shown < 6
    assert rmap.text.rstrip().endswith(f"({6 - rmap.shown} more files not shown)")
    assert repo_map.build_repo_map(root, 0).text == ""


def test_files_named_in_the_track_rank_first_and_git_ignores_count(tmp_path: Path):
    root = _mixed_project(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("tool.py\n")
    rmap = repo_map.build_repo_map(root, 1024, mentioned="Make tool.py faster? no: fix main.go")
    assert rmap.files[0] == "server/main.go"
    assert "tool.py" not in rmap.files and ".gitignore" in rmap.files


def test_missing_context_files(tmp_path: Path):
    root = _mixed_project(tmp_path)
    assert repo_map.missing_context_files(
        ["web/api.ts", "./tool.py", "server/*.go", "web/nope.ts", "../outside.py", "lib/*.rs"], root) == \
        ["web/nope.ts", "../outside.py", "lib/*.rs"]


def test_tier2_gets_the_map_and_a_missing_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = _mixed_project(tmp_path)
    rmap = repo_map.build_repo_map(root, 1024)
    seen: list[str] = []
    original = mock.MockAdapter._tier2

    def tier2(self, request):
        seen.append(mock._last_user_text(request))
        tickets = json.loads(original(self, request))
        tickets[2]["context_requirements"] = ["web/missing.ts"]
        return json.dumps(tickets)
    monkeypatch.setattr(mock.MockAdapter, "_tier2", tier2)
    loop_events: list = []

    class Recorder:
        def put_threadsafe(self, name, payload):
            loop_events.append(payload)
    monkeypatch.setattr(events, "emit", lambda queue, event: loop_events.append(event))
    result = planning.generate_tickets(Track("t", "Orders page", "List the orders"), provider="mock",
                                       event_queue=Recorder(), repo_map=rmap)  # type: ignore[arg-type]
    assert "<REPO_MAP>\n" + rmap.text + "</REPO_MAP>" in seen[0]
    by_id = {t.id: t for t in result.value}
    assert by_id["T1"].context_requirements == [rmap.files[0]]
    assert by_id["T3"].context_requirements == ["web/missing.ts"], "kept, so the worker sees the intent"
    errors = [e for e in loop_events if isinstance(e, events.ErrorEvent)]
    assert [(e.ticket_id, e.message) for e in errors] == [
        ("T3", "Tier 2: ticket T3 names context file 'web/missing.ts', which does not exist")]


async def test_pipeline_plans_tickets_that_name_existing_files(tmp_path: Path):
    root = _mixed_project(tmp_path)
    cfg = project.ProjectConfig(root)
    cfg.budgets.repo_map_tokens = 200
    project.save_project(cfg)
    pipeline = Pipeline(root, RunSettings.for_provider("mock", auto_queue=True, require_spawn_approval=False,
                                                       tools_enabled=False), persist=False)
    tracks = await pipeline.plan("Show the orders page")
    engine = await pipeline.accept_track(tracks[0])
    named = [p for t in engine.track.tickets for p in t.context_requirements]
    assert named and all((root / p).is_file() for p in named)
    assert project.load_project(root).budgets.repo_map_tokens == 200


def test_project_file_validates_the_budget(tmp_path: Path):
    (tmp_path / project.PROJECT_FILE).write_text("[budgets]\nrepo_map_tokens = -5\n")
    with pytest.raises(project.ProjectFileError, match="repo_map_tokens"):
        project.load_project(tmp_path)
    (tmp_path / project.PROJECT_FILE).write_text("[budgets]\nrepo_map_tokens = 0\n")
    assert project.load_project(tmp_path).budgets.repo_map_tokens == 0
