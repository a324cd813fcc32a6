// An agent's Node.js client: one OpenAI-shaped chat completion over HTTPS through Node's own
// TLS (the OpenSSL compiled into the node binary, which exports SSL_write and SSL_read), then
// logs what it sent and got as one JSON line. Usage: node_client.js BASE_URL CA_FILE MODEL
"use strict";
const https = require("https");
const fs = require("fs");

const [base, caFile, model] = process.argv.slice(2);
const user = "Say hello from Node (my key is sk-proj-T3stK3yN0de000000000000)";
const body = JSON.stringify({ model, messages: [{ role: "user", content: user }] });
const url = new URL(base + "/v1/chat/completions");
// The sensor probes a program it has not seen before at its next scan of the agent's
// processes (every 100 ms): the first call waits for it, as docs/schema.md says.
setTimeout(() => {
  const req = https.request(
    {
      hostname: url.hostname,
      port: url.port,
      path: url.pathname,
      method: "POST",
      ca: fs.readFileSync(caFile),
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        authorization: "Bearer sk-proj-T3stK3yN0de000000000000",
      },
    },
    (res) => {
      let data = "";
      res.on("data", (chunk) => (data += chunk));
      res.on("end", () => {
        const answer = JSON.parse(data);
        console.log(
          JSON.stringify({
            pid: process.pid,
            status: res.statusCode,
            user,
            text: answer.choices[0].message.content,
            input_tokens: answer.usage.prompt_tokens,
            output_tokens: answer.usage.completion_tokens,
          }),
        );
      });
    },
  );
  req.on("error", (e) => {
    console.error(e);
    process.exit(1);
  });
  req.end(body);
}, 500);
