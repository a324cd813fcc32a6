//! Runs the workload program (`sensor-workload`) in a chosen cgroup and reads what it reports.
use std::{
    ffi::CString,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::observers::Config;

/// The audit login uid every workload runs with: the audit rules select it (`-F auid=`), the
/// way the sensor selects the workload's cgroup. Set in every configuration, so the workload
/// is the same everywhere.
pub const AUDIT_LOGIN_UID: u32 = 4242;

/// A workload mode and its fixed number of operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Open,
    Exec,
    Connect,
    Mixed,
    /// HTTPS requests through OpenSSL, for the TLS capture.
    Tls,
    /// MCP tool calls through pipes with `writev` and `readv`, for the stdio capture.
    Pipe,
    /// The `tls` mode's requests through GnuTLS, for the TLS capture's GnuTLS probes.
    Gnutls,
}

impl Mode {
    pub const ALL: [Mode; 7] = [
        Mode::Open,
        Mode::Exec,
        Mode::Connect,
        Mode::Mixed,
        Mode::Tls,
        Mode::Gnutls,
        Mode::Pipe,
    ];

    /// Whether the mode measures a capture (`tls`, `gnutls`, `pipe`): the sensor's
    /// configurations run with the capture on for the workload's agent, and the
    /// agent-but-capture-off one too.
    pub fn captures(self) -> bool {
        matches!(self, Mode::Tls | Mode::Gnutls | Mode::Pipe)
    }

    /// Whether the mode's client talks to the bench's TLS server.
    pub fn https(self) -> bool {
        matches!(self, Mode::Tls | Mode::Gnutls)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::Exec => "exec",
            Mode::Connect => "connect",
            Mode::Mixed => "mixed",
            Mode::Tls => "tls",
            Mode::Pipe => "pipe",
            Mode::Gnutls => "gnutls",
        }
    }

    /// Operations per run: 0.6 to 1.6 s unattached on the reference machine, long enough to be
    /// stable across repetitions, short enough that the slowest comparison (auditd on `open`,
    /// some 40 times slower) keeps the whole bench within about a quarter of an hour.
    pub fn ops(self) -> u64 {
        match self {
            Mode::Open => 500_000,
            Mode::Exec => 2_000,
            Mode::Connect => 60_000,
            // 320 of the workload's 641-operation cycles (600 opens, 40 connects, 1 exec).
            Mode::Mixed => 641 * 320,
            Mode::Tls | Mode::Gnutls => 40_000,
            // Two writev and two readv each.
            Mode::Pipe => 800_000,
        }
    }

    /// The configurations this mode is measured under: `tls`, `gnutls` and `pipe` add the sensor with the
    /// workload an agent but capture off, and leave out auditd and bpftrace, which see no TLS
    /// plaintext or MCP messages (their syscall rules would measure something else).
    pub fn configs(self) -> &'static [Config] {
        match self {
            Mode::Tls | Mode::Gnutls | Mode::Pipe => &[
                Config::Unattached,
                Config::SensorAgent,
                Config::SensorAgentNoCapture,
                Config::SensorNotAgent,
            ],
            _ => &[
                Config::Unattached,
                Config::SensorAgent,
                Config::SensorEnforce,
                Config::SensorNotAgent,
                Config::Auditd,
                Config::Bpftrace,
            ],
        }
    }

    pub fn parse(name: &str) -> anyhow::Result<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .with_context(|| {
                format!("unknown mode {name:?}: open, exec, connect, mixed, tls, gnutls or pipe")
            })
    }
}

/// Operations of each kind, as a workload did them or an observer reported them. `accepts`
/// are the server side of `connects` (the workload accepts its own connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    pub opens: u64,
    pub execs: u64,
    pub connects: u64,
    pub accepts: u64,
    /// HTTPS request/response exchanges (`llm_exchange` records, `tls`) or MCP calls
    /// (`mcp_call` records, `pipe`); absent in results written before the `tls` mode.
    #[serde(default)]
    pub exchanges: u64,
}

impl Events {
    pub fn total(&self) -> u64 {
        self.opens + self.execs + self.connects + self.accepts + self.exchanges
    }
}

/// The workload's JSON line.
#[derive(Clone, Debug, Deserialize)]
pub struct Report {
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Its own and its children's CPU time, whole life.
    pub cpu_seconds: f64,
    pub pid: u32,
    /// The loopback listener's port (connect and mixed).
    pub port: Option<u16>,
    pub opens: u64,
    pub execs: u64,
    pub connects: u64,
    #[serde(default)]
    pub exchanges: u64,
}

impl Report {
    /// The events every observer should report for this run.
    pub fn expected(&self) -> Events {
        Events {
            opens: self.opens,
            execs: self.execs,
            connects: self.connects,
            accepts: self.connects,
            exchanges: self.exchanges,
        }
    }
}

/// How to start the workload program.
pub struct Workload {
    pub binary: PathBuf,
    /// The file `open` and `mixed` open.
    pub target: PathBuf,
    /// What the `tls` mode's server needs.
    pub tls_server: TlsServer,
}

/// The `tls` mode's server: its cgroup (not the agent's), its certificate and key, and its own
/// copy of libssl (a file no probe is attached to: its side of each request is not measured).
pub struct TlsServer {
    pub cgroup: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub libssl: PathBuf,
}

impl Workload {
    /// Runs `mode` in `cgroup` (a cgroup v2 directory) to completion; for `tls` and
    /// `gnutls`, against a server started for the run.
    pub fn run(&self, mode: Mode, ops: u64, cgroup: &Path) -> anyhow::Result<Report> {
        if !mode.https() {
            return self.run_named(mode.name(), ops, cgroup, &[]);
        }
        let s = &self.tls_server;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("tls-server")
            .arg("--libssl")
            .arg(&s.libssl)
            .arg("--cert")
            .arg(&s.cert)
            .arg("--key")
            .arg(&s.key);
        in_cgroup(&mut cmd, &s.cgroup)?;
        let mut server = Server(
            cmd.stdout(Stdio::piped())
                .spawn()
                .context("starting the workload's TLS server")?,
        );
        let mut line = String::new();
        BufReader::new(server.0.stdout.take().expect("piped"))
            .read_line(&mut line)
            .context("waiting for the TLS server's port")?;
        let port: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("the TLS server said {line:?}"))?;
        let port = port["port"].as_u64().context("the TLS server's port")?;
        self.run_named(
            mode.name(),
            ops,
            cgroup,
            &["--port".to_owned(), port.to_string()],
        )
    }

    /// Forks `n` children that exit at once, one after another, in `cgroup`.
    pub fn churn(&self, n: u64, cgroup: &Path) -> anyhow::Result<Report> {
        self.run_named("churn", n, cgroup, &[])
    }

    fn run_named(
        &self,
        mode: &str,
        ops: u64,
        cgroup: &Path,
        args: &[String],
    ) -> anyhow::Result<Report> {
        let out = self
            .command(mode, ops, cgroup)?
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        if !out.status.success() {
            bail!("the workload ({mode} --ops {ops}) failed: {}", out.status);
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "reading the workload's report: {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Starts `hold --ops n` in `cgroup` and waits until its `n` children exist.
    pub fn hold(&self, n: u64, cgroup: &Path) -> anyhow::Result<Held> {
        let mut child = self
            .command("hold", n, cgroup)?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the workload (hold)")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .context("waiting for the held processes")?;
        if line.is_empty() {
            let status = child.wait()?;
            bail!("the workload (hold {n}) exited with {status} before its children existed");
        }
        Ok(Held { child })
    }

    fn command(&self, mode: &str, ops: u64, cgroup: &Path) -> anyhow::Result<Command> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg(mode).arg("--ops").arg(ops.to_string());
        if matches!(mode, "open" | "mixed") {
            cmd.arg("--path").arg(&self.target);
        }
        in_cgroup(&mut cmd, cgroup)?;
        Ok(cmd)
    }
}

/// Makes `cmd` start in `cgroup`, with the bench's audit login uid, its stdin closed.
fn in_cgroup(cmd: &mut Command, cgroup: &Path) -> anyhow::Result<()> {
    let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes())?;
    let loginuid = AUDIT_LOGIN_UID.to_string();
    // SAFETY: between fork and exec the closure only calls open/write/close on strings
    // made before the fork (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            // Into the cgroup before exec, so the sensor's cgroup selector decides at exec.
            write_file(&procs, b"0")?;
            write_file(c"/proc/self/loginuid", loginuid.as_bytes())
        });
    }
    cmd.stdin(Stdio::null());
    Ok(())
}

/// The `tls` mode's server while a run uses it; killed and reaped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Processes kept alive by `hold`; dropping it kills and reaps them.
pub struct Held {
    child: Child,
}

impl Held {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the held processes (closing the workload's stdin) and waits for all of them.
    pub fn release(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the workload (hold) exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
            drop(stdin);
            let _ = self.child.wait();
        }
    }
}

fn write_file(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: a NUL-terminated path and a live buffer; the fd is closed before returning.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}
