//! The workload `cargo xtask bench` measures: one kind of operation, a fixed number of times, as
//! fast as one thread can, then one JSON line on stdout with the rate and what was done (so the
//! bench can count each observer's records against it).
//!
//! Every measured operation is made of syscalls that agent-sensor, auditd and bpftrace can all
//! report: `open` is openat+close of one file, `exec` is fork+execve of `/bin/true`+wait,
//! `connect` is a TCP connect and its accept on loopback. `tls` is an HTTPS request and its
//! response on one keep-alive connection, through OpenSSL (what the sensor's TLS capture
//! observes), to a `tls-server` the bench starts ([`tls`]); `gnutls` the same through GnuTLS
//! ([`gnutls`]). `pipe` is an MCP `tools/call`
//! and its response through two pipes with `writev` and `readv` (what the sensor's stdio
//! capture observes, [`pipe`]). The helper modes `hold` and `churn`
//! make processes for the memory measurement.
use std::{
    ffi::CString,
    io::Read as _,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    path::PathBuf,
    time::Instant,
};

use clap::{Parser, Subcommand};
use serde_json::json;

mod gnutls;
mod pipe;
mod tls;

#[derive(Parser)]
#[command(about = "The workload the overhead benchmark measures")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// openat(O_RDONLY)+close of one file.
    Open {
        #[arg(long)]
        ops: u64,
        /// The file to open (it must exist).
        #[arg(long)]
        path: PathBuf,
    },
    /// fork, execve of /bin/true in the child, wait.
    Exec {
        #[arg(long)]
        ops: u64,
    },
    /// TCP connect to a loopback listener of this process, accept, close both ends.
    Connect {
        #[arg(long)]
        ops: u64,
    },
    /// The three interleaved in a fixed pattern (see `MIXED_PATTERN`).
    Mixed {
        #[arg(long)]
        ops: u64,
        #[arg(long)]
        path: PathBuf,
    },
    /// HTTPS requests (an LLM API call's shape) on one connection to a `tls-server`.
    Tls {
        #[arg(long)]
        ops: u64,
        /// The server's port on 127.0.0.1.
        #[arg(long)]
        port: u16,
    },
    /// The requests of `tls` through GnuTLS.
    Gnutls {
        #[arg(long)]
        ops: u64,
        /// The server's port on 127.0.0.1.
        #[arg(long)]
        port: u16,
    },
    /// An MCP tool call and its response through two pipes (`writev`, `readv`).
    Pipe {
        #[arg(long)]
        ops: u64,
    },
    /// The server of `tls`: answers every request until killed; prints its port.
    TlsServer {
        /// The OpenSSL library file to load.
        #[arg(long)]
        libssl: PathBuf,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Fork this many children that wait; print a line when they all exist; kill them when
    /// standard input closes.
    Hold {
        #[arg(long)]
        ops: u64,
    },
    /// Fork children that exit at once, one after another (processes that come and go).
    Churn {
        #[arg(long)]
        ops: u64,
    },
}

/// One `mixed` cycle of 641 operations: 600 opens, 40 connects (every 16th), 1 exec. An agent
/// that mostly reads files, often calls a service, now and then runs a tool; unattached, each
/// kind takes about a third of the time.
const MIXED_PATTERN: &[Op] = &{
    let mut p = [Op::Open; 641];
    let mut i = 15;
    while i < 640 {
        p[i] = Op::Connect;
        i += 16;
    }
    p[640] = Op::Exec;
    p
};

#[derive(Clone, Copy)]
enum Op {
    Open,
    Exec,
    Connect,
}

/// What a run did, by kind of operation.
#[derive(Default)]
struct Done {
    opens: u64,
    execs: u64,
    connects: u64,
    /// HTTPS requests answered (`tls`, `gnutls`), MCP calls made (`pipe`).
    exchanges: u64,
}

fn main() {
    let cli = Cli::parse();
    let (mode, ops) = match &cli.mode {
        Mode::Open { ops, .. } => ("open", *ops),
        Mode::Exec { ops } => ("exec", *ops),
        Mode::Connect { ops } => ("connect", *ops),
        Mode::Mixed { ops, .. } => ("mixed", *ops),
        Mode::Tls { ops, .. } => ("tls", *ops),
        Mode::Pipe { ops } => ("pipe", *ops),
        Mode::Gnutls { ops, .. } => ("gnutls", *ops),
        Mode::TlsServer { libssl, cert, key } => return tls::serve(libssl, cert, key),
        Mode::Hold { ops } => return hold(*ops),
        Mode::Churn { ops } => ("churn", *ops),
    };
    let mut ctx = Ctx::new(&cli.mode);
    let mut done = Done::default();
    let started = Instant::now();
    match &cli.mode {
        Mode::Open { .. } => (0..ops).for_each(|_| ctx.run(Op::Open, &mut done)),
        Mode::Exec { .. } => (0..ops).for_each(|_| ctx.run(Op::Exec, &mut done)),
        Mode::Connect { .. } => (0..ops).for_each(|_| ctx.run(Op::Connect, &mut done)),
        Mode::Mixed { .. } => MIXED_PATTERN
            .iter()
            .cycle()
            .take(ops as usize)
            .for_each(|&op| ctx.run(op, &mut done)),
        Mode::Tls { .. } => {
            let client = ctx.client.as_mut().expect("connected");
            for _ in 0..ops {
                client.request();
            }
            done.exchanges = ops;
        }
        Mode::Gnutls { .. } => {
            let client = ctx.gnutls.as_mut().expect("connected");
            for _ in 0..ops {
                client.request();
            }
            done.exchanges = ops;
        }
        Mode::Pipe { .. } => {
            let pipes = ctx.pipes.as_mut().expect("made");
            for id in 0..ops {
                pipes.call(id);
            }
            done.exchanges = ops;
        }
        Mode::Churn { .. } => (0..ops).for_each(|_| churn_one()),
        Mode::Hold { .. } | Mode::TlsServer { .. } => unreachable!(),
    }
    let seconds = started.elapsed().as_secs_f64();
    // Freed after the clock: the connection's end is not a measured operation.
    drop(ctx.client.take());
    drop(ctx.gnutls.take());
    let cpu_seconds = cpu_seconds(libc::RUSAGE_SELF) + cpu_seconds(libc::RUSAGE_CHILDREN);
    println!(
        "{}",
        json!({
            "mode": mode,
            "ops": ops,
            "seconds": seconds,
            "ops_per_sec": ops as f64 / seconds,
            // Its own and its children's, whole life: what a run used that is not other work.
            "cpu_seconds": cpu_seconds,
            "pid": std::process::id(),
            "port": ctx.listener.as_ref().map(|l| l.local_addr().expect("bound").port()),
            "opens": done.opens,
            "execs": done.execs,
            "connects": done.connects,
            "exchanges": done.exchanges,
        })
    );
}

/// What the operations need, made before the clock starts.
struct Ctx {
    path: Option<CString>,
    listener: Option<TcpListener>,
    /// `tls`: connected, the handshake done.
    client: Option<tls::Client>,
    /// `gnutls`: connected, the handshake done.
    gnutls: Option<gnutls::Client>,
    /// `pipe`: the two pipes.
    pipes: Option<pipe::Pipes>,
    true_path: CString,
    true_argv: [*const libc::c_char; 2],
    empty_env: [*const libc::c_char; 1],
}

impl Ctx {
    fn new(mode: &Mode) -> Self {
        let path = match mode {
            Mode::Open { path, .. } | Mode::Mixed { path, .. } => {
                use std::os::unix::ffi::OsStrExt as _;
                assert!(path.is_file(), "{} is not a file", path.display());
                Some(CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path"))
            }
            _ => None,
        };
        let listener = matches!(mode, Mode::Connect { .. } | Mode::Mixed { .. }).then(|| {
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("listen")
        });
        let client = match mode {
            Mode::Tls { port, .. } => Some(tls::Client::connect(*port)),
            _ => None,
        };
        let gnutls = match mode {
            Mode::Gnutls { port, .. } => Some(gnutls::Client::connect(*port)),
            _ => None,
        };
        let pipes = matches!(mode, Mode::Pipe { .. }).then(pipe::Pipes::new);
        let true_path = CString::new("/bin/true").expect("no NUL");
        let true_argv = [c"true".as_ptr(), std::ptr::null()];
        Self {
            path,
            listener,
            client,
            gnutls,
            pipes,
            true_path,
            true_argv,
            empty_env: [std::ptr::null()],
        }
    }

    fn run(&mut self, op: Op, done: &mut Done) {
        match op {
            Op::Open => {
                self.open_one();
                done.opens += 1;
            }
            Op::Exec => {
                self.exec_one();
                done.execs += 1;
            }
            Op::Connect => {
                self.connect_one();
                done.connects += 1;
            }
        }
    }

    fn open_one(&self) {
        let path = self.path.as_ref().expect("a path");
        // SAFETY: a NUL-terminated path; the fd is closed at once.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
    }

    fn exec_one(&self) {
        // SAFETY: the program is single-threaded; the child only calls execve and _exit, with
        // arguments prepared before the fork.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
        if child == 0 {
            unsafe {
                libc::execve(
                    self.true_path.as_ptr(),
                    self.true_argv.as_ptr(),
                    self.empty_env.as_ptr(),
                );
                libc::_exit(127);
            }
        }
        let status = wait(child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "/bin/true failed: status {status:#x}"
        );
    }

    /// connect, then accept in the same thread (on loopback the handshake completes inside
    /// connect), so no thread hand-off is measured. The client closes with an RST (linger 0):
    /// no TIME_WAIT, so hundreds of thousands of connections do not run out of ports.
    fn connect_one(&self) {
        let listener = self.listener.as_ref().expect("a listener");
        let addr = listener.local_addr().expect("bound");
        // SAFETY: plain socket calls on fds this function owns and closes.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as u32,
            );
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: addr.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
                },
                sin_zero: [0; 8],
            };
            let rc = libc::connect(
                fd,
                (&raw const sin).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            );
            assert!(rc == 0, "connect: {}", std::io::Error::last_os_error());
            let peer = libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            assert!(peer >= 0, "accept: {}", std::io::Error::last_os_error());
            libc::close(fd);
            libc::close(peer);
        }
    }
}

/// User plus system CPU time of `who` (`RUSAGE_SELF` or the reaped `RUSAGE_CHILDREN`).
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &raw mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn wait(child: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let rc = unsafe { libc::waitpid(child, &raw mut status, 0) };
    assert_eq!(rc, child, "waitpid: {}", std::io::Error::last_os_error());
    status
}

fn churn_one() {
    // SAFETY: single-threaded; the child only calls _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
    if child == 0 {
        unsafe { libc::_exit(0) };
    }
    wait(child);
}

/// Forks `n` children that sleep until killed; prints one line when all exist, then waits for
/// standard input to close and kills and reaps them all.
fn hold(n: u64) {
    let mut children = Vec::with_capacity(n as usize);
    for _ in 0..n {
        // SAFETY: single-threaded; the child only calls pause, until SIGKILL.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
        if child == 0 {
            loop {
                unsafe { libc::pause() };
            }
        }
        children.push(child);
    }
    println!(
        "{}",
        json!({ "mode": "hold", "ops": n, "pid": std::process::id() })
    );
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    for &child in &children {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
    for &child in &children {
        wait(child);
    }
}
