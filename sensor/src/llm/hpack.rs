//! HPACK (RFC 7541), the decoding side only: header blocks of one direction of an HTTP/2
//! connection into header lists, with that direction's dynamic table. Header blocks are hostile
//! input: every length and index is checked, the table and the decoded list are bounded, and a
//! fault is an error for the caller to end the connection's decoding with (the table's state
//! is unknown after one), never a panic.

use std::collections::VecDeque;

/// Most bytes the dynamic table may hold, whatever the peer's SETTINGS allow: a bound on the
/// sensor's memory per connection and direction.
pub const TABLE_CAP: usize = 64 * 1024;
/// Most bytes of one decoded header list (names, values, and 32 per field as RFC 7541 counts).
pub const LIST_CAP: usize = 256 * 1024;
/// The table size an HTTP/2 peer allows until its SETTINGS say otherwise.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// An integer longer than 32 bits, or the block ended inside one.
    BadInteger,
    /// An index 0, or beyond the static and dynamic tables.
    BadIndex,
    /// A string longer than what is left of the block.
    BadLength,
    /// A Huffman string with the EOS symbol, padding longer than 7 bits, or padding that is not
    /// all ones.
    BadHuffman,
    /// A dynamic table size update larger than the peer's SETTINGS allowed, or not at the start
    /// of a block.
    TableSizeBeyondSettings,
    /// A dynamic table size the peer allowed, but larger than [`TABLE_CAP`].
    TableSizeBeyondBound,
    /// The decoded header list is larger than [`LIST_CAP`].
    ListTooLarge,
}

impl HpackError {
    /// A short name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadInteger => "hpack_integer",
            Self::BadIndex => "hpack_index",
            Self::BadLength => "hpack_length",
            Self::BadHuffman => "hpack_huffman",
            Self::TableSizeBeyondSettings => "hpack_table_size_beyond_settings",
            Self::TableSizeBeyondBound => "hpack_table_size_beyond_bound",
            Self::ListTooLarge => "hpack_list_too_large",
        }
    }
}

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The Huffman code's lengths in bits, by symbol (RFC 7541 Appendix B; 256 is EOS). The code
/// is canonical (codes of one length are consecutive, in symbol order, each length's first
/// code following the last of the shorter ones), so the lengths alone define it.
const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const MAX_CODE_LEN: usize = 30;

/// The canonical code's decoding tables: per length, the first code, how many codes, and where
/// they start in the symbols sorted by (length, symbol).
struct Canonical {
    first: [u32; MAX_CODE_LEN + 1],
    count: [u16; MAX_CODE_LEN + 1],
    start: [u16; MAX_CODE_LEN + 1],
    sorted: [u16; 257],
}

const CANONICAL: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; MAX_CODE_LEN + 1],
        count: [0; MAX_CODE_LEN + 1],
        start: [0; MAX_CODE_LEN + 1],
        sorted: [0; 257],
    };
    let mut s = 0;
    while s < 257 {
        c.count[HUFFMAN_LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut code = 0u32;
    let mut at = 0u16;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        code <<= 1;
        c.first[len] = code;
        c.start[len] = at;
        code += c.count[len] as u32;
        at += c.count[len];
        len += 1;
    }
    let mut next = c.start;
    let mut s = 0;
    while s < 257 {
        let l = HUFFMAN_LENGTHS[s] as usize;
        c.sorted[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    c
}

/// Decodes a Huffman-coded string (RFC 7541 section 5.2).
pub fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, HpackError> {
    let c = &CANONICAL;
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    // Whether every bit since the last symbol was a one (a prefix of EOS: valid padding).
    let mut all_ones = true;
    for byte in bytes {
        for i in (0..8).rev() {
            let bit = u32::from((byte >> i) & 1);
            code = (code << 1) | bit;
            len += 1;
            all_ones &= bit == 1;
            if len > MAX_CODE_LEN {
                return Err(HpackError::BadHuffman);
            }
            let offset = code.wrapping_sub(c.first[len]);
            if code >= c.first[len] && offset < u32::from(c.count[len]) {
                let symbol = c.sorted[usize::from(c.start[len]) + offset as usize];
                let Ok(b) = u8::try_from(symbol) else {
                    // EOS inside a string is an error (section 5.2).
                    return Err(HpackError::BadHuffman);
                };
                out.push(b);
                (code, len, all_ones) = (0, 0, true);
            }
        }
    }
    if len > 7 || !all_ones {
        return Err(HpackError::BadHuffman);
    }
    Ok(out)
}

/// One header field, as decoded (names and values as bytes turned to text lossily: headers are
/// read for their meaning, never trusted).
pub type Field = (String, String);

/// One direction's decoder: its dynamic table and the size limit the peer's SETTINGS set.
#[derive(Debug)]
pub struct Decoder {
    table: VecDeque<(String, String)>,
    /// The table's size as RFC 7541 counts it (each entry: name, value, and 32).
    size: usize,
    /// The table's current maximum (the encoder's last size update).
    max: usize,
    /// The largest maximum the decoding side's SETTINGS ever allowed.
    allowed: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE_SIZE,
            allowed: DEFAULT_TABLE_SIZE,
        }
    }
}

impl Decoder {
    /// The decoding side sent `SETTINGS_HEADER_TABLE_SIZE = size`. Until the encoder has seen
    /// it the larger value may still be in force, so what is allowed is the largest ever sent.
    pub fn allow(&mut self, size: u32) {
        self.allowed = self.allowed.max(size as usize);
    }

    /// The dynamic table's size (RFC 7541's measure).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Header blocks of this direction were not seen: the entries they may have added are
    /// unknown, so every entry is dropped. The entries later blocks add are the newest of the
    /// encoder's table too, at the same indices; an index beyond them is then
    /// [`HpackError::BadIndex`], never another entry.
    pub fn forget(&mut self) {
        self.table.clear();
        self.size = 0;
    }

    /// Decodes one whole header block (HEADERS or PUSH_PROMISE and its CONTINUATIONs).
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let mut fields = Vec::new();
        let mut list_size = 0usize;
        let mut at = 0;
        let mut seen_field = false;
        while at < block.len() {
            let first = block[at];
            let field = if first & 0x80 != 0 {
                let index = integer(block, &mut at, 7)?;
                self.get(index)?
            } else if first & 0xe0 == 0x20 {
                // A size update, only before the block's first field (section 4.2).
                let size = integer(block, &mut at, 5)? as usize;
                if seen_field || size > self.allowed {
                    return Err(HpackError::TableSizeBeyondSettings);
                }
                if size > TABLE_CAP {
                    return Err(HpackError::TableSizeBeyondBound);
                }
                self.max = size;
                self.evict(0);
                continue;
            } else {
                let (prefix, indexing) = if first & 0x40 != 0 {
                    (6, true)
                } else {
                    (4, false)
                };
                let index = integer(block, &mut at, prefix)?;
                let name = if index == 0 {
                    string(block, &mut at)?
                } else {
                    self.get(index)?.0
                };
                let value = string(block, &mut at)?;
                if indexing {
                    self.insert(name.clone(), value.clone());
                }
                (name, value)
            };
            seen_field = true;
            list_size += field.0.len() + field.1.len() + 32;
            if list_size > LIST_CAP {
                return Err(HpackError::ListTooLarge);
            }
            fields.push(field);
        }
        Ok(fields)
    }

    fn get(&self, index: u32) -> Result<Field, HpackError> {
        let i = index as usize;
        if i == 0 {
            return Err(HpackError::BadIndex);
        }
        if let Some((n, v)) = STATIC.get(i - 1) {
            return Ok(((*n).to_owned(), (*v).to_owned()));
        }
        self.table
            .get(i - 1 - STATIC.len())
            .cloned()
            .ok_or(HpackError::BadIndex)
    }

    fn insert(&mut self, name: String, value: String) {
        let size = name.len() + value.len() + 32;
        // An entry larger than the table empties it and is not added (section 4.4).
        self.evict(size);
        if size <= self.max {
            self.size += size;
            self.table.push_front((name, value));
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit (or the table is empty).
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            let Some((n, v)) = self.table.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + 32;
        }
    }
}

/// An integer with an `n`-bit prefix (section 5.1), at most 32 bits.
fn integer(block: &[u8], at: &mut usize, n: u8) -> Result<u32, HpackError> {
    let mask = (1u32 << n) - 1;
    let first = u32::from(*block.get(*at).ok_or(HpackError::BadInteger)?) & mask;
    *at += 1;
    if first < mask {
        return Ok(first);
    }
    let mut value = u64::from(mask);
    let mut shift = 0;
    loop {
        let b = *block.get(*at).ok_or(HpackError::BadInteger)?;
        *at += 1;
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::BadInteger);
        }
        if b & 0x80 == 0 {
            return Ok(value as u32);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::BadInteger);
        }
    }
}

/// A string literal (section 5.2), Huffman-coded or not.
fn string(block: &[u8], at: &mut usize) -> Result<String, HpackError> {
    let huffman = block.get(*at).is_some_and(|b| b & 0x80 != 0);
    let len = integer(block, at, 7)? as usize;
    let end = at.checked_add(len).ok_or(HpackError::BadLength)?;
    let raw = block.get(*at..end).ok_or(HpackError::BadLength)?;
    *at = end;
    let bytes = if huffman {
        huffman_decode(raw)?
    } else {
        raw.to_vec()
    };
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn fields(list: &[(&str, &str)]) -> Vec<Field> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The dynamic table, newest first.
    fn table(d: &Decoder) -> Vec<(&str, &str)> {
        d.table
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn integers_of_appendix_c1() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337; C.1.3: 42 at a byte boundary.
        let mut at = 0;
        assert_eq!(integer(&[0x0a], &mut at, 5), Ok(10));
        at = 0;
        assert_eq!(integer(&[0x1f, 0x9a, 0x0a], &mut at, 5), Ok(1337));
        assert_eq!(at, 3);
        at = 0;
        assert_eq!(integer(&[0x2a], &mut at, 8), Ok(42));
        // Longer than 32 bits, or cut: errors, not wrap-around.
        at = 0;
        assert_eq!(
            integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut at, 5),
            Err(HpackError::BadInteger)
        );
        at = 0;
        assert_eq!(
            integer(&[0x1f, 0x9a], &mut at, 5),
            Err(HpackError::BadInteger)
        );
    }

    #[test]
    fn literals_of_appendix_c2() {
        let mut d = Decoder::default();
        // C.2.1: with indexing, a new name.
        let block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(
            d.decode(&block),
            Ok(fields(&[("custom-key", "custom-header")]))
        );
        assert_eq!(d.table_size(), 55);
        // C.2.2: without indexing, an indexed name.
        let mut d = Decoder::default();
        let block = hex("040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(d.decode(&block), Ok(fields(&[(":path", "/sample/path")])));
        assert_eq!(d.table_size(), 0);
        // C.2.3: never indexed.
        let block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(d.decode(&block), Ok(fields(&[("password", "secret")])));
        assert_eq!(d.table_size(), 0);
        // C.2.4: indexed.
        assert_eq!(d.decode(&[0x82]), Ok(fields(&[(":method", "GET")])));
    }

    /// The three requests of C.3 (plain) or C.4 (Huffman), on one connection.
    fn requests(blocks: [&str; 3]) {
        let mut d = Decoder::default();
        assert_eq!(
            d.decode(&hex(blocks[0])),
            Ok(fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ]))
        );
        assert_eq!(table(&d), [(":authority", "www.example.com")]);
        assert_eq!(d.table_size(), 57);
        assert_eq!(
            d.decode(&hex(blocks[1])),
            Ok(fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ]))
        );
        assert_eq!(d.table_size(), 110);
        assert_eq!(
            d.decode(&hex(blocks[2])),
            Ok(fields(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ]))
        );
        assert_eq!(
            table(&d),
            [
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ]
        );
        assert_eq!(d.table_size(), 164);
    }

    #[test]
    fn requests_of_appendix_c3_and_c4() {
        requests([
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ]);
        requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    /// The three responses of C.5 (plain) or C.6 (Huffman), with a 256-byte table: evictions.
    fn responses(blocks: [&str; 3]) {
        let mut d = Decoder {
            max: 256,
            ..Decoder::default()
        };
        let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
        let loc = "https://www.example.com";
        assert_eq!(
            d.decode(&hex(blocks[0])),
            Ok(fields(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", date1),
                ("location", loc),
            ]))
        );
        assert_eq!(d.table_size(), 222);
        assert_eq!(
            d.decode(&hex(blocks[1])),
            Ok(fields(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", date1),
                ("location", loc),
            ]))
        );
        assert_eq!(
            table(&d),
            [
                (":status", "307"),
                ("location", loc),
                ("date", date1),
                ("cache-control", "private"),
            ]
        );
        let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        assert_eq!(
            d.decode(&hex(blocks[2])),
            Ok(fields(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", loc),
                ("content-encoding", "gzip"),
                ("set-cookie", cookie),
            ]))
        );
        assert_eq!(
            table(&d),
            [
                ("set-cookie", cookie),
                ("content-encoding", "gzip"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ]
        );
        assert_eq!(d.table_size(), 215);
    }

    #[test]
    fn responses_of_appendix_c5_and_c6() {
        responses([
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
        ]);
        responses([
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ]);
    }

    #[test]
    fn hostile_blocks_are_errors() {
        let mut d = Decoder::default();
        // Index 0, and beyond both tables.
        assert_eq!(d.decode(&[0x80]), Err(HpackError::BadIndex));
        assert_eq!(d.decode(&[0xbe]), Err(HpackError::BadIndex));
        // A string longer than the block.
        assert_eq!(d.decode(&hex("400a 6375")), Err(HpackError::BadLength));
        // A table size update beyond what SETTINGS allowed (4096), then within a raised one
        // but beyond the sensor's bound; and one after a field.
        assert_eq!(
            d.decode(&hex("3fe2 1f")), // 4097
            Err(HpackError::TableSizeBeyondSettings)
        );
        d.allow(1 << 20);
        assert_eq!(
            d.decode(&hex("3f81 8004")), // 65536 + 32
            Err(HpackError::TableSizeBeyondBound)
        );
        assert_eq!(d.decode(&hex("3fe1 1f")), Ok(vec![]));
        assert_eq!(
            d.decode(&hex("82 20")),
            Err(HpackError::TableSizeBeyondSettings)
        );
        // Huffman: EOS coded in the string; padding of 8 bits; padding with a zero bit.
        assert_eq!(
            d.decode(&hex("0084 ffff ffff")),
            Err(HpackError::BadHuffman)
        );
        assert_eq!(huffman_decode(&[0x1f, 0xff]), Err(HpackError::BadHuffman));
        assert_eq!(huffman_decode(&[0x1e]), Err(HpackError::BadHuffman));
        assert_eq!(huffman_decode(&[0x1f]), Ok(b"a".to_vec()));
        // A list larger than its bound, from one entry indexed again and again.
        let mut d = Decoder::default();
        let mut block = hex("400a 6375 7374 6f6d 2d6b 6579");
        block.push(0x7f);
        block.extend_from_slice(&hex("d707")); // a 1110-byte value
        block.extend(std::iter::repeat_n(b'v', 1110));
        block.extend(std::iter::repeat_n(0xbe, 300));
        assert_eq!(d.decode(&block), Err(HpackError::ListTooLarge));
    }

    #[test]
    fn random_blocks_never_panic_and_the_table_stays_bounded() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut d = Decoder::default();
        d.allow(u32::MAX);
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let block: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = d.decode(&block);
            assert!(d.table_size() <= TABLE_CAP);
        }
    }
}
