"""atomic_files: atomic replace, no temp files left behind, permission bits with keep_mode."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import atomic_files
from atomic_files import atomic_write_bytes, atomic_write_json, atomic_write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replaces_an_existing_file_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "data.bin"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write_bytes(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert [p.name for p in target.parent.iterdir()] == ["data.bin"]   # no temp file left


def test_text_and_json_helpers(tmp_path):
    atomic_write_text(tmp_path / "t.txt", "h\u00e9llo\r\n")
    assert (tmp_path / "t.txt").read_bytes() == "h\u00e9llo\r\n".encode()
    atomic_write_json(tmp_path / "d.json", {"k": "\u00e9", "n": [1, 2]})
    text = (tmp_path / "d.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"k": "\u00e9", "n": [1, 2]}
    assert "\u00e9" in text and text.endswith("\n")


def test_failed_replace_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_files.os, "replace", no_space)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic_files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write_bytes(tmp_path / "new.txt", b"data")
    assert list(tmp_path.iterdir()) == []


def test_interrupt_during_write_is_cleaned_up_too(tmp_path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic_files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "x", b"data")
    assert list(tmp_path.iterdir()) == []


def test_keep_mode_preserves_an_existing_files_permission_bits(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("old\n")
    script.chmod(0o750)
    atomic_write_bytes(script, b"#!/bin/sh\necho hi\n", keep_mode=True)
    assert _mode(script) == 0o750
    assert script.read_bytes() == b"#!/bin/sh\necho hi\n"


def test_keep_mode_gives_a_new_file_the_mode_a_plain_open_gives(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"x")
    atomic_write_bytes(tmp_path / "new.txt", b"x", keep_mode=True)
    assert _mode(tmp_path / "new.txt") == _mode(plain)


def test_without_keep_mode_the_file_is_private(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("{}")
    target.chmod(0o644)
    atomic_write_bytes(target, b"{}")
    assert _mode(target) == 0o600


def test_a_hard_link_is_detached_not_written_through(tmp_path):
    original = tmp_path / "original.txt"
    original.write_bytes(b"keep me")
    link = tmp_path / "link.txt"
    os.link(original, link)
    atomic_write_bytes(link, b"new", keep_mode=True)
    assert link.read_bytes() == b"new"
    assert original.read_bytes() == b"keep me"


def test_remove_stale_temp_files_keeps_real_files(tmp_path):
    from atomic_files import remove_stale_temp_files
    (tmp_path / "state.json").write_text("{}")
    (tmp_path / ".state.json.abc123.tmp").write_text("{half")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [".state.json.abc123.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_remove_stale_temp_files_with_names_leaves_other_files_alone(tmp_path):
    from atomic_files import remove_stale_temp_files
    (tmp_path / ".tracks.md.x1y2z3.tmp").write_text("half")
    (tmp_path / ".users-own.notes.tmp").write_text("not ours")
    removed = remove_stale_temp_files(tmp_path, names=("tracks.md",))
    assert [p.name for p in removed] == [".tracks.md.x1y2z3.tmp"]
    assert (tmp_path / ".users-own.notes.tmp").exists()


def test_the_sweep_keeps_a_live_writers_temp_file_and_removes_a_dead_ones(tmp_path):
    """Resume sweeps temp files a kill -9 left; another process still writing keeps its own."""
    import subprocess
    import sys

    from atomic_files import remove_stale_temp_files
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        (tmp_path / f".state.json.{live.pid}-abc123.tmp").write_text("{being written")
        (tmp_path / f".state.json.{dead.pid}-def456.tmp").write_text("{left by a kill -9")
        (tmp_path / f".state.json.{os.getpid()}-ghi789.tmp").write_text("{this process, another thread")
        removed = remove_stale_temp_files(tmp_path)
        assert [p.name for p in removed] == [f".state.json.{dead.pid}-def456.tmp"]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [f".state.json.{live.pid}-abc123.tmp", f".state.json.{os.getpid()}-ghi789.tmp"])
    finally:
        live.stdin.close()
        live.wait(10)


def test_temp_files_carry_the_writers_pid(tmp_path, monkeypatch):
    seen = []
    real_replace = atomic_files.os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        real_replace(src, dst)
    monkeypatch.setattr(atomic_files.os, "replace", spy)
    atomic_write_text(tmp_path / "state.json", "{}")
    assert seen and seen[0].startswith(f".state.json.{os.getpid()}-") and seen[0].endswith(".tmp")
