//! Does one known thing so a test can check exactly what the sensor reports about it.
//! Prints the ids the test needs on stdout, one per line.
use std::{
    io::Write as _,
    os::unix::process::CommandExt as _,
    process::{Command, exit},
};

fn main() {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mode = args.get(1).map_or("", String::as_str);
    match mode {
        // `exit CODE [ignored...]`: exit with CODE; the other arguments are for the argv tests.
        "exit" => exit(args[2].parse().expect("exit code")),
        // Fork a child that exits 7 without exec; print its pid.
        "fork" => {
            // SAFETY: the child only calls async-signal-safe _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                unsafe { libc::_exit(7) };
            }
            println!("{child}");
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &raw mut status, 0) };
        }
        // Start a thread, print its thread id, join it.
        "thread" => {
            let tid = std::thread::spawn(|| {
                // SAFETY: gettid has no preconditions.
                unsafe { libc::gettid() }
            })
            .join()
            .expect("thread");
            println!("{tid}");
        }
        // `spawn N PROGRAM`: fork+exec PROGRAM N times, one after another.
        "spawn" => {
            let n: usize = args[2].parse().expect("count");
            for _ in 0..n {
                let status = Command::new(&args[3]).status().expect("spawn");
                assert!(status.success());
            }
        }
        // `rename NAME`: set this process's comm (up to 15 bytes) to NAME, fork a child that
        // exits 0, print its pid.
        "rename" => {
            let name = std::ffi::CString::new(args[2].as_bytes()).expect("no NUL in the name");
            // SAFETY: a NUL-terminated string; the kernel copies at most 15 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
            // SAFETY: the child only calls async-signal-safe _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                unsafe { libc::_exit(0) };
            }
            println!("{child}");
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &raw mut status, 0) };
        }
        // `exec PROGRAM ARGS...`: replace this process (exec without fork).
        "exec" => {
            let err = Command::new(&args[2]).args(&args[3..]).exec();
            panic!("exec failed: {err}");
        }
        // `try-exec PROGRAM ARGS...`: replace this process; if the exec fails, print its errno.
        "try-exec" => {
            let err = Command::new(&args[2]).args(&args[3..]).exec();
            println!("{}", err.raw_os_error().unwrap_or(-1));
        }
        // `open-write PATH`: open PATH write-only (creating it), print the errno (0 on success).
        "open-write" => {
            let path = std::ffi::CString::new(args[2].as_bytes()).unwrap();
            // SAFETY: a valid C string.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644) };
            println!(
                "{}",
                if fd < 0 {
                    std::io::Error::last_os_error().raw_os_error().unwrap()
                } else {
                    0
                }
            );
        }
        // `files DIR`: a known sequence of file operations in DIR (see tests/file.rs).
        "files" => files(&args[2]),
        // `open PATH`: open PATH read-only, print the errno (0 on success).
        "open" => {
            let path = std::ffi::CString::new(args[2].as_bytes()).unwrap();
            // SAFETY: a valid C string.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            println!(
                "{}",
                if fd < 0 {
                    std::io::Error::last_os_error().raw_os_error().unwrap()
                } else {
                    0
                }
            );
        }
        // `open-loop N PATH`: open and close PATH N times.
        "open-loop" => {
            let n: u64 = args[2].parse().unwrap();
            let path = std::ffi::CString::new(args[3].as_bytes()).unwrap();
            for _ in 0..n {
                // SAFETY: a valid C string; the fd is closed at once.
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                assert!(fd >= 0);
                unsafe { libc::close(fd) };
            }
        }
        // `connect ADDR`: blocking TCP connect to ADDR, print the errno (0 on success).
        "connect" => {
            let result = std::net::TcpStream::connect(&args[2]);
            println!(
                "{}",
                result.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
            );
        }
        // `connect-nonblock ADDR`: non-blocking connect, then wait for the outcome.
        "connect-nonblock" => connect_nonblocking(&args[2]),
        // `connect-unix PATH`
        "connect-unix" => {
            let result = std::os::unix::net::UnixStream::connect(&args[2]);
            println!(
                "{}",
                result.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
            );
        }
        // `accept-one`: listen on 127.0.0.1, print the port, accept one connection.
        "accept-one" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            println!("{}", listener.local_addr().unwrap().port());
            std::io::stdout().flush().unwrap();
            let (_conn, peer) = listener.accept().unwrap();
            println!("{peer}");
        }
        // `udp-send ADDR`: one datagram each with sendto, sendmsg and sendmmsg (2 messages).
        "udp-send" => udp_send(&args[2]),
        // `listen ADDR...`: TCP listeners on each ADDR, print `ready`, accept until killed.
        "listen" => {
            let listeners: Vec<std::net::TcpListener> = args[2..]
                .iter()
                .map(|a| std::net::TcpListener::bind(a.as_str()).expect("bind"))
                .collect();
            println!("ready");
            let threads: Vec<_> = listeners
                .into_iter()
                .map(|l| std::thread::spawn(move || for _ in l.incoming() {}))
                .collect();
            for t in threads {
                let _ = t.join();
            }
        }
        // `dns-serve ADDR IP TTL`: answer every A query at UDP ADDR with IP, for TTL seconds.
        "dns-serve" => {
            let socket = std::net::UdpSocket::bind(args[2].as_str()).unwrap();
            let ip: std::net::Ipv4Addr = args[3].parse().unwrap();
            let ttl: u32 = args[4].parse().unwrap();
            println!("ready");
            std::io::stdout().flush().unwrap();
            let mut buf = [0u8; 512];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).unwrap();
                // The query with QR set, one A record pointing back at the question (0xc00c).
                let mut reply = buf[..n].to_vec();
                reply[2] = 0x81;
                reply[3] = 0x80;
                reply[6..8].copy_from_slice(&1u16.to_be_bytes());
                reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
                reply.extend_from_slice(&ttl.to_be_bytes());
                reply.extend_from_slice(&[0, 4]);
                reply.extend_from_slice(&ip.octets());
                socket.send_to(&reply, peer).unwrap();
            }
        }
        // `resolve SERVER NAME`: ask SERVER (ip:port) for NAME's A record, print the address.
        "resolve" => {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            let mut query = vec![0x43, 0x21, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in args[3].split('.') {
                query.push(label.len() as u8);
                query.extend_from_slice(label.as_bytes());
            }
            query.extend_from_slice(&[0, 0, 1, 0, 1]);
            socket.send_to(&query, args[2].as_str()).unwrap();
            let mut buf = [0u8; 512];
            let (n, _) = socket.recv_from(&mut buf).unwrap();
            let ip = &buf[n - 4..n];
            println!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]);
        }
        // `udp-to ADDR`: one UDP datagram to ADDR by sendto, print the errno (0 on success).
        "udp-to" => {
            let target: std::net::SocketAddr = args[2].parse().expect("an address");
            let any: std::net::SocketAddr = if target.is_ipv4() {
                "0.0.0.0:0".parse().unwrap()
            } else {
                "[::]:0".parse().unwrap()
            };
            let socket = std::net::UdpSocket::bind(any).unwrap();
            let result = socket.send_to(b"udp-to", target);
            println!(
                "{}",
                result.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
            );
        }
        // `dns-server`: answer one A query on 127.0.0.1:53 with 10.1.2.3 (run in a netns).
        "dns-server" => dns_server(),
        // `dns-client NAME`: ask 127.0.0.1:53 for NAME's A record, then connect to the answer.
        "dns-client" => dns_client(&args[2]),
        other => {
            let _ = writeln!(std::io::stderr(), "unknown mode {other:?}");
            exit(64);
        }
    }
}

fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

/// Every step's errno is checked, so the test knows exactly what the sensor must report.
fn files(dir: &str) {
    let check = |what: &str, rc: libc::c_int| {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap();
        assert!(rc >= 0, "{what} failed: errno {errno}");
        rc
    };
    // SAFETY (whole function): plain libc calls with valid C strings.
    unsafe {
        check("chdir", libc::chdir(cstr(dir).as_ptr()));
        let fd = check(
            "open rel.txt",
            libc::open(
                cstr("rel.txt").as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                0o640,
            ),
        );
        libc::write(fd, b"hello".as_ptr().cast(), 5);
        libc::close(fd);
        check("mkdir sub", libc::mkdir(cstr("sub").as_ptr(), 0o750));
        let dirfd = check(
            "open sub",
            libc::open(cstr("sub").as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY),
        );
        // Relative to a dirfd, through "..".
        let fd = check(
            "openat ../rel.txt",
            libc::openat(dirfd, cstr("../rel.txt").as_ptr(), libc::O_RDONLY),
        );
        libc::close(fd);
        check(
            "symlink",
            libc::symlink(cstr("rel.txt").as_ptr(), cstr("link").as_ptr()),
        );
        let fd = check(
            "open link",
            libc::open(cstr("link").as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC),
        );
        libc::close(fd);
        let missing = libc::open(cstr("missing.txt").as_ptr(), libc::O_RDONLY);
        assert!(missing < 0);
        check(
            "rename",
            libc::renameat(
                libc::AT_FDCWD,
                cstr("rel.txt").as_ptr(),
                dirfd,
                cstr("moved.txt").as_ptr(),
            ),
        );
        check("chmod", libc::chmod(cstr("sub/moved.txt").as_ptr(), 0o600));
        check(
            "chown",
            libc::chown(cstr("sub/moved.txt").as_ptr(), 1234, 5678),
        );
        check(
            "truncate",
            libc::truncate(cstr("sub/moved.txt").as_ptr(), 2),
        );
        check(
            "link",
            libc::link(cstr("sub/moved.txt").as_ptr(), cstr("hard.txt").as_ptr()),
        );
        check("unlink", libc::unlink(cstr("hard.txt").as_ptr()));
        check(
            "unlinkat",
            libc::unlinkat(dirfd, cstr("moved.txt").as_ptr(), 0),
        );
        check("mkdir gone", libc::mkdir(cstr("gone").as_ptr(), 0o700));
        check("rmdir", libc::rmdir(cstr("gone").as_ptr()));
        libc::close(dirfd);
    }
}

fn connect_nonblocking(addr: &str) {
    use std::os::fd::AsRawFd as _;
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let socket = socket2_free_socket(&addr);
    let (storage, len) = sockaddr(&addr);
    // SAFETY: a valid socket and address.
    let rc = unsafe { libc::connect(socket.as_raw_fd(), (&raw const storage).cast(), len) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap();
    assert!(
        rc < 0 && errno == libc::EINPROGRESS,
        "expected EINPROGRESS, got {rc} / {errno}"
    );
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&raw mut pfd, 1, 5000) };
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid out pointers.
    unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &raw mut len,
        )
    };
    println!("{err}");
}

/// A non-blocking TCP socket for `addr`'s family.
fn socket2_free_socket(addr: &std::net::SocketAddr) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd as _;
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    unsafe {
        std::os::fd::OwnedFd::from_raw_fd(libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
            0,
        ))
    }
}

fn sockaddr(addr: &std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            (storage, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            (storage, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

fn udp_send(addr: &str) {
    use std::os::fd::AsRawFd as _;
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"via-sendto", target).unwrap();
    let (mut storage, len) = sockaddr(&target);
    let mut payload = *b"via-sendmsg";
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: all-zero is a valid msghdr; then the fields are set.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut storage).cast();
    msg.msg_namelen = len;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: a valid socket and message.
    assert!(unsafe { libc::sendmsg(socket.as_raw_fd(), &raw const msg, 0) } > 0);
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: [libc::mmsghdr; 2] = unsafe { std::mem::zeroed() };
    msgs[0].msg_hdr = msg;
    msgs[1].msg_hdr = msg;
    // SAFETY: a valid socket and two messages.
    assert_eq!(
        unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), 2, 0) },
        2
    );
    println!("{}", socket.local_addr().unwrap().port());
}

fn dns_server() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:53").unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut buf = [0u8; 512];
    let (n, peer) = socket.recv_from(&mut buf).unwrap();
    // Answer: the query with QR set, one A record pointing back at the question (0xc00c).
    let mut reply = buf[..n].to_vec();
    reply[2] = 0x81;
    reply[3] = 0x80;
    reply[6..8].copy_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3]);
    socket.send_to(&reply, peer).unwrap();
}

fn dns_client(name: &str) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&query, "127.0.0.1:53").unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    let ip = &buf[n - 4..n];
    let target = format!("{}.{}.{}.{}:80", ip[0], ip[1], ip[2], ip[3]);
    // In a namespace with only loopback this fails at once (ENETUNREACH); the attempt is what
    // the sensor reports.
    let result = std::net::TcpStream::connect(&target);
    println!(
        "{target} {}",
        result.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
    );
}
