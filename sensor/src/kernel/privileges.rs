//! Privileges: whether the programs can be loaded, and dropping every capability the daemon no
//! longer needs once they are attached (it keeps reading procfs, nothing more).
use std::io;

/// Capability numbers (`linux/capability.h`): reading any file and directory.
pub(crate) const CAP_DAC_READ_SEARCH: u32 = 2;
/// Reading other processes' `/proc/<pid>` entries (`exe`, `environ`).
pub(crate) const CAP_SYS_PTRACE: u32 = 19;
/// Everything, BPF included on kernels before `CAP_BPF`.
pub(crate) const CAP_SYS_ADMIN: u32 = 21;
/// Tracing programs (with `CAP_BPF`).
pub(crate) const CAP_PERFMON: u32 = 38;
/// Loading BPF programs and making maps (Linux 5.8).
pub(crate) const CAP_BPF: u32 = 39;

/// What the daemon keeps after loading: reading any process's procfs entries (`exe`,
/// `cmdline`, `cgroup` of other users' processes) needs these two.
pub(crate) const KEPT_AFTER_LOAD: &[u32] = &[CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE];

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as capget(2) requires for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc == 0 {
        Ok(data)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn has(data: &[CapData; 2], cap: u32) -> bool {
    data[(cap / 32) as usize].effective & (1 << (cap % 32)) != 0
}

/// Whether this process may load and attach tracing programs.
pub(crate) fn can_load_bpf() -> bool {
    capget().is_ok_and(|d| has(&d, CAP_SYS_ADMIN) || (has(&d, CAP_BPF) && has(&d, CAP_PERFMON)))
}

/// A capability `run` needs and this process lacks; the message names it and says why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Missing {
    /// Loading and attaching the programs.
    #[error(
        "agent-sensor needs root (or CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN) to load its \
         kernel programs, and lacks {0}; run it as root or grant the capabilities \
         docs/operations.md lists"
    )]
    Load(String),
    /// Kept after loading.
    #[error(
        "agent-sensor lacks {0}, which it keeps after loading to read other processes' /proc \
         entries; grant it (docs/operations.md, \"Privileges\")"
    )]
    Kept(&'static str),
    /// This kernel charges maps to the locked-memory limit and it cannot be raised.
    #[error(
        "agent-sensor lacks CAP_SYS_RESOURCE, which this kernel (before 5.11, it charges BPF \
         maps to RLIMIT_MEMLOCK) needs to raise the locked-memory limit ({0}); grant it, or \
         raise the limit (LimitMEMLOCK=infinity, ulimit -l unlimited)"
    )]
    Memlock(String),
}

/// The names of the capabilities that [`KEPT_AFTER_LOAD`] holds.
fn kept_name(cap: u32) -> &'static str {
    match cap {
        CAP_DAC_READ_SEARCH => "CAP_DAC_READ_SEARCH",
        CAP_SYS_PTRACE => "CAP_SYS_PTRACE",
        _ => "a capability",
    }
}

/// Whether this thread holds `cap` (effective).
pub(crate) fn has_cap(cap: u32) -> bool {
    capget().is_ok_and(|d| has(&d, cap))
}

/// Checks, before anything is loaded, that this process holds every capability `run`
/// needs: loading (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) and those it keeps after
/// loading. Naming the missing one here is clearer than the EPERM a later step would get.
pub fn check_run() -> Result<(), Missing> {
    let data = capget().unwrap_or_default();
    if !(has(&data, CAP_SYS_ADMIN) || (has(&data, CAP_BPF) && has(&data, CAP_PERFMON))) {
        let lacking: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
            .into_iter()
            .filter(|&(cap, _)| !has(&data, cap))
            .map(|(_, name)| name)
            .collect();
        return Err(Missing::Load(lacking.join(" and ")));
    }
    match KEPT_AFTER_LOAD.iter().find(|&&cap| !has(&data, cap)) {
        Some(&cap) => Err(Missing::Kept(kept_name(cap))),
        None => Ok(()),
    }
}

/// Older kernels (before 5.11) charge BPF maps to RLIMIT_MEMLOCK, newer ones to the cgroup:
/// on an older kernel a limit that cannot be raised (no CAP_SYS_RESOURCE) is an error
/// naming it; on a newer one it does not matter.
pub(crate) fn raise_memlock_limit() -> Result<(), Missing> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if kernel_release().is_some_and(|version| version < (5, 11)) {
        return Err(Missing::Memlock(error.to_string()));
    }
    tracing::debug!("could not raise RLIMIT_MEMLOCK (not needed on this kernel): {error}");
    Ok(())
}

/// The running kernel's major and minor version.
fn kernel_release() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Leaves this thread's effective and permitted sets holding only `keep` (no inheritable).
fn capset(keep: &[u32]) -> io::Result<()> {
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let slot = &mut data[(cap / 32) as usize];
        slot.effective |= 1 << (cap % 32);
        slot.permitted |= 1 << (cap % 32);
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and a two-element data array, as capset(2) requires for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Drops every capability but `keep` from the effective, permitted, inheritable and bounding
/// sets, and sets no_new_privs, so neither this process nor anything it could run regains them.
pub(crate) fn drop_all_but(keep: &[u32]) -> io::Result<()> {
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last_cap {
        if !keep.contains(&cap) {
            // SAFETY: prctl with integer arguments. EINVAL for caps this kernel lacks is fine.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        }
    }
    capset(keep)?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel refuses map access (through descriptors already held) to a process
/// without `CAP_BPF`. Kernels before 6.5 check it at the `bpf()` syscall's entry for every
/// command while `kernel.unprivileged_bpf_disabled` is set (Debian's default), so there the
/// daemon must keep `CAP_BPF` to update its selector maps and read the loss counters; newer
/// kernels check only when programs are loaded and maps made. Tried for real: a child process
/// keeps only [`KEPT_AFTER_LOAD`] and looks up key 0 of `map_fd`, an array of u64.
///
/// Call it before any thread exists (it forks).
pub(crate) fn map_access_needs_cap_bpf(map_fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;

    // SAFETY: fork with no other thread; the child makes raw syscalls only, then _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let (key, mut value) = (0u32, 0u64);
        // union bpf_attr for BPF_MAP_LOOKUP_ELEM: map_fd, pad, key, value, flags.
        let attr: [u64; 4] = [
            u64::from(map_fd.as_raw_fd() as u32),
            (&raw const key) as u64,
            (&raw mut value) as u64,
            0,
        ];
        // SAFETY: raw syscalls with valid pointers; _exit never returns.
        unsafe {
            if capset(KEPT_AFTER_LOAD).is_err() {
                libc::_exit(2);
            }
            let rc = libc::syscall(libc::SYS_bpf, 1, attr.as_ptr(), size_of_val(&attr));
            let refused = rc != 0 && *libc::__errno_location() == libc::EPERM;
            libc::_exit(i32::from(refused));
        }
    }
    if pid < 0 {
        return false;
    }
    let mut status = 0;
    // SAFETY: waiting for the child just made.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1
}
