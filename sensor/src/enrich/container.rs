//! Which container (and Kubernetes pod) a process runs in, from its cgroup v2 path: the
//! runtimes name their cgroups after the container id, in a few known shapes (cgroupfs and
//! systemd drivers). What the runtime records of the container (image, labels, pod) comes
//! from the runtime itself (`Catalog`): containerd's API, containers/storage (podman, CRI-O),
//! Docker's files.
mod catalog;
mod containerd;
mod docker;
mod kubernetes;
mod storage;

use std::collections::BTreeMap;

pub use catalog::{Catalog, RuntimeSources};

/// What a container's runtime records of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The container id (64 hex digits).
    pub id: String,
    /// `containerd`, `cri-o`, `docker` or `podman`: where the metadata came from.
    pub runtime: &'static str,
    /// Kubernetes' container name when in a pod, else the runtime's name for it.
    pub name: Option<String>,
    /// The image reference it was created from, as the runtime recorded it.
    pub image: Option<String>,
    /// The container's labels, as the runtime keeps them.
    pub labels: BTreeMap<String, String>,
    /// The pod it runs in, when the runtime's labels or annotations name one.
    pub pod: Option<PodMeta>,
}

/// The Kubernetes pod a container belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    /// The pod's namespace.
    pub namespace: Option<String>,
    /// The pod's name.
    pub name: Option<String>,
    /// The pod's uid.
    pub uid: Option<String>,
    /// The pod's labels (from its sandbox, where the runtime keeps them).
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations (from its sandbox; containerd's CRI plugin only).
    pub annotations: BTreeMap<String, String>,
    /// The service account (in the pod's namespace) whose token is mounted in the container.
    pub service_account: Option<String>,
}

/// A container found in a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    /// `containerd`, `cri-o`, `docker`, `podman`, or `kubernetes` (a pod cgroup whose runtime
    /// the path does not say).
    pub runtime: &'static str,
    /// The container id the path names.
    pub id: String,
    /// The Kubernetes pod's uid, when the path is under `kubepods`.
    pub pod_uid: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `kubepods-burstable-pod1234_5678.slice` or `pod1234-5678` → the pod uid with dashes.
fn pod_uid(component: &str) -> Option<String> {
    let tail = component.strip_suffix(".slice").unwrap_or(component);
    let uid = tail.rsplit_once("pod").map(|(_, u)| u)?;
    let uid = uid.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

/// The container a cgroup path (as in `/proc/PID/cgroup`'s `0::` line) belongs to, if any.
pub(crate) fn from_cgroup_path(path: &str) -> Option<ContainerRef> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let kube = components
        .first()
        .is_some_and(|c| c.starts_with("kubepods"));
    let pod = kube
        .then(|| components.iter().find_map(|c| pod_uid(c)))
        .flatten();
    // The innermost component that names a container.
    for component in components.iter().rev() {
        let name = component.strip_suffix(".scope").unwrap_or(component);
        let (runtime, id) = if let Some(id) = name.strip_prefix("cri-containerd-") {
            ("containerd", id)
        } else if let Some(id) = name.strip_prefix("crio-") {
            ("cri-o", id)
        } else if let Some(id) = name.strip_prefix("docker-") {
            ("docker", id)
        } else if let Some(id) = name.strip_prefix("libpod-") {
            ("podman", id)
        } else if is_container_id(name) {
            // A bare id: cgroupfs driver. The parent says whose.
            let runtime = match components.first() {
                Some(&"docker") => "docker",
                Some(c) if c.starts_with("kubepods") => "kubernetes",
                Some(&("libpod_parent" | "machine.slice")) => "podman",
                _ => "containerd",
            };
            (runtime, name)
        } else {
            continue;
        };
        // `crio-conmon-<id>` and similar helpers are not the container itself.
        if is_container_id(id) {
            return Some(ContainerRef {
                runtime,
                id: id.to_owned(),
                pod_uid: pod,
            });
        }
    }
    None
}

/// A JSON object of strings as a map (other values are skipped).
fn string_map(v: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4b8ac0e6f2d1c9a7e3b5d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0";
    const POD: &str = "1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6";

    fn c(runtime: &'static str, pod: Option<&str>) -> ContainerRef {
        ContainerRef {
            runtime,
            id: ID.into(),
            pod_uid: pod.map(Into::into),
        }
    }

    #[test]
    fn kubernetes_with_the_cgroupfs_driver() {
        assert_eq!(
            from_cgroup_path(&format!("/kubepods/burstable/pod{POD}/{ID}")),
            Some(c("kubernetes", Some(POD)))
        );
        assert_eq!(
            from_cgroup_path(&format!("/kubepods/pod{POD}/{ID}")),
            Some(c("kubernetes", Some(POD)))
        );
        assert_eq!(
            from_cgroup_path(&format!("/kubepods/besteffort/pod{POD}/crio-{ID}")),
            Some(c("cri-o", Some(POD)))
        );
    }

    #[test]
    fn kubernetes_with_the_systemd_driver() {
        let pod_slice = POD.replace('-', "_");
        for (prefix, runtime) in [
            ("cri-containerd", "containerd"),
            ("crio", "cri-o"),
            ("docker", "docker"),
        ] {
            let path = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_slice}.slice/{prefix}-{ID}.scope"
            );
            assert_eq!(
                from_cgroup_path(&path),
                Some(c(runtime, Some(POD))),
                "{path}"
            );
        }
    }

    #[test]
    fn docker_podman_and_plain_containerd() {
        assert_eq!(
            from_cgroup_path(&format!("/docker/{ID}")),
            Some(c("docker", None))
        );
        assert_eq!(
            from_cgroup_path(&format!("/system.slice/docker-{ID}.scope")),
            Some(c("docker", None))
        );
        assert_eq!(
            from_cgroup_path(&format!("/machine.slice/libpod-{ID}.scope")),
            Some(c("podman", None))
        );
        assert_eq!(
            from_cgroup_path(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            )),
            Some(c("podman", None))
        );
        assert_eq!(
            from_cgroup_path(&format!("/libpod_parent/libpod-{ID}")),
            Some(c("podman", None))
        );
        assert_eq!(
            from_cgroup_path(&format!("/k8s.io/{ID}")),
            Some(c("containerd", None))
        );
    }

    #[test]
    fn not_a_container() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/sshd.service",
            "/agents/reviewer",
            &format!("/crio-conmon-{}", &ID[..10]),
        ] {
            assert_eq!(from_cgroup_path(path), None, "{path}");
        }
    }
}
