//! HTTP/2 (RFC 9113) from the two captured directions of one connection: the client's preface,
//! then frames; header blocks (HEADERS or PUSH_PROMISE, and CONTINUATIONs) decoded with each
//! direction's HPACK table ([`super::hpack`]), DATA appended to its stream's request or
//! response, padding and priority skipped, SETTINGS' header table size passed to the other
//! direction's decoder. Each stream becomes one request and its response as [`Message`]s, the
//! same as HTTP/1.1's: whole when the response ends its stream, incomplete when a side resets
//! it, the server's GOAWAY says it was never processed, or the connection ends first.
//!
//! Frames are hostile input: a malformed frame, a header block beyond its bound or an HPACK
//! fault ends the connection's decoding with the reason, and its streams under way are handed
//! on incomplete. Bytes of a side that were not captured (a write over the agent's bound,
//! which with several frames per write hides frame heads) lose that side's framing: its
//! streams under way are flagged truncated, and the side is found again only where its next
//! write starts with a frame head that fits what the side may send there (a client or server
//! writes whole frames; otherwise decoding ends, `NotCaptured`). Header blocks in the bytes
//! not seen may have added to that side's HPACK table, so its entries are forgotten (the
//! client's only if its next header block shows the lost bytes opened a stream): a later block
//! that names one ends decoding, never decodes as another header. Memory per connection is bounded: at most [`MAX_STREAMS`] streams, frames other
//! than DATA of at most [`FRAME_CAP`] bytes, header blocks of at most [`BLOCK_CAP`], bodies of
//! at most [`super::http::BODY_CAP`], and HPACK's own bounds.

use std::collections::BTreeMap;

use super::{
    hpack::{self, HpackError},
    http::{Message, keep},
};

/// What a client sends first.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Most bytes of a frame other than DATA (DATA is read as it comes, never held whole).
pub const FRAME_CAP: usize = 64 * 1024;
/// Most bytes of one header block (a HEADERS frame and its CONTINUATIONs).
pub const BLOCK_CAP: usize = 64 * 1024;
/// Most streams of one connection under way; beyond it the oldest is handed on incomplete.
pub const MAX_STREAMS: usize = 128;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;

/// Why a connection's HTTP/2 could not be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Error {
    /// The client's first bytes are not the whole preface.
    BadPreface,
    /// A frame that breaks its own rules: DATA or HEADERS on stream 0, SETTINGS off stream 0 or
    /// of a length not a multiple of 6, padding longer than the frame, a frame other than
    /// CONTINUATION in a header block, a CONTINUATION outside one.
    BadFrame,
    /// A frame other than DATA longer than [`FRAME_CAP`].
    FrameTooLarge,
    /// A header block longer than [`BLOCK_CAP`].
    BlockTooLarge,
    /// A header block HPACK could not decode.
    Hpack(HpackError),
    /// Bytes of a frame head or header block were not captured (a call longer than the
    /// agent's `max_bytes`, or a capture lost): the frames after them cannot be found.
    NotCaptured,
}

impl H2Error {
    /// A short name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadPreface => "h2_preface",
            Self::BadFrame => "h2_frame",
            Self::FrameTooLarge => "h2_frame_too_large",
            Self::BlockTooLarge => "h2_header_block_too_large",
            Self::Hpack(e) => e.as_str(),
            Self::NotCaptured => "h2_frame_not_captured",
        }
    }
}

impl From<HpackError> for H2Error {
    fn from(e: HpackError) -> Self {
        Self::Hpack(e)
    }
}

/// A request and its response (if one came), as they are handed on.
#[derive(Debug)]
pub struct Exchange {
    /// The request (incomplete unless its side ended the stream).
    pub request: Message,
    /// The response, if its HEADERS came.
    pub response: Option<Message>,
}

/// Where a direction is in its frames.
#[derive(Debug)]
enum At {
    /// The client's preface: this many bytes of it still to come.
    Preface(usize),
    /// A frame head (9 bytes) next.
    Head,
    /// Bytes not captured hid where the frames are: the next write must start with a frame
    /// head.
    Lost,
    /// Inside a DATA frame's payload.
    Data {
        stream: u32,
        end_stream: bool,
        /// Waiting for the pad length byte.
        pad_byte: bool,
        /// Payload bytes left (data, then padding).
        left: u32,
        /// Padding bytes at the end of what is left.
        pad: u32,
    },
}

/// A header block under way (its HEADERS or PUSH_PROMISE lacked END_HEADERS).
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    /// A PUSH_PROMISE's block: decoded for the table's sake, its fields not used.
    push: bool,
    bytes: Vec<u8>,
}

/// One direction of the connection.
#[derive(Debug)]
struct Side {
    buf: Vec<u8>,
    at: At,
    /// Decodes the header blocks this side sends.
    decoder: hpack::Decoder,
    block: Option<Block>,
    /// Its framing was lost once.
    lost: bool,
    /// The client's framing was lost while `highest` was this, and no header block of its
    /// has been read since: its HPACK table is kept until one is (see [`Connection::lose`]).
    suspect: Option<u32>,
}

impl Side {
    fn new(client: bool) -> Self {
        Self {
            buf: Vec::new(),
            at: if client {
                At::Preface(PREFACE.len())
            } else {
                At::Head
            },
            decoder: hpack::Decoder::default(),
            block: None,
            lost: false,
            suspect: None,
        }
    }
}

#[derive(Debug)]
struct Stream {
    request: Message,
    request_done: bool,
    response: Option<Message>,
}

/// One connection's HTTP/2; see the module doc.
#[derive(Debug)]
pub struct Connection {
    client: Side,
    server: Side,
    streams: BTreeMap<u32, Stream>,
    /// The highest stream the client opened: a new stream must be higher (RFC 9113 5.1.1).
    highest: u32,
    broken: Option<H2Error>,
}

impl Default for Connection {
    fn default() -> Self {
        Self {
            client: Side::new(true),
            server: Side::new(false),
            streams: BTreeMap::new(),
            highest: 0,
            broken: None,
        }
    }
}

/// Whether a connection whose client wrote `first` first is HTTP/2 (with prior knowledge or
/// ALPN `h2`: the preface, or its start in a short first write).
pub fn starts_with_preface(first: &[u8]) -> bool {
    let n = first.len().min(PREFACE.len());
    n >= 4 && first[..n] == PREFACE[..n]
}

impl Connection {
    /// Why decoding stopped, if it did.
    pub fn broken(&self) -> Option<H2Error> {
        self.broken
    }

    /// Whether a stream is under way.
    pub fn in_progress(&self) -> bool {
        !self.streams.is_empty()
    }

    /// Takes what one side wrote (`sent`: the client, the agent), then `missing` bytes the
    /// capture did not copy. `ended` says whether a response under way is whole already (an
    /// event stream's final event): its exchange is handed on at once. Exchanges go to `out`.
    pub fn feed(
        &mut self,
        sent: bool,
        data: &[u8],
        missing: u64,
        ktime_ns: u64,
        ended: &dyn Fn(&Message, &Message) -> bool,
        out: &mut Vec<Exchange>,
    ) {
        if self.broken.is_some() {
            return;
        }
        let side = if sent {
            &mut self.client
        } else {
            &mut self.server
        };
        let mut result = Ok(());
        if matches!(side.at, At::Lost) && !data.is_empty() {
            if plausible_head(data, sent, self.highest) {
                side.at = At::Head;
            } else {
                result = Err(H2Error::NotCaptured);
            }
        }
        let side = if sent {
            &mut self.client
        } else {
            &mut self.server
        };
        if result.is_ok() && !matches!(side.at, At::Lost) {
            side.buf.extend_from_slice(data);
            result = self.drain(sent, ktime_ns, ended, out);
        }
        if result.is_ok() && missing > 0 {
            self.skip(sent, missing, ktime_ns, out);
        }
        if let Err(e) = result {
            // Bytes not captured ended the decoding: each message this side had under way may
            // have lost some, so it says so (and its provider's shape is read from its start,
            // as for any body the bound cut).
            if e == H2Error::NotCaptured {
                for id in self.streams.keys().copied().collect::<Vec<_>>() {
                    if let Some(m) = message(&mut self.streams, id, sent) {
                        m.truncated = true;
                    }
                }
            }
            self.broken = Some(e);
            self.client.buf = Vec::new();
            self.server.buf = Vec::new();
            self.finish(out);
        }
    }

    /// Every stream under way, handed on incomplete (the connection ended or went quiet).
    pub fn finish(&mut self, out: &mut Vec<Exchange>) {
        for (_, s) in std::mem::take(&mut self.streams) {
            out.push(incomplete(s));
        }
    }

    /// Bytes not captured: counted into the DATA frame under way; past it, or anywhere else,
    /// the side's framing is lost until its next write ([`At::Lost`]).
    fn skip(&mut self, sent: bool, missing: u64, ktime_ns: u64, out: &mut Vec<Exchange>) {
        let side = if sent {
            &mut self.client
        } else {
            &mut self.server
        };
        // Captured bytes still waiting (a frame head) come before the missing ones.
        let At::Data {
            stream,
            end_stream,
            left,
            pad,
            pad_byte: false,
        } = &mut side.at
        else {
            self.lose(sent);
            return;
        };
        if !side.buf.is_empty() {
            self.lose(sent);
            return;
        }
        let past = missing > u64::from(*left);
        let n = missing.min(u64::from(*left)) as u32;
        let data = n.min(left.saturating_sub(*pad));
        *left -= n;
        let (id, end, frame_done) = (*stream, *end_stream, *left == 0);
        if frame_done {
            side.at = At::Head;
        }
        if let Some(m) = message(&mut self.streams, id, sent) {
            m.truncated = true;
            m.body_len += u64::from(data);
            m.last_ns = ktime_ns;
        }
        if frame_done && end {
            self.end_stream(id, sent, out);
        }
        if past {
            self.lose(sent);
        }
    }

    /// The side's framing is lost (see [`At::Lost`]): what its streams under way send is
    /// flagged truncated, a header block under way is dropped, and its HPACK entries are
    /// forgotten: at once for the server, whose writes mix responses' header blocks and
    /// trailers with their bodies. A client's bytes not seen hold a header block only if they
    /// open a stream (HTTP API clients send no request trailers), which takes the next stream
    /// id: so its table is kept if the first header block it sends after the loss opens
    /// exactly the stream after the highest seen, and forgotten otherwise.
    fn lose(&mut self, sent: bool) {
        for id in self.streams.keys().copied().collect::<Vec<_>>() {
            if let Some(m) = message(&mut self.streams, id, sent) {
                m.truncated = true;
            }
        }
        let highest = self.highest;
        let side = self.side(sent);
        side.at = At::Lost;
        side.buf = Vec::new();
        side.block = None;
        side.lost = true;
        if sent {
            side.suspect = side.suspect.or(Some(highest));
        } else {
            side.decoder.forget();
        }
    }

    fn drain(
        &mut self,
        sent: bool,
        ktime_ns: u64,
        ended: &dyn Fn(&Message, &Message) -> bool,
        out: &mut Vec<Exchange>,
    ) -> Result<(), H2Error> {
        let mut at = 0;
        let result = loop {
            match self.step(sent, at, ktime_ns, ended, out) {
                Ok(Some(used)) => at += used,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let side = if sent {
            &mut self.client
        } else {
            &mut self.server
        };
        side.buf.drain(..at.min(side.buf.len()));
        result
    }

    /// Consumes what it can from the side's buffer at `at`: `Some(bytes used)`, `None` when
    /// more is needed.
    fn step(
        &mut self,
        sent: bool,
        at: usize,
        ktime_ns: u64,
        ended: &dyn Fn(&Message, &Message) -> bool,
        out: &mut Vec<Exchange>,
    ) -> Result<Option<usize>, H2Error> {
        let side = if sent {
            &mut self.client
        } else {
            &mut self.server
        };
        let buf = &side.buf[at..];
        if buf.is_empty() {
            return Ok(None);
        }
        match &mut side.at {
            At::Lost => Ok(None),
            At::Preface(left) => {
                let done = PREFACE.len() - *left;
                let n = (*left).min(buf.len());
                if buf[..n] != PREFACE[done..done + n] {
                    return Err(H2Error::BadPreface);
                }
                *left -= n;
                if *left == 0 {
                    side.at = At::Head;
                }
                Ok(Some(n))
            }
            At::Data {
                stream,
                end_stream,
                pad_byte,
                left,
                pad,
            } => {
                if *pad_byte {
                    *pad_byte = false;
                    *pad = u32::from(buf[0]);
                    *left -= 1;
                    if *pad > *left {
                        return Err(H2Error::BadFrame);
                    }
                    return Ok(Some(1));
                }
                let n = (*left as usize).min(buf.len());
                let data = n.min(left.saturating_sub(*pad) as usize);
                let (stream, end) = (*stream, *end_stream);
                *left -= n as u32;
                let frame_done = *left == 0;
                if frame_done {
                    side.at = At::Head;
                }
                let buf = if sent {
                    &self.client.buf
                } else {
                    &self.server.buf
                };
                let bytes = &buf[at..at + data];
                if let Some(m) = message(&mut self.streams, stream, sent) {
                    keep(m, bytes);
                    m.last_ns = ktime_ns;
                }
                if frame_done && end {
                    self.end_stream(stream, sent, out);
                } else if !sent
                    && let Some(s) = self.streams.get(&stream)
                    && s.response.as_ref().is_some_and(|r| ended(&s.request, r))
                {
                    let s = self.streams.remove(&stream).expect("present");
                    out.push(whole(s));
                }
                Ok(Some(n))
            }
            At::Head => {
                let Some(head) = buf.first_chunk::<9>() else {
                    return Ok(None);
                };
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
                let (kind, flags) = (head[3], head[4]);
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                if side.block.is_some() && kind != CONTINUATION {
                    return Err(H2Error::BadFrame);
                }
                if kind == DATA {
                    if stream == 0 {
                        return Err(H2Error::BadFrame);
                    }
                    let padded = flags & PADDED != 0;
                    if padded && len == 0 {
                        return Err(H2Error::BadFrame);
                    }
                    side.at = At::Data {
                        stream,
                        end_stream: flags & END_STREAM != 0,
                        pad_byte: padded,
                        left: len,
                        pad: 0,
                    };
                    if len == 0 && flags & END_STREAM != 0 {
                        side.at = At::Head;
                        self.end_stream(stream, sent, out);
                    } else if len == 0 {
                        side.at = At::Head;
                    }
                    return Ok(Some(9));
                }
                if len as usize > FRAME_CAP {
                    return Err(H2Error::FrameTooLarge);
                }
                let Some(payload) = buf.get(9..9 + len as usize) else {
                    return Ok(None);
                };
                let payload = payload.to_vec();
                self.frame(sent, kind, flags, stream, &payload, ktime_ns, out)?;
                Ok(Some(9 + len as usize))
            }
        }
    }

    fn side(&mut self, sent: bool) -> &mut Side {
        if sent {
            &mut self.client
        } else {
            &mut self.server
        }
    }

    /// One whole frame other than DATA.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        sent: bool,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
        ktime_ns: u64,
        out: &mut Vec<Exchange>,
    ) -> Result<(), H2Error> {
        match kind {
            HEADERS | PUSH_PROMISE => {
                if stream == 0 {
                    return Err(H2Error::BadFrame);
                }
                let mut p = payload;
                if flags & PADDED != 0 {
                    let (&pad, rest) = p.split_first().ok_or(H2Error::BadFrame)?;
                    let keep = rest
                        .len()
                        .checked_sub(usize::from(pad))
                        .ok_or(H2Error::BadFrame)?;
                    p = &rest[..keep];
                }
                if kind == HEADERS && flags & PRIORITY != 0 {
                    p = p.get(5..).ok_or(H2Error::BadFrame)?;
                }
                if kind == PUSH_PROMISE {
                    // The promised stream's id.
                    p = p.get(4..).ok_or(H2Error::BadFrame)?;
                }
                let block = Block {
                    stream,
                    end_stream: kind == HEADERS && flags & END_STREAM != 0,
                    push: kind == PUSH_PROMISE,
                    bytes: p.to_vec(),
                };
                if flags & END_HEADERS != 0 {
                    self.block(sent, &block, ktime_ns, out)
                } else {
                    self.side(sent).block = Some(block);
                    Ok(())
                }
            }
            CONTINUATION => {
                let side = self.side(sent);
                let Some(block) = side.block.as_mut() else {
                    return Err(H2Error::BadFrame);
                };
                if block.stream != stream {
                    return Err(H2Error::BadFrame);
                }
                if block.bytes.len() + payload.len() > BLOCK_CAP {
                    return Err(H2Error::BlockTooLarge);
                }
                block.bytes.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    let block = side.block.take().expect("checked");
                    self.block(sent, &block, ktime_ns, out)?;
                }
                Ok(())
            }
            SETTINGS => {
                if stream != 0
                    || (flags & ACK != 0 && !payload.is_empty())
                    || !payload.len().is_multiple_of(6)
                {
                    return Err(H2Error::BadFrame);
                }
                for setting in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([setting[0], setting[1]]);
                    let value =
                        u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                    if id == SETTINGS_HEADER_TABLE_SIZE {
                        // What this side allows the other side's encoder.
                        self.side(!sent).decoder.allow(value);
                    }
                }
                Ok(())
            }
            RST_STREAM => {
                if let Some(s) = self.streams.remove(&stream) {
                    out.push(incomplete(s));
                }
                Ok(())
            }
            GOAWAY => {
                // The server's last processed stream: the client's streams above it were not.
                if !sent {
                    let last = payload
                        .first_chunk::<4>()
                        .map(|b| u32::from_be_bytes(*b) & 0x7fff_ffff)
                        .ok_or(H2Error::BadFrame)?;
                    let unprocessed = self.streams.split_off(&last.saturating_add(1));
                    for (_, s) in unprocessed {
                        out.push(incomplete(s));
                    }
                }
                Ok(())
            }
            // PRIORITY, PING, WINDOW_UPDATE, and types this decoder does not know (which a
            // receiver ignores, RFC 9113 5.5).
            _ => Ok(()),
        }
    }

    /// A whole header block: decoded (always, for the table's sake), then a request opened, a
    /// response begun, or trailers taken.
    fn block(
        &mut self,
        sent: bool,
        block: &Block,
        ktime_ns: u64,
        out: &mut Vec<Exchange>,
    ) -> Result<(), H2Error> {
        if block.bytes.len() > BLOCK_CAP {
            return Err(H2Error::BlockTooLarge);
        }
        let side = self.side(sent);
        if let Some(highest) = side.suspect.take()
            && block.stream != highest + 2
        {
            side.decoder.forget();
        }
        let fields = match side.decoder.decode(&block.bytes) {
            Ok(fields) => fields,
            // An entry a block not captured may have added: not known.
            Err(hpack::HpackError::BadIndex) if side.lost => return Err(H2Error::NotCaptured),
            Err(e) => return Err(e.into()),
        };
        if block.push {
            return Ok(());
        }
        let id = block.stream;
        if sent {
            if !self.streams.contains_key(&id) {
                // A client's stream is odd and new; anything else opens nothing.
                if id.is_multiple_of(2) || id <= self.highest {
                    return Ok(());
                }
                self.highest = id;
                let Some(request) = request(fields, ktime_ns) else {
                    return Ok(());
                };
                if self.streams.len() >= MAX_STREAMS
                    && let Some((_, oldest)) = self.streams.pop_first()
                {
                    out.push(incomplete(oldest));
                }
                self.streams.insert(
                    id,
                    Stream {
                        request,
                        request_done: false,
                        response: None,
                    },
                );
            }
        } else if let Some(s) = self.streams.get_mut(&id)
            && s.response.is_none()
        {
            let status = fields
                .iter()
                .find(|(n, _)| n == ":status")
                .and_then(|(_, v)| v.parse::<u16>().ok());
            match status {
                // 100 Continue and friends: not the answer.
                Some(100..=199) => return Ok(()),
                Some(status) => {
                    s.response = Some(Message {
                        status,
                        headers: regular(fields),
                        first_ns: ktime_ns,
                        last_ns: ktime_ns,
                        version: "2",
                        ..Message::default()
                    });
                }
                // A response without a status is malformed: the stream is not trusted.
                None => {
                    let s = self.streams.remove(&id).expect("present");
                    out.push(incomplete(s));
                    return Ok(());
                }
            }
        }
        if block.end_stream {
            self.end_stream(id, sent, out);
        }
        Ok(())
    }

    /// A side ended a stream: the request is sent, or the response (and so the exchange) is
    /// whole.
    fn end_stream(&mut self, id: u32, sent: bool, out: &mut Vec<Exchange>) {
        if sent {
            if let Some(s) = self.streams.get_mut(&id) {
                s.request_done = true;
            }
        } else if let Some(s) = self.streams.remove(&id) {
            if s.response.is_some() {
                out.push(whole(s));
            } else {
                out.push(incomplete(s));
            }
        }
    }
}

/// The message a DATA frame of stream `id` adds to: its request (client) or response.
/// Whether `bytes`, the start of a write after bytes not captured, start with a frame head
/// this side may send there: a known frame type with only its own flags, on a stream (or not)
/// as its type wants, of a length its type allows; DATA on a stream the client opened. Not a
/// CONTINUATION (the block it would continue was lost). The payload of a frame cut at a write
/// boundary fails this but for a chance of some 2^-40 per write.
fn plausible_head(bytes: &[u8], sent: bool, highest: u32) -> bool {
    let Some(head) = bytes.first_chunk::<9>() else {
        return false;
    };
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    let (kind, flags) = (head[3], head[4]);
    let raw = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
    if raw & 0x8000_0000 != 0 {
        return false;
    }
    let stream = raw;
    let cap = FRAME_CAP as u32;
    match kind {
        DATA => {
            stream != 0
                && stream <= highest
                && flags & !(END_STREAM | PADDED) == 0
                && len <= 1 << 24
        }
        HEADERS => {
            stream != 0
                && flags & !(END_STREAM | END_HEADERS | PADDED | PRIORITY) == 0
                && len <= cap
                && (!sent || !stream.is_multiple_of(2))
        }
        // PRIORITY, RST_STREAM, WINDOW_UPDATE.
        0x2 => stream != 0 && flags == 0 && len == 5,
        RST_STREAM => stream != 0 && flags == 0 && len == 4,
        0x8 => flags == 0 && len == 4,
        SETTINGS => stream == 0 && flags & !ACK == 0 && len.is_multiple_of(6) && len <= cap,
        PUSH_PROMISE => !sent && stream != 0 && flags & !(END_HEADERS | PADDED) == 0 && len <= cap,
        // PING.
        0x6 => stream == 0 && flags & !ACK == 0 && len == 8,
        GOAWAY => stream == 0 && flags == 0 && (8..=cap).contains(&len),
        _ => false,
    }
}

fn message(streams: &mut BTreeMap<u32, Stream>, id: u32, sent: bool) -> Option<&mut Message> {
    let s = streams.get_mut(&id)?;
    if sent {
        (!s.request_done).then_some(&mut s.request)
    } else {
        s.response.as_mut()
    }
}

/// A request's message from its header list: `:method`, `:path` and `:authority` (as
/// `host`); none without a method.
fn request(fields: Vec<hpack::Field>, ktime_ns: u64) -> Option<Message> {
    let pseudo = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let method = pseudo(":method")?;
    let target = pseudo(":path").unwrap_or_default();
    let authority = pseudo(":authority");
    let mut headers = regular(fields);
    if let Some(a) = authority
        && !headers.iter().any(|(n, _)| n == "host")
    {
        headers.insert(0, ("host".to_owned(), a));
    }
    Some(Message {
        method,
        target,
        headers,
        first_ns: ktime_ns,
        last_ns: ktime_ns,
        version: "2",
        ..Message::default()
    })
}

/// The fields that are not pseudo-headers, names in lower case.
fn regular(fields: Vec<hpack::Field>) -> Vec<(String, String)> {
    fields
        .into_iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect()
}

fn whole(s: Stream) -> Exchange {
    let mut request = s.request;
    request.incomplete |= !s.request_done;
    Exchange {
        request,
        response: s.response,
    }
}

fn incomplete(s: Stream) -> Exchange {
    let mut request = s.request;
    request.incomplete |= !s.request_done;
    let response = s.response.map(|mut r| {
        r.incomplete = true;
        r
    });
    Exchange { request, response }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A literal field without indexing, new name, plain strings.
    fn literal(name: &str, value: &str) -> Vec<u8> {
        let mut b = vec![0x00, name.len() as u8];
        b.extend_from_slice(name.as_bytes());
        b.push(value.len() as u8);
        b.extend_from_slice(value.as_bytes());
        b
    }

    /// A request's header block: POST (static 3), https (7), the path and authority indexed
    /// into the client's table, and a content type.
    fn post_block(path: &str) -> Vec<u8> {
        let mut b = vec![0x83, 0x87, 0x44, path.len() as u8];
        b.extend_from_slice(path.as_bytes());
        b.extend_from_slice(&[0x41, 9]);
        b.extend_from_slice(b"127.0.0.1");
        b.extend(literal("content-type", "application/json"));
        b
    }

    fn never(_: &Message, _: &Message) -> bool {
        false
    }

    fn feed(c: &mut Connection, sent: bool, bytes: &[u8], out: &mut Vec<Exchange>) {
        c.feed(sent, bytes, 0, 1, &never, out);
    }

    fn client_start() -> Vec<u8> {
        let mut w = PREFACE.to_vec();
        // SETTINGS: header table size 4096, and an unknown setting.
        w.extend(frame(
            SETTINGS,
            0,
            0,
            &[0, 1, 0, 0, 16, 0, 0, 0x7f, 0, 0, 0, 1],
        ));
        w.extend(frame(0x8, 0, 0, &[0, 0, 0x10, 0])); // WINDOW_UPDATE
        w
    }

    #[test]
    fn a_request_and_its_response_split_anywhere() {
        let mut client = client_start();
        let body = br#"{"model":"gpt-h2","messages":[]}"#;
        // HEADERS with padding and priority, split by a CONTINUATION.
        let block = post_block("/v1/chat/completions");
        let mut first = vec![3u8]; // pad length
        first.extend_from_slice(&[0x80, 0, 0, 0, 16]); // exclusive dependency, weight
        first.extend_from_slice(&block[..5]);
        first.extend_from_slice(&[0, 0, 0]);
        client.extend(frame(HEADERS, PADDED | PRIORITY, 1, &first));
        client.extend(frame(CONTINUATION, END_HEADERS, 1, &block[5..]));
        // The body in two DATA frames, the second padded.
        client.extend(frame(DATA, 0, 1, &body[..10]));
        let mut padded = vec![4u8];
        padded.extend_from_slice(&body[10..]);
        padded.extend_from_slice(&[0; 4]);
        client.extend(frame(DATA, PADDED | END_STREAM, 1, &padded));
        let mut server = frame(SETTINGS, 0, 0, &[]);
        server.extend(frame(SETTINGS, ACK, 0, &[]));
        // :status 200 (static 8), a content type indexed into the server's table.
        let mut block = vec![0x88, 0x5f, 16];
        block.extend_from_slice(b"application/json");
        server.extend(frame(HEADERS, END_HEADERS, 1, &block));
        server.extend(frame(DATA, 0, 1, b"{\"ok\":"));
        server.extend(frame(DATA, END_STREAM, 1, b"true}"));
        for cut in 0..client.len().max(server.len()) {
            let mut conn = Connection::default();
            let mut out = Vec::new();
            let (first, rest) = client.split_at(cut.min(client.len()));
            feed(&mut conn, true, first, &mut out);
            feed(&mut conn, true, rest, &mut out);
            let (first, rest) = server.split_at(cut.min(server.len()));
            feed(&mut conn, false, first, &mut out);
            feed(&mut conn, false, rest, &mut out);
            assert_eq!(conn.broken(), None, "cut at {cut}");
            assert_eq!(out.len(), 1, "cut at {cut}");
            let x = &out[0];
            assert_eq!(x.request.method, "POST");
            assert_eq!(x.request.target, "/v1/chat/completions");
            assert_eq!(x.request.header("host"), Some("127.0.0.1"));
            assert_eq!(x.request.header("content-type"), Some("application/json"));
            assert_eq!(x.request.body, body);
            assert!(!x.request.incomplete);
            let r = x.response.as_ref().unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.body, b"{\"ok\":true}");
            assert!(!r.incomplete);
            assert_eq!(r.version, "2");
        }
    }

    #[test]
    fn the_dynamic_tables_carry_across_streams_and_interleave() {
        let mut c = Connection::default();
        let mut out = Vec::new();
        let mut w = client_start();
        w.extend(frame(HEADERS, END_HEADERS, 1, &post_block("/v1/messages")));
        // Stream 3 names path and authority from the table (62: authority, 63: path... newest
        // first: 62 is the authority, 63 the path).
        w.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &[0x82, 0x87, 0xbf, 0xbe],
        ));
        w.extend(frame(DATA, END_STREAM, 1, b"{}"));
        feed(&mut c, true, &w, &mut out);
        let mut r = frame(HEADERS, END_HEADERS, 3, &[0x8d]); // 404
        r.extend(frame(HEADERS, END_HEADERS, 1, &[0x88]));
        r.extend(frame(DATA, END_STREAM, 3, b"no"));
        r.extend(frame(DATA, 0, 1, b"yes"));
        feed(&mut c, false, &r, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request.method, "GET");
        assert_eq!(out[0].request.target, "/v1/messages");
        assert_eq!(out[0].request.header("host"), Some("127.0.0.1"));
        assert_eq!(out[0].response.as_ref().unwrap().status, 404);
        // Trailers end stream 1.
        feed(
            &mut c,
            false,
            &frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &literal("grpc-status", "0"),
            ),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].response.as_ref().unwrap().body, b"yes");
        assert!(!c.in_progress());
    }

    #[test]
    fn reset_goaway_and_the_connection_ending_make_exchanges_incomplete() {
        let mut c = Connection::default();
        let mut out = Vec::new();
        let mut w = client_start();
        for id in [1, 3, 5, 7] {
            w.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                id,
                &[0x82, 0x87, 0x84],
            ));
        }
        feed(&mut c, true, &w, &mut out);
        let mut r = frame(HEADERS, END_HEADERS, 1, &[0x88]);
        r.extend(frame(DATA, 0, 1, b"part"));
        r.extend(frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]));
        r.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
        feed(&mut c, false, &r, &mut out);
        let ids: Vec<bool> = out.iter().map(|x| x.response.is_some()).collect();
        assert_eq!(ids, [true, false, false]);
        assert!(out[0].response.as_ref().unwrap().incomplete);
        assert_eq!(out[0].response.as_ref().unwrap().body, b"part");
        c.finish(&mut out);
        assert_eq!(out.len(), 4);
        assert!(out[3].response.is_none());
    }

    #[test]
    fn an_event_stream_is_whole_at_its_final_event() {
        let mut c = Connection::default();
        let mut out = Vec::new();
        let mut w = client_start();
        w.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &[0x83, 0x87, 0x84],
        ));
        feed(&mut c, true, &w, &mut out);
        let mut r = frame(HEADERS, END_HEADERS, 1, &[0x88]);
        r.extend(frame(DATA, 0, 1, b"data: x\n\n"));
        let done = |_: &Message, m: &Message| m.body.ends_with(b"[DONE]\n\n");
        c.feed(false, &r, 0, 2, &done, &mut out);
        assert!(out.is_empty());
        c.feed(
            false,
            &frame(DATA, 0, 1, b"data: [DONE]\n\n"),
            0,
            3,
            &done,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(!out[0].response.as_ref().unwrap().incomplete);
        // The END_STREAM that follows finds no stream: nothing twice.
        c.feed(
            false,
            &frame(DATA, END_STREAM, 1, b""),
            0,
            4,
            &done,
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn missing_bytes_inside_data_keep_the_framing_and_elsewhere_end_it() {
        let mut c = Connection::default();
        let mut out = Vec::new();
        let mut w = client_start();
        w.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &post_block("/v1/chat/completions"),
        ));
        let mut data = frame(DATA, END_STREAM, 1, &[b'x'; 100]);
        data.truncate(9 + 30);
        w.extend(data);
        c.feed(true, &w, 70, 1, &never, &mut out);
        feed(&mut c, true, &frame(0x6, 0, 0, &[0; 8]), &mut out); // PING
        assert_eq!(c.broken(), None);
        feed(
            &mut c,
            false,
            &frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(out[0].request.truncated);
        assert_eq!(out[0].request.body_len, 100);
        assert_eq!(out[0].request.body.len(), 30);
        // Missing bytes in a frame head: the client's framing is lost; a next write that
        // does not start with a frame head it may send ends the decoding, the stream under
        // way handed on.
        let mut c = Connection::default();
        let mut w = client_start();
        w.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &[0x83, 0x87, 0x84],
        ));
        w.extend_from_slice(&[0, 0]);
        out.clear();
        c.feed(true, &w, 7, 1, &never, &mut out);
        assert_eq!(c.broken(), None);
        feed(&mut c, true, b"xxxxxxxxxxxx", &mut out);
        assert_eq!(c.broken(), Some(H2Error::NotCaptured));
        assert_eq!(out.len(), 1);
        assert!(out[0].response.is_none());
        for head in [
            frame(DATA, 0, 3, b"x"),              // a stream the client never opened
            frame(HEADERS, END_HEADERS, 2, b"x"), // a client's stream is odd
            frame(CONTINUATION, END_HEADERS, 1, b"x"),
            frame(0x6, 0, 0, &[0; 7]), // a PING of 7 bytes
            frame(0x6, 0, 1, &[0; 8]), // a PING on a stream
            frame(SETTINGS, 0x2, 0, &[]),
            frame(0xa, 0, 0, &[]),
        ] {
            assert!(!plausible_head(&head, true, 1), "{head:?}");
        }
        // Missing bytes that run past the DATA frame under way (a write of several frames,
        // as nghttp2 makes them): the request they cut says it is truncated, and the next
        // write, which starts with a frame head, is read: a request of its own, whole. Its
        // header block names only what it adds to the table: one that names an entry added
        // before the loss (perhaps not the encoder's any more) ends the decoding.
        let mut c = Connection::default();
        let mut w = client_start();
        w.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &post_block("/v1/chat/completions"),
        ));
        let mut data = frame(DATA, 0, 1, &[b'x'; 100]);
        data.truncate(9 + 30);
        w.extend(data);
        out.clear();
        c.feed(true, &w, 70 + 9 + 100, 1, &never, &mut out);
        assert_eq!(c.broken(), None);
        let mut w = frame(0x6, 0, 0, &[0; 8]); // PING
        w.extend(frame(HEADERS, END_HEADERS, 3, &post_block("/v1/messages")));
        w.extend(frame(DATA, END_STREAM, 3, b"{}"));
        feed(&mut c, true, &w, &mut out);
        for id in [3, 1] {
            feed(
                &mut c,
                false,
                &frame(HEADERS, END_HEADERS | END_STREAM, id, &[0x88]),
                &mut out,
            );
        }
        assert_eq!(c.broken(), None);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].request.target, "/v1/messages");
        assert!(!out[0].request.truncated && !out[0].request.incomplete);
        assert_eq!(out[0].request.body, b"{}");
        assert_eq!(out[1].request.target, "/v1/chat/completions");
        assert!(out[1].request.truncated);
        assert!(out[1].request.incomplete);
        assert_eq!(out[1].request.body.len(), 30);
        assert_eq!(out[1].response.as_ref().map(|r| r.status), Some(200));
        // Stream 3 came next after the loss, so the bytes lost opened none: the table was
        // kept, and stream 1's entries (indices 64 and 65 now) still name what they did.
        let w = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            5,
            &[0x83, 0x87, 0xc1, 0xc0],
        );
        feed(&mut c, true, &w, &mut out);
        feed(
            &mut c,
            false,
            &frame(HEADERS, END_HEADERS | END_STREAM, 5, &[0x88]),
            &mut out,
        );
        assert_eq!(c.broken(), None);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].request.target, "/v1/chat/completions");
        assert_eq!(out[2].request.header("host"), Some("127.0.0.1"));
        // A loss after which the client's next stream skips one (the bytes lost opened it):
        // the table is forgotten; the new block's own entry (index 62) is known, an older
        // one (63) is not, and naming it ends the decoding.
        let mut c = Connection::default();
        let mut w = client_start();
        w.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &post_block("/v1/chat/completions"),
        ));
        c.feed(true, &w, 50, 1, &never, &mut out);
        let mut w = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            5,
            &[0x83, 0x87, 0x44, 1, b'/'],
        );
        w.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            7,
            &[0x83, 0x87, 0xbe],
        ));
        feed(&mut c, true, &w, &mut out);
        assert_eq!(c.broken(), None);
        let w = frame(HEADERS, END_HEADERS | END_STREAM, 9, &[0x83, 0x87, 0xbf]);
        feed(&mut c, true, &w, &mut out);
        assert_eq!(c.broken(), Some(H2Error::NotCaptured));
    }

    #[test]
    fn hostile_frames_end_decoding_with_their_reason_and_forge_nothing() {
        let with = |frames: Vec<u8>| {
            let mut c = Connection::default();
            let mut out = Vec::new();
            let mut w = client_start();
            w.extend(frames);
            feed(&mut c, true, &w, &mut out);
            assert!(out.iter().all(|x| x.response.is_none()));
            c.broken()
        };
        let mut bad_preface = Connection::default();
        feed(
            &mut bad_preface,
            true,
            b"PRI * HTTP/2.0\r\n\r\nXX",
            &mut Vec::new(),
        );
        assert_eq!(bad_preface.broken(), Some(H2Error::BadPreface));
        assert_eq!(with(frame(DATA, 0, 0, b"x")), Some(H2Error::BadFrame));
        assert_eq!(
            with(frame(HEADERS, END_HEADERS, 0, &[0x82])),
            Some(H2Error::BadFrame)
        );
        assert_eq!(
            with(frame(SETTINGS, 0, 0, &[0; 5])),
            Some(H2Error::BadFrame)
        );
        assert_eq!(with(frame(SETTINGS, 0, 1, &[])), Some(H2Error::BadFrame));
        // Padding longer than the frame.
        assert_eq!(
            with(frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 0x82])),
            Some(H2Error::BadFrame)
        );
        assert_eq!(
            with(frame(DATA, PADDED, 1, &[9, 0])),
            Some(H2Error::BadFrame)
        );
        // A header block interrupted, or a CONTINUATION from nowhere.
        let mut w = frame(HEADERS, 0, 1, &[0x82]);
        w.extend(frame(DATA, 0, 1, b"x"));
        assert_eq!(with(w), Some(H2Error::BadFrame));
        assert_eq!(
            with(frame(CONTINUATION, END_HEADERS, 1, &[0x82])),
            Some(H2Error::BadFrame)
        );
        // Huge frames and header blocks.
        assert_eq!(
            with(frame(0x2, 0, 1, &vec![0; FRAME_CAP + 1])),
            Some(H2Error::FrameTooLarge)
        );
        let mut w = frame(HEADERS, 0, 1, &[0x82]);
        for _ in 0..5 {
            w.extend(frame(CONTINUATION, 0, 1, &vec![0x82; 16 * 1024]));
        }
        assert_eq!(with(w), Some(H2Error::BlockTooLarge));
        // HPACK faults: a table size beyond SETTINGS, invalid Huffman.
        assert_eq!(
            with(frame(HEADERS, END_HEADERS, 1, &[0x3f, 0xe2, 0x1f, 0x82])),
            Some(H2Error::Hpack(HpackError::TableSizeBeyondSettings))
        );
        assert_eq!(
            with(frame(
                HEADERS,
                END_HEADERS,
                1,
                &[0x82, 0x00, 0x81, 0x00, 0x00]
            )),
            Some(H2Error::Hpack(HpackError::BadHuffman))
        );
        // The server's SETTINGS raising the table size allows the client's larger table.
        let mut c = Connection::default();
        let mut out = Vec::new();
        feed(
            &mut c,
            false,
            &frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x20, 0]),
            &mut out,
        );
        let mut w = client_start();
        w.extend(frame(HEADERS, END_HEADERS, 1, &[0x3f, 0xe2, 0x1f, 0x82]));
        feed(&mut c, true, &w, &mut out);
        assert_eq!(c.broken(), None);
        // A response to a stream nobody opened, and a stream reused: nothing.
        let mut c = Connection::default();
        let mut out = Vec::new();
        let mut w = client_start();
        w.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &[0x82, 0x87, 0x84],
        ));
        w.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &[0x82, 0x87, 0x84],
        ));
        w.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2,
            &[0x82, 0x87, 0x84],
        ));
        feed(&mut c, true, &w, &mut out);
        let mut r = frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]);
        r.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, &[0x88]));
        feed(&mut c, false, &r, &mut out);
        assert!(out.is_empty());
        assert_eq!(c.streams.len(), 1);
    }

    #[test]
    fn random_frames_never_panic_and_streams_stay_bounded() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut c = Connection::default();
            let mut out = Vec::new();
            feed(&mut c, true, &client_start(), &mut out);
            for _ in 0..100 {
                let kind = (next() % 11) as u8;
                let flags = next() as u8;
                let stream = (next() % 400) as u32;
                let len = (next() % 40) as usize;
                let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if kind == HEADERS && next() % 2 == 0 {
                    payload = vec![0x83, 0x87, 0x84];
                }
                let mut f = frame(kind, flags, stream, &payload);
                let cut = (next() as usize) % (f.len() + 1);
                let missing = if next() % 20 == 0 { next() % 50 } else { 0 };
                f.truncate(cut.max(9.min(f.len())));
                c.feed(next() % 3 != 0, &f, missing, 1, &never, &mut out);
                assert!(c.streams.len() <= MAX_STREAMS);
            }
            c.finish(&mut out);
            assert!(!c.in_progress());
        }
    }
}
