//! Kubernetes facts about a container, from what its runtime records: the labels and
//! annotations the kubelet (through CRI) puts on containers and pod sandboxes, and the
//! service account of the token the kubelet mounted into the container.
use std::{collections::BTreeMap, io::Read as _};

use base64::Engine as _;

use super::PodMeta;

const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const POD_NAME: &str = "io.kubernetes.pod.name";
const POD_UID: &str = "io.kubernetes.pod.uid";
const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The same facts as OCI annotations (containerd's CRI plugin, CRI-O).
const CRI_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
const CRI_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
const CRI_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";

/// Where the kubelet mounts a pod's service-account token in its containers.
const TOKEN_MOUNTS: &[&str] = &[
    "/var/run/secrets/kubernetes.io/serviceaccount",
    "/run/secrets/kubernetes.io/serviceaccount",
];
/// Largest token file read (projected tokens are about 1 KiB).
const MAX_TOKEN: u64 = 64 * 1024;

fn first<'a>(maps: [&'a BTreeMap<String, String>; 2], keys: [&str; 2]) -> Option<&'a String> {
    maps.iter()
        .zip(keys)
        .find_map(|(m, k)| m.get(k).filter(|v| !v.is_empty()))
}

/// The pod a container belongs to, if its labels or annotations say it has one.
pub fn pod_from_labels(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Option<PodMeta> {
    let both = [labels, annotations];
    let pod = PodMeta {
        namespace: first(both, [POD_NAMESPACE, CRI_SANDBOX_NAMESPACE]).cloned(),
        name: first(both, [POD_NAME, CRI_SANDBOX_NAME]).cloned(),
        uid: first(both, [POD_UID, CRI_SANDBOX_UID]).cloned(),
        ..Default::default()
    };
    (pod.namespace.is_some() || pod.name.is_some() || pod.uid.is_some()).then_some(pod)
}

/// The container's name: Kubernetes' (the pod spec's) if it has one.
pub fn container_name(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Option<String> {
    first([labels, annotations], [CONTAINER_NAME, CRI_CONTAINER_NAME]).cloned()
}

/// The labels a user gave (a pod's, on its sandbox), without the runtime's bookkeeping ones.
pub fn user_labels(labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .into_iter()
        .filter(|(k, _)| {
            !(k.starts_with("io.kubernetes.")
                || k.starts_with("io.cri-containerd.")
                || k.starts_with("io.containerd."))
        })
        .collect()
}

/// A pod's labels and annotations from the sandbox metadata the CRI plugin keeps
/// (`{"Version":"v1","Metadata":{"Config":{"labels":{..},"annotations":{..}},..}}`).
pub fn sandbox_config(json: &[u8]) -> Option<(BTreeMap<String, String>, BTreeMap<String, String>)> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let config = &v["Metadata"]["Config"];
    if !config.is_object() {
        return None;
    }
    let map = |m: &serde_json::Value| super::string_map(m);
    Some((map(&config["labels"]), map(&config["annotations"])))
}

/// The service account whose token the kubelet mounted into the container, read from the
/// host side of the mount (the OCI spec's `mounts[].source`), which the container cannot
/// change. The token is only decoded, never stored or logged.
pub fn service_account_from_spec(spec: &serde_json::Value) -> Option<String> {
    let mounts = spec["mounts"].as_array()?;
    let source = mounts.iter().find_map(|m| {
        let dest = m["destination"].as_str()?.trim_end_matches('/');
        TOKEN_MOUNTS
            .contains(&dest)
            .then(|| m["source"].as_str())
            .flatten()
    })?;
    let token = std::path::Path::new(source).join("token");
    let file = std::fs::File::open(&token).ok()?;
    let mut text = String::new();
    file.take(MAX_TOKEN).read_to_string(&mut text).ok()?;
    service_account_from_token(text.trim())
}

/// The service account named by a JWT's subject (`system:serviceaccount:NS:NAME`); its
/// namespace is the pod's.
/// The signature is not checked: the token is read from the kubelet's own files.
pub fn service_account_from_token(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sub = claims["sub"].as_str()?;
    let rest = sub.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pod_facts_from_labels_or_annotations() {
        let labels = map(&[(POD_NAMESPACE, "agents"), (POD_NAME, "reviewer-0")]);
        let annotations = map(&[(CRI_SANDBOX_UID, "u-1"), (CRI_CONTAINER_NAME, "main")]);
        let pod = pod_from_labels(&labels, &annotations).unwrap();
        assert_eq!(pod.namespace.as_deref(), Some("agents"));
        assert_eq!(pod.name.as_deref(), Some("reviewer-0"));
        assert_eq!(pod.uid.as_deref(), Some("u-1"));
        assert_eq!(
            container_name(&labels, &annotations).as_deref(),
            Some("main")
        );
        assert!(pod_from_labels(&map(&[("app", "x")]), &BTreeMap::new()).is_none());
        assert_eq!(
            user_labels(map(&[
                ("app", "x"),
                (POD_UID, "u"),
                ("io.cri-containerd.kind", "sandbox")
            ])),
            map(&[("app", "x")])
        );
    }

    fn jwt(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"RS256"}"#), enc(claims))
    }

    #[test]
    fn service_account_from_the_token_subject() {
        assert_eq!(
            service_account_from_token(&jwt(
                r#"{"sub":"system:serviceaccount:agents:reviewer","kubernetes.io":{}}"#
            ))
            .as_deref(),
            Some("reviewer")
        );
        for bad in [
            jwt(r#"{"sub":"system:node:worker-1"}"#),
            jwt(r#"{"sub":"system:serviceaccount:agents"}"#),
            jwt(r#"{"sub":"system:serviceaccount:a:b:c"}"#),
            "not-a-jwt".to_owned(),
            "a.!!!.c".to_owned(),
        ] {
            assert_eq!(service_account_from_token(&bad), None, "{bad}");
        }
    }

    #[test]
    fn pod_labels_and_annotations_from_the_sandbox_metadata() {
        let json = serde_json::json!({"Version": "v1", "Metadata": {"ID": "abc", "Config": {
            "metadata": {"name": "reviewer-0"},
            "labels": {"app": "reviewer"},
            "annotations": {"owner": "platform", "kubernetes.io/config.source": "api"}}}});
        let (labels, annotations) = sandbox_config(json.to_string().as_bytes()).unwrap();
        assert_eq!(labels, map(&[("app", "reviewer")]));
        assert_eq!(
            annotations.get("owner").map(String::as_str),
            Some("platform")
        );
        assert!(sandbox_config(b"{}").is_none());
        assert!(sandbox_config(b"not json").is_none());
    }

    #[test]
    fn the_token_is_read_from_the_mount_source() {
        let dir = std::env::temp_dir().join(format!("sa-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("token"),
            jwt(r#"{"sub":"system:serviceaccount:ns1:bot"}"#),
        )
        .unwrap();
        let spec = serde_json::json!({"mounts": [
            {"destination": "/etc/hosts", "source": "/etc/hosts"},
            {"destination": "/var/run/secrets/kubernetes.io/serviceaccount", "source": dir},
        ]});
        assert_eq!(service_account_from_spec(&spec).as_deref(), Some("bot"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
