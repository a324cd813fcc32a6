"""A real MCP server over stdio (the `mcp` SDK's MCPServer), for the stdio capture test.

Its tools do something the sensor can see besides the JSON-RPC: `read_note` opens a file,
so the test can find the server's own file activity within the call's window.

Usage: server.py [stdio | stdio-readv | stdio-v2 | streamable-http]; `stdio-readv` reads the
standard input with `readv` (see ReadvStdin), for the stdio capture test of vectored reads;
`stdio-v2` reads it with `preadv2` and writes the standard output with `pwritev2` (see
Preadv2Stdin and Pwritev2Stdout: Python calls those for `os.preadv`/`os.pwritev` with flags).
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


class Preadv2Stdin(io.RawIOBase):
    """The standard input read with `preadv2` (at the current position, -1, with RWF_HIPRI)
    into two iovecs, as ReadvStdin."""

    def readable(self):
        return True

    def readinto(self, b):
        view = memoryview(b).cast("B")
        return os.preadv(0, [view[:64], view[64:]], -1, os.RWF_HIPRI)


class Pwritev2Stdout(io.RawIOBase):
    """The standard output written with `pwritev2` (at the current position, -1, with
    RWF_DSYNC) from two iovecs, the first 64 bytes and the rest."""

    def writable(self):
        return True

    def write(self, b):
        view = memoryview(b).cast("B")
        return os.pwritev(1, [view[:64], view[64:]], -1, os.RWF_DSYNC)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio-readv":
        # The SDK's stdio transport, given this standard input instead of its own.
        stdin = io.TextIOWrapper(io.BufferedReader(ReadvStdin()), encoding="utf-8", errors="replace")
        mcpserver.stdio_server = functools.partial(mcpserver.stdio_server, stdin=anyio.wrap_file(stdin))
        mode = "stdio"
    elif mode == "stdio-v2":
        stdin = io.TextIOWrapper(io.BufferedReader(Preadv2Stdin()), encoding="utf-8", errors="replace")
        stdout = io.TextIOWrapper(io.BufferedWriter(Pwritev2Stdout()), encoding="utf-8")
        mcpserver.stdio_server = functools.partial(
            mcpserver.stdio_server, stdin=anyio.wrap_file(stdin), stdout=anyio.wrap_file(stdout)
        )
        mode = "stdio"
    server.run(mode)
