"""A real MCP client over stdio (the `mcp` SDK's ClientSession): spawns tests/mcp/server.py,
initializes, lists the tools and calls them; prints what it saw as one JSON line, so the test
can compare the sensor's records with the client's own log.

Usage: MCP_TEST_SECRET=... client.py NOTE_PATH [readv | v2 | vmsplice | splice |
NODE_MODULES_DIR] (the secret goes as a tool argument); with `readv`, server.py reads its
standard input with `readv`; with `v2`, with `preadv2`, and writes its standard output with
`pwritev2`; with `vmsplice`, reads and writes them with `vmsplice`; with `splice`, writes
most of a large message with `sendfile`, `splice` and `tee`; with
NODE_MODULES_DIR, the server is tests/mcp/server.cjs (the npm SDK's, run by Node.js with the
SDK from there) instead.
"""
import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


async def main(note: str, secret: str, node_modules: str | None) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if node_modules in ("readv", "v2", "vmsplice", "splice"):
        params = StdioServerParameters(
            command=sys.executable, args=[os.path.join(here, "server.py"), f"stdio-{node_modules}"]
        )
    elif node_modules:
        params = StdioServerParameters(
            command="node", args=[os.path.join(here, "server.cjs"), node_modules]
        )
    else:
        params = StdioServerParameters(
            command=sys.executable, args=[os.path.join(here, "server.py")]
        )
    log = {"client_pid": os.getpid()}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            log["server_name"] = init.server_info.name
            log["server_version"] = init.server_info.version
            log["protocol_version"] = init.protocol_version
            tools = await session.list_tools()
            log["tools"] = sorted(t.name for t in tools.tools)
            r = await session.call_tool("read_note", {"path": note, "token": secret})
            log["read_note"] = r.content[0].text
            r = await session.call_tool("add", {"a": 2, "b": 40})
            log["add"] = r.content[0].text
            r = await session.call_tool("big", {"n": 40000})
            log["big_length"] = len(r.content[0].text)
            r = await session.call_tool("no_such_tool", {})
            log["no_such_tool_error"] = bool(r.is_error)
    print(json.dumps(log), flush=True)


asyncio.run(
    main(sys.argv[1], os.environ["MCP_TEST_SECRET"], sys.argv[2] if len(sys.argv) > 2 else None)
)
