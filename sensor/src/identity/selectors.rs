//! Keeps the kernel's selector maps in step with the declared agents and the system: cgroups
//! and containers appear and go, executables are installed or replaced. A cgroup made since
//! start is held in the kernel until it is decided here (`decide`), so a new container's first
//! processes are attributed like its later ones. Processes already running in a newly matched
//! cgroup (or found at start) are attributed at once, never overriding a stronger attribution.
use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    ops::DerefMut,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use sensor_common::{CgroupAgent, TrackedProcess, method};

use crate::{
    enrich::container::{self, Catalog, ContainerMeta},
    enrich::snapshot::{self, ProcSnapshot},
    identity::registry::{self, MapEntries, SharedRegistry},
    kernel::loader::SelectorMaps,
};

/// The tracked-process map (by tgid): the kernel's, or a [`HashMap`] standing in for it where
/// there is no kernel (a replay).
pub type Tracked = Arc<Mutex<dyn TrackedMap>>;

/// What the daemon does with the tracked-process map, in the kernel map's own terms.
pub trait TrackedMap: Send {
    /// The attribution of process `tgid` (an error when it has none).
    fn get(&self, tgid: &u32, flags: u64) -> Result<TrackedProcess, MapError>;
    /// Attributes process `tgid`: its records and its children's carry `value`.
    fn insert(&mut self, tgid: u32, value: TrackedProcess, flags: u64) -> Result<(), MapError>;
    /// Forgets process `tgid`'s attribution.
    fn remove(&mut self, tgid: &u32) -> Result<(), MapError>;
    /// Every entry (those the kernel could not read are left out).
    fn entries(&self) -> Vec<(u32, TrackedProcess)>;
}

impl TrackedMap for BpfHashMap<MapData, u32, TrackedProcess> {
    fn get(&self, tgid: &u32, flags: u64) -> Result<TrackedProcess, MapError> {
        BpfHashMap::get(self, tgid, flags)
    }

    fn insert(&mut self, tgid: u32, value: TrackedProcess, flags: u64) -> Result<(), MapError> {
        BpfHashMap::insert(self, tgid, value, flags)
    }

    fn remove(&mut self, tgid: &u32) -> Result<(), MapError> {
        BpfHashMap::remove(self, tgid)
    }

    fn entries(&self) -> Vec<(u32, TrackedProcess)> {
        self.iter().filter_map(Result::ok).collect()
    }
}

/// The map without a kernel: what a replay's decisions are entered in.
impl<S: std::hash::BuildHasher + Send> TrackedMap for HashMap<u32, TrackedProcess, S> {
    fn get(&self, tgid: &u32, _flags: u64) -> Result<TrackedProcess, MapError> {
        HashMap::get(self, tgid)
            .copied()
            .ok_or(MapError::KeyNotFound)
    }

    fn insert(&mut self, tgid: u32, value: TrackedProcess, _flags: u64) -> Result<(), MapError> {
        HashMap::insert(self, tgid, value);
        Ok(())
    }

    fn remove(&mut self, tgid: &u32) -> Result<(), MapError> {
        HashMap::remove(self, tgid)
            .map(drop)
            .ok_or(MapError::KeyNotFound)
    }

    fn entries(&self) -> Vec<(u32, TrackedProcess)> {
        self.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// What the sensor knows of a cgroup v2 directory.
#[derive(Clone, Debug)]
pub struct CgroupInfo {
    /// Relative to the cgroup2 mount.
    pub path: Arc<str>,
    /// What its runtime records, when the cgroup is a container's and the runtime was found.
    pub container: Option<Arc<ContainerMeta>>,
}

/// Cgroups by id, as of the last scan or decision (for `container.*` and `orchestrator.*`).
pub type CgroupIndex = Arc<std::sync::RwLock<HashMap<u64, CgroupInfo>>>;

/// The selector state, shared by the periodic refresh and the pipeline's decisions.
pub type SharedSelectors = Arc<tokio::sync::Mutex<SelectorSync>>;

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

/// Keeps the kernel's selector maps equal to what the declared selectors match on this system
/// now: cgroups and executables appear and go, so the globs are compiled again against it.
pub struct SelectorSync {
    registry: SharedRegistry,
    /// None without a kernel (a replay): decisions are made and recorded, nothing is entered.
    maps: Option<SelectorMaps>,
    tracked: Tracked,
    cgroup_root: Option<PathBuf>,
    current: MapEntries,
    index: CgroupIndex,
    catalog: Catalog,
}

impl SelectorSync {
    /// A sync that enters the registry's selectors in `maps` (nothing is entered until
    /// [`SelectorSync::refresh`]).
    pub fn new(
        registry: SharedRegistry,
        maps: SelectorMaps,
        tracked: Tracked,
        index: CgroupIndex,
        catalog: Catalog,
    ) -> Self {
        Self {
            registry,
            maps: Some(maps),
            tracked,
            cgroup_root: snapshot::cgroup2_root(),
            current: MapEntries::default(),
            index,
            catalog,
        }
    }

    /// Decides cgroups as a live run does, with no kernel maps to keep and no cgroup tree to
    /// read: for replays of recorded kernel records (decisions on held cgroups).
    pub fn without_kernel(
        registry: SharedRegistry,
        tracked: Tracked,
        index: CgroupIndex,
        catalog: Catalog,
    ) -> Self {
        Self {
            registry,
            maps: None,
            tracked,
            cgroup_root: None,
            current: MapEntries::default(),
            index,
            catalog,
        }
    }

    /// Re-compiles the selectors against the cgroup tree, the containers in it and the file
    /// system, and updates the kernel maps. Cgroups the kernel still holds are decided by it
    /// too, and released. Returns the cgroups that newly match an agent.
    pub async fn refresh(&mut self) -> Vec<u64> {
        let dirs = self
            .cgroup_root
            .as_deref()
            .map(registry::cgroup_dirs)
            .unwrap_or_default();
        let mut containers: HashMap<u64, Arc<ContainerMeta>> = HashMap::new();
        let mut live: HashSet<String> = HashSet::new();
        for (path, id) in &dirs {
            if let Some(c) = container::from_cgroup_path(path) {
                if let Some(meta) = self.catalog.lookup(&c).await {
                    containers.insert(*id, meta);
                }
                live.insert(c.id);
            }
        }
        self.catalog
            .retain(&live.iter().map(String::as_str).collect());
        let want = registry::current(&self.registry).map_entries(&dirs, &containers);
        let scanned: HashSet<u64> = dirs.iter().map(|(_, id)| *id).collect();
        {
            let mut index = self.index.write().expect("no poisoned lock");
            index.clear();
            index.extend(dirs.into_iter().map(|(path, id)| {
                let info = CgroupInfo {
                    path: Arc::from(path),
                    container: containers.get(&id).cloned(),
                };
                (id, info)
            }));
        }
        let before: HashSet<u64> = self.current.cgroups.keys().copied().collect();
        let (mut have_c, mut have_e, mut have_u) = (
            std::mem::take(&mut self.current.cgroups),
            std::mem::take(&mut self.current.executables),
            std::mem::take(&mut self.current.uids),
        );
        if let Some(maps) = self.maps.as_mut() {
            sync_map(&mut maps.cgroups, &want.cgroups, &mut have_c);
            sync_map(&mut maps.executables, &want.executables, &mut have_e);
            sync_map(&mut maps.uids, &want.uids, &mut have_u);
        }
        self.current = MapEntries {
            cgroups: have_c,
            executables: have_e,
            uids: have_u,
        };
        self.release_held(&scanned);
        self.current
            .cgroups
            .keys()
            .filter(|id| !before.contains(id))
            .copied()
            .collect()
    }

    /// Releases the held cgroups the scan saw: it has decided them (a cgroup whose
    /// `cgroup_mkdir` record was lost, too). One made since the scan stays held until decided.
    fn release_held(&mut self, scanned: &HashSet<u64>) {
        let Some(maps) = self.maps.as_mut() else {
            return;
        };
        let held: Vec<u64> = maps.held.keys().filter_map(Result::ok).collect();
        for id in held.into_iter().filter(|id| scanned.contains(id)) {
            let _ = maps.held.remove(&id);
        }
        self.stop_holding_if_idle();
    }

    /// Ends the kernel's holding window once nothing is held, so untracked processes stop
    /// paying the held-cgroup lookup. Cleared first and checked after: a cgroup made in
    /// between is seen, and the window put back.
    fn stop_holding_if_idle(&mut self) {
        let Some(maps) = self.maps.as_mut() else {
            return;
        };
        let until = maps.holding_until.get(&0, 0).unwrap_or(0);
        if until == 0 || maps.held.keys().next().is_some() {
            return;
        }
        let _ = maps.holding_until.set(0, 0, 0);
        if maps.held.keys().next().is_some() {
            let _ = maps.holding_until.set(0, until, 0);
        }
    }

    /// Decides a cgroup just made: looks up its container, enters it in the kernel's map if
    /// it is an agent's, attributes the processes already in it, and releases it. Returns the
    /// agent its processes are, if any.
    pub async fn decide(&mut self, id: u64, path: &[u8]) -> Option<CgroupAgent> {
        let path = String::from_utf8_lossy(path).into_owned();
        let meta = match container::from_cgroup_path(&path) {
            Some(c) => self.catalog.lookup(&c).await,
            None => None,
        };
        let decision =
            registry::current(&self.registry).cgroup_agent(path.as_bytes(), meta.as_deref());
        self.index.write().expect("no poisoned lock").insert(
            id,
            CgroupInfo {
                path: Arc::from(path.as_str()),
                container: meta,
            },
        );
        if let Some(agent) = decision {
            if let Some(Err(e)) = self.maps.as_mut().map(|m| m.cgroups.insert(id, agent, 0)) {
                tracing::warn!(cgroup = path, "cannot enter a cgroup selector: {e}");
            }
            self.current.cgroups.insert(id, agent);
            // Before the release and after it: a process forked in between by a parent not
            // yet attributed is in the second reading.
            self.attribute_members(&path, agent);
            self.release(id);
            self.attribute_members(&path, agent);
        } else {
            self.release(id);
        }
        self.stop_holding_if_idle();
        decision
    }

    /// Lets the kernel report the cgroup's processes as it does any others'.
    fn release(&mut self, id: u64) {
        if let Some(maps) = self.maps.as_mut() {
            let _ = maps.held.remove(&id);
        }
    }

    /// Attributes the processes in a cgroup to its agent (unless more strongly attributed).
    fn attribute_members(&self, path: &str, agent: CgroupAgent) {
        let Some(root) = &self.cgroup_root else {
            return;
        };
        let procs = root.join(path.trim_start_matches('/')).join("cgroup.procs");
        let Ok(text) = std::fs::read_to_string(&procs) else {
            return;
        };
        let mut map = self.tracked.lock().expect("no poisoned lock");
        for tgid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            attribute(&mut map, tgid, own(agent.agent, agent.method));
        }
    }

    /// Attributes running processes by their own selectors (the kernel only decides at exec),
    /// unless the kernel already holds an equal or stronger attribution for them.
    pub fn attribute_running<'a>(&self, procs: impl Iterator<Item = &'a mut ProcSnapshot>) {
        let registry = registry::current(&self.registry);
        let mut map = self.tracked.lock().expect("no poisoned lock");
        for p in procs {
            let Some((agent, m)) =
                registry.match_process(&self.current, p.cgroup_id, p.exe_key, p.euid)
            else {
                continue;
            };
            p.agent = attribute(&mut map, p.tgid, own(agent, m));
        }
    }

    /// Where the cgroup2 hierarchy is mounted, once found (cgroup selectors are relative to it).
    pub fn cgroup_root(&self) -> Option<&Path> {
        self.cgroup_root.as_deref()
    }
}

/// Most descendants looked up for one process (a fork bomb cannot keep the daemon busy).
const CHILDREN_LIMIT: usize = 4096;

/// Enters the live descendants of `tgid` (from `/proc/PID/task/TID/children`) as inheriting
/// `value`, unless more strongly attributed: those forked before their parent was attributed
/// in userspace would otherwise escape it.
pub fn attribute_children(
    map: &mut impl DerefMut<Target = dyn TrackedMap>,
    tgid: u32,
    value: TrackedProcess,
) {
    let inherited = TrackedProcess {
        flags: value.flags | sensor_common::tracked_flags::INHERITED,
        ..value
    };
    for child in live_descendants(tgid) {
        attribute(map, child, inherited);
    }
}

/// Removes `tgid` and its live descendants from the kernel map where they are still pending
/// (an unmatched exec turned out to be nobody's).
pub fn release_pending(map: &mut impl DerefMut<Target = dyn TrackedMap>, tgid: u32) {
    for p in std::iter::once(tgid).chain(live_descendants(tgid)) {
        if map.get(&p, 0).is_ok_and(|t| t.is_pending()) {
            let _ = map.remove(&p);
        }
    }
}

/// The live descendants of `tgid`, from `/proc/PID/task/TID/children` (bounded).
fn live_descendants(tgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut parent = Some(tgid);
    while let Some(p) = parent {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                    out.extend(
                        text.split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
        if out.len() >= CHILDREN_LIMIT {
            out.truncate(CHILDREN_LIMIT);
            break;
        }
        parent = out.get(i).copied();
        i += 1;
    }
    out
}

/// Enters `tgid` as `value`, unless the kernel already holds an equal or stronger
/// attribution for it; returns the attribution in force.
fn attribute(
    map: &mut impl DerefMut<Target = dyn TrackedMap>,
    tgid: u32,
    value: TrackedProcess,
) -> Option<TrackedProcess> {
    let existing = map.get(&tgid, 0).ok();
    if existing
        .is_some_and(|e| e.agent != 0 && method::trust(e.method) >= method::trust(value.method))
    {
        return existing;
    }
    map.insert(tgid, value, 0).is_ok().then_some(value)
}

/// A process's own attribution by `agent` and `m`.
fn own(agent: u32, m: u8) -> TrackedProcess {
    TrackedProcess {
        agent,
        method: m,
        ..Default::default()
    }
}
