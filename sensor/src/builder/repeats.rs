//! Optional suppression of exact repeats: the same process doing the same file operation on the
//! same path with the same flags and outcome, within a short window. The first occurrence is
//! written at once; the repeats are not dropped but folded into one record written when the
//! window closes, which carries `event.repeat_count` (how many occurrences it stands for).
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
};

use crate::{decode::FileEvent, record::Record};

/// Most windows open at once; beyond it the oldest is closed early (memory stays bounded).
const MAX_OPEN: usize = 65_536;

struct Window {
    opened_ns: u64,
    /// Occurrences after the first.
    repeats: u64,
    /// The latest of them, written with the count when the window closes.
    latest: Option<Record>,
}

pub(crate) struct RepeatFilter {
    window_ns: u64,
    open: HashMap<u64, Window>,
}

/// What identifies an exact repeat.
pub(crate) fn key(e: &FileEvent) -> u64 {
    let mut h = DefaultHasher::new();
    (
        e.tgid,
        e.start_boottime,
        e.syscall,
        &e.path,
        &e.path2,
        &e.base,
        e.flags,
        e.mode,
        e.ret.min(0),
        // A killed open is never a repeat of one that went through (an exception ended).
        e.str_flags & sensor_common::file_flags::POLICY_KILLED,
    )
        .hash(&mut h);
    h.finish()
}

impl RepeatFilter {
    pub(crate) fn new(window_ms: u32) -> Self {
        Self {
            window_ns: u64::from(window_ms) * 1_000_000,
            open: HashMap::new(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.window_ns > 0
    }

    /// Takes a record about to be written: returns it if it must be written now, or keeps it
    /// as a repeat. `closed` receives windows this one displaced.
    pub(crate) fn offer(
        &mut self,
        key: u64,
        now_ns: u64,
        record: Record,
        closed: &mut Vec<Record>,
    ) -> Option<Record> {
        if let Some(w) = self.open.get_mut(&key) {
            if now_ns.saturating_sub(w.opened_ns) < self.window_ns {
                w.repeats += 1;
                w.latest = Some(record);
                return None;
            }
            if let Some(done) = self.open.remove(&key).and_then(finish) {
                closed.push(done);
            }
        }
        if self.open.len() >= MAX_OPEN {
            self.close_due(u64::MAX, closed);
        }
        self.open.insert(
            key,
            Window {
                opened_ns: now_ns,
                repeats: 0,
                latest: None,
            },
        );
        Some(record)
    }

    /// Closes the windows that are over at `now_ns`, oldest first.
    pub(crate) fn close_due(&mut self, now_ns: u64, closed: &mut Vec<Record>) {
        let window = self.window_ns;
        let mut due: Vec<(u64, u64)> = self
            .open
            .iter()
            .filter(|(_, w)| now_ns.saturating_sub(w.opened_ns) >= window)
            .map(|(k, w)| (w.opened_ns, *k))
            .collect();
        due.sort_unstable();
        for (_, k) in due {
            if let Some(done) = self.open.remove(&k).and_then(finish) {
                closed.push(done);
            }
        }
    }
}

fn finish(w: Window) -> Option<Record> {
    let mut r = w.latest?;
    r.event.repeat_count = Some(w.repeats);
    Some(r)
}
