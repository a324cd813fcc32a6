"""A real MCP client over the streamable HTTP transport (the `mcp` SDK's ClientSession and
streamable_http_client on httpx), over HTTPS trusting the test's CA: initializes, lists the
tools, calls them; prints what it saw as one JSON line for the test to compare.

Usage: MCP_TEST_SECRET=... http_client.py URL CA_FILE (the secret goes as a tool argument)
"""
import asyncio
import json
import os
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, ca: str, secret: str) -> None:
    log = {"client_pid": os.getpid()}
    async with httpx2.AsyncClient(verify=ca) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                log["server_name"] = init.server_info.name
                log["server_version"] = init.server_info.version
                log["protocol_version"] = init.protocol_version
                tools = await session.list_tools()
                log["tools"] = sorted(t.name for t in tools.tools)
                r = await session.call_tool("read_note", {"title": "todo", "token": secret})
                log["read_note"] = r.content[0].text
                r = await session.call_tool("add", {"a": 2, "b": 40})
                log["add"] = r.content[0].text
                r = await session.call_tool("no_such_tool", {})
                log["no_such_tool_error"] = bool(r.is_error)
    print(json.dumps(log), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2], os.environ["MCP_TEST_SECRET"]))
