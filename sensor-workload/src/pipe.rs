//! The `pipe` mode: MCP's stdio transport in one process, as the sensor's pipe capture sees an
//! agent and its MCP server: a `tools/call` request written into one pipe with `writev` and
//! read from it with `readv`, then its response written into another and read back the same
//! way, each a JSON-RPC line split over two iovecs (as libuv and Python's buffered streams
//! make them). The process both reads the request and writes the response, so an opted-in
//! sensor makes one `mcp_call` record of each operation.
use std::io::Write as _;

/// The two pipes, and a message buffer reused for every line.
pub struct Pipes {
    requests: [libc::c_int; 2],
    responses: [libc::c_int; 2],
    line: Vec<u8>,
    read: Vec<u8>,
}

impl Pipes {
    pub fn new() -> Self {
        let pipe = || {
            let mut fds = [0; 2];
            // SAFETY: pipe2 writes two fds into the array.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
            assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
            fds
        };
        Self {
            requests: pipe(),
            responses: pipe(),
            line: Vec::with_capacity(512),
            read: vec![0; 4096],
        }
    }

    /// One call: its request and its response, each written and read through its pipe.
    pub fn call(&mut self, id: u64) {
        self.line.clear();
        let _ = writeln!(
            self.line,
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"read_note\",\"arguments\":{{\"path\":\"/srv/notes/benchmark.txt\"}}}}}}"
        );
        self.through(self.requests);
        self.line.clear();
        let _ = writeln!(
            self.line,
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"the note's text\"}}],\"isError\":false}}}}"
        );
        self.through(self.responses);
    }

    /// `self.line` written into `pipe` with `writev` and read back whole with `readv`, both
    /// over two iovecs (its first 64 bytes, then the rest).
    fn through(&mut self, pipe: [libc::c_int; 2]) {
        let n = self.line.len();
        let (a, b) = self.line.split_at(64.min(n));
        let out = [
            libc::iovec {
                iov_base: a.as_ptr().cast_mut().cast(),
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: b.as_ptr().cast_mut().cast(),
                iov_len: b.len(),
            },
        ];
        // SAFETY: iovecs over live buffers; our own pipe (a line fits its buffer).
        let wrote = unsafe { libc::writev(pipe[1], out.as_ptr(), 2) };
        assert_eq!(
            wrote,
            n as isize,
            "writev: {}",
            std::io::Error::last_os_error()
        );
        let (a, b) = self.read.split_at_mut(64);
        let into = [
            libc::iovec {
                iov_base: a.as_mut_ptr().cast(),
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            },
        ];
        // SAFETY: iovecs over a live buffer; the line is in the pipe, so this does not block.
        let got = unsafe { libc::readv(pipe[0], into.as_ptr(), 2) };
        assert_eq!(
            got,
            n as isize,
            "readv: {}",
            std::io::Error::last_os_error()
        );
    }
}
