//! File and network activity: pure functions from a decoded kernel event to the record blocks
//! that describe it (ECS `file.*`, `source.*`, `destination.*`, `network.*`, `dns.*`), with
//! paths made absolute and classified, flags and errors named, and addresses decoded.
use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use sensor_common::syscall as sc;

use crate::{
    decode::{FileEvent, NetEvent},
    enrich::dns,
    enrich::fspath::{self, Classifier},
    record::{
        self, Dns, DnsAnswer, DnsQuestion, Endpoint, ErrorInfo, File, FileHex, Network, OpenInfo,
        SocketInfo, Syscall,
    },
};

/// What kind of record a file event makes.
pub(crate) struct FileKind {
    pub action: &'static str,
    pub types: &'static [&'static str],
}

pub(crate) fn file_kind(syscall: u16, flags: u32) -> FileKind {
    let (action, types): (&str, &[&str]) = match syscall {
        // unlinkat(AT_REMOVEDIR) is how libc implements rmdir on some architectures.
        sc::UNLINKAT if flags as i32 & libc::AT_REMOVEDIR != 0 => ("rmdir", &["deletion"]),
        sc::OPEN | sc::OPENAT | sc::OPENAT2 | sc::CREAT => ("open", &["access"]),
        sc::RENAME | sc::RENAMEAT | sc::RENAMEAT2 => ("rename", &["change"]),
        sc::UNLINK | sc::UNLINKAT => ("unlink", &["deletion"]),
        sc::RMDIR => ("rmdir", &["deletion"]),
        sc::MKDIR | sc::MKDIRAT => ("mkdir", &["creation"]),
        sc::CHMOD | sc::FCHMOD | sc::FCHMODAT | sc::FCHMODAT2 => ("chmod", &["change"]),
        sc::CHOWN | sc::LCHOWN | sc::FCHOWN | sc::FCHOWNAT => ("chown", &["change"]),
        sc::TRUNCATE | sc::FTRUNCATE => ("truncate", &["change"]),
        sc::LINK | sc::LINKAT => ("link", &["creation"]),
        sc::SYMLINK | sc::SYMLINKAT => ("symlink", &["creation"]),
        // The kernel refused to run the file (an enforced executables rule).
        sc::EXEC_DENIED => ("exec_denied", &["access"]),
        _ => ("file", &["info"]),
    };
    FileKind { action, types }
}

pub(crate) fn syscall_name(syscall: u16) -> &'static str {
    match syscall {
        sc::OPEN => "open",
        sc::OPENAT => "openat",
        sc::OPENAT2 => "openat2",
        sc::CREAT => "creat",
        sc::RENAME => "rename",
        sc::RENAMEAT => "renameat",
        sc::RENAMEAT2 => "renameat2",
        sc::UNLINK => "unlink",
        sc::UNLINKAT => "unlinkat",
        sc::RMDIR => "rmdir",
        sc::MKDIR => "mkdir",
        sc::MKDIRAT => "mkdirat",
        sc::CHMOD => "chmod",
        sc::FCHMOD => "fchmod",
        sc::FCHMODAT => "fchmodat",
        sc::FCHMODAT2 => "fchmodat2",
        sc::CHOWN => "chown",
        sc::LCHOWN => "lchown",
        sc::FCHOWN => "fchown",
        sc::FCHOWNAT => "fchownat",
        sc::TRUNCATE => "truncate",
        sc::FTRUNCATE => "ftruncate",
        sc::LINK => "link",
        sc::LINKAT => "linkat",
        sc::SYMLINK => "symlink",
        sc::SYMLINKAT => "symlinkat",
        sc::CONNECT => "connect",
        sc::ACCEPT => "accept",
        sc::ACCEPT4 => "accept4",
        sc::BIND => "bind",
        sc::LISTEN => "listen",
        sc::SENDTO => "sendto",
        sc::SENDMSG => "sendmsg",
        sc::SENDMMSG => "sendmmsg",
        sc::RECVFROM => "recvfrom",
        sc::RECVMSG => "recvmsg",
        sc::CONNECT_RESULT => "inet_sock_set_state",
        sc::EXEC_DENIED => "bprm_check_security",
        _ => "unknown",
    }
}

/// `event.outcome` and `error.*` of a syscall's return value.
pub(crate) fn outcome(ret: i64) -> (&'static str, Option<ErrorInfo>) {
    if ret >= 0 {
        ("success", None)
    } else {
        let errno = (-ret) as i32;
        ("failure", Some(error_info(errno)))
    }
}

pub(crate) fn error_info(errno: i32) -> ErrorInfo {
    ErrorInfo {
        code: errno_name(errno).map_or_else(|| format!("E{errno}"), str::to_owned),
        message: std::io::Error::from_raw_os_error(errno).to_string(),
    }
}

/// Names of the errnos file and network calls return.
pub(crate) fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EDQUOT => "EDQUOT",
        _ => return None,
    })
}

/// Decoded open flags: the access mode and the named flags set.
pub(crate) fn open_info(flags: u32) -> OpenInfo {
    const NAMED: &[(i32, &str)] = &[
        (libc::O_CREAT, "create"),
        (libc::O_EXCL, "exclusive"),
        (libc::O_NOCTTY, "noctty"),
        (libc::O_TRUNC, "truncate"),
        (libc::O_APPEND, "append"),
        (libc::O_NONBLOCK, "nonblock"),
        (libc::O_DSYNC, "dsync"),
        (libc::O_DIRECT, "direct"),
        (libc::O_DIRECTORY, "directory"),
        (libc::O_NOFOLLOW, "nofollow"),
        (libc::O_NOATIME, "noatime"),
        (libc::O_CLOEXEC, "cloexec"),
    ];
    let f = flags as i32;
    let access = if f & libc::O_PATH != 0 {
        "path"
    } else {
        match f & libc::O_ACCMODE {
            libc::O_RDONLY => "read",
            libc::O_WRONLY => "write",
            _ => "read_write",
        }
    };
    let mut names: Vec<&'static str> = NAMED
        .iter()
        .filter(|(bit, _)| f & bit == *bit)
        .map(|(_, n)| *n)
        .collect();
    // O_SYNC and O_TMPFILE include other bits (O_DSYNC, O_DIRECTORY): name them whole.
    if f & libc::O_SYNC == libc::O_SYNC {
        names.retain(|n| *n != "dsync");
        names.push("sync");
    }
    if f & libc::O_TMPFILE == libc::O_TMPFILE {
        names.retain(|n| *n != "directory");
        names.push("tmpfile");
    }
    OpenInfo {
        access,
        flags: names,
        raw: octal(flags),
    }
}

/// `0o` and the octal digits (as `{:#o}` writes them), without `core::fmt`: every open
/// record has one.
fn octal(mut n: u32) -> String {
    let mut digits = [0u8; 13];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n & 7) as u8;
        n >>= 3;
        if n == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(2 + digits.len() - i);
    out.push_str("0o");
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
    out
}

fn text_and_hex(bytes: &[u8]) -> (String, Option<String>) {
    record::text(bytes)
}

fn split_name(path: &str) -> (Option<String>, Option<String>) {
    match path.rsplit_once('/') {
        Some((dir, name)) if !name.is_empty() => (
            Some(name.to_owned()),
            Some(if dir.is_empty() {
                "/".to_owned()
            } else {
                dir.to_owned()
            }),
        ),
        _ => (None, None),
    }
}

/// The `file` block of a file event.
pub(crate) fn file_block(e: &FileEvent, classifier: &Classifier) -> File {
    let base = |b: &[u8]| (!b.is_empty()).then_some(b.to_vec());
    let is_symlink = matches!(e.syscall, sc::SYMLINK | sc::SYMLINKAT);
    let is_link = matches!(e.syscall, sc::LINK | sc::LINKAT);
    let is_rename = matches!(e.syscall, sc::RENAME | sc::RENAMEAT | sc::RENAMEAT2);
    let first = fspath::absolute(base(&e.base).as_deref(), &e.path);
    let second =
        (!e.path2.is_empty()).then(|| fspath::absolute(base(&e.base2).as_deref(), &e.path2));
    // The path the record is about: fd-based calls have only the kernel's path of the fd;
    // link and symlink are about the new name (the second path).
    let (subject, other): (Vec<u8>, Option<Vec<u8>>) =
        if e.path.is_empty() && !e.resolved.is_empty() {
            (e.resolved.clone(), None)
        } else if is_symlink {
            (second.clone().unwrap_or_default(), Some(e.path.clone()))
        } else if is_link {
            (second.clone().unwrap_or_default(), Some(first))
        } else {
            (first, None)
        };
    let (path, path_hex) = text_and_hex(&subject);
    let (name, directory) = split_name(&path);
    let mut hex = FileHex {
        path: path_hex,
        ..Default::default()
    };
    let target = match other {
        Some(t) => Some(t),
        // An open that followed a symlink (or `..` through one) landed elsewhere.
        None if !e.resolved.is_empty() && e.resolved != subject => Some(e.resolved.clone()),
        None => None,
    };
    let target_path = target.map(|t| {
        let (t, h) = text_and_hex(&t);
        hex.target_path = h;
        t
    });
    let destination_path = if is_rename {
        second.map(|d| {
            let (d, h) = text_and_hex(&d);
            hex.destination_path = h;
            d
        })
    } else {
        None
    };
    let is_open = matches!(e.syscall, sc::OPEN | sc::OPENAT | sc::OPENAT2 | sc::CREAT);
    let creates = is_open && e.flags as i32 & libc::O_CREAT != 0;
    let sets_mode = creates
        || matches!(
            e.syscall,
            sc::MKDIR | sc::MKDIRAT | sc::CHMOD | sc::FCHMOD | sc::FCHMODAT | sc::FCHMODAT2
        );
    let is_chown = matches!(
        e.syscall,
        sc::CHOWN | sc::LCHOWN | sc::FCHOWN | sc::FCHOWNAT
    );
    // The class is of where the data is: the opened file, else the named path.
    let class = target_path
        .as_deref()
        .and_then(|t| classifier.classify(t.as_bytes()))
        .or_else(|| classifier.classify(&subject))
        .or_else(|| {
            destination_path
                .as_deref()
                .and_then(|d| classifier.classify(d.as_bytes()))
        })
        .map(str::to_owned);
    File {
        path,
        name,
        directory,
        target_path,
        destination_path,
        class,
        inode: (e.ino != 0).then(|| crate::record::decimal(e.ino)),
        mode: sets_mode.then(|| format!("{:04o}", e.mode & 0o7777)),
        uid: (is_chown && e.uid != u32::MAX).then(|| e.uid.to_string()),
        gid: (is_chown && e.gid != u32::MAX).then(|| e.gid.to_string()),
        size: matches!(e.syscall, sc::TRUNCATE | sc::FTRUNCATE).then_some(e.arg),
        fd: (e.fd >= 0 && (!is_open || e.ret >= 0)).then_some(e.fd),
        open: is_open.then(|| open_info(e.flags)),
        path_truncated: e.path_truncated(),
        policy_killed: e.str_flags & sensor_common::file_flags::POLICY_KILLED != 0,
        hex: (hex.path.is_some() || hex.target_path.is_some() || hex.destination_path.is_some())
            .then_some(hex),
    }
}

pub(crate) fn syscall_block(syscall: u16, ret: i64) -> Syscall {
    Syscall {
        name: syscall_name(syscall),
        ret,
    }
}

/// A socket address a process named, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SockAddr {
    Ip(IpAddr, u16),
    Unix(String),
    Other(u16),
}

pub(crate) fn parse_sockaddr(raw: &[u8]) -> Option<SockAddr> {
    let family = u16::from_ne_bytes([*raw.first()?, *raw.get(1)?]);
    match i32::from(family) {
        libc::AF_INET if raw.len() >= 8 => {
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            Some(SockAddr::Ip(
                IpAddr::V4(Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7])),
                port,
            ))
        }
        libc::AF_INET6 if raw.len() >= 24 => {
            let port = u16::from_be_bytes([raw[2], raw[3]]);
            let octets: [u8; 16] = raw[8..24].try_into().ok()?;
            Some(SockAddr::Ip(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        libc::AF_UNIX => {
            let path = &raw[2..];
            // Abstract names start with a NUL and may contain NULs; shown with a leading '@'.
            let shown = if let Some(rest) = path.strip_prefix(&[0]) {
                format!("@{}", record::text(rest).0)
            } else {
                let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
                record::text(&path[..end]).0
            };
            Some(SockAddr::Unix(shown))
        }
        _ => Some(SockAddr::Other(family)),
    }
}

/// An IP address as ECS shows it (IPv4-mapped IPv6 as the IPv4 address it stands for).
pub(crate) fn show_ip(ip: IpAddr) -> Arc<str> {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string().into(), show_ipv4),
        IpAddr::V4(v4) => show_ipv4(v4),
    }
}

/// A dotted quad written by hand into one allocation: network records have up to four,
/// and `core::fmt` was a tenth of a connect record's time.
fn show_ipv4(v4: Ipv4Addr) -> Arc<str> {
    let mut out = [0u8; 15];
    let mut len = 0;
    let mut push = |b: u8| {
        out[len] = b;
        len += 1;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if octet >= 100 {
            push(b'0' + octet / 100);
        }
        if octet >= 10 {
            push(b'0' + octet / 10 % 10);
        }
        push(b'0' + octet % 10);
    }
    Arc::from(std::str::from_utf8(&out[..len]).expect("ASCII digits and dots"))
}

/// `network.iana_number`: the common ones without an allocation.
fn iana_number(protocol: u16) -> Cow<'static, str> {
    match protocol {
        1 => "1".into(),
        6 => "6".into(),
        17 => "17".into(),
        58 => "58".into(),
        132 => "132".into(),
        other => crate::record::decimal(other.into()).into(),
    }
}

fn sock_ip(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match i32::from(family) {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*raw))),
        _ => None,
    }
}

fn family_name(family: u16) -> Cow<'static, str> {
    match i32::from(family) {
        libc::AF_UNIX => "AF_UNIX".into(),
        libc::AF_INET => "AF_INET".into(),
        libc::AF_INET6 => "AF_INET6".into(),
        libc::AF_NETLINK => "AF_NETLINK".into(),
        libc::AF_PACKET => "AF_PACKET".into(),
        0 => "unknown".into(),
        other => format!("AF_{other}").into(),
    }
}

fn type_name(t: u16) -> Cow<'static, str> {
    match i32::from(t) {
        libc::SOCK_STREAM => "SOCK_STREAM".into(),
        libc::SOCK_DGRAM => "SOCK_DGRAM".into(),
        libc::SOCK_RAW => "SOCK_RAW".into(),
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET".into(),
        0 => "unknown".into(),
        other => format!("SOCK_{other}").into(),
    }
}

fn transport(e: &NetEvent) -> Option<&'static str> {
    if !matches!(i32::from(e.family), libc::AF_INET | libc::AF_INET6) {
        return None;
    }
    Some(match i32::from(e.protocol) {
        libc::IPPROTO_TCP => "tcp",
        libc::IPPROTO_UDP => "udp",
        libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6 => "icmp",
        libc::IPPROTO_SCTP => "sctp",
        _ => return None,
    })
}

/// What kind of record a network event makes.
pub(crate) fn net_kind(e: &NetEvent) -> (&'static str, &'static [&'static str]) {
    match e.syscall {
        sc::CONNECT => ("connect", &["connection", "start"]),
        sc::CONNECT_RESULT => ("connect_completed", &["connection"]),
        sc::ACCEPT | sc::ACCEPT4 => ("accept", &["connection", "start"]),
        sc::BIND => ("bind", &["info"]),
        sc::LISTEN => ("listen", &["start"]),
        sc::SENDTO | sc::SENDMSG | sc::SENDMMSG => ("send", &["info"]),
        sc::RECVFROM | sc::RECVMSG => ("receive", &["info"]),
        _ => ("network", &["info"]),
    }
}

/// The network blocks of an event: (source, destination, network).
pub(crate) fn net_blocks(
    e: &NetEvent,
    socket_id: Option<String>,
) -> (Option<Endpoint>, Option<Endpoint>, Network) {
    let named = parse_sockaddr(&e.sockaddr);
    let local_ip = sock_ip(e.family, &e.local_addr);
    let remote_ip = sock_ip(e.family, &e.remote_addr);
    let endpoint = |ip: Option<IpAddr>, port: u16| {
        ip.map(|ip| {
            let shown = show_ip(ip);
            Endpoint {
                ip: Some(shown.clone()),
                address: Some(shown),
                port: Some(port),
                domain: None,
            }
        })
    };
    let from_named = |addr: &SockAddr| match addr {
        SockAddr::Ip(ip, port) => {
            let shown = show_ip(*ip);
            Endpoint {
                ip: Some(shown.clone()),
                address: Some(shown),
                port: Some(*port),
                domain: None,
            }
        }
        SockAddr::Unix(path) => Endpoint {
            address: Some(path.as_str().into()),
            ..Default::default()
        },
        SockAddr::Other(f) => Endpoint {
            address: Some(family_name(*f).into()),
            ..Default::default()
        },
    };
    let local =
        endpoint(local_ip, e.local_port).filter(|ep| ep.port != Some(0) || e.syscall == sc::BIND);
    let remote = endpoint(remote_ip, e.remote_port).filter(|ep| ep.port != Some(0));
    let (source, destination, direction) = match e.syscall {
        // The named address is where the process connects or sends; its own end is the socket's.
        sc::CONNECT | sc::SENDTO | sc::SENDMSG | sc::SENDMMSG => (
            local,
            named.as_ref().map(from_named).or(remote),
            Some("egress"),
        ),
        sc::CONNECT_RESULT => (local, remote, Some("egress")),
        // The peer connected to this process: it is the source.
        sc::ACCEPT | sc::ACCEPT4 => (remote, local, Some("ingress")),
        sc::RECVFROM | sc::RECVMSG => (
            named.as_ref().map(from_named).or(remote),
            local,
            Some("ingress"),
        ),
        // bind and listen: the local address only, as the socket has it (an ephemeral port is
        // known by then), else as named (a Unix path).
        _ => (None, local.or(named.as_ref().map(from_named)), None),
    };
    let kind = match i32::from(e.family) {
        libc::AF_INET => Some("ipv4"),
        libc::AF_INET6 => Some("ipv6"),
        libc::AF_UNIX => Some("unix"),
        _ => None,
    };
    let network = Network {
        transport: transport(e),
        r#type: kind,
        iana_number: transport(e).map(|_| iana_number(e.protocol)),
        direction,
        bytes: matches!(
            e.syscall,
            sc::SENDTO | sc::SENDMSG | sc::RECVFROM | sc::RECVMSG
        )
        .then_some(e.bytes),
        socket: SocketInfo {
            family: family_name(e.family),
            r#type: type_name(e.sock_type),
            protocol: (e.protocol != 0).then_some(e.protocol),
        },
        socket_id,
        connect_state: (e.syscall == sc::CONNECT && e.ret == -i64::from(libc::EINPROGRESS))
            .then_some("in_progress"),
        backlog: (e.syscall == sc::LISTEN).then_some(e.arg),
        messages: (e.syscall == sc::SENDMMSG).then_some(e.bytes),
    };
    (source, destination, network)
}

/// Outcome of a network event: syscalls by their return; a completed connect by its state.
pub(crate) fn net_outcome(e: &NetEvent) -> (&'static str, Option<ErrorInfo>) {
    const TCP_ESTABLISHED: u16 = 1;
    match e.syscall {
        sc::CONNECT_RESULT if e.new_state == TCP_ESTABLISHED => ("success", None),
        sc::CONNECT_RESULT => ("failure", (e.sk_err > 0).then(|| error_info(e.sk_err))),
        sc::CONNECT if e.ret == -i64::from(libc::EINPROGRESS) => ("unknown", None),
        _ => outcome(e.ret),
    }
}

/// The DNS block of a datagram to or from port 53, if it parses.
pub(crate) fn dns_block(payload: &[u8]) -> Option<Dns> {
    let msg = dns::parse(payload).ok()?;
    let question = msg.questions.first().map(|q| DnsQuestion {
        name: q.name.clone(),
        r#type: dns::type_name(q.qtype).into_owned(),
    });
    let answers: Vec<DnsAnswer> = msg
        .answers
        .iter()
        .map(|a| DnsAnswer {
            name: a.name.clone(),
            r#type: dns::type_name(a.rtype).into_owned(),
            ttl: a.ttl,
            data: match &a.data {
                dns::AnswerData::A(ip) => Some(ip.to_string()),
                dns::AnswerData::Aaaa(ip) => Some(ip.to_string()),
                dns::AnswerData::Cname(name) => Some(name.clone()),
                dns::AnswerData::Other => None,
            },
        })
        .collect();
    let resolved_ip = msg
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            dns::AnswerData::A(ip) => Some(ip.to_string()),
            dns::AnswerData::Aaaa(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    Some(Dns {
        r#type: if msg.is_response { "answer" } else { "query" },
        id: msg.id,
        question,
        response_code: msg
            .is_response
            .then(|| dns::rcode_name(msg.rcode).into_owned()),
        answers,
        resolved_ip,
        incomplete: msg.incomplete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_octal_as_fmt_does() {
        for n in [0, 1, 7, 8, 0o2_000_000, 0o100_644, u32::MAX] {
            assert_eq!(octal(n), format!("{n:#o}"));
        }
    }

    #[test]
    fn shows_ipv4_as_std_does() {
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 0, 1],
            [1, 22, 103, 9],
        ] {
            let v4 = Ipv4Addr::from(octets);
            assert_eq!(*show_ip(IpAddr::V4(v4)), v4.to_string());
            assert_eq!(*show_ip(IpAddr::V6(v4.to_ipv6_mapped())), v4.to_string());
        }
        for n in 0..=255u8 {
            let v4 = Ipv4Addr::new(n, n / 3, n.wrapping_mul(7), 100);
            assert_eq!(*show_ipv4(v4), v4.to_string());
        }
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(&*show_ip(IpAddr::V6(v6)), "2001:db8::1");
        for n in [0, 1, 6, 17, 58, 132, 255, 256, u16::MAX] {
            assert_eq!(iana_number(n), n.to_string());
        }
    }

    #[test]
    fn decodes_open_flags() {
        let info =
            open_info((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u32);
        assert_eq!(info.access, "write");
        assert_eq!(info.flags, vec!["create", "truncate", "cloexec"]);
        assert_eq!(open_info(libc::O_RDONLY as u32).access, "read");
        assert_eq!(
            open_info(libc::O_RDWR as u32 | libc::O_APPEND as u32).flags,
            vec!["append"]
        );
        let tmp = open_info((libc::O_RDWR | libc::O_TMPFILE) as u32);
        assert!(tmp.flags.contains(&"tmpfile") && !tmp.flags.contains(&"directory"));
        assert_eq!(open_info(libc::O_PATH as u32).access, "path");
    }

    #[test]
    fn parses_socket_addresses() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            parse_sockaddr(&v4),
            Some(SockAddr::Ip("127.0.0.1".parse().unwrap(), 8080))
        );
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"::ffff:10.1.2.3".parse::<Ipv6Addr>().unwrap().octets());
        let Some(SockAddr::Ip(ip, 443)) = parse_sockaddr(&v6) else {
            panic!()
        };
        assert_eq!(&*show_ip(ip), "10.1.2.3", "v4-mapped shown as IPv4");
        let mut unix = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        unix.extend_from_slice(b"/run/x.sock\0junk");
        assert_eq!(
            parse_sockaddr(&unix),
            Some(SockAddr::Unix("/run/x.sock".into()))
        );
        let mut abstract_ = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        abstract_.extend_from_slice(b"\0name");
        assert_eq!(
            parse_sockaddr(&abstract_),
            Some(SockAddr::Unix("@name".into()))
        );
        assert_eq!(parse_sockaddr(&[1]), None);
    }

    #[test]
    fn names_errors() {
        let (outcome, err) = outcome(-i64::from(libc::ENOENT));
        assert_eq!(outcome, "failure");
        assert_eq!(err.unwrap().code, "ENOENT");
        assert_eq!(error_info(4000).code, "E4000");
    }
}
