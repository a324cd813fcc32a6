//! Records as bytes, one [`Encoder`] per output format: the ECS-style JSON writer (the
//! default, [`Ecs`]) and OCSF ([`Ocsf`]). An encoder writes the record without its chain
//! block and says where that block goes; the sealer (`evidence::sealer`) seals it in.
use crate::record::Record;

pub mod ecs;
pub mod ocsf;

/// How an encoded record is sealed into the evidence chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// How many of the record's first bytes are the blocks shared by a run's or an agent's
    /// records, which the chain hashes once for all of them (0: none).
    pub shared: usize,
    /// How many objects deep the chain block goes: 1 at the top level, 2 inside the last
    /// member (OCSF's `unmapped`, as OCSF allows no extra top-level field).
    pub depth: usize,
}

/// One output format.
pub trait Encoder: Sync {
    /// Appends `record` to `out` as one JSON object, without the chain block or a newline.
    fn encode(&self, out: &mut Vec<u8>, record: &Record) -> Encoded;
}

/// The ECS-style records of docs/schema.md, written by hand on the hot path ([`ecs::write`]).
pub struct Ecs;

impl Encoder for Ecs {
    fn encode(&self, out: &mut Vec<u8>, record: &Record) -> Encoded {
        Encoded {
            shared: ecs::write(out, record),
            depth: 1,
        }
    }
}

/// OCSF 1.8.0 events ([`ocsf::write`]), the rest of the record and the chain under
/// `unmapped`.
pub struct Ocsf;

impl Encoder for Ocsf {
    fn encode(&self, out: &mut Vec<u8>, record: &Record) -> Encoded {
        ocsf::write(out, record);
        Encoded {
            shared: 0,
            depth: 2,
        }
    }
}
