"""An OTLP/HTTP logs receiver for the OTLP sink's tests: decodes each `POST /v1/logs` with the
official `opentelemetry-proto` package and appends, per log record, its body (one line) to
DIR/bodies and a JSON line of its attributes, resource attributes and times to DIR/records.

Usage: receiver.py PORT DIR [CERT KEY] (HTTPS with CERT and KEY). While DIR/busy exists it answers 503 with `Retry-After: 1`; while
DIR/reject exists it answers 400 once per file (the file is removed). Each answer is logged as
one line to DIR/answers (`200 N`, `503`, `400`).
"""
import datetime
import json
import os
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

PORT, DIR = int(sys.argv[1]), sys.argv[2]


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def rfc3339(ns):
    utc = datetime.datetime.fromtimestamp(ns // 10**9, tz=datetime.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


def append(name, text):
    with open(os.path.join(DIR, name), "a", encoding="utf-8") as f:
        f.write(text)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, v in headers:
            self.send_header(name, v)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/logs" or self.headers["Content-Type"] != "application/x-protobuf":
            append("answers", "404\n")
            return self.answer(404)
        if os.path.exists(os.path.join(DIR, "busy")):
            append("answers", "503\n")
            return self.answer(503, headers=[("Retry-After", "1")])
        reject = os.path.join(DIR, "reject")
        if os.path.exists(reject):
            os.remove(reject)
            append("answers", "400\n")
            return self.answer(400, b"refused by the test")
        request = ExportLogsServiceRequest()
        request.ParseFromString(data)
        bodies, records = [], []
        for rl in request.resource_logs:
            resource = {kv.key: value(kv.value) for kv in rl.resource.attributes}
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    bodies.append(value(r.body) + "\n")
                    records.append(json.dumps({
                        "resource": resource,
                        "scope": sl.scope.name,
                        "attributes": {kv.key: value(kv.value) for kv in r.attributes},
                        "time": rfc3339(r.time_unix_nano),
                        "severity_number": r.severity_number,
                    }) + "\n")
        append("bodies", "".join(bodies))
        append("records", "".join(records))
        append("answers", f"200 {len(bodies)}\n")
        self.answer(200, ExportLogsServiceResponse().SerializeToString())


ThreadingHTTPServer.allow_reuse_address = True
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
if len(sys.argv) == 5:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
