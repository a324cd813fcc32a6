//! The identity side of records: which agent a process is (from the kernel's attribution,
//! the registry, argv selectors and the environment marker), its delegation chain, and its
//! container.
use super::*;

impl Pipeline {
    /// Decides what only userspace can about an exec the kernel left open (unmatched, or
    /// pending): an argv selector (medium), else for an unmatched exec the environment marker
    /// (weak), else what the nearest decided ancestor is, else the kernel's tentative
    /// attribution. A match replaces the kernel's attribution by the kernel's own rule at exec
    /// (never a stronger one). The decision is entered in the kernel map for the process and
    /// the children it already has, and remembered for its pending descendants' records.
    /// Returns whether the exec is reported.
    pub(super) fn decide_exec(&mut self, e: &mut ExecEvent) -> bool {
        let env = e.env.take();
        let current = e.attribution;
        if !e.unmatched && !current.is_pending() {
            return true;
        }
        let Some(tracked) = self.ctx.tracked.clone() else {
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
                self.decided_ancestor(e.ppid).or(kernel)
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
            let start = self.ctx.entity_ids.ticks(e.start_boottime);
            self.pending
                .insert(e.tgid, (decided, Instant::now(), start));
        }
        match decided {
            Some(a) => {
                let _ = map.insert(e.tgid, a, 0);
                if own.is_some() || pending {
                    crate::identity::selectors::attribute_children(&mut map, e.tgid, a);
                }
                e.attribution = a;
                true
            }
            None => {
                if pending {
                    crate::identity::selectors::release_pending(&mut map, e.tgid);
                }
                e.attribution = TrackedProcess::default();
                self.ctx.all_processes
            }
        }
    }

    /// The decision on the nearest ancestor (from `tgid` up) that exec'd pending, as its
    /// descendants inherit it.
    fn decided_ancestor(&self, tgid: u32) -> Option<TrackedProcess> {
        let mut t = tgid;
        for _ in 0..64 {
            let known = self.table.get(t);
            if let Some((decided, _, start)) = self.pending.get(&t) {
                // Only the process that was decided: pid_max can be as low as 32768, and a pid
                // comes back well within the time a decision is kept. A process the table
                // holds with another start time took the pid over; it is not a descendant.
                if known.is_none_or(|k| k.start_ticks == *start) {
                    return decided.map(|a| TrackedProcess {
                        flags: a.flags | tracked_flags::INHERITED,
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
    pub(super) fn resolve_pending(&mut self, event: &mut KernelEvent) -> bool {
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
            .decided_ancestor(from)
            .or((tentative.agent != 0).then_some(tentative));
        if let Some(tracked) = &self.ctx.tracked {
            let mut map = tracked.lock().expect("no poisoned lock");
            if map.get(&tgid, 0).is_ok_and(|t| t.is_pending()) {
                let _ = match decided {
                    Some(a) => map.insert(tgid, a, 0),
                    None => map.remove(&tgid),
                };
            }
        }
        match decided {
            Some(a) => {
                event.set_attribution(a);
                true
            }
            None => {
                event.set_attribution(TrackedProcess::default());
                self.ctx.all_processes
            }
        }
    }

    /// The agent an argv selector names for this exec.
    fn argv_agent(&self, e: &ExecEvent) -> Option<u32> {
        let registry = registry::current(&self.ctx.registry);
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
        let prefix = self.ctx.marker.as_ref()?;
        let value = env
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_slice()))?;
        let number = self
            .ctx
            .agents
            .iter()
            .position(|a| a.id.as_bytes() == value)
            .map(|i| i as u32 + 1);
        if number.is_none() {
            tracing::debug!(
                pid = tgid,
                "environment marker names no declared agent; ignored"
            );
        }
        number
    }

    /// The identity block of a process the kernel attributed to an agent.
    pub(super) fn identity(&self, a: TrackedProcess, tgid: u32) -> Option<Identity> {
        let agent = self
            .ctx
            .agents
            .get((a.agent as usize).checked_sub(1)?)?
            .clone();
        let chain = self
            .table
            .get(tgid)
            .filter(|k| k.agent == a.agent)
            .map_or_else(|| Arc::from([]), |k| k.chain.clone());
        Some(Identity {
            agent,
            task: self
                .ctx
                .tasks
                .get(a.task)
                .map(|(id, session)| TaskInfo { id, session }),
            attribution: AttributionInfo {
                method: method_name(a.method),
                trust: trust_name(a.method),
                inherited: a.flags & tracked_flags::INHERITED != 0,
            },
            delegation: chain,
        })
    }

    /// The delegation chain of a process that just exec'd as agent `agent`: its chain before,
    /// plus a hop when the agent changed.
    pub(super) fn chain_after_exec(
        &self,
        tgid: u32,
        entity_id: &str,
        a: TrackedProcess,
    ) -> (u32, Arc<[Hop]>) {
        let before = self.table.get(tgid);
        let (prev_agent, prev_chain) = match before {
            Some(k) => (k.agent, k.chain.clone()),
            None => (a.delegated_from, Arc::from([])),
        };
        if a.agent == 0 || a.agent == prev_agent || prev_agent == 0 {
            let chain = if a.agent == prev_agent {
                prev_chain
            } else {
                Arc::from([])
            };
            return (a.agent, chain);
        }
        let name = |n: u32| {
            self.ctx
                .agents
                .get((n as usize).wrapping_sub(1))
                .map_or_else(|| n.to_string(), |i| i.id.clone())
        };
        let mut hops: Vec<Hop> = prev_chain
            .iter()
            .map(|h| Hop {
                from: h.from.clone(),
                to: h.to.clone(),
                process: HopProcess {
                    pid: h.process.pid,
                    entity_id: h.process.entity_id.clone(),
                },
            })
            .collect();
        hops.push(Hop {
            from: name(prev_agent),
            to: name(a.agent),
            process: HopProcess {
                pid: tgid,
                entity_id: entity_id.to_owned(),
            },
        });
        (a.agent, hops.into())
    }

    /// The container whose cgroup this is, if the cgroup is a container's: what its runtime
    /// records, or what its cgroup path says when the runtime could not be asked.
    pub(super) fn container_of(&self, cgroup_id: u64) -> Option<Arc<ContainerBlocks>> {
        let index = self.ctx.cgroups.read().expect("no poisoned lock");
        let info = index.get(&cgroup_id)?;
        let meta = match &info.container {
            Some(meta) => meta.clone(),
            None => {
                let c = container::from_cgroup_path(&info.path)?;
                Arc::new(ContainerMeta {
                    id: c.id,
                    runtime: c.runtime,
                    pod: c.pod_uid.map(|uid| PodMeta {
                        uid: Some(uid),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }
        };
        Some(Arc::new(ContainerBlocks::of(&meta)))
    }
}

impl ContainerBlocks {
    pub(super) fn of(m: &ContainerMeta) -> Self {
        Self {
            container: Arc::new(ContainerInfo {
                id: m.id.clone(),
                runtime: m.runtime,
                name: m.name.clone(),
                image: m.image.clone().map(|name| ContainerImage { name }),
                labels: m.labels.clone(),
            }),
            orchestrator: m.pod.as_ref().map(|p| {
                Arc::new(Orchestrator {
                    r#type: "kubernetes",
                    namespace: p.namespace.clone(),
                    resource: OrchestratorResource {
                        r#type: "pod",
                        name: p.name.clone(),
                        id: p.uid.clone(),
                        labels: p.labels.clone(),
                        annotations: p.annotations.clone(),
                    },
                    service_account: p.service_account.clone(),
                })
            }),
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

/// The `identity.agent` block of each declared agent.
pub fn agent_infos(registry: &Registry) -> Vec<Arc<Rendered<AgentInfo>>> {
    (1..=registry.len() as u32)
        .filter_map(|n| registry.get(n))
        .map(|d| {
            Arc::new(Rendered::new(AgentInfo {
                id: d.id.clone(),
                spiffe_id: d.spiffe_id.clone(),
                name: d.name.clone(),
                purpose: d.purpose.clone(),
                team: d.team.clone(),
                data_sensitivity: d.data_sensitivity.clone(),
                owners: Owners {
                    business: d.business_owner.clone(),
                    technical: d.technical_owner.clone(),
                },
                allowed_tasks: d.allowed_tasks.clone(),
            }))
        })
        .collect()
}

fn method_name(m: u8) -> &'static str {
    match m {
        method::REGISTRATION => "registration",
        method::CGROUP => "cgroup",
        method::EXECUTABLE => "executable",
        method::UID => "uid",
        method::ENVIRONMENT => "environment",
        method::CONTAINER => "container",
        method::ARGV => "argv",
        _ => "none",
    }
}

fn trust_name(m: u8) -> &'static str {
    match method::trust(m) {
        3 => "strong",
        2 => "medium",
        _ => "weak",
    }
}
