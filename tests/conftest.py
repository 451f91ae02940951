"""Shared fixtures.  GUI tests ask for `xvfb_display`: one private Xvfb per test session.

Xvfb is started with -displayfd so it picks a free display number itself (no
race on :99), and the fixture fails loudly with Xvfb's own log if it does not
come up.  An existing DISPLAY is reused.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest


@pytest.fixture(scope="session")
def xvfb_display():
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: run `apt-get install -y xvfb` (the .ci/run script does)")
    log = tempfile.NamedTemporaryFile(prefix="xvfb-", suffix=".log", delete=False)
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp", "-noreset"], pass_fds=(write_fd,), stdout=log, stderr=log)
    os.close(write_fd)
    buf = b""
    while not buf.endswith(b"\n"):          # Xvfb writes "N\n" once it accepts connections
        chunk = os.read(read_fd, 16)
        if not chunk:
            os.close(read_fd)
            pytest.fail("Xvfb did not start: " + open(log.name).read())
        buf += chunk
    os.close(read_fd)
    number = buf.decode().strip()
    socket = f"/tmp/.X11-unix/X{number}"
    deadline = time.monotonic() + 5
    while not os.path.exists(socket) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    try:
        yield os.environ["DISPLAY"]
    finally:
        os.environ.pop("DISPLAY", None)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def artifacts_dir():
    """Where tests save screenshots for people to look at (kept after the run)."""
    path = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)
