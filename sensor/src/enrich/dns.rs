//! DNS wire-format decoding (RFC 1035) for the UDP port-53 payloads the kernel programs capture.
//!
//! The kernel side copies at most 512 bytes of each DNS datagram a process sends (queries) or
//! receives (responses); this module turns those bytes into a [`DnsMessage`] so events can carry
//! `dns.question.name` / `dns.question.type`, and so the addresses in a response can later be
//! matched to the name the process asked for when it connects to one of them.
//!
//! The payloads come from processes that may be hostile, so the decoder is defensive by
//! construction:
//! - it never panics: every read of the message is bounds-checked (`get`) before use;
//! - the work is bounded: at most [`MAX_RECORDS`] questions and [`MAX_RECORDS`] answers are
//!   decoded whatever the header counts claim, vectors are sized from the bytes actually present,
//!   a name is at most 255 bytes on the wire, and compression pointers must point strictly before
//!   the part of the name already read (so every jump goes backwards and no loop is possible) and
//!   are also capped in number;
//! - names are rendered in unambiguous presentation form (RFC 1035 §5.1, RFC 4343): labels joined
//!   by `.`, no trailing dot (the root is `.`), case kept as sent, and inside a label `.` becomes
//!   `\.`, `\` becomes `\\`, and every byte outside `!`..=`~` (space, control bytes, non-ASCII)
//!   becomes `\DDD` (three decimal digits). A rendered name therefore holds only printable ASCII,
//!   a label `a.b` cannot be confused with the two labels `a` and `b`, and a name cannot break a
//!   log line or a JSON record.
//!
//! Only the header, the question section and the answer section are decoded; the authority and
//! additional sections (and EDNS) are ignored. A message cut short (capture limit, hostile
//! lengths) keeps what was decoded and sets [`DnsMessage::incomplete`]; only a message whose header
//! or first question cannot be read is an error.
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most questions, and separately the most answers, decoded from one message.
pub const MAX_RECORDS: usize = 64;

const HEADER_LEN: usize = 12;
/// RFC 1035 §2.3.4: label and length octets of a name, root label included.
const MAX_NAME_WIRE_LEN: usize = 255;
/// Compression pointers followed while reading one name: one per label a name can hold. Every
/// pointer already has to point backwards, so this only trims the worst case (a chain of
/// pointers to pointers).
const MAX_POINTERS: usize = (MAX_NAME_WIRE_LEN - 1) / 2;
/// The largest DNS message; longer input is read only this far.
const MAX_MESSAGE_LEN: usize = u16::MAX as usize;
/// Smallest question: root name, QTYPE, QCLASS.
const MIN_QUESTION_LEN: usize = 1 + 4;
/// Smallest resource record: root name, TYPE, CLASS, TTL, RDLENGTH.
const MIN_RECORD_LEN: usize = 1 + 10;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// A decoded DNS message: header fields, questions and answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    /// The transaction id, which pairs a response with its query.
    pub id: u16,
    /// The QR bit: a response rather than a query.
    pub is_response: bool,
    /// The kind of query (0: a standard query).
    pub opcode: u8,
    /// The response code (0: no error; see [`rcode_name`]).
    pub rcode: u8,
    /// TC bit set by the server
    pub truncated_by_server: bool,
    /// The question section, at most [`MAX_RECORDS`].
    pub questions: Vec<Question>,
    /// The answer section, at most [`MAX_RECORDS`].
    pub answers: Vec<Answer>,
    /// true when the captured bytes ended before the message did (parsing stopped early but what
    /// was decoded is kept). Also set when a later question or answer is malformed (a bad name,
    /// a record running past the end) or when the header counts exceed [`MAX_RECORDS`]: in every
    /// case the message holds less than its header announced.
    pub incomplete: bool,
}

impl DnsMessage {
    /// The first question: the name and type a query asks for (messages carry one in practice).
    #[must_use]
    pub fn question(&self) -> Option<&Question> {
        self.questions.first()
    }

    /// The IPv4 and IPv6 addresses in the answer section, in message order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.answers.iter().filter_map(|a| match a.data {
            AnswerData::A(ip) => Some(IpAddr::V4(ip)),
            AnswerData::Aaaa(ip) => Some(IpAddr::V6(ip)),
            AnswerData::Cname(_) | AnswerData::Other => None,
        })
    }
}

/// One entry of the question section; `name` is in presentation form (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The name asked about.
    pub name: String,
    /// The record type asked for (see [`type_name`]).
    pub qtype: u16,
    /// The class asked for (1: IN, the internet).
    pub qclass: u16,
}

/// One resource record of the answer section; `name` is in presentation form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The name the record is for.
    pub name: String,
    /// The record's type (see [`type_name`]).
    pub rtype: u16,
    /// As sent (RFC 2181 would read values with the top bit set as 0).
    pub ttl: u32,
    /// What the record says, for the types the sensor uses.
    pub data: AnswerData,
}

/// The decoded RDATA of an answer. `A`/`AAAA` need class IN and a 4/16-byte RDATA, `Cname` a
/// well-formed name that exactly fills the RDATA; anything else is `Other`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerData {
    /// An IPv4 address for the name.
    A(Ipv4Addr),
    /// An IPv6 address for the name.
    Aaaa(Ipv6Addr),
    /// The name is an alias of this one (presentation form).
    Cname(String),
    /// Any other type, class or shape: not decoded.
    Other,
}

/// Why a payload could not be decoded as DNS at all (its header or first question is unreadable).
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// Shorter than the fixed header.
    #[error("message of {len} bytes is shorter than the 12-byte DNS header")]
    ShortHeader {
        /// The message's length.
        len: usize,
    },
    /// The first question does not fit in the message.
    #[error("message of {len} bytes ends inside its first question")]
    Truncated {
        /// The message's length.
        len: usize,
    },
    /// A name longer on the wire than RFC 1035 allows.
    #[error("name at byte {offset} is longer than 255 bytes")]
    NameTooLong {
        /// Where the name starts.
        offset: usize,
    },
    /// A label type other than a plain label or a compression pointer.
    #[error("label at byte {offset} has unsupported type 0x{byte:02x} (extended or reserved)")]
    BadLabelType {
        /// Where the label starts.
        offset: usize,
        /// Its first byte, whose top two bits give the type.
        byte: u8,
    },
    /// A compression pointer that does not point backwards.
    #[error("compression pointer at byte {offset} points forward, to byte {target}")]
    ForwardPointer {
        /// Where the pointer is.
        offset: usize,
        /// Where it points.
        target: usize,
    },
    /// A compression pointer into the part of the name already read: it would loop.
    #[error("compression pointer at byte {offset} points back into its own name, to byte {target}")]
    PointerLoop {
        /// Where the pointer is.
        offset: usize,
        /// Where it points.
        target: usize,
    },
    /// A name that follows more pointers than it could have labels.
    #[error("name at byte {offset} follows more than {MAX_POINTERS} compression pointers")]
    TooManyPointers {
        /// Where the name starts.
        offset: usize,
    },
}

impl DnsError {
    /// A short stable name for counters and metrics labels.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ShortHeader { .. } => "short_header",
            Self::Truncated { .. } => "truncated",
            Self::NameTooLong { .. } => "name_too_long",
            Self::BadLabelType { .. } => "bad_label_type",
            Self::ForwardPointer { .. } => "forward_pointer",
            Self::PointerLoop { .. } => "pointer_loop",
            Self::TooManyPointers { .. } => "too_many_pointers",
        }
    }
}

/// Parses a DNS message (RFC 1035 wire format). Errors only when not even the header and the
/// first question can be read; a message cut short after that returns what was decoded with
/// `incomplete = true`.
///
/// # Errors
///
/// [`DnsError`] when `bytes` is shorter than a header, or the first question is cut short or
/// has a malformed name.
pub fn parse(bytes: &[u8]) -> Result<DnsMessage, DnsError> {
    let msg = bytes.get(..MAX_MESSAGE_LEN).unwrap_or(bytes);
    let mut incomplete = msg.len() < bytes.len();
    let header = msg
        .get(..HEADER_LEN)
        .ok_or(DnsError::ShortHeader { len: bytes.len() })?;
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let (id, flags, qdcount, ancount) =
        (word(0), word(2), usize::from(word(4)), usize::from(word(6)));

    let mut pos = HEADER_LEN;
    let mut stopped = false;
    let mut questions = Vec::with_capacity(bounded_capacity(
        qdcount,
        msg.len().saturating_sub(pos),
        MIN_QUESTION_LEN,
    ));
    for i in 0..qdcount.min(MAX_RECORDS) {
        match read_question(msg, pos) {
            Ok((question, next)) => {
                questions.push(question);
                pos = next;
            }
            Err(e) if i == 0 => return Err(e),
            Err(_) => {
                stopped = true;
                break;
            }
        }
    }
    // Answers follow every question, so they are only reachable if all questions were read.
    let mut answers = Vec::new();
    if stopped || qdcount > MAX_RECORDS {
        incomplete = true;
    } else {
        answers.reserve_exact(bounded_capacity(
            ancount,
            msg.len().saturating_sub(pos),
            MIN_RECORD_LEN,
        ));
        for _ in 0..ancount.min(MAX_RECORDS) {
            let Some((answer, next)) = read_answer(msg, pos) else {
                incomplete = true;
                break;
            };
            answers.push(answer);
            pos = next;
        }
        incomplete |= ancount > MAX_RECORDS;
    }

    Ok(DnsMessage {
        id,
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        truncated_by_server: flags & 0x0200 != 0,
        questions,
        answers,
        incomplete,
    })
}

/// Room for the records the header claims, but never more than [`MAX_RECORDS`] nor more than the
/// remaining bytes could hold, so a lying header cannot make a small packet allocate much.
fn bounded_capacity(claimed: usize, remaining: usize, min_len: usize) -> usize {
    claimed.min(MAX_RECORDS).min(remaining / min_len)
}

fn be16(msg: &[u8], at: usize) -> Option<u16> {
    let b = msg.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(msg: &[u8], at: usize) -> Option<u32> {
    let b = msg.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the question at `pos`; returns it and the offset just past it.
fn read_question(msg: &[u8], pos: usize) -> Result<(Question, usize), DnsError> {
    let truncated = DnsError::Truncated { len: msg.len() };
    let (name, next) = NameRef::read(msg, pos)?;
    let qtype = be16(msg, next).ok_or(truncated)?;
    let qclass = be16(msg, next + 2).ok_or(truncated)?;
    let question = Question {
        name: name.render(msg),
        qtype,
        qclass,
    };
    Ok((question, next + 4))
}

/// Reads the resource record at `pos`; returns it and the offset just past it, or `None` when
/// the record is cut short or its owner name is malformed (its length can then not be known).
fn read_answer(msg: &[u8], pos: usize) -> Option<(Answer, usize)> {
    let (name, fixed) = NameRef::read(msg, pos).ok()?;
    let rtype = be16(msg, fixed)?;
    let class = be16(msg, fixed + 2)?;
    let ttl = be32(msg, fixed + 4)?;
    let rdlength = usize::from(be16(msg, fixed + 8)?);
    let rdata_start = fixed + 10;
    let rdata_end = rdata_start + rdlength;
    let rdata = msg.get(rdata_start..rdata_end)?;
    let data = match (rtype, class) {
        (TYPE_A, CLASS_IN) => {
            <[u8; 4]>::try_from(rdata).map_or(AnswerData::Other, |b| AnswerData::A(b.into()))
        }
        (TYPE_AAAA, CLASS_IN) => {
            <[u8; 16]>::try_from(rdata).map_or(AnswerData::Other, |b| AnswerData::Aaaa(b.into()))
        }
        (TYPE_CNAME, _) => match NameRef::read(msg, rdata_start) {
            Ok((target, end)) if end == rdata_end => AnswerData::Cname(target.render(msg)),
            _ => AnswerData::Other,
        },
        _ => AnswerData::Other,
    };
    let answer = Answer {
        name: name.render(msg),
        rtype,
        ttl,
        data,
    };
    Some((answer, rdata_end))
}

/// A validated name inside a message and the length of its presentation form, so rendering
/// makes exactly one allocation of the right size and needs no checks of its own.
struct NameRef {
    start: usize,
    labels: usize,
    text_len: usize,
}

impl NameRef {
    /// Walks the name at `start`, following compression pointers, and returns it with the offset
    /// just past it in the message (after its first pointer, or after its root label).
    ///
    /// Loop freedom: `floor` is the lowest offset read so far for this name; a pointer must
    /// target strictly below it, so `floor` strictly decreases with every jump.
    fn read(msg: &[u8], start: usize) -> Result<(Self, usize), DnsError> {
        let truncated = DnsError::Truncated { len: msg.len() };
        let mut name = NameRef {
            start,
            labels: 0,
            text_len: 0,
        };
        let mut pos = start;
        let mut floor = start;
        let mut end = None;
        let mut wire_len = 1; // the root label
        let mut pointers = 0;
        loop {
            let len_byte = *msg.get(pos).ok_or(truncated)?;
            match len_byte & 0xc0 {
                0x00 if len_byte == 0 => break,
                0x00 => {
                    let len = usize::from(len_byte);
                    wire_len += 1 + len;
                    if wire_len > MAX_NAME_WIRE_LEN {
                        return Err(DnsError::NameTooLong { offset: start });
                    }
                    let label = msg.get(pos + 1..pos + 1 + len).ok_or(truncated)?;
                    name.labels += 1;
                    name.text_len += usize::from(name.labels > 1) + presentation_len(label);
                    pos += 1 + len;
                }
                0xc0 => {
                    let low = *msg.get(pos + 1).ok_or(truncated)?;
                    let target = usize::from(len_byte & 0x3f) << 8 | usize::from(low);
                    if target >= pos {
                        return Err(DnsError::ForwardPointer {
                            offset: pos,
                            target,
                        });
                    }
                    if target >= floor {
                        return Err(DnsError::PointerLoop {
                            offset: pos,
                            target,
                        });
                    }
                    pointers += 1;
                    if pointers > MAX_POINTERS {
                        return Err(DnsError::TooManyPointers { offset: start });
                    }
                    end.get_or_insert(pos + 2);
                    floor = target;
                    pos = target;
                }
                _ => {
                    return Err(DnsError::BadLabelType {
                        offset: pos,
                        byte: len_byte,
                    });
                }
            }
        }
        Ok((name, end.unwrap_or(pos + 1)))
    }

    /// The presentation form (see the module doc); `msg` must be the message `read` walked.
    /// Re-walks the already validated name, stopping after the `labels` it counted, so even a
    /// wrong `msg` could not make it loop or panic.
    fn render(&self, msg: &[u8]) -> String {
        if self.labels == 0 {
            return String::from(".");
        }
        let mut out = Vec::with_capacity(self.text_len);
        let mut pos = self.start;
        let mut done = 0;
        let mut jumps = 0;
        while done < self.labels && jumps <= MAX_POINTERS {
            let len_byte = msg.get(pos).copied().unwrap_or(0);
            if len_byte & 0xc0 == 0xc0 {
                let low = msg.get(pos + 1).copied().unwrap_or(0);
                pos = usize::from(len_byte & 0x3f) << 8 | usize::from(low);
                jumps += 1;
                continue;
            }
            let len = usize::from(len_byte);
            let Some(label) = msg.get(pos + 1..pos + 1 + len) else {
                break;
            };
            if done > 0 {
                out.push(b'.');
            }
            push_label(&mut out, label);
            done += 1;
            pos += 1 + len;
        }
        // Only bytes '!'..='~' were written, so this is always valid UTF-8.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Characters one label byte takes in presentation form.
const fn escaped_len(b: u8) -> usize {
    match b {
        b'.' | b'\\' => 2,
        0x21..=0x7e => 1,
        _ => 4,
    }
}

fn presentation_len(label: &[u8]) -> usize {
    label.iter().map(|&b| escaped_len(b)).sum()
}

fn push_label(out: &mut Vec<u8>, label: &[u8]) {
    // Fast path: the common all-plain label is copied in one go.
    if label.iter().all(|&b| escaped_len(b) == 1) {
        out.extend_from_slice(label);
        return;
    }
    for &b in label {
        match escaped_len(b) {
            1 => out.push(b),
            2 => out.extend_from_slice(&[b'\\', b]),
            _ => out.extend_from_slice(&[b'\\', b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10]),
        }
    }
}

/// The mnemonic of an RR type (IANA registry), or `TYPE<n>` (RFC 3597) for any other value.
#[must_use]
pub(crate) fn type_name(t: u16) -> Cow<'static, str> {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        24 => "SIG",
        25 => "KEY",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        39 => "DNAME",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        108 => "EUI48",
        109 => "EUI64",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return Cow::Owned(format!("TYPE{t}")),
    };
    Cow::Borrowed(name)
}

/// The mnemonic of a header RCODE (RFC 1035, RFC 2136, RFC 8490), or `RCODE<n>` otherwise.
#[must_use]
pub(crate) fn rcode_name(rcode: u8) -> Cow<'static, str> {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        _ => return Cow::Owned(format!("RCODE{rcode}")),
    };
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE_TXT: u16 = 16;

    /// A tiny DNS encoder: enough to lay out the messages the tests need, byte by byte.
    struct Enc(Vec<u8>);

    impl Enc {
        fn new(id: u16, flags: u16, qd: u16, an: u16) -> Self {
            let mut e = Enc(Vec::new());
            for w in [id, flags, qd, an, 0, 0] {
                e.u16(w);
            }
            e
        }
        fn at(&self) -> usize {
            self.0.len()
        }
        fn u16(&mut self, v: u16) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(&mut self, v: u32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn raw(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        /// Labels without the terminating root label.
        fn labels(&mut self, labels: &[&[u8]]) -> &mut Self {
            for l in labels {
                self.0.push(u8::try_from(l.len()).unwrap());
                self.0.extend_from_slice(l);
            }
            self
        }
        /// A full uncompressed name.
        fn name(&mut self, labels: &[&[u8]]) -> &mut Self {
            self.labels(labels).raw(&[0])
        }
        fn ptr(&mut self, to: usize) -> &mut Self {
            self.u16(0xc000 | u16::try_from(to).unwrap())
        }
        /// TYPE, CLASS IN, TTL and RDLENGTH, followed by `rdata`.
        fn rr(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) -> &mut Self {
            self.u16(rtype).u16(CLASS_IN).u32(ttl);
            self.u16(u16::try_from(rdata.len()).unwrap()).raw(rdata)
        }
        /// TYPE, CLASS IN, TTL, then RDATA written by `f`, with RDLENGTH filled in afterwards.
        fn rr_with(&mut self, rtype: u16, ttl: u32, f: impl FnOnce(&mut Self)) -> &mut Self {
            self.u16(rtype).u16(CLASS_IN).u32(ttl).u16(0);
            let start = self.at();
            f(self);
            let len = u16::try_from(self.at() - start).unwrap();
            self.0[start - 2..start].copy_from_slice(&len.to_be_bytes());
            self
        }
        fn bytes(&self) -> Vec<u8> {
            self.0.clone()
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn q(name: &str, qtype: u16) -> Question {
        Question {
            name: name.to_owned(),
            qtype,
            qclass: CLASS_IN,
        }
    }

    fn ans(name: &str, rtype: u16, ttl: u32, data: AnswerData) -> Answer {
        Answer {
            name: name.to_owned(),
            rtype,
            ttl,
            data,
        }
    }

    /// Query for www.example.com answered by a CNAME chain, two A, one AAAA and one MX record,
    /// every owner name and CNAME target compressed against earlier names.
    fn chain_response() -> Vec<u8> {
        let mut e = Enc::new(0xbeef, 0x8180, 1, 6);
        let www = e.at();
        e.name(&[b"www", b"example", b"com"])
            .u16(TYPE_A)
            .u16(CLASS_IN);
        let example = www + 4;
        let mut cdn = 0;
        e.ptr(www).rr_with(TYPE_CNAME, 300, |e| {
            cdn = e.at();
            e.labels(&[b"cdn"]).ptr(example);
        });
        let mut e1 = 0;
        e.ptr(cdn).rr_with(TYPE_CNAME, 60, |e| {
            e1 = e.at();
            e.labels(&[b"e1"]).ptr(cdn);
        });
        e.ptr(e1).rr(TYPE_A, 20, &[93, 184, 216, 34]);
        e.ptr(e1).rr(TYPE_A, 20, &[93, 184, 216, 35]);
        let v6: Ipv6Addr = "2606:2800:220:1:248:1893:25c8:1946".parse().unwrap();
        e.ptr(e1).rr(TYPE_AAAA, 20, &v6.octets());
        e.ptr(example).rr_with(15, 3600, |e| {
            e.u16(10).labels(&[b"mail"]).ptr(example);
        });
        e.bytes()
    }

    fn chain_expected() -> DnsMessage {
        let e1 = "e1.cdn.example.com";
        DnsMessage {
            id: 0xbeef,
            is_response: true,
            opcode: 0,
            rcode: 0,
            truncated_by_server: false,
            questions: vec![q("www.example.com", TYPE_A)],
            answers: vec![
                ans(
                    "www.example.com",
                    TYPE_CNAME,
                    300,
                    AnswerData::Cname("cdn.example.com".into()),
                ),
                ans(
                    "cdn.example.com",
                    TYPE_CNAME,
                    60,
                    AnswerData::Cname(e1.into()),
                ),
                ans(
                    e1,
                    TYPE_A,
                    20,
                    AnswerData::A(Ipv4Addr::new(93, 184, 216, 34)),
                ),
                ans(
                    e1,
                    TYPE_A,
                    20,
                    AnswerData::A(Ipv4Addr::new(93, 184, 216, 35)),
                ),
                ans(
                    e1,
                    TYPE_AAAA,
                    20,
                    AnswerData::Aaaa("2606:2800:220:1:248:1893:25c8:1946".parse().unwrap()),
                ),
                ans("example.com", 15, 3600, AnswerData::Other),
            ],
            incomplete: false,
        }
    }

    /// Every name the parser produced, for property checks.
    fn names(m: &DnsMessage) -> impl Iterator<Item = &str> {
        let q = m.questions.iter().map(|q| q.name.as_str());
        let a = m.answers.iter().flat_map(|a| {
            let target = match &a.data {
                AnswerData::Cname(t) => Some(t.as_str()),
                _ => None,
            };
            std::iter::once(a.name.as_str()).chain(target)
        });
        q.chain(a)
    }

    /// What must hold for any successful parse of any input.
    fn check_invariants(m: &DnsMessage) {
        assert!(m.questions.len() <= MAX_RECORDS && m.answers.len() <= MAX_RECORDS);
        for n in names(m) {
            assert!(!n.is_empty() && n.len() <= 4 * MAX_NAME_WIRE_LEN, "{n:?}");
            assert!(
                n.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "unprintable byte in {n:?}"
            );
            assert!(n == "." || !n.ends_with('.') || n.ends_with("\\."), "{n:?}");
        }
    }

    #[test]
    fn a_query_for_example_com() {
        let mut e = Enc::new(0x1234, 0x0100, 1, 0);
        e.name(&[b"example", b"com"]).u16(TYPE_A).u16(CLASS_IN);
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(
            m,
            DnsMessage {
                id: 0x1234,
                is_response: false,
                opcode: 0,
                rcode: 0,
                truncated_by_server: false,
                questions: vec![q("example.com", TYPE_A)],
                answers: vec![],
                incomplete: false,
            }
        );
        assert_eq!(m.question().unwrap().name, "example.com");
    }

    #[test]
    fn cname_chain_then_a_and_aaaa_with_compression() {
        let m = parse(&chain_response()).unwrap();
        assert_eq!(m, chain_expected());
        let addrs: Vec<IpAddr> = m.addresses().collect();
        assert_eq!(
            addrs,
            [
                "93.184.216.34".parse::<IpAddr>().unwrap(),
                "93.184.216.35".parse().unwrap(),
                "2606:2800:220:1:248:1893:25c8:1946".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn header_flags_are_decoded() {
        // QR, opcode 2 (STATUS), AA, TC, RD, RA, rcode 3 (NXDOMAIN)
        let flags = 0x8000 | 2 << 11 | 0x0400 | 0x0200 | 0x0100 | 0x0080 | 3;
        let mut e = Enc::new(7, flags, 1, 0);
        e.name(&[b"nx", b"test"]).u16(TYPE_AAAA).u16(CLASS_IN);
        let m = parse(&e.bytes()).unwrap();
        assert!(m.is_response && m.truncated_by_server && !m.incomplete);
        assert_eq!((m.id, m.opcode, m.rcode), (7, 2, 3));
        assert_eq!(rcode_name(m.rcode), "NXDOMAIN");
        assert_eq!(rcode_name(200), "RCODE200");
    }

    #[test]
    fn special_bytes_in_a_label_are_escaped() {
        let mut e = Enc::new(1, 0, 1, 0);
        e.name(&[b"a.b\\c d\"e\nf\xff", b"Com"])
            .u16(TYPE_TXT)
            .u16(CLASS_IN);
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.questions[0].name, r#"a\.b\\c\032d"e\010f\255.Com"#);
        check_invariants(&m);
    }
    #[test]
    fn one_label_with_a_dot_differs_from_two_labels() {
        let render = |labels: &[&[u8]]| {
            let mut e = Enc::new(1, 0, 1, 0);
            e.name(labels).u16(TYPE_A).u16(CLASS_IN);
            parse(&e.bytes()).unwrap().questions.remove(0).name
        };
        assert_eq!(render(&[b"a.b"]), r"a\.b");
        assert_eq!(render(&[b"a", b"b"]), "a.b");
        assert_eq!(render(&[b"a\\", b"b"]), r"a\\.b");
        assert_eq!(render(&[b"a\\.b"]), r"a\\\.b");
        assert_eq!(render(&[b"\x00\x09\x20\x7f\x80"]), r"\000\009\032\127\128");
        assert_eq!(render(&[b"Mixed-Case_ok!~"]), "Mixed-Case_ok!~");
        assert_eq!(render(&[]), ".");
    }

    #[test]
    fn name_matches_dnspython_presentation() {
        // dnspython 2.9: Name([b'a.b', b'c\\d', b'e f', b'i\nj', b'\xff']).to_text(True).
        // (dnspython also escapes '"', which stays as is here.)
        let mut e = Enc::new(1, 0, 1, 0);
        e.name(&[b"a.b", b"c\\d", b"e f", b"i\nj", b"\xff"])
            .u16(1)
            .u16(1);
        assert_eq!(
            parse(&e.bytes()).unwrap().questions[0].name,
            r"a\.b.c\\d.e\032f.i\010j.\255"
        );
    }

    #[test]
    fn real_query_from_dnspython() {
        // dns.message.make_query("example.com.", "A", use_edns=0), id 0x1a2b: RD set, one OPT
        // record in the additional section (ignored).
        let bytes =
            hex("1a2b01000001000000000001076578616d706c6503636f6d000001000100002904d0000000000000");
        let m = parse(&bytes).unwrap();
        assert_eq!(m.id, 0x1a2b);
        assert!(!m.is_response && !m.incomplete);
        assert_eq!(m.questions, [q("example.com", TYPE_A)]);
        assert!(m.answers.is_empty());
    }

    #[test]
    fn real_response_from_dnspython() {
        // dnspython's make_response with www.Example.com CNAME edge.example.net, edge.example.net
        // CNAME e1.cdn.example.net, two A, one AAAA and one TXT for e1.cdn.example.net, compressed
        // by dnspython's own encoder, plus an OPT record.
        let bytes = hex(concat!(
            "1a2b8100000100060000000103777777074578616d706c6503636f6d0000010001c00c000500010000012c",
            "00120465646765076578616d706c65036e657400c02d000500010000003c00090265310363646ec032c04b",
            "000100010000001400045db8d823c04b000100010000001400045db8d822c04b001c00010000001400102606",
            "2800022000010248189325c81946c04b001000010000001400030268690000292000000000000000"
        ));
        let m = parse(&bytes).unwrap();
        let e1 = "e1.cdn.example.net";
        assert_eq!(m.questions, [q("www.Example.com", TYPE_A)]);
        assert_eq!(
            m.answers,
            [
                ans(
                    "www.Example.com",
                    TYPE_CNAME,
                    300,
                    AnswerData::Cname("edge.example.net".into())
                ),
                ans(
                    "edge.example.net",
                    TYPE_CNAME,
                    60,
                    AnswerData::Cname(e1.into())
                ),
                ans(
                    e1,
                    TYPE_A,
                    20,
                    AnswerData::A(Ipv4Addr::new(93, 184, 216, 35))
                ),
                ans(
                    e1,
                    TYPE_A,
                    20,
                    AnswerData::A(Ipv4Addr::new(93, 184, 216, 34))
                ),
                ans(
                    e1,
                    TYPE_AAAA,
                    20,
                    AnswerData::Aaaa("2606:2800:220:1:248:1893:25c8:1946".parse().unwrap())
                ),
                ans(e1, TYPE_TXT, 20, AnswerData::Other),
            ]
        );
        assert!(m.is_response && !m.incomplete);
        for len in 0..bytes.len() {
            if let Ok(m) = parse(&bytes[..len]) {
                check_invariants(&m);
            }
        }
    }

    #[test]
    fn self_pointer_is_an_error() {
        let mut e = Enc::new(1, 0, 1, 0);
        e.ptr(12).u16(TYPE_A).u16(CLASS_IN);
        assert_eq!(
            parse(&e.bytes()),
            Err(DnsError::ForwardPointer {
                offset: 12,
                target: 12
            })
        );
    }

    #[test]
    fn pointers_pointing_at_each_other_are_an_error() {
        // Byte 12 points to 14 and 14 points back to 12; the question starts at 12.
        let mut e = Enc::new(1, 0, 1, 0);
        e.ptr(14).ptr(12).u16(TYPE_A).u16(CLASS_IN);
        assert_eq!(
            parse(&e.bytes()),
            Err(DnsError::ForwardPointer {
                offset: 12,
                target: 14
            })
        );
        // Same pair reached from a later name: 16 -> 14 -> 12 -> 14 must stop.
        let mut e = Enc::new(1, 0, 1, 0);
        e.ptr(14).ptr(12);
        let bytes = [e.bytes(), vec![0xc0, 14]].concat();
        let err = NameRef::read(&bytes, 16).err().unwrap();
        assert_eq!(
            err,
            DnsError::ForwardPointer {
                offset: 12,
                target: 14
            }
        );
    }

    #[test]
    fn pointer_back_into_the_same_name_is_a_loop() {
        // "a" then a pointer back to that "a": would read a.a.a.... forever.
        let mut e = Enc::new(1, 0, 1, 0);
        e.labels(&[b"a"]).ptr(12).u16(TYPE_A).u16(CLASS_IN);
        assert_eq!(
            parse(&e.bytes()),
            Err(DnsError::PointerLoop {
                offset: 14,
                target: 12
            })
        );
    }

    #[test]
    fn looping_answer_name_stops_with_incomplete() {
        let mut e = Enc::new(1, 0x8000, 1, 2);
        e.name(&[b"ok", b"test"]).u16(TYPE_A).u16(CLASS_IN);
        e.ptr(12).rr(TYPE_A, 5, &[1, 2, 3, 4]);
        let here = e.at();
        e.labels(&[b"x"]).ptr(here).rr(TYPE_A, 5, &[5, 6, 7, 8]);
        let m = parse(&e.bytes()).unwrap();
        assert!(m.incomplete);
        assert_eq!(
            m.answers,
            [ans(
                "ok.test",
                TYPE_A,
                5,
                AnswerData::A(Ipv4Addr::new(1, 2, 3, 4))
            )]
        );
    }

    #[test]
    fn forward_pointer_is_rejected() {
        let mut e = Enc::new(1, 0, 1, 0);
        e.ptr(18).u16(TYPE_A).u16(CLASS_IN).name(&[b"later"]);
        assert_eq!(
            parse(&e.bytes()),
            Err(DnsError::ForwardPointer {
                offset: 12,
                target: 18
            })
        );
        // A CNAME whose target points forward is kept as an answer with undecoded data.
        let mut e = Enc::new(1, 0x8000, 1, 1);
        e.name(&[b"a"]).u16(TYPE_CNAME).u16(CLASS_IN);
        let target = e.at() + 2 + 10 + 2;
        e.ptr(12).rr_with(TYPE_CNAME, 1, |e| {
            e.ptr(target);
        });
        e.name(&[b"b"]);
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.answers, [ans("a", TYPE_CNAME, 1, AnswerData::Other)]);
    }

    #[test]
    fn chained_pointers_to_pointers_are_followed() {
        let mut e = Enc::new(1, 0x8000, 1, 1);
        e.name(&[b"a", b"b"]).u16(TYPE_A).u16(CLASS_IN); // 12..17, then qtype/qclass to 21
        let p1 = e.at();
        e.ptr(12).rr(TYPE_A, 1, &[1, 1, 1, 1]);
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.answers[0].name, "a.b");
        // A pointer to a pointer (p1) from a CNAME target.
        let mut e = Enc::new(1, 0x8000, 1, 2);
        e.name(&[b"a", b"b"]).u16(TYPE_A).u16(CLASS_IN);
        e.ptr(12).rr(TYPE_A, 1, &[1, 1, 1, 1]);
        e.ptr(12).rr_with(TYPE_CNAME, 1, |e| {
            e.labels(&[b"x"]).ptr(p1);
        });
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.answers[1].data, AnswerData::Cname("x.a.b".into()));
    }

    #[test]
    fn too_many_pointers_is_an_error() {
        // Root at 12, then 200 pointers each to the one before: all backwards, but a long chain.
        let mut e = Enc::new(1, 0, 1, 0);
        e.raw(&[0]);
        let mut prev = 12;
        for _ in 0..200 {
            let here = e.at();
            e.ptr(prev);
            prev = here;
        }
        let bytes = e.bytes();
        assert_eq!(
            NameRef::read(&bytes, prev).err(),
            Some(DnsError::TooManyPointers { offset: prev })
        );
        // 127 jumps are still fine.
        let (name, _) = NameRef::read(&bytes, 13 + 2 * 126).unwrap();
        assert_eq!(name.render(&bytes), ".");
    }

    #[test]
    fn name_longer_than_255_is_an_error() {
        let l63 = [b'x'; 63];
        let l61 = [b'y'; 61];
        // 3 * 64 + 62 + 1 = 255 bytes: the longest allowed name.
        let mut e = Enc::new(1, 0, 1, 0);
        e.name(&[&l63, &l63, &l63, &l61]).u16(TYPE_A).u16(CLASS_IN);
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.questions[0].name.len(), 63 * 3 + 61 + 3);
        // One byte more.
        let l62 = [b'y'; 62];
        let mut e = Enc::new(1, 0, 1, 0);
        e.name(&[&l63, &l63, &l63, &l62]).u16(TYPE_A).u16(CLASS_IN);
        assert_eq!(parse(&e.bytes()), Err(DnsError::NameTooLong { offset: 12 }));
        // Too long only through compression: 2 * 64 here plus 3 * 64 + 1 behind the pointer.
        let mut e = Enc::new(1, 0, 1, 0);
        e.name(&[&l63, &l63, &l63]).u16(TYPE_A).u16(CLASS_IN);
        let bytes = [e.bytes(), {
            let mut t = Enc(Vec::new());
            t.labels(&[&l63, &l63]).ptr(12);
            t.bytes()
        }]
        .concat();
        let start = 12 + 3 * 64 + 1 + 4;
        assert_eq!(
            NameRef::read(&bytes, start).err(),
            Some(DnsError::NameTooLong { offset: start })
        );
        // Many one-byte labels: 128 of them need 257 bytes.
        let ones = vec![&b"a"[..]; 128];
        let mut e = Enc::new(1, 0, 1, 0);
        e.name(&ones).u16(TYPE_A).u16(CLASS_IN);
        assert_eq!(parse(&e.bytes()), Err(DnsError::NameTooLong { offset: 12 }));
        let mut e = Enc::new(1, 0, 1, 0);
        e.name(&ones[..127]).u16(TYPE_A).u16(CLASS_IN);
        assert_eq!(
            parse(&e.bytes()).unwrap().questions[0].name.len(),
            127 * 2 - 1
        );
    }

    #[test]
    fn extended_label_types_are_errors() {
        for byte in [0x40, 0x41, 0x80, 0xbf] {
            let mut e = Enc::new(1, 0, 1, 0);
            e.labels(&[b"ok"]).raw(&[byte, 0]).u16(TYPE_A).u16(CLASS_IN);
            assert_eq!(
                parse(&e.bytes()),
                Err(DnsError::BadLabelType { offset: 15, byte })
            );
        }
    }

    #[test]
    fn short_or_empty_input_is_an_error() {
        assert_eq!(parse(&[]), Err(DnsError::ShortHeader { len: 0 }));
        assert_eq!(parse(&[0; 11]), Err(DnsError::ShortHeader { len: 11 }));
        // A header that promises a question it does not carry.
        let e = Enc::new(1, 0, 1, 0);
        assert_eq!(parse(&e.bytes()), Err(DnsError::Truncated { len: 12 }));
        // No question at all is a valid (if odd) message.
        let m = parse(&Enc::new(1, 0, 0, 0).bytes()).unwrap();
        assert!(m.questions.is_empty() && !m.incomplete);
    }

    #[test]
    fn huge_header_counts_are_bounded() {
        // 65535 questions claimed, one present.
        let mut e = Enc::new(1, 0, u16::MAX, u16::MAX);
        e.name(&[b"example", b"com"]).u16(TYPE_A).u16(CLASS_IN);
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.questions.len(), 1);
        assert!(m.incomplete && m.answers.is_empty());
        assert!(m.questions.capacity() <= 3);
        // 65535 claimed and 100 present: only MAX_RECORDS decoded.
        let mut e = Enc::new(1, 0, u16::MAX, 0);
        e.name(&[b"example", b"com"]).u16(TYPE_A).u16(CLASS_IN);
        for _ in 1..100 {
            e.ptr(12).u16(TYPE_A).u16(CLASS_IN);
        }
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.questions.len(), MAX_RECORDS);
        assert!(m.incomplete);
        // Same for answers.
        let mut e = Enc::new(1, 0x8000, 1, u16::MAX);
        e.name(&[b"example", b"com"]).u16(TYPE_A).u16(CLASS_IN);
        for i in 0..100 {
            e.ptr(12).rr(TYPE_A, 1, &[10, 0, 0, i]);
        }
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.answers.len(), MAX_RECORDS);
        assert!(m.incomplete);
        // Exactly MAX_RECORDS claimed and present is complete.
        let mut e = Enc::new(1, 0x8000, 1, 64);
        e.name(&[b"example", b"com"]).u16(TYPE_A).u16(CLASS_IN);
        for i in 0..64 {
            e.ptr(12).rr(TYPE_A, 1, &[10, 0, 0, i]);
        }
        let m = parse(&e.bytes()).unwrap();
        assert_eq!(m.answers.len(), 64);
        assert!(!m.incomplete);
    }

    #[test]
    fn every_prefix_of_a_response_parses_or_errors_cleanly() {
        let full = chain_response();
        let expected = chain_expected();
        let question_end = 12 + 17 + 4;
        let mut last_answers = 0;
        for len in 0..=full.len() {
            match parse(&full[..len]) {
                Err(DnsError::ShortHeader { .. }) => assert!(len < 12),
                Err(e) => {
                    assert!((12..question_end).contains(&len), "{len}: {e}");
                    assert_eq!(e, DnsError::Truncated { len });
                }
                Ok(m) => {
                    assert!(len >= question_end, "{len}");
                    check_invariants(&m);
                    assert_eq!(m.questions, expected.questions);
                    assert_eq!(m.incomplete, len < full.len(), "{len}");
                    // What was decoded is a prefix of the full answer list, and grows with len.
                    assert_eq!(m.answers[..], expected.answers[..m.answers.len()]);
                    assert!(m.answers.len() >= last_answers);
                    last_answers = m.answers.len();
                }
            }
        }
        assert_eq!(last_answers, expected.answers.len());
    }

    #[test]
    fn malformed_rdata_is_other() {
        let mut e = Enc::new(1, 0x8000, 1, 4);
        e.name(&[b"h"]).u16(TYPE_A).u16(CLASS_IN);
        e.ptr(12).rr(TYPE_A, 1, &[1, 2, 3]); // A of 3 bytes
        e.ptr(12).rr(TYPE_AAAA, 1, &[0; 4]); // AAAA of 4 bytes
        e.ptr(12).rr_with(TYPE_CNAME, 1, |e| {
            e.name(&[b"x"]).raw(&[0xaa]); // trailing byte after the name
        });
        e.ptr(12)
            .u16(TYPE_A)
            .u16(3)
            .u32(1)
            .u16(4)
            .raw(&[1, 2, 3, 4]); // class CH
        let m = parse(&e.bytes()).unwrap();
        assert!(!m.incomplete);
        assert_eq!(m.answers.len(), 4);
        assert!(
            m.answers.iter().all(|a| a.data == AnswerData::Other),
            "{:?}",
            m.answers
        );
        // RDLENGTH running past the end of the capture.
        let mut e = Enc::new(1, 0x8000, 1, 1);
        e.name(&[b"h"]).u16(TYPE_A).u16(CLASS_IN);
        e.ptr(12)
            .u16(TYPE_A)
            .u16(CLASS_IN)
            .u32(1)
            .u16(400)
            .raw(&[1, 2, 3, 4]);
        let m = parse(&e.bytes()).unwrap();
        assert!(m.incomplete && m.answers.is_empty());
    }

    #[test]
    fn overlong_input_is_read_up_to_the_message_limit() {
        let mut e = Enc::new(1, 0, 1, 0);
        e.name(&[b"a"]).u16(TYPE_A).u16(CLASS_IN);
        let mut bytes = e.bytes();
        bytes.resize(MAX_MESSAGE_LEN + 10, 0);
        let m = parse(&bytes).unwrap();
        assert_eq!(m.questions, [q("a", TYPE_A)]);
        assert!(m.incomplete);
    }

    /// xorshift64*: deterministic, good enough to throw bytes at the parser.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut ok = 0;
        for _ in 0..5000 {
            let len = rng.below(600);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half the time, make the header plausible so the parser gets past it.
            if len >= 12 && rng.below(2) == 0 {
                bytes[4..8].copy_from_slice(&[0, 1, 0, rng.below(8) as u8]);
            }
            if let Ok(m) = parse(&bytes) {
                check_invariants(&m);
                ok += 1;
            }
        }
        assert!(ok > 0);
    }

    #[test]
    fn mutated_responses_never_panic() {
        // Random byte changes to a valid, compressed response reach far deeper than pure noise.
        let base = chain_response();
        let mut rng = Rng(42);
        for _ in 0..5000 {
            let mut bytes = base.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(bytes.len());
                bytes[i] = match rng.below(4) {
                    0 => 0xc0,
                    1 => rng.below(bytes.len()) as u8,
                    _ => rng.next() as u8,
                };
            }
            bytes.truncate(rng.below(bytes.len() + 1).max(bytes.len() / 2));
            if let Ok(m) = parse(&bytes) {
                check_invariants(&m);
            }
        }
    }

    #[test]
    fn type_names() {
        let known = [
            (1, "A"),
            (28, "AAAA"),
            (5, "CNAME"),
            (15, "MX"),
            (16, "TXT"),
            (12, "PTR"),
            (2, "NS"),
            (6, "SOA"),
            (33, "SRV"),
            (65, "HTTPS"),
            (64, "SVCB"),
            (255, "ANY"),
            (257, "CAA"),
        ];
        for (t, name) in known {
            assert_eq!(type_name(t), name);
            assert!(matches!(type_name(t), Cow::Borrowed(_)));
        }
        assert_eq!(type_name(0), "TYPE0");
        assert_eq!(type_name(123), "TYPE123");
        assert_eq!(type_name(65535), "TYPE65535");
    }

    #[test]
    fn errors_are_one_line_with_stable_kinds() {
        let all = [
            DnsError::ShortHeader { len: 3 },
            DnsError::Truncated { len: 20 },
            DnsError::NameTooLong { offset: 12 },
            DnsError::BadLabelType {
                offset: 12,
                byte: 0x41,
            },
            DnsError::ForwardPointer {
                offset: 12,
                target: 30,
            },
            DnsError::PointerLoop {
                offset: 14,
                target: 12,
            },
            DnsError::TooManyPointers { offset: 12 },
        ];
        let mut kinds = std::collections::HashSet::new();
        for e in all {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
            assert!(kinds.insert(e.kind()));
        }
        assert_eq!(
            DnsError::BadLabelType {
                offset: 12,
                byte: 0x41
            }
            .to_string(),
            "label at byte 12 has unsupported type 0x41 (extended or reserved)"
        );
    }
}
