// A real MCP server over stdio (the `@modelcontextprotocol/sdk` npm package's McpServer), for
// the stdio capture test of vectored writes: the tools of tests/mcp/server.py, each logging a
// line to the client (a `notifications/message`) before its result, and stdout batched per
// turn of the event loop as a server under load batches it (Node's `cork()`/`uncork()`), so
// that the messages of a turn leave in one `writev` (libuv writes a stream's queued chunks so).
//
// Usage: node server.cjs NODE_MODULES_DIR
"use strict";
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const load = createRequire(path.join(process.argv[2], "/"));
const { McpServer } = load("@modelcontextprotocol/sdk/server/mcp.js");
const { StdioServerTransport } = load("@modelcontextprotocol/sdk/server/stdio.js");
const { z } = load("zod");

const out = process.stdout;
const write = out.write.bind(out);
out.write = (...args) => {
  if (out.writableCorked === 0) {
    out.cork();
    setImmediate(() => out.uncork());
  }
  return write(...args);
};

const server = new McpServer(
  { name: "notes-server", version: "3.1.4" },
  { capabilities: { logging: {} } },
);
const log = (data) => server.sendLoggingMessage({ level: "info", data });
const text = (t) => ({ content: [{ type: "text", text: String(t) }] });

server.registerTool(
  "read_note",
  { description: "Reads a note.", inputSchema: { path: z.string(), token: z.string().optional() } },
  async ({ path: p }) => {
    await log(`reading ${p}`);
    return text(fs.readFileSync(p, "utf8"));
  },
);
server.registerTool(
  "add",
  { description: "Adds two numbers.", inputSchema: { a: z.number(), b: z.number() } },
  async ({ a, b }) => {
    await log("adding");
    return text(a + b);
  },
);
server.registerTool(
  "big",
  { description: "Returns n bytes of text.", inputSchema: { n: z.number() } },
  async ({ n }) => {
    await log(`${n} bytes`);
    return text("x".repeat(n));
  },
);

server.connect(new StdioServerTransport());
