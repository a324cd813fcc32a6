//! What this kernel offers the sensor, for `agent-sensor probe` and for start-up checks. The
//! baseline (BTF, raw tracepoints, ring buffer) is required; the rest is used where present.
use std::{path::Path, sync::Arc};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::MapType,
    programs::{BtfTracePoint, FEntry, KProbe, Lsm, ProgramError, ProgramType, TracePoint},
    sys::{is_map_supported, is_program_supported},
};
use serde::Serialize;

use crate::kernel::{
    btf::{BtfError, KernelBtf},
    programs, tracefs,
};

/// One thing the sensor may use, and whether this kernel offers it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Feature {
    /// Its name in `agent-sensor probe`'s output.
    pub(crate) name: &'static str,
    /// This kernel offers it.
    pub(crate) available: bool,
    /// Needed for the sensor to run at all.
    pub(crate) required: bool,
    /// The sensor attaches programs of this kind today.
    pub(crate) used: bool,
    /// What was found, or why the kernel lacks it and what to do about it.
    pub(crate) detail: String,
}

/// Why this kernel lacks a feature, in words an operator can act on: the `detail` of an
/// unavailable [`Feature`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unavailable {
    /// No readable `/sys/kernel/btf/vmlinux`.
    #[error("{0}; the kernel needs CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf(BtfError),
    /// tracefs is not mounted.
    #[error("not mounted: mount -t tracefs nodev /sys/kernel/tracing")]
    NoTracefs,
    /// No uprobe PMU in sysfs.
    #[error("no uprobe PMU (CONFIG_UPROBE_EVENTS off)")]
    NoUprobePmu,
    /// BPF LSM programs load, but `bpf` is not among the active LSMs (the `lsm=` list).
    #[error("bpf is not in the active LSM list ({active})")]
    BpfLsmInactive {
        /// The active LSMs, as `/sys/kernel/security/lsm` lists them.
        active: String,
    },
    /// The kernel has no BPF ring buffer maps.
    #[error("no ring buffer maps (Linux < 5.8)")]
    NoRingBuffer,
    /// Probing for ring buffer maps failed.
    #[error("no ring buffer maps ({0})")]
    RingBufferProbe(aya::sys::SyscallError),
    /// The kernel refuses programs of this type.
    #[error("the kernel refuses this program type")]
    ProgramTypeRefused,
    /// Probing for the program type failed.
    #[error("the kernel refuses this program type ({0})")]
    ProgramTypeProbe(ProgramError),
    /// No cgroup v2 hierarchy is mounted.
    #[error("no cgroup2 hierarchy mounted")]
    NoCgroup2,
    /// The sensor's probe programs could not be loaded, so nothing they test is known.
    #[error(transparent)]
    ProbesNotLoaded(Arc<ProbeLoadError>),
    /// A probe program is missing from the build.
    #[error("{0} missing from the build")]
    ProbeMissing(&'static str),
    /// The kernel refused to load or attach a probe program.
    #[error("refused: {}", error_chain(.0))]
    Refused(ProgramError),
    /// The exit programs' helpers are missing: the enter programs save the arguments instead.
    #[error(
        "{0}; without them (Linux < 5.15) an enter program saves each observed call's arguments"
    )]
    NoTaskRegs(Box<Unavailable>),
}

/// Why the probe programs could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeLoadError {
    /// aya cannot read the kernel's BTF, which the BTF-based probes load against.
    #[error("no kernel BTF: {0}")]
    NoBtf(aya::BtfError),
    /// The kernel refused the probe programs' object.
    #[error("cannot load the probe programs: {0}")]
    Load(aya::EbpfError),
    /// This binary was built without its kernel programs (no bpf-linker at build time).
    #[error(
        "this agent-sensor was built without its kernel programs; run `cargo xtask setup`, \
         then build it again"
    )]
    NotBuilt,
}

fn feature(
    name: &'static str,
    required: bool,
    used: bool,
    result: Result<String, Unavailable>,
) -> Feature {
    let (available, detail) = match result {
        Ok(d) => (true, d),
        Err(e) => (false, e.to_string()),
    };
    Feature {
        name,
        available,
        required,
        used: used && available,
        detail,
    }
}

fn program(kind: ProgramType) -> Result<String, Unavailable> {
    match is_program_supported(kind) {
        Ok(true) => Ok("programs load".to_owned()),
        Ok(false) => Err(Unavailable::ProgramTypeRefused),
        Err(e) => Err(Unavailable::ProgramTypeProbe(e)),
    }
}

/// The active LSMs (`/sys/kernel/security/lsm`), empty when unreadable.
fn active_lsms() -> String {
    std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default()
}

/// `bpf` is among the active LSMs.
fn bpf_lsm_active(active: &str) -> bool {
    active.split(',').any(|l| l.trim() == "bpf")
}

/// What [`probe`] found: every feature, and the program variants the loader would pick.
pub(crate) struct Findings {
    /// Every feature, required or not, and whether this kernel offers it.
    pub(crate) features: Vec<Feature>,
    /// The variants, from the same load of the probe programs (for
    /// [`loader::verify_programs`](crate::kernel::loader::verify_programs)).
    pub(crate) variants: Variants,
}

/// Probes every feature; needs privileges for the program-load checks.
pub(crate) fn probe() -> Findings {
    let btf = match KernelBtf::from_sys_fs() {
        Ok(btf) => Ok(format!(
            "/sys/kernel/btf/vmlinux, {} types",
            btf.type_count()
        )),
        Err(e) => Err(Unavailable::NoBtf(e)),
    };
    let tracefs = match tracefs::tracefs_path() {
        Some(p) => Ok(format!("mounted at {}", p.display())),
        None => Err(Unavailable::NoTracefs),
    };
    let uprobe = if Path::new("/sys/bus/event_source/devices/uprobe").exists() {
        Ok("uprobe PMU present".to_owned())
    } else {
        Err(Unavailable::NoUprobePmu)
    };
    let lsm_list = active_lsms();
    let mut probes = ProbePrograms::load();
    let lsm = probes.lsm().and_then(|ok| {
        if bpf_lsm_active(&lsm_list) {
            Ok(ok)
        } else {
            Err(Unavailable::BpfLsmInactive {
                active: lsm_list.trim().to_owned(),
            })
        }
    });
    let ringbuf = match is_map_supported(MapType::RingBuf) {
        Ok(true) => Ok("BPF_MAP_TYPE_RINGBUF (Linux >= 5.8)".to_owned()),
        Ok(false) => Err(Unavailable::NoRingBuffer),
        Err(e) => Err(Unavailable::RingBufferProbe(e)),
    };
    let task_regs = probes.task_regs();
    let cgroup2 = match crate::enrich::snapshot::cgroup2_root() {
        Some(p) => Ok(format!("cgroup2 at {}", p.display())),
        None => Err(Unavailable::NoCgroup2),
    };
    // As `variants` decides them.
    let variants = Variants {
        lsm: lsm.is_ok(),
        task_regs: task_regs.is_ok(),
    };
    let features = vec![
        feature("btf", true, true, btf),
        feature("tracefs", true, true, tracefs),
        feature(
            "raw_tracepoint",
            true,
            true,
            program(ProgramType::RawTracePoint),
        ),
        feature("tracepoint", false, false, program(ProgramType::TracePoint)),
        feature("tp_btf", false, false, probes.tp_btf()),
        feature("kprobe", false, false, probes.kprobe()),
        feature("fentry", false, false, probes.fentry()),
        feature("lsm", false, true, lsm),
        feature("uprobe", false, false, uprobe),
        feature("ring_buffer", true, true, ringbuf),
        feature("task_regs", false, true, task_regs),
        feature("cgroup_v2", false, false, cgroup2),
    ];
    Findings { features, variants }
}

/// The sensor's own empty probe programs (sensor-ebpf's `probes` module), loaded and attached
/// for real: the only sure test of what a kernel allows.
struct ProbePrograms {
    ebpf: Result<(Ebpf, Btf), Arc<ProbeLoadError>>,
}

/// An error and its sources, on one line.
fn error_chain(e: &ProgramError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl ProbePrograms {
    fn load() -> Self {
        if programs::program_object().is_empty() {
            return Self {
                ebpf: Err(Arc::new(ProbeLoadError::NotBuilt)),
            };
        }
        let ebpf = Btf::from_sys_fs()
            .map_err(ProbeLoadError::NoBtf)
            .and_then(|btf| {
                EbpfLoader::new()
                    .map_max_entries("EVENTS", 64 * 1024)
                    .load(programs::program_object())
                    .map(|ebpf| (ebpf, btf))
                    .map_err(ProbeLoadError::Load)
            })
            .map_err(Arc::new);
        Self { ebpf }
    }

    fn with<P>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&mut P, &Btf) -> Result<(), ProgramError>,
    ) -> Result<String, Unavailable>
    where
        for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let (ebpf, btf) = self
            .ebpf
            .as_mut()
            .map_err(|e| Unavailable::ProbesNotLoaded(Arc::clone(e)))?;
        let program = ebpf
            .program_mut(name)
            .ok_or(Unavailable::ProbeMissing(name))?;
        let program: &mut P = program.try_into().map_err(Unavailable::Refused)?;
        f(program, btf).map_err(Unavailable::Refused)?;
        Ok("loads and attaches".to_owned())
    }

    fn tp_btf(&mut self) -> Result<String, Unavailable> {
        self.with("probe_tp_btf", |p: &mut BtfTracePoint, btf| {
            p.load("sched_process_exec", btf)?;
            p.attach().map(drop)
        })
    }

    fn fentry(&mut self) -> Result<String, Unavailable> {
        self.with("probe_fentry", |p: &mut FEntry, btf| {
            p.load("do_exit", btf)?;
            p.attach().map(drop)
        })
    }

    fn lsm(&mut self) -> Result<String, Unavailable> {
        self.with("probe_lsm", |p: &mut Lsm, btf| {
            p.load("bprm_check_security", btf)?;
            p.attach().map(drop)
        })
    }

    fn task_regs(&mut self) -> Result<String, Unavailable> {
        self.with("probe_task_regs", |p: &mut TracePoint, _| p.load())
            .map(|_| {
                "bpf_task_pt_regs and bpf_get_current_task_btf: syscall arguments read at exit \
                 from the saved registers"
                    .to_owned()
            })
            .map_err(|e| Unavailable::NoTaskRegs(Box::new(e)))
    }

    fn kprobe(&mut self) -> Result<String, Unavailable> {
        self.with("probe_kprobe", |p: &mut KProbe, _| {
            p.load()?;
            p.attach("do_exit", 0).map(drop)
        })
    }
}

/// What the loader picks its program variants by, probed with one load of the probe programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Variants {
    /// BPF LSM programs load and attach here, with `bpf` among the active LSMs.
    pub(crate) lsm: bool,
    /// The kernel has the helpers the exit programs read saved registers with
    /// (`bpf_task_pt_regs`, `bpf_get_current_task_btf`: Linux >= 5.15).
    pub(crate) task_regs: bool,
}

/// Why this kernel has no BPF LSM, and what to do, in one phrase for the start-up line and the
/// refusal of `enforce` rules: `bpf` missing from the active LSMs (then the `lsm=` list to boot
/// with, named in full), or the kernel refusing BPF LSM programs.
pub(crate) fn bpf_lsm_absence() -> String {
    let active = active_lsms();
    let active = active.trim();
    if active.is_empty() {
        return "the active LSMs cannot be read (/sys/kernel/security/lsm: mount securityfs); \
                the kernel needs `bpf` among them: boot it with `lsm=...,bpf`"
            .to_owned();
    }
    if !bpf_lsm_active(active) {
        return format!(
            "`bpf` is not among the active LSMs ({active}): boot the kernel with \
             `lsm={active},bpf`"
        );
    }
    match ProbePrograms::load().lsm() {
        Ok(_) => "BPF LSM programs load here".to_owned(),
        Err(e) => format!(
            "`bpf` is among the active LSMs ({active}), but this kernel does not let BPF LSM \
             programs load: {e}"
        ),
    }
}

/// Probes the variants alone (what `run` needs), with one load of the probe programs.
pub(crate) fn variants() -> Variants {
    let mut probes = ProbePrograms::load();
    Variants {
        lsm: bpf_lsm_active(&active_lsms()) && probes.lsm().is_ok(),
        task_regs: probes.task_regs().is_ok(),
    }
}

/// The missing required features, if any.
pub(crate) fn missing_required(features: &[Feature]) -> Vec<&Feature> {
    features
        .iter()
        .filter(|f| f.required && !f.available)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_feature_says_why_and_what_to_do() {
        let missing = Unavailable::NoTaskRegs(Box::new(Unavailable::ProbeMissing("probe_x")));
        assert_eq!(
            missing.to_string(),
            "probe_x missing from the build; without them (Linux < 5.15) an enter program saves \
             each observed call's arguments"
        );
        let lsm = Unavailable::BpfLsmInactive {
            active: "capability,yama".to_owned(),
        };
        assert_eq!(
            lsm.to_string(),
            "bpf is not in the active LSM list (capability,yama)"
        );
        assert!(bpf_lsm_active("lockdown,capability, bpf"));
        assert!(!bpf_lsm_active("lockdown,capability,bpfx"));
    }
}
