//! Container metadata that podman and CRI-O leave on disk through containers/storage: the
//! container list (`containers.json`: names, image) and each container's OCI spec
//! (`userdata/config.json`: annotations, mounts; CRI-O keeps its labels there too). Podman's
//! labels live in its own database and are not read here.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{ContainerMeta, kubernetes, string_map};

/// containers/storage's default graph root.
pub const DEFAULT_ROOT: &str = "/var/lib/containers/storage";
/// Largest file read (a busy host's container list is a few MiB).
const MAX_FILE: u64 = 64 << 20;

#[derive(Deserialize)]
struct Entry {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    /// A JSON document in a string: `image-name`, `name`, and for CRI-O `pod-name`...
    #[serde(default)]
    metadata: String,
}

fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_FILE)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The metadata of container `id` under the storage `root`, `None` if it is not there.
pub fn container(root: &Path, runtime: &'static str, id: &str) -> Option<ContainerMeta> {
    let dir = root.join("overlay-containers");
    let list: Vec<Entry> = serde_json::from_slice(&read_bounded(&dir.join("containers.json"))?)
        .map_err(|e| tracing::debug!("cannot read containers/storage's container list: {e}"))
        .ok()?;
    let entry = list.into_iter().find(|e| e.id == id)?;
    let meta: serde_json::Value = serde_json::from_str(&entry.metadata).unwrap_or_default();
    let spec = spec(&dir, id);
    let annotations = spec
        .as_ref()
        .map(|s| string_map(&s["annotations"]))
        .unwrap_or_default();
    // CRI-O: the container's labels (the kubelet's included) as JSON in an annotation.
    let labels: BTreeMap<String, String> = annotations
        .get("io.kubernetes.cri-o.Labels")
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let mut pod = kubernetes::pod_from_labels(&labels, &annotations);
    if let Some(pod) = &mut pod {
        pod.service_account = spec
            .as_ref()
            .and_then(kubernetes::service_account_from_spec);
        // The pod's labels are its sandbox (infra) container's.
        if let Some(sandbox) = annotations.get("io.kubernetes.cri-o.SandboxID")
            && let Some(s) = self::spec(&dir, sandbox)
        {
            let a = string_map(&s["annotations"]);
            pod.labels = a
                .get("io.kubernetes.cri-o.Labels")
                .and_then(|l| serde_json::from_str(l).ok())
                .map(kubernetes::user_labels)
                .unwrap_or_default();
        }
    }
    Some(ContainerMeta {
        id: entry.id,
        runtime,
        name: kubernetes::container_name(&labels, &annotations)
            .or_else(|| meta["name"].as_str().map(str::to_owned))
            .or_else(|| entry.names.into_iter().next()),
        image: meta["image-name"].as_str().map(str::to_owned),
        labels,
        pod,
    })
}

/// A container's OCI spec as containers/storage keeps it.
fn spec(containers_dir: &Path, id: &str) -> Option<serde_json::Value> {
    // Ids come from cgroup paths or annotations: only plain hex names are joined to a path.
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.is_empty() {
        return None;
    }
    let path: PathBuf = containers_dir.join(id).join("userdata/config.json");
    serde_json::from_slice(&read_bounded(&path)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ef91badc7bedacb1bc314dfa83422b0a3f19c114b36f60b10c4983764bcc057a";
    const SANDBOX: &str = "0a1b2c3d";

    #[test]
    fn reads_podman_and_cri_o_layouts() {
        let root = std::env::temp_dir().join(format!("storage-test-{}", std::process::id()));
        let dir = root.join("overlay-containers");
        std::fs::create_dir_all(dir.join(ID).join("userdata")).unwrap();
        std::fs::create_dir_all(dir.join(SANDBOX).join("userdata")).unwrap();
        std::fs::write(
            dir.join("containers.json"),
            serde_json::json!([{"id": ID, "names": ["probe1"],
                "metadata": "{\"image-name\":\"localhost/busybox:latest\",\"name\":\"probe1\"}"}])
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join(ID).join("userdata/config.json"),
            serde_json::json!({"annotations": {"io.container.manager": "libpod"}}).to_string(),
        )
        .unwrap();
        let podman = container(&root, "podman", ID).unwrap();
        assert_eq!(podman.name.as_deref(), Some("probe1"));
        assert_eq!(podman.image.as_deref(), Some("localhost/busybox:latest"));
        assert!(podman.pod.is_none());

        // CRI-O: Kubernetes facts in annotations, pod labels on the sandbox.
        let labels = serde_json::json!({"io.kubernetes.pod.namespace": "agents",
            "io.kubernetes.pod.name": "reviewer-0", "io.kubernetes.container.name": "main"});
        std::fs::write(
            dir.join(ID).join("userdata/config.json"),
            serde_json::json!({"annotations": {
                "io.kubernetes.cri-o.Labels": labels.to_string(),
                "io.kubernetes.cri-o.SandboxID": SANDBOX}})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join(SANDBOX).join("userdata/config.json"),
            serde_json::json!({"annotations": {"io.kubernetes.cri-o.Labels":
                serde_json::json!({"app": "reviewer", "io.kubernetes.pod.uid": "u"}).to_string()}})
            .to_string(),
        )
        .unwrap();
        let crio = container(&root, "cri-o", ID).unwrap();
        assert_eq!(crio.name.as_deref(), Some("main"));
        let pod = crio.pod.unwrap();
        assert_eq!(pod.namespace.as_deref(), Some("agents"));
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("reviewer"));
        assert_eq!(pod.labels.len(), 1);
        assert!(container(&root, "cri-o", "ffff").is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
