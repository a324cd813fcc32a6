//! What userspace remembers about live processes, to give fork and exit records the context the
//! kernel does not resend (executable, name, parent). Entries go at exit, so memory follows the
//! number of live processes; a periodic sweep drops entries whose exit was lost.
use std::sync::Arc;

// Looked up on every record: foldhash, not SipHash (the keys are kernel pids, never chosen).
use foldhash::HashMap;

/// What the table keeps of one process: the `process.*` context its later records repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its `process.entity_id`.
    pub entity_id: Arc<str>,
    /// Start time in clock ticks since boot: an event of the same tgid and tick is this
    /// process, so its entity id needs no hashing.
    pub start_ticks: u64,
    /// Its parent's process id.
    pub ppid: u32,
    /// Its parent's entity id, when the parent was known.
    pub parent_entity_id: Option<Arc<str>>,
    /// Its `comm`.
    pub name: Arc<[u8]>,
    /// The absolute path of the program it runs; none for a kernel thread.
    pub executable: Option<Arc<[u8]>>,
    /// Effective uid as of exec (or the snapshot); a fork inherits it.
    pub euid: Option<u32>,
    /// The agent number the kernel attributed it to (0: none).
    pub agent: u32,
    /// The delegation hops that led to that agent.
    pub chain: Arc<[crate::record::Hop]>,
    /// The container it runs in, from its cgroup when it exec'd, forked or was found.
    pub container: Option<Arc<crate::record::ContainerBlocks>>,
}

/// The live processes the sensor knows, by tgid.
#[derive(Debug, Default)]
pub struct ProcessTable {
    by_tgid: HashMap<u32, ProcessInfo>,
}

impl ProcessTable {
    /// The entry of `tgid`, whichever process holds that pid now.
    pub fn get(&self, tgid: u32) -> Option<&ProcessInfo> {
        self.by_tgid.get(&tgid)
    }

    /// The entry of `tgid` if it is the process that started at `start_ticks` (not an older
    /// one whose pid was reused).
    pub(crate) fn get_started(&self, tgid: u32, start_ticks: u64) -> Option<&ProcessInfo> {
        self.by_tgid
            .get(&tgid)
            .filter(|info| info.start_ticks == start_ticks)
    }

    /// Records a process (a snapshot entry, an exec, or a forked child).
    pub fn insert(&mut self, tgid: u32, info: ProcessInfo) {
        self.by_tgid.insert(tgid, info);
    }

    /// Forgets a process that exited; returns what was known of it if it is the same process
    /// (a reused pid, another entity, is left alone).
    pub fn remove(&mut self, tgid: u32, entity_id: &str) -> Option<ProcessInfo> {
        match self.by_tgid.get(&tgid) {
            Some(info) if &*info.entity_id == entity_id => self.by_tgid.remove(&tgid),
            _ => None,
        }
    }

    /// How many processes it holds.
    pub fn len(&self) -> usize {
        self.by_tgid.len()
    }

    /// It holds no process.
    pub fn is_empty(&self) -> bool {
        self.by_tgid.is_empty()
    }

    /// Drops entries for which `alive` says no (their exit record was lost).
    pub(crate) fn retain_alive(
        &mut self,
        mut alive: impl FnMut(u32, &ProcessInfo) -> bool,
    ) -> usize {
        let before = self.by_tgid.len();
        self.by_tgid.retain(|tgid, info| alive(*tgid, info));
        before - self.by_tgid.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(start: u64) -> ProcessInfo {
        ProcessInfo {
            entity_id: Arc::from(format!("e{start}")),
            start_ticks: start,
            ppid: 1,
            parent_entity_id: None,
            name: Arc::from(&b"x"[..]),
            executable: None,
            euid: None,
            agent: 0,
            chain: Arc::from([]),
            container: None,
        }
    }

    #[test]
    fn exit_of_a_reused_pid_keeps_the_newer_process() {
        let mut table = ProcessTable::default();
        table.insert(7, info(100));
        assert_eq!(
            table.remove(7, "e50"),
            None,
            "an older process with the same pid"
        );
        assert_eq!(table.remove(7, "e100").map(|i| i.ppid), Some(1));
        assert!(table.is_empty());
    }

    #[test]
    fn sweeps_dead_entries() {
        let mut table = ProcessTable::default();
        table.insert(1, info(1));
        table.insert(2, info(2));
        assert_eq!(table.retain_alive(|tgid, _| tgid == 1), 1);
        assert_eq!(table.len(), 1);
    }
}
