"""The wire emulator itself, spoken to with plain http.client (no SDK)."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models import Ticket, Track
from tests.wire_emulator import FaultPlan, Reply, WireEmulator, parse_prompt, split_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def emu():
    with WireEmulator() as emulator:
        yield emulator


def post(emu_or_url, path, body, headers=None, raw: bytes | None = None):
    url = emu_or_url if isinstance(emu_or_url, str) else emu_or_url.base_url
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        data = raw if raw is not None else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        try:
            payload = resp.read()
        except http.client.IncompleteRead as exc:
            payload = exc.partial
        return resp.status, dict(resp.getheaders()), payload
    finally:
        conn.close()


def gemini_body(text, system=""):
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    return body


def anthropic_body(text, system="", stream=False, model="claude-x"):
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    if system:
        body["system"] = system
    if stream:
        body["stream"] = True
    return body


def sse_events(payload: bytes) -> list[tuple[str | None, str]]:
    events = []
    for frame in payload.decode().split("\n\n"):
        if not frame.strip():
            continue
        name, data = None, []
        for line in frame.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        events.append((name, "\n".join(data)))
    return events


def gemini_text(payload: dict) -> str:
    return "".join(p.get("text", "") for p in payload["candidates"][0]["content"]["parts"])


# ---------------------------------------------------------------- basics

def test_binds_loopback_only_and_stops(emu):
    assert emu._server.server_address[0] == "127.0.0.1"
    assert emu.base_url.startswith("http://127.0.0.1:")
    other = WireEmulator().start()
    port = other.port
    other.stop()
    with pytest.raises(OSError):
        post(f"http://127.0.0.1:{port}", "/v1/messages", anthropic_body("x"))


def test_gemini_json_and_both_api_versions(emu):
    for version in ("v1", "v1beta"):
        status, headers, payload = post(emu, f"/{version}/models/gem-a:generateContent",
                                        gemini_body("hello"), {"x-goog-api-key": "AIzaSECRET-000000"})
        assert status == 200 and headers["Content-Type"] == "application/json"
        data = json.loads(payload)
        assert data["candidates"][0]["finishReason"] == "STOP"
        assert data["usageMetadata"]["promptTokenCount"] >= 1
    assert [r.model for r in emu.requests] == ["gem-a", "gem-a"]
    assert emu.requests[0].headers["x-goog-api-key"] == "[REDACTED]"
    assert "AIzaSECRET" not in repr(emu.requests)


def test_gemini_sse_stream_carries_finish_marker_last(emu):
    emu.script("gemini", Reply(text="alpha beta gamma", chunks=["alpha ", "beta ", "gamma"], usage=(9, 3)))
    status, headers, payload = post(emu, "/v1beta/models/gem-s:streamGenerateContent?alt=sse", gemini_body("hi"))
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert headers["Connection"] == "close"
    events = [json.loads(d) for _, d in sse_events(payload)]
    assert [gemini_text(e) for e in events] == ["alpha ", "beta ", "gamma"]
    assert [e["candidates"][0].get("finishReason") for e in events] == [None, None, "STOP"]
    assert events[-1]["usageMetadata"] == {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12}
    assert emu.billed == {"gem-s": {"input_tokens": 9, "output_tokens": 3, "requests": 1}}


def test_anthropic_json_and_sse(emu):
    emu.script("anthropic", Reply(text="hi there", usage=(5, 2)),
               Reply(text="streamed text here", tool_calls=[{"name": "t", "args": {"k": "v"}}], usage=(6, 4)))
    status, _, payload = post(emu, "/v1/messages", anthropic_body("x"), {"x-api-key": "sk-ant-zzz"})
    msg = json.loads(payload)
    assert status == 200 and msg["content"] == [{"type": "text", "text": "hi there"}]
    assert msg["usage"] == {"input_tokens": 5, "output_tokens": 2} and msg["stop_reason"] == "end_turn"

    status, headers, payload = post(emu, "/v1/messages", anthropic_body("x", stream=True))
    assert headers["Content-Type"] == "text/event-stream"
    events = sse_events(payload)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, data, strict=True))
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta"
                   and d["delta"]["type"] == "text_delta")
    assert text == "streamed text here"
    tool_json = "".join(d["delta"]["partial_json"] for d in data if d["type"] == "content_block_delta"
                        and d["delta"]["type"] == "input_json_delta")
    assert json.loads(tool_json) == {"k": "v"}
    assert data[-2]["delta"]["stop_reason"] == "tool_use" and data[-2]["usage"] == {"output_tokens": 4}
    assert emu.billed["claude-x"] == {"input_tokens": 11, "output_tokens": 6, "requests": 2}
    assert emu.requests[0].headers["x-api-key"] == "[REDACTED]"


def test_unknown_route_and_bad_json(emu):
    status, _, payload = post(emu, "/v2/whatever", {})
    assert status == 404 and json.loads(payload)["error"]["code"] == 404
    status, _, payload = post(emu, "/v1/messages", None, raw=b"{not json")
    assert status == 400 and json.loads(payload)["type"] == "error"


# ---------------------------------------------------------------- scripting

def test_script_queue_provider_routing_and_callables(emu):
    emu.script(None, "for anyone")
    emu.script("anthropic", Reply(text="for claude"))
    emu.script("gemini", lambda provider, model, body: Reply(text=f"{provider}/{model}"))
    _, _, p1 = post(emu, "/v1/messages", anthropic_body("x"))
    _, _, p2 = post(emu, "/v1/messages", anthropic_body("x"))
    _, _, p3 = post(emu, "/v1/models/gm:generateContent", gemini_body("x"))
    assert json.loads(p1)["content"][0]["text"] == "for anyone"
    assert json.loads(p2)["content"][0]["text"] == "for claude"
    assert gemini_text(json.loads(p3)) == "gemini/gm"


def test_responder_hook_and_fallthrough():
    def responder(provider, model, body):
        if model == "special":
            return Reply(text="special reply")
        return None

    with WireEmulator(responder=responder) as emu:
        _, _, p1 = post(emu, "/v1/messages", anthropic_body("x", model="special"))
        _, _, p2 = post(emu, "/v1/messages", anthropic_body("Do the thing", model="normal"))
    assert json.loads(p1)["content"][0]["text"] == "special reply"
    assert "Do the thing" in json.loads(p2)["content"][0]["text"]


def test_computed_usage_from_lengths(emu):
    text = "x" * 400
    _, _, payload = post(emu, "/v1/messages", anthropic_body(text, system="s" * 40))
    msg = json.loads(payload)
    assert msg["usage"]["input_tokens"] == 110          # (400 + 40) / 4
    assert msg["usage"]["output_tokens"] == -(-len(msg["content"][0]["text"]) // 4)


def test_split_text_concatenates():
    for text in ("", "one", "a b c d e f g h i j k l m n o p", "word " * 50, "nospaceslongword" * 5):
        pieces = split_text(text)
        assert "".join(pieces) == text
        assert all(pieces)


def test_reply_chunks_must_match_text():
    with pytest.raises(ValueError):
        Reply(text="abc", chunks=["a", "b"]).pieces()


# ---------------------------------------------------------------- default responder (MMA tiers)

@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
def test_default_tier1_returns_one_track(emu, provider):
    goal = "Build a TODO app with tags\nIt should be fast."
    if provider == "gemini":
        _, _, payload = post(emu, "/v1/models/m:generateContent", gemini_body(goal, "You are Tier 1, the PM."))
        text = gemini_text(json.loads(payload))
    else:
        _, _, payload = post(emu, "/v1/messages", anthropic_body(goal, "You are Tier 1, the PM."))
        text = json.loads(payload)["content"][0]["text"]
    tracks = json.loads(text)
    assert isinstance(tracks, list) and len(tracks) == 1
    track = Track.from_dict({**tracks[0], "tickets": []})
    assert track.title and "TODO app" in track.title
    assert set(tracks[0]) >= {"id", "title", "description"}


def test_default_tier2_returns_a_ticket_dag_with_parallel_branch(emu):
    _, _, payload = post(emu, "/v1/messages",
                         anthropic_body("Track: TODO app", "You are Tier 2, the tech lead. Tier 1 wrote the track."))
    tickets = [Ticket.from_dict(t) for t in json.loads(json.loads(payload)["content"][0]["text"])]
    assert 3 <= len(tickets) <= 4
    ids = {t.id for t in tickets}
    assert all(set(t.depends_on) <= ids for t in tickets)
    # acyclic: a topological order exists
    done: set[str] = set()
    remaining = list(tickets)
    while remaining:
        ready = [t for t in remaining if set(t.depends_on) <= done]
        assert ready, "dependency cycle"
        done |= {t.id for t in ready}
        remaining = [t for t in remaining if t not in ready]
    # two tickets that can run in parallel: same dependencies, neither depends on the other
    parallel = [(a, b) for a in tickets for b in tickets if a.id < b.id and a.depends_on == b.depends_on
                and a.depends_on and a.id not in b.depends_on and b.id not in a.depends_on]
    assert parallel


def test_default_tier4_and_tier3(emu):
    _, _, p4 = post(emu, "/v1/messages", anthropic_body("Ticket T2 failed: KeyError", "You are Tier 4 QA."))
    assert "Diagnosis" in json.loads(p4)["content"][0]["text"]
    _, _, p3 = post(emu, "/v1/models/m:generateContent",
                    gemini_body("Implement ticket T3: write tests\ncontext...", "You are a Tier 3 worker."))
    assert "Implement ticket T3: write tests" in gemini_text(json.loads(p3))


def test_parse_prompt_sees_tool_results():
    body = {"messages": [{"role": "user", "content": "go"},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                       "content": [{"type": "text", "text": "RESULT"}]}]}],
            "tools": [{"name": "f"}], "system": [{"type": "text", "text": "sys"}]}
    view = parse_prompt("anthropic", body)
    assert view.system == "sys" and view.last_user_text == "go" and view.last_is_tool_result
    assert view.tool_results == [{"id": "t1", "content": "RESULT"}] and view.tool_names == ["f"]


# ---------------------------------------------------------------- faults

def test_inject_count_and_match(emu):
    emu.inject("429", count=2, match="flaky", retry_after="1")
    s1, h1, p1 = post(emu, "/v1/models/flaky-model:generateContent", gemini_body("x"))
    s2, _, _ = post(emu, "/v1/models/steady:generateContent", gemini_body("x"))
    s3, _, p3 = post(emu, "/v1/messages", anthropic_body("x", model="flaky-claude"))
    s4, _, _ = post(emu, "/v1/messages", anthropic_body("x", model="flaky-claude"))
    assert (s1, s2, s3, s4) == (429, 200, 429, 200)
    assert h1["Retry-After"] == "1"
    assert json.loads(p1)["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert json.loads(p3)["error"]["type"] == "rate_limit_error"
    assert [r.fault for r in emu.requests] == ["429", None, "429", None]
    assert emu.billed["steady"]["requests"] == 1 and emu.billed["flaky-claude"]["requests"] == 1


def test_inject_predicate_and_provider_filter(emu):
    emu.inject("500", match=lambda provider, model, body: "BOOM" in json.dumps(body), provider="anthropic")
    assert post(emu, "/v1/models/m:generateContent", gemini_body("BOOM"))[0] == 200
    assert post(emu, "/v1/messages", anthropic_body("fine"))[0] == 200
    status, _, payload = post(emu, "/v1/messages", anthropic_body("BOOM"))
    assert status == 500 and json.loads(payload)["error"]["type"] == "api_error"


def test_inject_rejects_unknown_kinds(emu):
    with pytest.raises(ValueError):
        emu.inject("explode")


def test_truncate_cuts_streams_before_the_final_marker(emu):
    emu.inject("truncate", count=2)
    _, _, gp = post(emu, "/v1/models/m:streamGenerateContent?alt=sse", gemini_body("one two three four five six"))
    gevents = [json.loads(d) for _, d in sse_events(gp)]
    assert gevents and all("finishReason" not in e["candidates"][0] for e in gevents)
    _, _, ap = post(emu, "/v1/messages", anthropic_body("one two three four five six", stream=True))
    names = [n for n, _ in sse_events(ap)]
    assert "content_block_delta" in names and "message_stop" not in names and "message_delta" not in names
    assert emu.billed == {}


def test_truncate_cuts_json_bodies(emu):
    emu.inject("truncate")
    status, headers, payload = post(emu, "/v1/messages", anthropic_body("x"))
    assert status == 200 and len(payload) < int(headers["Content-Length"])


def test_malformed_and_slow(emu):
    emu.inject("malformed")
    status, _, payload = post(emu, "/v1/models/m:generateContent", gemini_body("x"))
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(payload)
    emu.inject("slow", delay=0.1)
    emu.script("gemini", Reply(text="a b c", chunks=["a ", "b ", "c"]))
    started = time.monotonic()
    _, _, payload = post(emu, "/v1/models/m:streamGenerateContent?alt=sse", gemini_body("x"))
    assert time.monotonic() - started >= 0.2
    assert len(sse_events(payload)) == 3


def test_fault_plan_is_seeded_and_reproducible():
    def run():
        plan = FaultPlan(rate_429=0.3, rate_500=0.2, seed=42)
        with WireEmulator(fault_plan=plan) as emu:
            return [post(emu, "/v1/messages", anthropic_body("x"))[0] for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert {429, 500, 200} <= set(first)
    assert 4 <= first.count(429) <= 16


def test_expected_key_rejects_others(emu):
    emu.expected_keys.update(gemini="AIzaGOOD-KEY-0000", anthropic="sk-ant-GOOD")
    status, _, payload = post(emu, "/v1/models/m:generateContent", gemini_body("x"), {"x-goog-api-key": "AIzaBAD-000000"})
    assert status == 400 and "API_KEY_INVALID" in payload.decode()
    assert post(emu, "/v1/models/m:generateContent", gemini_body("x"), {"x-goog-api-key": "AIzaGOOD-KEY-0000"})[0] == 200
    assert post(emu, "/v1/messages", anthropic_body("x"), {"Authorization": "Bearer sk-ant-BAD"})[0] == 401
    assert post(emu, "/v1/messages", anthropic_body("x"), {"Authorization": "Bearer sk-ant-GOOD"})[0] == 200


# ---------------------------------------------------------------- process mode

def test_runs_as_a_process():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.wire_emulator", "--port", "0", "--rate-429", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("WIRE_EMULATOR http://127.0.0.1:"), line
        url = line.split()[1]
        status, _, payload = post(url, "/v1/messages", anthropic_body("hello process", "You are Tier 3."))
        assert status == 200 and "hello process" in json.loads(payload)["content"][0]["text"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
            proc.stdout.close()
            proc.stderr.close()
    assert proc.returncode == 0


def test_stream_error_event_mid_stream(emu):
    emu.inject("stream_error", count=3)
    _, _, gp = post(emu, "/v1/models/m:streamGenerateContent?alt=sse", gemini_body("one two three four five six"))
    gevents = [json.loads(d) for _, d in sse_events(gp)]
    assert "candidates" in gevents[0] and gevents[-1]["error"]["status"] == "UNAVAILABLE"
    _, _, ap = post(emu, "/v1/messages", anthropic_body("one two three four five six", stream=True))
    names = [n for n, _ in sse_events(ap)]
    assert "content_block_delta" in names and names[-1] == "error" and "message_stop" not in names
    status, _, _ = post(emu, "/v1/messages", anthropic_body("plain"))
    assert status == 529
    assert emu.billed == {}


def test_a_failing_responder_gives_a_500_and_the_server_keeps_serving(caplog):
    def responder(provider, model, body):
        raise RuntimeError("scripted failure")

    with WireEmulator(responder=responder) as emu:
        with caplog.at_level("ERROR", logger="tests.wire_emulator"):
            status, _, payload = post(emu, "/v1/messages", anthropic_body("x"))
        assert status == 500 and "scripted failure" in payload.decode()
        emu.responder = None
        assert post(emu, "/v1/messages", anthropic_body("x"))[0] == 200
    assert any("failed to handle" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- what the Gemini CLI needs

def test_count_tokens_answers_and_bills_nothing(emu):
    status, _h, payload = post(emu, "/v1beta/models/gem-a:countTokens", {"contents": [
        {"role": "user", "parts": [{"text": "x" * 40}]}]})
    assert status == 200 and json.loads(payload) == {"totalTokens": 10}
    wrapped = {"generateContentRequest": {"model": "models/gem-a", "contents": [
        {"role": "user", "parts": [{"text": "y" * 8}]}]}}
    assert json.loads(post(emu, "/v1beta/models/gem-a:countTokens", wrapped)[2]) == {"totalTokens": 2}
    assert emu.billed == {}


def test_a_request_for_json_with_a_schema_gets_fitting_json_through_the_sdk(emu):
    from google import genai
    from google.genai import types
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.base_url))
    schema = {"type": "object", "properties": {
        "next_speaker": {"type": "string", "enum": ["user", "model"]}, "reasoning": {"type": "string"},
        "score": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string"}},
        "detail": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
        "required": ["next_speaker", "reasoning", "score", "tags", "detail"]}
    reply = client.models.generate_content(
        model="gem-a", contents="who speaks next?",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema))
    assert json.loads(reply.text) == {"next_speaker": "user", "reasoning": "", "score": 0, "tags": [],
                                      "detail": {"ok": False}}
    plain = client.models.generate_content(model="gem-a", contents="who speaks next?")
    assert not plain.text.startswith("{")                      # prose when no JSON is asked for
