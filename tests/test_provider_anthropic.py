"""AnthropicAdapter through the real anthropic SDK against the loopback wire emulator."""
from __future__ import annotations

import base64
import logging
import socket
import threading

import pytest

import providers
from providers.anthropic_provider import AnthropicAdapter
from providers.base import (
    AuthError,
    BadRequestError,
    CancelledByUser,
    ChatRequest,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    ToolSpec,
)
from providers.retry import RetryPolicy, call_with_retries
from tests.wire_emulator import Reply, WireEmulator

FAKE_KEY = "sk-ant-FAKE-123"
MODEL = "claude-test-sonnet"
READ_FILE = ToolSpec("read_file", "Read a file from the project",
                     {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    for var in ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE",
                "ANTHROPIC_CUSTOM_HEADERS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "anthropic-config"))
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "no-credentials.toml"))


@pytest.fixture
def emu():
    with WireEmulator() as emulator:
        yield emulator


@pytest.fixture
def adapter(emu):
    return AnthropicAdapter(base_url=emu.base_url)


def request(text="Implement the parser", *, system="You are a Tier 3 worker.", tools=(), messages=None,
            **kwargs) -> ChatRequest:
    return ChatRequest(model=MODEL, system=system,
                       messages=messages or [{"role": "user", "content": text}], tools=list(tools), **kwargs)


class Collector:
    def __init__(self):
        self.pieces: list[str] = []

    def __call__(self, piece: str) -> None:
        self.pieces.append(piece)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- replies

def test_plain_reply(adapter, emu):
    emu.script("anthropic", Reply(text="Hello from Claude."))
    resp = adapter.generate(request())
    assert resp.text == "Hello from Claude."
    assert resp.tool_calls == [] and resp.stop_reason == "end_turn" and resp.model == MODEL
    [rec] = emu.requests
    assert rec.provider == "anthropic" and rec.path == "/v1/messages" and not rec.stream


def test_request_shape_on_the_wire(adapter, emu):
    adapter.generate(request("first line\nsecond", tools=[READ_FILE], temperature=0.3, max_output_tokens=321))
    rec = emu.requests[-1]
    body = rec.body
    assert body["model"] == MODEL and body["max_tokens"] == 321
    assert "temperature" not in body    # not part of this API version; the adapter drops it
    assert body["system"] == "You are a Tier 3 worker."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "first line\nsecond"}]}]
    assert body["tools"] == [{"name": "read_file", "description": "Read a file from the project",
                              "input_schema": READ_FILE.parameters}]
    assert "stream" not in body or body["stream"] is False
    assert rec.auth_present
    assert all(v == "[REDACTED]" for k, v in rec.headers.items() if k.lower() in ("authorization", "x-api-key"))


def test_streamed_reply_chunks_arrive_in_order(adapter, emu):
    chunks = ["The ", "quick brown ", "fox ", "jumps."]
    emu.script("anthropic", Reply(text="".join(chunks), chunks=chunks))
    got = Collector()
    resp = adapter.generate(request(), on_chunk=got)
    assert got.pieces == chunks
    assert resp.text == "".join(chunks) and resp.stop_reason == "end_turn"
    assert emu.requests[-1].stream and emu.requests[-1].body["stream"] is True


def test_default_responder_streams_tier3_text(adapter, emu):
    got = Collector()
    resp = adapter.generate(request("Add logging to cli.py\nmore detail"), on_chunk=got)
    assert len(got.pieces) > 1 and "".join(got.pieces) == resp.text
    assert "Add logging to cli.py" in resp.text


@pytest.mark.parametrize("stream", [False, True])
def test_usage_equals_what_the_emulator_billed(adapter, emu, stream):
    emu.script("anthropic", Reply(text="counted", usage=(123, 45)))
    resp = adapter.generate(request(), on_chunk=Collector() if stream else None)
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (123, 45)
    assert emu.billed[MODEL] == {"input_tokens": 123, "output_tokens": 45, "requests": 1}


@pytest.mark.parametrize("stream", [False, True])
def test_usage_totals_match_billing_over_several_calls(adapter, emu, stream):
    total_in = total_out = 0
    for i in range(3):
        resp = adapter.generate(request(f"task {i} " * (i + 1)), on_chunk=Collector() if stream else None)
        total_in += resp.usage.input_tokens
        total_out += resp.usage.output_tokens
    assert (total_in, total_out) == emu.billed_total()
    assert total_in > 0 and total_out > 1   # stream usage comes from message_delta, not message_start


def test_model_name_reaches_the_wire(adapter, emu):
    adapter.generate(request())
    adapter.generate(ChatRequest(model="claude-other-haiku", system="", messages=[{"role": "user", "content": "x"}]),
                     on_chunk=Collector())
    assert [r.model for r in emu.requests] == [MODEL, "claude-other-haiku"]
    assert "system" not in emu.requests[-1].body        # empty system prompt is omitted
    assert set(emu.billed) == {MODEL, "claude-other-haiku"}


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_stop_reason(adapter, emu, stream):
    emu.script("anthropic", Reply(text="cut off", stop_reason="max_tokens"))
    assert adapter.generate(request(), on_chunk=Collector() if stream else None).stop_reason == "max_tokens"


def test_images_are_sent_as_base64_blocks(adapter, emu):
    png = b"\x89PNG\r\n\x1a\nfake"
    adapter.generate(request(messages=[{"role": "user", "content": "what is this?",
                                        "images": [{"mime_type": "image/png", "data": png}]}]))
    blocks = emu.requests[-1].body["messages"][0]["content"]
    assert blocks[0]["type"] == "image"
    assert blocks[0]["source"]["media_type"] == "image/png"
    assert base64.b64decode(blocks[0]["source"]["data"]) == png
    assert blocks[1] == {"type": "text", "text": "what is this?"}


# ---------------------------------------------------------------- tools

@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(adapter, emu, stream):
    emu.script("anthropic", Reply(text="Let me read it.",
                                  tool_calls=[{"name": "read_file", "args": {"path": "src/a.py", "n": [1, 2]}}]))
    req = request("Fix a.py", tools=[READ_FILE])
    got = Collector()
    first = adapter.generate(req, on_chunk=got if stream else None)
    assert first.stop_reason == "tool_use"
    [call] = first.tool_calls
    assert call.name == "read_file" and call.args == {"path": "src/a.py", "n": [1, 2]}
    assert call.id.startswith("toolu_")
    if stream:
        assert "".join(got.pieces) == "Let me read it."

    messages = req.messages + [
        {"role": "assistant", "content": first.text, "tool_calls": [call.to_dict()]},
        {"role": "tool", "tool_call_id": call.id, "name": "read_file", "content": "print('hi')"},
    ]
    final = adapter.generate(request(messages=messages, tools=[READ_FILE]), on_chunk=Collector() if stream else None)
    assert final.stop_reason == "end_turn" and final.tool_calls == []
    assert "print('hi')" in final.text

    sent = emu.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [{"type": "text", "text": "Let me read it."},
                                  {"type": "tool_use", "id": call.id, "name": "read_file",
                                   "input": {"path": "src/a.py", "n": [1, 2]}}]
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": call.id, "content": "print('hi')"}]


def test_parallel_tool_results_share_one_user_turn(adapter, emu):
    emu.script("anthropic", Reply(tool_calls=[{"name": "read_file", "args": {"path": "a"}},
                                              {"name": "read_file", "args": {"path": "b"}}]))
    first = adapter.generate(request(tools=[READ_FILE]), on_chunk=Collector())
    assert len(first.tool_calls) == 2 and len({c.id for c in first.tool_calls}) == 2
    messages = [{"role": "user", "content": "go"},
                {"role": "assistant", "content": "", "tool_calls": [c.to_dict() for c in first.tool_calls]},
                {"role": "tool", "tool_call_id": first.tool_calls[0].id, "name": "read_file", "content": "A"},
                {"role": "tool", "tool_call_id": first.tool_calls[1].id, "name": "read_file", "content": "B"},
                {"role": "user", "content": "and now?"}]
    adapter.generate(request(messages=messages, tools=[READ_FILE]))
    sent = emu.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[1]["content"]] == ["tool_use", "tool_use"]   # no empty text block
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "tool_result", "text"]


# ---------------------------------------------------------------- retries and errors

def test_429_then_success_honours_retry_after(adapter, emu):
    emu.inject("429", retry_after="1")
    delays = []
    resp = call_with_retries(lambda: adapter.generate(request(), on_chunk=Collector()),
                             RetryPolicy(jitter=0.0, base_delay=0.1), sleep=delays.append)
    assert resp.text and delays == [1.0]
    assert [r.fault for r in emu.requests] == ["429", None]


def test_429_maps_to_rate_limit_error(adapter, emu):
    emu.inject("429", retry_after="7")
    with pytest.raises(RateLimitError) as info:
        adapter.generate(request())
    assert info.value.retryable and info.value.retry_after == 7.0 and info.value.status == 429
    assert "rate_limit_error" in str(info.value)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", ["500", "529"])
def test_server_error_then_success(adapter, emu, stream, status):
    emu.inject(status)
    delays = []
    resp = call_with_retries(lambda: adapter.generate(request(), on_chunk=Collector() if stream else None),
                             RetryPolicy(jitter=0.0), sleep=delays.append)
    assert resp.text and delays == [0.5]
    assert len(emu.requests) == 2


def test_sdk_does_not_retry_by_itself(adapter, emu):
    emu.inject("500", count=5)
    with pytest.raises(ServerError) as info:
        adapter.generate(request())
    assert info.value.status == 500 and len(emu.requests) == 1
    emu.reset()
    emu.inject("429", count=5)
    with pytest.raises(RateLimitError):
        adapter.generate(request(), on_chunk=Collector())
    assert len(emu.requests) == 1


def test_truncated_stream_raises_stream_interrupted(adapter, emu):
    text = "one two three four five six seven eight nine ten"
    emu.script("anthropic", Reply(text=text))
    emu.inject("truncate")
    got = Collector()
    with pytest.raises(StreamInterruptedError) as info:
        adapter.generate(request(), on_chunk=got)
    err = info.value
    assert err.retryable
    assert err.partial_text and text.startswith(err.partial_text) and err.partial_text != text
    assert "".join(got.pieces) == err.partial_text
    assert MODEL not in emu.billed


def test_error_event_inside_the_stream_keeps_partial_text(adapter, emu):
    text = "one two three four five six seven eight nine ten"
    emu.script("anthropic", Reply(text=text))
    emu.inject("stream_error")
    got = Collector()
    with pytest.raises(StreamInterruptedError) as info:
        adapter.generate(request(), on_chunk=got)
    err = info.value
    assert err.retryable and "overloaded" in str(err).lower()
    assert err.partial_text and text.startswith(err.partial_text) and "".join(got.pieces) == err.partial_text
    resp = call_with_retries(lambda: adapter.generate(request(), on_chunk=Collector()),
                             RetryPolicy(jitter=0.0), sleep=lambda s: None)
    assert resp.stop_reason == "end_turn"

def test_truncated_stream_is_retried_to_success(adapter, emu):
    emu.inject("truncate")
    resp = call_with_retries(lambda: adapter.generate(request(), on_chunk=Collector()),
                             RetryPolicy(jitter=0.0), sleep=lambda s: None)
    assert resp.stop_reason == "end_turn" and resp.text
    assert [r.fault for r in emu.requests] == ["truncate", None]


def test_truncated_json_body_is_a_retryable_server_error(adapter, emu):
    emu.inject("truncate")
    with pytest.raises(ServerError) as info:
        adapter.generate(request())
    assert info.value.retryable


@pytest.mark.parametrize("status", ["401", "403"])
def test_auth_errors_carry_a_hint(adapter, emu, status):
    emu.inject(status)
    with pytest.raises(AuthError) as info:
        adapter.generate(request(), on_chunk=Collector())
    assert not info.value.retryable and info.value.status == int(status)
    assert "ANTHROPIC_API_KEY" in info.value.hint and "ANTHROPIC_API_KEY" in info.value.user_message()


def test_wrong_key_is_an_auth_error(emu):
    emu.expected_keys["anthropic"] = "sk-ant-THE-RIGHT-ONE"
    with pytest.raises(AuthError):
        AnthropicAdapter(base_url=emu.base_url).generate(request())
    assert AnthropicAdapter(api_key="sk-ant-THE-RIGHT-ONE", base_url=emu.base_url).generate(request()).text


@pytest.mark.parametrize("status", ["400", "404"])
def test_bad_request_keeps_the_provider_message(adapter, emu, status):
    emu.inject(status)
    with pytest.raises(BadRequestError) as info:
        adapter.generate(request())
    assert "(injected)" in str(info.value) and not info.value.retryable


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_body_is_a_clear_provider_error(adapter, emu, stream):
    emu.inject("malformed")
    with pytest.raises(ProviderError) as info:
        adapter.generate(request(), on_chunk=Collector() if stream else None)
    assert isinstance(info.value, ServerError)
    assert "malformed" in str(info.value)


def test_connection_refused_is_unavailable_and_not_retried():
    adapter = AnthropicAdapter(base_url=f"http://127.0.0.1:{free_port()}")
    calls = []

    def attempt():
        calls.append(1)
        return adapter.generate(request())

    with pytest.raises(ProviderUnavailableError) as info:
        call_with_retries(attempt, RetryPolicy(), sleep=lambda s: None)
    assert len(calls) == 1 and not info.value.retryable
    assert "ANTHROPIC_BASE_URL" in info.value.hint


def test_cancel_between_chunks(adapter, emu):
    cancel = threading.Event()
    emu.script("anthropic", Reply(text="a b c d e f g h", chunks=["a ", "b ", "c ", "d ", "e ", "f ", "g ", "h"]))
    emu.inject("slow", delay=0.05)
    got = []

    def on_chunk(piece):
        got.append(piece)
        if len(got) == 2:
            cancel.set()

    with pytest.raises(CancelledByUser):
        adapter.generate(request(cancel_event=cancel), on_chunk=on_chunk)
    assert got == ["a ", "b "]


# ---------------------------------------------------------------- construction and secrets

def test_defaults_come_from_env_and_registry(emu, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
    adapter = providers.make_adapter("anthropic")
    assert isinstance(adapter, AnthropicAdapter) and adapter.name == "anthropic"
    assert adapter.generate(request()).text
    assert len(emu.requests) == 1


def test_key_from_private_credentials_file(emu, monkeypatch, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    path = tmp_path / "creds.toml"
    path.write_text('[anthropic]\napi_key = "sk-ant-FROM-FILE-1"\n')
    path.chmod(0o600)
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(path))
    emu.expected_keys["anthropic"] = "sk-ant-FROM-FILE-1"
    assert AnthropicAdapter(base_url=emu.base_url).generate(request()).text


def test_no_key_is_unavailable_with_hint(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ProviderUnavailableError) as info:
        AnthropicAdapter(base_url="http://127.0.0.1:9")
    assert "ANTHROPIC_API_KEY" in info.value.hint


def test_each_adapter_has_its_own_client(emu):
    a, b = AnthropicAdapter(base_url=emu.base_url), AnthropicAdapter(base_url=emu.base_url)
    assert a._client is not b._client
    assert a._client.max_retries == 0


def test_api_key_never_appears_in_errors_or_logs(adapter, emu, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[ProviderError] = []
    adapter.generate(request())
    adapter.generate(request(), on_chunk=Collector())
    for kind in ("429", "500", "401", "400", "truncate", "malformed"):
        for stream in (False, True):
            emu.inject(kind)
            with pytest.raises(ProviderError) as info:
                adapter.generate(request(), on_chunk=Collector() if stream else None)
            errors.append(info.value)
    with pytest.raises(ProviderError) as info:
        AnthropicAdapter(base_url=f"http://127.0.0.1:{free_port()}").generate(request())
    errors.append(info.value)
    assert len(errors) == 13
    for err in errors:
        for text in (str(err), repr(err), err.hint, err.partial_text, err.user_message()):
            assert FAKE_KEY not in text
    assert caplog.records
    for record in caplog.records:
        assert FAKE_KEY not in record.getMessage()
        assert FAKE_KEY not in str(record.exc_text or "")
    for rec in emu.requests:
        assert FAKE_KEY not in str(rec.headers)
