//! Reader for the running kernel's BTF, used to find struct member offsets.
//!
//! Rust eBPF programs have no CO-RE relocations, so they cannot ask the loader to patch
//! `task->real_parent`-style field accesses for the running kernel. Instead the daemon reads
//! the kernel's own type information (`/sys/kernel/btf/vmlinux`, format described in the
//! kernel's `Documentation/bpf/btf.rst`) at load time, looks up the byte offsets and sizes of
//! the handful of members the programs dereference, and hands them over as globals.
//!
//! This module owns exactly that: parsing a raw BTF blob into an owned, compact type table plus
//! its string section, and answering "where is member `a.b.c` of `struct x`" questions. It does
//! not follow pointers, load module (split) BTF, or understand anything it does not need;
//! every other kind is parsed only far enough to skip it correctly.
//!
//! The daemon runs privileged and the input is only trusted to be *probably* BTF, so every
//! read is bounds-checked, every type chain is depth-limited, and malformed data turns into a
//! [`BtfError`], never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the kernel exposes its own BTF (needs `CONFIG_DEBUG_INFO_BTF=y`).
pub const SYS_FS_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// `btf_header.magic`, read little-endian. Byte-swapped means big-endian BTF.
const BTF_MAGIC: u16 = 0xEB9F;
const BTF_MAGIC_SWAPPED: u16 = 0x9FEB;
const BTF_VERSION: u8 = 1;
/// Size of the version 1 header; newer headers may be longer (`hdr_len` says how long).
const HEADER_V1_LEN: usize = 24;
/// Every type starts with `name_off`, `info`, `size_or_type`: three u32s.
const TYPE_HEADER_LEN: usize = 12;
/// Bound for typedef/modifier chains, array nesting and anonymous member nesting. Real kernels
/// stay far below this; a malformed (cyclic) blob hits it instead of recursing forever.
const MAX_DEPTH: usize = 32;
/// BTF pointers carry no size. The sensor only targets 64-bit kernels.
const POINTER_SIZE: u32 = 8;

/// Everything that can go wrong reading BTF or looking something up in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read. The I/O error is part of the message (not a `source`) so
    /// that it prints exactly once however the caller formats the chain.
    #[error("cannot read BTF file {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },

    /// The data ends before something it declares.
    #[error(
        "truncated BTF: {what} at byte offset {offset} needs {needed} bytes, only {available} left"
    )]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: usize,
        /// The bytes it needs.
        needed: usize,
        /// The bytes left from `offset`.
        available: usize,
    },

    /// Structurally invalid data other than truncation.
    #[error("malformed BTF at byte offset {offset}: {what}")]
    Malformed {
        /// What is wrong.
        what: String,
        /// Where.
        offset: usize,
    },

    /// The header's magic is not BTF's.
    #[error("not BTF: magic is {0:#06x}, expected 0xeb9f")]
    BadMagic(u16),

    /// BTF of a big-endian kernel.
    #[error("big-endian BTF (magic read as 0x9feb) is not supported")]
    BigEndian,

    /// A BTF version other than 1.
    #[error("unsupported BTF version {0} (only version 1 is understood)")]
    UnsupportedVersion(u8),

    /// A type of a kind this reader cannot skip.
    #[error("BTF type {type_id} at byte offset {offset} has unknown kind {kind}")]
    UnknownKind {
        /// The kind (`BTF_KIND_*`).
        kind: u8,
        /// The type's id.
        type_id: u32,
        /// Where the type starts.
        offset: usize,
    },

    /// A type refers to a type id past the end of the table (also what module/split BTF looks
    /// like when read on its own, since it refers to vmlinux type ids).
    #[error("malformed BTF: type {referrer} refers to type id {type_id}, which does not exist")]
    BadTypeId {
        /// The type that refers.
        referrer: u32,
        /// The id it refers to.
        type_id: u32,
    },

    /// A typedef/modifier chain or anonymous member nesting that does not end (cyclic data).
    #[error("malformed BTF: type chain starting at type {type_id} is deeper than {MAX_DEPTH}")]
    TooDeep {
        /// Where the chain starts.
        type_id: u32,
    },

    /// No struct or union of that name.
    #[error("struct or union `{0}` not found in kernel BTF")]
    NoStruct(String),

    /// `member` is the dotted path up to and including the element that was not found.
    #[error("struct `{struct_name}` has no member `{member}`")]
    NoMember {
        /// The struct looked in.
        struct_name: String,
        /// The path, up to the missing member.
        member: String,
    },

    /// The member is a bitfield.
    #[error("`{struct_name}.{member}` is a bitfield, it has no byte offset or size")]
    Bitfield {
        /// The struct looked in.
        struct_name: String,
        /// The member's path.
        member: String,
    },

    /// The member does not start on a byte.
    #[error("`{struct_name}.{member}` is at bit offset {bit_offset}, not on a byte boundary")]
    Unaligned {
        /// The struct looked in.
        struct_name: String,
        /// The member's path.
        member: String,
        /// Its offset in bits.
        bit_offset: u64,
    },

    /// A path element after the first was asked for inside something that is not a
    /// struct/union (pointers are deliberately not followed).
    #[error(
        "cannot look up `{next}` in `{struct_name}.{member}`: its type is {kind}, not a struct or union"
    )]
    NotComposite {
        /// The struct looked in.
        struct_name: String,
        /// The path so far.
        member: String,
        /// The element asked for next.
        next: String,
        /// The kind of what `member` is.
        kind: &'static str,
    },

    /// A lookup with no member named.
    #[error("empty member path for struct `{0}`")]
    EmptyPath(String),

    /// The member's type has no size (void, a forward declaration, a function, ...).
    #[error("`{struct_name}.{member}` has no size: its type is {kind}")]
    NoSize {
        /// The struct looked in.
        struct_name: String,
        /// The member's path.
        member: String,
        /// The kind of its type.
        kind: &'static str,
    },

    /// An offset or size past `u32`.
    #[error("`{struct_name}.{member}`: {what} does not fit in 32 bits")]
    Overflow {
        /// The struct looked in.
        struct_name: String,
        /// The member's path.
        member: String,
        /// What overflowed.
        what: &'static str,
    },

    /// Several complete definitions share the name and give different answers (the kernel
    /// has a few same-named local structs, e.g. `console` or `dma_chan`).
    #[error(
        "`{name}` names {count} different struct/union definitions that disagree; cannot pick one"
    )]
    Ambiguous {
        /// The name.
        name: String,
        /// How many definitions have it.
        count: usize,
    },
}

/// BTF type kinds (`BTF_KIND_*`), plus `Void` for type id 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Void,
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u8) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// Lower-case name for error messages.
    fn name(self) -> &'static str {
        match self {
            Kind::Void => "void",
            Kind::Int => "int",
            Kind::Ptr => "pointer",
            Kind::Array => "array",
            Kind::Struct => "struct",
            Kind::Union => "union",
            Kind::Enum => "enum",
            Kind::Fwd => "forward declaration",
            Kind::Typedef => "typedef",
            Kind::Volatile => "volatile",
            Kind::Const => "const",
            Kind::Restrict => "restrict",
            Kind::Func => "function",
            Kind::FuncProto => "function prototype",
            Kind::Var => "variable",
            Kind::Datasec => "data section",
            Kind::Float => "float",
            Kind::DeclTag => "decl tag",
            Kind::TypeTag => "type tag",
            Kind::Enum64 => "enum64",
        }
    }

    fn is_composite(self) -> bool {
        matches!(self, Kind::Struct | Kind::Union)
    }

    /// Kinds whose `size_or_type` is a type id that refers to "the same type, qualified".
    fn is_modifier(self) -> bool {
        matches!(
            self,
            Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
        )
    }

    /// Kinds whose `size_or_type` is a type id this module may follow.
    fn refers_to_type(self) -> bool {
        self.is_modifier() || self == Kind::Ptr
    }
}

/// One parsed type. Only what lookups need is kept; trailing data of other kinds is skipped.
#[derive(Clone, Copy, Debug)]
struct Type {
    kind: Kind,
    /// For structs/unions: member `offset` fields hold `bitfield_size << 24 | bit_offset`.
    kind_flag: bool,
    name_off: u32,
    /// A size for INT/ENUM/ENUM64/STRUCT/UNION/FLOAT/DATASEC, a type id for most others.
    #[expect(
        clippy::struct_field_names,
        reason = "BTF's own name for this union of size and type"
    )]
    size_or_type: u32,
    extra: Extra,
}

#[derive(Clone, Copy, Debug)]
enum Extra {
    None,
    /// From the INT encoding word: bit width and bit offset (non-trivial for old-style
    /// bitfields in structs without kind_flag).
    Int {
        bits: u8,
        bit_offset: u8,
    },
    Array {
        elem: u32,
        nelems: u32,
    },
    /// Range in [`KernelBtf::members`].
    Members {
        start: usize,
        len: usize,
    },
}

#[derive(Clone, Copy, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    offset: u32,
}

/// A member found by name, with its offset relative to the struct the search started in.
#[derive(Clone, Copy, Debug)]
struct Hit {
    bit_offset: u64,
    /// Non-zero only for kind_flag bitfields.
    bitfield_size: u32,
    type_id: u32,
}

/// The kernel's BTF: every type (index = type id, index 0 is void), the struct/union members
/// flattened into one vector, the string section, and a name index for structs/unions.
pub struct KernelBtf {
    types: Vec<Type>,
    members: Vec<Member>,
    strings: Vec<u8>,
    /// Struct/union name -> candidate type ids, already narrowed to complete (sized)
    /// definitions when the name has any. Almost always exactly one id.
    by_name: HashMap<String, Vec<u32>>,
}

impl std::fmt::Debug for KernelBtf {
    // The tables are huge; a summary is what anyone printing this wants.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf")
            .field("types", &self.type_count())
            .field("members", &self.members.len())
            .field("string_bytes", &self.strings.len())
            .finish_non_exhaustive()
    }
}

/// Bounds-checked forward reader over one section. Offsets in errors are absolute (file) ones.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// File offset of `data[0]`.
    base: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Takes `n` bytes, or says what was being read if they are not there.
    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8], BtfError> {
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
        {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(BtfError::Truncated {
                what: what(),
                offset: self.base + self.pos,
                needed: n,
                available: self.remaining(),
            }),
        }
    }
}

/// Splits 12 bytes into three little-endian u32s (panic-free: no runtime indexing).
fn u32x3(b: [u8; 12]) -> [u32; 3] {
    let [a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3] = b;
    [
        u32::from_le_bytes([a0, a1, a2, a3]),
        u32::from_le_bytes([b0, b1, b2, b3]),
        u32::from_le_bytes([c0, c1, c2, c3]),
    ]
}

fn le_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Finds `[hdr_len + off, hdr_len + off + len)` in `bytes`, or says which section is cut off.
fn section<'a>(
    bytes: &'a [u8],
    hdr_len: usize,
    off: u32,
    len: u32,
    what: &str,
) -> Result<(&'a [u8], usize), BtfError> {
    let start = hdr_len.checked_add(off as usize);
    let end = start.and_then(|s| s.checked_add(len as usize));
    match (start, end) {
        (Some(start), Some(end)) if end <= bytes.len() => Ok((&bytes[start..end], start)),
        _ => Err(BtfError::Truncated {
            what: format!("{what} (offset {off}, length {len} after the header)"),
            offset: start.unwrap_or(usize::MAX),
            needed: len as usize,
            available: start.map_or(0, |s| bytes.len().saturating_sub(s)),
        }),
    }
}

impl KernelBtf {
    /// Reads /sys/kernel/btf/vmlinux.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(SYS_FS_VMLINUX))
    }

    /// Reads and parses a raw BTF file (not an ELF file with a `.BTF` section).
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|error| BtfError::Io {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&bytes)
    }

    /// Parses a raw BTF blob. The result owns its data; `bytes` can be dropped afterwards.
    pub fn parse(bytes: &[u8]) -> Result<Self, BtfError> {
        // Header: u16 magic, u8 version, u8 flags, then u32 hdr_len, type_off, type_len,
        // str_off, str_len. Magic first, so that random input reports "not BTF".
        let magic = match bytes {
            [m0, m1, ..] => u16::from_le_bytes([*m0, *m1]),
            _ => {
                return Err(BtfError::Truncated {
                    what: "BTF magic".into(),
                    offset: 0,
                    needed: 2,
                    available: bytes.len(),
                });
            }
        };
        match magic {
            BTF_MAGIC => {}
            BTF_MAGIC_SWAPPED => return Err(BtfError::BigEndian),
            other => return Err(BtfError::BadMagic(other)),
        }
        let header = bytes.get(..HEADER_V1_LEN).ok_or(BtfError::Truncated {
            what: "BTF header".into(),
            offset: 0,
            needed: HEADER_V1_LEN,
            available: bytes.len(),
        })?;
        let version = header[2];
        if version != BTF_VERSION {
            return Err(BtfError::UnsupportedVersion(version));
        }
        let word = |i: usize| le_u32(&header[4 + 4 * i..8 + 4 * i]).unwrap_or(0);
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (word(0) as usize, word(1), word(2), word(3), word(4));
        // A longer header is a newer revision with extra fields we do not need; the sections
        // are still located relative to its end, hence hdr_len rather than 24.
        if hdr_len < HEADER_V1_LEN {
            return Err(BtfError::Malformed {
                what: format!("hdr_len {hdr_len} is smaller than the {HEADER_V1_LEN}-byte header"),
                offset: 4,
            });
        }
        if hdr_len > bytes.len() {
            return Err(BtfError::Truncated {
                what: "BTF header (hdr_len)".into(),
                offset: 0,
                needed: hdr_len,
                available: bytes.len(),
            });
        }
        let (type_sec, type_base) = section(bytes, hdr_len, type_off, type_len, "type section")?;
        let (str_sec, str_base) = section(bytes, hdr_len, str_off, str_len, "string section")?;

        // Offset 0 must be the empty string (anonymous names use it), and a final NUL means
        // every in-bounds name offset has a terminated string.
        if str_sec.first() != Some(&0) || str_sec.last() != Some(&0) {
            return Err(BtfError::Malformed {
                what: "string section must start and end with a NUL byte".into(),
                offset: str_base,
            });
        }

        let (types, members) = parse_types(type_sec, type_base, str_sec.len())?;
        let mut btf = KernelBtf {
            types,
            members,
            strings: str_sec.to_vec(),
            by_name: HashMap::new(),
        };
        btf.validate_refs()?;
        btf.build_name_index();
        Ok(btf)
    }

    /// Number of types, not counting void (the highest valid type id).
    pub fn type_count(&self) -> usize {
        self.types.len() - 1
    }

    /// Byte offset of a member path inside `struct struct_name` (or union), e.g.
    /// `member_offset("task_struct", &["real_parent"])` or
    /// `member_offset("pid_namespace", &["ns", "inum"])`.
    ///
    /// Each later path element is a member of the (non-pointer) type of the previous one,
    /// after skipping typedef/const/volatile/restrict/type_tag. Anonymous struct/union members
    /// are searched transparently at every level, and their offsets are added. Bitfields and
    /// members that do not start on a byte boundary are errors.
    pub fn member_offset(&self, struct_name: &str, path: &[&str]) -> Result<u32, BtfError> {
        self.for_struct(struct_name, |root| {
            let (bits, _) = self.walk(root, struct_name, path)?;
            let member = || path.join(".");
            if !bits.is_multiple_of(8) {
                return Err(BtfError::Unaligned {
                    struct_name: struct_name.to_owned(),
                    member: member(),
                    bit_offset: bits,
                });
            }
            u32::try_from(bits / 8).map_err(|_| BtfError::Overflow {
                struct_name: struct_name.to_owned(),
                member: member(),
                what: "byte offset",
            })
        })
    }

    /// Size in bytes of a named struct/union (e.g. "upid").
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        self.for_struct(name, |id| Ok(self.ty(id, id)?.size_or_type))
    }

    /// Size in bytes of the type of the member at `path` (resolving typedefs/modifiers;
    /// pointers are 8 bytes; arrays are nelems * elem size), e.g.
    /// `member_size("task_struct", &["loginuid"])`. Bitfields are errors, as in
    /// [`member_offset`](Self::member_offset).
    pub fn member_size(&self, struct_name: &str, path: &[&str]) -> Result<u32, BtfError> {
        self.for_struct(struct_name, |root| {
            let (_, type_id) = self.walk(root, struct_name, path)?;
            self.type_size(type_id, struct_name, path)
        })
    }

    /// Runs `f` on each candidate definition of `name` and returns the answer they agree on.
    ///
    /// Candidates that fail (e.g. an unrelated same-named struct without the member) are
    /// ignored as long as at least one succeeds; if none does, the first error is returned.
    fn for_struct<T: PartialEq>(
        &self,
        name: &str,
        f: impl Fn(u32) -> Result<T, BtfError>,
    ) -> Result<T, BtfError> {
        let ids = self
            .by_name
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        let mut answer: Option<T> = None;
        let mut first_err = None;
        for &id in ids {
            match f(id) {
                Ok(v) => match &answer {
                    None => answer = Some(v),
                    Some(prev) if *prev == v => {}
                    Some(_) => {
                        return Err(BtfError::Ambiguous {
                            name: name.to_owned(),
                            count: ids.len(),
                        });
                    }
                },
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (answer, first_err) {
            (Some(v), _) => Ok(v),
            (None, Some(e)) => Err(e),
            (None, None) => Err(BtfError::NoStruct(name.to_owned())),
        }
    }

    /// Follows `path` from struct `root`. Returns the member's bit offset from the start of
    /// `root` and its (unresolved) type id.
    fn walk(&self, root: u32, struct_name: &str, path: &[&str]) -> Result<(u64, u32), BtfError> {
        if path.is_empty() {
            return Err(BtfError::EmptyPath(struct_name.to_owned()));
        }
        let mut bits = 0u64;
        let mut current = root;
        for (i, name) in path.iter().enumerate() {
            let container = self.skip_modifiers(current)?;
            let container_kind = self.ty(container, current)?.kind;
            if !container_kind.is_composite() {
                return Err(BtfError::NotComposite {
                    struct_name: struct_name.to_owned(),
                    member: path[..i].join("."),
                    next: (*name).to_owned(),
                    kind: container_kind.name(),
                });
            }
            let member_path = || path[..=i].join(".");
            let hit = self
                .find_member(container, name.as_bytes(), 0)?
                .ok_or_else(|| BtfError::NoMember {
                    struct_name: struct_name.to_owned(),
                    member: member_path(),
                })?;
            if hit.bitfield_size != 0 || self.is_old_style_bitfield(hit.type_id)? {
                return Err(BtfError::Bitfield {
                    struct_name: struct_name.to_owned(),
                    member: member_path(),
                });
            }
            // Saturates rather than overflowing; an absurd sum fails the u32 conversion.
            bits = bits.saturating_add(hit.bit_offset);
            current = hit.type_id;
        }
        Ok((bits, current))
    }

    /// Looks for a member called `name` in struct/union `id`, descending into anonymous
    /// struct/union members (C guarantees names are unique across them, so the first match
    /// in declaration order is the only one).
    fn find_member(&self, id: u32, name: &[u8], depth: usize) -> Result<Option<Hit>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { type_id: id });
        }
        let t = self.ty(id, id)?;
        let Extra::Members { start, len } = t.extra else {
            return Ok(None);
        };
        let members = self
            .members
            .get(start..start + len)
            .ok_or(BtfError::BadTypeId {
                referrer: id,
                type_id: id,
            })?;
        for m in members {
            let (bit_offset, bitfield_size) = if t.kind_flag {
                (m.offset & 0x00ff_ffff, m.offset >> 24)
            } else {
                (m.offset, 0)
            };
            if self.is_anonymous(m.name_off) {
                // Unnamed members are either anonymous structs/unions (search them) or
                // padding bitfields like `int :3` (nothing to find there).
                let inner = self.skip_modifiers(m.type_id)?;
                if self.ty(inner, id)?.kind.is_composite()
                    && let Some(hit) = self.find_member(inner, name, depth + 1)?
                {
                    return Ok(Some(Hit {
                        bit_offset: u64::from(bit_offset) + hit.bit_offset,
                        ..hit
                    }));
                }
            } else if self.name_is(m.name_off, name) {
                return Ok(Some(Hit {
                    bit_offset: u64::from(bit_offset),
                    bitfield_size,
                    type_id: m.type_id,
                }));
            }
        }
        Ok(None)
    }

    /// Without kind_flag, a bitfield is encoded as a member whose INT type is narrower than
    /// its storage (or starts at a bit offset inside it).
    fn is_old_style_bitfield(&self, type_id: u32) -> Result<bool, BtfError> {
        let id = self.skip_modifiers(type_id)?;
        let t = self.ty(id, type_id)?;
        Ok(match t.extra {
            Extra::Int { bits, bit_offset } => {
                bit_offset != 0 || u32::from(bits) != t.size_or_type.saturating_mul(8)
            }
            _ => false,
        })
    }

    /// Size of type `type_id` for [`member_size`](Self::member_size).
    fn type_size(&self, type_id: u32, struct_name: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut count = 1u32; // product of the array dimensions seen so far
        let mut id = type_id;
        for _ in 0..MAX_DEPTH {
            let resolved = self.skip_modifiers(id)?;
            let t = self.ty(resolved, id)?;
            let elem_size = match t.kind {
                Kind::Int
                | Kind::Enum
                | Kind::Enum64
                | Kind::Struct
                | Kind::Union
                | Kind::Float => t.size_or_type,
                Kind::Ptr => POINTER_SIZE,
                Kind::Array => {
                    if let Extra::Array { elem, nelems } = t.extra {
                        count = count
                            .checked_mul(nelems)
                            .ok_or_else(|| BtfError::Overflow {
                                struct_name: struct_name.to_owned(),
                                member: path.join("."),
                                what: "array size",
                            })?;
                        id = elem;
                        continue;
                    }
                    return Err(BtfError::BadTypeId {
                        referrer: resolved,
                        type_id: resolved,
                    });
                }
                other => {
                    return Err(BtfError::NoSize {
                        struct_name: struct_name.to_owned(),
                        member: path.join("."),
                        kind: other.name(),
                    });
                }
            };
            return count
                .checked_mul(elem_size)
                .ok_or_else(|| BtfError::Overflow {
                    struct_name: struct_name.to_owned(),
                    member: path.join("."),
                    what: "array size",
                });
        }
        Err(BtfError::TooDeep { type_id })
    }

    /// Resolves typedef/const/volatile/restrict/type_tag down to the underlying type id.
    fn skip_modifiers(&self, type_id: u32) -> Result<u32, BtfError> {
        let mut id = type_id;
        for _ in 0..MAX_DEPTH {
            let t = self.ty(id, id)?;
            if !t.kind.is_modifier() {
                return Ok(id);
            }
            id = t.size_or_type;
        }
        Err(BtfError::TooDeep { type_id })
    }

    /// Type by id; `referrer` is only for the error message.
    fn ty(&self, id: u32, referrer: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or(BtfError::BadTypeId {
            referrer,
            type_id: id,
        })
    }

    /// Empty name (offset 0, or any offset of a NUL byte) means anonymous.
    fn is_anonymous(&self, name_off: u32) -> bool {
        self.strings.get(name_off as usize).is_none_or(|&b| b == 0)
    }

    /// Compares the NUL-terminated string at `name_off` with `name` without scanning for the
    /// terminator first (this is the inner loop of every lookup).
    fn name_is(&self, name_off: u32, name: &[u8]) -> bool {
        let start = name_off as usize;
        let Some(end) = start.checked_add(name.len()) else {
            return false;
        };
        self.strings.get(start..end) == Some(name) && self.strings.get(end) == Some(&0)
    }

    /// The NUL-terminated string at `name_off` (empty if out of bounds; offsets were
    /// validated at parse time).
    fn name_bytes(&self, name_off: u32) -> &[u8] {
        let rest = self.strings.get(name_off as usize..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..len]
    }

    /// Checks, once, every type id this module might follow, so malformed data is reported at
    /// load time rather than at the first lookup. (Ids can refer forward, so this needs the
    /// whole table; name offsets were already checked while parsing.)
    fn validate_refs(&self) -> Result<(), BtfError> {
        let n_types = self.types.len();
        let check_type = |referrer: usize, type_id: u32| {
            if (type_id as usize) < n_types {
                Ok(())
            } else {
                Err(BtfError::BadTypeId {
                    referrer: referrer as u32,
                    type_id,
                })
            }
        };
        for (id, t) in self.types.iter().enumerate().skip(1) {
            if t.kind.refers_to_type() {
                check_type(id, t.size_or_type)?;
            }
            match t.extra {
                Extra::Array { elem, .. } => check_type(id, elem)?,
                Extra::Members { start, len } => {
                    let members = self.members.get(start..start + len).unwrap_or_default();
                    for m in members {
                        check_type(id, m.type_id)?;
                    }
                }
                Extra::None | Extra::Int { .. } => {}
            }
        }
        Ok(())
    }

    /// Indexes structs and unions by name. A kernel can have several types with the same name
    /// (a FWD, an empty or a real definition, or unrelated local structs); only complete,
    /// non-zero-sized definitions are kept when a name has any.
    fn build_name_index(&mut self) {
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, t) in self.types.iter().enumerate() {
            if !t.kind.is_composite() || self.is_anonymous(t.name_off) {
                continue;
            }
            // Non-UTF-8 names cannot be asked for with a &str anyway.
            let Ok(name) = std::str::from_utf8(self.name_bytes(t.name_off)) else {
                continue;
            };
            let ids = by_name.entry(name.to_owned()).or_default();
            ids.push(id as u32);
        }
        let sized = |id: &u32| {
            self.types
                .get(*id as usize)
                .is_some_and(|t| t.size_or_type > 0)
        };
        for ids in by_name.values_mut() {
            if ids.len() > 1 && ids.iter().any(sized) {
                ids.retain(sized);
            }
        }
        self.by_name = by_name;
    }
}

/// Parses the type section into a table indexed by type id (index 0 is void) and the
/// flattened struct/union members.
///
/// Name offsets are checked against `str_len` here, where the record's file offset is known.
fn parse_types(
    sec: &[u8],
    base: usize,
    str_len: usize,
) -> Result<(Vec<Type>, Vec<Member>), BtfError> {
    let check_name = |name_off: u32, type_id: u32, offset: usize| {
        if (name_off as usize) < str_len {
            Ok(())
        } else {
            Err(BtfError::Malformed {
                what: format!(
                    "type {type_id} has name offset {name_off}, beyond the {str_len}-byte string section"
                ),
                offset,
            })
        }
    };
    // Average type is ~18 bytes in vmlinux; reserving avoids most regrowth.
    let mut types = Vec::with_capacity(sec.len() / 16 + 1);
    let mut members = Vec::new();
    types.push(Type {
        kind: Kind::Void,
        kind_flag: false,
        name_off: 0,
        size_or_type: 0,
        extra: Extra::None,
    });
    let mut cur = Cursor {
        data: sec,
        pos: 0,
        base,
    };
    while cur.remaining() > 0 {
        let type_id = types.len() as u32;
        let offset = base + cur.pos;
        let header = cur.take(TYPE_HEADER_LEN, || format!("header of type {type_id}"))?;
        let [name_off, info, size_or_type] =
            u32x3(header.try_into().unwrap_or([0; TYPE_HEADER_LEN]));
        // info: bits 0-15 vlen, bits 24-28 kind, bit 31 kind_flag.
        let vlen = (info & 0xffff) as usize;
        let raw_kind = ((info >> 24) & 0x1f) as u8;
        let kind_flag = info >> 31 == 1;
        let kind = Kind::from_raw(raw_kind).ok_or(BtfError::UnknownKind {
            kind: raw_kind,
            type_id,
            offset,
        })?;
        check_name(name_off, type_id, offset)?;
        // Size of the data that follows the common header, per kind.
        let trailing = match kind {
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            Kind::Array => 12,
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => vlen * 12,
            Kind::Enum | Kind::FuncProto => vlen * 8,
            Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag
            | Kind::Void => 0,
        };
        let data = cur.take(trailing, || {
            format!("{} data of type {type_id} (vlen {vlen})", kind.name())
        })?;
        let extra = match kind {
            Kind::Int => {
                // Encoding word: bits 0-7 width in bits, bits 16-23 bit offset.
                let enc = le_u32(data).unwrap_or(0);
                Extra::Int {
                    bits: (enc & 0xff) as u8,
                    bit_offset: ((enc >> 16) & 0xff) as u8,
                }
            }
            Kind::Array => {
                // btf_array: elem type, index type (unused here), nelems.
                let [elem, _index, nelems] = u32x3(data.try_into().unwrap_or([0; 12]));
                Extra::Array { elem, nelems }
            }
            Kind::Struct | Kind::Union => {
                let start = members.len();
                let (records, _) = data.as_chunks::<12>();
                for (i, record) in records.iter().enumerate() {
                    let [name_off, member_type, member_offset] = u32x3(*record);
                    let record_at = offset + TYPE_HEADER_LEN + 12 * i;
                    check_name(name_off, type_id, record_at)?;
                    members.push(Member {
                        name_off,
                        type_id: member_type,
                        offset: member_offset,
                    });
                }
                Extra::Members { start, len: vlen }
            }
            _ => Extra::None,
        };
        types.push(Type {
            kind,
            kind_flag,
            name_off,
            size_or_type,
            extra,
        });
    }
    Ok((types, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- synthetic BTF builder -------------------------------------------------------------

    /// Writes a little-endian BTF blob type by type; each method returns the new type id.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
        hdr_len: u32,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
                hdr_len: 24,
            }
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn word(&mut self, w: u32) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }

        fn header(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kflag: bool,
            size_or_type: u32,
        ) -> u32 {
            let name_off = self.str(name);
            self.word(name_off);
            self.word(u32::from(kflag) << 31 | kind << 24 | vlen);
            self.word(size_or_type);
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.header(name, 1, 0, false, size);
            self.word(size * 8);
            id
        }

        /// An INT with an explicit encoding (old-style bitfield types).
        fn int_bits(&mut self, name: &str, size: u32, bits: u32, bit_offset: u32) -> u32 {
            let id = self.header(name, 1, 0, false, size);
            self.word(bit_offset << 16 | bits);
            id
        }

        fn ptr(&mut self, target: u32) -> u32 {
            self.header("", 2, 0, false, target)
        }

        fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
            let id = self.header("", 3, 0, false, 0);
            self.word(elem);
            self.word(index);
            self.word(nelems);
            id
        }

        /// `members`: (name, type, bit offset, bitfield size); any bitfield size sets kind_flag.
        fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let kflag = members.iter().any(|m| m.3 != 0);
            let id = self.header(name, kind, members.len() as u32, kflag, size);
            for &(mname, ty, bit_off, bf) in members {
                let off = self.str(mname);
                self.word(off);
                self.word(ty);
                self.word(if kflag { bf << 24 | bit_off } else { bit_off });
            }
            id
        }

        fn struct_(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let m: Vec<_> = members.iter().map(|&(n, t, o)| (n, t, o, 0)).collect();
            self.composite(4, name, size, &m)
        }

        fn union_(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let m: Vec<_> = members.iter().map(|&(n, t, o)| (n, t, o, 0)).collect();
            self.composite(5, name, size, &m)
        }

        fn simple(&mut self, kind: u32, name: &str, target: u32) -> u32 {
            self.header(name, kind, 0, false, target)
        }

        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.push(1); // version
            out.push(0); // flags
            for w in [
                self.hdr_len,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.resize(self.hdr_len as usize, 0);
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    // Raw BTF_KIND_* numbers, for kinds the builder has no dedicated method for.
    const ENUM: u32 = 6;
    const FWD: u32 = 7;
    const TYPEDEF: u32 = 8;
    const VOLATILE: u32 = 9;
    const CONST: u32 = 10;
    const RESTRICT: u32 = 11;
    const FUNC: u32 = 12;
    const FUNC_PROTO: u32 = 13;
    const VAR: u32 = 14;
    const DATASEC: u32 = 15;
    const FLOAT: u32 = 16;
    const DECL_TAG: u32 = 17;
    const TYPE_TAG: u32 = 18;
    const ENUM64: u32 = 19;

    /// A small type graph modelled on the kernel structs the sensor reads:
    ///
    /// ```c
    /// struct ns_common { u64 stash; unsigned int inum; };            // size 16
    /// struct pidns { int level; struct ns_common ns; };              // ns at 8, size 24
    /// struct upid { int nr; struct pidns *ns; };                     // size 16
    /// struct mm { u64 a; struct { u64 b; union { u64 arg_start; u32 alt; };
    ///                              u64 arg_end; }; u64 c; };         // anon struct at 8
    /// struct task { int pid; const volatile pid_t tgid; struct task *parent;
    ///               char comm[16]; struct upid numbers[2];
    ///               unsigned int flag:1; unsigned int other:7; pid_t after; };
    /// ```
    fn sample() -> Builder {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let uint = b.int("unsigned int", 4);
        let u64_ = b.int("unsigned long long", 8);
        let chr = b.int("char", 1);
        let ns_common = b.struct_("ns_common", 16, &[("stash", u64_, 0), ("inum", uint, 64)]);
        let pidns = b.struct_("pidns", 24, &[("level", int, 0), ("ns", ns_common, 64)]);
        let pidns_ptr = b.ptr(pidns);
        let upid = b.struct_("upid", 16, &[("nr", int, 0), ("ns", pidns_ptr, 64)]);

        let anon_union = b.union_("", 8, &[("arg_start", u64_, 0), ("alt", uint, 0)]);
        let anon_struct = b.struct_(
            "",
            24,
            &[("b", u64_, 0), ("", anon_union, 64), ("arg_end", u64_, 128)],
        );
        b.struct_(
            "mm",
            40,
            &[("a", u64_, 0), ("", anon_struct, 64), ("c", u64_, 256)],
        );

        let pid_t = b.simple(TYPEDEF, "pid_t", int);
        let vol = b.simple(VOLATILE, "", pid_t);
        let cv = b.simple(CONST, "", vol);
        let comm = b.array(chr, int, 16);
        let numbers = b.array(upid, int, 2);
        // Forward declaration first and an empty same-named struct: lookups must still find
        // the real definition.
        b.simple(FWD, "task", 0);
        b.struct_("task", 0, &[]);
        let task_id = b.next_id + 1; // after the pointer to it
        let task_ptr = b.ptr(task_id);
        let t = b.composite(
            4,
            "task",
            96,
            &[
                ("pid", int, 0, 0),
                ("tgid", cv, 32, 0),
                ("parent", task_ptr, 64, 0),
                ("comm", comm, 128, 0),
                ("numbers", numbers, 256, 0),
                ("flag", uint, 512, 1),
                ("other", uint, 513, 7),
                ("after", pid_t, 544, 0),
            ],
        );
        assert_eq!(t, task_id);
        b
    }

    fn parse(b: &Builder) -> KernelBtf {
        KernelBtf::parse(&b.build()).expect("synthetic BTF parses")
    }

    // ---- synthetic tests -------------------------------------------------------------------

    #[test]
    fn plain_members() {
        let btf = parse(&sample());
        assert_eq!(btf.member_offset("task", &["pid"]).unwrap(), 0);
        assert_eq!(btf.member_offset("task", &["parent"]).unwrap(), 8);
        assert_eq!(btf.member_offset("task", &["comm"]).unwrap(), 16);
        assert_eq!(btf.member_offset("task", &["after"]).unwrap(), 68);
        assert_eq!(btf.member_offset("upid", &["ns"]).unwrap(), 8);
    }

    #[test]
    fn nested_path_through_named_member() {
        let btf = parse(&sample());
        assert_eq!(btf.member_offset("pidns", &["ns", "inum"]).unwrap(), 8 + 8);
        assert_eq!(btf.member_size("pidns", &["ns", "inum"]).unwrap(), 4);
        // Through an array is not a struct: clear error, not a guess.
        let err = btf.member_offset("task", &["numbers", "nr"]).unwrap_err();
        assert!(
            matches!(err, BtfError::NotComposite { kind: "array", .. }),
            "{err}"
        );
        // Pointers are not followed.
        let err = btf.member_offset("upid", &["ns", "level"]).unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::NotComposite {
                    kind: "pointer",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "cannot look up `level` in `upid.ns`: its type is pointer, not a struct or union"
        );
    }

    #[test]
    fn anonymous_union_inside_anonymous_struct() {
        let btf = parse(&sample());
        // anon struct at 8, anon union at 8 inside it.
        assert_eq!(btf.member_offset("mm", &["arg_start"]).unwrap(), 16);
        assert_eq!(btf.member_offset("mm", &["alt"]).unwrap(), 16);
        assert_eq!(btf.member_offset("mm", &["arg_end"]).unwrap(), 24);
        assert_eq!(btf.member_offset("mm", &["b"]).unwrap(), 8);
        assert_eq!(btf.member_offset("mm", &["c"]).unwrap(), 32);
        assert_eq!(btf.member_size("mm", &["alt"]).unwrap(), 4);
    }

    #[test]
    fn typedef_and_modifiers_are_skipped() {
        let btf = parse(&sample());
        assert_eq!(btf.member_offset("task", &["tgid"]).unwrap(), 4);
        assert_eq!(btf.member_size("task", &["tgid"]).unwrap(), 4);
        assert_eq!(btf.member_size("task", &["after"]).unwrap(), 4);
    }

    #[test]
    fn bitfields_are_rejected() {
        let btf = parse(&sample());
        for member in ["flag", "other"] {
            let err = btf.member_offset("task", &[member]).unwrap_err();
            assert!(matches!(err, BtfError::Bitfield { .. }), "{err}");
            let err = btf.member_size("task", &[member]).unwrap_err();
            assert!(matches!(err, BtfError::Bitfield { .. }), "{err}");
        }
        assert_eq!(
            btf.member_offset("task", &["flag"])
                .unwrap_err()
                .to_string(),
            "`task.flag` is a bitfield, it has no byte offset or size"
        );
        // Members after bitfields in a kind_flag struct still decode correctly.
        assert_eq!(btf.member_offset("task", &["after"]).unwrap(), 68);
    }

    #[test]
    fn old_style_bitfield_and_unaligned_offset() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let narrow = b.int_bits("int", 4, 3, 0);
        b.struct_(
            "s",
            8,
            &[("bf", narrow, 0), ("odd", int, 4), ("ok", int, 32)],
        );
        let btf = parse(&b);
        let err = btf.member_offset("s", &["bf"]).unwrap_err();
        assert!(matches!(err, BtfError::Bitfield { .. }), "{err}");
        let err = btf.member_offset("s", &["odd"]).unwrap_err();
        assert!(
            matches!(err, BtfError::Unaligned { bit_offset: 4, .. }),
            "{err}"
        );
        assert_eq!(btf.member_offset("s", &["ok"]).unwrap(), 4);
    }

    #[test]
    fn missing_struct_and_member() {
        let btf = parse(&sample());
        let err = btf.member_offset("nope", &["x"]).unwrap_err();
        assert!(
            matches!(&err, BtfError::NoStruct(n) if n == "nope"),
            "{err}"
        );
        assert!(matches!(
            btf.struct_size("nope"),
            Err(BtfError::NoStruct(_))
        ));
        // Only anonymous / non-composite names are not structs.
        assert!(matches!(
            btf.struct_size("pid_t"),
            Err(BtfError::NoStruct(_))
        ));

        let err = btf.member_offset("task", &["nope"]).unwrap_err();
        match &err {
            BtfError::NoMember {
                struct_name,
                member,
            } => {
                assert_eq!((struct_name.as_str(), member.as_str()), ("task", "nope"));
            }
            other => panic!("wrong error {other}"),
        }
        let err = btf.member_offset("pidns", &["ns", "nope"]).unwrap_err();
        assert_eq!(err.to_string(), "struct `pidns` has no member `ns.nope`");
        // Member names are matched exactly, not by prefix.
        assert!(btf.member_offset("task", &["pi"]).is_err());
        assert!(btf.member_offset("task", &["pidx"]).is_err());
        assert!(matches!(
            btf.member_offset("task", &[]),
            Err(BtfError::EmptyPath(_))
        ));
    }

    #[test]
    fn sizes() {
        let btf = parse(&sample());
        assert_eq!(
            btf.struct_size("task").unwrap(),
            96,
            "FWD and empty duplicate are skipped"
        );
        assert_eq!(btf.struct_size("upid").unwrap(), 16);
        assert_eq!(btf.struct_size("mm").unwrap(), 40);
        assert_eq!(btf.member_size("task", &["comm"]).unwrap(), 16);
        assert_eq!(btf.member_size("task", &["numbers"]).unwrap(), 2 * 16);
        assert_eq!(btf.member_size("task", &["parent"]).unwrap(), 8);
        assert_eq!(btf.member_size("upid", &["ns"]).unwrap(), 8);
        assert_eq!(btf.member_size("pidns", &["ns"]).unwrap(), 16);
    }

    #[test]
    fn multi_dimensional_array_and_unsized_member() {
        let mut b = Builder::new();
        let chr = b.int("char", 1);
        let inner = b.array(chr, chr, 3);
        let outer = b.array(inner, chr, 5);
        let fwd = b.simple(FWD, "opaque", 0);
        let void_ptr = b.ptr(0);
        b.struct_(
            "s",
            24,
            &[("grid", outer, 0), ("o", fwd, 128), ("p", void_ptr, 128)],
        );
        let btf = parse(&b);
        assert_eq!(btf.member_size("s", &["grid"]).unwrap(), 15);
        let err = btf.member_size("s", &["o"]).unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::NoSize {
                    kind: "forward declaration",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(btf.member_size("s", &["p"]).unwrap(), 8);
        assert!(matches!(
            btf.struct_size("opaque"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn every_kind_is_skipped_correctly() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        // One of each remaining kind between the types we look up. The filler is zeros, so
        // skipping a wrong number of bytes lands on "kind 0" and fails loudly.
        b.header("e", ENUM, 2, false, 4); // 2 x btf_enum (8 bytes)
        b.types.extend_from_slice(&[0; 16]);
        b.header("e64", ENUM64, 1, false, 8); // 1 x btf_enum64 (12 bytes)
        b.types.extend_from_slice(&[0; 12]);
        let proto = b.header("", FUNC_PROTO, 3, false, int); // 3 x btf_param (8 bytes)
        b.types.extend_from_slice(&[0; 24]);
        b.simple(FUNC, "f", proto);
        let var = b.header("v", VAR, 0, false, int); // btf_var (4 bytes)
        b.word(1);
        b.header(".data", DATASEC, 2, false, 8); // 2 x btf_var_secinfo (12 bytes)
        b.types.extend_from_slice(&[0; 24]);
        b.simple(FLOAT, "double", 8);
        b.header("tag", DECL_TAG, 0, false, var); // btf_decl_tag (4 bytes)
        b.word(u32::MAX);
        let tagged = b.simple(TYPE_TAG, "user", int);
        let restrict = b.simple(RESTRICT, "", tagged);
        b.struct_("s", 8, &[("x", int, 0), ("y", restrict, 32)]);
        let btf = parse(&b);
        assert_eq!(btf.type_count(), 12);
        assert_eq!(btf.member_offset("s", &["y"]).unwrap(), 4);
        assert_eq!(btf.member_size("s", &["y"]).unwrap(), 4);
    }

    #[test]
    fn longer_header_is_honoured() {
        let mut b = sample();
        b.hdr_len = 32;
        let btf = parse(&b);
        assert_eq!(btf.member_offset("mm", &["arg_end"]).unwrap(), 24);
    }

    #[test]
    fn ambiguous_names() {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.struct_("dup", 8, &[("a", int, 0), ("b", int, 32)]);
        b.struct_("dup", 4, &[("c", int, 0)]);
        let btf = parse(&b);
        // A member only one definition has is unambiguous.
        assert_eq!(btf.member_offset("dup", &["b"]).unwrap(), 4);
        assert_eq!(btf.member_offset("dup", &["c"]).unwrap(), 0);
        let err = btf.struct_size("dup").unwrap_err();
        assert!(matches!(err, BtfError::Ambiguous { count: 2, .. }), "{err}");
    }

    #[test]
    fn header_errors() {
        let good = sample().build();
        assert!(matches!(
            KernelBtf::parse(&[]),
            Err(BtfError::Truncated { .. })
        ));
        assert!(matches!(
            KernelBtf::parse(b"ELF\x7f...."),
            Err(BtfError::BadMagic(_))
        ));
        let mut be = good.clone();
        be.swap(0, 1);
        assert!(matches!(KernelBtf::parse(&be), Err(BtfError::BigEndian)));
        let mut v2 = good.clone();
        v2[2] = 2;
        assert!(matches!(
            KernelBtf::parse(&v2),
            Err(BtfError::UnsupportedVersion(2))
        ));
        let mut short_hdr = good.clone();
        short_hdr[4] = 8;
        assert!(matches!(
            KernelBtf::parse(&short_hdr),
            Err(BtfError::Malformed { .. })
        ));
        let mut unknown = good.clone();
        unknown[24 + 7] = 20; // kind byte of type 1
        let err = KernelBtf::parse(&unknown).unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::UnknownKind {
                    kind: 20,
                    type_id: 1,
                    offset: 24
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "BTF type 1 at byte offset 24 has unknown kind 20"
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        let good = sample().build();
        for len in 0..good.len() {
            assert!(
                KernelBtf::parse(&good[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        // Type section that ends inside a struct's member list.
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.struct_("s", 8, &[("x", int, 0), ("y", int, 32)]);
        b.types.truncate(b.types.len() - 4);
        let err = KernelBtf::parse(&b.build()).unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::Truncated {
                    needed: 24,
                    available: 20,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn dangling_and_cyclic_references() {
        let mut b = Builder::new();
        b.simple(TYPEDEF, "t", 99);
        let err = KernelBtf::parse(&b.build()).unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::BadTypeId {
                    referrer: 1,
                    type_id: 99
                }
            ),
            "{err}"
        );

        // A member name pointing past the string section: reported with the record's offset.
        let mut b = Builder::new();
        let int = b.int("int", 4);
        b.header("s", 4, 1, false, 4);
        b.word(9999); // name_off
        b.word(int);
        b.word(0);
        let err = KernelBtf::parse(&b.build()).unwrap_err();
        assert!(
            matches!(err, BtfError::Malformed { offset: 52, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("name offset 9999"), "{err}");

        // typedef a -> typedef b -> typedef a, used as a member type and as an anonymous
        // member; an anonymous struct that contains itself.
        let mut b = Builder::new();
        b.simple(TYPEDEF, "a", 2);
        b.simple(TYPEDEF, "b", 1);
        b.struct_("s", 8, &[("x", 1, 0)]);
        b.struct_("", 8, &[("", 4, 0)]);
        b.struct_("r", 8, &[("", 4, 0), ("z", 1, 0)]);
        let btf = parse(&b);
        assert!(matches!(
            btf.member_size("s", &["x"]),
            Err(BtfError::TooDeep { .. })
        ));
        assert!(matches!(
            btf.member_offset("s", &["x", "y"]),
            Err(BtfError::TooDeep { .. })
        ));
        assert!(matches!(
            btf.member_offset("r", &["z"]),
            Err(BtfError::TooDeep { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let good = sample().build();
        let queries: &[(&str, &[&str])] = &[
            ("task", &["tgid"]),
            ("task", &["numbers"]),
            ("mm", &["arg_start"]),
            ("pidns", &["ns", "inum"]),
        ];
        let poke = |bytes: &[u8]| {
            if let Ok(btf) = KernelBtf::parse(bytes) {
                for (s, p) in queries {
                    let _ = btf.member_offset(s, p);
                    let _ = btf.member_size(s, p);
                    let _ = btf.struct_size(s);
                }
            }
        };
        // Every byte of a valid blob replaced by a few interesting values.
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                poke(&bad);
            }
        }
        // Pseudo-random junk behind a valid header (xorshift, deterministic).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut bad = good.clone();
            for byte in bad.iter_mut().skip(24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state.is_multiple_of(8) {
                    *byte = state as u8;
                }
            }
            poke(&bad);
        }
    }

    #[test]
    fn io_error_names_the_path() {
        let err = KernelBtf::from_file(Path::new("/nonexistent/btf")).unwrap_err();
        assert!(matches!(err, BtfError::Io { .. }));
        assert!(
            err.to_string()
                .starts_with("cannot read BTF file /nonexistent/btf: "),
            "{err}"
        );
    }

    // ---- the running kernel ----------------------------------------------------------------

    /// The sensor requires kernel BTF, so these tests do too (no skipping).
    fn kernel() -> KernelBtf {
        let start = std::time::Instant::now();
        let btf = KernelBtf::from_sys_fs().expect("kernel BTF parses");
        eprintln!(
            "parsed {} kernel types in {:?}",
            btf.type_count(),
            start.elapsed()
        );
        btf
    }

    #[test]
    fn real_kernel_offsets() {
        let btf = kernel();
        let off = |s: &str, p: &[&str]| {
            btf.member_offset(s, p)
                .unwrap_or_else(|e| panic!("{s}.{}: {e}", p.join(".")))
        };
        let size = |s: &str, p: &[&str]| {
            btf.member_size(s, p)
                .unwrap_or_else(|e| panic!("{s}.{}: {e}", p.join(".")))
        };
        let task = btf.struct_size("task_struct").unwrap();
        for m in [
            "real_parent",
            "tgid",
            "pid",
            "start_boottime",
            "group_leader",
            "mm",
            "cred",
            "signal",
            "nsproxy",
            "thread_pid",
            "loginuid",
            "comm",
        ] {
            let o = off("task_struct", &[m]);
            assert!(
                o > 0 && o + size("task_struct", &[m]) <= task,
                "task_struct.{m} at {o}"
            );
        }
        assert_eq!(
            off("task_struct", &["tgid"]),
            off("task_struct", &["pid"]) + 4
        );
        assert_eq!(size("task_struct", &["pid"]), 4);
        assert_eq!(size("task_struct", &["tgid"]), 4);
        assert_eq!(size("task_struct", &["comm"]), 16);
        assert_eq!(size("task_struct", &["start_boottime"]), 8);
        assert_eq!(size("task_struct", &["loginuid"]), 4, "kuid_t wraps a u32");
        for p in [
            "real_parent",
            "group_leader",
            "mm",
            "cred",
            "signal",
            "nsproxy",
            "thread_pid",
        ] {
            assert_eq!(size("task_struct", &[p]), 8, "task_struct.{p} is a pointer");
        }
        let loginuid = off("task_struct", &["loginuid"]);
        assert_eq!(off("task_struct", &["loginuid", "val"]), loginuid);

        let arg_start = off("mm_struct", &["arg_start"]);
        assert_eq!(off("mm_struct", &["arg_end"]), arg_start + 8);
        assert_eq!(size("mm_struct", &["arg_start"]), 8);

        assert!(off("cred", &["euid"]) > 0);
        assert_eq!(size("cred", &["euid"]), 4);
        assert_eq!(size("nsproxy", &["mnt_ns"]), 8);
        off("nsproxy", &["mnt_ns"]);

        let level = off("pid", &["level"]);
        let numbers = off("pid", &["numbers"]);
        assert!(numbers > level);
        // `numbers` is a flexible array (`struct upid numbers[]`) on recent kernels, so it
        // has size 0 and sits at the very end; older kernels declare `numbers[1]`.
        let upids = size("pid", &["numbers"]);
        assert!(upids == 0 || upids == 16, "pid.numbers size {upids}");
        assert_eq!(numbers + upids, btf.struct_size("pid").unwrap());
        assert_eq!(btf.struct_size("upid").unwrap(), 16);
        assert_eq!(off("upid", &["ns"]), 8);
        assert_eq!(size("upid", &["ns"]), 8);
        assert_eq!(size("pid_namespace", &["ns", "inum"]), 4);
        assert!(off("pid_namespace", &["ns", "inum"]) > off("pid_namespace", &["ns"]));

        assert_eq!(size("linux_binprm", &["filename"]), 8);
        assert_eq!(size("linux_binprm", &["argc"]), 4);
        off("linux_binprm", &["filename"]);
        off("linux_binprm", &["argc"]);

        // Real bitfields exist in task_struct and must be refused.
        assert!(matches!(
            btf.member_offset("task_struct", &["sched_reset_on_fork"]),
            Err(BtfError::Bitfield { .. })
        ));
    }

    /// Cross-checks against bpftool's raw dump (`cargo xtask setup` installs bpftool).
    #[test]
    fn real_kernel_matches_bpftool() {
        let btf = kernel();
        let out = std::process::Command::new("bpftool")
            .args(["btf", "dump", "file", SYS_FS_VMLINUX, "format", "raw"])
            .output();
        let text = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            other => panic!("bpftool btf dump failed (cargo xtask setup installs it): {other:?}"),
        };
        let dump = RawDump::new(&text);
        for (s, path) in [
            ("task_struct", &["real_parent"][..]),
            ("task_struct", &["tgid"]),
            ("task_struct", &["signal"]),
            ("task_struct", &["loginuid"]),
            ("mm_struct", &["arg_start"]),
            ("mm_struct", &["arg_end"]),
            ("cred", &["euid"]),
            ("nsproxy", &["mnt_ns"]),
            ("pid", &["numbers"]),
            ("pid_namespace", &["ns", "inum"]),
            ("linux_binprm", &["argc"]),
        ] {
            let expected = dump
                .bit_offset(s, path)
                .unwrap_or_else(|| panic!("bpftool: {s} {path:?}"));
            assert_eq!(
                u64::from(btf.member_offset(s, path).unwrap()) * 8,
                expected,
                "{s}.{path:?}"
            );
        }
        assert_eq!(dump.size("upid"), Some(16));
        assert_eq!(
            Some(btf.struct_size("task_struct").unwrap()),
            dump.size("task_struct")
        );
        assert_eq!(btf.type_count(), dump.types.len());
    }

    /// Just enough of bpftool's `format raw` text to resolve member offsets independently.
    struct RawDump<'a> {
        types: HashMap<u32, RawType<'a>>,
    }

    struct RawType<'a> {
        kind: &'a str,
        name: &'a str,
        size: u32,
        /// `type_id=` of the type line (modifiers, typedefs, pointers).
        target: u32,
        /// (name, type id, bit offset)
        members: Vec<(&'a str, u32, u64)>,
    }

    impl<'a> RawDump<'a> {
        fn new(text: &'a str) -> Self {
            let mut types = HashMap::new();
            let mut current = None;
            let field = |line: &'a str, key: &str| -> Option<&'a str> {
                let at = line.find(key)? + key.len();
                line[at..].split_whitespace().next()
            };
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix('[') {
                    let (id, rest) = rest.split_once("] ").unwrap();
                    let id: u32 = id.parse().unwrap();
                    let mut words = rest.splitn(3, ' ');
                    let kind = words.next().unwrap();
                    let name = words.next().unwrap_or("").trim_matches('\'');
                    let num = |key| field(line, key).and_then(|s| s.parse().ok()).unwrap_or(0);
                    let (size, target) = (num("size="), num("type_id="));
                    let members = Vec::new();
                    types.insert(
                        id,
                        RawType {
                            kind,
                            name,
                            size,
                            target,
                            members,
                        },
                    );
                    current = Some(id);
                } else if let (Some(id), Some(bits)) = (current, field(line, "bits_offset=")) {
                    let name = line.trim().split('\'').nth(1).unwrap();
                    let ty = field(line, "type_id=").unwrap().parse().unwrap();
                    types
                        .get_mut(&id)
                        .unwrap()
                        .members
                        .push((name, ty, bits.parse().unwrap()));
                }
            }
            RawDump { types }
        }

        fn by_name(&self, name: &str) -> Option<u32> {
            self.types
                .iter()
                .filter(|(_, t)| {
                    matches!(t.kind, "STRUCT" | "UNION") && t.name == name && t.size > 0
                })
                .map(|(id, _)| *id)
                .min()
        }

        fn size(&self, name: &str) -> Option<u32> {
            Some(self.types[&self.by_name(name)?].size)
        }

        fn strip(&self, mut id: u32) -> u32 {
            while let Some(t) = self.types.get(&id) {
                if !matches!(
                    t.kind,
                    "TYPEDEF" | "CONST" | "VOLATILE" | "RESTRICT" | "TYPE_TAG"
                ) {
                    break;
                }
                id = t.target;
            }
            id
        }

        fn find(&self, id: u32, name: &str) -> Option<(u64, u32)> {
            for &(n, ty, bits) in &self.types.get(&id)?.members {
                if n == name {
                    return Some((bits, ty));
                }
                if n == "(anon)"
                    && let Some((b, t)) = self.find(self.strip(ty), name)
                {
                    return Some((bits + b, t));
                }
            }
            None
        }

        fn bit_offset(&self, s: &str, path: &[&str]) -> Option<u64> {
            let mut id = self.by_name(s)?;
            let mut total = 0;
            for name in path {
                let (bits, ty) = self.find(self.strip(id), name)?;
                total += bits;
                id = ty;
            }
            Some(total)
        }
    }
}
