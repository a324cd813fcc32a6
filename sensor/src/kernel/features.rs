//! What this kernel offers the sensor, for `agent-sensor probe` and for start-up checks. The
//! baseline (BTF, raw tracepoints, ring buffer) is required; the rest is used where present.
use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::MapType,
    programs::{BtfTracePoint, FEntry, KProbe, Lsm, ProgramError, ProgramType, TracePoint},
    sys::{is_map_supported, is_program_supported},
};
use serde::Serialize;

use crate::kernel::{btf::KernelBtf, programs, tracefs};

#[derive(Clone, Debug, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    /// Needed for the sensor to run at all.
    pub required: bool,
    /// The sensor attaches programs of this kind today.
    pub used: bool,
    pub detail: String,
}

fn feature(
    name: &'static str,
    required: bool,
    used: bool,
    result: Result<String, String>,
) -> Feature {
    let (available, detail) = match result {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Feature {
        name,
        available,
        required,
        used: used && available,
        detail,
    }
}

fn program(kind: ProgramType) -> Result<String, String> {
    match is_program_supported(kind) {
        Ok(true) => Ok("programs load".to_owned()),
        Ok(false) => Err("the kernel refuses this program type".to_owned()),
        Err(e) => Err(format!("the kernel refuses this program type ({e})")),
    }
}

fn path_exists(path: &str, yes: &str, no: &str) -> Result<String, String> {
    if Path::new(path).exists() {
        Ok(yes.to_owned())
    } else {
        Err(no.to_owned())
    }
}

/// Probes every feature; needs privileges for the program-load checks.
pub fn probe() -> Vec<Feature> {
    let btf = match KernelBtf::from_sys_fs() {
        Ok(btf) => Ok(format!(
            "/sys/kernel/btf/vmlinux, {} types",
            btf.type_count()
        )),
        Err(e) => Err(format!("{e}; the kernel needs CONFIG_DEBUG_INFO_BTF=y")),
    };
    let tracefs = match tracefs::tracefs_path() {
        Some(p) => Ok(format!("mounted at {}", p.display())),
        None => Err("not mounted: mount -t tracefs nodev /sys/kernel/tracing".to_owned()),
    };
    let uprobe = path_exists(
        "/sys/bus/event_source/devices/uprobe",
        "uprobe PMU present",
        "no uprobe PMU (CONFIG_UPROBE_EVENTS off)",
    );
    let lsm_list = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let mut probes = ProbePrograms::load();
    let lsm = probes.lsm().and_then(|ok| {
        if lsm_list.split(',').any(|l| l.trim() == "bpf") {
            Ok(ok)
        } else {
            Err(format!(
                "bpf is not in the active LSM list ({})",
                lsm_list.trim()
            ))
        }
    });
    let ringbuf = match is_map_supported(MapType::RingBuf) {
        Ok(true) => Ok("BPF_MAP_TYPE_RINGBUF (Linux >= 5.8)".to_owned()),
        Ok(false) => Err("no ring buffer maps (Linux < 5.8)".to_owned()),
        Err(e) => Err(format!("no ring buffer maps ({e})")),
    };
    let task_regs = probes.task_regs();
    let cgroup2 = match crate::enrich::snapshot::cgroup2_root() {
        Some(p) => Ok(format!("cgroup2 at {}", p.display())),
        None => Err("no cgroup2 hierarchy mounted".to_owned()),
    };
    vec![
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
    ]
}

/// The sensor's own empty probe programs (sensor-ebpf's `probes` module), loaded and attached
/// for real: the only sure test of what a kernel allows.
struct ProbePrograms {
    ebpf: Result<(Ebpf, Btf), String>,
}

fn refused(e: &ProgramError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    format!("refused: {text}")
}

impl ProbePrograms {
    fn load() -> Self {
        let ebpf = Btf::from_sys_fs()
            .map_err(|e| format!("no kernel BTF: {e}"))
            .and_then(|btf| {
                EbpfLoader::new()
                    .map_max_entries("EVENTS", 64 * 1024)
                    .load(programs::program_object())
                    .map(|ebpf| (ebpf, btf))
                    .map_err(|e| format!("cannot load the probe programs: {e}"))
            });
        Self { ebpf }
    }

    fn with<P>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut P, &Btf) -> Result<(), ProgramError>,
    ) -> Result<String, String>
    where
        for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let (ebpf, btf) = self.ebpf.as_mut().map_err(|e| e.clone())?;
        let program = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("{name} missing from the build"))?;
        let program: &mut P = program.try_into().map_err(|e| refused(&e))?;
        f(program, btf).map_err(|e| refused(&e))?;
        Ok("loads and attaches".to_owned())
    }

    fn tp_btf(&mut self) -> Result<String, String> {
        self.with("probe_tp_btf", |p: &mut BtfTracePoint, btf| {
            p.load("sched_process_exec", btf)?;
            p.attach().map(drop)
        })
    }

    fn fentry(&mut self) -> Result<String, String> {
        self.with("probe_fentry", |p: &mut FEntry, btf| {
            p.load("do_exit", btf)?;
            p.attach().map(drop)
        })
    }

    fn lsm(&mut self) -> Result<String, String> {
        self.with("probe_lsm", |p: &mut Lsm, btf| {
            p.load("bprm_check_security", btf)?;
            p.attach().map(drop)
        })
    }

    fn task_regs(&mut self) -> Result<String, String> {
        self.with("probe_task_regs", |p: &mut TracePoint, _| p.load())
            .map(|_| {
                "bpf_task_pt_regs and bpf_get_current_task_btf: syscall arguments read at exit \
                 from the saved registers"
                    .to_owned()
            })
            .map_err(|e| {
                format!(
                    "{e}; without them (Linux < 5.15) an enter program saves each observed \
                     call's arguments"
                )
            })
    }

    fn kprobe(&mut self) -> Result<String, String> {
        self.with("probe_kprobe", |p: &mut KProbe, _| {
            p.load()?;
            p.attach("do_exit", 0).map(drop)
        })
    }
}

/// What the loader picks its program variants by, probed with one load of the probe programs.
pub struct Variants {
    /// BPF LSM programs load and attach here, with `bpf` among the active LSMs.
    pub lsm: bool,
    /// The kernel has the helpers the exit programs read saved registers with
    /// (`bpf_task_pt_regs`, `bpf_get_current_task_btf`: Linux >= 5.15).
    pub task_regs: bool,
}

pub fn variants() -> Variants {
    let mut probes = ProbePrograms::load();
    let active = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    Variants {
        lsm: active.split(',').any(|l| l.trim() == "bpf") && probes.lsm().is_ok(),
        task_regs: probes.task_regs().is_ok(),
    }
}

/// The missing required features, if any.
pub fn missing_required(features: &[Feature]) -> Vec<&Feature> {
    features
        .iter()
        .filter(|f| f.required && !f.available)
        .collect()
}
