"""GeminiAdapter through the real google-genai SDK against the loopback wire emulator."""
from __future__ import annotations

import base64
import logging
import socket
import threading

import pytest

import providers
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
from providers.gemini import GeminiAdapter
from providers.retry import RetryPolicy, call_with_retries
from tests.wire_emulator import Reply, WireEmulator

FAKE_KEY = "AIzaFAKE-KEY-123456"
MODEL = "gemini-test-flash"
READ_FILE = ToolSpec("read_file", "Read a file from the project",
                     {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)
    for var in ("GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
                "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MMA_CREDENTIALS_FILE", str(tmp_path / "no-credentials.toml"))


@pytest.fixture
def emu():
    with WireEmulator() as emulator:
        yield emulator


@pytest.fixture
def adapter(emu):
    return GeminiAdapter(base_url=emu.base_url)


def request(text="Implement the parser", *, system="You are a Tier 3 worker.", tools=(), messages=None,
            **kwargs) -> ChatRequest:
    return ChatRequest(model=MODEL, system=system,
                       messages=messages or [{"role": "user", "content": text}], tools=list(tools), **kwargs)


class Collector:
    def __init__(self):
        self.pieces: list[str] = []

    def __call__(self, piece: str) -> None:
        self.pieces.append(piece)


# ---------------------------------------------------------------- replies

def test_plain_reply(adapter, emu):
    emu.script("gemini", Reply(text="Hello from Gemini."))
    resp = adapter.generate(request())
    assert resp.text == "Hello from Gemini."
    assert resp.tool_calls == []
    assert resp.stop_reason == "end_turn"
    assert resp.model == MODEL
    [rec] = emu.requests
    assert rec.provider == "gemini" and not rec.stream
    assert rec.path == f"/v1/models/{MODEL}:generateContent"


def test_request_shape_on_the_wire(adapter, emu):
    adapter.generate(request("first line\nsecond", tools=[READ_FILE], temperature=0.2,
                             max_output_tokens=321))
    body = emu.requests[-1].body
    assert body["systemInstruction"]["parts"][0]["text"] == "You are a Tier 3 worker."
    assert body["contents"] == [{"role": "user", "parts": [{"text": "first line\nsecond"}]}]
    decl = body["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "read_file" and decl["description"] == "Read a file from the project"
    assert (decl.get("parametersJsonSchema") or decl.get("parameters_json_schema")
            or decl.get("parameters"))["properties"]["path"]["type"] == "string"
    assert body["generationConfig"]["maxOutputTokens"] == 321
    assert body["generationConfig"]["temperature"] == pytest.approx(0.2)
    assert emu.requests[-1].headers["x-goog-api-key"] == "[REDACTED]"
    assert emu.requests[-1].auth_present


def test_streamed_reply_chunks_arrive_in_order(adapter, emu):
    chunks = ["The ", "quick brown ", "fox ", "jumps."]
    emu.script("gemini", Reply(text="".join(chunks), chunks=chunks))
    got = Collector()
    resp = adapter.generate(request(), on_chunk=got)
    assert got.pieces == chunks
    assert resp.text == "".join(chunks)
    assert resp.stop_reason == "end_turn"
    rec = emu.requests[-1]
    assert rec.stream and rec.path == f"/v1/models/{MODEL}:streamGenerateContent?alt=sse"


def test_default_responder_streams_tier3_text(adapter, emu):
    got = Collector()
    resp = adapter.generate(request("Add logging to cli.py\nmore detail"), on_chunk=got)
    assert len(got.pieces) > 1
    assert "".join(got.pieces) == resp.text
    assert "Add logging to cli.py" in resp.text


@pytest.mark.parametrize("stream", [False, True])
def test_usage_equals_what_the_emulator_billed(adapter, emu, stream):
    emu.script("gemini", Reply(text="counted", usage=(123, 45)))
    resp = adapter.generate(request(), on_chunk=Collector() if stream else None)
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (123, 45)
    adapter.generate(request("a longer prompt " * 20), on_chunk=Collector() if stream else None)
    billed = emu.billed[MODEL]
    assert billed["requests"] == 2
    assert billed["input_tokens"] == 123 + (len("a longer prompt " * 20) + len("You are a Tier 3 worker.") + 3) // 4
    assert billed["output_tokens"] > 45


@pytest.mark.parametrize("stream", [False, True])
def test_usage_totals_match_billing_over_several_calls(adapter, emu, stream):
    total_in = total_out = 0
    for i in range(3):
        resp = adapter.generate(request(f"task {i} " * (i + 1)), on_chunk=Collector() if stream else None)
        total_in += resp.usage.input_tokens
        total_out += resp.usage.output_tokens
    assert (total_in, total_out) == emu.billed_total()
    assert total_in > 0 and total_out > 0


def test_model_name_reaches_the_wire(adapter, emu):
    adapter.generate(request())
    adapter.generate(ChatRequest(model="gemini-other-pro", system="", messages=[{"role": "user", "content": "x"}]),
                     on_chunk=Collector())
    assert [r.model for r in emu.requests] == [MODEL, "gemini-other-pro"]
    assert set(emu.billed) == {MODEL, "gemini-other-pro"}


def test_max_tokens_stop_reason(adapter, emu):
    emu.script("gemini", Reply(text="cut off", stop_reason="max_tokens"))
    assert adapter.generate(request()).stop_reason == "max_tokens"


def test_images_are_sent_inline(adapter, emu):
    png = b"\x89PNG\r\n\x1a\nfake"
    adapter.generate(request(messages=[{"role": "user", "content": "what is this?",
                                        "images": [{"mime_type": "image/png", "data": png}]}]))
    parts = emu.requests[-1].body["contents"][0]["parts"]
    assert parts[0] == {"text": "what is this?"}
    inline = parts[1]["inlineData"]
    assert inline.get("mimeType", inline.get("mime_type")) == "image/png"   # the SDK sends snake_case
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == png


# ---------------------------------------------------------------- tools

@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(adapter, emu, stream):
    emu.script("gemini", Reply(text="Let me read it.", tool_calls=[{"name": "read_file", "args": {"path": "a.py"}}]))
    req = request("Fix a.py", tools=[READ_FILE])
    first = adapter.generate(req, on_chunk=Collector() if stream else None)
    assert first.stop_reason == "tool_use"
    [call] = first.tool_calls
    assert call.name == "read_file" and call.args == {"path": "a.py"} and call.id

    messages = req.messages + [
        {"role": "assistant", "content": first.text, "tool_calls": [call.to_dict()]},
        {"role": "tool", "tool_call_id": call.id, "name": "read_file", "content": "print('hi')"},
    ]
    final = adapter.generate(request(messages=messages, tools=[READ_FILE]),
                             on_chunk=Collector() if stream else None)
    assert final.stop_reason == "end_turn" and final.tool_calls == []
    assert "print('hi')" in final.text

    contents = emu.requests[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    model_parts = contents[1]["parts"]
    assert model_parts[0] == {"text": "Let me read it."}
    assert model_parts[1]["functionCall"]["name"] == "read_file"
    assert model_parts[1]["functionCall"]["args"] == {"path": "a.py"}
    assert "id" not in model_parts[1]["functionCall"]       # local ids never go on the wire
    response = contents[2]["parts"][0]["functionResponse"]
    assert response["name"] == "read_file"
    assert response["response"] == {"result": "print('hi')"}


def test_provider_call_ids_and_thought_signatures_round_trip(adapter, emu):
    signature = base64.b64encode(b"opaque-signature").decode()
    emu.script("gemini", Reply(tool_calls=[
        {"name": "read_file", "args": {"path": "a.py"}, "id": "fc-1", "thought_signature": signature},
        {"name": "read_file", "args": {"path": "b.py"}, "id": "fc-2"}]))
    first = adapter.generate(request(tools=[READ_FILE]))
    assert [c.id for c in first.tool_calls] == ["fc-1", "fc-2"]
    messages = [{"role": "user", "content": "go"},
                {"role": "assistant", "content": "", "tool_calls": [c.to_dict() for c in first.tool_calls]},
                {"role": "tool", "tool_call_id": "fc-1", "name": "read_file", "content": "A"},
                {"role": "tool", "tool_call_id": "fc-2", "name": "read_file", "content": "B"}]
    adapter.generate(request(messages=messages, tools=[READ_FILE]))
    contents = emu.requests[-1].body["contents"]
    calls = contents[1]["parts"]
    assert calls[0]["functionCall"]["id"] == "fc-1"
    assert calls[0]["thoughtSignature"] == signature
    assert "thoughtSignature" not in calls[1]
    # both results travel in one user turn, matching the two calls
    assert [p["functionResponse"]["id"] for p in contents[2]["parts"]] == ["fc-1", "fc-2"]
    assert len(contents) == 3


def test_generated_ids_are_unique(adapter, emu):
    emu.script("gemini", Reply(tool_calls=[{"name": "read_file", "args": {"path": "x"}},
                                           {"name": "read_file", "args": {"path": "y"}}]))
    resp = adapter.generate(request(tools=[READ_FILE]), on_chunk=Collector())
    assert len({c.id for c in resp.tool_calls}) == 2


# ---------------------------------------------------------------- retries and errors

def test_429_then_success_honours_retry_after(adapter, emu):
    emu.inject("429", retry_after="1")
    delays = []
    resp = call_with_retries(lambda: adapter.generate(request()), RetryPolicy(jitter=0.0, base_delay=0.1),
                             sleep=delays.append)
    assert resp.text
    assert delays == [1.0]
    assert [r.fault for r in emu.requests] == ["429", None]


def test_429_maps_to_rate_limit_error(adapter, emu):
    emu.inject("429", retry_after="7")
    with pytest.raises(RateLimitError) as info:
        adapter.generate(request(), on_chunk=Collector())
    assert info.value.retryable and info.value.retry_after == 7.0 and info.value.status == 429
    assert "RESOURCE_EXHAUSTED" in str(info.value)


@pytest.mark.parametrize("stream", [False, True])
def test_500_then_success(adapter, emu, stream):
    emu.inject("500")
    delays = []
    got = Collector()
    resp = call_with_retries(lambda: adapter.generate(request(), on_chunk=got if stream else None),
                             RetryPolicy(jitter=0.0), sleep=delays.append)
    assert resp.text and delays == [0.5]
    assert len(emu.requests) == 2


def test_sdk_does_not_retry_by_itself(adapter, emu):
    emu.inject("500", count=5)
    with pytest.raises(ServerError) as info:
        adapter.generate(request())
    assert info.value.status == 500
    assert len(emu.requests) == 1
    emu.reset()
    emu.inject("503", count=5)
    with pytest.raises(ServerError):
        adapter.generate(request(), on_chunk=Collector())
    assert len(emu.requests) == 1


def test_truncated_stream_raises_stream_interrupted(adapter, emu):
    text = "one two three four five six seven eight nine ten"
    emu.script("gemini", Reply(text=text))
    emu.inject("truncate")
    got = Collector()
    with pytest.raises(StreamInterruptedError) as info:
        adapter.generate(request(), on_chunk=got)
    err = info.value
    assert err.retryable
    assert err.partial_text and text.startswith(err.partial_text) and err.partial_text != text
    assert "".join(got.pieces) == err.partial_text
    assert MODEL not in emu.billed   # nothing was delivered in full


def test_error_event_inside_the_stream_keeps_partial_text(adapter, emu):
    text = "one two three four five six seven eight nine ten"
    emu.script("gemini", Reply(text=text))
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
        adapter.generate(request())
    assert not info.value.retryable
    assert info.value.status == int(status)
    assert "GEMINI_API_KEY" in info.value.hint
    assert "GEMINI_API_KEY" in info.value.user_message()


def test_invalid_key_400_is_an_auth_error(emu):
    emu.expected_keys["gemini"] = "AIzaTHE-RIGHT-KEY-000"
    adapter = GeminiAdapter(base_url=emu.base_url)
    with pytest.raises(AuthError) as info:
        adapter.generate(request(), on_chunk=Collector())
    assert "API key not valid" in str(info.value)
    assert "GEMINI_API_KEY" in info.value.hint
    good = GeminiAdapter(api_key="AIzaTHE-RIGHT-KEY-000", base_url=emu.base_url)
    assert good.generate(request()).text


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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = GeminiAdapter(base_url=f"http://127.0.0.1:{port}")
    calls = []

    def attempt():
        calls.append(1)
        return adapter.generate(request())

    with pytest.raises(ProviderUnavailableError) as info:
        call_with_retries(attempt, RetryPolicy(), sleep=lambda s: None)
    assert len(calls) == 1 and not info.value.retryable
    assert "GOOGLE_GEMINI_BASE_URL" in info.value.hint


def test_cancel_between_chunks(adapter, emu):
    cancel = threading.Event()
    emu.script("gemini", Reply(text="a b c d e f g h", chunks=["a ", "b ", "c ", "d ", "e ", "f ", "g ", "h"]))
    emu.inject("slow", delay=0.05)
    got = []

    def on_chunk(piece):
        got.append(piece)
        if len(got) == 2:
            cancel.set()

    with pytest.raises(CancelledByUser):
        adapter.generate(request(cancel_event=cancel), on_chunk=on_chunk)
    assert got == ["a ", "b "]


def test_cancel_before_call_sends_nothing(adapter, emu):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledByUser):
        adapter.generate(request(cancel_event=cancel))
    assert emu.requests == []


# ---------------------------------------------------------------- construction and secrets

def test_defaults_come_from_env_and_registry(emu, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
    adapter = providers.make_adapter("gemini")
    assert isinstance(adapter, GeminiAdapter) and adapter.name == "gemini"
    assert adapter.generate(request()).text
    assert len(emu.requests) == 1


def test_google_api_key_is_accepted(emu, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaGOOGLE-KEY-99999")
    emu.expected_keys["gemini"] = "AIzaGOOGLE-KEY-99999"
    assert GeminiAdapter(base_url=emu.base_url).generate(request()).text


def test_no_key_is_unavailable_with_hint(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ProviderUnavailableError) as info:
        GeminiAdapter(base_url="http://127.0.0.1:9")
    assert "GEMINI_API_KEY" in info.value.hint


def test_each_adapter_has_its_own_client(emu):
    a, b = GeminiAdapter(base_url=emu.base_url), GeminiAdapter(base_url=emu.base_url)
    assert a._client is not b._client


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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProviderError) as info:
        GeminiAdapter(base_url=f"http://127.0.0.1:{port}").generate(request())
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
