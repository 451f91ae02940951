"""The console entry point's sub-commands are wired to the modules that implement them."""
import shutil
from pathlib import Path

import cli

FIXTURES = Path(__file__).parent / "fixtures"


def test_skeleton_command_prints_views(tmp_path, capsys):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f(x: int) -> int:\n    '''Doc.'''\n    return x + 1\n\n"
                   "# [HOT]\ndef g():\n    return 42\n")
    assert cli.main(["skeleton", str(src)]) == 0
    out = capsys.readouterr().out
    assert "def f(x: int) -> int:" in out and "return x + 1" not in out and "return 42" not in out
    assert cli.main(["skeleton", "--mode", "curated", str(src)]) == 0
    assert "return 42" in capsys.readouterr().out


def test_skeleton_of_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["skeleton", str(tmp_path / "nope.py")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_import_track_prints_the_dag_and_writes_it_into_a_project(tmp_path, capsys):
    plan = FIXTURES / "mma_pipeline_fix_plan.md"
    src = tmp_path / "src" / "mma_pipeline_fix_20260301"
    src.mkdir(parents=True)
    shutil.copy(plan, src / "plan.md")
    project = tmp_path / "proj"
    assert cli.main(["import-track", str(src), "--project", str(project)]) == 0
    out = capsys.readouterr().out
    assert "1.1" in out and "3.2" in out
    assert (project / "conductor" / "tracks" / "mma_pipeline_fix_20260301" / "state.json").exists()


def test_no_arguments_opens_the_gui(monkeypatch):
    calls = []
    import gui_2
    monkeypatch.setattr(gui_2, "main", lambda argv: calls.append(argv) or 0)
    assert cli.main([]) == 0
    assert cli.main(["--project", "x", "--provider", "mock"]) == 0
    assert cli.main(["gui", "--enable-test-hooks"]) == 0
    assert calls == [[], ["--project", "x", "--provider", "mock"], ["--enable-test-hooks"]]
