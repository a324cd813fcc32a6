//! The rendered `process` blocks of recent activity records, by thread. A process's file and
//! network records all carry the same block; building it (its strings, their escaping) cost
//! more than anything else per record but the hash. A block is reused only while everything
//! it is made of is the same: the thread's comm and the process table's entry (compared by
//! identity: the cache holds the entry's `Arc`s, so their addresses cannot be reused).
use std::sync::Arc;

// Looked up on every record: foldhash, not SipHash (the keys are kernel pids, never chosen).
use foldhash::HashMap;

use crate::{enrich::process_table::ProcessInfo, record::Process, record::rendered::Rendered};

/// Most threads remembered; beyond it the cache starts again (a host with that many active
/// threads pays one rebuild each).
const MAX_THREADS: usize = 4096;

/// What a block was made of.
pub struct BlockSource {
    ticks: u64,
    comm: [u8; 16],
    entity_id: Option<Arc<str>>,
    executable: Option<Arc<[u8]>>,
    parent: Option<Arc<str>>,
    ppid: u32,
    euid: Option<u32>,
}

impl BlockSource {
    pub fn of(ticks: u64, comm: &[u8], known: Option<&ProcessInfo>) -> Self {
        let mut c = [0u8; 16];
        let n = comm.len().min(16);
        c[..n].copy_from_slice(&comm[..n]);
        Self {
            ticks,
            comm: c,
            entity_id: known.map(|k| k.entity_id.clone()),
            executable: known.and_then(|k| k.executable.clone()),
            parent: known.and_then(|k| k.parent_entity_id.clone()),
            ppid: known.map_or(0, |k| k.ppid),
            euid: known.and_then(|k| k.euid),
        }
    }

    /// Whether a block made of this is the one for `ticks`, `comm` and `known` (compared in
    /// place: a lookup copies nothing).
    fn matches(&self, ticks: u64, comm: &[u8], known: Option<&ProcessInfo>) -> bool {
        fn same<T: ?Sized>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        let n = comm.len().min(16);
        self.ticks == ticks
            && self.comm[..n] == comm[..n]
            && self.comm[n..].iter().all(|&b| b == 0)
            && self.ppid == known.map_or(0, |k| k.ppid)
            && self.euid == known.and_then(|k| k.euid)
            && same(self.entity_id.as_ref(), known.map(|k| &k.entity_id))
            && same(
                self.executable.as_ref(),
                known.and_then(|k| k.executable.as_ref()),
            )
            && same(
                self.parent.as_ref(),
                known.and_then(|k| k.parent_entity_id.as_ref()),
            )
    }
}

type Block = Arc<Rendered<Process>>;

#[derive(Default)]
pub struct ProcessBlocks {
    /// By (tgid, thread id): the block and what it was made of.
    by_thread: HashMap<(u32, u32), (BlockSource, Block)>,
}

impl ProcessBlocks {
    /// The block of thread `pid` of `tgid`, if it was made of `ticks`, `comm` and `known`.
    pub fn get(
        &self,
        tgid: u32,
        pid: u32,
        ticks: u64,
        comm: &[u8],
        known: Option<&ProcessInfo>,
    ) -> Option<Block> {
        let (made_of, block) = self.by_thread.get(&(tgid, pid))?;
        made_of.matches(ticks, comm, known).then(|| block.clone())
    }

    pub fn insert(&mut self, tgid: u32, pid: u32, source: BlockSource, block: Block) {
        if self.by_thread.len() >= MAX_THREADS && !self.by_thread.contains_key(&(tgid, pid)) {
            self.by_thread.clear();
        }
        self.by_thread.insert((tgid, pid), (source, block));
    }

    /// Forgets the threads of processes no longer in the table.
    pub fn retain(&mut self, mut alive: impl FnMut(u32) -> bool) {
        self.by_thread.retain(|&(tgid, _), _| alive(tgid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(exe: &str) -> ProcessInfo {
        ProcessInfo {
            entity_id: Arc::from("e"),
            start_ticks: 5,
            ppid: 1,
            parent_entity_id: Some(Arc::from("p")),
            name: Arc::from(&b"x"[..]),
            executable: Some(Arc::from(exe.as_bytes())),
            euid: Some(0),
            agent: 0,
            chain: Arc::from([]),
            container: None,
        }
    }

    fn block(name: &str) -> Block {
        let mut p = Process::default();
        p.set_name(name.as_bytes());
        Arc::new(Rendered::new(p))
    }

    #[test]
    fn a_block_is_reused_only_while_what_it_is_made_of_is_unchanged() {
        let mut cache = ProcessBlocks::default();
        let before_exec = info("/bin/sh");
        cache.insert(
            10,
            10,
            BlockSource::of(5, b"sh", Some(&before_exec)),
            block("sh"),
        );
        assert!(cache.get(10, 10, 5, b"sh", Some(&before_exec)).is_some());
        // Another thread, a renamed thread, a new table entry (exec), a reused pid.
        assert!(cache.get(10, 11, 5, b"sh", Some(&before_exec)).is_none());
        assert!(
            cache
                .get(10, 10, 5, b"worker", Some(&before_exec))
                .is_none()
        );
        let after_exec = info("/bin/sh");
        assert!(cache.get(10, 10, 5, b"sh", Some(&after_exec)).is_none());
        assert!(cache.get(10, 10, 6, b"sh", Some(&before_exec)).is_none());
        assert!(cache.get(10, 10, 5, b"sh", None).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_dead_processes() {
        let mut cache = ProcessBlocks::default();
        for tgid in 0..(MAX_THREADS as u32 + 10) {
            cache.insert(tgid, tgid, BlockSource::of(1, b"a", None), block("a"));
        }
        assert!(cache.by_thread.len() <= MAX_THREADS);
        cache.retain(|tgid| tgid % 2 == 0);
        assert!(cache.by_thread.keys().all(|(tgid, _)| tgid % 2 == 0));
    }
}
