import json

import pytest

import ai_client
import multi_agent_conductor as mac
import providers
from providers.retry import RetryPolicy
from tests import stub_providers


def test_send_keeps_history_and_logs_request_and_response_with_usage():
    with ai_client.session_scope("mock", "mock-model") as s:
        first = ai_client.send("ctx", "hello there")
        ai_client.send("", "and again")
        log = ai_client.get_comms_log()
    assert "hello there" in first
    assert [m["role"] for m in s.history] == ["user", "assistant", "user", "assistant"]
    kinds = [(e["direction"], e["kind"]) for e in log]
    assert kinds == [("OUT", "request"), ("IN", "response")] * 2
    usage = [e["payload"]["usage"] for e in log if e["kind"] == "response"]
    assert all(u["input_tokens"] > 0 and u["output_tokens"] > 0 for u in usage)
    assert usage[1]["input_tokens"] > usage[0]["input_tokens"]          # history was sent
    assert s.usage.input_tokens == sum(u["input_tokens"] for u in usage)
    assert {e["provider"] for e in log} == {"mock"} and {e["model"] for e in log} == {"mock-model"}


def test_streaming_callback_gets_chunks_that_join_to_the_text():
    chunks = []
    with ai_client.session_scope("mock", "m"):
        text = ai_client.send("", "stream this please", stream_callback=chunks.append)
    assert len(chunks) > 3 and "".join(chunks) == text


def worker_prompt(marker: str) -> str:
    return f"<TICKET>\nTicket T1: write notes {marker}\n</TICKET>"


def test_tool_call_runs_only_after_approval(tmp_path):
    asked = []

    def approve(name, args, description):
        asked.append((name, description["summary"]))
        return True
    with ai_client.session_scope("mock", "gemini-2.5-flash") as s:
        result = s.send("", worker_prompt("[write]"), str(tmp_path), system_prompt=mac.TIER3_SYSTEM,
                        tools=True, pre_tool_callback=approve)
    assert asked and asked[0][0] == "write_file"
    assert (tmp_path / "MMA_NOTES.md").read_text().startswith("# Notes")
    assert result.rounds == 2 and result.tool_calls[0]["name"] == "write_file"
    kinds = [e["kind"] for e in s.comms_log]
    assert kinds.count("tool_call") == 1 and kinds.count("tool_result") == 1


@pytest.mark.parametrize("callback", [None, lambda *a: False])
def test_unapproved_write_is_refused_and_nothing_is_written(tmp_path, callback):
    with ai_client.session_scope("mock", "gemini-2.5-flash") as s:
        result = s.send("", worker_prompt("[write]"), str(tmp_path), system_prompt=mac.TIER3_SYSTEM,
                        tools=True, pre_tool_callback=callback)
    assert not (tmp_path / "MMA_NOTES.md").exists()
    assert result.tool_calls[0]["result"].startswith("REFUSED")


def test_read_only_tool_needs_no_approval(tmp_path):
    (tmp_path / "hello.py").write_text("print('hi')\n")
    with ai_client.session_scope("mock", "m") as s:
        result = s.send("", worker_prompt("[tool]"), str(tmp_path), system_prompt=mac.TIER3_SYSTEM, tools=True)
    assert "hello.py" in result.tool_calls[0]["result"]


def test_retry_after_429_does_not_repeat_streamed_text(monkeypatch):
    monkeypatch.setitem(providers.PROVIDERS, "retry_once", ("tests.stub_providers", "RetryOnceAdapter"))
    stub_providers.RetryOnceAdapter.calls = 0
    shown = []
    with ai_client.session_scope("retry_once", "m") as s:
        result = s.send("", "hi", stream_callback=shown.append, retry_policy=RetryPolicy(base_delay=0, jitter=0))
    assert "".join(shown) == "Hello there friend." == result.text
    retries = [e for e in s.comms_log if e["kind"] == "retry"]
    assert len(retries) == 1 and retries[0]["payload"]["error"] == "RateLimitError"


def test_session_log_on_disk_is_jsonl_and_redacts_keys(tmp_path, monkeypatch):
    fake = "AIzaFAKE-planted-key-0123456789"
    monkeypatch.setenv("GEMINI_API_KEY", fake)
    with ai_client.session_scope("mock", "m", log_dir=tmp_path) as s:
        s.send("", f"my key is {fake} please keep it secret")
    files = list(tmp_path.glob("session-*.jsonl"))
    assert len(files) == 1
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [e["kind"] for e in lines] == ["request", "response"]
    assert fake not in files[0].read_text()
    assert fake not in json.dumps(s.comms_log)
    assert "[REDACTED]" in json.dumps(s.comms_log)


def test_history_bleed_stats():
    with ai_client.session_scope("mock", "gemini-2.5-flash"):
        ai_client.send("", "one")
        ai_client.send("", "two")
        stats = ai_client.get_history_bleed_stats()
    assert stats["total_input_tokens"] > 0 and stats["total_output_tokens"] > 0
    assert stats["context_limit"] >= 1_000_000
    assert 0 < stats["percent_used"] < 1
    assert stats["trim_first"][0]["index"] == 0


def test_unknown_provider_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        ai_client.set_provider("nope")


def test_tier4_analysis_uses_its_own_session():
    with ai_client.session_scope("mock", "m") as s:
        text = ai_client.run_tier4_analysis("Traceback ...\nValueError: bad thing")
        assert ai_client.current_session() is s and s.history == []
    assert text.startswith("Diagnosis:") and "bad thing" in text
