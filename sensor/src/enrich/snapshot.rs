//! Processes that already run when the sensor starts, read from procfs, so that their later
//! activity has context and the trail says what was there at the start.
use std::{
    collections::HashMap,
    fs,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use crate::decode::split_args;

/// One process as procfs shows it.
#[derive(Clone, Debug)]
pub struct ProcSnapshot {
    /// Its process id.
    pub tgid: u32,
    /// Its parent's process id.
    pub ppid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
    /// Its `comm`.
    pub comm: Vec<u8>,
    /// Where `/proc/PID/exe` points; none for a kernel thread.
    pub executable: Option<Vec<u8>>,
    /// Its argv, from `/proc/PID/cmdline`.
    pub args: Vec<Vec<u8>>,
    /// Real user id.
    pub uid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Its cgroup v2 id, as the kernel's records give it; none without a cgroup2 mount.
    pub cgroup_id: Option<u64>,
    /// The executable's kernel key, for executable selectors.
    pub exe_key: Option<sensor_common::ExeKey>,
    /// The attribution the daemon gave it at start (from selectors or `--pid`).
    pub agent: Option<sensor_common::TrackedProcess>,
}

/// `comm` between the first '(' and the last ')' (comm may itself hold parentheses and spaces),
/// then the numeric fields.
fn parse_stat(stat: &[u8]) -> Option<(Vec<u8>, u32, u64)> {
    let open = stat.iter().position(|b| *b == b'(')?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    let comm = stat.get(open + 1..close)?.to_vec();
    let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, starttime field 22.
    let ppid = fields.get(1)?.parse().ok()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some((comm, ppid, start_ticks))
}

/// Start time in ticks of the process now holding `tgid`, if any.
pub(crate) fn start_ticks(tgid: u32) -> Option<u64> {
    parse_stat(&fs::read(format!("/proc/{tgid}/stat")).ok()?).map(|(_, _, t)| t)
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
pub(crate) fn cgroup2_root() -> Option<PathBuf> {
    mount_point("cgroup2")
}

/// Where a filesystem of type `fstype` is mounted (the first such mount).
pub(crate) fn mount_point(fstype: &str) -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut f = line.split(' ');
        let (_dev, dir, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == fstype).then(|| PathBuf::from(dir))
    })
}

/// The cgroup v2 id (directory inode) of a process, from its `0::/path` line.
fn cgroup_id(proc_dir: &Path, root: Option<&Path>) -> Option<u64> {
    let text = fs::read_to_string(proc_dir.join("cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = root?.join(path.trim_start_matches('/'));
    fs::metadata(dir).ok().map(|m| m.ino())
}

/// Reads one process; `None` when it vanished meanwhile (or is not a process directory).
pub(crate) fn read_process(tgid: u32, cgroup_root: Option<&Path>) -> Option<ProcSnapshot> {
    let dir = PathBuf::from(format!("/proc/{tgid}"));
    let (comm, ppid, start_ticks) = parse_stat(&fs::read(dir.join("stat")).ok()?)?;
    let status = procfs::process::Process::new(tgid as i32)
        .ok()?
        .status()
        .ok()?;
    Some(ProcSnapshot {
        tgid,
        ppid,
        start_ticks,
        comm,
        // Kernel threads have neither.
        executable: fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.as_os_str().as_bytes().to_vec()),
        args: split_args(&fs::read(dir.join("cmdline")).unwrap_or_default()),
        uid: status.ruid,
        euid: status.euid,
        gid: status.rgid,
        egid: status.egid,
        cgroup_id: cgroup_id(&dir, cgroup_root),
        exe_key: fs::metadata(dir.join("exe")).ok().map(|m| exe_key(&m)),
        agent: None,
    })
}

/// Every process in procfs, by tgid.
pub(crate) fn read_all() -> HashMap<u32, ProcSnapshot> {
    let root = cgroup2_root();
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tgid| read_process(tgid, root.as_deref()))
        .map(|p| (p.tgid, p))
        .collect()
}

/// `tgid`s of `roots` and all their descendants in `procs`, parents before children.
pub(crate) fn descendants<S: std::hash::BuildHasher>(
    procs: &HashMap<u32, ProcSnapshot, S>,
    roots: &[u32],
) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs.values() {
        children.entry(p.ppid).or_default().push(p.tgid);
    }
    let mut out: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i]) {
            out.extend(kids.iter().copied().filter(|k| !roots.contains(k)));
        }
        i += 1;
    }
    out
}

/// The kernel's key for a file: inode and the device number as the kernel encodes it
/// (`MKDEV(major, minor)` = major << 20 | minor), not the userspace `st_dev` encoding.
pub(crate) fn exe_key(meta: &std::fs::Metadata) -> sensor_common::ExeKey {
    let dev = meta.dev();
    // SAFETY: pure functions of an integer.
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    sensor_common::ExeKey {
        ino: meta.ino(),
        dev: (major << 20) | minor,
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_comm() {
        let stat = b"42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 1000 10";
        let (comm, ppid, start) = parse_stat(stat).unwrap();
        assert_eq!(comm, b"a) b (c)");
        assert_eq!((ppid, start), (7, 12345));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let p = read_process(me, cgroup2_root().as_deref()).expect("own /proc entry");
        assert_eq!(p.tgid, me);
        assert_eq!(p.ppid, std::os::unix::process::parent_id());
        assert!(p.executable.is_some());
        assert!(!p.args.is_empty());
        assert!(p.start_ticks > 0);
    }

    #[test]
    fn lists_descendants_parents_first() {
        let mk = |tgid, ppid| ProcSnapshot {
            tgid,
            ppid,
            start_ticks: 1,
            comm: vec![],
            executable: None,
            args: vec![],
            uid: 0,
            euid: 0,
            gid: 0,
            egid: 0,
            cgroup_id: None,
            exe_key: None,
            agent: None,
        };
        let procs: HashMap<u32, ProcSnapshot> =
            [mk(1, 0), mk(10, 1), mk(11, 10), mk(12, 11), mk(20, 1)]
                .into_iter()
                .map(|p| (p.tgid, p))
                .collect();
        let d = descendants(&procs, &[10]);
        assert_eq!(d, vec![10, 11, 12]);
    }
}
