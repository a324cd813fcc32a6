//! Network syscalls: one `sys_exit_*` program for connect, accept, bind, listen, UDP sends and
//! DNS responses, reporting the socket's family, type, protocol and both addresses with the
//! outcome; and the outcome of non-blocking connects, from `inet_sock_set_state`.
use aya_ebpf::{
    helpers::{
        bpf_probe_read_user,
        generated::{bpf_probe_read_kernel, bpf_probe_read_user as read_user_bytes},
    },
    macros::{lsm, raw_tracepoint, tracepoint},
    programs::{LsmContext, RawTracePointContext, TracePointContext},
};
use sensor_common::{
    CallArgs, ConnectOwner, DNS_PAYLOAD_CAP, KernelSockaddr, NetRecord, SOCKADDR_CAP, address_hook,
    kind, syscall as sc,
};

use crate::{
    filter::observed,
    globals::{config, offsets},
    kernel::{CurrentTask, KPtr, Task, current_comm},
    maps::{CONNECTS, KERNEL_SOCKADDRS, SCRATCH},
    output::submit_bytes,
    process::header,
    syscalls::{Current, current_call},
};

const HEADER: usize = size_of::<NetRecord>();
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_DGRAM: u16 = 2;
const EINPROGRESS: i64 = 115;
const TCP_SYN_SENT: i32 = 2;
const DNS_PORT: u16 = 53;
const O_NONBLOCK: u32 = 0o4000;

/// What the socket itself says: family, type, protocol, addresses.
#[inline(always)]
fn fill_from_sock(r: &mut NetRecord, sk: KPtr, task: &Task) {
    let off = &task.off;
    r.sock_id = sk.0 as u64;
    r.family = sk.read::<u16>(off.sk_family).unwrap_or(0);
    r.sock_type = sk.read::<u16>(off.sk_type).unwrap_or(0);
    r.protocol = sk.read::<u16>(off.sk_protocol).unwrap_or(0);
    r.local_port = sk.read::<u16>(off.sk_num).unwrap_or(0);
    r.remote_port = u16::from_be(sk.read::<u16>(off.sk_dport).unwrap_or(0));
    if r.family == AF_INET6 {
        r.local_addr = sk.read::<[u8; 16]>(off.sk_v6_rcv_saddr).unwrap_or_default();
        r.remote_addr = sk.read::<[u8; 16]>(off.sk_v6_daddr).unwrap_or_default();
    } else if r.family == AF_INET {
        let l = sk.read::<[u8; 4]>(off.sk_rcv_saddr).unwrap_or_default();
        let d = sk.read::<[u8; 4]>(off.sk_daddr).unwrap_or_default();
        r.local_addr[..4].copy_from_slice(&l);
        r.remote_addr[..4].copy_from_slice(&d);
    }
}

/// `struct sock *` behind a socket fd.
#[inline(always)]
fn sock_of(current: &CurrentTask, fd: i32) -> Option<KPtr> {
    current.open_file(fd)?.private.follow(offsets().socket_sk)
}

/// The user sockaddr a call names, and its length.
#[inline(always)]
fn user_sockaddr(call: &CallArgs) -> (u64, u64) {
    match call.syscall {
        sc::CONNECT | sc::BIND | sc::SENDTO => (call.ptr1, call.arg),
        // recvfrom's addrlen is an in/out int pointer.
        sc::RECVFROM if call.ptr1 != 0 => {
            // SAFETY: a user pointer; a bad one is an error.
            let len = unsafe { bpf_probe_read_user(call.arg as *const u32) }.unwrap_or(0);
            (call.ptr1, len as u64)
        }
        // struct user_msghdr { void *msg_name; int msg_namelen; ... }, also the start of mmsghdr.
        sc::SENDMSG | sc::RECVMSG | sc::SENDMMSG if call.ptr2 != 0 => {
            // SAFETY: user pointers; a bad one is an error.
            let name = unsafe { bpf_probe_read_user(call.ptr2 as *const u64) }.unwrap_or(0);
            let len = unsafe { bpf_probe_read_user((call.ptr2 + 8) as *const u32) }.unwrap_or(0);
            (name, len as u64)
        }
        _ => (0, 0),
    }
}

/// The first data buffer of a send or receive, and how many bytes of it to copy.
#[inline(always)]
fn payload(call: &CallArgs, ret: i64) -> (u64, u64) {
    if ret <= 0 {
        return (0, 0);
    }
    match call.syscall {
        sc::SENDTO | sc::RECVFROM => (call.ptr2, ret as u64),
        sc::SENDMSG | sc::RECVMSG | sc::SENDMMSG => {
            // msg_iov at 16 of user_msghdr; struct iovec { void *base; size_t len; }.
            // SAFETY: user pointers; a bad one is an error.
            let iov = unsafe { bpf_probe_read_user((call.ptr2 + 16) as *const u64) }.unwrap_or(0);
            if iov == 0 {
                return (0, 0);
            }
            let base = unsafe { bpf_probe_read_user(iov as *const u64) }.unwrap_or(0);
            let len = unsafe { bpf_probe_read_user((iov + 8) as *const u64) }.unwrap_or(0);
            // sendmmsg returns a message count; the kernel wrote the first one's size to msg_len.
            let sent = if call.syscall == sc::SENDMMSG {
                unsafe { bpf_probe_read_user((call.ptr2 + 56) as *const u32) }.unwrap_or(0) as u64
            } else {
                ret as u64
            };
            (base, if len < sent { len } else { sent })
        }
        _ => (0, 0),
    }
}

/// At a non-blocking connect's start, remembers who makes it: on loopback the handshake (or
/// the refusal) can complete inside the syscall, before its exit program runs, so the watch
/// must be set before; `inet_sock_set_state` then reports the outcome whenever it comes.
#[inline(always)]
pub fn watch_nonblocking_connect(fd: i32) {
    let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let current = CurrentTask::get();
    let Some(file) = current.open_file(fd) else {
        return;
    };
    if file.flags & O_NONBLOCK == 0 {
        return;
    }
    let Some(sk) = file.private.follow(offsets().socket_sk) else {
        return;
    };
    let owner = ConnectOwner {
        start_boottime: current.process_start(),
        pid: id as u32,
        tgid: (id >> 32) as u32,
        fd,
        _pad: 0,
        comm: current_comm(),
    };
    let _ = CONNECTS.insert(sk.0 as u64, owner, 0);
}

/// Where the kernel has BPF LSM: the address a connect, bind or send uses, as the kernel copied
/// it from user memory, before the protocol acts on it. Reading user memory at the syscall's
/// exit instead would report whatever another thread of the process wrote there since.
/// Each program returns the verdict of the BPF LSM programs before it, unchanged.
#[lsm(hook = "socket_connect")]
pub fn lsm_socket_connect(ctx: LsmContext) -> i32 {
    // int socket_connect(struct socket *sock, struct sockaddr *address, int addrlen)
    keep_kernel_sockaddr(address_hook::CONNECT, ctx.arg(1), ctx.arg(2));
    ctx.arg(3)
}

#[lsm(hook = "socket_bind")]
pub fn lsm_socket_bind(ctx: LsmContext) -> i32 {
    // int socket_bind(struct socket *sock, struct sockaddr *address, int addrlen)
    keep_kernel_sockaddr(address_hook::BIND, ctx.arg(1), ctx.arg(2));
    ctx.arg(3)
}

#[lsm(hook = "socket_sendmsg")]
pub fn lsm_socket_sendmsg(ctx: LsmContext) -> i32 {
    // int socket_sendmsg(struct socket *sock, struct msghdr *msg, int size): the kernel's
    // msghdr points at its own copy of the address (none for a connected socket).
    let msg = KPtr(ctx.arg::<*const u8>(1));
    let off = offsets();
    let name = msg.read::<u64>(off.msghdr_name).unwrap_or(0);
    let len = msg.read::<i32>(off.msghdr_namelen).unwrap_or(0);
    keep_kernel_sockaddr(address_hook::SEND, name as *const u8, len);
    ctx.arg(3)
}

/// Keeps, for an observed thread, the address a hook saw. A send without one drops what an
/// earlier send kept, so its exit cannot take a stale address.
#[inline(always)]
fn keep_kernel_sockaddr(hook: u32, addr: *const u8, len: i32) {
    let id = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if observed((id >> 32) as u32).is_none() {
        return;
    }
    if addr.is_null() || len <= 0 {
        let _ = KERNEL_SOCKADDRS.remove(id);
        return;
    }
    let n = if len as u32 > SOCKADDR_CAP {
        SOCKADDR_CAP
    } else {
        len as u32
    };
    let Some(slot) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // Assembled in the scratch buffer (not the stack), then copied into the map.
    // SAFETY: this CPU's slot; map values are 8-byte aligned and larger than a KernelSockaddr.
    let value = unsafe { &mut *slot.cast::<KernelSockaddr>() };
    value.len = n;
    value.hook = hook;
    // SAFETY: n <= the buffer's size; a bad source is an error, not a fault.
    if unsafe { bpf_probe_read_kernel(value.bytes.as_mut_ptr().cast(), n, addr.cast()) } == 0 {
        let _ = KERNEL_SOCKADDRS.insert(id, value, 0);
    }
}

/// The address the LSM hook kept for this thread's call, copied into `tail`; its length. `None`
/// without the hooks, for a call no hook serves, or when the call failed before the kernel used
/// an address (a bad fd, an unreadable address): then user memory is all there is. sendmmsg
/// sends several messages and is reported by its first, from user memory: what the hook kept
/// (the last) is dropped.
#[inline(always)]
fn kernel_sockaddr(call: &CallArgs, id: u64, tail: &mut [u8]) -> Option<usize> {
    if config().lsm_addresses == 0 {
        return None;
    }
    let hook = match call.syscall {
        sc::CONNECT => address_hook::CONNECT,
        sc::BIND => address_hook::BIND,
        sc::SENDTO | sc::SENDMSG => address_hook::SEND,
        sc::SENDMMSG => {
            let _ = KERNEL_SOCKADDRS.remove(id);
            return None;
        }
        _ => return None,
    };
    let kept = KERNEL_SOCKADDRS.get_ptr(id)?;
    // Copied map to map with the helper: through the stack, the 112 bytes would take a quarter
    // of what this program and its call chain may use.
    // SAFETY: the entry is valid until removed below; the tail holds SOCKADDR_CAP bytes.
    let (len, kept_by, rc) = unsafe {
        (
            (*kept).len,
            (*kept).hook,
            bpf_probe_read_kernel(
                tail.as_mut_ptr().cast(),
                SOCKADDR_CAP,
                (*kept).bytes.as_ptr().cast(),
            ),
        )
    };
    let _ = KERNEL_SOCKADDRS.remove(id);
    (rc == 0 && kept_by == hook).then_some((len as usize).min(SOCKADDR_CAP as usize))
}

#[tracepoint]
pub fn exit_net(ctx: TracePointContext) -> u32 {
    let _ = try_exit_net(&ctx);
    0
}

fn try_exit_net(ctx: &TracePointContext) -> Option<()> {
    let Current { id, who, call, ret } = current_call(ctx)?;
    if call.syscall < sc::FIRST_NET {
        return None;
    }
    let current = CurrentTask::get();
    let task = current.task();
    let accepted = matches!(call.syscall, sc::ACCEPT | sc::ACCEPT4) && ret >= 0;
    let sock_fd = if accepted { ret as i32 } else { call.fd };
    // Built in place in the scratch buffer: the record is too large for the BPF stack.
    // SAFETY: this CPU's slot.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let (head, tail) = buf.split_at_mut(HEADER);
    // SAFETY: map values are 8-byte aligned and `head` is exactly one record.
    let r = unsafe { &mut *head.as_mut_ptr().cast::<NetRecord>() };
    // An aligned write of the default (a `write_bytes` here compiled to a byte-wise memset).
    *r = NetRecord::default();
    r.start_boottime = current.process_start();
    r.ret = ret;
    r.pid = id as u32;
    r.tgid = (id >> 32) as u32;
    r.fd = sock_fd;
    r.arg = call.flags;
    r.syscall = call.syscall;
    r.comm = current_comm();
    // A plain address (0: none), not an Option: the compiler may read an Option's payload
    // before its tag, and 5.10's verifier refuses a read of stack it never saw written.
    let sk = sock_of(&current, sock_fd).map_or(0, |sk| sk.0 as u64);
    if sk != 0 {
        fill_from_sock(r, KPtr(sk as *const u8), &task);
    }
    let (addr, addr_len) = user_sockaddr(&call);
    let mut used = 0usize;
    if let Some(len) = kernel_sockaddr(&call, id, tail) {
        r.addr_len = len as u16;
        used = len;
    } else if addr != 0 && addr_len > 0 {
        let n = if addr_len > SOCKADDR_CAP as u64 {
            SOCKADDR_CAP
        } else {
            addr_len as u32
        };
        // SAFETY: SOCKADDR_CAP fits in the tail.
        if unsafe { read_user_bytes(tail.as_mut_ptr().cast(), n, addr as *const _) } == 0 {
            r.addr_len = n as u16;
            used = n as usize;
        }
    }
    // The peer port the call names (sockaddr_in/in6 keep it big-endian at offset 2).
    let named_port = if r.addr_len >= 4 {
        u16::from_be_bytes([tail[2], tail[3]])
    } else {
        r.remote_port
    };
    let datagram = r.sock_type == SOCK_DGRAM && (r.family == AF_INET || r.family == AF_INET6);
    match call.syscall {
        // Data on streams is not followed; datagrams are, with their destination.
        sc::SENDTO | sc::SENDMSG | sc::SENDMMSG if !datagram => return None,
        // Received datagrams only matter as DNS answers.
        sc::RECVFROM | sc::RECVMSG if !(datagram && named_port == DNS_PORT) => return None,
        _ => {}
    }
    r.bytes = if ret > 0 { ret as u64 } else { 0 };
    if datagram && named_port == DNS_PORT {
        let (data, len) = payload(&call, ret);
        if data != 0 && len > 0 && used <= SOCKADDR_CAP as usize {
            let n = if len > DNS_PAYLOAD_CAP as u64 {
                DNS_PAYLOAD_CAP
            } else {
                len as u32
            };
            // SAFETY: SOCKADDR_CAP + DNS_PAYLOAD_CAP fits in the tail.
            if unsafe { read_user_bytes(tail.as_mut_ptr().add(used).cast(), n, data as *const _) }
                == 0
            {
                r.payload_len = n as u16;
                used += n as usize;
            }
        }
    }
    // A non-blocking connect that has its outcome already (or failed at once) needs no watch.
    if call.syscall == sc::CONNECT && ret != -EINPROGRESS && sk != 0 {
        let _ = CONNECTS.remove(sk);
    }
    let size = HEADER + used;
    r.header = header(kind::NET, size, who);
    if size > HEADER + (SOCKADDR_CAP + DNS_PAYLOAD_CAP) as usize {
        return None;
    }
    submit_bytes(kind::NET, buf, size);
    Some(())
}

/// TCP state changes: the end of a non-blocking connect this sensor saw start.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let _ = try_state(&ctx);
    0
}

fn try_state(ctx: &RawTracePointContext) -> Option<()> {
    let sk = ctx.arg::<u64>(0);
    let old = ctx.arg::<u64>(1) as i32;
    if old != TCP_SYN_SENT {
        return None;
    }
    // SAFETY: copied out before removal.
    let owner = unsafe { CONNECTS.get(sk) }.copied()?;
    let _ = CONNECTS.remove(sk);
    let off = offsets();
    let task = Task::new(core::ptr::null(), off);
    let sk_ptr = KPtr(sk as *const u8);
    // Built in place, as in `exit_net`: on the stack the record was most of the frame.
    // SAFETY: this CPU's slot; map values are 8-byte aligned and hold a whole record.
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let r = unsafe { &mut *buf.as_mut_ptr().cast::<NetRecord>() };
    *r = NetRecord::default();
    r.header = header(kind::NET, HEADER, crate::filter::attribution_of(owner.tgid));
    r.start_boottime = owner.start_boottime;
    r.pid = owner.pid;
    r.tgid = owner.tgid;
    r.fd = owner.fd;
    r.syscall = sc::CONNECT_RESULT;
    r.old_state = old as u16;
    r.new_state = ctx.arg::<u64>(2) as u16;
    r.sk_err = sk_ptr.read::<i32>(off.sk_err).unwrap_or(0);
    r.comm = owner.comm;
    fill_from_sock(r, sk_ptr, &task);
    submit_bytes(kind::NET, buf, HEADER);
    Some(())
}
