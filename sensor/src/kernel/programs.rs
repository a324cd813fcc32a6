//! The kernel programs as built: the compiled object, which program attaches where, and the
//! syscalls the exit programs follow (with this architecture's number for each).
use sensor_common::syscall as sc;

/// The kernel programs, built by build.rs.
pub(crate) static PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor"));

/// The kernel programs, for the feature probe (which loads its own copy).
pub(crate) fn program_object() -> &'static [u8] {
    PROGRAMS
}

/// Every raw-tracepoint program and the tracepoint it attaches to.
pub(crate) const RAW_TRACEPOINTS: &[(&str, &str)] = &[
    ("sched_process_exec", "sched_process_exec"),
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
    ("inet_sock_set_state", "inet_sock_set_state"),
    ("cgroup_mkdir", "cgroup_mkdir"),
    ("cgroup_attach_task", "cgroup_attach_task"),
];

/// The BPF LSM programs that keep the kernel's copy of a connect's, bind's or send's address
/// (`kernel.lsm_hooks`), and their hooks.
pub(crate) const LSM_ADDRESS_HOOKS: &[(&str, &str)] = &[
    ("lsm_socket_connect", "socket_connect"),
    ("lsm_socket_bind", "socket_bind"),
    ("lsm_socket_sendmsg", "socket_sendmsg"),
];

/// The BPF LSM programs that enforce `executables` and `files` rules in `enforce` mode
/// (`sensor-ebpf/src/lsm_policy.rs`), and their hooks.
pub(crate) const LSM_EXEC_POLICY: (&str, &str) = ("lsm_bprm_check", "bprm_check_security");
pub(crate) const LSM_FILE_POLICY: (&str, &str) = ("lsm_file_open", "file_open");

/// The egress enforcement programs (`sensor-ebpf/src/enforce.rs`) and where each hooks in,
/// attached at the cgroup v2 root by `egress`.
pub(crate) const EGRESS_PROGRAMS: &[(&str, &str)] = &[
    ("enforce_connect4", "connect4"),
    ("enforce_connect6", "connect6"),
    ("enforce_sendmsg4", "sendmsg4"),
    ("enforce_sendmsg6", "sendmsg6"),
];

/// The TLS capture's entry uprobes (`sensor-ebpf/src/tls.rs`), each attached by `tls_attach` to
/// the functions of a [`TlsLibrary`] whose arguments it reads; [`TLS_RETURN_PROBE`] follows
/// them all.
pub(crate) const TLS_ENTRY_PROBES: &[&str] =
    &["ssl_write", "ssl_write_ex", "ssl_read", "ssl_read_ex"];
/// The TLS capture's return uprobe.
pub(crate) const TLS_RETURN_PROBE: &str = "ssl_return";
/// The TLS capture's uprobe on the end of a connection object (attached with the others, to
/// every library file they are attached to, on each of a [`TlsLibrary`]'s `ends`).
pub(crate) const TLS_FREE_PROBE: &str = "ssl_free";
/// The TLS capture's uprobe and return uprobe on a flush of held-back sends (on each of a
/// [`TlsLibrary`]'s `flushes`): the sends inside are not copied again.
pub(crate) const TLS_FLUSH_PROBES: (&str, &str) = ("tls_flush", "tls_flush_return");

/// A TLS library's functions and the capture programs that follow them: the same programs
/// serve every library whose functions take (connection, buffer, ...) and return the count of
/// bytes moved (or, for the `_ex` forms, 1 and the count through their fourth argument).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TlsLibrary {
    /// Its name, for the log.
    pub(crate) name: &'static str,
    /// (entry program, function, whether the library must have it).
    pub(crate) calls: &'static [(&'static str, &'static str, bool)],
    /// The functions that end what a connection object carried ([`TLS_FREE_PROBE`] on each):
    /// (function, whether the library must have it).
    pub(crate) ends: &'static [(&'static str, bool)],
    /// The functions that send what earlier calls handed the library but it held back
    /// ([`TLS_FLUSH_PROBES`] on each, where the library has it): those calls were copied
    /// already, so the sends the flush makes through `calls` are not.
    pub(crate) flushes: &'static [&'static str],
}

/// OpenSSL (`libssl.so*`, or a program with it compiled in that exports its functions):
/// `SSL_write(ssl, buf, int num)` and `SSL_read` return the count as an `int`; their `_ex`
/// forms (OpenSSL >= 1.1.1) where they are. A connection object ends at `SSL_free`, and at
/// `SSL_clear`, which resets it for another connection (a program may reuse it so; OpenSSL
/// itself calls it when a connection's first handshake begins, before any plaintext).
pub(crate) const OPENSSL: TlsLibrary = TlsLibrary {
    name: "OpenSSL",
    calls: &[
        ("ssl_write", "SSL_write", true),
        ("ssl_write_ex", "SSL_write_ex", false),
        ("ssl_read", "SSL_read", true),
        ("ssl_read_ex", "SSL_read_ex", false),
    ],
    ends: &[("SSL_free", true), ("SSL_clear", false)],
    flushes: &[],
};

/// GnuTLS (`libgnutls.so*`): `gnutls_record_send(session, data, size_t size)` and
/// `gnutls_record_recv` return an `ssize_t`, the count or a negative error, read as OpenSSL's
/// `int` (a count below 2 GiB, one record's at most 16 KiB unless corked, fits its low 32
/// bits, and a negative error stays negative). So do the other calls that take the
/// plaintext's buffer second and return its count: `gnutls_record_send2(session, data, size,
/// pad, flags)` (3.6.3; `gnutls_record_send` jumps to it, and the thread's one call record
/// gives one capture), `gnutls_record_send_range(session, data, size, range)` and
/// `gnutls_record_recv_seq(session, data, size, seq)`. `gnutls_record_send_file` (3.7.4)
/// sends through `gnutls_record_send` (captured there, unless kernel TLS sends the file).
/// Not probed: `gnutls_record_recv_packet`, which hands out the library's own buffer, and
/// TLS 1.3 early data (`gnutls_record_send_early_data`, `gnutls_record_recv_early_data`),
/// which a rejected handshake sends again through `gnutls_record_send`.
/// `gnutls_deinit(session)` frees the session as `SSL_free` does the `SSL`. Between
/// `gnutls_record_cork(session)` and `gnutls_record_uncork(session, flags)`, each
/// `gnutls_record_send` only appends to the session's cork buffer (and is copied then);
/// `gnutls_record_uncork` sends the buffer through `gnutls_record_send` (called through the
/// library's own PLT, so its probe fires), which is not copied again.
pub(crate) const GNUTLS: TlsLibrary = TlsLibrary {
    name: "GnuTLS",
    calls: &[
        ("ssl_write", "gnutls_record_send", true),
        ("ssl_write", "gnutls_record_send2", false),
        ("ssl_write", "gnutls_record_send_range", false),
        ("ssl_read", "gnutls_record_recv", true),
        ("ssl_read", "gnutls_record_recv_seq", false),
    ],
    ends: &[("gnutls_deinit", true)],
    flushes: &["gnutls_record_uncork"],
};

/// The stdio (pipe) capture's programs and the syscall tracepoints each attaches to (loaded
/// and attached only when an agent turns stdio capture on, see `sensor-ebpf/src/pipe.rs`).
/// `preadv2(fd, iov, iovcnt, pos_l, pos_h, flags)` and `pwritev2` take their first three
/// arguments as `readv` and `writev` do, and on a pipe work only at the current position
/// (-1: the kernel then runs them as `readv` and `writev` with flags; any other position is
/// `ESPIPE`, a failed call, not copied). `pread64`/`pwrite64` and `preadv`/`pwritev` always
/// fail on a pipe. `vmsplice(fd, iov, nr_segs, flags)` is a `writev` on a pipe's write end
/// and a `readv` on its read end. `splice`, `tee` and `sendfile` (the `sendfile64` tracepoint
/// on 64-bit architectures) leave a hole of what they moved in each captured pipe end's
/// stream. `copy_file_range` always fails on a pipe (`EINVAL`: regular files only).
pub(crate) const PIPE_PROGRAMS: &[(&str, &str)] = &[
    ("enter_pipe_write", "sys_enter_write"),
    ("enter_pipe_read", "sys_enter_read"),
    ("enter_pipe_writev", "sys_enter_writev"),
    ("enter_pipe_readv", "sys_enter_readv"),
    ("enter_pipe_writev", "sys_enter_pwritev2"),
    ("enter_pipe_readv", "sys_enter_preadv2"),
    ("exit_pipe", "sys_exit_write"),
    ("exit_pipe", "sys_exit_read"),
    ("exit_pipe_vectored", "sys_exit_writev"),
    ("exit_pipe_vectored", "sys_exit_readv"),
    ("exit_pipe_vectored", "sys_exit_pwritev2"),
    ("exit_pipe_vectored", "sys_exit_preadv2"),
    ("enter_pipe_vmsplice", "sys_enter_vmsplice"),
    ("exit_pipe_vectored", "sys_exit_vmsplice"),
    ("enter_pipe_splice", "sys_enter_splice"),
    ("exit_pipe_moved", "sys_exit_splice"),
    ("enter_pipe_tee", "sys_enter_tee"),
    ("exit_pipe_moved", "sys_exit_tee"),
    ("enter_pipe_sendfile", "sys_enter_sendfile64"),
    ("exit_pipe_moved", "sys_exit_sendfile64"),
];

/// Followed syscalls: name, `syscall` constant, this architecture's number for it, and the
/// shared exit program that reports it (which reads the arguments itself, see
/// `sensor-ebpf/src/syscalls.rs`). arm64 has none of the legacy path calls (`open`, ...).
pub(crate) const SYSCALLS: &[(&str, u16, libc::c_long, &str)] = &[
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = std::fs::read_to_string(header).unwrap_or_else(|e| {
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
