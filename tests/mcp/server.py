"""A real MCP server over stdio (the `mcp` SDK's MCPServer), for the stdio capture test.

Its tools do something the sensor can see besides the JSON-RPC: `read_note` opens a file,
so the test can find the server's own file activity within the call's window.

Usage: server.py [stdio | stdio-readv | stdio-v2 | streamable-http]; `stdio-readv` reads the
standard input with `readv` (see ReadvStdin), for the stdio capture test of vectored reads;
`stdio-v2` reads it with `preadv2` and writes the standard output with `pwritev2` (see
Preadv2Stdin and Pwritev2Stdout: Python calls those for `os.preadv`/`os.pwritev` with flags).
`stdio-vmsplice` reads the standard input and writes the standard output with `vmsplice` (see
VmspliceStdin and VmspliceStdout); `stdio-splice` writes each message over 4096 bytes mostly
with `sendfile`, `splice` and `tee` (see SpliceStdout).
"""
import ctypes
import functools
import io
import os
import sys
import tempfile

import anyio
import mcp.server.mcpserver.server as mcpserver
from mcp.server import MCPServer

server = MCPServer("notes-server", version="3.1.4")


@server.tool()
def read_note(path: str, token: str = "") -> str:
    """Reads a note."""
    with open(path, encoding="utf-8") as f:
        return f.read()


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@server.tool()
def big(n: int) -> str:
    """Returns n bytes of text."""
    return "x" * n


class ReadvStdin(io.RawIOBase):
    """The standard input read with `readv` into two iovecs (the first 64 bytes of the
    buffered reader's buffer, then the rest), so a message spans both."""

    def readable(self):
        return True

    def readinto(self, b):
        view = memoryview(b).cast("B")
        return os.readv(0, [view[:64], view[64:]])


class Preadv2Stdin(io.RawIOBase):
    """The standard input read with `preadv2` (at the current position, -1, with RWF_HIPRI)
    into two iovecs, as ReadvStdin."""

    def readable(self):
        return True

    def readinto(self, b):
        view = memoryview(b).cast("B")
        return os.preadv(0, [view[:64], view[64:]], -1, os.RWF_HIPRI)


class Pwritev2Stdout(io.RawIOBase):
    """The standard output written with `pwritev2` (at the current position, -1, with
    RWF_DSYNC) from two iovecs, the first 64 bytes and the rest."""

    def writable(self):
        return True

    def write(self, b):
        view = memoryview(b).cast("B")
        return os.pwritev(1, [view[:64], view[64:]], -1, os.RWF_DSYNC)


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.vmsplice.argtypes = [ctypes.c_int, ctypes.POINTER(Iovec), ctypes.c_size_t, ctypes.c_uint]
LIBC.vmsplice.restype = ctypes.c_ssize_t
LIBC.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
LIBC.tee.restype = ctypes.c_ssize_t


def vmsplice(fd, buf, n):
    """`vmsplice(fd, iov, 2, 0)` of the first n bytes of the ctypes buffer `buf`, in two
    iovecs: its first 64 bytes and the rest."""
    base = ctypes.addressof(buf)
    first = min(n, 64)
    iov = (Iovec * 2)((base, first), (base + first, n - first))
    got = LIBC.vmsplice(fd, iov, 2 if n > first else 1, 0)
    if got < 0:
        raise OSError(ctypes.get_errno(), "vmsplice")
    return got


class VmspliceStdin(io.RawIOBase):
    """The standard input (a pipe's read end) read with `vmsplice`, which copies out of the
    pipe into the iovecs, as ReadvStdin."""

    def readable(self):
        return True

    def readinto(self, b):
        view = memoryview(b).cast("B")
        return vmsplice(0, (ctypes.c_char * len(view)).from_buffer(view), len(view))


class VmspliceStdout(io.RawIOBase):
    """The standard output (a pipe's write end) written with `vmsplice`, from two iovecs: the
    pipe takes the pages themselves, so each buffer is kept, never reused."""

    kept = []

    def writable(self):
        return True

    def write(self, b):
        buf = ctypes.create_string_buffer(bytes(b), len(b))
        self.kept.append(buf)
        return vmsplice(1, buf, len(b))


class SpliceStdout(io.RawIOBase):
    """The standard output written with `write`, except that of a message over 4096 bytes
    only the first and last 64 bytes are: a third of the rest goes with `sendfile` from a file,
    a third with `splice` from it, and the last with `tee` from another pipe the same bytes are
    spliced into first (then drained)."""

    def writable(self):
        return True

    def write(self, b):
        data = bytes(b)
        if len(data) <= 4096:
            return os.write(1, data)
        head, middle, tail = data[:64], data[64:-64], data[-64:]
        os.write(1, head)
        with tempfile.TemporaryFile() as f:
            f.write(middle)
            f.flush()
            third = len(middle) // 3
            done = 0
            while done < third:
                done += os.sendfile(1, f.fileno(), done, third - done)
            while done < 2 * third:
                done += os.splice(f.fileno(), 1, 2 * third - done, offset_src=done)
            r, w = os.pipe()
            try:
                while done < len(middle):
                    n = os.splice(f.fileno(), w, len(middle) - done, offset_src=done)
                    got = 0
                    while got < n:
                        t = LIBC.tee(r, 1, n - got, 0)
                        if t <= 0:
                            raise OSError(ctypes.get_errno(), "tee")
                        got += t
                        os.read(r, t)
                    done += n
            finally:
                os.close(r)
                os.close(w)
        os.write(1, tail)
        return len(data)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio-readv":
        # The SDK's stdio transport, given this standard input instead of its own.
        stdin = io.TextIOWrapper(io.BufferedReader(ReadvStdin()), encoding="utf-8", errors="replace")
        mcpserver.stdio_server = functools.partial(mcpserver.stdio_server, stdin=anyio.wrap_file(stdin))
        mode = "stdio"
    elif mode == "stdio-v2":
        stdin = io.TextIOWrapper(io.BufferedReader(Preadv2Stdin()), encoding="utf-8", errors="replace")
        stdout = io.TextIOWrapper(io.BufferedWriter(Pwritev2Stdout()), encoding="utf-8")
        mcpserver.stdio_server = functools.partial(
            mcpserver.stdio_server, stdin=anyio.wrap_file(stdin), stdout=anyio.wrap_file(stdout)
        )
        mode = "stdio"
    elif mode == "stdio-vmsplice":
        stdin = io.TextIOWrapper(io.BufferedReader(VmspliceStdin()), encoding="utf-8", errors="replace")
        stdout = io.TextIOWrapper(io.BufferedWriter(VmspliceStdout()), encoding="utf-8")
        mcpserver.stdio_server = functools.partial(
            mcpserver.stdio_server, stdin=anyio.wrap_file(stdin), stdout=anyio.wrap_file(stdout)
        )
        mode = "stdio"
    elif mode == "stdio-splice":
        stdout = io.TextIOWrapper(io.BufferedWriter(SpliceStdout()), encoding="utf-8")
        mcpserver.stdio_server = functools.partial(mcpserver.stdio_server, stdout=anyio.wrap_file(stdout))
        mode = "stdio"
    server.run(mode)
