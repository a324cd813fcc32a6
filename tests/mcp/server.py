"""A real MCP server over stdio (the `mcp` SDK's MCPServer), for the stdio capture test.

Its tools do something the sensor can see besides the JSON-RPC: `read_note` opens a file,
so the test can find the server's own file activity within the call's window.

Usage: server.py [stdio | stdio-readv | streamable-http]; `stdio-readv` reads the standard
input with `readv` (see ReadvStdin), for the stdio capture test of vectored reads.
"""
import functools
import io
import os
import sys

import anyio
import mcp.server.mcpserver.server as mcpserver
from mcp.server import MCPServer

server = MCPServer("notes-server", version="3.1.4")


@server.tool()
def read_note(path: str, token: str = "") -> str:
    """Reads a note."""
    with open(path, encoding="utf-8") as f:
        return f.read()


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@server.tool()
def big(n: int) -> str:
    """Returns n bytes of text."""
    return "x" * n


class ReadvStdin(io.RawIOBase):
    """The standard input read with `readv` into two iovecs (the first 64 bytes of the
    buffered reader's buffer, then the rest), so a message spans both."""

    def readable(self):
        return True

    def readinto(self, b):
        view = memoryview(b).cast("B")
        return os.readv(0, [view[:64], view[64:]])


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio-readv":
        # The SDK's stdio transport, given this standard input instead of its own.
        stdin = io.TextIOWrapper(io.BufferedReader(ReadvStdin()), encoding="utf-8", errors="replace")
        mcpserver.stdio_server = functools.partial(mcpserver.stdio_server, stdin=anyio.wrap_file(stdin))
        mode = "stdio"
    server.run(mode)
