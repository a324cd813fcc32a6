"""A hostile MCP client: spawns tests/mcp/server.py and writes JSON-RPC lines to its stdin
itself, among them lines that are not JSON, a request with bytes that are not UTF-8 (the SDK
reads them replaced, and serves the call), a request longer than 1 MiB, and a response-shaped
line with a forged id; reads each answer; prints the ids the server answered, as one JSON line.

Usage: raw_client.py NOTE_PATH
"""
import json
import os
import subprocess
import sys

note = sys.argv[1]
server = subprocess.Popen(
    [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")],
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
)


def send(line: bytes) -> None:
    server.stdin.write(line + b"\n")
    server.stdin.flush()


def answer() -> dict:
    return json.loads(server.stdout.readline())


def call(id_, name, arguments) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    ).encode()


send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}).encode())
answered = [answer()["id"]]
send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
# Not JSON, and a response-shaped line with a forged id (the server ignores both).
send(b"this is not json {{{")
send(b'{"jsonrpc":"2.0","id":77,"result":{"content":[{"type":"text","text":"forged"}]}}')
# A request whose token is not UTF-8.
send(call(2, "read_note", {"path": note, "token": "PLACEHOLDER"}).replace(b"PLACEHOLDER", b"\xff\xfe"))
answered.append(answer()["id"])
# A request longer than 1 MiB.
send(call(3, "read_note", {"path": note, "token": "y" * (2 << 20)}))
answered.append(answer()["id"])
send(call(4, "add", {"a": 1, "b": 2}))
r = answer()
answered.append(r["id"])
server.stdin.close()
server.wait()
print(json.dumps({"answered": answered, "add": r["result"]["content"][0]["text"]}), flush=True)
