//! Real containers for the tests: a private containerd (its own socket, root and state, so a
//! host's containerd is never touched), podman and plain runc, all running a busybox rootfs
//! the test builds (no image registry is reachable). Everything made is removed on drop,
//! including the cgroup directories the runtimes leave behind — only those that did not exist
//! before.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The image every test container runs, as imported into containerd.
pub const IMAGE: &str = "localhost/agent-sensor-test:1";

/// Runs a command, panicking with its output if it fails; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 64-hex container id, unique to this test process and `n`.
pub fn container_id(n: u32) -> String {
    format!("{:0>56}{n:08x}", format!("{:x}", std::process::id()))
}

/// A busybox root file system under `dir/rootfs`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for d in [
        "bin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "etc",
        "var/run/secrets/kubernetes.io/serviceaccount",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static (cargo xtask setup installs it)");
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "true", "cat", "ls", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("etc/hostname"), "test\n").unwrap();
    rootfs
}

/// An OCI image layout tarball of `rootfs`, named `IMAGE`, for `ctr images import`.
fn oci_image(rootfs: &Path, out: &Path) {
    let script = r#"set -eu
w=$(mktemp -d); mkdir -p "$w/blobs/sha256"
tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -cf "$w/layer.tar" .
diffid=$(sha256sum "$w/layer.tar" | cut -d' ' -f1)
gzip -n "$w/layer.tar"
blob() { d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1"); mv "$1" "$w/blobs/sha256/$d"; echo "$d $s"; }
read -r ldig lsize <<EOF
$(blob "$w/layer.tar.gz")
EOF
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diffid" > "$w/config"
read -r cdig csize <<EOF
$(blob "$w/config")
EOF
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' "$cdig" "$csize" "$ldig" "$lsize" > "$w/manifest"
read -r mdig msize <<EOF
$(blob "$w/manifest")
EOF
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s"}}]}' "$mdig" "$msize" "$IMAGE" > "$w/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$w/oci-layout"
tar -C "$w" -cf "$OUT" oci-layout index.json blobs
rm -rf "$w"
"#;
    run(Command::new("bash")
        .args(["-c", script])
        .env("ROOTFS", rootfs)
        .env("OUT", out)
        .env("IMAGE", IMAGE));
}

/// Cgroup directories (in every hierarchy) that did not exist when noted, removed at the end
/// deepest first; a directory still in use stays (rmdir refuses).
#[derive(Default)]
pub struct CgroupCleanup {
    made: Vec<PathBuf>,
}

impl CgroupCleanup {
    /// Notes `path` (relative to a hierarchy's root) and its parents, where they do not exist.
    pub fn note(&mut self, path: &str) {
        // Unified: /sys/fs/cgroup is the one hierarchy; hybrid or v1: one per directory.
        let roots: Vec<PathBuf> = if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
            vec![PathBuf::from("/sys/fs/cgroup")]
        } else {
            let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
                return;
            };
            hierarchies.flatten().map(|e| e.path()).collect()
        };
        for root in roots {
            let mut p = Path::new(path);
            while p != Path::new("/") && !p.as_os_str().is_empty() {
                let dir = root.join(p.strip_prefix("/").unwrap_or(p));
                if !dir.exists() && !self.made.contains(&dir) {
                    self.made.push(dir);
                }
                p = p.parent().unwrap_or(Path::new("/"));
            }
        }
    }
}

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        self.made
            .sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in &self.made {
            // A runtime may take a moment to empty a cgroup it is done with.
            for _ in 0..20 {
                if !dir.exists() || std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A private containerd with the test image imported.
pub struct Containerd {
    child: Child,
    pub socket: PathBuf,
    dir: PathBuf,
    /// (namespace, id) of every container run.
    containers: Vec<(String, String)>,
    pub cgroups: CgroupCleanup,
}

impl Containerd {
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = dir.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (cargo xtask setup installs it)");
        let me = Self {
            child,
            socket,
            dir: dir.to_owned(),
            containers: Vec::new(),
            cgroups: CgroupCleanup::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !me
            .ctr("default")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "containerd did not start:\n{}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let rootfs = busybox_rootfs(dir);
        let image = dir.join("image.tar");
        oci_image(&rootfs, &image);
        for ns in ["default", "k8s.io"] {
            run(me.ctr(ns).args(["images", "import"]).arg(&image));
        }
        me
    }

    /// `ctr` against this containerd, in namespace `ns`.
    pub fn ctr(&self, ns: &str) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.socket).args(["-n", ns]);
        c
    }

    /// Runs a detached container in cgroup `cgroup` with `labels`, `extra` flags (mounts) and
    /// the command `args`; returns the host pid of its first process.
    pub fn run(
        &mut self,
        ns: &str,
        id: &str,
        cgroup: &str,
        labels: &[(&str, &str)],
        extra: &[&str],
        args: &[&str],
    ) -> u32 {
        self.cgroups.note(cgroup);
        let mut cmd = self.ctr(ns);
        cmd.args(["run", "-d", "--cgroup", cgroup]);
        for (k, v) in labels {
            cmd.args(["--label", &format!("{k}={v}")]);
        }
        cmd.args(extra).args([IMAGE, id]).args(args);
        self.containers.push((ns.to_owned(), id.to_owned()));
        run(&mut cmd);
        let tasks = run(self.ctr(ns).args(["tasks", "ls"]));
        tasks
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id))
                    .then(|| f[1].parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no task for {id}:\n{tasks}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for (ns, id) in &self.containers {
            let _ = self
                .ctr(ns)
                .args(["tasks", "kill", "-s", "KILL", id])
                .output();
        }
        for (ns, id) in &self.containers {
            for _ in 0..50 {
                if self
                    .ctr(ns)
                    .args(["tasks", "delete", id])
                    .output()
                    .is_ok_and(|o| o.status.success())
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.ctr(ns).args(["containers", "rm", id]).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The shims outlive containerd for a moment; their mounts are under `dir`.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("state"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// podman with what these machines need: runc (crun refuses hybrid cgroups), the cgroupfs
/// manager (no systemd), no network, and limits it may set without CAP_SYS_RESOURCE.
pub fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args([
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]);
    c
}

/// A podman container, removed on drop.
pub struct Podman {
    pub name: String,
    pub pid: u32,
    pub id: String,
    _cgroups: CgroupCleanup,
}

impl Podman {
    /// Runs `args` detached in a container named `name` from `rootfs` (imported once).
    pub fn run(name: &str, rootfs: &Path, args: &[&str]) -> Self {
        let mut cgroups = CgroupCleanup::default();
        // podman with cgroupfs: /libpod_parent/libpod-<id>, and conmon's in v1 hierarchies.
        cgroups.note("/libpod_parent/conmon");
        let image = "localhost/agent-sensor-test-podman:1";
        if !podman()
            .args(["image", "exists", image])
            .status()
            .is_ok_and(|s| s.success())
        {
            let tar = rootfs.with_extension("tar");
            run(Command::new("tar")
                .arg("-C")
                .arg(rootfs)
                .args(["--numeric-owner", "-cf"])
                .arg(&tar)
                .arg("."));
            run(podman().args(["import", "-q"]).arg(&tar).arg(image));
        }
        let id = run(podman()
            .args(["run", "-d", "--name", name, "--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
            ])
            .arg(image)
            .args(args))
        .trim()
        .to_owned();
        let pid = run(podman().args(["inspect", "-f", "{{.State.Pid}}", name]))
            .trim()
            .parse()
            .unwrap_or(0);
        Self {
            name: name.to_owned(),
            pid,
            id,
            _cgroups: cgroups,
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

/// A container run by runc alone, from an OCI bundle, removed on drop.
pub struct Runc {
    id: String,
    _cgroups: CgroupCleanup,
}

impl Runc {
    /// Runs `args` in a new container `id` whose cgroup is `cgroup`.
    pub fn run(bundle: &Path, id: &str, cgroup: &str, args: &[&str]) -> Self {
        let mut cgroups = CgroupCleanup::default();
        cgroups.note(cgroup);
        let rootfs = busybox_rootfs(bundle);
        run(Command::new("runc").arg("spec").current_dir(bundle));
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        spec["process"]["args"] = serde_json::json!(args);
        spec["process"]["terminal"] = false.into();
        spec["root"]["path"] = rootfs.to_str().unwrap().into();
        spec["linux"]["cgroupsPath"] = cgroup.into();
        std::fs::write(&path, spec.to_string()).unwrap();
        run(Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null()));
        Self {
            id: id.to_owned(),
            _cgroups: cgroups,
        }
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.id])
            .output();
    }
}
