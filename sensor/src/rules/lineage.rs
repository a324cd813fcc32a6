//! What rules know of a record's parent process (Sigma's `ParentImage`, `ParentCommandLine`)
//! and of the process tree it belongs to in its agent (native sequences `by: tree`): learnt
//! from the records themselves (exec and snapshot say what a process runs, fork that a
//! child runs what its parent ran until it execs, exit that it is gone), so the daemon and a
//! replay of recorded events know the same. Bounded: past [`CAPACITY`] processes the oldest
//! entry is forgotten first (its children then match no `Parent*` value).
use std::{collections::VecDeque, sync::Arc};

use foldhash::HashMap;

use crate::rules::fields::Fields;

/// The most processes remembered at once.
pub const CAPACITY: usize = 65_536;

/// What a process runs, as its last exec (or snapshot) said: shared, not copied, by the
/// children it forks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// Its `process.executable`.
    pub executable: Option<Arc<str>>,
    /// Its `process.command_line`.
    pub command_line: Option<Arc<str>>,
    /// The agent it was attributed to (`identity.agent.id`).
    pub agent: Option<Arc<str>>,
    /// The root of its process tree in that agent (see [`Lineage::tree`]).
    pub tree: Option<Arc<str>>,
}

/// Processes by `entity_id`; see the module doc.
#[derive(Debug, Default)]
pub struct Lineage {
    images: HashMap<Arc<str>, Image>,
    /// Entity ids in the order they were first remembered, for forgetting the oldest (the
    /// same allocations as the map's keys).
    order: VecDeque<Arc<str>>,
}

impl Lineage {
    /// Learns from one record.
    pub fn observe(&mut self, f: &Fields<'_>) {
        let Some(id) = f.entity_id else { return };
        match f.action {
            "exec" | "snapshot" => {
                let tree = self.tree(f).map(Arc::from);
                self.remember(
                    id,
                    Image {
                        executable: f.executable.map(Arc::from),
                        command_line: f.command_line.map(Arc::from),
                        agent: f.agent_id.map(Arc::from),
                        tree,
                    },
                );
            }
            "fork" => {
                let parent = f.parent_entity_id.and_then(|p| self.images.get(p));
                let image = match parent {
                    Some(p) if p.agent.as_deref() == f.agent_id => p.clone(),
                    None if f.agent_id.is_none() => return,
                    // The parent became this agent's after its exec (registered, or moved
                    // into the agent's cgroup), or nothing is known of it: the child runs
                    // what it ran, in the tree the parent roots.
                    _ => Image {
                        executable: parent.and_then(|p| p.executable.clone()),
                        command_line: parent.and_then(|p| p.command_line.clone()),
                        agent: f.agent_id.map(Arc::from),
                        tree: self.tree(f).map(Arc::from),
                    },
                };
                self.remember(id, image);
            }
            "exit" => {
                self.images.remove(id);
            }
            _ => {}
        }
    }

    /// The root of the process tree `f`'s process belongs to in its agent: the topmost
    /// ancestor attributed to the same agent, as exec, snapshot and fork records showed it
    /// (its `process.entity_id`). The process's own tree while it stays that agent's, else its
    /// parent's if the parent is the agent's; a fork's parent is the root when it is not
    /// known as the agent's (it became the agent's without an exec: registered, or moved into
    /// the agent's cgroup); otherwise the process is a root. `None` for records of no agent.
    pub fn tree<'a>(&'a self, f: &Fields<'a>) -> Option<&'a str> {
        let agent = f.agent_id?;
        let id = f.entity_id?;
        let tree_of = |entity: &str| {
            self.images
                .get(entity)
                .filter(|i| i.agent.as_deref() == Some(agent))
                .and_then(|i| i.tree.as_deref())
        };
        tree_of(id)
            .or_else(|| f.parent_entity_id.and_then(tree_of))
            .or(if f.action == "fork" {
                f.parent_entity_id
            } else {
                None
            })
            .or(Some(id))
    }

    /// The image of the process named `entity_id`, if remembered.
    pub fn image(&self, entity_id: &str) -> Option<&Image> {
        self.images.get(entity_id)
    }

    fn remember(&mut self, id: &str, image: Image) {
        if let Some(known) = self.images.get_mut(id) {
            *known = image;
            return;
        }
        while self.images.len() >= CAPACITY {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.images.remove(&oldest);
        }
        // Ids of processes that exited are still queued: drop them while they lead.
        while self
            .order
            .front()
            .is_some_and(|k| !self.images.contains_key(&**k))
        {
            self.order.pop_front();
        }
        let id: Arc<str> = Arc::from(id);
        self.images.insert(id.clone(), image);
        self.order.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(action: &'a str, id: &'a str, parent: Option<&'a str>) -> Fields<'a> {
        Fields {
            action,
            entity_id: Some(id),
            parent_entity_id: parent,
            executable: Some("/usr/bin/bash"),
            command_line: Some("bash -c x"),
            ..Fields::default()
        }
    }

    #[test]
    fn a_forked_child_runs_what_its_parent_ran_until_exit() {
        let mut l = Lineage::default();
        l.observe(&fields("exec", "p", None));
        l.observe(&fields("fork", "c", Some("p")));
        assert_eq!(
            l.image("c").and_then(|i| i.executable.as_deref()),
            Some("/usr/bin/bash")
        );
        l.observe(&fields("exit", "c", None));
        assert!(l.image("c").is_none());
        assert!(l.image("p").is_some());
    }

    #[test]
    fn stays_bounded() {
        let mut l = Lineage::default();
        let ids: Vec<String> = (0..CAPACITY + 10).map(|i| i.to_string()).collect();
        for id in &ids {
            l.observe(&fields("exec", id, None));
        }
        assert_eq!(l.images.len(), CAPACITY);
        assert!(l.image("0").is_none());
        assert!(l.image(&ids[CAPACITY + 9]).is_some());
    }
}
