//! Where the kernel keeps what the programs read: the offsets of every kernel struct member,
//! found in this kernel's BTF, and the few reads that copy the members of one object.
use sensor_common::{
    DentryRead, FileRead, Gather, KernelOffsets, MountRead, SEGMENT_MAX, SEGMENTS, Window,
};

use crate::kernel::btf::{BtfError, KernelBtf};

/// Why this kernel's struct layout cannot be handed to the programs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OffsetError {
    /// A member the programs read is not in this kernel's BTF.
    #[error("this kernel's BTF lacks {what}, which the process probes read ({source})")]
    MissingKernelMember {
        /// The member (`task_struct.pid`).
        what: &'static str,
        /// What the BTF lookup said.
        source: BtfError,
    },
    /// The members of one object are too far apart for the programs' reads.
    #[error(
        "this kernel's {what} members are spread over {span} bytes, more than the programs \
         copy in {SEGMENTS} reads of {SEGMENT_MAX} bytes; please report the kernel version \
         (`uname -r`)"
    )]
    UnsupportedLayout {
        /// The object and its members.
        what: &'static str,
        /// The bytes from the first read's start to the end of the member that did not fit.
        span: u32,
    },
}

/// Offsets of every kernel struct member the programs read.
pub(crate) fn resolve_offsets(btf: &KernelBtf) -> Result<KernelOffsets, OffsetError> {
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
) -> Result<(Gather, [u32; N]), OffsetError> {
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
                return Err(OffsetError::UnsupportedLayout { what, span });
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

fn member_offsets(btf: &KernelBtf) -> Result<KernelOffsets, OffsetError> {
    let need = |what: &'static str, st: &str, path: &[&str]| {
        btf.member_offset(st, path)
            .map_err(|source| OffsetError::MissingKernelMember { what, source })
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
            .map_err(|source| OffsetError::MissingKernelMember {
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
        inode_mode: need("inode.i_mode", "inode", &["i_mode"])?,
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
        bprm_buf: need("linux_binprm.buf", "linux_binprm", &["buf"])?,
        file_mode: need("file.f_mode", "file", &["f_mode"])?,
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
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "outside tests only the native architecture is ever chosen"
    )
)]
enum Arch {
    /// x86-64: arguments in di, si, dx, r10, r8, r9.
    X86_64,
    /// arm64: arguments in x0..x5 (x0 kept in orig_x0).
    Aarch64,
}

impl Arch {
    /// The architecture this daemon was built for.
    #[cfg(target_arch = "x86_64")]
    const NATIVE: Self = Self::X86_64;
    /// The architecture this daemon was built for.
    #[cfg(target_arch = "aarch64")]
    const NATIVE: Self = Self::Aarch64;
}

fn pt_regs_member(btf: &KernelBtf, what: &'static str) -> Result<u32, OffsetError> {
    let member = what.strip_prefix("pt_regs.").expect("a pt_regs member");
    btf.member_offset("pt_regs", &[member])
        .map_err(|source| OffsetError::MissingKernelMember { what, source })
}

/// Where `struct pt_regs` keeps the syscall's number (x86-64: `long orig_ax`; arm64:
/// `s32 syscallno`, so the programs read 4 bytes).
fn syscall_number_register(btf: &KernelBtf, arch: Arch) -> Result<u32, OffsetError> {
    match arch {
        Arch::X86_64 => pt_regs_member(btf, "pt_regs.orig_ax"),
        Arch::Aarch64 => pt_regs_member(btf, "pt_regs.syscallno"),
    }
}

/// Where `struct pt_regs` keeps the return value once the syscall has run (arm64: x0).
fn return_value_register(btf: &KernelBtf, arch: Arch) -> Result<u32, OffsetError> {
    match arch {
        Arch::X86_64 => pt_regs_member(btf, "pt_regs.ax"),
        Arch::Aarch64 => pt_regs_member(btf, "pt_regs.regs"),
    }
}

/// Where `struct pt_regs` keeps the six syscall arguments at syscall exit.
fn syscall_arg_registers(btf: &KernelBtf, arch: Arch) -> Result<[u32; 6], OffsetError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
