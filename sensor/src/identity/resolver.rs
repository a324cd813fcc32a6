//! The resolver stage: which agent each kernel event belongs to, settling what the kernel left
//! to userspace. The kernel attributes most events itself (by registration, cgroup, container,
//! executable, uid); it holds the records of a cgroup made since start until the selectors
//! decide it, and marks an exec pending when only userspace can decide it (argv selectors, the
//! environment marker). The trust rules (which source may replace which) are `method::trust`
//! in `sensor-common`, shared with the kernel, and `replaces` here.
use std::{collections::HashMap, time::Instant};

use sensor_common::{CgroupAgent, TrackedProcess, method, tracked_flags};

use crate::{
    decode::{CgroupEvent, ExecEvent, KernelEvent},
    enrich::{entity::EntityIds, process_table::ProcessTable},
    identity::{
        registry::{self, SharedRegistry},
        selectors::{self, SharedSelectors, Tracked},
    },
    stage::{Agents, Resolve},
};

/// How long a decision is kept for the records the kernel may still report under it: longer
/// than the kernel holds a new cgroup (`HOLD_WINDOW_NS` in `cgroup.rs`).
const HELD_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// What the resolver is given to start with.
pub struct ResolverParts {
    /// Names the same process the same way the builder does (for a decision's start time).
    pub entity_ids: EntityIds,
    /// Decides the cgroups made while running; none without a kernel (a replay).
    pub selectors: Option<SharedSelectors>,
    /// Every process is observed, agent or not.
    pub all_processes: bool,
    /// The environment marker (`NAME=`).
    pub marker: Option<Vec<u8>>,
    /// The declared agents (for argv selectors).
    pub registry: SharedRegistry,
    /// The kernel map processes attributed in userspace are entered in; none without a kernel.
    pub tracked: Option<Tracked>,
}

/// Settles each event's attribution; see the module doc.
pub struct Resolver {
    parts: ResolverParts,
    /// Decisions on the cgroups made since start, for the records the kernel reported while
    /// it held them; kept as long as the kernel may still report held records.
    held: HashMap<u64, (Option<CgroupAgent>, Instant)>,
    /// Decisions on unmatched execs (by tgid, with when they were made and the process's start
    /// time in clock ticks), for the records of their pending descendants.
    pending: HashMap<u32, (Option<TrackedProcess>, Instant, u64)>,
    /// The declared agents' ids, by kernel agent number - 1, as of the last reload the
    /// pipeline took in (for the marker).
    agent_ids: Vec<String>,
}

impl Resolver {
    /// A resolver with no decisions yet; the agents come with [`Resolve::reload`].
    pub fn new(parts: ResolverParts) -> Self {
        Self {
            agent_ids: Vec::new(),
            parts,
            held: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// An event the kernel reported while holding its process's cgroup gets the decision
    /// made since; false when it turned out to be nobody's business.
    fn resolve_held(&self, event: &mut KernelEvent) -> bool {
        if let KernelEvent::Cgroup(c) = event {
            // Reported when decided for an agent (or when everything is).
            return self.parts.all_processes
                || self.held.get(&c.id).is_some_and(|(d, _)| d.is_some());
        }
        let Some(cgroup) = event.attribution().held_cgroup() else {
            return true;
        };
        if let Some(a) = self.held.get(&cgroup).and_then(|(d, _)| *d) {
            event.set_attribution(TrackedProcess {
                agent: a.agent,
                method: a.method,
                ..Default::default()
            });
            true
        } else {
            event.set_attribution(TrackedProcess::default());
            self.parts.all_processes
        }
    }

    /// Decides what only userspace can about an exec the kernel left open (unmatched, or
    /// pending): an argv selector (medium), else for an unmatched exec the environment marker
    /// (weak), else what the nearest decided ancestor is, else the kernel's tentative
    /// attribution. A match replaces the kernel's attribution by the kernel's own rule at exec
    /// (never a stronger one). The decision is entered in the kernel map for the process and
    /// the children it already has, and remembered for its pending descendants' records.
    /// Returns whether the exec is reported.
    fn decide_exec(&mut self, e: &mut ExecEvent, processes: &ProcessTable) -> bool {
        let env = e.env.take();
        let current = e.attribution;
        if !e.unmatched && !current.is_pending() {
            return true;
        }
        let Some(tracked) = self.parts.tracked.clone() else {
            return !e.unmatched;
        };
        let tentative = TrackedProcess {
            flags: current.flags & !tracked_flags::PENDING,
            ..current
        };
        let mut found = self.argv_agent(e).map(|n| (n, method::ARGV));
        if found.is_none() && e.unmatched {
            found = env
                .as_deref()
                .and_then(|env| self.marker_agent(e.tgid, env))
                .map(|n| (n, method::ENVIRONMENT));
        }
        let own = found
            .filter(|&(agent, m)| agent != tentative.agent && replaces(tentative, m))
            .map(|(agent, m)| TrackedProcess {
                agent,
                method: m,
                // A hop when another agent's process became this one.
                delegated_from: tentative.agent,
                ..Default::default()
            });
        // An inherited tentative attribution is the kernel's copy of the parent's at fork,
        // which the parent's own decision may have changed since.
        let kernel = (tentative.agent != 0).then_some(tentative);
        let inherited = tentative.agent == 0 || tentative.flags & tracked_flags::INHERITED != 0;
        let decided = own.or_else(|| {
            if inherited {
                self.decided_ancestor(e.ppid, e.tgid, processes).or(kernel)
            } else {
                kernel
            }
        });
        let mut map = tracked.lock().expect("no poisoned lock");
        // A registration may have come in since: it stays.
        let decided = match map.get(&e.tgid, 0) {
            Ok(now) if !now.is_pending() && now.agent != 0 && now != tentative => Some(now),
            _ => decided,
        };
        // Only a pending exec has kernel entries (its own, its children's) that wait on this.
        let pending = current.is_pending();
        if pending {
            let start = self.parts.entity_ids.ticks(e.start_boottime);
            self.pending
                .insert(e.tgid, (decided, Instant::now(), start));
        }
        if let Some(a) = decided {
            let _ = map.insert(e.tgid, a, 0);
            if own.is_some() || pending {
                selectors::attribute_children(&mut map, e.tgid, a);
            }
            e.attribution = a;
            true
        } else {
            if pending {
                selectors::release_pending(&mut map, e.tgid);
            }
            e.attribution = TrackedProcess::default();
            self.parts.all_processes
        }
    }

    /// The decision on the nearest process from `tgid` up that exec'd pending, as the records
    /// of `subject` carry it: inherited unless it is `subject`'s own decision.
    fn decided_ancestor(
        &self,
        tgid: u32,
        subject: u32,
        processes: &ProcessTable,
    ) -> Option<TrackedProcess> {
        let mut t = tgid;
        for _ in 0..64 {
            let known = processes.get(t);
            if let Some((decided, _, start)) = self.pending.get(&t) {
                // Only the process that was decided: pid_max can be as low as 32768, and a pid
                // comes back well within the time a decision is kept. A process the table
                // holds with another start time took the pid over; it is not a descendant.
                if known.is_none_or(|k| k.start_ticks == *start) {
                    let inherited = if t == subject {
                        0
                    } else {
                        tracked_flags::INHERITED
                    };
                    return decided.map(|a| TrackedProcess {
                        flags: a.flags | inherited,
                        ..a
                    });
                }
            }
            t = known?.ppid;
        }
        None
    }

    /// A non-exec record of a pending process gets its nearest decided ancestor's decision
    /// (healing the kernel entry, which a child forked during the decision still has), else
    /// the kernel's tentative attribution; false: nobody's.
    fn resolve_pending(&self, event: &mut KernelEvent, processes: &ProcessTable) -> bool {
        let current = event.attribution();
        if !current.is_pending() || matches!(event, KernelEvent::Exec(_)) {
            // Not pending, or decided by `decide_exec`.
            return true;
        }
        let (tgid, from) = match &*event {
            KernelEvent::Fork(f) => (f.child_tgid, f.parent_tgid),
            other => {
                let Some(t) = other.tgid() else { return true };
                (t, t)
            }
        };
        let tentative = TrackedProcess {
            flags: current.flags & !tracked_flags::PENDING,
            ..current
        };
        let decided = self
            .decided_ancestor(from, tgid, processes)
            .or((tentative.agent != 0).then_some(tentative));
        if let Some(tracked) = &self.parts.tracked {
            let mut map = tracked.lock().expect("no poisoned lock");
            if map.get(&tgid, 0).is_ok_and(|t| t.is_pending()) {
                let _ = match decided {
                    Some(a) => map.insert(tgid, a, 0),
                    None => map.remove(&tgid),
                };
            }
        }
        if let Some(a) = decided {
            event.set_attribution(a);
            true
        } else {
            event.set_attribution(TrackedProcess::default());
            self.parts.all_processes
        }
    }

    /// The agent an argv selector names for this exec.
    fn argv_agent(&self, e: &ExecEvent) -> Option<u32> {
        let registry = registry::current(&self.parts.registry);
        let exe: &[u8] = if e.exe.is_empty() {
            &e.filename
        } else {
            &e.exe
        };
        let command_line = e.args.join(&b' ');
        registry.match_argv(exe, &command_line)
    }

    /// The agent the environment marker names, if it names a declared one.
    fn marker_agent(&self, tgid: u32, env: &[u8]) -> Option<u32> {
        let prefix = self.parts.marker.as_ref()?;
        let value = env
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_slice()))?;
        let number = self
            .agent_ids
            .iter()
            .position(|id| id.as_bytes() == value)
            .map(|i| i as u32 + 1);
        if number.is_none() {
            tracing::debug!(
                pid = tgid,
                "environment marker names no declared agent; ignored"
            );
        }
        number
    }
}

impl Resolve for Resolver {
    async fn decide_cgroup(&mut self, c: &CgroupEvent) {
        let Some(selectors) = &self.parts.selectors else {
            return;
        };
        let decision = selectors.lock().await.decide(c.id, &c.path).await;
        self.held.insert(c.id, (decision, Instant::now()));
    }

    fn resolve(
        &mut self,
        event: &mut KernelEvent,
        processes: &ProcessTable,
    ) -> Option<TrackedProcess> {
        if !(self.resolve_held(event) && self.resolve_pending(event, processes)) {
            return None;
        }
        match event {
            KernelEvent::Exec(e) => self.decide_exec(e, processes).then_some(e.attribution),
            KernelEvent::Cgroup(c) => Some(self.cgroup_agent(c.id)),
            other => Some(other.attribution()),
        }
    }

    fn reload(&mut self, agents: &Agents) {
        self.agent_ids = agents.iter().map(|a| a.id.clone()).collect();
    }

    fn sweep(&mut self) {
        self.held.retain(|_, (_, at)| at.elapsed() < HELD_FOR);
        self.pending.retain(|_, (_, at, _)| at.elapsed() < HELD_FOR);
    }
}

impl Resolver {
    /// The agent a cgroup made while running was decided for (none: nobody's).
    fn cgroup_agent(&self, id: u64) -> TrackedProcess {
        match self.held.get(&id).and_then(|(d, _)| *d) {
            Some(a) => TrackedProcess {
                agent: a.agent,
                method: a.method,
                ..Default::default()
            },
            None => TrackedProcess::default(),
        }
    }
}

/// Whether a match by `m` replaces `current` at exec (the kernel's rule, `attribute_exec`):
/// registration, cgroup and container attributions of the process itself only by a more
/// trusted source; inherited and image-based ones by any of at least medium trust.
fn replaces(current: TrackedProcess, m: u8) -> bool {
    if current.agent == 0 {
        return true;
    }
    let sticks = current.flags & tracked_flags::INHERITED == 0
        && matches!(
            current.method,
            method::REGISTRATION | method::CGROUP | method::CONTAINER
        );
    if sticks {
        method::trust(m) > method::trust(current.method)
    } else {
        method::trust(m) >= 2
    }
}
