//! Newline-delimited messages (MCP's stdio transport) from one direction of one pipe, as the
//! kernel captured it: each call's bytes with where they start in the stream and how many the
//! call moved, and for a call cut at the agent's bound its last bytes too. Bytes not seen (the
//! middle of a cut call, a record the ring buffer had no room for) leave a hole. A message a
//! hole falls in is given out as incomplete, with its captured start and, once its newline is
//! seen, its captured end: the bytes after its last hole (a JSON-RPC message's last members,
//! its `id` for some writers). After a hole where no message was under way, what follows is
//! skipped up to the next newline (it may be a message's end). A hole is taken to hold no
//! newline of its own, unless the bytes after it are a whole JSON object by themselves (then
//! the hole ended a line, and they are a message of their own); so a cut call that holds the
//! end of one message and the start of another is read as one message with that start and
//! that end, never as a message split in two.

use serde::de::IgnoredAny;

/// Longest message kept whole; the rest of a longer one is counted, not kept.
pub const MAX_FRAME: usize = 1 << 20;
/// Most bytes of an incomplete message's end kept (its last ones).
pub const MAX_END: usize = 4096;

/// One message (a line without its newline), or the captured start and end of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its bytes as captured (all of them when `complete`); when not, its captured start.
    pub bytes: Vec<u8>,
    /// When not `complete`: its captured end, the bytes after its last hole up to its newline
    /// (at most [`MAX_END`], the last ones); empty when that was not seen.
    pub end: Vec<u8>,
    /// Every byte of the message was seen and kept.
    pub complete: bool,
    /// Its real length in bytes: exact when its newline was seen, otherwise as far as known
    /// (at least `bytes.len()`).
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
    /// Where the message under way starts in the stream.
    start: u64,
    /// The message under way had a hole after its start: its bytes since go to `end`.
    cut: bool,
    /// Bytes of the message under way since its last hole (the last [`MAX_END`]).
    end: Vec<u8>,
    /// `end` lost bytes from its front to the bound.
    end_trimmed: bool,
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
    /// Takes one call: `data` is the start of the `len` bytes it moved from `offset` on, and
    /// `tail` (a cut call's) their last bytes. Messages it completes go to `out`.
    pub fn feed(
        &mut self,
        offset: u64,
        len: u64,
        data: &[u8],
        tail: &[u8],
        ktime_ns: u64,
        out: &mut Vec<Frame>,
    ) {
        match self.next {
            // Capture began inside the stream: its first line may be a message's tail.
            None if offset != 0 => self.skipping = true,
            Some(next) if next != offset => self.hole(),
            _ => {}
        }
        let end = offset.saturating_add(len);
        self.next = Some(end);
        self.take(offset, data, ktime_ns, out);
        let seen = (data.len() + tail.len()) as u64;
        if seen < len {
            self.hole();
        }
        if !tail.is_empty() && seen <= len {
            self.take(end - tail.len() as u64, tail, ktime_ns, out);
        }
    }

    /// `data`, which starts at `at` in the stream.
    fn take(&mut self, at: u64, data: &[u8], ktime_ns: u64, out: &mut Vec<Frame>) {
        let mut rest = data;
        let mut pos = at;
        while !rest.is_empty() {
            let (line, newline) = match memchr(rest) {
                Some(i) => (&rest[..i], Some(i)),
                None => (rest, None),
            };
            if self.skipping {
            } else if self.cut {
                self.end.extend_from_slice(line);
                if self.end.len() > MAX_END {
                    self.end.drain(..self.end.len() - MAX_END);
                    self.end_trimmed = true;
                }
            } else {
                if self.buf.is_empty() && self.dropped == 0 {
                    self.first_ns = ktime_ns;
                    self.start = pos;
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
                        self.emit(ktime_ns, Some(pos + i as u64), out);
                    }
                    rest = &rest[i + 1..];
                    pos += i as u64 + 1;
                }
                None => rest = &[],
            }
        }
    }

    /// Bytes were not seen: the message under way has a hole (its bytes after it are its
    /// end); with none under way, what follows may be a message's end, skipped.
    fn hole(&mut self) {
        self.holes += 1;
        if self.skipping {
            return;
        }
        if !self.cut && self.buf.is_empty() && self.dropped == 0 {
            self.skipping = true;
            return;
        }
        self.cut = true;
        self.end.clear();
        self.end_trimmed = false;
    }

    /// The message under way ends: at the newline at `newline` in the stream, or (`None`)
    /// where the stream ends.
    fn emit(&mut self, ktime_ns: u64, newline: Option<u64>, out: &mut Vec<Frame>) {
        let bytes = std::mem::take(&mut self.buf);
        let mut end = std::mem::take(&mut self.end);
        let cut = std::mem::take(&mut self.cut);
        let trimmed = std::mem::take(&mut self.end_trimmed);
        let known = bytes.len() as u64 + self.dropped;
        let complete = newline.is_some() && !cut && self.dropped == 0;
        self.dropped = 0;
        // Blank lines are not messages.
        if complete && bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        // The bytes after the hole are a whole object: the hole ended a line, and they are
        // a message of their own (no proper end of an object's text is an object itself).
        let own = cut && !trimmed && is_object(&end);
        let size = match newline {
            // From its first byte to its newline, whatever was not seen in between.
            Some(at) if cut && !own => at.saturating_sub(self.start).max(known),
            _ => known,
        };
        let whole = own.then(|| std::mem::take(&mut end));
        if !bytes.is_empty() || size > 0 {
            out.push(Frame {
                bytes,
                end,
                complete,
                size,
                first_ns: self.first_ns,
                last_ns: ktime_ns,
            });
        }
        if let Some(line) = whole {
            out.push(Frame {
                size: line.len() as u64,
                bytes: line,
                end: Vec::new(),
                complete: true,
                first_ns: ktime_ns,
                last_ns: ktime_ns,
            });
        }
    }

    /// Bytes held for the message under way.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.end.len()
    }

    /// The message under way when the stream ends, incomplete.
    pub fn finish(&mut self, ktime_ns: u64, out: &mut Vec<Frame>) {
        if !self.skipping && (!self.buf.is_empty() || self.dropped > 0 || self.cut) {
            // Its newline was not seen: no end of it is known.
            self.end.clear();
            self.cut = true;
            self.emit(ktime_ns, None, out);
        }
    }
}

/// `bytes` (without surrounding white space) is one whole JSON object.
fn is_object(bytes: &[u8]) -> bool {
    let text = bytes.trim_ascii();
    text.first() == Some(&b'{') && serde_json::from_slice::<IgnoredAny>(text).is_ok()
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
        s.feed(0, 5, b"{\"a\":", b"", 1, &mut out);
        s.feed(5, 9, b"1}\n{\"b\":2", b"", 2, &mut out);
        s.feed(14, 3, b"}\n\n", b"", 3, &mut out);
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
        // A 100-byte call of which the first 10 and the last 8 were copied.
        s.feed(0, 100, b"{\"id\":7,\"r", b",\"z\":1}\n", 1, &mut out);
        s.feed(100, 9, b"{\"id\":8}\n", b"", 2, &mut out);
        assert_eq!(
            texts(&out),
            vec![("{\"id\":7,\"r".into(), false), ("{\"id\":8}".into(), true)]
        );
        assert_eq!(out[0].end, b",\"z\":1}");
        assert_eq!(out[0].size, 99);
        assert!(out[1].end.is_empty());
    }

    #[test]
    fn a_message_cut_over_many_calls_keeps_its_start_and_its_end() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        // Three cut calls of one 3000-byte message, then its last 40 bytes whole.
        s.feed(0, 1000, b"{\"result\":", b"aaaa", 1, &mut out);
        s.feed(1000, 1000, b"bbbb", b"cccc", 2, &mut out);
        s.feed(2000, 960, b"dddd", b"eeee", 3, &mut out);
        let end = br#""x"}},"jsonrpc":"2.0","id":"req-17"}"#;
        let mut last = vec![b'y'; 40 - end.len() - 1];
        last.extend_from_slice(end);
        last.push(b'\n');
        s.feed(2960, 40, &last, b"", 4, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].complete);
        assert_eq!(out[0].bytes, b"{\"result\":");
        assert_eq!(
            out[0].end,
            [b"eeee".as_slice(), &last[..last.len() - 1]].concat()
        );
        assert_eq!(out[0].size, 2999);
        assert_eq!((out[0].first_ns, out[0].last_ns), (1, 4));
    }

    #[test]
    fn bytes_after_a_hole_that_are_a_whole_object_are_a_message_of_their_own() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(0, 6, b"{\"a\":1", b"", 1, &mut out);
        // Lost: bytes 6..20 (the end of that message, a newline).
        s.feed(20, 9, b"{\"id\":9}\n", b"", 2, &mut out);
        assert_eq!(
            texts(&out),
            vec![("{\"a\":1".into(), false), ("{\"id\":9}".into(), true)]
        );
        assert!(out[0].end.is_empty());
        // Kept to the bound, an end is never taken for a whole message.
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(0, 6, b"{\"a\":1", b"", 1, &mut out);
        let mut long = b"{\"b\":\"".to_vec();
        long.extend(std::iter::repeat_n(b'z', MAX_END));
        long.extend_from_slice(b"\"}\n");
        s.feed(20, long.len() as u64, &long, b"", 2, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end.len(), MAX_END);
    }

    #[test]
    fn after_a_hole_of_unknown_end_the_next_line_is_skipped_not_joined() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(0, 6, b"{\"id\":", b"", 1, &mut out);
        // Lost: bytes 6..20, which held `1}\n{"id":2,"x":` perhaps.
        s.feed(20, 12, b"\"y\"}\n{\"id\":3}", b"", 2, &mut out);
        s.feed(32, 1, b"\n", b"", 3, &mut out);
        assert_eq!(
            texts(&out),
            vec![("{\"id\":".into(), false), ("{\"id\":3}".into(), true)]
        );
        // Capture starting inside a stream skips the first (partial) line.
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(50, 12, b"tail}\n{\"a\":1", b"", 1, &mut out);
        s.feed(62, 2, b"}\n", b"", 2, &mut out);
        assert_eq!(texts(&out), vec![("{\"a\":1}".into(), true)]);
    }

    #[test]
    fn lines_that_are_not_json_objects_are_not_kept() {
        let mut s = LineStream::default();
        let mut out = Vec::new();
        s.feed(0, 11, b"total 12\n  ", b"", 1, &mut out);
        s.feed(11, 20, b"drwx a b\n {\"x\":1}\n\n", b"", 2, &mut out);
        assert_eq!(texts(&out), vec![(" {\"x\":1}".into(), true)]);
        assert_eq!(s.not_json, 2);
        let mut s = LineStream::default();
        s.feed(0, 100_000, &vec![b'a'; 100_000], b"", 3, &mut out);
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
            s.feed(at, piece.len() as u64, &piece, b"", i, &mut out);
            at += piece.len() as u64;
        }
        s.feed(at, 1, b"\n", b"", 99, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].complete);
        assert_eq!(out[0].bytes.len(), MAX_FRAME);
        assert_eq!(out[0].size, 20 * 64 * 1024);
    }
}
