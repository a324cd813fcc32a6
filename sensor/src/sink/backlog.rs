//! What the output could not take yet: records held in memory while the disk is full, and
//! the count of records refused once the hold was full. Refused records never enter the
//! chain (they get no sequence number), so the chain stays whole; the `gap` record that
//! reports them takes their place in it.
use std::collections::BTreeMap;

/// Records refused while the output was full, reported by one `gap` record.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutputLoss {
    /// How many.
    pub lost: u64,
    /// By `event.action`.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// `@timestamp` of the first refused record.
    pub start: String,
    /// `@timestamp` of the last refused record.
    pub end: String,
    /// Why the output could not take them (`ENOSPC`, `EDQUOT`).
    pub error: &'static str,
}

impl From<OutputLoss> for crate::record::Gap {
    /// The `gap` block of the records a full output refused.
    fn from(loss: OutputLoss) -> Self {
        Self {
            source: "output",
            lost: loss.lost,
            by_kind: loss.by_kind,
            error: Some(loss.error),
            start: Some(loss.start),
            end: Some(loss.end),
            sink: None,
        }
    }
}

#[derive(Default)]
pub struct Backlog {
    bytes: Vec<u8>,
    /// Where, in `bytes`, the current file's last record ends (a rotation record): what
    /// follows goes into the next file.
    switch_at: Option<usize>,
    refused: Option<OutputLoss>,
}

impl Backlog {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.switch_at.is_none()
    }

    pub fn hold(&mut self, records: &[u8]) {
        self.bytes.extend_from_slice(records);
    }

    /// Holds a rotation record: the last record for the current file.
    pub fn hold_last_for_file(&mut self, record: &[u8]) {
        debug_assert!(self.switch_at.is_none(), "one rotation at a time");
        self.hold(record);
        self.switch_at = Some(self.bytes.len());
    }

    /// What to write to the current file next.
    pub fn for_current_file(&self) -> &[u8] {
        &self.bytes[..self.switch_at.unwrap_or(self.bytes.len())]
    }

    /// True when the current file has all it should get and the next file is due.
    pub fn switch_due(&self) -> bool {
        self.switch_at == Some(0)
    }

    pub fn switched(&mut self) {
        self.switch_at = None;
    }

    /// `n` bytes from the front were written.
    pub fn written(&mut self, n: usize) {
        self.bytes.drain(..n);
        if let Some(at) = self.switch_at.as_mut() {
            *at -= n;
        }
        if self.bytes.is_empty() {
            // Give back what a long outage grew.
            self.bytes.shrink_to(1 << 20);
        }
    }

    pub fn refuse(&mut self, action: &'static str, timestamp: &str, error: &'static str) {
        let loss = self.refused.get_or_insert_with(|| OutputLoss {
            start: timestamp.to_owned(),
            error,
            ..OutputLoss::default()
        });
        loss.lost += 1;
        *loss.by_kind.entry(action).or_default() += 1;
        timestamp.clone_into(&mut loss.end);
    }

    pub fn take_refused(&mut self) -> Option<OutputLoss> {
        self.refused.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_mark_moves_with_what_is_written() {
        let mut b = Backlog::default();
        b.hold(b"a\n");
        b.hold_last_for_file(b"rot\n");
        b.hold(b"next\n");
        assert_eq!(b.for_current_file(), b"a\nrot\n");
        b.written(2);
        assert_eq!(b.for_current_file(), b"rot\n");
        b.written(4);
        assert!(b.switch_due());
        b.switched();
        assert_eq!(b.for_current_file(), b"next\n");
        b.written(5);
        assert!(b.is_empty());
    }

    #[test]
    fn refused_records_are_counted_by_kind_with_their_span() {
        let mut b = Backlog::default();
        b.refuse("exec", "t1", "ENOSPC");
        b.refuse("open", "t2", "ENOSPC");
        b.refuse("open", "t3", "ENOSPC");
        let loss = b.take_refused().unwrap();
        assert_eq!(loss.lost, 3);
        assert_eq!(loss.by_kind, BTreeMap::from([("exec", 1), ("open", 2)]));
        assert_eq!((loss.start.as_str(), loss.end.as_str()), ("t1", "t3"));
        assert_eq!(b.take_refused(), None);
    }
}
