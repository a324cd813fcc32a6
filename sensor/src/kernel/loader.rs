//! Loads and attaches the kernel programs: it checks privileges, hands this kernel's struct
//! offsets and the settings to the programs as globals, loads each program (the verifier runs
//! here) and attaches it to its tracepoint or hook, and takes out the maps the daemon reads.
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupSockAddr, Lsm, ProgramError, RawTracePoint, TracePoint, UProbe, lsm::LsmLinkId,
        raw_trace_point::RawTracePointLinkId, trace_point::TracePointLink,
    },
};
use sensor_common::{CgroupAgent, ExeKey, ProgramConfig, TrackedProcess};

use serde::Serialize;

use crate::{
    config::Config,
    kernel::btf::{BtfError, KernelBtf},
    kernel::features::{self, Variants},
    kernel::offsets::{OffsetError, resolve_offsets},
    kernel::privileges,
    kernel::program_budget::{self, ProgramBudget},
    kernel::programs::{
        EGRESS_PROGRAMS, LSM_ADDRESS_HOOKS, LSM_EXEC_POLICY, LSM_FILE_POLICY, PIPE_PROGRAMS,
        PROGRAMS, RAW_TRACEPOINTS, TLS_ENTRY_PROBES, TLS_FLUSH_PROBES, TLS_FREE_PROBE,
        TLS_RETURN_PROBE,
    },
    kernel::refusal::{Refusal, diagnose},
    kernel::tracefs::{
        ExitEvent, TracefsError, ensure_tracefs, exit_passes_group_dead, syscall_exit_events,
        tracepoint_field_offset,
    },
};

/// Why the programs could not be loaded or attached; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// This binary was built without its kernel programs (no bpf-linker at build time).
    #[error(
        "this agent-sensor was built without its kernel programs (bpf-linker was missing when \
         it was built); run `cargo xtask setup`, then build it again"
    )]
    NotBuilt,
    /// Neither root nor the capabilities that load BPF programs.
    #[error(
        "agent-sensor needs root (or CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN) to load its \
         kernel programs; run it as root or grant those capabilities"
    )]
    NotPrivileged,
    /// A kernel that charges maps to the locked-memory limit, which cannot be raised.
    #[error(transparent)]
    Memlock(#[from] privileges::Missing),
    /// No readable kernel BTF, which the offsets come from.
    #[error(
        "kernel BTF is unavailable ({0}); agent-sensor needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (/sys/kernel/btf/vmlinux)"
    )]
    NoBtf(BtfError),
    /// No BPF ring buffer (before Linux 5.8).
    #[error(
        "this kernel has no BPF ring buffer (Linux 5.8 added it), which the programs report \
         through; run the sensor on Linux 5.8 or later"
    )]
    NoRingBuffer,
    /// aya cannot read the kernel's BTF, which the LSM programs load against.
    #[error("the kernel's BTF cannot be read for the LSM hooks ({0})")]
    LsmBtf(aya::BtfError),
    /// The kernel's struct layout cannot be handed to the programs.
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    /// tracefs is missing or unreadable.
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    /// The kernel object could not be opened (maps made, globals set).
    #[error("loading the kernel programs failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program failed other than by the verifier's refusal (attaching, for instance).
    #[error("program {name}: {source}")]
    Program {
        /// The program.
        name: &'static str,
        /// What aya reported.
        source: ProgramError,
    },
    /// The verifier refused a program.
    #[error(
        "this kernel's verifier refused program {name}: {refusal} \
         (RUST_LOG=debug shows the verifier's log)"
    )]
    Refused {
        /// The program.
        name: &'static str,
        /// Why, and what to do.
        refusal: Refusal,
    },
    /// An `executables` or `files` rule in `enforce` mode, on a kernel without BPF LSM.
    #[error(
        "{rules} rules in mode enforce need BPF LSM, and this kernel has none: {why}; or set \
         those rules to mode kill (the process is killed as a forbidden exec or open completes, \
         before it returns to the program: after the fact) or audit"
    )]
    NoBpfLsm {
        /// Which rules: `executables`, `files`, or both.
        rules: &'static str,
        /// Why the kernel has no BPF LSM ([`features::bpf_lsm_absence`]).
        why: String,
    },
    /// No cgroup v2 hierarchy to attach the egress enforcement programs to.
    #[error(
        "egress enforcement needs the cgroup v2 hierarchy mounted (/sys/fs/cgroup), to attach \
         its programs at its root"
    )]
    NoCgroup2,
    /// Fail-closed enforcement could not be pinned (bpffs absent and not mountable, or a pin
    /// refused): the message says what and what to do.
    #[error("{0}")]
    FailClosed(String),
    /// The object lacks a map or program the loader expects.
    #[error("map or program {0} is missing from the kernel programs (a build problem)")]
    MissingMap(&'static str),
    /// A map could not be taken out or filled.
    #[error("map {name}: {source}")]
    Map {
        /// The map.
        name: &'static str,
        /// What aya reported.
        source: aya::maps::MapError,
    },
}

/// Loaded, attached programs and the maps the daemon reads.
pub(crate) struct Sensor {
    /// Owns the programs and their links: dropping it detaches everything.
    pub(crate) ebpf: Ebpf,
    /// What is attached, for the start record: raw tracepoints by name, `syscall:<name>` and
    /// `lsm:<hook>`.
    pub(crate) programs: Vec<&'static str>,
    /// The syscall tracepoint attachments (by tracepoint, `sys_exit_openat`), owned here so
    /// `detach` can end them in parallel.
    syscall_links: Vec<(String, TracePointLink)>,
    /// The raw tracepoint attachments (owned by their programs), by program, for pinning.
    raw_links: Vec<(&'static str, RawTracePointLinkId)>,
    /// The BPF LSM enforcement programs' attachments (owned by their programs), by program, for
    /// pinning.
    lsm_links: Vec<(&'static str, LsmLinkId)>,
}

/// Maps taken out of the loaded object for the source and the attribution stage.
pub(crate) struct SensorMaps {
    /// The ring buffer the programs report through.
    pub(crate) events: RingBuf<MapData>,
    /// Per CPU, the records the programs could not write (the ring buffer was full).
    pub(crate) lost: PerCpuArray<MapData, u64>,
    /// The processes the programs follow, by tgid.
    pub(crate) tracked: BpfHashMap<MapData, u32, TrackedProcess>,
    /// The selector maps, for the attribution stage.
    pub(crate) selectors: SelectorMaps,
}

/// The kernel's selector maps: agent numbers by cgroup id, executable and uid, and the new
/// cgroups waiting for a decision.
pub struct SelectorMaps {
    /// Agent numbers by cgroup id.
    pub(crate) cgroups: BpfHashMap<MapData, u64, CgroupAgent>,
    /// New cgroups waiting for a decision.
    pub(crate) held: BpfHashMap<MapData, u64, u64>,
    /// Until when the kernel checks untracked processes against `held`.
    pub(crate) holding_until: aya::maps::Array<MapData, u64>,
    /// Agent numbers by executable.
    pub(crate) executables: BpfHashMap<MapData, ExeKey, u32>,
    /// Agent numbers by uid.
    pub(crate) uids: BpfHashMap<MapData, u32, u32>,
}

impl Sensor {
    /// Detaches everything. Each syscall tracepoint detach waits for an RCU grace period
    /// (about 100 ms here), so 37 of them one after another would hold up shutdown for seconds;
    /// in parallel they share the wait.
    pub(crate) fn detach(self) {
        let Self {
            ebpf,
            syscall_links,
            ..
        } = self;
        std::thread::scope(|scope| {
            for (_, link) in syscall_links {
                scope.spawn(move || drop(link));
            }
        });
        drop(ebpf);
    }

    /// Takes the links of the syscall tracepoints named (`sys_exit_openat`, ...) out of the
    /// sensor's keeping, for fail-closed enforcement to pin.
    pub(crate) fn take_syscall_links(&mut self, names: &[String]) -> Vec<(String, TracePointLink)> {
        let (taken, rest) = std::mem::take(&mut self.syscall_links)
            .into_iter()
            .partition(|(name, _)| names.contains(name));
        self.syscall_links = rest;
        taken
    }

    /// Takes the exec program's link (`sched_process_exec`: its executables kill check) out of
    /// its program's keeping, for fail-closed enforcement to pin.
    pub(crate) fn take_exec_link(&mut self) -> Vec<(&'static str, RawTracePointLinkId)> {
        let (exec, rest) = std::mem::take(&mut self.raw_links)
            .into_iter()
            .partition(|(name, _)| *name == "sched_process_exec");
        self.raw_links = rest;
        exec
    }

    /// Takes the BPF LSM enforcement programs' links that `lsm` names (`lsm_bprm_check`,
    /// `lsm_file_open`) out of their programs' keeping, for fail-closed enforcement to pin.
    pub(crate) fn take_lsm_links(&mut self, lsm: LsmPolicy) -> Vec<(&'static str, LsmLinkId)> {
        let wanted = |name: &str| {
            (lsm.exec && name == LSM_EXEC_POLICY.0) || (lsm.files && name == LSM_FILE_POLICY.0)
        };
        let (taken, rest) = std::mem::take(&mut self.lsm_links)
            .into_iter()
            .partition(|(name, _)| wanted(name));
        self.lsm_links = rest;
        taken
    }

    /// Takes the links of the programs that keep the attribution map true without the daemon
    /// (fork: a child inherits its parent's agent; exit: a process that ends is forgotten), out
    /// of their programs' keeping, for fail-closed enforcement to pin.
    pub(crate) fn take_process_tracking_links(
        &mut self,
    ) -> Vec<(&'static str, RawTracePointLinkId)> {
        let (tracking, rest) = std::mem::take(&mut self.raw_links)
            .into_iter()
            .partition(|(name, _)| matches!(*name, "sched_process_fork" | "sched_process_exit"));
        self.raw_links = rest;
        tracking
    }

    /// A map of the loaded programs to try access with (an array of u64), for
    /// [`privileges::map_access_needs_cap_bpf`].
    pub(crate) fn probe_map_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self.ebpf.map("HOLDING_UNTIL")? {
            aya::maps::Map::Array(data) => Some(data.fd().as_fd()),
            _ => None,
        }
    }

    /// Takes the maps the daemon reads out of the loaded object (once).
    pub(crate) fn take_maps(&mut self) -> Result<SensorMaps, LoadError> {
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

/// `variants`: what the feature probe found, if it already ran; probed here otherwise.
fn prepare(
    config: &Config,
    pend_execs: bool,
    kill: KillChecks,
    variants: Option<Variants>,
) -> Result<Prepared, LoadError> {
    if PROGRAMS.is_empty() {
        return Err(LoadError::NotBuilt);
    }
    if !privileges::can_load_bpf() {
        return Err(LoadError::NotPrivileged);
    }
    privileges::raise_memlock_limit()?;
    let btf = KernelBtf::from_sys_fs().map_err(LoadError::NoBtf)?;
    if !aya::sys::is_map_supported(aya::maps::MapType::RingBuf).unwrap_or(true) {
        return Err(LoadError::NoRingBuffer);
    }
    let offsets = resolve_offsets(&btf)?;
    let tracefs = ensure_tracefs()?;
    let syscall_args_offset = tracepoint_field_offset(&tracefs, "sys_enter_openat", "dfd")?;
    let syscall_ret_offset = tracepoint_field_offset(&tracefs, "sys_exit_openat", "ret")?;
    let variants = variants.unwrap_or_else(features::variants);
    let task_regs = variants.task_regs;
    if !task_regs {
        tracing::info!(
            "this kernel has no bpf_task_pt_regs (Linux < 5.15): an enter program saves the \
             arguments of observed syscalls"
        );
    }
    let lsm_addresses = config.lsm_hooks && variants.lsm;
    if !variants.lsm {
        tracing::info!(
            "this kernel has no BPF LSM ({}): connect, bind and send addresses are read from \
             user memory at the syscall's exit, and executables and files rules in mode \
             enforce are refused (mode kill works for both)",
            features::bpf_lsm_absence()
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
        exec_kill: u32::from(kill.exec),
        file_kill: u32::from(kill.files),
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
/// `tls`: the TLS capture programs too (attached later, by `tls_attach`); `egress`: the
/// egress enforcement programs too (attached later, by `egress`); `pipes`: the stdio capture's.
#[allow(
    clippy::fn_params_excessive_bools,
    reason = "each says whether one family of programs loads"
)]
fn programs_to_load(
    exit_events: &[ExitEvent],
    task_regs: bool,
    lsm_addresses: bool,
    tls: bool,
    egress: bool,
    pipes: bool,
    lsm_policy: LsmPolicy,
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
    if tls {
        names.extend(
            TLS_ENTRY_PROBES
                .iter()
                .map(|&name| (name, ProgramKind::UProbe)),
        );
        names.push((TLS_RETURN_PROBE, ProgramKind::UProbe));
        names.push((TLS_FREE_PROBE, ProgramKind::UProbe));
        names.push((TLS_FLUSH_PROBES.0, ProgramKind::UProbe));
        names.push((TLS_FLUSH_PROBES.1, ProgramKind::UProbe));
    }
    if pipes {
        for &(name, _) in PIPE_PROGRAMS {
            if !names.iter().any(|(n, _)| *n == name) {
                names.push((name, ProgramKind::TracePoint));
            }
        }
    }
    for (wanted, (name, hook)) in [
        (lsm_policy.exec, LSM_EXEC_POLICY),
        (lsm_policy.files, LSM_FILE_POLICY),
    ] {
        if wanted {
            names.push((name, ProgramKind::Lsm(hook)));
        }
    }
    if egress {
        names.extend(
            EGRESS_PROGRAMS
                .iter()
                .map(|&(name, _)| (name, ProgramKind::CgroupSockAddr)),
        );
    }
    names
}

/// Which kill checks run (rules in `kill` mode): the exec program's against `executables`
/// rules (`exec`), the file syscalls' exit program's against `files` rules (`files`); the
/// checks are in the programs always, and verified away where off.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KillChecks {
    pub(crate) exec: bool,
    pub(crate) files: bool,
}

/// Which BPF LSM enforcement programs load: some agent's `executables` (`exec`) or `files`
/// rule is in `enforce` mode.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LsmPolicy {
    pub(crate) exec: bool,
    pub(crate) files: bool,
}

impl LsmPolicy {
    pub(crate) fn any(self) -> bool {
        self.exec || self.files
    }

    fn rules(self) -> &'static str {
        match (self.exec, self.files) {
            (true, true) => "executables and files",
            (true, false) => "executables",
            _ => "files",
        }
    }
}

#[derive(Clone, Copy)]
enum ProgramKind {
    RawTracePoint,
    TracePoint,
    /// A BPF LSM program, on the hook named.
    Lsm(&'static str),
    /// A uprobe or uretprobe (the TLS capture).
    UProbe,
    /// A cgroup sock_addr program (egress enforcement).
    CgroupSockAddr,
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
        ProgramKind::UProbe => {
            let p = program_of::<UProbe>(ebpf, name)?;
            p.load().map_err(program_error(name))?;
            p.info()
        }
        ProgramKind::CgroupSockAddr => {
            let p = program_of::<CgroupSockAddr>(ebpf, name)?;
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
pub(crate) struct ProgramStats {
    /// The program.
    #[serde(skip)]
    pub(crate) name: &'static str,
    /// Bytes of stack of its deepest call chain.
    pub(crate) stack: Option<u32>,
    /// Its instructions, with the functions it calls.
    pub(crate) insns: Option<usize>,
    /// The instructions the verifier processed.
    pub(crate) verified_insns: Option<u32>,
}

/// Loads and attaches the programs for `config`; `pend_execs`: enter execs the daemon may
/// still re-attribute as pending (for argv selectors and the environment marker); `tls`: load
/// the TLS capture programs (an agent opted in), which `tls_attach` attaches; `egress`: load
/// the egress enforcement programs (an agent's egress rule is enforced), which `egress`
/// attaches; `kill`: execs are checked against `executables` rules in kill mode, successful
/// opens against `files` rules in kill mode (`exec_kill` fills their policy); `pipes`: load and attach the stdio capture programs (an
/// agent opted in); `lsm_policy`: the BPF LSM programs that enforce executables and files
/// rules (refused, saying why, on a kernel without BPF LSM).
#[allow(
    clippy::fn_params_excessive_bools,
    reason = "each says whether one family of programs or checks loads"
)]
pub(crate) fn load(
    config: &Config,
    pend_execs: bool,
    tls: bool,
    egress: bool,
    kill: KillChecks,
    pipes: bool,
    lsm_policy: LsmPolicy,
) -> Result<Sensor, LoadError> {
    // Probed here (not by `prepare`) only to refuse before anything loads.
    let variants = (lsm_policy.any() && !PROGRAMS.is_empty() && privileges::can_load_bpf())
        .then(features::variants);
    if variants.is_some_and(|v| !v.lsm) {
        return Err(LoadError::NoBpfLsm {
            rules: lsm_policy.rules(),
            why: features::bpf_lsm_absence(),
        });
    }
    let Prepared {
        mut ebpf,
        exit_events,
        task_regs,
        lsm_addresses,
    } = prepare(config, pend_execs, kill, variants)?;
    let budgets = budgets();
    let mut lsm_btf = None;
    for (name, kind) in programs_to_load(
        &exit_events,
        task_regs,
        lsm_addresses,
        tls,
        egress,
        pipes,
        lsm_policy,
    ) {
        load_program(&mut ebpf, name, kind, &budgets, &mut lsm_btf)?;
    }
    let mut programs = Vec::new();
    let mut syscall_links = Vec::new();
    let mut raw_links = Vec::new();
    for &(name, tracepoint) in RAW_TRACEPOINTS {
        let id = program_of::<RawTracePoint>(&mut ebpf, name)?
            .attach(tracepoint)
            .map_err(program_error(name))?;
        raw_links.push((name, id));
        programs.push(name);
    }
    for event in &exit_events {
        let program = program_of::<TracePoint>(&mut ebpf, event.exit)?;
        let tracepoint = format!("sys_exit_{}", event.syscall);
        let link = program
            .attach("syscalls", &tracepoint)
            .map_err(program_error(event.exit))?;
        syscall_links.push((
            tracepoint,
            program.take_link(link).map_err(program_error(event.exit))?,
        ));
        programs.push(leak(format!("syscall:{}", event.syscall)));
        // connect's own enter program saves its arguments.
        if !task_regs && event.syscall != "connect" {
            let program = program_of::<TracePoint>(&mut ebpf, "enter_save")?;
            let tracepoint = format!("sys_enter_{}", event.syscall);
            let link = program
                .attach("syscalls", &tracepoint)
                .map_err(program_error("enter_save"))?;
            syscall_links.push((
                tracepoint,
                program
                    .take_link(link)
                    .map_err(program_error("enter_save"))?,
            ));
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
    // Attached before the daemon fills their tries: until then they refuse nothing.
    let mut lsm_links = Vec::new();
    for (wanted, (name, hook)) in [
        (lsm_policy.exec, LSM_EXEC_POLICY),
        (lsm_policy.files, LSM_FILE_POLICY),
    ] {
        if wanted {
            let id = program_of::<Lsm>(&mut ebpf, name)?
                .attach()
                .map_err(program_error(name))?;
            lsm_links.push((name, id));
            programs.push(leak(format!("lsm:{hook}")));
        }
    }
    if exit_events.iter().any(|e| e.syscall == "connect") {
        let program = program_of::<TracePoint>(&mut ebpf, "enter_connect")?;
        let link = program
            .attach("syscalls", "sys_enter_connect")
            .map_err(program_error("enter_connect"))?;
        syscall_links.push((
            "sys_enter_connect".to_owned(),
            program
                .take_link(link)
                .map_err(program_error("enter_connect"))?,
        ));
    }
    if pipes {
        for &(name, tracepoint) in PIPE_PROGRAMS {
            let program = program_of::<TracePoint>(&mut ebpf, name)?;
            let link = program
                .attach("syscalls", tracepoint)
                .map_err(program_error(name))?;
            syscall_links.push((
                tracepoint.to_owned(),
                program.take_link(link).map_err(program_error(name))?,
            ));
        }
        programs.push("syscall:pipes");
    }
    Ok(Sensor {
        ebpf,
        programs,
        syscall_links,
        raw_links,
        lsm_links,
    })
}

/// Loads every program `run` would load, without attaching any, and says of each whether this
/// kernel's verifier accepts it and what it cost, or why not (for `agent-sensor probe`, which
/// has probed the `variants` already).
pub(crate) fn verify_programs(
    config: &Config,
    variants: Variants,
) -> Result<Vec<Result<ProgramStats, LoadError>>, LoadError> {
    let Prepared {
        mut ebpf,
        exit_events,
        task_regs,
        lsm_addresses,
    } = prepare(
        config,
        true,
        KillChecks {
            exec: true,
            files: true,
        },
        Some(variants),
    )?;
    let budgets = budgets();
    let mut lsm_btf = None;
    let lsm_policy = LsmPolicy {
        exec: variants.lsm,
        files: variants.lsm,
    };
    Ok(programs_to_load(
        &exit_events,
        task_regs,
        lsm_addresses,
        true,
        true,
        true,
        lsm_policy,
    )
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
            let refusal = diagnose(&log, io_error);
            LoadError::Refused { name, refusal }
        }
        _ => LoadError::Program { name, source },
    }
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
