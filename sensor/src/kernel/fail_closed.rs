//! Fail-closed enforcement (`egress: {mode: enforce, fail_closed: true}`, and `executables` and
//! `files` rules in `kill` or `enforce` mode with `fail_closed: true`): the egress programs'
//! links and the maps they read, the kill checks' programs' links (the exec program, the open
//! syscalls' exit program), the BPF LSM checks' links (`bprm_check_security`, `file_open`), and
//! the process-tracking links that keep the attribution map true (fork inherits an agent, exit
//! forgets a process) are pinned in bpffs, so they outlive the daemon however it stops. Each run pins under a directory of its own in
//! [`PIN_DIR`]; a start releases the other runs' pins once its own programs are attached and
//! the running processes attributed (no moment without a denying program), and an operator
//! releases them by removing the directory (docs/policy.md, "Fail-closed").
use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{CgroupSockAddr, Lsm, RawTracePoint, links::FdLink},
};

use crate::kernel::loader::{KillChecks, LoadError, LsmPolicy, Sensor};

/// The syscalls whose exit program holds the files kill check (and whose enter program saves
/// their arguments on kernels without `bpf_task_pt_regs`).
const OPEN_SYSCALLS: &[&str] = &["open", "openat", "openat2", "creat"];

/// Where bpffs is mounted (the sensor mounts it there when nothing is).
pub const BPFFS: &str = "/sys/fs/bpf";
/// Where runs pin their fail-closed enforcement, one directory each (`run-<pid>-<ns>`).
pub const PIN_DIR: &str = "/sys/fs/bpf/agent-sensor";

/// The maps the pinned programs read: the policy trie and the attribution map.
const PINNED_MAPS: &[&str] = &["EGRESS_POLICY", "TRACKED"];

/// This run's pin directory.
pub(crate) struct Pins {
    dir: PathBuf,
}

impl Pins {
    /// Mounts bpffs at [`BPFFS`] when no BPF file system is there, and makes this run's
    /// directory in [`PIN_DIR`].
    pub(crate) fn create() -> Result<Self, LoadError> {
        ensure_bpffs()?;
        let dir = Path::new(PIN_DIR).join(format!(
            "run-{}-{}",
            std::process::id(),
            crate::enrich::clock::boottime_ns()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| pin_error(&dir, &e.to_string()))?;
        Ok(Self { dir })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pins the maps the egress programs read (before they are taken out of `ebpf`).
    pub(crate) fn pin_maps(&self, ebpf: &Ebpf) -> Result<(), LoadError> {
        for &name in PINNED_MAPS {
            let path = self.dir.join(name);
            ebpf.map(name)
                .ok_or(LoadError::MissingMap(name))?
                .pin(&path)
                .map_err(|e| pin_error(&path, &e.to_string()))?;
        }
        Ok(())
    }

    /// Takes the link `id` of the cgroup program `program` from `ebpf` and pins it as `name`.
    pub(crate) fn pin_cgroup_link(
        &self,
        ebpf: &mut Ebpf,
        program: &'static str,
        id: aya::programs::cgroup_sock_addr::CgroupSockAddrLinkId,
        name: &str,
    ) -> Result<(), LoadError> {
        let path = self.dir.join(name);
        let p: &mut CgroupSockAddr = ebpf
            .program_mut(program)
            .ok_or(LoadError::MissingMap(program))?
            .try_into()
            .map_err(|source| LoadError::Program {
                name: program,
                source,
            })?;
        let link = p.take_link(id).map_err(|source| LoadError::Program {
            name: program,
            source,
        })?;
        let link = FdLink::try_from(link).map_err(|e| pin_error(&path, &e.to_string()))?;
        link.pin(&path)
            .map_err(|e| pin_error(&path, &e.to_string()))?;
        Ok(())
    }

    /// Pins the links of the programs that keep the attribution map true without the daemon
    /// (fork: a child inherits its parent's agent; exit: a process that ends is forgotten, so a
    /// reused pid is nobody's).
    pub(crate) fn pin_process_tracking(&self, sensor: &mut Sensor) -> Result<(), LoadError> {
        for (name, id) in sensor.take_process_tracking_links() {
            self.pin_raw_tracepoint_link(&mut sensor.ebpf, name, id)?;
        }
        Ok(())
    }

    /// Pins the attachments of the kill checks `kill` names: the exec program's
    /// (`sched_process_exec`, executables), and the open syscalls' exit program's (with their
    /// enter program's, where it saves their arguments; files). Those programs go on reporting
    /// into a ring buffer nobody reads once the daemon stops (their records are dropped and
    /// counted), and killing what the rules in the kernel then do not allow.
    pub(crate) fn pin_kill_checks(
        &self,
        sensor: &mut Sensor,
        kill: KillChecks,
    ) -> Result<(), LoadError> {
        if kill.exec {
            for (name, id) in sensor.take_exec_link() {
                self.pin_raw_tracepoint_link(&mut sensor.ebpf, name, id)?;
            }
        }
        if kill.files {
            let names: Vec<String> = OPEN_SYSCALLS
                .iter()
                .flat_map(|s| [format!("sys_exit_{s}"), format!("sys_enter_{s}")])
                .collect();
            for (name, link) in sensor.take_syscall_links(&names) {
                let path = self.dir.join(&name);
                let link = FdLink::try_from(link).map_err(|e| {
                    pin_error(
                        &path,
                        &format!(
                            "this kernel attaches tracepoint programs without BPF links \
                             (Linux < 5.15), so the files kill check cannot outlive the sensor \
                             ({e}); remove fail_closed from the files rule"
                        ),
                    )
                })?;
                link.pin(&path)
                    .map_err(|e| pin_error(&path, &e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Pins the links of the BPF LSM checks `lsm` names (`lsm_bprm_check` for executables
    /// rules in enforce mode, `lsm_file_open` for files rules): they go on refusing what the
    /// rules in the kernel then do not allow. BPF LSM programs are attached through BPF links
    /// on every kernel that has BPF LSM.
    pub(crate) fn pin_lsm_checks(
        &self,
        sensor: &mut Sensor,
        lsm: LsmPolicy,
    ) -> Result<(), LoadError> {
        for (program, id) in sensor.take_lsm_links(lsm) {
            let path = self.dir.join(program);
            let p: &mut Lsm = sensor
                .ebpf
                .program_mut(program)
                .ok_or(LoadError::MissingMap(program))?
                .try_into()
                .map_err(|source| LoadError::Program {
                    name: program,
                    source,
                })?;
            let link = p.take_link(id).map_err(|source| LoadError::Program {
                name: program,
                source,
            })?;
            FdLink::from(link)
                .pin(&path)
                .map_err(|e| pin_error(&path, &e.to_string()))?;
        }
        Ok(())
    }

    /// Removes this run's directory and what is pinned in it (a start that failed to pin all
    /// it had to: what it pinned would otherwise stay until the next start).
    pub(crate) fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }

    /// Takes the raw tracepoint link `id` of `program` from `ebpf` and pins it.
    fn pin_raw_tracepoint_link(
        &self,
        ebpf: &mut Ebpf,
        program: &'static str,
        id: aya::programs::raw_trace_point::RawTracePointLinkId,
    ) -> Result<(), LoadError> {
        let path = self.dir.join(program);
        let p: &mut RawTracePoint = ebpf
            .program_mut(program)
            .ok_or(LoadError::MissingMap(program))?
            .try_into()
            .map_err(|source| LoadError::Program {
                name: program,
                source,
            })?;
        let link = p.take_link(id).map_err(|source| LoadError::Program {
            name: program,
            source,
        })?;
        FdLink::from(link)
            .pin(&path)
            .map_err(|e| pin_error(&path, &e.to_string()))?;
        Ok(())
    }
}

/// Refuses, before anything loads, a fail-closed files kill rule (of the agents named) on a
/// kernel that attaches tracepoint programs without BPF links (before Linux 5.15): the open
/// syscalls' exit program, which holds the files kill check, could not be pinned there.
pub(crate) fn refuse_unpinnable_files_kill(agents: &[&str]) -> Result<(), LoadError> {
    if agents.is_empty() || aya::features().bpf_perf_link() {
        return Ok(());
    }
    let quoted: Vec<String> = agents.iter().map(|a| format!("{a:?}")).collect();
    Err(LoadError::FailClosed(format!(
        "fail_closed on the files rule in mode kill of agent {}: this kernel attaches \
         tracepoint programs without BPF links (Linux < 5.15), so the files kill check (on the \
         open syscalls' exit tracepoints) cannot be pinned to outlive the sensor; remove \
         fail_closed from that rule (it then kills while the sensor runs), or, where the kernel \
         has BPF LSM, set the rule to mode enforce, which can fail closed",
        quoted.join(", ")
    )))
}

/// Removes every run's pins but `keep`'s: their programs detach (unless something else holds
/// them) and their maps go. Returns the directories removed.
pub(crate) fn release_others(keep: Option<&Path>) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(PIN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if Some(path.as_path()) == keep {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        removed.push(path);
    }
    Ok(removed)
}

/// Whether a BPF file system is mounted at [`BPFFS`]; mounts one there when not.
fn ensure_bpffs() -> Result<(), LoadError> {
    let mounted = std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split(' ');
            let (_dev, dir, kind) = (f.next(), f.next(), f.next());
            dir == Some(BPFFS) && kind == Some("bpf")
        })
    });
    if mounted {
        return Ok(());
    }
    // SAFETY: valid NUL-terminated strings; mount(2) has no other preconditions.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::FailClosed(format!(
            "fail_closed needs a BPF file system at {BPFFS} to pin the enforcement in, \
             and none is mounted there; mounting one failed: {} (mount it: mount -t bpf bpf \
             {BPFFS})",
            io::Error::last_os_error()
        )));
    }
    tracing::info!("mounted a BPF file system at {BPFFS} for fail-closed enforcement");
    Ok(())
}

fn pin_error(path: &Path, why: &str) -> LoadError {
    LoadError::FailClosed(format!("fail_closed: cannot pin {}: {why}", path.display()))
}
