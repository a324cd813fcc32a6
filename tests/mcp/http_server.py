"""A real MCP server over the streamable HTTP transport (the `mcp` SDK's MCPServer on
uvicorn), over HTTPS with a certificate the test's CA signed, for the TLS capture test of MCP
over HTTP. Answers with server-sent events (the SDK's default), or plain JSON with `json`.

Usage: http_server.py CERT KEY PORT_FILE [json] (writes the port it listens on to PORT_FILE)
"""
import os
import socket
import sys

import anyio
import uvicorn

from mcp.server import MCPServer

server = MCPServer("notes-http", version="2.7.1")


@server.tool()
def read_note(title: str, token: str = "") -> str:
    """Reads a note."""
    return f"note {title}: buy milk"


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


async def main(cert: str, key: str, port_file: str, json_response: bool) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = server.streamable_http_app(json_response=json_response)
    config = uvicorn.Config(app, ssl_certfile=cert, ssl_keyfile=key, log_level="warning")
    with open(port_file + ".tmp", "w") as f:
        f.write(str(sock.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:] == ["json"])
