"""GUI test hygiene."""
import signal

import pytest

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
