//! What of the agents' policies the kernel enforces, kept in step with the manifest, the
//! operators' exceptions and the agents' own DNS lookups: egress (`egress`, cgroup programs),
//! executables and files in kill mode (`exec_kill`, checks in the exec program and the file
//! syscalls' exit program), and executables and files in enforce mode (`exec_kill`'s tries,
//! read by BPF LSM programs). All are decided at
//! start: a reload that adds the first such rule takes a restart (docs/policy.md).
use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use aya::Ebpf;

use crate::{
    kernel::{
        egress::{AgentEgress, EgressEnforcer},
        exec_kill::{AgentExecutables, AgentFiles, ExecKiller, FileEnforcer},
        fail_closed::Pins,
        loader::{KillChecks, LoadError, LsmPolicy},
    },
    policy::{
        exceptions::Exceptions,
        form::{Mode, Policy},
        resolved::Resolved,
    },
};

/// One declared agent's policy, by the number the kernel knows it by.
pub(crate) struct AgentPolicy<'a> {
    /// The agent's number (its place in the registry, from 1).
    pub(crate) number: u32,
    /// Its id (exceptions and lookups are by id).
    pub(crate) id: &'a str,
    pub(crate) policy: &'a Arc<Policy>,
}

/// What the kernel's policy is made of besides the manifest.
#[derive(Clone, Default)]
pub(crate) struct PolicyState {
    /// Operators' exceptions: a rule under one has nothing in the kernel.
    pub(crate) exceptions: Exceptions,
    /// Addresses agents looked up for their enforced egress rules' names.
    pub(crate) resolved: Resolved,
}

/// Which kernel enforcement the manifest asks for at start.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wanted {
    /// Some agent's egress rule is in `enforce` mode.
    pub(crate) egress: bool,
    /// The kill checks that run: `exec`, some agent's executables rule is in `kill` or
    /// `enforce` mode (for `enforce`, on the execs the BPF LSM check could not judge: those
    /// that make a process an agent's by the executable they run); `files`, some agent's files
    /// rule is in `kill` mode (the file syscalls' exit program's check).
    pub(crate) kill: KillChecks,
    /// Some agent's executables (BPF LSM `bprm_check_security`) or files (`file_open`) rule is
    /// in `enforce` mode.
    pub(crate) lsm: LsmPolicy,
    /// Some agent's enforced egress rule is fail-closed: the egress enforcement is pinned.
    pub(crate) fail_closed: bool,
    /// The kill checks some agent's fail-closed rule needs pinned: `exec`, an executables rule
    /// in kill mode, or in enforce mode (whose kill check stops the execs that make a process
    /// an agent's); `files`, a files rule in kill mode.
    pub(crate) kill_fail_closed: KillChecks,
    /// The BPF LSM checks some agent's fail-closed rule in enforce mode needs pinned.
    pub(crate) lsm_fail_closed: LsmPolicy,
}

impl Wanted {
    pub(crate) fn of(agents: &[AgentPolicy<'_>]) -> Self {
        let mut wanted = Self::default();
        for d in agents {
            wanted.egress |= d
                .policy
                .egress
                .as_ref()
                .is_some_and(|r| r.mode == Mode::Enforce);
            wanted.fail_closed |= fails_closed(d);
            let closed = rules_fail_closed(d);
            let exec_mode = d.policy.executables.as_ref().map(|r| r.mode);
            let files_mode = d.policy.files.as_ref().map(|r| r.mode);
            wanted.kill_fail_closed.exec |= closed.exec;
            wanted.kill_fail_closed.files |= closed.files && files_mode == Some(Mode::Kill);
            wanted.lsm_fail_closed.exec |= closed.exec && exec_mode == Some(Mode::Enforce);
            wanted.lsm_fail_closed.files |= closed.files && files_mode == Some(Mode::Enforce);
            wanted.kill.exec |= matches!(exec_mode, Some(Mode::Kill | Mode::Enforce));
            wanted.lsm.exec |= exec_mode == Some(Mode::Enforce);
            wanted.kill.files |= files_mode == Some(Mode::Kill);
            wanted.lsm.files |= files_mode == Some(Mode::Enforce);
        }
        wanted
    }

    pub(crate) fn any(self) -> bool {
        self.egress || self.kill.exec || self.kill.files || self.lsm.files
    }

    /// Some rule fails closed: the run pins its enforcement.
    pub(crate) fn pins(self) -> bool {
        (self.egress && self.fail_closed)
            || self.kill_fail_closed.exec
            || self.kill_fail_closed.files
            || self.lsm_fail_closed.any()
    }
}

/// The agents whose files rule is in kill mode and fails closed: the files kill check must be
/// pinned for them, which needs the open syscalls' tracepoints attached through BPF links.
pub(crate) fn files_kill_fail_closed<'a>(agents: &[AgentPolicy<'a>]) -> Vec<&'a str> {
    agents
        .iter()
        .filter(|d| {
            d.policy
                .files
                .as_ref()
                .is_some_and(|r| r.mode == Mode::Kill && r.fail_closed)
        })
        .map(|d| d.id)
        .collect()
}

/// Which of the agent's executables and files rules the kernel stops (kill or enforce mode)
/// and fail closed.
fn rules_fail_closed(d: &AgentPolicy<'_>) -> KillChecks {
    let stops_and_fails_closed =
        |mode: Mode, fail_closed: bool| matches!(mode, Mode::Kill | Mode::Enforce) && fail_closed;
    KillChecks {
        exec: d
            .policy
            .executables
            .as_ref()
            .is_some_and(|r| stops_and_fails_closed(r.mode, r.fail_closed)),
        files: d
            .policy
            .files
            .as_ref()
            .is_some_and(|r| stops_and_fails_closed(r.mode, r.fail_closed)),
    }
}

/// Whether the agent's egress rule is enforced and fail-closed.
fn fails_closed(d: &AgentPolicy<'_>) -> bool {
    d.policy
        .egress
        .as_ref()
        .is_some_and(|r| r.mode == Mode::Enforce && r.fail_closed)
}

/// The kernel's enforcement, attached.
pub(crate) struct Enforcement {
    egress: Option<EgressEnforcer>,
    exec: Option<ExecKiller>,
    files: Option<FileEnforcer>,
}

impl Enforcement {
    /// Attaches (egress) or takes over (executables) what `wanted` asks for, filled from
    /// `agents` and `state` before anything runs.
    /// With `pins`, the egress enforcement is pinned there (fail-closed).
    pub(crate) fn attach(
        ebpf: &mut Ebpf,
        wanted: Wanted,
        agents: &[AgentPolicy<'_>],
        state: &PolicyState,
        pins: Option<&Pins>,
    ) -> Result<Self, LoadError> {
        let mut enforcement = Self {
            egress: wanted
                .egress
                .then(|| EgressEnforcer::attach(ebpf, pins))
                .transpose()?,
            exec: wanted
                .kill
                .exec
                .then(|| ExecKiller::new(ebpf))
                .transpose()?,
            files: (wanted.lsm.files || wanted.kill.files)
                .then(|| FileEnforcer::new(ebpf))
                .transpose()?,
        };
        enforcement.sync(agents, state);
        Ok(enforcement)
    }

    /// As the daemon stops with its enforcement pinned: leaves in the kernel only what is to go
    /// on being denied or killed, the fail-closed rules as declared (no exception and no
    /// looked-up address outlives the daemon: nobody would end them).
    pub(crate) fn keep_fail_closed_only(&mut self, agents: &[AgentPolicy<'_>]) {
        let closed: Vec<(&AgentPolicy<'_>, KillChecks)> =
            agents.iter().map(|d| (d, rules_fail_closed(d))).collect();
        if let Some(exec) = &mut self.exec {
            let rules: Vec<AgentExecutables> = closed
                .iter()
                .filter(|(_, k)| k.exec)
                .map(|(d, _)| AgentExecutables {
                    agent: d.number,
                    policy: d.policy.clone(),
                    excepted: false,
                })
                .collect();
            exec.sync(&rules);
        }
        if let Some(files) = &mut self.files {
            let rules: Vec<AgentFiles> = closed
                .iter()
                .filter(|(_, k)| k.files)
                .map(|(d, _)| AgentFiles {
                    agent: d.number,
                    policy: d.policy.clone(),
                    read_excepted: false,
                    write_excepted: false,
                })
                .collect();
            files.sync(&rules);
        }
        if let Some(egress) = &mut self.egress {
            let rules: Vec<AgentEgress> = agents
                .iter()
                .filter(|d| fails_closed(d))
                .map(|d| AgentEgress {
                    agent: d.number,
                    policy: d.policy.clone(),
                    excepted: false,
                    learned: Vec::new(),
                })
                .collect();
            egress.sync(&rules);
        }
    }

    /// Puts the agents' enforced rules, as their policies, exceptions and lookups say now, in
    /// the kernel.
    pub(crate) fn sync(&mut self, agents: &[AgentPolicy<'_>], state: &PolicyState) {
        let now = SystemTime::now();
        let instant = Instant::now();
        if let Some(egress) = &mut self.egress {
            let rules: Vec<AgentEgress> = agents
                .iter()
                .map(|d| AgentEgress {
                    agent: d.number,
                    policy: d.policy.clone(),
                    excepted: state.exceptions.in_force(d.id, "egress", now).is_some(),
                    learned: state.resolved.of(d.id, instant),
                })
                .collect();
            egress.sync(&rules);
        }
        if let Some(exec) = &mut self.exec {
            let rules: Vec<AgentExecutables> = agents
                .iter()
                .map(|d| AgentExecutables {
                    agent: d.number,
                    policy: d.policy.clone(),
                    excepted: state
                        .exceptions
                        .in_force(d.id, "executables", now)
                        .is_some(),
                })
                .collect();
            exec.sync(&rules);
        }
        if let Some(files) = &mut self.files {
            let rules: Vec<AgentFiles> = agents
                .iter()
                .map(|d| AgentFiles {
                    agent: d.number,
                    policy: d.policy.clone(),
                    read_excepted: state.exceptions.in_force(d.id, "files.read", now).is_some(),
                    write_excepted: state
                        .exceptions
                        .in_force(d.id, "files.write", now)
                        .is_some(),
                })
                .collect();
            files.sync(&rules);
        }
    }
}
