"""A real MCP server over stdio (the `mcp` SDK's MCPServer), for the stdio capture test.

Its tools do something the sensor can see besides the JSON-RPC: `read_note` opens a file,
so the test can find the server's own file activity within the call's window.
"""
import sys

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


if __name__ == "__main__":
    server.run(sys.argv[1] if len(sys.argv) > 1 else "stdio")
