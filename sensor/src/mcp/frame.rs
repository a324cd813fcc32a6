//! Newline-delimited messages (MCP's stdio transport) from one direction of one pipe, as the
//! kernel captured it: each call's bytes with where they start in the stream and how many the
//! call moved. Bytes not seen (a call cut at the agent's bound, a record the ring buffer had no
//! room for) leave a hole: the message the hole falls in is given out as incomplete (its
//! captured start only), and what follows the hole is skipped up to the next newline unless
//! the kernel saw the cut call end with one. So a hole never joins the pieces of two messages
//! into one, and a message is never split in two.

/// Longest message kept whole; the rest of a longer one is counted, not kept.
pub const MAX_FRAME: usize = 1 << 20;

/// One message (a line without its newline), or the captured start of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its bytes as captured (all of them when `complete`).
    pub bytes: Vec<u8>,
    /// Every byte of the message was seen and kept.
    pub complete: bool,
    /// Its real length in bytes, as far as known (at least `bytes.len()`).
    pub size: u64,
    /// When its first captured byte was moved (CLOCK_BOOTTIME ns).
    pub first_ns: u64,
    /// When its last captured byte was moved.
    pub last_ns: u64,
}

/// One direction of one pipe.
#[derive(Debug, Default)]
pub struct LineStream {
    /// Where the next call's bytes should start; `None` before the first call.
    next: Option<u64>,
    /// The message under way.
    buf: Vec<u8>,
    /// Bytes of the message under way not kept (over [`MAX_FRAME`]).
    dropped: u64,
    /// Inside a message whose start was not seen: bytes are dropped up to the next newline.
    skipping: bool,
    first_ns: u64,
    /// Holes seen.
    pub holes: u64,
    /// Lines that are not a JSON object (a pipeline's text, say): dropped unbuffered.
    pub not_json: u64,
    /// Most bytes the message under way may hold now (at most [`MAX_FRAME`]; `None`: that),
    /// so that all pipes together stay within the assembler's budget.
    pub budget: Option<usize>,
}

impl LineStream {
    /// Takes one call: `data` is the start of the `len` bytes it moved from `offset` on;
    /// `ends_line`: the call's last byte (seen or not) was a newline. Messages it completes,
    /// and the incomplete one a hole ends, go to `out`.
    pub fn feed(
        &mut self,
        offset: u64,
        len: u64,
        data: &[u8],
        ends_line: bool,
        ktime_ns: u64,
        out: &mut Vec<Frame>,
    ) {
        match self.next {
            // Capture began inside the stream: its first line may be a message's tail.
            None if offset != 0 => self.skipping = true,
            Some(next) if next != offset => self.hole(false, ktime_ns, out),
            _ => {}
        }
        self.next = Some(offset.saturating_add(len));
        let mut rest = data;
        while !rest.is_empty() {
            let (line, newline) = match memchr(rest) {
                Some(i) => (&rest[..i], Some(i)),
                None => (rest, None),
            };
            if !self.skipping {
                if self.buf.is_empty() && self.dropped == 0 {
                    self.first_ns = ktime_ns;
                }
                let limit = self.budget.unwrap_or(MAX_FRAME).min(MAX_FRAME);
                let keep = line.len().min(limit.saturating_sub(self.buf.len()));
                self.buf.extend_from_slice(&line[..keep]);
                self.dropped += (line.len() - keep) as u64;
                // JSON-RPC messages are objects: any other line is skipped, not kept.
                if self
                    .buf
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|&b| b != b'{')
                {
                    self.buf.clear();
                    self.dropped = 0;
                    self.not_json += 1;
                    self.skipping = true;
                }
            }
            match newline {
                Some(i) => {
                    if self.skipping {
                        self.skipping = false;
                    } else {
                        self.emit(ktime_ns, true, out);
                    }
                    rest = &rest[i + 1..];
                }
                None => rest = &[],
            }
        }
        if (data.len() as u64) < len {
            self.hole(ends_line, ktime_ns, out);
        }
    }

    /// Bytes were not seen: the message under way is incomplete, and unless the hole is
    /// known to end at a line's end, what follows it is a message's tail.
    fn hole(&mut self, ends_line: bool, ktime_ns: u64, out: &mut Vec<Frame>) {
        self.holes += 1;
        if !self.skipping && (!self.buf.is_empty() || self.dropped > 0) {
            self.emit(ktime_ns, false, out);
        }
        self.skipping = !ends_line;
    }

    fn emit(&mut self, ktime_ns: u64, whole: bool, out: &mut Vec<Frame>) {
        let bytes = std::mem::take(&mut self.buf);
        let size = bytes.len() as u64 + self.dropped;
        let complete = whole && self.dropped == 0;
        self.dropped = 0;
        // Blank lines are not messages.
        if complete && bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        out.push(Frame {
            bytes,
            complete,
            size,
            first_ns: self.first_ns,
            last_ns: ktime_ns,
        });
    }

    /// Bytes held for the message under way.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The message under way when the stream ends, incomplete.
    pub fn finish(&mut self, ktime_ns: u64, out: &mut Vec<Frame>) {
        if !self.skipping && (!self.buf.is_empty() || self.dropped > 0) {
            self.emit(ktime_ns, false, out);
        }
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(frames: &[Frame]) -> Vec<(String, bool)> {
        frames
            .iter()
            .map(|f| (String::from_utf8_lossy(&f.bytes).into_owned(), f.complete))
            .collect()
    }

    #[test]
    fn messages_split_across_calls_and_calls_with_many_messages() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(0, 5, b"{\"a\":", false, 1, &mut out);
        s.feed(5, 9, b"1}\n{\"b\":2", false, 2, &mut out);
        s.feed(14, 3, b"}\n\n", true, 3, &mut out);
        assert_eq!(
            texts(&out),
            vec![("{\"a\":1}".into(), true), ("{\"b\":2}".into(), true)]
        );
        assert_eq!(out[0].first_ns, 1);
        assert_eq!(out[0].last_ns, 2);
    }

    #[test]
    fn a_cut_call_gives_an_incomplete_message_and_the_next_one_stays_whole() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        // A 100-byte call of which 10 were copied, ending with a newline.
        s.feed(0, 100, b"{\"id\":7,\"r", true, 1, &mut out);
        s.feed(100, 9, b"{\"id\":8}\n", true, 2, &mut out);
        assert_eq!(
            texts(&out),
            vec![("{\"id\":7,\"r".into(), false), ("{\"id\":8}".into(), true)]
        );
        assert_eq!(out[0].size, 10);
    }

    #[test]
    fn after_a_hole_of_unknown_end_the_next_line_is_skipped_not_joined() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(0, 6, b"{\"id\":", false, 1, &mut out);
        // Lost: bytes 6..20, which held `1}\n{"id":2,"x":` perhaps.
        s.feed(20, 12, b"\"y\"}\n{\"id\":3}", false, 2, &mut out);
        s.feed(32, 1, b"\n", true, 3, &mut out);
        assert_eq!(
            texts(&out),
            vec![("{\"id\":".into(), false), ("{\"id\":3}".into(), true)]
        );
        // Capture starting inside a stream skips the first (partial) line.
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(50, 12, b"tail}\n{\"a\":1", false, 1, &mut out);
        s.feed(62, 2, b"}\n", true, 2, &mut out);
        assert_eq!(texts(&out), vec![("{\"a\":1}".into(), true)]);
    }

    #[test]
    fn lines_that_are_not_json_objects_are_not_kept() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(0, 11, b"total 12\n  ", false, 1, &mut out);
        s.feed(11, 20, b"drwx a b\n {\"x\":1}\n\n", true, 2, &mut out);
        assert_eq!(texts(&out), vec![(" {\"x\":1}".into(), true)]);
        assert_eq!(s.not_json, 2);
        let mut s = LineStream::default();
        s.feed(0, 100_000, &vec![b'a'; 100_000], false, 3, &mut out);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn a_huge_message_is_kept_up_to_the_bound_and_flagged() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        let mut first = true;
        let chunk = vec![b'x'; 64 * 1024];
        let mut at = 0;
        for i in 0..20 {
            let mut piece = chunk.clone();
            if std::mem::take(&mut first) {
                piece[0] = b'{';
            }
            s.feed(at, piece.len() as u64, &piece, false, i, &mut out);
            at += piece.len() as u64;
        }
        s.feed(at, 1, b"\n", true, 99, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].complete);
        assert_eq!(out[0].bytes.len(), MAX_FRAME);
        assert_eq!(out[0].size, 20 * 64 * 1024);
    }
}
