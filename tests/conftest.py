"""Shared fixtures.  GUI tests ask for `xvfb_display`: one private Xvfb per test session.

The Xvfb helper is shared with the benchmarks (bench/common.py): it starts Xvfb with
-displayfd so it picks a free display number itself (no race on :99), -noreset so a test
connecting while another disconnects does not fail, and reports Xvfb's own log if it does
not come up.  An existing DISPLAY is reused.
"""
from __future__ import annotations

import os

import pytest

from bench.common import xvfb_display as _private_xvfb


@pytest.fixture(scope="session")
def xvfb_display():
    display = _private_xvfb()
    try:
        name = display.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield name
    finally:
        display.__exit__(None, None, None)


@pytest.fixture
def artifacts_dir():
    """Where tests save screenshots for people to look at (kept after the run)."""
    path = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)


@pytest.fixture
def fake_app():
    """A FakeApp (tests/test_api_hooks.py): the hook API's App contract, with no window."""
    from tests.test_api_hooks import FakeApp
    app = FakeApp()
    yield app
    app.close()
