"""A tiny stdio MCP server for the failure cases (run: `python tests/mcp_failing_server.py [MODE]`).

Tools: `echo(text)` (read-only), `image()` (a 1x1 PNG and a caption), `structured(n)` (only
`structuredContent`), `fail(reason)` (the tool reports an error: isError), `crash()` (the process
exits mid-call), `hang()` (never answers), `garbage()` (writes a line that is not JSON, then an
invalid result for the call), `write_note(path, text)` (not read-only: asks for approval; writes
the file under the server's working directory).

MODE: `ok` (default), `exit-at-start` (exits before the handshake, with a message on stderr),
`garbage-at-start` (answers the handshake with a line that is not JSON).
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations

# A 1x1 transparent PNG.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")

server = MCPServer("failing")
_STDOUT_FD = os.dup(1)          # the pipe to the client, kept before the SDK claims fd 1
READ_ONLY = ToolAnnotations(read_only_hint=True)


@server.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Return the text unchanged."""
    return f"echo: {text}"


@server.tool(annotations=READ_ONLY)
def image() -> CallToolResult:
    """A tiny PNG with a caption."""
    return CallToolResult(content=[TextContent(text="a 1x1 png"),
                                   ImageContent(data=base64.b64encode(PNG_1X1).decode(), mime_type="image/png")])


@server.tool(annotations=READ_ONLY)
def structured(n: int) -> CallToolResult:
    """Only structured content, no text block."""
    return CallToolResult(content=[], structured_content={"n": n, "square": n * n})


@server.tool(annotations=READ_ONLY)
def fail(reason: str) -> CallToolResult:
    """A tool-level error (isError)."""
    return CallToolResult(content=[TextContent(text=f"cannot do it: {reason}")], is_error=True)


@server.tool(annotations=READ_ONLY)
def crash() -> str:
    """The server process dies in the middle of the call."""
    os._exit(3)


@server.tool(annotations=READ_ONLY)
def hang() -> str:
    """Never answers."""
    time.sleep(3600)
    return "too late"


@server.tool(annotations=READ_ONLY)
def garbage(ctx: Context) -> str:
    """Answers garbage: a line that is not JSON, then a response to this very call whose result
    is not a tool result; the real answer comes much later."""
    reply = {"jsonrpc": "2.0", "id": ctx.request_id, "result": {"content": "not a list", "isError": "maybe"}}
    os.write(_STDOUT_FD, b"this is not json-rpc\n" + json.dumps(reply).encode() + b"\n")
    time.sleep(3600)
    return "too late"


@server.tool()
def write_note(path: str, text: str) -> str:
    """Write a note file (not read-only: MMA Desk asks before running it)."""
    target = Path.cwd() / path
    target.write_text(text, encoding="utf-8")
    return f"wrote {len(text)} characters to {path}"


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    if mode == "exit-at-start":
        sys.stderr.write("failing server: refusing to start (exit-at-start)\n")
        sys.exit(7)
    if mode == "garbage-at-start":
        sys.stdout.write("garbage instead of a handshake\n")
        sys.stdout.flush()
        sys.stdin.read()
        return
    server.run("stdio")


if __name__ == "__main__":
    main()
