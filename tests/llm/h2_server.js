// A local HTTPS server speaking OpenAI's chat completions shape over HTTP/2 only (ALPN h2, no
// HTTP/1.1 fallback), for the TLS capture tests: plain JSON (a tool call when the request has
// tools), server-sent events when asked to stream, and for the model "reset-stream" a response
// the server resets (RST_STREAM) after its first event. Node's own http2 module, certificate
// signed by the test's CA. Usage: h2_server.js CERT KEY PORT_FILE
"use strict";
const http2 = require("http2");
const fs = require("fs");

const [certFile, keyFile, portFile] = process.argv.slice(2);
const server = http2.createSecureServer({
  cert: fs.readFileSync(certFile),
  key: fs.readFileSync(keyFile),
  allowHTTP1: false,
});

server.on("stream", (stream, headers) => {
  // A stream this server resets reports its own reset as an error: expected, not fatal.
  stream.on("error", () => {});
  let raw = "";
  stream.on("data", (chunk) => (raw += chunk));
  stream.on("end", () => {
    if (headers[":path"] !== "/v1/chat/completions") {
      stream.respond({ ":status": 404, "content-type": "application/json" });
      stream.end(JSON.stringify({ error: { message: "no such endpoint" } }));
      return;
    }
    const req = JSON.parse(raw || "{}");
    const model = req.model || "";
    const base = { id: "chatcmpl-h2", object: "chat.completion.chunk", model };
    if (req.stream) {
      stream.respond({ ":status": 200, "content-type": "text/event-stream", "cache-control": "no-cache" });
      const send = (obj) => stream.write(`data: ${JSON.stringify(obj)}\n\n`);
      const pieces = ["Hello", " over", " HTTP/2"];
      send({ ...base, choices: [{ index: 0, delta: { content: pieces[0] }, finish_reason: null }] });
      if (model === "reset-stream") {
        // Let the first event reach the client, then reset the stream.
        setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 200);
        return;
      }
      for (const p of pieces.slice(1)) {
        send({ ...base, choices: [{ index: 0, delta: { content: p }, finish_reason: null }] });
      }
      send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });
      send({ ...base, choices: [], usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } });
      stream.end("data: [DONE]\n\n");
      return;
    }
    const promptLen = (req.messages || []).reduce((n, m) => n + String(m.content || "").length, 0);
    let message = { role: "assistant", content: `Hello over HTTP/2 (${promptLen} prompt bytes)` };
    let finish = "stop";
    if (req.tools) {
      message = {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_h2", type: "function", function: { name: "get_weather", arguments: JSON.stringify({ city: "Lyon" }) } }],
      };
      finish = "tool_calls";
    }
    const body = JSON.stringify({
      id: "chatcmpl-h2",
      object: "chat.completion",
      created: 1,
      model,
      choices: [{ index: 0, message, finish_reason: finish }],
      usage: { prompt_tokens: 19, completion_tokens: 6, total_tokens: 25 },
    });
    stream.respond({ ":status": 200, "content-type": "application/json", "x-served-by": "h2-test-server" });
    stream.end(body);
  });
});

server.listen(0, "127.0.0.1", () => {
  fs.writeFileSync(portFile + ".tmp", String(server.address().port));
  fs.renameSync(portFile + ".tmp", portFile);
});
