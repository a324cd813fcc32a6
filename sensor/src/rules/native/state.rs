//! What native rules remember between records, bounded: per rule and agent, the alerts of
//! the current rate-limit window; per rule, step and key (agent, process or tree), the
//! partial match of a sequence that reached that step. Time is the records' own `@timestamp`, so a replay gives
//! the daemon's alerts. When a table is full, what can no longer matter (an expired window
//! or step) goes first, then the oldest half; those are counted as evictions.
use std::collections::HashMap;

/// Entries each table holds at most.
pub const CAPACITY: usize = 16_384;

/// A table of per-key state, each entry with the time (ns) it started.
pub struct Bounded<V> {
    entries: HashMap<(usize, String), (i128, V)>,
    capacity: usize,
    /// Entries dropped while they could still matter.
    pub evictions: u64,
}

impl<V> Bounded<V> {
    /// An empty table of `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            evictions: 0,
        }
    }

    /// The entry of `rule` and `key`.
    pub fn get_mut(&mut self, rule: usize, key: &str) -> Option<&mut (i128, V)> {
        // A borrowed lookup would need a key type of its own; keys are short.
        self.entries.get_mut(&(rule, key.to_owned()))
    }

    /// Removes the entry of `rule` and `key`.
    pub fn remove(&mut self, rule: usize, key: &str) -> Option<(i128, V)> {
        self.entries.remove(&(rule, key.to_owned()))
    }

    /// Sets the entry of `rule` and `key`; `now` and `lifetime` (ns) say which entries have
    /// expired when room must be made.
    pub fn insert(
        &mut self,
        rule: usize,
        key: &str,
        started: i128,
        value: V,
        now: i128,
        lifetime: &dyn Fn(usize) -> i128,
    ) {
        let k = (rule, key.to_owned());
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&k) {
            self.entries
                .retain(|(r, _), (t, _)| now.saturating_sub(*t) <= lifetime(*r));
            if self.entries.len() >= self.capacity * 3 / 4 {
                let mut times: Vec<i128> = self.entries.values().map(|(t, _)| *t).collect();
                times.sort_unstable();
                let cut = times[(times.len() / 2).saturating_sub(1)];
                let before = self.entries.len();
                self.entries.retain(|_, (t, _)| *t > cut);
                self.evictions += (before - self.entries.len()) as u64;
            }
        }
        self.entries.insert(k, (started, value));
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_forgets_expired_entries_first_then_counts_evictions() {
        let mut t: Bounded<()> = Bounded::new(4);
        let lifetime = |_| 10;
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            t.insert(0, key, i as i128, (), i as i128, &lifetime);
        }
        // At 13, a (0) and b (1) and c (2) have expired: forgotten, not evicted.
        t.insert(0, "e", 13, (), 13, &lifetime);
        assert_eq!((t.len(), t.evictions), (2, 0));
        let mut t: Bounded<()> = Bounded::new(4);
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            t.insert(0, key, i as i128, (), i as i128, &lifetime);
        }
        // At 5 nothing has expired: the oldest half goes, counted.
        t.insert(0, "e", 5, (), 5, &lifetime);
        assert_eq!(t.evictions, 2);
        assert!(t.get_mut(0, "a").is_none() && t.get_mut(0, "c").is_some());
        assert_eq!(t.len(), 3);
    }
}
