//! The sealer stage: encodes each record in the output format and seals it into the evidence
//! chain, and says when a signed checkpoint is due and what it covers.
use std::time::{Duration, Instant};

use crate::{
    config::Format,
    encode::{Ecs, Encoder, Ocsf},
    evidence::{chain::Chain, signing},
    record::{self, Checkpoint, Record},
    stage::Seal,
};

/// When and with what key checkpoints are signed.
pub struct Checkpoints {
    key: ed25519_dalek::SigningKey,
    every_records: u64,
    every: Duration,
    /// Records sealed since the last checkpoint.
    since: u64,
    last: Instant,
}

impl Checkpoints {
    /// A checkpoint every `every_records` records or `every_ms` milliseconds, whichever
    /// comes first, signed with `key`.
    pub fn new(key: ed25519_dalek::SigningKey, every_records: u32, every_ms: u32) -> Self {
        Self {
            key,
            every_records: u64::from(every_records),
            every: Duration::from_millis(u64::from(every_ms)),
            since: 0,
            last: Instant::now(),
        }
    }

    fn due(&self) -> bool {
        self.since > 0 && (self.since >= self.every_records || self.last.elapsed() >= self.every)
    }
}

/// Encodes and seals records; see the module doc.
pub struct Sealer {
    encoder: &'static dyn Encoder,
    chain: Chain,
    /// Signs checkpoints, when a key is configured.
    checkpoints: Option<Checkpoints>,
}

impl Sealer {
    /// A new chain for sensor run `instance_id`, in ECS records, without checkpoints.
    pub fn new(instance_id: &str) -> Self {
        Self {
            encoder: &Ecs,
            chain: Chain::new(instance_id),
            checkpoints: None,
        }
    }

    /// Writes records in this format from now on.
    pub fn set_format(&mut self, format: Format) {
        self.encoder = match format {
            Format::Ecs => &Ecs,
            Format::Ocsf => &Ocsf,
        };
    }

    /// Signs checkpoints from now on.
    pub fn sign_with(&mut self, checkpoints: Checkpoints) {
        self.checkpoints = Some(checkpoints);
    }
}

impl Seal for Sealer {
    fn seal(&mut self, record: &Record, out: &mut Vec<u8>) {
        let start = out.len();
        let encoded = self.encoder.encode(out, record);
        self.chain.seal_encoded(out, start, encoded);
        // A checkpoint does not count towards the next one.
        if record.checkpoint.is_none()
            && let Some(c) = self.checkpoints.as_mut()
        {
            c.since += 1;
        }
    }

    fn checkpoint(&mut self, force: bool) -> Option<Checkpoint> {
        let c = self.checkpoints.as_mut()?;
        if !(c.due() || (force && c.since > 0)) {
            return None;
        }
        let (sequence, hash) = self.chain.last()?;
        let message = signing::checkpoint_message(self.chain.instance_id(), sequence, hash);
        let checkpoint = Checkpoint {
            covers_sequence: sequence,
            covers_hash: hash.to_owned(),
            signature: signing::sign(&c.key, &message),
            public_key: record::hex(c.key.verifying_key().as_bytes()),
        };
        c.since = 0;
        c.last = Instant::now();
        Some(checkpoint)
    }

    fn signs(&self) -> bool {
        self.checkpoints.is_some()
    }

    fn last(&self) -> Option<(u64, &str)> {
        self.chain.last()
    }
}
