"""GUI test hygiene: signal handlers after the Test Engine, an offline environment, session logs."""
import signal

import pytest

import ai_client

# The ImGui Test Engine installs a C crash handler for these signals and leaves it in place
# after its context is gone.  A later SIGPIPE (a loopback HTTP peer closing its socket, which
# Python normally ignores) then runs that handler and kills the whole test process.
_CRASH_SIGNALS = {signal.SIGPIPE: signal.SIG_IGN, signal.SIGSEGV: signal.SIG_DFL,
                  signal.SIGABRT: signal.SIG_DFL, signal.SIGFPE: signal.SIG_DFL,
                  signal.SIGILL: signal.SIG_DFL, signal.SIGBUS: signal.SIG_DFL}


@pytest.fixture(autouse=True)
def restore_signal_handlers_after_the_test_engine():
    yield
    for sig, handler in _CRASH_SIGNALS.items():
        signal.signal(sig, handler)


@pytest.fixture(autouse=True)
def restore_session_log_dir():
    """An App points ai_client's session-log folder at its project; put it back afterwards."""
    before = ai_client._session_log_dir
    yield
    ai_client._session_log_dir = before


@pytest.fixture
def mock_env(monkeypatch, tmp_path):
    """Offline: the mock provider streams instantly, no key anywhere, no hooks from the env."""
    monkeypatch.setenv("MMA_MOCK_CHUNK_DELAY", "0")
    monkeypatch.delenv("MMA_PROVIDER", raising=False)
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "no-credentials.toml"))
    for key in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY", "MMA_TEST_HOOKS",
                "MMA_HOOK_TOKEN"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def app(xvfb_display, mock_env, tmp_path):
    """The real App on the mock provider, for tests that open its window (shut down after)."""
    from tests.gui.helpers import make_app
    the_app = make_app(tmp_path)
    yield the_app
    the_app.shutdown()
