//! Keeps the kernel's selector maps in step with the declared agents and the system: cgroups
//! appear and go, executables are installed or replaced. Processes already running in a newly
//! matched cgroup (or found at start) are attributed at once, never overriding a stronger
//! attribution.
use std::{
    collections::HashMap,
    hash::Hash,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use sensor_common::{TrackedProcess, method};

use crate::{
    attribution::{self, MapEntries, SharedRegistry},
    loader::SelectorMaps,
    snapshot::{self, ProcSnapshot},
};

pub type Tracked = Arc<Mutex<BpfHashMap<MapData, u32, TrackedProcess>>>;

/// cgroup v2 paths by cgroup id, as of the last scan (for `container.*`).
pub type CgroupIndex = Arc<std::sync::RwLock<HashMap<u64, Arc<str>>>>;

/// Makes `map` hold exactly `want`.
fn sync_map<K: aya::Pod + Eq + Hash, V: aya::Pod + PartialEq>(
    map: &mut BpfHashMap<MapData, K, V>,
    want: &HashMap<K, V>,
    have: &mut HashMap<K, V>,
) {
    for (k, v) in want {
        if have.get(k) != Some(v)
            && let Err(e) = map.insert(k, v, 0)
        {
            tracing::warn!("cannot update a selector map: {e}");
        }
    }
    for k in have.keys() {
        if !want.contains_key(k) {
            let _ = map.remove(k);
        }
    }
    *have = want.iter().map(|(k, v)| (*k, *v)).collect();
}

pub struct SelectorSync {
    registry: SharedRegistry,
    maps: SelectorMaps,
    cgroup_root: Option<PathBuf>,
    current: MapEntries,
    index: CgroupIndex,
}

impl SelectorSync {
    pub fn new(registry: SharedRegistry, maps: SelectorMaps, index: CgroupIndex) -> Self {
        Self {
            registry,
            maps,
            cgroup_root: snapshot::cgroup2_root(),
            current: MapEntries::default(),
            index,
        }
    }

    /// Re-compiles the selectors and updates the kernel maps; returns the entries now in force.
    pub fn refresh(&mut self) -> &MapEntries {
        let dirs = self
            .cgroup_root
            .as_deref()
            .map(attribution::cgroup_dirs)
            .unwrap_or_default();
        let want = attribution::current(&self.registry).map_entries(&dirs);
        {
            let mut index = self.index.write().expect("no poisoned lock");
            index.clear();
            index.extend(dirs.into_iter().map(|(path, id)| (id, Arc::from(path))));
        }
        let (mut have_c, mut have_e, mut have_u) = (
            std::mem::take(&mut self.current.cgroups),
            std::mem::take(&mut self.current.executables),
            std::mem::take(&mut self.current.uids),
        );
        sync_map(&mut self.maps.cgroups, &want.cgroups, &mut have_c);
        sync_map(&mut self.maps.executables, &want.executables, &mut have_e);
        sync_map(&mut self.maps.uids, &want.uids, &mut have_u);
        self.current = MapEntries {
            cgroups: have_c,
            executables: have_e,
            uids: have_u,
        };
        &self.current
    }

    /// Attributes running processes by their own selectors (the kernel only decides at exec),
    /// unless the kernel already holds an equal or stronger attribution for them.
    pub fn attribute_running<'a>(
        &self,
        tracked: &Tracked,
        procs: impl Iterator<Item = &'a mut ProcSnapshot>,
    ) {
        let registry = attribution::current(&self.registry);
        let mut map = tracked.lock().expect("no poisoned lock");
        for p in procs {
            let Some((agent, m)) =
                registry.match_process(&self.current, p.cgroup_id, p.exe_key, p.euid)
            else {
                continue;
            };
            let existing = map.get(&p.tgid, 0).ok();
            if existing.is_some_and(|e| e.agent != 0 && method::trust(e.method) >= method::trust(m))
            {
                p.agent = existing;
                continue;
            }
            let value = TrackedProcess {
                agent,
                method: m,
                ..Default::default()
            };
            if map.insert(p.tgid, value, 0).is_ok() {
                p.agent = Some(value);
            }
        }
    }
}
