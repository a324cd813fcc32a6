//! The container image (deploy/container/Containerfile), built for real with podman from a
//! Debian root file system mmdebstrap makes (no registry is reachable), run with exactly the
//! privileges the DaemonSet grants: its capabilities (read from daemonset.yaml), the host's
//! PID namespace, a read-only root file system, no_new_privs, no seccomp filter (podman's
//! default profile here refuses bpf(2) without CAP_SYS_ADMIN), and the DaemonSet's host
//! mounts. It must observe a host process and
//! attribute a container of the host's containerd to its agent; and with each capability
//! taken away in turn it must fail, naming the missing one (or, for one a kernel this new does
//! not need, still run).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sensor_tests::{
    Value, action, cgroup2_root,
    containers::{self, Containerd, container_id, podman},
    require_root, scratch_dir, sensor_binary,
};

/// The base the image's first stage gathers files in.
const BASE: &str = "localhost/agent-sensor-base:bookworm";
const IMAGE: &str = "localhost/agent-sensor:test";
const TIMEOUT: Duration = Duration::from_mins(1);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Imports a minimal Debian as [`BASE`], once (mmdebstrap, about a minute).
fn base_image() {
    if podman()
        .args(["image", "exists", BASE])
        .status()
        .is_ok_and(|s| s.success())
    {
        return;
    }
    let dir = scratch_dir("image-base");
    let tar = dir.join("bookworm.tar");
    containers::run(
        Command::new("mmdebstrap")
            .args(["--variant=essential", "--quiet", "bookworm"])
            .arg(&tar),
    );
    containers::run(podman().args(["import", "-q"]).arg(&tar).arg(BASE));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Builds [`IMAGE`] from the Containerfile around the sensor binary under test.
fn build_image() {
    base_image();
    let context = scratch_dir("image-context");
    std::fs::copy(sensor_binary(), context.join("agent-sensor")).unwrap();
    containers::run(
        podman()
            .args(["build", "--quiet", "--build-arg"])
            .arg(format!("BASE={BASE}"))
            .arg("-f")
            .arg(repo().join("deploy/container/Containerfile"))
            .args(["-t", IMAGE])
            .arg(&context),
    );
    let _ = std::fs::remove_dir_all(&context);
}

/// The capabilities the DaemonSet adds (it drops all others).
fn daemonset_capabilities() -> Vec<String> {
    let daemonset =
        std::fs::read_to_string(repo().join("deploy/kubernetes/daemonset.yaml")).unwrap();
    assert!(daemonset.contains("drop: [\"ALL\"]"));
    assert!(daemonset.contains("hostPID: true"));
    assert!(daemonset.contains("readOnlyRootFilesystem: true"));
    assert!(daemonset.contains("allowPrivilegeEscalation: false"));
    assert!(
        daemonset.contains("type: Unconfined"),
        "the seccomp profile the test grants"
    );
    let line = daemonset
        .lines()
        .find_map(|l| l.trim().strip_prefix("add: ["))
        .expect("the DaemonSet's capabilities.add");
    line.trim_end_matches(']')
        .split(',')
        .map(|c| format!("CAP_{}", c.trim().trim_matches('"')))
        .collect()
}

/// A sensor in the image with the DaemonSet's privileges less `without`, its config
/// `config_dir/agent-sensor.toml` and manifest `identities_dir`, writing to `trail`.
fn run_in_image(
    name: &str,
    caps: &[String],
    dirs: &Dirs,
    containerd_socket: &Path,
    extra_args: &[&str],
) -> Child {
    let mut cmd = podman();
    cmd.args(["run", "--rm", "--name", name, "--network", "none"])
        // Limits the runtime may set here without CAP_SYS_RESOURCE (tests/src/containers.rs).
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args(["--cap-drop", "all"]);
    for cap in caps {
        cmd.args(["--cap-add", cap]);
    }
    let mount = |host: &Path, at: &str, ro: bool| {
        format!("{}:{at}{}", host.display(), if ro { ":ro" } else { "" })
    };
    cmd.args(["--pid", "host", "--read-only", "--user", "0"])
        .args(["--security-opt", "no-new-privileges"])
        .args(["--security-opt", "seccomp=unconfined"])
        .args(["-v", "/sys/kernel/btf:/sys/kernel/btf:ro"])
        .args(["-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro"])
        .args(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"])
        .arg("-v")
        .arg(mount(
            containerd_socket,
            "/run/containerd/containerd.sock",
            true,
        ))
        .arg("-v")
        .arg(mount(&dirs.config, "/etc/agent-sensor/config", true))
        .arg("-v")
        .arg(mount(
            &dirs.identities,
            "/etc/agent-sensor/identities",
            true,
        ))
        .arg("-v")
        .arg(mount(&dirs.run, "/run/agent-sensor", false))
        .arg("-v")
        .arg(mount(&dirs.trail, "/var/lib/agent-sensor", false))
        .arg(IMAGE)
        .args([
            "run",
            "--config",
            "/etc/agent-sensor/config/agent-sensor.toml",
        ])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn().expect("podman")
}

struct Dirs {
    config: PathBuf,
    identities: PathBuf,
    run: PathBuf,
    trail: PathBuf,
}

impl Dirs {
    /// The DaemonSet's config (deploy/kubernetes/agent-sensor.toml) and `manifest`.
    fn new(root: &Path, manifest: &str) -> Self {
        let dirs = Dirs {
            config: root.join("config"),
            identities: root.join("identities"),
            run: root.join("run"),
            trail: root.join("trail"),
        };
        for d in [&dirs.config, &dirs.identities, &dirs.run, &dirs.trail] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::copy(
            repo().join("deploy/kubernetes/agent-sensor.toml"),
            dirs.config.join("agent-sensor.toml"),
        )
        .unwrap();
        std::fs::write(dirs.identities.join("agents.yaml"), manifest).unwrap();
        dirs
    }

    /// Every record of the trail so far.
    fn records(&self) -> Vec<Value> {
        let dir = self.trail.join("trail");
        let Ok(files) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = files.flatten().map(|e| e.path()).collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits for a record matching `pred`.
    fn wait_for(&self, what: &str, sensor: &mut Child, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            if let Ok(Some(status)) = sensor.try_wait() {
                panic!(
                    "the sensor exited ({status}) before {what}:\n{}",
                    stderr_of(sensor)
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; records: {:#?}",
                self.records()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn stderr_of(child: &mut Child) -> String {
    use std::io::Read as _;
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut err);
    }
    err
}

fn stop(name: &str, child: &mut Child) -> String {
    let _ = podman().args(["kill", "--signal", "TERM", name]).output();
    let status = child.wait().unwrap();
    let err = stderr_of(child);
    assert!(
        status.success(),
        "the sensor in the image exited with {status}:\n{err}"
    );
    err
}

#[test]
fn the_image_with_the_daemonsets_privileges_observes_host_and_container() {
    require_root();
    build_image();
    let dir = scratch_dir("image-run");
    let mut containerd = Containerd::start(&dir.join("containerd"));
    let host_cgroup = format!("agent-sensor-image-host-{}", std::process::id());
    let dirs = Dirs::new(
        &dir,
        &format!(
            "agents:
  - id: host-agent
    selectors: [{{cgroup: /{host_cgroup}/**}}]
  - id: container-agent
    selectors:
      - container: {{image: '{image}', labels: {{role: agent}}}}
",
            image = containers::IMAGE
        ),
    );
    let name = format!("agent-sensor-image-{}", std::process::id());
    let mut sensor = run_in_image(
        &name,
        &daemonset_capabilities(),
        &dirs,
        &containerd.socket,
        &[],
    );
    dirs.wait_for("the start record", &mut sensor, |r| {
        action(r) == "sensor_start"
    });

    // A host process, in the host agent's cgroup.
    let cgroup = Path::new(&cgroup2_root()).join(&host_cgroup);
    std::fs::create_dir_all(&cgroup).unwrap();
    let marker = format!("image-host-{}", std::process::id());
    let out = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs && /bin/echo {marker}",
                cgroup.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let host = dirs.wait_for("the host process's exec", &mut sensor, |r| {
        action(r) == "exec" && r["process"]["args"][1] == marker.as_str()
    });
    assert_eq!(host["identity"]["agent"]["id"], "host-agent", "{host}");

    // A container of the host's containerd, known to the sensor through the mounted socket.
    let id = container_id(7);
    containerd.run(
        "default",
        &id,
        &format!("/agent-sensor-image/{id}"),
        &[("role", "agent")],
        &[],
        &["sh", "-c", "cat /etc/hostname"],
    );
    let cat = dirs.wait_for("the container's cat", &mut sensor, |r| {
        action(r) == "exec" && r["container"]["id"] == id.as_str()
    });
    assert_eq!(cat["identity"]["agent"]["id"], "container-agent", "{cat}");
    assert_eq!(cat["identity"]["attribution"]["method"], "container");
    assert_eq!(cat["container"]["runtime"], "containerd");

    stop(&name, &mut sensor);
    let _ = std::fs::remove_dir(&cgroup);
    drop(containerd);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_missing_capability_is_named() {
    require_root();
    build_image();
    let caps = daemonset_capabilities();
    for missing in &caps {
        let dir = scratch_dir("image-caps");
        let dirs = Dirs::new(
            &dir,
            "agents:\n  - id: nobody\n    selectors: [{cgroup: /agent-sensor-nobody/**}]\n",
        );
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let name = format!("agent-sensor-caps-{}", std::process::id());
        let socket = dir.join("no-containerd.sock");
        std::fs::write(&socket, "").unwrap();
        let mut sensor = run_in_image(&name, &fewer, &dirs, &socket, &[]);
        let deadline = Instant::now() + TIMEOUT;
        let exited = loop {
            if let Ok(Some(status)) = sensor.try_wait() {
                break Some(status);
            }
            if dirs.records().iter().any(|r| action(r) == "sensor_start") {
                break None;
            }
            assert!(
                Instant::now() < deadline,
                "without {missing}: neither ran nor failed"
            );
            thread::sleep(Duration::from_millis(100));
        };
        if missing == "CAP_SYS_RESOURCE" && kernel_at_least(5, 11) {
            // Only kernels before 5.11 charge maps to the locked-memory limit.
            assert!(
                exited.is_none(),
                "without {missing}: {}",
                stderr_of(&mut sensor)
            );
            stop(&name, &mut sensor);
        } else {
            let status = exited.unwrap_or_else(|| {
                let _ = podman().args(["kill", &name]).output();
                panic!("the sensor ran without {missing}")
            });
            let err = stderr_of(&mut sensor);
            assert!(!status.success());
            assert!(err.contains(missing.as_str()), "without {missing}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(['.', '-']);
    let version: (u32, u32) = (
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    );
    version >= (major, minor)
}
