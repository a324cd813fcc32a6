"""A local HTTPS server speaking the shapes of OpenAI's chat completions and Anthropic's
messages APIs, for the TLS capture tests: deterministic answers, plain JSON or server-sent
events (chunked), over HTTP/1.1 with a certificate the test's own CA signed.

Usage: provider_server.py CERT KEY PORT_FILE (writes the port it listens on to PORT_FILE).
"""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOL = {"name": "get_weather", "arguments": {"city": "Paris"}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(n) or b"{}")

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_events(self, events, final):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for name, data in events:
            text = (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
            chunk = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        if final:
            chunk = final.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def send_events_until_closed(self, events):
        """The first two events, then nothing until the client closes the connection (at
        most 10 s), then the rest, which a client that went away never reads."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, (_, data) in enumerate(events):
            chunk = f"data: {data}\n\n".encode()
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            except OSError:
                return
            if i == 1:
                self.connection.settimeout(10)
                try:
                    self.connection.recv(1)
                except (OSError, ValueError):
                    pass

    def do_POST(self):
        req = self.body()
        if self.path == "/v1/chat/completions":
            self.openai(req)
        elif self.path == "/v1/messages":
            self.anthropic(req)
        else:
            self.send_json(404, {"error": {"message": "no such endpoint"}})

    def openai(self, req):
        model = req.get("model", "")
        prompt_len = sum(len(str(m.get("content", ""))) for m in req.get("messages", []))
        text = f"Hello from the OpenAI-shaped server ({prompt_len} prompt bytes)"
        if req.get("stream"):
            base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model}
            events = []
            for piece in ["Hello", " from", " a stream"]:
                events.append((None, json.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})))
            events.append((None, json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})))
            events.append((None, json.dumps({**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}})))
            if model == "slow-stream":
                self.send_events_until_closed(events)
                return
            # A model named "cut-stream" ends without the final [DONE] event.
            final = None if model == "cut-stream" else "data: [DONE]\n\n"
            self.send_events(events, final)
            return
        message = {"role": "assistant", "content": text}
        finish = "stop"
        if req.get("tools"):
            message = {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": TOOL["name"], "arguments": json.dumps(TOOL["arguments"])}}]}
            finish = "tool_calls"
        self.send_json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28}})

    def anthropic(self, req):
        model = req.get("model", "")
        if req.get("stream"):
            events = [
                ("message_start", json.dumps({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 13, "output_tokens": 1}}})),
                ("content_block_start", json.dumps({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                ("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Bonjour"}})),
                ("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " depuis Claude"}})),
                ("content_block_stop", json.dumps({"type": "content_block_stop", "index": 0})),
                ("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 5}})),
                ("message_stop", json.dumps({"type": "message_stop"})),
            ]
            self.send_events(events, None)
            return
        content = [{"type": "text", "text": "Let me check the weather."}]
        stop = "end_turn"
        if req.get("tools"):
            content.append({"type": "tool_use", "id": "toolu_1", "name": TOOL["name"], "input": TOOL["arguments"]})
            stop = "tool_use"
        self.send_json(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": content, "stop_reason": stop, "stop_sequence": None, "usage": {"input_tokens": 17, "output_tokens": 9}})


def main():
    cert, key, port_file = sys.argv[1:4]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
