//! What native rules remember between records, bounded: per rule and agent, the alerts of
//! the current rate-limit window; per rule, step and key (agent, process or tree), the
//! partial match of a sequence that reached that step. Time is the records' own `@timestamp`, so a replay gives
//! the daemon's alerts. When a table is full, what can no longer matter (an expired window
//! or step) goes first, then the oldest half; those are counted as evictions.
use foldhash::{HashMap, HashMapExt as _};

/// Entries each table holds at most.
pub const CAPACITY: usize = 16_384;

/// A table of per-key state, each entry with the time (ns) it started.
pub struct Bounded<V> {
    /// By rule (or rule step), by key: one map per rule, so a lookup borrows its key instead
    /// of building a `(rule, String)` for every record.
    rules: HashMap<usize, HashMap<String, (i128, V)>>,
    /// Entries in all of them.
    len: usize,
    capacity: usize,
    /// Entries dropped while they could still matter.
    pub evictions: u64,
}

impl<V> Bounded<V> {
    /// An empty table of `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            rules: HashMap::new(),
            len: 0,
            capacity,
            evictions: 0,
        }
    }

    /// The entry of `rule` and `key`.
    pub fn get_mut(&mut self, rule: usize, key: &str) -> Option<&mut (i128, V)> {
        self.rules.get_mut(&rule)?.get_mut(key)
    }

    /// Removes the entry of `rule` and `key`.
    pub fn remove(&mut self, rule: usize, key: &str) -> Option<(i128, V)> {
        let removed = self.rules.get_mut(&rule)?.remove(key);
        self.len -= usize::from(removed.is_some());
        removed
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
        if let Some(entry) = self.get_mut(rule, key) {
            *entry = (started, value);
            return;
        }
        if self.len >= self.capacity {
            self.retain(|r, t| now.saturating_sub(t) <= lifetime(r));
            if self.len >= self.capacity * 3 / 4 {
                let mut times: Vec<i128> = self
                    .rules
                    .values()
                    .flat_map(|entries| entries.values().map(|(t, _)| *t))
                    .collect();
                times.sort_unstable();
                let cut = times[(times.len() / 2).saturating_sub(1)];
                let before = self.len;
                self.retain(|_, t| t > cut);
                self.evictions += (before - self.len) as u64;
            }
        }
        self.rules
            .entry(rule)
            .or_default()
            .insert(key.to_owned(), (started, value));
        self.len += 1;
    }

    /// Keeps the entries `keep(rule, started)` holds for.
    fn retain(&mut self, keep: impl Fn(usize, i128) -> bool) {
        for (&rule, entries) in &mut self.rules {
            entries.retain(|_, (t, _)| keep(rule, *t));
        }
        self.rules.retain(|_, entries| !entries.is_empty());
        self.len = self.rules.values().map(HashMap::len).sum();
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
