//! The only code that loads and attaches the kernel programs: it checks privileges, resolves
//! kernel struct offsets from BTF, hands them and the settings to the programs as globals,
//! and attaches each program to its tracepoint.
use std::{fs, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{Lsm, ProgramError, RawTracePoint, TracePoint, trace_point::TracePointLink},
};
use sensor_common::{
    CgroupAgent, DentryRead, ExeKey, FileRead, Gather, KernelOffsets, MountRead, ProgramConfig,
    SEGMENT_MAX, SEGMENTS, TrackedProcess, Window, syscall as sc,
};

use serde::Serialize;

use crate::{
    config::Config,
    kernel::btf::{BtfError, KernelBtf},
    kernel::privileges,
    kernel::program_budget::{self, ProgramBudget},
};

/// The kernel programs, built by build.rs.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor"));

/// The kernel programs, for the feature probe (which loads its own copy).
pub fn program_object() -> &'static [u8] {
    PROGRAMS
}

/// Every raw-tracepoint program and the tracepoint it attaches to.
const RAW_TRACEPOINTS: &[(&str, &str)] = &[
    ("sched_process_exec", "sched_process_exec"),
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
    ("inet_sock_set_state", "inet_sock_set_state"),
    ("cgroup_mkdir", "cgroup_mkdir"),
];

/// The BPF LSM programs that keep the kernel's copy of a connect's, bind's or send's address
/// (`kernel.lsm_hooks`), and their hooks.
const LSM_ADDRESS_HOOKS: &[(&str, &str)] = &[
    ("lsm_socket_connect", "socket_connect"),
    ("lsm_socket_bind", "socket_bind"),
    ("lsm_socket_sendmsg", "socket_sendmsg"),
];

/// Followed syscalls: name, `syscall` constant, this architecture's number for it, and the
/// shared exit program that reports it (which reads the arguments itself, see
/// `sensor-ebpf/src/syscalls.rs`). arm64 has none of the legacy path calls (`open`, ...).
const SYSCALLS: &[(&str, u16, libc::c_long, &str)] = &[
    #[cfg(target_arch = "x86_64")]
    ("open", sc::OPEN, libc::SYS_open, "exit_file"),
    ("openat", sc::OPENAT, libc::SYS_openat, "exit_file"),
    ("openat2", sc::OPENAT2, libc::SYS_openat2, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("creat", sc::CREAT, libc::SYS_creat, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("rename", sc::RENAME, libc::SYS_rename, "exit_file"),
    ("renameat", sc::RENAMEAT, libc::SYS_renameat, "exit_file"),
    ("renameat2", sc::RENAMEAT2, libc::SYS_renameat2, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("unlink", sc::UNLINK, libc::SYS_unlink, "exit_file"),
    ("unlinkat", sc::UNLINKAT, libc::SYS_unlinkat, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("rmdir", sc::RMDIR, libc::SYS_rmdir, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("mkdir", sc::MKDIR, libc::SYS_mkdir, "exit_file"),
    ("mkdirat", sc::MKDIRAT, libc::SYS_mkdirat, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("chmod", sc::CHMOD, libc::SYS_chmod, "exit_file"),
    ("fchmod", sc::FCHMOD, libc::SYS_fchmod, "exit_file"),
    ("fchmodat", sc::FCHMODAT, libc::SYS_fchmodat, "exit_file"),
    ("fchmodat2", sc::FCHMODAT2, SYS_FCHMODAT2, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("chown", sc::CHOWN, libc::SYS_chown, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("lchown", sc::LCHOWN, libc::SYS_lchown, "exit_file"),
    ("fchown", sc::FCHOWN, libc::SYS_fchown, "exit_file"),
    ("fchownat", sc::FCHOWNAT, libc::SYS_fchownat, "exit_file"),
    ("truncate", sc::TRUNCATE, libc::SYS_truncate, "exit_file"),
    ("ftruncate", sc::FTRUNCATE, libc::SYS_ftruncate, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("link", sc::LINK, libc::SYS_link, "exit_file"),
    ("linkat", sc::LINKAT, libc::SYS_linkat, "exit_file"),
    #[cfg(target_arch = "x86_64")]
    ("symlink", sc::SYMLINK, libc::SYS_symlink, "exit_file"),
    ("symlinkat", sc::SYMLINKAT, libc::SYS_symlinkat, "exit_file"),
    ("connect", sc::CONNECT, libc::SYS_connect, "exit_net"),
    ("accept", sc::ACCEPT, libc::SYS_accept, "exit_net"),
    ("accept4", sc::ACCEPT4, libc::SYS_accept4, "exit_net"),
    ("bind", sc::BIND, libc::SYS_bind, "exit_net"),
    ("listen", sc::LISTEN, libc::SYS_listen, "exit_net"),
    ("sendto", sc::SENDTO, libc::SYS_sendto, "exit_net"),
    ("sendmsg", sc::SENDMSG, libc::SYS_sendmsg, "exit_net"),
    ("sendmmsg", sc::SENDMMSG, libc::SYS_sendmmsg, "exit_net"),
    ("recvfrom", sc::RECVFROM, libc::SYS_recvfrom, "exit_net"),
    ("recvmsg", sc::RECVMSG, libc::SYS_recvmsg, "exit_net"),
];

/// fchmodat2 (Linux 6.6) has the same number on every architecture; the libc crate (0.2.191)
/// lacks it for aarch64.
const SYS_FCHMODAT2: libc::c_long = 452;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "agent-sensor needs root (or CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN) to load its \
         kernel programs; run it as root or grant those capabilities"
    )]
    NotPrivileged,
    #[error(
        "kernel BTF is unavailable ({0}); agent-sensor needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (/sys/kernel/btf/vmlinux)"
    )]
    NoBtf(BtfError),
    #[error(
        "this kernel has no BPF ring buffer (Linux 5.8 added it), which the programs report \
         through; run the sensor on Linux 5.8 or later"
    )]
    NoRingBuffer,
    #[error("the kernel's BTF cannot be read for the LSM hooks ({0})")]
    LsmBtf(aya::BtfError),
    #[error("this kernel's BTF lacks {what}, which the process probes read ({source})")]
    MissingKernelMember {
        what: &'static str,
        source: BtfError,
    },
    #[error(
        "tracefs is not mounted and could not be mounted ({0}); run \
         `mount -t tracefs nodev /sys/kernel/tracing`"
    )]
    NoTracefs(std::io::Error),
    #[error("loading the kernel programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error(
        "this kernel's verifier refused program {name}: {why}; what to do: {action} \
         (RUST_LOG=debug shows the verifier's log)"
    )]
    Refused {
        name: &'static str,
        why: String,
        action: String,
    },
    #[error(
        "this kernel's {what} members are spread over {span} bytes, more than the programs \
         copy in {SEGMENTS} reads of {SEGMENT_MAX} bytes; please report the kernel version \
         (`uname -r`)"
    )]
    UnsupportedLayout { what: &'static str, span: u32 },
    #[error("cannot read the tracepoint format of {0} in tracefs")]
    TracepointFormat(&'static str),
    #[error("map or program {0} is missing from the kernel programs (a build problem)")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

/// Loaded, attached programs and the maps the daemon reads.
pub struct Sensor {
    /// Owns the programs and their links: dropping it detaches everything.
    pub ebpf: Ebpf,
    pub programs: Vec<&'static str>,
    /// The syscall tracepoint attachments, owned here so `detach` can end them in parallel.
    syscall_links: Vec<TracePointLink>,
}

/// Maps taken out of the loaded object for the source and the attribution stage.
pub struct SensorMaps {
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
    pub tracked: BpfHashMap<MapData, u32, TrackedProcess>,
    pub selectors: SelectorMaps,
}

/// The kernel's selector maps: agent numbers by cgroup id, executable and uid, and the new
/// cgroups waiting for a decision.
pub struct SelectorMaps {
    pub cgroups: BpfHashMap<MapData, u64, CgroupAgent>,
    pub held: BpfHashMap<MapData, u64, u64>,
    /// Until when the kernel checks untracked processes against `held`.
    pub holding_until: aya::maps::Array<MapData, u64>,
    pub executables: BpfHashMap<MapData, ExeKey, u32>,
    pub uids: BpfHashMap<MapData, u32, u32>,
}

impl Sensor {
    /// Detaches everything. Each syscall tracepoint detach waits for an RCU grace period
    /// (about 100 ms here), so 37 of them one after another would hold up shutdown for seconds;
    /// in parallel they share the wait.
    pub fn detach(self) {
        let Self {
            ebpf,
            syscall_links,
            ..
        } = self;
        std::thread::scope(|scope| {
            for link in syscall_links {
                scope.spawn(move || drop(link));
            }
        });
        drop(ebpf);
    }

    /// A map of the loaded programs to try access with (an array of u64), for
    /// [`privileges::map_access_needs_cap_bpf`].
    pub fn probe_map_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self.ebpf.map("HOLDING_UNTIL")? {
            aya::maps::Map::Array(data) => Some(data.fd().as_fd()),
            _ => None,
        }
    }

    pub fn take_maps(&mut self) -> Result<SensorMaps, LoadError> {
        let mut take =
            |name: &'static str| self.ebpf.take_map(name).ok_or(LoadError::MissingMap(name));
        let events = take("EVENTS")?;
        let lost = take("LOST")?;
        let tracked = take("TRACKED")?;
        let (cgroups, executables, uids, held, holding_until) = (
            take("CGROUP_AGENTS")?,
            take("EXE_AGENTS")?,
            take("UID_AGENTS")?,
            take("HELD_CGROUPS")?,
            take("HOLDING_UNTIL")?,
        );
        let map_err = |name| move |source| LoadError::Map { name, source };
        Ok(SensorMaps {
            events: RingBuf::try_from(events).map_err(map_err("EVENTS"))?,
            lost: PerCpuArray::try_from(lost).map_err(map_err("LOST"))?,
            tracked: BpfHashMap::try_from(tracked).map_err(map_err("TRACKED"))?,
            selectors: SelectorMaps {
                cgroups: BpfHashMap::try_from(cgroups).map_err(map_err("CGROUP_AGENTS"))?,
                held: BpfHashMap::try_from(held).map_err(map_err("HELD_CGROUPS"))?,
                holding_until: aya::maps::Array::try_from(holding_until)
                    .map_err(map_err("HOLDING_UNTIL"))?,
                executables: BpfHashMap::try_from(executables).map_err(map_err("EXE_AGENTS"))?,
                uids: BpfHashMap::try_from(uids).map_err(map_err("UID_AGENTS"))?,
            },
        })
    }
}

/// The kernel object opened with this kernel's offsets and `config`'s settings: maps made,
/// no program loaded yet.
struct Prepared {
    ebpf: Ebpf,
    exit_events: Vec<ExitEvent>,
    /// The kernel has `bpf_task_pt_regs`; without it, `enter_save` keeps each call's arguments.
    task_regs: bool,
    /// Connect, bind and send addresses come from BPF LSM hooks.
    lsm_addresses: bool,
}

fn prepare(config: &Config, pend_execs: bool) -> Result<Prepared, LoadError> {
    if !privileges::can_load_bpf() {
        return Err(LoadError::NotPrivileged);
    }
    privileges::raise_memlock_limit();
    let btf = KernelBtf::from_sys_fs().map_err(LoadError::NoBtf)?;
    if !aya::sys::is_map_supported(aya::maps::MapType::RingBuf).unwrap_or(true) {
        return Err(LoadError::NoRingBuffer);
    }
    let offsets = resolve_offsets(&btf)?;
    let tracefs = ensure_tracefs()?;
    let syscall_args_offset = tracepoint_field_offset(&tracefs, "sys_enter_openat", "dfd")?;
    let syscall_ret_offset = tracepoint_field_offset(&tracefs, "sys_exit_openat", "ret")?;
    let variants = crate::kernel::features::variants();
    let task_regs = variants.task_regs;
    if !task_regs {
        tracing::info!(
            "this kernel has no bpf_task_pt_regs (Linux < 5.15): an enter program saves the \
             arguments of observed syscalls"
        );
    }
    let lsm_addresses = config.lsm_hooks && variants.lsm;
    if config.lsm_hooks && !lsm_addresses {
        tracing::info!(
            "this kernel has no BPF LSM (or `bpf` is not in its lsm= list): the addresses of \
             connects, binds and sends are read from user memory at the syscall's exit"
        );
    }
    let exit_events = syscall_exit_events(&tracefs);
    let syscall_map_len = exit_events.iter().map(|e| e.nr + 1).max().unwrap_or(1);
    let program_config = ProgramConfig {
        all_processes: u32::from(config.all_processes),
        args_max: config.args_max_bytes,
        exit_has_group_dead: u32::from(exit_passes_group_dead(&tracefs)),
        sensor_tgid: std::process::id(),
        syscall_args_offset,
        env_marker: u32::from(config.environment_marker.is_some()),
        hold_new_cgroups: u32::from(config.identities.is_some()),
        // Argv selectors may come with any reload of the manifest: with identities, always.
        unmatched_execs: u32::from(
            config.identities.is_some() || config.environment_marker.is_some(),
        ),
        pend_execs: u32::from(pend_execs),
        task_regs: u32::from(task_regs),
        wakeup_bytes: u64::from(config.wakeup_bytes),
        syscall_ret_offset,
        lsm_addresses: u32::from(lsm_addresses),
    };
    let mut ebpf = EbpfLoader::new()
        .override_global("OFFSETS", &offsets, true)
        .override_global("CONFIG", &program_config, true)
        .map_max_entries("EVENTS", config.ring_buffer_bytes)
        .map_max_entries("TRACKED", config.tracked_processes)
        .map_max_entries("SYSCALL_IDS", syscall_map_len)
        .load(PROGRAMS)?;
    fill_syscall_ids(&mut ebpf, &exit_events)?;
    Ok(Prepared {
        ebpf,
        exit_events,
        task_regs,
        lsm_addresses,
    })
}

/// The programs `load` loads, by kind, on this kernel.
fn programs_to_load(
    exit_events: &[ExitEvent],
    task_regs: bool,
    lsm_addresses: bool,
) -> Vec<(&'static str, ProgramKind)> {
    let mut names: Vec<_> = RAW_TRACEPOINTS
        .iter()
        .map(|&(name, _)| (name, ProgramKind::RawTracePoint))
        .collect();
    names.push(("exit_file", ProgramKind::TracePoint));
    names.push(("exit_net", ProgramKind::TracePoint));
    if exit_events.iter().any(|e| e.syscall == "connect") {
        names.push(("enter_connect", ProgramKind::TracePoint));
    }
    if !task_regs {
        names.push(("enter_save", ProgramKind::TracePoint));
    }
    if lsm_addresses {
        names.extend(
            LSM_ADDRESS_HOOKS
                .iter()
                .map(|&(name, hook)| (name, ProgramKind::Lsm(hook))),
        );
    }
    names
}

#[derive(Clone, Copy)]
enum ProgramKind {
    RawTracePoint,
    TracePoint,
    /// A BPF LSM program, on the hook named.
    Lsm(&'static str),
}

/// Loads one program into the kernel (the verifier runs here) and says what it cost.
fn load_program(
    ebpf: &mut Ebpf,
    name: &'static str,
    kind: ProgramKind,
    budgets: &[ProgramBudget],
    lsm_btf: &mut Option<aya::Btf>,
) -> Result<ProgramStats, LoadError> {
    let info = match kind {
        ProgramKind::RawTracePoint => {
            let p = program_of::<RawTracePoint>(ebpf, name)?;
            p.load().map_err(program_error(name))?;
            p.info()
        }
        ProgramKind::TracePoint => {
            let p = program_of::<TracePoint>(ebpf, name)?;
            p.load().map_err(program_error(name))?;
            p.info()
        }
        ProgramKind::Lsm(hook) => {
            // Parsed once for all the LSM programs: the kernel's BTF is megabytes.
            if lsm_btf.is_none() {
                *lsm_btf = Some(aya::Btf::from_sys_fs().map_err(LoadError::LsmBtf)?);
            }
            let btf = lsm_btf.as_ref().expect("parsed above");
            let p = program_of::<Lsm>(ebpf, name)?;
            p.load(hook, btf).map_err(program_error(name))?;
            p.info()
        }
    };
    let budget = budgets.iter().find(|b| b.name == name);
    let stats = ProgramStats {
        name,
        verified_insns: info.ok().and_then(|i| i.verified_instruction_count()),
        stack: budget.map(|b| b.combined),
        insns: budget.map(|b| b.insns),
    };
    tracing::debug!(
        program = name,
        stack_bytes = stats.stack,
        stack_limit = program_budget::STACK_LIMIT,
        insns = stats.insns,
        verified_insns = stats.verified_insns,
        "program loaded"
    );
    Ok(stats)
}

/// The programs' stack and size, from the compiled object (only reported: the verifier decides).
fn budgets() -> Vec<ProgramBudget> {
    program_budget::budgets(PROGRAMS).unwrap_or_else(|e| {
        tracing::warn!("cannot work out the programs' stack use: {e}");
        Vec::new()
    })
}

/// What loading one program cost the verifier. `stack` and `insns` come from the compiled
/// object ([`program_budget`]): the stack of the deepest call chain and the instructions of the
/// program with the functions it calls; `verified_insns` is the kernel's own count of the
/// instructions it processed (Linux >= 5.16 reports it).
#[derive(Clone, Debug, Serialize)]
pub struct ProgramStats {
    #[serde(skip)]
    pub name: &'static str,
    pub stack: Option<u32>,
    pub insns: Option<usize>,
    pub verified_insns: Option<u32>,
}

/// Loads and attaches the programs for `config`; `pend_execs`: enter execs the daemon may
/// still re-attribute as pending (for argv selectors and the environment marker).
pub fn load(config: &Config, pend_execs: bool) -> Result<Sensor, LoadError> {
    let Prepared {
        mut ebpf,
        exit_events,
        task_regs,
        lsm_addresses,
    } = prepare(config, pend_execs)?;
    let budgets = budgets();
    let mut lsm_btf = None;
    for (name, kind) in programs_to_load(&exit_events, task_regs, lsm_addresses) {
        load_program(&mut ebpf, name, kind, &budgets, &mut lsm_btf)?;
    }
    let mut programs = Vec::new();
    let mut syscall_links = Vec::new();
    for &(name, tracepoint) in RAW_TRACEPOINTS {
        program_of::<RawTracePoint>(&mut ebpf, name)?
            .attach(tracepoint)
            .map_err(program_error(name))?;
        programs.push(name);
    }
    for event in &exit_events {
        let program = program_of::<TracePoint>(&mut ebpf, event.exit)?;
        let link = program
            .attach("syscalls", &format!("sys_exit_{}", event.syscall))
            .map_err(program_error(event.exit))?;
        syscall_links.push(program.take_link(link).map_err(program_error(event.exit))?);
        programs.push(leak(format!("syscall:{}", event.syscall)));
        // connect's own enter program saves its arguments.
        if !task_regs && event.syscall != "connect" {
            let program = program_of::<TracePoint>(&mut ebpf, "enter_save")?;
            let link = program
                .attach("syscalls", &format!("sys_enter_{}", event.syscall))
                .map_err(program_error("enter_save"))?;
            syscall_links.push(
                program
                    .take_link(link)
                    .map_err(program_error("enter_save"))?,
            );
        }
    }
    if lsm_addresses {
        for &(name, hook) in LSM_ADDRESS_HOOKS {
            program_of::<Lsm>(&mut ebpf, name)?
                .attach()
                .map_err(program_error(name))?;
            programs.push(leak(format!("lsm:{hook}")));
        }
    }
    if exit_events.iter().any(|e| e.syscall == "connect") {
        let program = program_of::<TracePoint>(&mut ebpf, "enter_connect")?;
        let link = program
            .attach("syscalls", "sys_enter_connect")
            .map_err(program_error("enter_connect"))?;
        syscall_links.push(
            program
                .take_link(link)
                .map_err(program_error("enter_connect"))?,
        );
    }
    Ok(Sensor {
        ebpf,
        programs,
        syscall_links,
    })
}

/// Loads every program `run` would load, without attaching any, and says of each whether this
/// kernel's verifier accepts it and what it cost, or why not (for `agent-sensor probe`).
pub fn verify_programs(config: &Config) -> Result<Vec<Result<ProgramStats, LoadError>>, LoadError> {
    let Prepared {
        mut ebpf,
        exit_events,
        task_regs,
        lsm_addresses,
    } = prepare(config, true)?;
    let budgets = budgets();
    let mut lsm_btf = None;
    Ok(programs_to_load(&exit_events, task_regs, lsm_addresses)
        .into_iter()
        .map(|(name, kind)| load_program(&mut ebpf, name, kind, &budgets, &mut lsm_btf))
        .collect())
}

/// Program names are few and live as long as the process; `Sensor::programs` wants `&'static`.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

fn program_of<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, LoadError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LoadError::MissingMap(name))?
        .try_into()
        .map_err(program_error(name))
}

/// A program error: a refusal by the verifier becomes one line saying why and what to do,
/// with the end of the verifier's log kept for a debug-level log line.
fn program_error(name: &'static str) -> impl Fn(ProgramError) -> LoadError {
    move |source: ProgramError| match &source {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            tracing::debug!(program = name, "verifier log (end):\n{}", tail.join("\n"));
            let (why, action) = diagnose(&log, io_error);
            LoadError::Refused { name, why, action }
        }
        _ => LoadError::Program { name, source },
    }
}

/// The helpers the programs call that are newer than the ring buffer (Linux 5.8): number, name,
/// and the release that added it.
const NEWER_HELPERS: &[(u32, &str, &str)] = &[
    (158, "bpf_get_current_task_btf", "5.11"),
    (175, "bpf_task_pt_regs", "5.15"),
];

/// Why the verifier refused a program, from its log, and what an operator can do about it.
pub fn diagnose(log: &str, error: &std::io::Error) -> (String, String) {
    let report = "report `uname -r` and this message to the agent-sensor maintainers".to_owned();
    if let Some(line) = log.lines().find(|l| l.contains("combined stack size")) {
        let bytes = line
            .rsplit("is ")
            .next()
            .unwrap_or("")
            .trim_end_matches(". Too large");
        return (
            format!(
                "its deepest call chain needs {bytes} bytes of stack, more than the \
                 {STACK_LIMIT} this kernel allows (it gives BPF programs no private stack)",
                STACK_LIMIT = program_budget::STACK_LIMIT
            ),
            report,
        );
    }
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("unknown func") || l.contains("invalid func"))
    {
        let helper = line
            .split_whitespace()
            .find(|w| w.starts_with("bpf_") || w.contains('#'))
            .unwrap_or(line);
        // A kernel names only the helpers it knows: name the newer ones the programs use.
        let named = helper
            .rsplit('#')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(|id| NEWER_HELPERS.iter().find(|h| h.0 == id))
            .map_or_else(
                || helper.to_owned(),
                |(_, name, since)| format!("{name} (Linux {since}, helper {helper})"),
            );
        return (
            format!("this kernel lacks the BPF helper {named}"),
            "run the sensor on a kernel the README lists as supported".to_owned(),
        );
    }
    if log.contains("BPF program is too large") || log.contains("too many states") {
        return (
            "the verifier gave up: the program needs more than the 1,000,000 instructions it \
             checks at most"
                .to_owned(),
            report,
        );
    }
    let last = log
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .map(str::to_owned);
    match last {
        Some(line) => (format!("the verifier says: {line}"), report),
        None if error.raw_os_error() == Some(libc::EPERM) => (
            "permission denied with no verifier output: the kernel refuses this program type \
             (kernel lockdown, missing CAP_BPF/CAP_PERFMON, or a kernel built without it)"
                .to_owned(),
            "run `agent-sensor probe` to see which program types this kernel allows".to_owned(),
        ),
        None => (format!("{error}"), report),
    }
}

/// A followed syscall's exit tracepoint on this kernel.
struct ExitEvent {
    syscall: &'static str,
    id: u16,
    /// The syscall's number: the exit record's `__syscall_nr`.
    nr: u32,
    exit: &'static str,
}

/// The followed syscalls this kernel has an exit tracepoint for.
fn syscall_exit_events(tracefs: &std::path::Path) -> Vec<ExitEvent> {
    SYSCALLS
        .iter()
        .filter_map(|&(syscall, id, nr, exit)| {
            let dir = tracefs.join(format!("events/syscalls/sys_exit_{syscall}"));
            if !dir.exists() {
                tracing::debug!(
                    syscall,
                    "this kernel has no such syscall tracepoint; skipped"
                );
                return None;
            }
            Some(ExitEvent {
                syscall,
                id,
                nr: u32::try_from(nr).ok()?,
                exit,
            })
        })
        .collect()
}

/// Tells the exit programs which followed syscall each syscall number is.
fn fill_syscall_ids(ebpf: &mut Ebpf, events: &[ExitEvent]) -> Result<(), LoadError> {
    let name = "SYSCALL_IDS";
    let map = ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))?;
    let mut map: aya::maps::Array<_, u16> =
        aya::maps::Array::try_from(map).map_err(|source| LoadError::Map { name, source })?;
    for e in events {
        map.set(e.nr, e.id, 0)
            .map_err(|source| LoadError::Map { name, source })?;
    }
    Ok(())
}

/// Where a syscall tracepoint's record keeps `field` (the layout is the same for every
/// syscall: read from openat's): `dfd` of `sys_enter_openat` is the first argument, which
/// `enter_connect` (and `enter_save`, on kernels without `bpf_task_pt_regs`) read; `ret` of
/// `sys_exit_openat` is the return value, which the exit programs read on those kernels.
fn tracepoint_field_offset(
    tracefs: &std::path::Path,
    event: &'static str,
    field: &str,
) -> Result<u32, LoadError> {
    let format = fs::read_to_string(tracefs.join(format!("events/syscalls/{event}/format")))
        .map_err(|_| LoadError::TracepointFormat(event))?;
    format
        .lines()
        .find_map(|line| {
            let (decl, rest) = line.trim().strip_prefix("field:")?.split_once(';')?;
            (decl.rsplit(' ').next()? == field).then_some(())?;
            rest.trim()
                .strip_prefix("offset:")?
                .split(';')
                .next()?
                .parse()
                .ok()
        })
        .ok_or(LoadError::TracepointFormat(event))
}

/// Offsets of every kernel struct member the programs read.
pub fn resolve_offsets(btf: &KernelBtf) -> Result<KernelOffsets, LoadError> {
    let mut offsets = member_offsets(btf)?;
    let o = offsets;
    let (gather, at) = plan_reads(
        "struct dentry (d_parent, d_name)",
        &[
            (o.dentry_parent, 8),
            (o.dentry_name + o.qstr_len, 4),
            (o.dentry_name + o.qstr_name, 8),
        ],
    )?;
    offsets.dentry_read = DentryRead {
        gather,
        parent: at[0],
        name_len: at[1],
        name_ptr: at[2],
        _pad: 0,
    };
    let (gather, at) = plan_reads(
        "struct mount (mnt_parent, mnt_mountpoint, mnt.mnt_root)",
        &[
            (o.mount_parent, 8),
            (o.mount_mountpoint, 8),
            (o.mount_mnt + o.vfsmount_root, 8),
        ],
    )?;
    offsets.mount_read = MountRead {
        gather,
        parent: at[0],
        mountpoint: at[1],
        root: at[2],
        _pad: 0,
    };
    let (gather, at) = plan_reads(
        "struct file (f_path, f_inode, private_data, f_flags)",
        &[
            (o.file_path + o.path_mnt, 8),
            (o.file_path + o.path_dentry, 8),
            (o.file_inode, 8),
            (o.file_private, 8),
            (o.file_flags, 4),
        ],
    )?;
    offsets.file_read = FileRead {
        gather,
        path_mnt: at[0],
        path_dentry: at[1],
        inode: at[2],
        private: at[3],
        flags: at[4],
        _pad: 0,
    };
    Ok(offsets)
}

/// Plans how the programs copy `members` (offset, size) of one kernel object: the fewest 8-byte
/// aligned ranges of at most [`SEGMENT_MAX`] bytes that cover them (one on Linux 6.12+, where
/// the members sit together; `struct file` needs two on 5.10 and 6.1), and where each member
/// then lies in the copy. An error if this kernel spreads them over more than [`SEGMENTS`].
fn plan_reads<const N: usize>(
    what: &'static str,
    members: &[(u32, u32); N],
) -> Result<(Gather, [u32; N]), LoadError> {
    let mut order: Vec<usize> = (0..N).collect();
    order.sort_by_key(|&i| members[i].0);
    let mut gather = Gather::NONE;
    let mut at = [0; N];
    let mut used = 0;
    for i in order {
        let (offset, size) = members[i];
        let fits = used > 0 && {
            let w = gather.segments[used - 1];
            offset + size - w.start <= SEGMENT_MAX
        };
        if !fits {
            if used == SEGMENTS {
                let span = offset + size - gather.segments[0].start;
                return Err(LoadError::UnsupportedLayout { what, span });
            }
            gather.segments[used] = Window {
                start: offset & !7,
                len: 0,
            };
            used += 1;
        }
        let w = &mut gather.segments[used - 1];
        w.len = w.len.max(offset + size - w.start);
        at[i] = (used as u32 - 1) * SEGMENT_MAX + (offset - w.start);
    }
    Ok((gather, at))
}

fn member_offsets(btf: &KernelBtf) -> Result<KernelOffsets, LoadError> {
    let need = |what: &'static str, st: &str, path: &[&str]| {
        btf.member_offset(st, path)
            .map_err(|source| LoadError::MissingKernelMember { what, source })
    };
    // Optional members: kernels without CONFIG_AUDIT have no login uid.
    let optional = |st: &str, path: &[&str]| {
        btf.member_offset(st, path)
            .unwrap_or(sensor_common::OFFSET_ABSENT)
    };
    Ok(KernelOffsets {
        task_pid: need("task_struct.pid", "task_struct", &["pid"])?,
        task_tgid: need("task_struct.tgid", "task_struct", &["tgid"])?,
        task_real_parent: need("task_struct.real_parent", "task_struct", &["real_parent"])?,
        task_group_leader: need("task_struct.group_leader", "task_struct", &["group_leader"])?,
        task_start_boottime: need(
            "task_struct.start_boottime",
            "task_struct",
            &["start_boottime"],
        )?,
        task_mm: need("task_struct.mm", "task_struct", &["mm"])?,
        task_cred: need("task_struct.cred", "task_struct", &["cred"])?,
        task_nsproxy: need("task_struct.nsproxy", "task_struct", &["nsproxy"])?,
        task_thread_pid: need("task_struct.thread_pid", "task_struct", &["thread_pid"])?,
        task_loginuid: optional("task_struct", &["loginuid"]),
        task_sessionid: optional("task_struct", &["sessionid"]),
        task_exit_code: need("task_struct.exit_code", "task_struct", &["exit_code"])?,
        task_signal: need("task_struct.signal", "task_struct", &["signal"])?,
        signal_live: need("signal_struct.live", "signal_struct", &["live"])?,
        mm_arg_start: need("mm_struct.arg_start", "mm_struct", &["arg_start"])?,
        mm_arg_end: need("mm_struct.arg_end", "mm_struct", &["arg_end"])?,
        mm_env_start: need("mm_struct.env_start", "mm_struct", &["env_start"])?,
        mm_env_end: need("mm_struct.env_end", "mm_struct", &["env_end"])?,
        cred_euid: need("cred.euid", "cred", &["euid"])?,
        cred_egid: need("cred.egid", "cred", &["egid"])?,
        nsproxy_mnt_ns: need("nsproxy.mnt_ns", "nsproxy", &["mnt_ns"])?,
        mnt_ns_inum: need("mnt_namespace.ns.inum", "mnt_namespace", &["ns", "inum"])?,
        pid_level: need("pid.level", "pid", &["level"])?,
        pid_numbers: need("pid.numbers", "pid", &["numbers"])?,
        upid_size: btf
            .struct_size("upid")
            .map_err(|source| LoadError::MissingKernelMember {
                what: "struct upid",
                source,
            })?,
        upid_ns: need("upid.ns", "upid", &["ns"])?,
        pid_ns_inum: need("pid_namespace.ns.inum", "pid_namespace", &["ns", "inum"])?,
        bprm_filename: need("linux_binprm.filename", "linux_binprm", &["filename"])?,
        bprm_argc: need("linux_binprm.argc", "linux_binprm", &["argc"])?,
        bprm_file: need("linux_binprm.file", "linux_binprm", &["file"])?,
        task_fs: need("task_struct.fs", "task_struct", &["fs"])?,
        fs_pwd: need("fs_struct.pwd", "fs_struct", &["pwd"])?,
        fs_root: need("fs_struct.root", "fs_struct", &["root"])?,
        path_mnt: need("path.mnt", "path", &["mnt"])?,
        path_dentry: need("path.dentry", "path", &["dentry"])?,
        dentry_parent: need("dentry.d_parent", "dentry", &["d_parent"])?,
        dentry_name: need("dentry.d_name", "dentry", &["d_name"])?,
        qstr_name: need("qstr.name", "qstr", &["name"])?,
        qstr_len: need("qstr.len", "qstr", &["len"])?,
        dentry_inode: need("dentry.d_inode", "dentry", &["d_inode"])?,
        inode_ino: need("inode.i_ino", "inode", &["i_ino"])?,
        inode_sb: need("inode.i_sb", "inode", &["i_sb"])?,
        sb_dev: need("super_block.s_dev", "super_block", &["s_dev"])?,
        vfsmount_root: need("vfsmount.mnt_root", "vfsmount", &["mnt_root"])?,
        mount_mnt: need("mount.mnt", "mount", &["mnt"])?,
        mount_parent: need("mount.mnt_parent", "mount", &["mnt_parent"])?,
        mount_mountpoint: need("mount.mnt_mountpoint", "mount", &["mnt_mountpoint"])?,
        task_files: need("task_struct.files", "task_struct", &["files"])?,
        files_fdt: need("files_struct.fdt", "files_struct", &["fdt"])?,
        fdt_fd: need("fdtable.fd", "fdtable", &["fd"])?,
        fdt_max_fds: need("fdtable.max_fds", "fdtable", &["max_fds"])?,
        file_path: need("file.f_path", "file", &["f_path"])?,
        file_private: need("file.private_data", "file", &["private_data"])?,
        file_inode: need("file.f_inode", "file", &["f_inode"])?,
        file_flags: need("file.f_flags", "file", &["f_flags"])?,
        socket_sk: need("socket.sk", "socket", &["sk"])?,
        sk_family: need("sock.skc_family", "sock", &["__sk_common", "skc_family"])?,
        sk_num: need("sock.skc_num", "sock", &["__sk_common", "skc_num"])?,
        sk_dport: need("sock.skc_dport", "sock", &["__sk_common", "skc_dport"])?,
        sk_rcv_saddr: need(
            "sock.skc_rcv_saddr",
            "sock",
            &["__sk_common", "skc_rcv_saddr"],
        )?,
        sk_daddr: need("sock.skc_daddr", "sock", &["__sk_common", "skc_daddr"])?,
        sk_v6_rcv_saddr: optional("sock", &["__sk_common", "skc_v6_rcv_saddr"]),
        sk_v6_daddr: optional("sock", &["__sk_common", "skc_v6_daddr"]),
        // Bitfields before Linux 5.6: then absent, and reported as unknown.
        sk_type: optional("sock", &["sk_type"]),
        sk_protocol: optional("sock", &["sk_protocol"]),
        sk_err: need("sock.sk_err", "sock", &["sk_err"])?,
        cgroup_kn: need("cgroup.kn", "cgroup", &["kn"])?,
        cgroup_root: need("cgroup.root", "cgroup", &["root"])?,
        cgroup_root_hierarchy_id: need(
            "cgroup_root.hierarchy_id",
            "cgroup_root",
            &["hierarchy_id"],
        )?,
        kernfs_node_id: need("kernfs_node.id", "kernfs_node", &["id"])?,
        msghdr_name: optional("msghdr", &["msg_name"]),
        msghdr_namelen: optional("msghdr", &["msg_namelen"]),
        regs_args: syscall_arg_registers(btf, Arch::NATIVE)?,
        regs_nr: syscall_number_register(btf, Arch::NATIVE)?,
        regs_ret: return_value_register(btf, Arch::NATIVE)?,
        // Planned from the members above by `resolve_offsets`.
        ..KernelOffsets::ABSENT
    })
}

/// The kernel ABI whose `struct pt_regs` the exit programs read: the daemon's own, but a value
/// rather than a `cfg`, so tests check each layout against a real kernel's BTF on any host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    #[cfg(target_arch = "x86_64")]
    pub const NATIVE: Self = Self::X86_64;
    #[cfg(target_arch = "aarch64")]
    pub const NATIVE: Self = Self::Aarch64;
}

fn pt_regs_member(btf: &KernelBtf, what: &'static str) -> Result<u32, LoadError> {
    let member = what.strip_prefix("pt_regs.").expect("a pt_regs member");
    btf.member_offset("pt_regs", &[member])
        .map_err(|source| LoadError::MissingKernelMember { what, source })
}

/// Where `struct pt_regs` keeps the syscall's number (x86-64: `long orig_ax`; arm64:
/// `s32 syscallno`, so the programs read 4 bytes).
fn syscall_number_register(btf: &KernelBtf, arch: Arch) -> Result<u32, LoadError> {
    match arch {
        Arch::X86_64 => pt_regs_member(btf, "pt_regs.orig_ax"),
        Arch::Aarch64 => pt_regs_member(btf, "pt_regs.syscallno"),
    }
}

/// Where `struct pt_regs` keeps the return value once the syscall has run (arm64: x0).
fn return_value_register(btf: &KernelBtf, arch: Arch) -> Result<u32, LoadError> {
    match arch {
        Arch::X86_64 => pt_regs_member(btf, "pt_regs.ax"),
        Arch::Aarch64 => pt_regs_member(btf, "pt_regs.regs"),
    }
}

/// Where `struct pt_regs` keeps the six syscall arguments at syscall exit.
fn syscall_arg_registers(btf: &KernelBtf, arch: Arch) -> Result<[u32; 6], LoadError> {
    Ok(match arch {
        Arch::X86_64 => [
            pt_regs_member(btf, "pt_regs.di")?,
            pt_regs_member(btf, "pt_regs.si")?,
            pt_regs_member(btf, "pt_regs.dx")?,
            pt_regs_member(btf, "pt_regs.r10")?,
            pt_regs_member(btf, "pt_regs.r8")?,
            pt_regs_member(btf, "pt_regs.r9")?,
        ],
        // x0..x5 (`u64 regs[31]`), but x0 holds the return value by the time the exit program
        // runs; the kernel keeps argument 0 in orig_x0.
        Arch::Aarch64 => {
            let x = pt_regs_member(btf, "pt_regs.regs")?;
            [
                pt_regs_member(btf, "pt_regs.orig_x0")?,
                x + 8,
                x + 16,
                x + 24,
                x + 32,
                x + 40,
            ]
        }
    })
}

/// The tracefs mount point, mounting it at the usual place when nothing is mounted.
pub fn ensure_tracefs() -> Result<PathBuf, LoadError> {
    if let Some(path) = tracefs_path() {
        return Ok(path);
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; mount(2) has no other preconditions.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::NoTracefs(std::io::Error::last_os_error()));
    }
    Ok(PathBuf::from("/sys/kernel/tracing"))
}

/// Where tracefs is mounted, if it is.
pub fn tracefs_path() -> Option<PathBuf> {
    crate::enrich::snapshot::mount_point("tracefs")
}

/// Linux 6.16 added `group_dead` to `sched_process_exit`; its format file shows it.
fn exit_passes_group_dead(tracefs: &std::path::Path) -> bool {
    fs::read_to_string(tracefs.join("events/sched/sched_process_exit/format"))
        .is_ok_and(|f| f.contains("group_dead"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_why_in_words() {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        let (why, _) = diagnose(
            "Func#1 ('walk_path') is safe\ncombined stack size of 2 calls is 608. Too large\n",
            &eperm,
        );
        assert!(why.contains("608 bytes of stack"), "{why}");
        let (why, action) = diagnose(
            "10: (85) call unknown#158\ninvalid func unknown#158\n",
            &eperm,
        );
        assert!(
            why.contains("bpf_get_current_task_btf (Linux 5.11"),
            "{why}"
        );
        assert!(action.contains("README"), "{action}");
        let (why, _) = diagnose("", &eperm);
        assert!(why.contains("refuses this program type"), "{why}");
    }

    #[test]
    fn members_close_together_are_copied_with_one_read() {
        // struct dentry on Linux 6.18: d_parent at 24, d_name.len at 36, d_name.name at 40.
        let (g, at) = plan_reads("dentry", &[(24, 8), (36, 4), (40, 8)]).unwrap();
        assert_eq!(g.segments[0], Window { start: 24, len: 24 });
        assert_eq!(g.segments[1].len, 0);
        assert_eq!(at, [0, 12, 16]);
        // An unaligned first member still starts the range on an 8-byte boundary.
        let (g, at) = plan_reads("x", &[(12, 4), (20, 4)]).unwrap();
        assert_eq!(g.segments[0], Window { start: 8, len: 16 });
        assert_eq!(at, [4, 12]);
    }

    #[test]
    fn a_spread_out_struct_file_is_copied_with_two_reads() {
        // struct file on Debian's 5.10 and 6.1: f_path at 16, f_inode at 32, f_flags at 64,
        // private_data at 200 (192 bytes from f_path to its end).
        let (g, at) = plan_reads("file", &[(16, 8), (24, 8), (32, 8), (200, 8), (64, 4)]).unwrap();
        assert_eq!(g.segments[0], Window { start: 16, len: 52 });
        assert_eq!(g.segments[1], Window { start: 200, len: 8 });
        // Positions in the copy: the second range lands at SEGMENT_MAX.
        assert_eq!(at, [0, 8, 16, SEGMENT_MAX, 48]);
        // Each member keeps its alignment in the copy (u32_at relies on it).
        for (&(offset, _), &pos) in [(16, 8), (24, 8), (32, 8), (200, 8), (64, 4)]
            .iter()
            .zip(&at)
        {
            assert_eq!(offset % 8, pos % 8);
        }
    }

    #[test]
    fn members_spread_over_more_reads_than_planned_are_refused_with_what_they_are() {
        let err =
            plan_reads("struct file (f_path, ...)", &[(0, 8), (100, 8), (300, 8)]).unwrap_err();
        assert!(
            err.to_string().contains("struct file (f_path, ...)")
                && err.to_string().contains("308 bytes"),
            "{err}"
        );
    }

    #[test]
    fn the_running_kernel_has_planned_reads_and_argument_registers() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            panic!("this machine kind has /sys/kernel/btf/vmlinux");
        };
        if kernel_arch(&btf) != Arch::NATIVE {
            eprintln!(
                "skipped: the running kernel is {:?} but this test binary is {:?} (qemu-user, \
                 `cargo xtask cross`): the kernel's struct pt_regs is not the one this daemon \
                 would read; syscall_registers_match_the_running_kernels_abi checks it instead",
                kernel_arch(&btf),
                Arch::NATIVE
            );
            return;
        }
        let offsets = resolve_offsets(&btf).unwrap();
        for g in [
            offsets.dentry_read.gather,
            offsets.mount_read.gather,
            offsets.file_read.gather,
        ] {
            assert!(g.segments[0].len > 0, "{g:?}");
            for w in g.segments {
                assert!(w.len <= SEGMENT_MAX && w.start % 8 == 0, "{g:?}");
            }
        }
        let mut regs = offsets.regs_args;
        regs.sort_unstable();
        assert!(regs.windows(2).all(|p| p[0] < p[1]), "distinct registers");
    }

    /// `struct pt_regs` is user-visible ABI (`PTRACE_GETREGS`), fixed per architecture: x86-64
    /// (arch/x86/include/asm/ptrace.h) and arm64 (`user_pt_regs` regs[31], sp, pc, pstate, then
    /// orig_x0 and `s32 syscallno`, arch/arm64/include/asm/ptrace.h).
    fn expected_registers(arch: Arch) -> ([u32; 6], u32, u32) {
        match arch {
            // di, si, dx, r10, r8, r9; orig_ax; ax.
            Arch::X86_64 => ([112, 104, 96, 56, 72, 64], 120, 80),
            // orig_x0, x1..x5; syscallno; x0.
            Arch::Aarch64 => ([272, 8, 16, 24, 32, 40], 280, 0),
        }
    }

    fn check_registers(btf: &KernelBtf, arch: Arch) {
        let got = (
            syscall_arg_registers(btf, arch).unwrap(),
            syscall_number_register(btf, arch).unwrap(),
            return_value_register(btf, arch).unwrap(),
        );
        assert_eq!(got, expected_registers(arch), "{arch:?}");
    }

    #[test]
    fn syscall_registers_match_the_running_kernels_abi() {
        let btf = KernelBtf::from_sys_fs().expect("this machine kind has kernel BTF");
        check_registers(&btf, kernel_arch(&btf));
    }

    /// The running kernel's architecture, from its BTF: under qemu-user it is the host's,
    /// whatever the test binary's.
    fn kernel_arch(btf: &KernelBtf) -> Arch {
        if btf.member_offset("pt_regs", &["orig_ax"]).is_ok() {
            Arch::X86_64
        } else {
            Arch::Aarch64
        }
    }

    /// An arm64 kernel's BTF, extracted by `cargo xtask setup` from Debian's arm64 kernel package
    /// (`AGENT_SENSOR_ARM64_BTF`): the loader's arm64 choices against a real arm64 kernel.
    #[test]
    fn syscall_registers_match_an_arm64_kernels_btf() {
        let Some(path) = std::env::var_os("AGENT_SENSOR_ARM64_BTF") else {
            eprintln!(
                "skipped: AGENT_SENSOR_ARM64_BTF is not set (`cargo xtask test` sets it to an \
                 arm64 kernel's BTF)"
            );
            return;
        };
        let btf = KernelBtf::from_file(std::path::Path::new(&path)).unwrap();
        check_registers(&btf, Arch::Aarch64);
    }

    /// The syscall numbers come from the libc crate; check them against the kernel's own
    /// headers for this architecture (Debian's linux-libc-dev, or linux-libc-dev-arm64-cross).
    #[test]
    fn followed_syscall_numbers_match_the_kernel_headers() {
        #[cfg(target_arch = "x86_64")]
        let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
        #[cfg(target_arch = "aarch64")]
        let header = if std::path::Path::new("/usr/include/aarch64-linux-gnu").is_dir() {
            "/usr/include/asm-generic/unistd.h"
        } else {
            "/usr/aarch64-linux-gnu/include/asm-generic/unistd.h"
        };
        let text = fs::read_to_string(header).unwrap_or_else(|e| {
            panic!(
                "{header}: {e}; install Debian's linux-libc-dev (arm64: linux-libc-dev-arm64-cross)"
            )
        });
        // `#define __NR_openat 56`; the generic header also has `#define __NR_truncate
        // __NR3264_truncate` with `#define __NR3264_truncate 45`.
        let defines: std::collections::HashMap<&str, &str> = text
            .lines()
            .filter_map(|l| {
                let mut words = l.strip_prefix("#define ")?.split_whitespace();
                Some((words.next()?, words.next()?))
            })
            .collect();
        let number_of = |name: &str| {
            let value = defines.get(format!("__NR_{name}").as_str())?;
            let value = defines.get(value).unwrap_or(value);
            value.parse::<libc::c_long>().ok()
        };
        let mut unknown = Vec::new();
        for &(name, _, number, _) in SYSCALLS {
            match number_of(name) {
                Some(n) => assert_eq!(n, number, "{name} in {header}"),
                None => unknown.push(name),
            }
        }
        // Debian 12's headers are Linux 6.1's; fchmodat2 came in 6.6.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(SYS_FCHMODAT2, libc::SYS_fchmodat2);
        assert!(
            unknown.iter().all(|n| *n == "fchmodat2"),
            "missing from {header}: {unknown:?}"
        );
    }

    #[test]
    fn every_followed_syscall_number_is_distinct() {
        let mut numbers: Vec<_> = SYSCALLS.iter().map(|s| s.2).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), SYSCALLS.len());
    }
}
