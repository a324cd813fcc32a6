//! The identity registry: declared agents by number (the kernel carries numbers, 1-based), the
//! tasks orchestrators registered, and the kernel map entries the selectors compile to (cgroup
//! ids from a scan of the cgroup tree, executables by inode and device, uids), kept in step as
//! cgroups and files come and go.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::Path,
    sync::{Arc, RwLock},
};

use sensor_common::{CgroupAgent, ExeKey, method};

use crate::{
    enrich::container::ContainerMeta,
    enrich::snapshot::exe_key,
    glob::PathGlob,
    identity::manifest::{AgentDecl, ContainerSelector, KubernetesSelector, SelectorDecl},
    identity::pattern::Pattern,
};

/// Most directories a cgroup scan or an executable glob expansion visits.
const SCAN_LIMIT: usize = 100_000;

#[derive(Default)]
struct Compiled {
    cgroups: Vec<PathGlob>,
    executables: Vec<PathGlob>,
    uids: Vec<u32>,
    containers: Vec<ContainerSelector>,
    pods: Vec<KubernetesSelector>,
    argv: Vec<(Option<PathGlob>, Pattern)>,
}

/// The declared agents, numbered as the kernel knows them, with their selectors compiled: what
/// attribution, registration and the selector maps ask about agents.
pub struct Registry {
    /// Index = agent number - 1. Numbers stay with their agent across reloads: the kernel map
    /// holds them for running processes.
    agents: Vec<(AgentDecl, Compiled)>,
    /// Agents no longer declared (kept for their running processes' records).
    removed: Vec<bool>,
}

/// The registry in force, replaced whole on reload; readers take the `Arc` they need.
pub type SharedRegistry = Arc<RwLock<Arc<Registry>>>;

/// The registry in force now (a reload after this does not change what it returns).
pub fn current(shared: &SharedRegistry) -> Arc<Registry> {
    shared.read().expect("no poisoned lock").clone()
}

/// What the selectors compile to now: kernel map contents.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MapEntries {
    /// Cgroups (by id) whose processes are an agent's.
    pub cgroups: HashMap<u64, CgroupAgent>,
    /// Executables (by device and inode) whose exec makes a process an agent, by agent number.
    pub executables: HashMap<ExeKey, u32>,
    /// Uids whose execs are an agent's, by agent number.
    pub uids: HashMap<u32, u32>,
}

impl Registry {
    /// The registry after a reload: agents already known keep their numbers (with their new
    /// declaration); agents no longer declared keep theirs too, without selectors, so running
    /// processes stay attributed; new agents get new numbers.
    #[must_use]
    pub fn reloaded(&self, decls: Vec<AgentDecl>) -> Self {
        let mut decls: Vec<Option<AgentDecl>> = decls.into_iter().map(Some).collect();
        let mut removed = Vec::new();
        let mut next: Vec<AgentDecl> = self
            .agents
            .iter()
            .map(|(old, _)| {
                let found = decls
                    .iter_mut()
                    .find(|d| d.as_ref().is_some_and(|d| d.id == old.id))
                    .and_then(Option::take);
                removed.push(found.is_none());
                found.unwrap_or_else(|| AgentDecl {
                    selectors: Vec::new(),
                    ..old.clone()
                })
            })
            .collect();
        next.extend(decls.into_iter().flatten());
        let mut registry = Self::new(next);
        registry.removed[..removed.len()].copy_from_slice(&removed);
        registry
    }

    /// Whether agent `number` is declared now (registration refuses removed agents).
    pub fn is_declared(&self, number: u32) -> bool {
        self.get(number).is_some()
            && !self
                .removed
                .get(number as usize - 1)
                .copied()
                .unwrap_or(true)
    }

    /// The registry of a first load: agent numbers 1, 2, ... in declaration order.
    pub fn new(decls: Vec<AgentDecl>) -> Self {
        let agents = decls
            .into_iter()
            .map(|d| {
                let mut c = Compiled::default();
                for s in &d.selectors {
                    match s {
                        // Validated when the manifest was read.
                        SelectorDecl::Cgroup(g) => c.cgroups.extend(PathGlob::new(g).ok()),
                        SelectorDecl::Executable(g) => c.executables.extend(PathGlob::new(g).ok()),
                        SelectorDecl::Uid(u) => c.uids.push(*u),
                        SelectorDecl::Container(x) => c.containers.push(x.clone()),
                        SelectorDecl::Kubernetes(x) => c.pods.push(x.clone()),
                        SelectorDecl::Argv { executable, argv } => c.argv.push((
                            executable.as_deref().and_then(|x| PathGlob::new(x).ok()),
                            argv.clone(),
                        )),
                    }
                }
                (d, c)
            })
            .collect::<Vec<_>>();
        let removed = vec![false; agents.len()];
        Self { agents, removed }
    }

    /// Whether no agent was ever declared (then only `--pid` or `--all-processes` observe anything).
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// How many agents have a number, including those a reload removed.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// The agent the kernel calls `number`.
    pub fn get(&self, number: u32) -> Option<&AgentDecl> {
        self.agents
            .get((number as usize).checked_sub(1)?)
            .map(|(d, _)| d)
    }

    /// The number the kernel calls agent `id` by, also after a reload removed it.
    pub fn number_of(&self, id: &str) -> Option<u32> {
        self.agents
            .iter()
            .position(|(d, _)| d.id == id)
            .map(|i| i as u32 + 1)
    }

    /// The first agent whose argv selector matches an exec (its executable's absolute path,
    /// and its argv joined by single spaces).
    pub fn match_argv(&self, executable: &[u8], command_line: &[u8]) -> Option<u32> {
        self.first(|c| {
            c.argv.iter().any(|(exe, argv)| {
                exe.as_ref().is_none_or(|g| g.matches(executable)) && argv.matches(command_line)
            })
        })
    }

    /// Whether any agent turns TLS capture on (`capture: {tls: true}`).
    pub fn captures_tls(&self) -> bool {
        self.agents
            .iter()
            .any(|(d, _)| d.capture.is_some_and(|c| c.tls))
    }

    /// The agents that turn TLS capture on, by number, with their settings for the kernel.
    pub fn tls_captures(&self) -> Vec<(u32, sensor_common::TlsCapture)> {
        (1..=self.len() as u32)
            .filter_map(|n| {
                let c = self.get(n)?.capture.filter(|c| c.tls)?;
                Some((
                    n,
                    sensor_common::TlsCapture {
                        max_bytes: c.max_bytes.min(sensor_common::TLS_DATA_CAP),
                        content: c.content.to_kernel(),
                    },
                ))
            })
            .collect()
    }

    /// Whether any agent turns stdio capture on (`capture: {stdio: true}`).
    pub fn captures_stdio(&self) -> bool {
        self.agents
            .iter()
            .any(|(d, _)| d.capture.is_some_and(|c| c.stdio))
    }

    /// The agents that turn stdio capture on, by number, with their settings for the kernel.
    pub fn stdio_captures(&self) -> Vec<(u32, sensor_common::TlsCapture)> {
        (1..=self.len() as u32)
            .filter_map(|n| {
                let c = self.get(n)?.capture.filter(|c| c.stdio)?;
                Some((
                    n,
                    sensor_common::TlsCapture {
                        max_bytes: c.max_bytes.min(sensor_common::TLS_DATA_CAP),
                        content: c.content.to_kernel(),
                    },
                ))
            })
            .collect()
    }

    /// Whether any agent has argv selectors.
    pub fn has_argv_selectors(&self) -> bool {
        self.agents.iter().any(|(_, c)| !c.argv.is_empty())
    }

    /// Whether any agent is chosen by what a container's runtime records (so cgroups that are
    /// containers need their metadata looked up).
    pub fn has_container_selectors(&self) -> bool {
        self.agents
            .iter()
            .any(|(_, c)| !c.containers.is_empty() || !c.pods.is_empty())
    }

    /// The agent a cgroup's processes are: by its path (a cgroup selector) or else by its
    /// container's metadata. Within each, the first declared agent wins.
    pub fn cgroup_agent(
        &self,
        path: &[u8],
        container: Option<&ContainerMeta>,
    ) -> Option<CgroupAgent> {
        let by = |agent: u32, method: u8| CgroupAgent {
            agent,
            method,
            _pad: [0; 3],
        };
        if let Some(n) = self.first(|c| c.cgroups.iter().any(|g| g.matches(path))) {
            return Some(by(n, method::CGROUP));
        }
        let meta = container?;
        self.first(|c| {
            c.containers.iter().any(|s| container_matches(s, meta))
                || c.pods.iter().any(|s| pod_matches(s, meta))
        })
        .map(|n| by(n, method::CONTAINER))
    }

    /// Compiles every selector against the system as it is now: the cgroup tree (with the
    /// metadata of the containers in it) and the file system.
    pub fn map_entries(
        &self,
        cgroup_dirs: &[(String, u64)],
        containers: &HashMap<u64, Arc<ContainerMeta>>,
    ) -> MapEntries {
        let mut out = MapEntries::default();
        for (rel, ino) in cgroup_dirs {
            if let Some(a) = self.cgroup_agent(rel.as_bytes(), containers.get(ino).map(|m| &**m)) {
                out.cgroups.entry(*ino).or_insert(a);
            }
        }
        for (i, (_, c)) in self.agents.iter().enumerate() {
            let number = i as u32 + 1;
            for glob in &c.executables {
                for key in executables(glob) {
                    out.executables.entry(key).or_insert(number);
                }
            }
            for uid in &c.uids {
                out.uids.entry(*uid).or_insert(number);
            }
        }
        out
    }

    fn first(&self, pred: impl Fn(&Compiled) -> bool) -> Option<u32> {
        self.agents
            .iter()
            .position(|(_, c)| pred(c))
            .map(|i| i as u32 + 1)
    }

    /// The agent a running process would be attributed to by its own selectors (for processes
    /// that started before the sensor or before their cgroup was known), strongest first.
    pub fn match_process(
        &self,
        entries: &MapEntries,
        cgroup_id: Option<u64>,
        exe: Option<ExeKey>,
        euid: u32,
    ) -> Option<(u32, u8)> {
        if let Some(c) = cgroup_id.and_then(|c| entries.cgroups.get(&c)) {
            return Some((c.agent, c.method));
        }
        if let Some(n) = exe.and_then(|k| entries.executables.get(&k)) {
            return Some((*n, method::EXECUTABLE));
        }
        entries.uids.get(&euid).map(|n| (*n, method::UID))
    }
}

fn matches_opt(p: Option<&Pattern>, value: Option<&str>) -> bool {
    p.is_none_or(|p| value.is_some_and(|v| p.matches(v.as_bytes())))
}

fn labels_match(
    want: &[(String, Pattern)],
    have: &std::collections::BTreeMap<String, String>,
) -> bool {
    want.iter()
        .all(|(k, p)| have.get(k).is_some_and(|v| p.matches(v.as_bytes())))
}

fn container_matches(s: &ContainerSelector, m: &ContainerMeta) -> bool {
    matches_opt(s.id.as_ref(), Some(&m.id))
        && matches_opt(s.image.as_ref(), m.image.as_deref())
        && matches_opt(s.name.as_ref(), m.name.as_deref())
        && s.runtime.as_deref().is_none_or(|r| r == m.runtime)
        && labels_match(&s.labels, &m.labels)
}

fn pod_matches(s: &KubernetesSelector, m: &ContainerMeta) -> bool {
    let Some(pod) = &m.pod else { return false };
    matches_opt(s.namespace.as_ref(), pod.namespace.as_deref())
        && matches_opt(s.pod.as_ref(), pod.name.as_deref())
        && matches_opt(s.container.as_ref(), m.name.as_deref())
        && matches_opt(s.service_account.as_ref(), pod.service_account.as_deref())
        && labels_match(&s.labels, &pod.labels)
}

/// Files a glob names now.
fn executables(glob: &PathGlob) -> Vec<ExeKey> {
    use std::os::unix::ffi::OsStrExt as _;
    let prefix_bytes = glob.literal_prefix();
    let prefix = Path::new(std::ffi::OsStr::from_bytes(&prefix_bytes));
    if glob.is_literal() {
        return std::fs::metadata(prefix)
            .map(|m| vec![exe_key(&m)])
            .unwrap_or_default();
    }
    let mut out = Vec::new();
    let mut stack = vec![prefix.to_path_buf()];
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > SCAN_LIMIT {
            tracing::warn!(glob = ?prefix, "executable selector matches too much; expansion cut");
            break;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if glob.matches(path.as_os_str().as_bytes()) {
                // Follow a symlink to the file it names: that is what exec runs.
                if let Ok(meta) = std::fs::metadata(&path) {
                    out.push(exe_key(&meta));
                }
            }
        }
    }
    out
}

/// Every cgroup directory below the cgroup2 `root`, as its path relative to the root and its
/// inode (the cgroup id).
pub fn cgroup_dirs(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    walk_dirs(root, root, &mut out);
    out
}

fn walk_dirs(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    if out.len() > SCAN_LIMIT {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            if let (Ok(meta), Ok(rel)) = (entry.metadata(), path.strip_prefix(root)) {
                out.push((format!("/{}", rel.display()), meta.ino()));
            }
            walk_dirs(root, &path, out);
        }
    }
}

/// A registered task and the session it belongs to.
pub type TaskName = (String, Option<String>);

/// Task and session names the orchestrator registered, by the number the kernel carries.
#[derive(Clone, Default)]
pub struct Tasks {
    names: Arc<RwLock<Vec<TaskName>>>,
}

impl Tasks {
    /// The number for a (task, session), made on first use.
    pub fn intern(&self, task: &str, session: Option<&str>) -> u32 {
        let mut names = self.names.write().expect("no poisoned lock");
        if let Some(i) = names
            .iter()
            .position(|(t, s)| t == task && s.as_deref() == session)
        {
            return i as u32 + 1;
        }
        names.push((task.to_owned(), session.map(str::to_owned)));
        names.len() as u32
    }

    /// The task and session the kernel calls `number` (0: no task).
    pub fn get(&self, number: u32) -> Option<TaskName> {
        let names = self.names.read().expect("no poisoned lock");
        names.get((number as usize).checked_sub(1)?).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, selectors: Vec<SelectorDecl>) -> AgentDecl {
        AgentDecl {
            policy: std::sync::Arc::default(),
            id: id.into(),
            spiffe_id: None,
            name: None,
            purpose: None,
            business_owner: None,
            technical_owner: None,
            team: None,
            data_sensitivity: None,
            allowed_tasks: vec![],
            selectors,
            capture: None,
            origin: "test".into(),
        }
    }

    #[test]
    fn compiles_selectors_against_the_system() {
        let dir = std::env::temp_dir().join(format!("registry-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin/sub")).unwrap();
        std::fs::write(dir.join("bin/agent"), "x").unwrap();
        std::fs::write(dir.join("bin/sub/tool"), "x").unwrap();
        let registry = Registry::new(vec![
            agent(
                "a",
                vec![
                    SelectorDecl::Executable(format!("{}/bin/agent", dir.display())),
                    SelectorDecl::Uid(4242),
                ],
            ),
            agent(
                "b",
                vec![SelectorDecl::Executable(format!(
                    "{}/**/tool",
                    dir.display()
                ))],
            ),
            agent("c", vec![SelectorDecl::Cgroup("/".into())]),
        ]);
        let cg = dir.join("cgroups");
        std::fs::create_dir_all(cg.join("agents/x")).unwrap();
        let dirs = cgroup_dirs(&cg);
        assert!(dirs.iter().any(|(p, _)| p == "/agents/x"), "{dirs:?}");
        let entries = registry.map_entries(&dirs, &HashMap::new());
        let key = |p: &str| exe_key(&std::fs::metadata(dir.join(p)).unwrap());
        assert_eq!(entries.executables.get(&key("bin/agent")), Some(&1));
        assert_eq!(entries.executables.get(&key("bin/sub/tool")), Some(&2));
        assert_eq!(entries.uids.get(&4242), Some(&1));
        assert_eq!(registry.number_of("b"), Some(2));
        assert_eq!(registry.get(3).map(|a| a.id.as_str()), Some("c"));
        assert_eq!(registry.get(0), None);
        assert_eq!(
            registry.match_process(&entries, None, Some(key("bin/agent")), 0),
            Some((1, method::EXECUTABLE))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn container_and_pod_selectors_decide_cgroups() {
        use crate::{
            enrich::container::PodMeta,
            identity::manifest::{ContainerSelector, KubernetesSelector},
        };
        let p = |s: &str| Some(Pattern::new(s).unwrap());
        let registry = Registry::new(vec![
            agent("by-path", vec![SelectorDecl::Cgroup("/agents/**".into())]),
            agent(
                "by-image",
                vec![SelectorDecl::Container(ContainerSelector {
                    image: p("docker.io/library/busybox:*"),
                    labels: vec![("role".into(), Pattern::new("review*").unwrap())],
                    ..Default::default()
                })],
            ),
            agent(
                "by-pod",
                vec![SelectorDecl::Kubernetes(KubernetesSelector {
                    namespace: p("agents"),
                    service_account: p("planner"),
                    labels: vec![("app".into(), Pattern::new("planner").unwrap())],
                    ..Default::default()
                })],
            ),
        ]);
        assert!(registry.has_container_selectors());
        let mut meta = ContainerMeta {
            id: "c1".into(),
            runtime: "containerd",
            image: Some("docker.io/library/busybox:1.36".into()),
            labels: [("role".to_owned(), "reviewer".to_owned())].into(),
            ..Default::default()
        };
        let agent_of = |path: &str, m: Option<&ContainerMeta>| {
            registry
                .cgroup_agent(path.as_bytes(), m)
                .map(|a| (a.agent, a.method))
        };
        assert_eq!(
            agent_of("/agents/x", Some(&meta)),
            Some((1, method::CGROUP))
        );
        assert_eq!(
            agent_of("/k8s.io/c1", Some(&meta)),
            Some((2, method::CONTAINER))
        );
        assert_eq!(agent_of("/k8s.io/c1", None), None);
        meta.labels.clear();
        assert_eq!(agent_of("/k8s.io/c1", Some(&meta)), None);
        meta.pod = Some(PodMeta {
            namespace: Some("agents".into()),
            service_account: Some("planner".into()),
            labels: [("app".to_owned(), "planner".to_owned())].into(),
            ..Default::default()
        });
        assert_eq!(
            agent_of("/k8s.io/c1", Some(&meta)),
            Some((3, method::CONTAINER))
        );
        meta.pod.as_mut().unwrap().service_account = Some("intruder".into());
        assert_eq!(agent_of("/k8s.io/c1", Some(&meta)), None);
    }

    #[test]
    fn argv_selectors_match_the_command_line() {
        let registry = Registry::new(vec![
            agent(
                "py",
                vec![SelectorDecl::Argv {
                    executable: Some("/usr/bin/python3*".into()),
                    argv: Pattern::new("* /opt/reviewer/main.py*").unwrap(),
                }],
            ),
            agent(
                "any",
                vec![SelectorDecl::Argv {
                    executable: None,
                    argv: Pattern::new("planner --serve").unwrap(),
                }],
            ),
        ]);
        let m = |exe: &str, cmd: &str| registry.match_argv(exe.as_bytes(), cmd.as_bytes());
        assert_eq!(
            m("/usr/bin/python3.11", "python3 /opt/reviewer/main.py -v"),
            Some(1)
        );
        assert_eq!(m("/usr/bin/perl", "python3 /opt/reviewer/main.py -v"), None);
        assert_eq!(m("/opt/planner", "planner --serve"), Some(2));
        assert_eq!(m("/opt/planner", "planner --serve --x"), None);
    }

    #[test]
    fn numbers_survive_reloads() {
        let first = Registry::new(vec![
            agent("a", vec![SelectorDecl::Uid(1)]),
            agent("b", vec![SelectorDecl::Uid(2)]),
        ]);
        let second = first.reloaded(vec![
            agent("c", vec![SelectorDecl::Uid(3)]),
            agent("b", vec![SelectorDecl::Uid(20)]),
        ]);
        assert_eq!(
            second.number_of("a"),
            Some(1),
            "a removed agent keeps its number"
        );
        assert!(
            second.get(1).unwrap().selectors.is_empty(),
            "but matches nothing new"
        );
        assert!(!second.is_declared(1) && second.is_declared(2) && second.is_declared(3));
        assert_eq!(second.number_of("b"), Some(2));
        assert_eq!(
            second.get(2).unwrap().selectors,
            vec![SelectorDecl::Uid(20)]
        );
        assert_eq!(second.number_of("c"), Some(3));
        assert_eq!(second.map_entries(&[], &HashMap::new()).uids.get(&1), None);
    }

    #[test]
    fn interns_tasks() {
        let tasks = Tasks::default();
        let a = tasks.intern("review-42", Some("s1"));
        assert_eq!(tasks.intern("review-42", Some("s1")), a);
        assert_ne!(tasks.intern("review-42", None), a);
        assert_eq!(tasks.get(a), Some(("review-42".into(), Some("s1".into()))));
        assert_eq!(tasks.get(99), None);
    }
}
