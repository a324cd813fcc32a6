//! `executables` and `files` rules in `kill` and `enforce` mode, userspace half: keeps the
//! kernel's path policy tries (`EXEC_POLICY`, read by the exec program's kill check in
//! `sensor-ebpf/src/exec_policy.rs` and by the BPF LSM exec check; `FILE_READ_POLICY` and
//! `FILE_WRITE_POLICY`, read by the open exit's kill check there and by the BPF LSM open check
//! in `sensor-ebpf/src/lsm_policy.rs`) in step with the agents' rules and the operators'
//! exceptions. Each allowed pattern is a prefix the trie matches (the manifest check refuses
//! such a rule with any other pattern), and each agent has a catch-all entry that allows
//! nothing.
use std::{collections::HashMap, sync::Arc};

use aya::{
    Ebpf,
    maps::{
        MapData,
        lpm_trie::{Key, LpmTrie},
    },
};
use sensor_common::{EXEC_PATH_KEY, ExecAllow, ExecKey, exec_allow};

use crate::{
    glob::{PathGlob, PrefixForm},
    kernel::loader::LoadError,
    policy::form::{FileSet, Mode, Policy, unenforceable},
};

/// One agent's executables rule as the kernel is to enforce it now.
pub(crate) struct AgentExecutables {
    /// The agent's number.
    pub(crate) agent: u32,
    /// Its policy (only an executables rule in kill or enforce mode goes in the kernel).
    pub(crate) policy: Arc<Policy>,
    /// An operator's exception suspends the rule now: nothing of it goes in the kernel.
    pub(crate) excepted: bool,
}

/// One agent's files rule as the kernel is to enforce it now.
pub(crate) struct AgentFiles {
    /// The agent's number.
    pub(crate) agent: u32,
    /// Its policy (only a files rule in kill or enforce mode goes in the kernel).
    pub(crate) policy: Arc<Policy>,
    /// An operator's exception suspends `files.read` now.
    pub(crate) read_excepted: bool,
    /// An operator's exception suspends `files.write` now.
    pub(crate) write_excepted: bool,
}

/// One trie entry: prefix length in bits (the agent's 32 included) and key.
type Entry = (u32, ExecKey);

/// One of the kernel's path policy tries and what is in it.
struct PathTrie {
    name: &'static str,
    trie: LpmTrie<MapData, ExecKey, ExecAllow>,
    current: HashMap<Entry, ExecAllow>,
}

impl PathTrie {
    fn new(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, LoadError> {
        let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        let trie = LpmTrie::try_from(map).map_err(|source| LoadError::Map { name, source })?;
        Ok(Self {
            name,
            trie,
            current: HashMap::new(),
        })
    }

    /// Makes the trie hold exactly `next`.
    fn sync(&mut self, next: HashMap<Entry, ExecAllow>) {
        // New entries first, so a rule being replaced never passes through empty (which
        // would allow everything); then the ones no longer wanted.
        for (&(prefix, key), value) in &next {
            if self.current.get(&(prefix, key)) != Some(value)
                && let Err(e) = self.trie.insert(&Key::new(prefix, key), value, 0)
            {
                tracing::warn!(
                    agent = u32::from_be(key.agent_be),
                    map = self.name,
                    "cannot enforce a rule: {e}"
                );
            }
        }
        for &(prefix, key) in self.current.keys() {
            if !next.contains_key(&(prefix, key)) {
                let _ = self.trie.remove(&Key::new(prefix, key));
            }
        }
        self.current = next;
    }
}

/// The prefix forms of `globs` (the manifest check has refused any other).
fn forms_of(globs: &[PathGlob]) -> Vec<PrefixForm> {
    globs.iter().filter_map(PathGlob::prefix_form).collect()
}

/// The exec policy trie.
pub(crate) struct ExecKiller {
    trie: PathTrie,
}

impl ExecKiller {
    /// Takes the loaded object's policy trie.
    pub(crate) fn new(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        Ok(Self {
            trie: PathTrie::new(ebpf, "EXEC_POLICY")?,
        })
    }

    /// Makes the trie hold exactly `wanted`'s executables rules in kill and enforce mode
    /// (the latter's entries marked [`exec_allow::ENFORCE`]).
    pub(crate) fn sync(&mut self, wanted: &[AgentExecutables]) {
        let mut next = HashMap::new();
        for a in wanted.iter().filter(|a| !a.excepted) {
            let Some(rule) = a.policy.executables.as_ref() else {
                continue;
            };
            let flags = match rule.mode {
                Mode::Kill => 0,
                Mode::Enforce => exec_allow::ENFORCE,
                _ => continue,
            };
            next.extend(entries(a.agent, &forms_of(&rule.allow), flags));
        }
        self.trie.sync(next);
    }
}

/// The open policy tries (files rules in kill and enforce mode).
pub(crate) struct FileEnforcer {
    read: PathTrie,
    write: PathTrie,
}

impl FileEnforcer {
    /// Takes the loaded object's open policy tries.
    pub(crate) fn new(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        Ok(Self {
            read: PathTrie::new(ebpf, "FILE_READ_POLICY")?,
            write: PathTrie::new(ebpf, "FILE_WRITE_POLICY")?,
        })
    }

    /// Makes the tries hold exactly `wanted`'s files rules in kill and enforce mode (the
    /// latter's entries marked [`exec_allow::ENFORCE`]: the BPF LSM check acts on those only,
    /// the open exit's kill check on the others).
    pub(crate) fn sync(&mut self, wanted: &[AgentFiles]) {
        let (mut read, mut write) = (HashMap::new(), HashMap::new());
        for a in wanted {
            let Some(rule) = a.policy.files.as_ref() else {
                continue;
            };
            let flags = match rule.mode {
                Mode::Kill => 0,
                Mode::Enforce => exec_allow::ENFORCE,
                _ => continue,
            };
            let of = |set: &FileSet| entries(a.agent, &forms_of(&set.paths), flags);
            if !a.read_excepted {
                read.extend(of(&rule.allow.read));
            }
            if !a.write_excepted {
                write.extend(of(&rule.allow.write));
            }
        }
        self.read.sync(read);
        self.write.sync(write);
    }
}

/// The trie entries of one agent's rule: the catch-all, and each allowed form. A form under
/// an allowed subtree is left out: the trie answers with the longest match only, and a
/// one-level entry that does not allow a deeper path would hide the subtree that does.
fn entries(agent: u32, forms: &[PrefixForm], flags: u32) -> Vec<(Entry, ExecAllow)> {
    let agent_be = agent.to_be();
    let entry = |bytes: &[u8], kind: u32, with_nul: bool| {
        let mut path = [0u8; EXEC_PATH_KEY];
        path[..bytes.len()].copy_from_slice(bytes);
        let len = bytes.len() + usize::from(with_nul);
        let bits = 32 + 8 * u32::try_from(len).expect("at most 252");
        let prefix = u32::try_from(bytes.len()).expect("at most 252");
        (
            (bits, ExecKey { agent_be, path }),
            ExecAllow {
                kind: kind | flags,
                prefix,
            },
        )
    };
    let subtrees: Vec<Vec<u8>> = forms
        .iter()
        .filter_map(|f| match f {
            PrefixForm::Subtree(dir) => Some([dir.as_slice(), b"/"].concat()),
            _ => None,
        })
        .collect();
    let under_subtree = |p: &[u8]| subtrees.iter().any(|s| p.starts_with(s));
    let mut out = vec![entry(&[], exec_allow::NOTHING, false)];
    for form in forms {
        if unenforceable(Some(form)).is_some() {
            continue;
        }
        match form {
            PrefixForm::Exact(p) if !under_subtree(p) => {
                out.push(entry(p, exec_allow::EXACT, true));
            }
            PrefixForm::Subtree(dir) => {
                let with_slash = [dir.as_slice(), b"/"].concat();
                if !subtrees
                    .iter()
                    .any(|s| s != &with_slash && with_slash.starts_with(s))
                {
                    out.push(entry(&with_slash, exec_allow::SUBTREE, false));
                }
                // `DIR/**` matches `DIR` itself too.
                if !dir.is_empty() && !under_subtree(dir) {
                    out.push(entry(dir, exec_allow::EXACT, true));
                }
            }
            PrefixForm::OneLevel(p) if !under_subtree(p) => {
                out.push(entry(p, exec_allow::ONE_LEVEL, false));
            }
            _ => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|(k, _)| seen.insert(*k));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel decides for `path` of agent 7: the longest matching entry, then the
    /// one-level check (as `exec_policy.rs`).
    fn allowed(entries: &[(Entry, ExecAllow)], path: &str) -> bool {
        let mut full = 7u32.to_be_bytes().to_vec();
        full.extend_from_slice(path.as_bytes());
        full.push(0);
        let (_, allow) = entries
            .iter()
            .filter(|((bits, key), _)| {
                let n = (*bits / 8) as usize;
                let mut k = key.agent_be.to_ne_bytes().to_vec();
                k.extend_from_slice(&key.path);
                n <= full.len() && k[..n] == full[..n]
            })
            .max_by_key(|((bits, _), _)| *bits)
            .expect("the catch-all");
        match allow.kind & exec_allow::KIND_MASK {
            exec_allow::EXACT | exec_allow::SUBTREE => true,
            exec_allow::ONE_LEVEL => !path.as_bytes()[allow.prefix as usize..].contains(&b'/'),
            _ => false,
        }
    }

    fn entries_of(patterns: &[&str]) -> Vec<(Entry, ExecAllow)> {
        let forms: Vec<PrefixForm> = patterns
            .iter()
            .map(|p| PathGlob::new(p).unwrap().prefix_form().unwrap())
            .collect();
        entries(7, &forms, 0)
    }

    #[test]
    fn the_trie_allows_exactly_what_the_globs_do() {
        let patterns = [
            "/usr/bin/git",
            "/usr/bin/py*",
            "/opt/agent/**",
            "/opt/agent/bin/*",
            "/srv/tools/*",
        ];
        let e = entries_of(&patterns);
        let globs: Vec<PathGlob> = patterns.iter().map(|p| PathGlob::new(p).unwrap()).collect();
        for path in [
            "/usr/bin/git",
            "/usr/bin/gitk",
            "/usr/bin/gi",
            "/usr/bin/python3",
            "/usr/bin/py",
            "/usr/bin/py/x",
            "/opt/agent",
            "/opt/agent/bin/x",
            "/opt/agent/bin/x/y",
            "/opt/agents/x",
            "/srv/tools/a",
            "/srv/tools/a/b",
            "/srv/tools",
            "/bin/sh",
            "/",
        ] {
            let want = globs.iter().any(|g| g.matches(path.as_bytes()));
            assert_eq!(allowed(&e, path), want, "{path}");
        }
        // Enforce mode marks every entry; what is allowed stays the same.
        let forms: Vec<PrefixForm> = patterns
            .iter()
            .map(|p| PathGlob::new(p).unwrap().prefix_form().unwrap())
            .collect();
        let marked = entries(7, &forms, exec_allow::ENFORCE);
        assert!(
            marked
                .iter()
                .all(|(_, a)| a.kind & exec_allow::ENFORCE != 0)
        );
        for path in [
            "/usr/bin/git",
            "/usr/bin/gitk",
            "/opt/agent/x/y",
            "/srv/tools/a/b",
        ] {
            assert_eq!(allowed(&marked, path), allowed(&e, path), "{path}");
        }
        // Nothing allowed: only the catch-all.
        let none = entries(7, &[], 0);
        assert_eq!(none.len(), 1);
        assert!(!allowed(&none, "/usr/bin/true"));
        // Everything.
        assert!(allowed(&entries_of(&["/**"]), "/usr/bin/true"));
    }

    #[test]
    fn what_cannot_go_in_the_trie_is_named() {
        let form = |p: &str| PathGlob::new(p).unwrap().prefix_form();
        assert!(unenforceable(form("/opt/*/bin").as_ref()).is_some());
        assert!(unenforceable(form("/usr/bin/git").as_ref()).is_none());
        let long = format!("/{}", "a".repeat(260));
        assert!(unenforceable(form(&long).as_ref()).is_some());
    }
}
