// An agent's Node.js client over HTTP/2: two OpenAI-shaped chat completions sent at once on
// one connection (their streams interleave), through the OpenSSL compiled into node; logs one
// JSON line per call with what it sent and got. With `big`, a 1 MiB prompt and then a small
// one instead, one after the other. Usage: node_h2_client.js BASE_URL CA_FILE [big]
"use strict";
const http2 = require("http2");
const fs = require("fs");

const [base, caFile, scenario] = process.argv.slice(2);
const KEY = "sk-proj-T3stK3yN0deH2000000000000";
// The sensor probes a program it has not seen before at its next scan of the agent's
// processes (every 100 ms): the connection waits for it.
setTimeout(() => {
  const session = http2.connect(base, { ca: fs.readFileSync(caFile) });
  session.on("error", (e) => {
    console.error(e);
    process.exit(1);
  });
  const call = (model, user) =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ model, messages: [{ role: "user", content: user }] });
      const req = session.request({
        ":method": "POST",
        ":path": "/v1/chat/completions",
        "content-type": "application/json",
        authorization: `Bearer ${KEY}`,
      });
      let status = 0;
      let data = "";
      req.on("response", (h) => (status = h[":status"]));
      req.on("data", (c) => (data += c));
      req.on("end", () => {
        const answer = JSON.parse(data);
        resolve({ pid: process.pid, model, status, user, text: answer.choices[0].message.content, input_tokens: answer.usage.prompt_tokens });
      });
      req.on("error", reject);
      req.end(body);
    });
  const calls =
    scenario === "big"
      ? call("gpt-node-big", "z".repeat(1 << 20)).then((a) => call("gpt-node-after-big", "small").then((b) => [a, b]))
      : Promise.all([call("gpt-node-h2-a", "First question over HTTP/2"), call("gpt-node-h2-b", "Second question, same connection")]);
  calls
    .then((logs) => {
      for (const l of logs) console.log(JSON.stringify(l));
      session.close();
    })
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
}, 500);
