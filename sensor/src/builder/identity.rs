//! The identity side of records, once the resolver has said which agent a process is: the
//! `identity` block (agent, task, how it was attributed and how far to trust that), the
//! delegation chain, and the `container` and `orchestrator` blocks.
use std::sync::Arc;

use sensor_common::{TrackedProcess, method, tracked_flags};

use super::Builder;
use crate::{
    enrich::container::{self, ContainerMeta, PodMeta},
    identity::registry::Registry,
    record::{
        AgentInfo, AttributionInfo, ContainerBlocks, ContainerImage, ContainerInfo, Hop,
        HopProcess, Identity, Orchestrator, OrchestratorResource, Owners, TaskInfo,
        rendered::Rendered,
    },
    stage::Agents,
};

impl Builder {
    /// The identity block of a process the kernel attributed to an agent.
    pub(super) fn identity(&self, a: TrackedProcess, tgid: u32) -> Option<Identity> {
        let agent = self.agents.get((a.agent as usize).checked_sub(1)?)?.clone();
        let chain = self
            .table
            .get(tgid)
            .filter(|k| k.agent == a.agent)
            .map_or_else(|| Arc::from([]), |k| k.chain.clone());
        Some(Identity {
            agent,
            task: self
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
            self.agents
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
        let index = self.cgroups.read().expect("no poisoned lock");
        let info = index.get(&cgroup_id)?;
        let meta = if let Some(meta) = &info.container {
            meta.clone()
        } else {
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

/// The `identity.agent` block of each declared agent.
pub fn agent_infos(registry: &Registry) -> Agents {
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
    method::name(m)
}

fn trust_name(m: u8) -> &'static str {
    match method::trust(m) {
        3 => "strong",
        2 => "medium",
        _ => "weak",
    }
}
