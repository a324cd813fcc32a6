//! Container metadata Docker keeps on disk: `containers/<id>/config.v2.json` (name, image,
//! labels; under Kubernetes with cri-dockerd the kubelet's labels are among them).
use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::{ContainerMeta, kubernetes};

/// Docker's default data root.
pub const DEFAULT_ROOT: &str = "/var/lib/docker";
const MAX_FILE: u64 = 16 << 20;

#[derive(Deserialize)]
struct ConfigV2 {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Config,
}

#[derive(Default, Deserialize)]
struct Config {
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The metadata of container `id` under Docker's data `root`.
pub fn container(root: &Path, id: &str) -> Option<ContainerMeta> {
    use std::io::Read as _;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut text = Vec::new();
    std::fs::File::open(root.join("containers").join(id).join("config.v2.json"))
        .ok()?
        .take(MAX_FILE)
        .read_to_end(&mut text)
        .ok()?;
    let c: ConfigV2 = serde_json::from_slice(&text).ok()?;
    let labels = c.config.labels.unwrap_or_default();
    let none = BTreeMap::new();
    Some(ContainerMeta {
        pod: kubernetes::pod_from_labels(&labels, &none),
        name: kubernetes::container_name(&labels, &none)
            .or_else(|| Some(c.name.trim_start_matches('/').to_owned()).filter(|n| !n.is_empty())),
        image: (!c.config.image.is_empty()).then_some(c.config.image),
        id: c.id,
        runtime: "docker",
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_v2() {
        let id = "4b8ac0e6f2d1c9a7e3b5d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0";
        let root = std::env::temp_dir().join(format!("docker-test-{}", std::process::id()));
        std::fs::create_dir_all(root.join("containers").join(id)).unwrap();
        std::fs::write(
            root.join("containers").join(id).join("config.v2.json"),
            serde_json::json!({"ID": id, "Name": "/web",
                "Config": {"Image": "nginx:1.27", "Labels": {"team": "a"}}})
            .to_string(),
        )
        .unwrap();
        let c = container(&root, id).unwrap();
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(c.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(c.labels.get("team").map(String::as_str), Some("a"));
        assert!(container(&root, "../etc").is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
