"""An HTTPS client over the system's OpenSSL 3 (libssl.so.3, through ctypes) that reuses one
`SSL` object for its connections, as `SSL_clear` allows: per server, a TCP connection, the
object reset with `SSL_clear` (after the first) and given the new socket, a handshake, one
request written with `SSL_write`, the response read with `SSL_read` until the server closes.
Real TLS against the test's servers, the certificate checked against the test CA.

Usage: openssl_reuse.py CA_FILE PORT=REQUEST_FILE...; prints one JSON line per connection:
{"pid", "ssl", "response"} (the object's address, the same for every line).
"""
import ctypes
import json
import os
import socket
import sys

SSL_VERIFY_PEER = 1

s = ctypes.CDLL("libssl.so.3")
s.TLS_client_method.restype = ctypes.c_void_p
s.SSL_CTX_new.restype = ctypes.c_void_p
s.SSL_CTX_new.argtypes = [ctypes.c_void_p]
s.SSL_CTX_load_verify_locations.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
s.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
s.SSL_new.restype = ctypes.c_void_p
s.SSL_new.argtypes = [ctypes.c_void_p]
for name in ["SSL_clear", "SSL_connect", "SSL_shutdown", "SSL_free"]:
    getattr(s, name).argtypes = [ctypes.c_void_p]
s.SSL_set_fd.argtypes = [ctypes.c_void_p, ctypes.c_int]
s.SSL_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
s.SSL_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
s.SSL_set1_host.argtypes = [ctypes.c_void_p, ctypes.c_char_p]


def main():
    ca = sys.argv[1]
    ctx = s.SSL_CTX_new(s.TLS_client_method())
    if s.SSL_CTX_load_verify_locations(ctx, ca.encode(), None) != 1:
        sys.exit(f"cannot load {ca}")
    s.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, None)
    ssl = s.SSL_new(ctx)
    for n, arg in enumerate(sys.argv[2:]):
        port, path = arg.split("=", 1)
        with open(path, "rb") as f:
            request = f.read()
        sock = socket.create_connection(("127.0.0.1", int(port)))
        if n > 0 and s.SSL_clear(ssl) != 1:
            sys.exit("SSL_clear failed")
        s.SSL_set_fd(ssl, sock.fileno())
        s.SSL_set1_host(ssl, b"127.0.0.1")
        if s.SSL_connect(ssl) != 1:
            sys.exit("SSL_connect failed")
        if s.SSL_write(ssl, request, len(request)) != len(request):
            sys.exit("SSL_write failed")
        response = b""
        buf = ctypes.create_string_buffer(16384)
        while True:
            got = s.SSL_read(ssl, buf, len(buf))
            if got <= 0:
                break
            response += buf.raw[:got]
        s.SSL_shutdown(ssl)
        sock.close()
        line = {"pid": os.getpid(), "ssl": ssl, "response": response.decode()}
        print(json.dumps(line), flush=True)
    s.SSL_free(ssl)


main()
