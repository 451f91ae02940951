"""Tools and providers of the ecosystem: MCP tool-call round trip, Gemini CLI vs SDK latency.

    python bench/bench_tools.py [--quick]

1. MCP round trip: `Toolbox.execute("time__get_current_time")` on a running `McpHub` (a worker
   thread -> the hub's loop thread -> mcp-server-time over stdio -> back), n calls.  Baseline,
   same run, same server program: the SDK's own `Client.call_tool` awaited on its own event loop
   (no thread hand-off).  Target: hub p50 <= 1.5x the SDK's p50 + 1 ms.
2. Per-call latency of a one-turn chat on the wire emulator: the `gemini-cli` provider (a `gemini`
   process per call) vs the `gemini` provider (google-genai SDK, in process).  Target: CLI p50 < 5 s
   (the CLI's start-up dominates); the SDK's p50 is the baseline shown beside it.  Needs Node.js:
   without it (or without the CLI, which is installed into the private prefix on first use)
   that part is reported as skipped.
Medians of n calls (--quick: fewer).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

MCP_RATIO_TARGET = 1.5
CLI_P50_TARGET_S = 5.0


def time_server_command() -> str:
    return str(Path(sys.executable).parent / "mcp-server-time")


def bench_mcp(n: int) -> tuple[list[float], list[float]]:
    from tools.mcp_client import McpHub
    from tools.mcp_config import McpServerConfig
    from tools.toolbox import toolbox_for
    hub_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as root:
        hub = McpHub(root)
        try:
            hub.apply([McpServerConfig("time", command=time_server_command())]).result(120)
            box = toolbox_for(root)
            box.execute("time__get_current_time", {"timezone": "UTC"})          # warm-up
            for _ in range(n):
                start = time.perf_counter()
                result = box.execute("time__get_current_time", {"timezone": "UTC"})
                hub_times.append(time.perf_counter() - start)
                assert not result.is_error, result.text
        finally:
            hub.close()

    async def sdk_calls() -> list[float]:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters
        out = []
        async with Client(StdioServerParameters(command=time_server_command())) as client:
            await client.call_tool("get_current_time", {"timezone": "UTC"})
            for _ in range(n):
                start = time.perf_counter()
                await client.call_tool("get_current_time", {"timezone": "UTC"})
                out.append(time.perf_counter() - start)
        return out
    return hub_times, asyncio.run(sdk_calls())


def bench_chat(provider: str, n: int) -> list[float]:
    import ai_client
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as root:
        for i in range(n):
            with ai_client.session_scope(provider, "gemini-2.5-flash") as session:
                start = time.perf_counter()
                session.send("", f"Hello number {i}", root, system_prompt="You are Tier 3 (Worker).")
                times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    opts = common.arg_parser(__doc__.splitlines()[0]).parse_args(argv)
    common.setup_logging(opts.verbose)
    n_mcp, n_chat = (5, 2) if opts.quick else (40, 6)
    hub_times, sdk_times = bench_mcp(n_mcp)
    hub_p50, sdk_p50 = statistics.median(hub_times), statistics.median(sdk_times)
    metrics: dict = {"mcp_calls": n_mcp, "mcp_hub_round_trip": common.summary_ms(hub_times)}
    baseline: dict = {"mcp_sdk_call": common.summary_ms(sdk_times)}
    targets = [common.target(
        "MCP tool call round trip (Toolbox -> hub thread -> mcp-server-time)",
        f"p50 <= {MCP_RATIO_TARGET}x SDK call + 1 ms", f"{hub_p50 * 1000:.2f} ms p50",
        hub_p50 <= MCP_RATIO_TARGET * sdk_p50 + 0.001, baseline=f"SDK call_tool {sdk_p50 * 1000:.2f} ms p50")]
    notes: list[str] = []

    from tests.wire_emulator import WireEmulator
    saved = {k: os.environ.get(k) for k in ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL")}
    with WireEmulator() as emu:
        os.environ["GEMINI_API_KEY"] = "bench-fake-key"
        os.environ["GOOGLE_GEMINI_BASE_URL"] = emu.base_url
        try:
            sdk_chat = bench_chat("gemini", n_chat)
            metrics["chat_calls"] = n_chat
            baseline["gemini_sdk_chat"] = common.summary_ms(sdk_chat)
            cli_chat = None
            if shutil.which("node") is None:
                notes.append("gemini-cli skipped: node is not installed")
            else:
                from providers.base import ProviderUnavailableError
                from providers.gemini_cli_setup import find_cli
                try:
                    start = time.perf_counter()
                    find_cli()
                    metrics["gemini_cli_find_or_install_s"] = round(time.perf_counter() - start, 3)
                    cli_chat = bench_chat("gemini-cli", n_chat)
                except ProviderUnavailableError as exc:
                    notes.append(f"gemini-cli skipped: {exc} ({exc.hint})")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    sdk_chat_p50 = statistics.median(sdk_chat)
    if cli_chat:
        cli_p50 = statistics.median(cli_chat)
        metrics["gemini_cli_chat"] = common.summary_ms(cli_chat)
        metrics["gemini_cli_over_sdk"] = round(cli_p50 / sdk_chat_p50, 1)
        targets.append(common.target(
            "one chat call on the wire emulator: gemini-cli provider", f"p50 < {CLI_P50_TARGET_S} s",
            f"{cli_p50:.2f} s p50 ({metrics['gemini_cli_over_sdk']}x the SDK)", cli_p50 < CLI_P50_TARGET_S,
            baseline=f"gemini SDK {sdk_chat_p50 * 1000:.1f} ms p50"))
    path = common.write_result("tools", quick=opts.quick, metrics=metrics, baseline=baseline, targets=targets,
                               notes=notes, out_dir=opts.out_dir,
                               extra={"mcp_hub_s": hub_times, "mcp_sdk_s": sdk_times, "sdk_chat_s": sdk_chat,
                                      "cli_chat_s": cli_chat or []})
    common.print_result(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
