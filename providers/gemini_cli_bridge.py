"""MMA Desk's tools as an MCP server for the Gemini CLI (`python -m providers.gemini_cli_bridge`).

The `gemini-cli` adapter writes this server into the CLI's private settings; the CLI starts it
over stdio.  It runs nothing itself: it connects back to the adapter over a Unix socket in the
adapter's private folder (`MMA_BRIDGE_SOCKET`, checked with `MMA_BRIDGE_TOKEN`) and relays
`tools/list` and `tools/call`.  The adapter hands each call to MMA Desk's tool loop, which asks
the developer exactly as for any other provider, so the CLI never runs a write or a command
that was not approved.

Wire format on the socket: one JSON object per line.
  bridge -> adapter  {"op": "hello", "token": ...}, {"op": "list"}, {"op": "call", "name", "args"}
  adapter -> bridge  {"tools": [{"name", "description", "parameters"}]},
                     {"text", "is_error", "images": [{"mime_type", "data"}]}
Calls are relayed one at a time (the adapter's tool loop runs them one at a time anyway).
"""
from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import anyio


class _Link:
    def __init__(self, path: str, token: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("r", encoding="utf-8")
        self.lock = anyio.Lock()
        self._send({"op": "hello", "token": token})

    def _send(self, message: dict) -> None:
        self.sock.sendall((json.dumps(message) + "\n").encode("utf-8"))

    def _exchange(self, message: dict) -> dict:
        self._send(message)
        line = self.reader.readline()
        if not line:
            raise ConnectionError("MMA Desk closed the tool bridge")
        return json.loads(line)

    async def ask(self, message: dict) -> dict:
        async with self.lock:
            return await anyio.to_thread.run_sync(self._exchange, message)


def main() -> None:
    import mcp_types as types
    from mcp.server import Server
    from mcp.server.stdio import stdio_server

    link = _Link(os.environ["MMA_BRIDGE_SOCKET"], os.environ["MMA_BRIDGE_TOKEN"])

    async def list_tools(_ctx: Any, _params: Any) -> Any:
        answer = await link.ask({"op": "list"})
        return types.ListToolsResult(tools=[
            types.Tool(name=t["name"], description=t.get("description") or t["name"],
                       input_schema=t.get("parameters") or {"type": "object", "properties": {}})
            for t in answer.get("tools", [])])

    async def call_tool(_ctx: Any, params: Any) -> Any:
        answer = await link.ask({"op": "call", "name": params.name, "args": params.arguments or {}})
        content: list[Any] = [types.TextContent(text=answer.get("text", ""))]
        content += [types.ImageContent(data=i["data"], mime_type=i["mime_type"]) for i in answer.get("images", [])]
        return types.CallToolResult(content=content, is_error=bool(answer.get("is_error")))

    server = Server("mma", on_list_tools=list_tools, on_call_tool=call_tool)

    async def serve() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(serve)


if __name__ == "__main__":
    try:
        main()
    except (ConnectionError, OSError, KeyError) as exc:
        sys.stderr.write(f"mma tool bridge: {type(exc).__name__}: {exc}\n")
        sys.exit(1)
