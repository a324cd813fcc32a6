//! Uprobes after the capability drop. Some kernels (6.18 here, `perf_event_paranoid` 2) open a
//! uprobe's perf event only for `CAP_SYS_ADMIN`, which the daemon drops after loading; TLS
//! libraries that agents map later could then not be probed. So, before the drop, the daemon
//! forks this opener: a process that keeps `CAP_SYS_ADMIN` alone, dies with the daemon, and
//! does one thing: open a uprobe perf event on a file the daemon hands it **by descriptor**
//! (no path to swap), at an offset, and hand the event's descriptor back. The daemon attaches
//! its program to that event (`PERF_EVENT_IOC_SET_BPF`), which its own capabilities allow.
use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use crate::kernel::privileges;

/// `_IOW('$', 8, __u32)` and `_IO('$', 0)` (include/uapi/linux/perf_event.h).
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// A request: the offset in the file (8 bytes) and whether it is a return probe (1 byte).
const REQUEST: usize = 9;

/// The forked opener and the daemon's end of its socket.
pub struct UprobeOpener {
    socket: OwnedFd,
    child: libc::pid_t,
}

impl UprobeOpener {
    /// Forks the opener. Call it while the daemon still holds `CAP_SYS_ADMIN` and before any
    /// other thread exists (it forks). `None` (said in the log) where the kernel has no uprobe
    /// PMU or this process lacks `CAP_SYS_ADMIN`: then only what is attached before the drop
    /// is probed, as before.
    pub fn spawn() -> Option<Self> {
        match Self::try_spawn() {
            Ok(opener) => Some(opener),
            Err(e) => {
                tracing::info!(
                    "no uprobe opener (TLS libraries found later may not be probed): {e}"
                );
                None
            }
        }
    }

    fn try_spawn() -> io::Result<Self> {
        if !privileges::has_cap(privileges::CAP_SYS_ADMIN) {
            return Err(io::Error::other(
                "this process has no CAP_SYS_ADMIN to keep",
            ));
        }
        let pmu = Pmu::read()?;
        let mut fds = [0 as RawFd; 2];
        // SAFETY: a two-element array for socketpair(2).
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both just created, owned here.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: no other thread exists (the caller's contract), so no lock (the allocator's
        // included) is held in the child, which serves and `_exit`s, never returning here.
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(io::Error::last_os_error());
        }
        if child == 0 {
            drop(ours);
            let code = serve(theirs, parent, &pmu);
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        drop(theirs);
        Ok(Self {
            socket: ours,
            child,
        })
    }

    /// Opens a uprobe (or return probe) on `file` at `offset` through the opener.
    pub fn open(&self, file: BorrowedFd<'_>, offset: u64, ret: bool) -> io::Result<OwnedFd> {
        let mut request = [0u8; REQUEST];
        request[..8].copy_from_slice(&offset.to_ne_bytes());
        request[8] = u8::from(ret);
        send_with_fd(self.socket.as_raw_fd(), &request, Some(file.as_raw_fd()))?;
        let mut reply = [0u8; 4];
        let (n, fd) = recv_with_fd(self.socket.as_raw_fd(), &mut reply)?;
        if n != reply.len() {
            return Err(io::Error::other("the uprobe opener closed its socket"));
        }
        match (i32::from_ne_bytes(reply), fd) {
            (0, Some(fd)) => Ok(fd),
            (0, None) => Err(io::Error::other("the uprobe opener sent no descriptor")),
            (errno, _) => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

impl Drop for UprobeOpener {
    fn drop(&mut self) {
        // SAFETY: our own child, reaped once.
        unsafe {
            libc::kill(self.child, libc::SIGKILL);
            libc::waitpid(self.child, std::ptr::null_mut(), 0);
        }
    }
}

/// Runs `program` (a loaded uprobe program) on the uprobe perf event `event`: the event stays
/// attached while its descriptor is open.
pub fn attach(event: &OwnedFd, program: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: ioctls on a perf event descriptor with a program descriptor / no argument.
    unsafe {
        if libc::ioctl(
            event.as_raw_fd(),
            PERF_EVENT_IOC_SET_BPF,
            program.as_raw_fd(),
        ) != 0
            || libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The kernel's uprobe PMU: its type, and the config bit that makes a probe a return probe.
struct Pmu {
    kind: u32,
    retprobe_bit: u32,
}

impl Pmu {
    fn read() -> io::Result<Self> {
        let dir = std::path::Path::new("/sys/bus/event_source/devices/uprobe");
        let kind = std::fs::read_to_string(dir.join("type"))?
            .trim()
            .parse()
            .map_err(|_| io::Error::other("an unreadable uprobe PMU type"))?;
        // `config:0`
        let retprobe_bit = std::fs::read_to_string(dir.join("format/retprobe"))?
            .trim()
            .strip_prefix("config:")
            .and_then(|b| b.parse().ok())
            .filter(|b: &u32| *b < 64)
            .ok_or_else(|| io::Error::other("an unreadable uprobe retprobe format"))?;
        Ok(Self { kind, retprobe_bit })
    }
}

/// The opener's life: only `CAP_SYS_ADMIN` kept, killed when the daemon dies, serving one
/// request at a time until its socket closes. Returns the exit code.
fn serve(socket: OwnedFd, parent: libc::pid_t, pmu: &Pmu) -> i32 {
    // Nothing of the daemon's but its socket (as descriptor 3) and standard streams: not its
    // maps, programs or output.
    const SOCKET: RawFd = 3;
    // SAFETY: descriptor calls in the forked child; `socket` is forgotten once moved.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != parent {
            return 1;
        }
        let raw = std::os::fd::IntoRawFd::into_raw_fd(socket);
        if raw != SOCKET && (libc::dup2(raw, SOCKET) != SOCKET || libc::close(raw) != 0) {
            return 1;
        }
        // ENOSYS before 5.9: the inherited descriptors then stay open, unused.
        libc::syscall(libc::SYS_close_range, SOCKET as u32 + 1, u32::MAX, 0u32);
        // What `ps` shows for it.
        libc::prctl(libc::PR_SET_NAME, c"sensor-uprobes".as_ptr());
    }
    if privileges::drop_all_but(&[privileges::CAP_SYS_ADMIN]).is_err() {
        return 1;
    }
    let fd = SOCKET;
    loop {
        let mut request = [0u8; REQUEST];
        let (n, file) = match recv_with_fd(fd, &mut request) {
            Ok((0, _)) => return 0,
            Ok(got) => got,
            Err(_) => return 1,
        };
        let errno = match (n, file) {
            (REQUEST, Some(file)) => {
                let offset = u64::from_ne_bytes(request[..8].try_into().unwrap_or_default());
                match open_uprobe(pmu, &file, offset, request[8] != 0) {
                    Ok(event) => {
                        if send_with_fd(fd, &0i32.to_ne_bytes(), Some(event.as_raw_fd())).is_err() {
                            return 1;
                        }
                        continue;
                    }
                    Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
                }
            }
            _ => libc::EINVAL,
        };
        if send_with_fd(fd, &errno.to_ne_bytes(), None).is_err() {
            return 1;
        }
    }
}

/// `perf_event_open` of a uprobe on the open `file` (through its `/proc/self/fd` link: the
/// file itself, whatever its path became), for every process, on CPU 0 (a uprobe's program
/// runs wherever the probe hits).
fn open_uprobe(pmu: &Pmu, file: &OwnedFd, offset: u64, ret: bool) -> io::Result<OwnedFd> {
    // struct perf_event_attr, as far as a uprobe needs it (PERF_ATTR_SIZE_VER5 = 112 bytes):
    // type (u32) at 0, size (u32) at 4, config at 8, config1 (the path) at 56, config2 (the
    // offset) at 64.
    const SIZE: usize = 112;
    let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut attr = [0u8; SIZE];
    attr[0..4].copy_from_slice(&pmu.kind.to_ne_bytes());
    attr[4..8].copy_from_slice(&(SIZE as u32).to_ne_bytes());
    let config: u64 = if ret { 1 << pmu.retprobe_bit } else { 0 };
    attr[8..16].copy_from_slice(&config.to_ne_bytes());
    attr[56..64].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
    attr[64..72].copy_from_slice(&offset.to_ne_bytes());
    // SAFETY: a valid attr buffer of the size it states; the path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `bytes` on `socket`, with `fd` attached (SCM_RIGHTS) when given.
fn send_with_fd(socket: RawFd, bytes: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // Room for one descriptor's control message, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; fields set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_* over our own control buffer, which is large enough for one fd.
        unsafe {
            let space = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
            let bytes = fd.to_ne_bytes();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), libc::CMSG_DATA(cmsg), bytes.len());
        }
    }
    // SAFETY: msg points at live buffers for the call.
    if unsafe { libc::sendmsg(socket, &raw const msg, libc::MSG_NOSIGNAL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message into `bytes`: its length and the descriptor it carried, if one.
fn recv_with_fd(socket: RawFd, bytes: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; fields set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: msg points at live buffers for the call.
    let n = unsafe { libc::recvmsg(socket, &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: CMSG_* over the control buffer recvmsg filled; every descriptor received is
    // owned at once (so none leaks), only the first kept.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let count =
                    ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    let mut bytes = [0u8; size_of::<RawFd>()];
                    let at = data.add(i * bytes.len());
                    std::ptr::copy_nonoverlapping(at, bytes.as_mut_ptr(), bytes.len());
                    let owned = OwnedFd::from_raw_fd(RawFd::from_ne_bytes(bytes));
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n as usize, fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The descriptor passing both ways, without the opener (which needs root).
    #[test]
    fn a_descriptor_crosses_the_socket_with_its_request() {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: a two-element array for socketpair(2).
        assert_eq!(
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                    0,
                    fds.as_mut_ptr(),
                )
            },
            0
        );
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        send_with_fd(fds[0], b"123456789", Some(file.as_raw_fd())).unwrap();
        let mut got = [0u8; REQUEST];
        let (n, fd) = recv_with_fd(fds[1], &mut got).unwrap();
        assert_eq!((n, &got), (9, b"123456789"));
        let fd = fd.expect("the descriptor");
        let same = |a: RawFd| std::fs::read_link(format!("/proc/self/fd/{a}")).unwrap();
        assert_eq!(same(fd.as_raw_fd()), same(file.as_raw_fd()));
        send_with_fd(fds[0], &5i32.to_ne_bytes(), None).unwrap();
        let mut reply = [0u8; 4];
        assert_eq!(
            recv_with_fd(fds[1], &mut reply).unwrap().1.map(|_| ()),
            None
        );
        // SAFETY: closing the two ends made above.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
