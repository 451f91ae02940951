"""Unit tests for providers.retry (and providers.credentials, which has no test module of its own)."""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import credentials
from providers.base import (
    AuthError,
    BadRequestError,
    CancelledByUser,
    ProviderError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from providers.retry import RetryPolicy, call_with_retries, classify_transport_error, parse_retry_after


class Flaky:
    """fn() that raises the given errors in order, then returns `result`."""

    def __init__(self, *errors: BaseException, result: object = "ok"):
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class FakeSleep:
    def __init__(self):
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


NO_JITTER = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=20.0, jitter=0.0)


# ---------------------------------------------------------------- call_with_retries

def test_success_first_try_does_not_sleep():
    sleep = FakeSleep()
    fn = Flaky()
    assert call_with_retries(fn, NO_JITTER, sleep=sleep) == "ok"
    assert fn.calls == 1 and sleep.delays == []


def test_retryable_errors_are_retried_until_success():
    sleep = FakeSleep()
    fn = Flaky(ServerError("boom"), RateLimitError("slow"), StreamInterruptedError("cut", partial_text="x"))
    assert call_with_retries(fn, NO_JITTER, sleep=sleep) == "ok"
    assert fn.calls == 4
    assert sleep.delays == [0.5, 1.0, 2.0]  # exponential growth, no jitter


def test_attempts_are_bounded_and_last_error_reraised():
    sleep = FakeSleep()
    errors = [ServerError(f"boom {i}") for i in range(10)]
    fn = Flaky(*errors)
    with pytest.raises(ServerError) as info:
        call_with_retries(fn, RetryPolicy(max_attempts=3, jitter=0), sleep=sleep)
    assert fn.calls == 3
    assert info.value is errors[2]
    assert len(sleep.delays) == 2


def test_single_attempt_policy_never_sleeps():
    sleep = FakeSleep()
    fn = Flaky(ServerError("boom"))
    with pytest.raises(ServerError):
        call_with_retries(fn, RetryPolicy(max_attempts=1), sleep=sleep)
    assert fn.calls == 1 and sleep.delays == []


@pytest.mark.parametrize("error", [AuthError("no"), BadRequestError("bad"), ProviderError("generic"),
                                   CancelledByUser("stop")])
def test_non_retryable_errors_are_not_retried(error):
    sleep = FakeSleep()
    fn = Flaky(error)
    with pytest.raises(type(error)) as info:
        call_with_retries(fn, NO_JITTER, sleep=sleep)
    assert info.value is error
    assert fn.calls == 1 and sleep.delays == []


def test_non_provider_exceptions_propagate_without_retry():
    sleep = FakeSleep()
    fn = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        call_with_retries(fn, NO_JITTER, sleep=sleep)
    assert fn.calls == 1 and sleep.delays == []


def test_backoff_is_capped_at_max_delay():
    sleep = FakeSleep()
    fn = Flaky(*[ServerError("x") for _ in range(7)])
    policy = RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=5.0, jitter=0.0)
    call_with_retries(fn, policy, sleep=sleep)
    assert sleep.delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


def test_retry_after_is_honoured_and_capped():
    sleep = FakeSleep()
    fn = Flaky(RateLimitError("slow", retry_after=3.0), RateLimitError("slower", retry_after=999.0))
    policy = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=20.0, jitter=0.25)
    call_with_retries(fn, policy, sleep=sleep)
    assert sleep.delays[0] >= 3.0          # never shorter than Retry-After
    assert sleep.delays[1] == 20.0         # capped at max_delay


def test_retry_after_shorter_than_backoff_keeps_backoff():
    sleep = FakeSleep()
    fn = Flaky(ServerError("a"), ServerError("b"), RateLimitError("c", retry_after=0.1))
    call_with_retries(fn, NO_JITTER, sleep=sleep)
    assert sleep.delays == [0.5, 1.0, 2.0]


def test_on_retry_receives_attempt_error_and_delay():
    seen = []
    errors = [ServerError("one"), RateLimitError("two", retry_after=1.5)]
    fn = Flaky(*errors)
    call_with_retries(fn, NO_JITTER, sleep=FakeSleep(), on_retry=lambda a, e, d: seen.append((a, e, d)))
    assert [(a, e) for a, e, _ in seen] == [(1, errors[0]), (2, errors[1])]
    assert seen[0][2] == 0.5 and seen[1][2] == 1.5


def test_jitter_stays_within_bounds_and_varies():
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=100.0, jitter=0.25)
    rng = random.Random(7)
    for retry in (1, 2, 3):
        base = policy.backoff(retry)
        samples = [policy.delay_for(retry, rng=rng) for _ in range(200)]
        assert all(base * 0.75 <= s <= base * 1.25 for s in samples)
        assert max(samples) - min(samples) > base * 0.2   # it really jitters


@settings(max_examples=200, deadline=None)
@given(retry=st.integers(min_value=1, max_value=80),
       base=st.floats(min_value=0, max_value=10), cap=st.floats(min_value=0, max_value=60),
       jitter=st.floats(min_value=0, max_value=1),
       retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=1000)),
       seed=st.integers(min_value=0, max_value=2**32))
def test_delay_is_always_within_zero_and_max_delay(retry, base, cap, jitter, retry_after, seed):
    policy = RetryPolicy(max_attempts=3, base_delay=base, max_delay=cap, jitter=jitter)
    delay = policy.delay_for(retry, retry_after, random.Random(seed))
    assert 0.0 <= delay <= cap
    if retry_after is not None:
        assert delay >= min(retry_after, cap)


def test_policy_validates_arguments():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


def test_cancel_event_interrupts_the_wait():
    cancel = threading.Event()
    fn = Flaky(ServerError("down"), result="never")
    policy = RetryPolicy(max_attempts=3, base_delay=30.0, max_delay=30.0, jitter=0.0)
    timer = threading.Timer(0.1, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(CancelledByUser):
            call_with_retries(fn, policy, cancel_event=cancel)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5.0
    assert fn.calls == 1


def test_cancel_event_already_set_skips_the_call():
    cancel = threading.Event()
    cancel.set()
    fn = Flaky()
    with pytest.raises(CancelledByUser):
        call_with_retries(fn, NO_JITTER, cancel_event=cancel)
    assert fn.calls == 0


def test_cancel_event_unset_waits_and_retries():
    cancel = threading.Event()
    fn = Flaky(ServerError("blip"))
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, jitter=0.0)
    assert call_with_retries(fn, policy, cancel_event=cancel) == "ok"
    assert fn.calls == 2


def test_retry_logging_redacts_secrets(monkeypatch, caplog):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-FAKE-123")
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", "/nonexistent/mma-creds.toml")
    caplog.set_level(logging.DEBUG)
    fn = Flaky(ServerError("echoed key sk-ant-FAKE-123 in message"))
    call_with_retries(fn, NO_JITTER, sleep=FakeSleep())
    assert caplog.records
    assert all("sk-ant-FAKE-123" not in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- helpers

def test_parse_retry_after_forms():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(future) <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_classify_transport_error():
    assert classify_transport_error(ConnectionRefusedError(111, "Connection refused")) == "refused"
    assert classify_transport_error(ConnectionResetError(104, "Connection reset by peer")) == "transient"
    assert classify_transport_error(TimeoutError("timed out")) == "transient"
    assert classify_transport_error(ValueError("nope")) is None
    wrapper = RuntimeError("wrapped")
    wrapper.__cause__ = ConnectionResetError("reset")
    assert classify_transport_error(wrapper) == "transient"
    import httpx2
    assert classify_transport_error(httpx2.ConnectError("[Errno 111] Connection refused")) == "refused"
    assert classify_transport_error(httpx2.RemoteProtocolError("peer closed")) == "transient"
    assert classify_transport_error(httpx2.ReadTimeout("slow")) == "transient"


# ---------------------------------------------------------------- credentials

@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "credentials.toml"
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(path))
    return path


def write_creds(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)


def test_env_keys_take_precedence(clean_env, monkeypatch):
    write_creds(clean_env, '[gemini]\napi_key = "AIzaFROMFILE-000000"\n')
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaGOOGLE-1111111")
    assert credentials.get_api_key("gemini") == "AIzaGOOGLE-1111111"
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaGEMINI-2222222")
    assert credentials.get_api_key("gemini") == "AIzaGEMINI-2222222"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "  sk-ant-ENV-3333  ")
    assert credentials.get_api_key("anthropic") == "sk-ant-ENV-3333"
    assert credentials.has_key("anthropic")
    assert credentials.get_api_key("nope") is None


def test_private_file_is_used(clean_env):
    write_creds(clean_env, '[gemini]\napi_key = "AIzaFROMFILE-000000"\n[anthropic]\napi_key = "sk-ant-FILE-9"\n')
    assert credentials.get_api_key("gemini") == "AIzaFROMFILE-000000"
    assert credentials.get_api_key("anthropic") == "sk-ant-FILE-9"
    assert set(credentials.known_secrets()) == {"AIzaFROMFILE-000000", "sk-ant-FILE-9"}


def test_group_readable_file_is_refused(clean_env, caplog):
    write_creds(clean_env, '[anthropic]\napi_key = "sk-ant-FILE-SHARED"\n', mode=0o644)
    with caplog.at_level(logging.WARNING, logger="providers.credentials"):
        assert credentials.get_api_key("anthropic") is None
        assert not credentials.has_key("anthropic")
    assert any("readable by group/others" in r.getMessage() for r in caplog.records)
    assert all("sk-ant-FILE-SHARED" not in r.getMessage() for r in caplog.records)


def test_missing_and_invalid_files(clean_env, caplog):
    assert credentials.get_api_key("gemini") is None
    write_creds(clean_env, 'api_key = "sk-ant-BROKEN-1" [[[\n')
    with caplog.at_level(logging.WARNING, logger="providers.credentials"):
        assert credentials.get_api_key("anthropic") is None
    assert all("sk-ant-BROKEN-1" not in r.getMessage() for r in caplog.records)


def test_redact_known_secrets_and_patterns(clean_env, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "plainsecretvalue42")
    text = ("key plainsecretvalue42 / x-goog-api-key: abcDEF123 / Authorization: Bearer tok.en-123456 "
            "/ sk-ant-api03-XYZ_abc / AIzaSyA1234567890abcdef / https://h/v1?key=SECRETQ&x=1 "
            '/ {"x-api-key": "hdrsecret99"}')
    out = credentials.redact(text)
    for secret in ("plainsecretvalue42", "abcDEF123", "tok.en-123456", "sk-ant-api03-XYZ_abc",
                   "AIzaSyA1234567890abcdef", "SECRETQ", "hdrsecret99"):
        assert secret not in out
    assert out.count("[REDACTED]") >= 7
    assert credentials.redact("nothing to hide here") == "nothing to hide here"
    assert credentials.redact("") == ""


def test_redacting_filter_on_handler(clean_env, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaFAKE-KEY-123456")
    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Capture()
    handler.addFilter(credentials.RedactingFilter())
    logger = logging.getLogger("test.redact.child")
    logger.addHandler(handler)
    try:
        logger.warning("key is %s", "AIzaFAKE-KEY-123456")
    finally:
        logger.removeHandler(handler)
    assert records == ["key is [REDACTED]"]


def test_redacting_filter_survives_a_warning_logged_while_redacting(tmp_path, monkeypatch, caplog):
    """An unsafe credentials file makes known_secrets() log a warning; through the filter that
    warning must not recurse (it used to loop until RecursionError)."""
    import logging

    from providers import credentials
    path = tmp_path / "creds.toml"
    path.write_text('[gemini]\napi_key = "AIzaFROMFILE-123456789"\n')
    path.chmod(0o644)                                   # group/other readable: ignored with a warning
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(path))
    monkeypatch.setattr(credentials, "_SECRETS_TTL_S", 0.0)
    handler = logging.StreamHandler()
    handler.addFilter(credentials.RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("somewhere").warning("key AIzaSyFAKE-1234567890 in a message")
    finally:
        root.removeHandler(handler)
    assert any("readable by group/others" in r.getMessage() for r in caplog.records)
