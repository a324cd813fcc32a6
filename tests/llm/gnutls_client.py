"""An HTTPS client over the system's GnuTLS (libgnutls.so.30, through ctypes), for the TLS
capture test of GnuTLS's other entry points: per connection, one request sent with
`gnutls_record_send2` or `gnutls_record_send_range`, or corked (`cork`: `gnutls_record_cork`,
the request handed over in 100-byte pieces with `gnutls_record_send`, then
`gnutls_record_uncork` with GNUTLS_RECORD_WAIT sends them), the response read with
`gnutls_record_recv_seq` until the server closes. Real TLS against the test's server, the
certificate checked against the test CA.

Usage: gnutls_client.py PORT CA_FILE ENTRY=REQUEST_FILE... (ENTRY: send2, send_range or cork);
prints one JSON line per connection: {"pid", "entry", "response"} (the response as read).
"""
import ctypes
import json
import os
import socket
import sys

GNUTLS_CLIENT = 1 << 1
GNUTLS_X509_FMT_PEM = 1
GNUTLS_CRD_CERTIFICATE = 1
GNUTLS_E_AGAIN = -28
GNUTLS_E_INTERRUPTED = -52
GNUTLS_E_PREMATURE_TERMINATION = -110
GNUTLS_RECORD_WAIT = 1


class Range(ctypes.Structure):
    _fields_ = [("low", ctypes.c_size_t), ("high", ctypes.c_size_t)]


g = ctypes.CDLL("libgnutls.so.30")
ssize = ctypes.c_ssize_t
g.gnutls_record_send2.restype = ssize
g.gnutls_record_send2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_uint]
g.gnutls_record_send_range.restype = ssize
g.gnutls_record_send_range.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(Range)]
g.gnutls_record_send.restype = ssize
g.gnutls_record_send.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
g.gnutls_record_cork.restype = None
g.gnutls_record_cork.argtypes = [ctypes.c_void_p]
g.gnutls_record_uncork.restype = ssize
g.gnutls_record_uncork.argtypes = [ctypes.c_void_p, ctypes.c_uint]
g.gnutls_record_recv_seq.restype = ssize
g.gnutls_record_recv_seq.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
g.gnutls_strerror.restype = ctypes.c_char_p


def check(ret, what):
    if ret < 0:
        sys.exit(f"{what}: {g.gnutls_strerror(ret).decode()}")
    return ret


def connection(port, cred, entry, request):
    session = ctypes.c_void_p()
    check(g.gnutls_init(ctypes.byref(session), GNUTLS_CLIENT), "gnutls_init")
    check(g.gnutls_set_default_priority(session), "gnutls_set_default_priority")
    check(g.gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred), "gnutls_credentials_set")
    g.gnutls_session_set_verify_cert(session, b"127.0.0.1", 0)
    sock = socket.create_connection(("127.0.0.1", port))
    g.gnutls_transport_set_int2(session, sock.fileno(), sock.fileno())
    while True:
        ret = g.gnutls_handshake(session)
        if ret >= 0 or g.gnutls_error_is_fatal(ret):
            break
    check(ret, "gnutls_handshake")
    done = 0
    if entry == "cork":
        g.gnutls_record_cork(session)
        for at in range(0, len(request), 100):
            piece = request[at : at + 100]
            # Corked, a send only appends to the session's buffer: all of it, at once.
            if check(g.gnutls_record_send(session, piece, len(piece)), "corked send") != len(piece):
                sys.exit("a corked send took part of its piece")
        sent = check(g.gnutls_record_uncork(session, GNUTLS_RECORD_WAIT), "gnutls_record_uncork")
        if sent != len(request):
            sys.exit(f"gnutls_record_uncork sent {sent} of {len(request)} bytes")
        done = len(request)
    while done < len(request):
        rest = request[done:]
        if entry == "send2":
            n = g.gnutls_record_send2(session, rest, len(rest), 0, 0)
        elif entry == "send_range":
            r = Range(len(rest), len(rest) + 64)
            n = g.gnutls_record_send_range(session, rest, len(rest), ctypes.byref(r))
        else:
            sys.exit(f"no entry {entry}")
        if n in (GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED):
            continue
        done += check(n, entry)
    response = b""
    buf = ctypes.create_string_buffer(16384)
    seq = ctypes.create_string_buffer(8)
    while True:
        n = g.gnutls_record_recv_seq(session, buf, len(buf), seq)
        if n in (GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED):
            continue
        if n == 0 or n == GNUTLS_E_PREMATURE_TERMINATION:
            break
        response += buf.raw[: check(n, "gnutls_record_recv_seq")]
    g.gnutls_deinit(session)
    sock.close()
    return response


def main():
    port, ca = int(sys.argv[1]), sys.argv[2]
    cred = ctypes.c_void_p()
    check(g.gnutls_certificate_allocate_credentials(ctypes.byref(cred)), "credentials")
    check(g.gnutls_certificate_set_x509_trust_file(cred, ca.encode(), GNUTLS_X509_FMT_PEM), ca)
    for arg in sys.argv[3:]:
        entry, path = arg.split("=", 1)
        with open(path, "rb") as f:
            request = f.read()
        response = connection(port, cred, entry, request)
        line = {"pid": os.getpid(), "entry": entry, "response": response.decode()}
        print(json.dumps(line), flush=True)


main()
