//! Records of the process lifecycle: exec, fork, exit and the start-up snapshot.
use std::sync::Arc;

use super::{Builder, END, INFO, PROCESS, START, process_blocks::BlockSource};
use crate::{
    decode::{ExecEvent, ExitEvent, ExitStatus, ForkEvent},
    enrich::{
        clock::WallClock, entity::EntityIds, process_table::ProcessInfo, snapshot::ProcSnapshot,
    },
    record::{
        self, Cgroup, Id, Namespaces, Parent, Process, ProcessBlock, Record, Signal, Thread,
        rendered::Rendered, time::Timestamp,
    },
};

impl Builder {
    pub(super) fn exec(&mut self, e: &ExecEvent) -> Record {
        let start_ticks = self.entity_ids.ticks(e.start_boottime);
        let entity_id = self.entity_id(e.tgid, e.start_boottime);
        let parent_entity = self.entity_id(e.ppid, e.parent_start_boottime);
        // The kernel's absolute path of what runs; the name as passed when that failed.
        let exe: &[u8] = if e.exe.is_empty() {
            &e.filename
        } else {
            &e.exe
        };
        let (agent, chain) = self.chain_after_exec(e.tgid, &entity_id, e.attribution);
        self.table.insert(
            e.tgid,
            ProcessInfo {
                entity_id: entity_id.clone(),
                start_ticks,
                ppid: e.ppid,
                parent_entity_id: Some(parent_entity.clone()),
                name: Arc::from(&e.comm[..]),
                executable: Some(Arc::from(exe)),
                euid: Some(e.euid),
                agent,
                chain,
                container: self.container_of(e.cgroup_id),
            },
        );
        let mut p = Process {
            pid: e.tgid,
            entity_id,
            thread: Some(Thread { id: e.pid }),
            args_count: Some(e.args_count),
            args_truncated: e.args_truncated,
            start: Some(Timestamp::of(self.clock.to_unix(e.start_boottime))),
            parent: Some(Parent {
                pid: e.ppid,
                entity_id: parent_entity,
                thread: None,
            }),
            user: Some(Id::of(e.euid)),
            group: Some(Id::of(e.egid)),
            real_user: Some(Id::of(e.uid)),
            real_group: Some(Id::of(e.gid)),
            login_user: e.loginuid.map(Id::of),
            session_id: e.sessionid,
            cgroup: Some(Cgroup { id: e.cgroup_id }),
            namespaces: Some(Namespaces {
                pid: e.pid_ns,
                mnt: e.mnt_ns,
            }),
            ..Default::default()
        };
        p.set_name(&e.comm);
        p.set_executable(exe);
        if e.filename != exe {
            p.set_exec_path(&e.filename);
        }
        if !e.cwd.is_empty() {
            p.set_working_directory(&e.cwd, e.cwd_truncated);
        }
        p.policy_killed = e.policy_killed;
        if !e.args_unreadable {
            p.set_args(&e.args);
        }
        let mut r = self.record(
            self.clock.to_unix(e.ktime_ns),
            self.meta("event", PROCESS, START, "exec"),
        );
        r.user = Some(Id::of(e.euid));
        r.process = Some(p.into());
        r
    }

    pub(super) fn fork(&mut self, e: &ForkEvent) -> Record {
        let ids = &self.entity_ids;
        let parent_ticks = ids.ticks(e.parent_start_boottime);
        let known = self.table.get_started(e.parent_tgid, parent_ticks).cloned();
        let parent_entity: Arc<str> = match &known {
            Some(k) => k.entity_id.clone(),
            None => ids.for_ticks(e.parent_tgid, parent_ticks).into(),
        };
        let mut p = Process {
            pid: e.child_tgid,
            thread: Some(Thread { id: e.child_pid }),
            start: Some(Timestamp::of(self.clock.to_unix(e.start_boottime))),
            real_user: Some(Id::of(e.uid)),
            real_group: Some(Id::of(e.gid)),
            cgroup: Some(Cgroup { id: e.cgroup_id }),
            ..Default::default()
        };
        p.set_name(&e.comm);
        if let Some(exe) = known.as_ref().and_then(|k| k.executable.as_deref()) {
            p.set_executable(exe);
        }
        let action = if e.thread {
            // A thread belongs to the caller's process: same entity, the parent is the creating thread.
            p.entity_id = parent_entity.clone();
            let grand = known.as_ref();
            p.parent = grand.and_then(|k| {
                k.parent_entity_id.as_ref().map(|pe| Parent {
                    pid: k.ppid,
                    entity_id: pe.clone(),
                    thread: None,
                })
            });
            "thread_start"
        } else {
            let start_ticks = ids.ticks(e.start_boottime);
            let entity_id: Arc<str> = ids.for_ticks(e.child_tgid, start_ticks).into();
            p.entity_id = entity_id.clone();
            p.parent = Some(Parent {
                pid: e.parent_tgid,
                entity_id: parent_entity.clone(),
                thread: Some(Thread { id: e.parent_pid }),
            });
            self.table.insert(
                e.child_tgid,
                ProcessInfo {
                    entity_id,
                    start_ticks,
                    ppid: e.parent_tgid,
                    parent_entity_id: Some(parent_entity),
                    name: Arc::from(&e.comm[..]),
                    euid: known.as_ref().and_then(|k| k.euid),
                    agent: e.attribution.agent,
                    chain: known
                        .as_ref()
                        .map_or_else(|| Arc::from([]), |k| k.chain.clone()),
                    container: self.container_of(e.cgroup_id),
                    executable: known.and_then(|k| k.executable),
                },
            );
            "fork"
        };
        let mut r = self.record(
            self.clock.to_unix(e.ktime_ns),
            self.meta("event", PROCESS, START, action),
        );
        r.user = Some(Id::of(e.uid));
        r.process = Some(p.into());
        r
    }

    pub(super) fn exit(&mut self, e: &ExitEvent) -> Record {
        let entity_id = self.entity_id(e.tgid, e.start_boottime);
        let known = if e.process_exit {
            self.table.remove(e.tgid, &entity_id)
        } else {
            let ticks = self.entity_ids.ticks(e.start_boottime);
            self.table.get_started(e.tgid, ticks).cloned()
        };
        let at = Timestamp::of(self.clock.to_unix(e.ktime_ns));
        let mut p = Process {
            pid: e.tgid,
            entity_id,
            thread: Some(Thread { id: e.pid }),
            start: Some(Timestamp::of(self.clock.to_unix(e.start_boottime))),
            end: e.process_exit.then_some(at),
            ..Default::default()
        };
        p.set_name(&e.comm);
        if let Some(k) = &known {
            apply_known(&mut p, k);
        }
        match e.status {
            ExitStatus::Exited(code) => p.exit_code = Some(code),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                p.exit_signal = Some(Signal {
                    number: signal,
                    name: record::signal_name(signal),
                    core_dumped,
                });
            }
        }
        let action = if e.process_exit {
            "exit"
        } else {
            "thread_exit"
        };
        let mut r = self.record(
            self.clock.to_unix(e.ktime_ns),
            self.meta("event", PROCESS, END, action),
        );
        r.process = Some(p.into());
        r
    }

    /// State records for processes that ran before the sensor started.
    pub(super) fn snapshot_records(&mut self, procs: &[&ProcSnapshot], out: &mut Vec<Record>) {
        for p in procs {
            let ids = &self.entity_ids;
            let entity_id: Arc<str> = ids.for_ticks(p.tgid, p.start_ticks).into();
            let parent_entity = procs
                .iter()
                .find(|q| q.tgid == p.ppid)
                .map(|q| ids.for_ticks(q.tgid, q.start_ticks));
            let start_ns = p.start_ticks * (1_000_000_000 / ticks_per_second());
            let mut proc = Process {
                pid: p.tgid,
                entity_id: entity_id.clone(),
                start: Some(Timestamp::of(self.clock.to_unix(start_ns))),
                parent: parent_entity.clone().map(|e| Parent {
                    pid: p.ppid,
                    entity_id: e.into(),
                    thread: None,
                }),
                user: Some(Id::of(p.euid)),
                group: Some(Id::of(p.egid)),
                real_user: Some(Id::of(p.uid)),
                real_group: Some(Id::of(p.gid)),
                cgroup: p.cgroup_id.map(|id| Cgroup { id }),
                ..Default::default()
            };
            proc.set_name(&p.comm);
            if let Some(exe) = &p.executable {
                proc.set_executable(exe);
            }
            if !p.args.is_empty() {
                proc.set_args(&p.args);
                proc.args_count = Some(p.args.len() as u32);
            }
            let mut r = self.record(
                WallClock::now(),
                self.meta("state", PROCESS, INFO, "snapshot"),
            );
            r.user = Some(Id::of(p.euid));
            r.process = Some(proc.into());
            if let Some(a) = p.agent {
                r.identity = self.identity(a, p.tgid);
            }
            if let Some(c) = p.cgroup_id.and_then(|id| self.container_of(id)) {
                r.set_container(&c);
            }
            out.push(r);
            self.table.insert(
                p.tgid,
                ProcessInfo {
                    entity_id,
                    start_ticks: p.start_ticks,
                    ppid: p.ppid,
                    parent_entity_id: parent_entity.map(Arc::from),
                    name: Arc::from(&p.comm[..]),
                    executable: p.executable.as_deref().map(Arc::from),
                    euid: Some(p.euid),
                    agent: p.agent.map_or(0, |a| a.agent),
                    chain: Arc::from([]),
                    container: p.cgroup_id.and_then(|id| self.container_of(id)),
                },
            );
        }
    }

    /// The `process` block of an activity record of thread `pid` of process `tgid`: shared
    /// with the thread's earlier records while what it is made of (its comm, and what the
    /// table knows: entity id, executable, parent, user) is unchanged, so it is built and
    /// rendered once per process, not once per record.
    pub(super) fn process_ref(
        &mut self,
        tgid: u32,
        pid: u32,
        start_boottime: u64,
        comm: &[u8],
    ) -> ProcessBlock {
        let ids = &self.entity_ids;
        let ticks = ids.ticks(start_boottime);
        let known = self.table.get_started(tgid, ticks);
        if let Some(block) = self.process_blocks.get(tgid, pid, ticks, comm, known) {
            return ProcessBlock::Shared(block);
        }
        let entity_id = match known {
            Some(k) => k.entity_id.clone(),
            None => ids.for_ticks(tgid, ticks).into(),
        };
        let mut p = Process {
            pid: tgid,
            thread: Some(Thread { id: pid }),
            ..Default::default()
        };
        p.set_name(comm);
        if let Some(k) = known {
            apply_known(&mut p, k);
        }
        p.entity_id = entity_id;
        let block = Arc::new(Rendered::new(p));
        let source = BlockSource::of(ticks, comm, known);
        self.process_blocks.insert(tgid, pid, source, block.clone());
        ProcessBlock::Shared(block)
    }

    /// The entity id of process `tgid` that started `start_boottime` after boot: the table's
    /// when it holds that process, else derived (a hash).
    pub(super) fn entity_id(&self, tgid: u32, start_boottime: u64) -> Arc<str> {
        let ids = &self.entity_ids;
        let ticks = ids.ticks(start_boottime);
        match self.table.get_started(tgid, ticks) {
            Some(k) => k.entity_id.clone(),
            None => ids.for_ticks(tgid, ticks).into(),
        }
    }

    /// The `process` block of process `tgid` found outside a kernel record (by a scan of
    /// `/proc`): as the table knows it, else as `/proc` shows it now.
    pub(super) fn process_of_known(&mut self, tgid: u32) -> ProcessBlock {
        match self
            .table
            .get(tgid)
            .map(|k| (k.start_ticks, k.name.clone()))
        {
            Some((ticks, comm)) => {
                let start = self.entity_ids.boottime_ns(ticks);
                self.process_ref(tgid, tgid, start, &comm)
            }
            None => ProcessBlock::Own(Box::new(process_from_proc(&self.entity_ids, tgid))),
        }
    }
}

/// What the process table knows of a process: its executable, parent and user.
fn apply_known(p: &mut Process, k: &ProcessInfo) {
    if let Some(exe) = &k.executable {
        p.set_executable(exe);
    }
    p.parent = k.parent_entity_id.as_ref().map(|pe| Parent {
        pid: k.ppid,
        entity_id: pe.clone(),
        thread: None,
    });
    p.user = k.euid.map(Id::of);
}

pub(super) fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// The sensor's own process, for its start and stop records.
pub(super) fn self_process(ids: &EntityIds) -> Process {
    process_from_proc(ids, std::process::id())
}

/// Process `pid` as `/proc` shows it now.
fn process_from_proc(ids: &EntityIds, pid: u32) -> Process {
    let snap = crate::enrich::snapshot::read_process(pid, None);
    let mut p = Process {
        pid,
        entity_id: snap
            .as_ref()
            .map(|s| ids.for_ticks(pid, s.start_ticks).into())
            .unwrap_or_default(),
        ..Default::default()
    };
    if let Some(s) = snap {
        p.set_name(&s.comm);
        if let Some(exe) = &s.executable {
            p.set_executable(exe);
        }
    }
    p
}
