"""The wire emulator's prompt caches (tests/wire_cache.py): deterministic, as the providers bill them."""
from __future__ import annotations

import pytest

from providers.anthropic_provider import AnthropicAdapter
from providers.base import ChatRequest, PromptCacheUse, ProviderError, ToolSpec
from providers.gemini import GeminiAdapter
from tests.wire_cache import PromptCaches, anthropic_segments, gemini_segments
from tests.wire_emulator import WireEmulator, parse_prompt

SYSTEM = "shared reference text " * 300            # 6,600 chars: 1,650 tokens
TOOLS = [ToolSpec("read_file", "Read a file", {"type": "object", "properties": {"path": {"type": "string"}}})]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def emu(clock):
    with WireEmulator(caches=PromptCaches(clock=clock)) as emulator:
        yield emulator


def anthropic(emu) -> AnthropicAdapter:
    return AnthropicAdapter(api_key="sk-ant-x", base_url=emu.base_url)


def gemini(emu) -> GeminiAdapter:
    return GeminiAdapter(api_key="AIza-x", base_url=emu.base_url)


def ask(model: str, text: str, cache: PromptCacheUse | None = None, system: str = SYSTEM) -> ChatRequest:
    return ChatRequest(model, system, [{"role": "user", "content": text}], cache=cache)


MARKED = PromptCacheUse(system_breaks=(len(SYSTEM),))


def test_segments_count_what_the_bill_counts():
    body = {"system": [{"type": "text", "text": "abc", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"},
                                                      {"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "x",
                                                            "input": {"a": 1}}]}]}
    assert sum(s.chars for s in anthropic_segments(body)) == parse_prompt("anthropic", body).text_chars
    gbody = {"systemInstruction": {"parts": [{"text": "abc"}]},
             "contents": [{"role": "user", "parts": [{"text": "hi"}, {"functionResponse": {"name": "x", "response": {"r": 1}}}]},
                          {"role": "model", "parts": [{"functionCall": {"name": "x", "args": {}}}]}]}
    assert sum(s.chars for s in gemini_segments(gbody)) == parse_prompt("gemini", gbody).text_chars


def test_anthropic_writes_then_reads_within_the_ttl_and_misses_after(emu, clock):
    adapter = anthropic(emu)
    first = adapter.generate(ask("claude-sonnet-4-5", "one", MARKED)).usage
    assert (first.cache_write_tokens, first.cache_read_tokens) == (len(SYSTEM) // 4, 0)
    clock.now += 299                                       # within the 5 minutes: a read, which refreshes it
    second = adapter.generate(ask("claude-sonnet-4-5", "two", MARKED)).usage
    assert (second.cache_write_tokens, second.cache_read_tokens) == (0, len(SYSTEM) // 4)
    assert second.input_tokens == first.input_tokens       # the same prompt size, split differently
    clock.now += 299
    assert adapter.generate(ask("claude-sonnet-4-5", "three", MARKED)).usage.cache_read_tokens > 0
    clock.now += 301                                       # expired
    assert adapter.generate(ask("claude-sonnet-4-5", "four", MARKED)).usage.cache_write_tokens == len(SYSTEM) // 4
    assert adapter.generate(ask("claude-other", "five", MARKED)).usage.cache_read_tokens == 0   # per model


def test_anthropic_caches_nothing_below_the_minimum_or_without_breakpoints(emu):
    adapter = anthropic(emu)
    short = adapter.generate(ask("claude-x", "q", PromptCacheUse(system_breaks=(10,)), system="tiny system")).usage
    assert (short.cache_write_tokens, short.cache_read_tokens) == (0, 0)
    adapter.generate(ask("claude-x", "q"))
    unmarked = adapter.generate(ask("claude-x", "q")).usage
    assert (unmarked.cache_write_tokens, unmarked.cache_read_tokens) == (0, 0)
    assert "cache_write_tokens" not in emu.billed["claude-x"]


def test_anthropic_reads_a_prefix_up_to_twenty_blocks_before_a_breakpoint(emu):
    import anthropic as sdk
    client = sdk.Anthropic(api_key="k", base_url=emu.base_url, max_retries=0)
    blocks = [{"type": "text", "text": f"block {i} " + "x" * 1000} for i in range(30)]

    def send(marked_at: int):
        content = [dict(b) for b in blocks]
        content[marked_at]["cache_control"] = {"type": "ephemeral"}
        return client.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": content}]).usage
    wrote = send(5)
    assert wrote.cache_creation_input_tokens > 0
    assert send(24).cache_read_input_tokens == wrote.cache_creation_input_tokens       # 19 blocks back: found
    assert send(29).cache_read_input_tokens > wrote.cache_creation_input_tokens        # the 24 one, now
    emu.reset()
    send(5)
    assert send(25).cache_read_input_tokens in (0, None)                                # 20 back: too far


def test_gemini_implicit_hits_on_a_repeated_prefix(emu):
    adapter = gemini(emu)
    assert adapter.generate(ask("gemini-2.5-flash", "first")).usage.cache_read_tokens == 0
    hit = adapter.generate(ask("gemini-2.5-flash", "second question")).usage
    assert hit.cache_read_tokens == len(SYSTEM) // 4 and hit.input_tokens > hit.cache_read_tokens
    assert adapter.generate(ask("gemini-2.5-flash", "x", system="tiny")).usage.cache_read_tokens == 0


def test_gemini_explicit_cache_life_cycle(emu, clock):
    adapter = gemini(emu)
    info = adapter.create_cache("gemini-2.5-flash", SYSTEM, TOOLS, 300, "mma-desk:test")
    assert info.name.startswith("cachedContents/") and info.tokens == len(SYSTEM) // 4
    assert info.expire_time == pytest.approx(clock.now + 300)
    use = PromptCacheUse(cached_content=info.name)
    reply = adapter.generate(ChatRequest("gemini-2.5-flash", SYSTEM, [{"role": "user", "content": "q"}],
                                         tools=TOOLS, cache=use))
    assert reply.usage.cache_read_tokens == info.tokens
    body = emu.requests[-1].body
    assert body["cachedContent"] == info.name and "systemInstruction" not in body and "tools" not in body
    clock.now += 200
    assert adapter.extend_cache(info.name, 300) == pytest.approx(clock.now + 300)
    clock.now += 250                                        # alive thanks to the extension
    assert adapter.generate(ChatRequest("gemini-2.5-flash", SYSTEM, [{"role": "user", "content": "q"}],
                                        tools=TOOLS, cache=use)).usage.cache_read_tokens == info.tokens
    assert adapter.delete_cache(info.name) is True
    assert adapter.delete_cache(info.name) is False         # gone already
    bill = emu.billed["gemini-2.5-flash"]
    assert bill["cache_write_tokens"] == info.tokens                          # created once
    assert bill["storage_token_s"] == info.tokens * 450                       # created .. deleted
    assert bill["cache_read_tokens"] == 2 * info.tokens


def test_gemini_cache_expires_and_storage_stops_at_expiry(emu, clock):
    adapter = gemini(emu)
    info = adapter.create_cache("gemini-2.5-flash", SYSTEM, [], 60, "short")
    clock.now += 600
    assert emu.caches.listed() == []
    assert emu.billed["gemini-2.5-flash"]["storage_token_s"] == info.tokens * 60
    with pytest.raises(ProviderError, match="CachedContent not found"):
        adapter.extend_cache(info.name, 60)


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_gemini_refuses_what_the_api_refuses(emu):
    adapter = gemini(emu)
    with pytest.raises(ProviderError, match="too small"):
        adapter.create_cache("gemini-2.5-flash", "tiny", [], 60, "small")
    info = adapter.create_cache("gemini-2.5-flash", SYSTEM, [], 60, "ok")
    url = f"{emu.base_url}/v1beta/models/gemini-2.5-flash:generateContent"
    status, both = http("POST", url, {"cachedContent": info.name, "systemInstruction": {"parts": [{"text": "s"}]},
                                      "contents": [{"role": "user", "parts": [{"text": "q"}]}]})
    assert status == 400 and "can not be used with GenerateContent" in both["error"]["message"]
    status, other = http("POST", f"{emu.base_url}/v1beta/models/gemini-2.5-pro:generateContent",
                         {"cachedContent": info.name, "contents": [{"role": "user", "parts": [{"text": "q"}]}]})
    assert status == 400 and "has to be the same" in other["error"]["message"]
    status, listed = http("GET", f"{emu.base_url}/v1beta/cachedContents")
    assert status == 200 and [c["name"] for c in listed["cachedContents"]] == [info.name]
    status, got = http("GET", f"{emu.base_url}/v1beta/{info.name}")
    assert status == 200 and got["usageMetadata"]["totalTokenCount"] == info.tokens
    status, _ = http("DELETE", f"{emu.base_url}/v1beta/{info.name}")
    assert status == 200 and http("GET", f"{emu.base_url}/v1beta/{info.name}")[0] == 403
