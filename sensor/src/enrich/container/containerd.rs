//! Container metadata from containerd's API: gRPC over HTTP/2 on its Unix socket, with the
//! few messages needed declared here (prost; unknown fields are skipped), so no protobuf
//! compiler is needed to build. containerd is root's and its answers are trusted like the
//! cgroup tree; still, every answer is bounded in size and time.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use super::{ContainerMeta, PodMeta, kubernetes, string_map};

/// The default address of containerd's API socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// The extension where the CRI plugin keeps a sandbox's metadata (its pod's configuration).
const SANDBOX_METADATA: &str = "io.cri-containerd.sandbox.metadata";

/// How long one API call may take before the lookup is given up (and retried later).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer accepted (a container's OCI spec is tens of KiB).
const MAX_RESPONSE: usize = 4 << 20;

#[derive(Clone, PartialEq, prost::Message)]
struct GetContainerRequest {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetContainerResponse {
    #[prost(message, optional, tag = "1")]
    container: Option<Container>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListContainersRequest {
    #[prost(string, repeated, tag = "1")]
    filters: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListContainersResponse {
    #[prost(message, repeated, tag = "1")]
    containers: Vec<Container>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Container {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(map = "string, string", tag = "2")]
    labels: HashMap<String, String>,
    #[prost(string, tag = "3")]
    image: String,
    #[prost(message, optional, tag = "4")]
    runtime: Option<Runtime>,
    /// The OCI runtime spec, as JSON in an `Any`.
    #[prost(message, optional, tag = "5")]
    spec: Option<Any>,
    /// The CRI plugin keeps a pod sandbox's whole configuration here.
    #[prost(map = "string, message", tag = "10")]
    extensions: HashMap<String, Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Runtime {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListNamespacesRequest {
    #[prost(string, tag = "1")]
    filter: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListNamespacesResponse {
    #[prost(message, repeated, tag = "1")]
    namespaces: Vec<Namespace>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Namespace {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot connect to containerd at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP/2: {0}")]
    Http2(#[from] h2::Error),
    #[error("gRPC status {code}: {message}")]
    Status { code: u32, message: String },
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("no answer within {CALL_TIMEOUT:?}")]
    Timeout,
}

impl ApiError {
    fn is_not_found(&self) -> bool {
        // gRPC NOT_FOUND.
        matches!(self, Self::Status { code: 5, .. })
    }
}

/// A containerd API client. Each call opens its own connection: lookups happen when
/// containers appear, not per event.
pub struct Client {
    socket: PathBuf,
    /// containerd namespaces, as last listed (a container id is looked up in each).
    namespaces: Vec<String>,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
            namespaces: Vec::new(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The container `id`'s metadata, in whichever namespace it is; `Ok(None)` if containerd
    /// does not know it.
    pub async fn container(&mut self, id: &str) -> Result<Option<ContainerMeta>, ApiError> {
        for refresh in [false, true] {
            if refresh || self.namespaces.is_empty() {
                let list: ListNamespacesResponse = self
                    .call(
                        "",
                        "/containerd.services.namespaces.v1.Namespaces/List",
                        &ListNamespacesRequest::default(),
                    )
                    .await?;
                let fresh: Vec<String> = list.namespaces.into_iter().map(|n| n.name).collect();
                if refresh && fresh == self.namespaces {
                    break;
                }
                self.namespaces = fresh;
            }
            for ns in self.namespaces.clone() {
                let request = GetContainerRequest { id: id.to_owned() };
                let answer: Result<GetContainerResponse, _> = self
                    .call(
                        &ns,
                        "/containerd.services.containers.v1.Containers/Get",
                        &request,
                    )
                    .await;
                match answer {
                    Ok(GetContainerResponse { container: Some(c) }) => {
                        return Ok(Some(self.describe(&ns, c).await));
                    }
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }

    /// Metadata from a container record, with its pod's from the pod's sandbox container.
    async fn describe(&mut self, namespace: &str, c: Container) -> ContainerMeta {
        let spec: Option<serde_json::Value> = c
            .spec
            .as_ref()
            .and_then(|s| serde_json::from_slice(&s.value).ok());
        let annotations = spec
            .as_ref()
            .map(|s| string_map(&s["annotations"]))
            .unwrap_or_default();
        let labels: BTreeMap<String, String> = c.labels.into_iter().collect();
        let mut pod = kubernetes::pod_from_labels(&labels, &annotations);
        if let Some(pod) = &mut pod {
            if let Some(spec) = &spec {
                pod.service_account = kubernetes::service_account_from_spec(spec);
            }
            if let Some(uid) = pod.uid.clone() {
                self.add_sandbox_labels(namespace, &uid, pod).await;
            }
        }
        ContainerMeta {
            id: c.id,
            runtime: "containerd",
            name: kubernetes::container_name(&labels, &annotations),
            image: (!c.image.is_empty()).then_some(c.image),
            labels,
            pod,
        }
    }

    /// A pod's labels are its sandbox container's (the CRI plugin puts them there), less the
    /// runtime's own.
    async fn add_sandbox_labels(&mut self, namespace: &str, uid: &str, pod: &mut PodMeta) {
        let request = ListContainersRequest {
            filters: vec![format!(
                "labels.\"io.kubernetes.pod.uid\"=={uid},labels.\"io.cri-containerd.kind\"==sandbox"
            )],
        };
        let answer: Result<ListContainersResponse, _> = self
            .call(
                namespace,
                "/containerd.services.containers.v1.Containers/List",
                &request,
            )
            .await;
        match answer {
            Ok(list) => {
                if let Some(sandbox) = list.containers.into_iter().next() {
                    let config = sandbox
                        .extensions
                        .get(SANDBOX_METADATA)
                        .and_then(|m| kubernetes::sandbox_config(&m.value));
                    match config {
                        Some((labels, annotations)) => {
                            pod.labels = labels;
                            pod.annotations = annotations;
                        }
                        None => {
                            pod.labels =
                                kubernetes::user_labels(sandbox.labels.into_iter().collect());
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(pod = uid, "cannot list the pod's sandbox: {e}"),
        }
    }

    /// One unary gRPC call.
    async fn call<Q: prost::Message, A: prost::Message + Default>(
        &self,
        namespace: &str,
        method: &str,
        request: &Q,
    ) -> Result<A, ApiError> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(namespace, method, request))
            .await
            .map_err(|_| ApiError::Timeout)?
    }

    async fn call_inner<Q: prost::Message, A: prost::Message + Default>(
        &self,
        namespace: &str,
        method: &str,
        request: &Q,
    ) -> Result<A, ApiError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ApiError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (client, connection) = h2::client::handshake(stream).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let result = async {
            let mut builder = http::Request::builder()
                .method("POST")
                .uri(format!("http://containerd{method}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers");
            if !namespace.is_empty() {
                builder = builder.header("containerd-namespace", namespace);
            }
            let req = builder
                .body(())
                .map_err(|e| ApiError::Malformed(e.to_string()))?;
            let mut client = client.ready().await?;
            let (response, mut body) = client.send_request(req, false)?;
            body.send_data(frame(request), true)?;
            let response = response.await?;
            let status = grpc_status(response.headers());
            let mut data = response.into_body();
            let mut received = BytesMut::new();
            while let Some(chunk) = data.data().await {
                let chunk = chunk?;
                let _ = data.flow_control().release_capacity(chunk.len());
                if received.len() + chunk.len() > MAX_RESPONSE {
                    return Err(ApiError::Malformed("answer too large".into()));
                }
                received.extend_from_slice(&chunk);
            }
            // A failed call may answer with headers only; otherwise the status is a trailer.
            let status = match status {
                Some(s) => Some(s),
                None => data.trailers().await?.as_ref().and_then(grpc_status),
            };
            match status {
                Some((0, _)) => unframe(received.freeze()),
                Some((code, message)) => Err(ApiError::Status { code, message }),
                None => Err(ApiError::Malformed("no grpc-status".into())),
            }
        }
        .await;
        driver.abort();
        result
    }
}

/// A message in gRPC's length-prefixed framing (not compressed).
fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    message.encode(&mut out).expect("buffer sized to fit");
    out.freeze()
}

fn unframe<A: prost::Message + Default>(mut body: Bytes) -> Result<A, ApiError> {
    if body.len() < 5 {
        return Err(ApiError::Malformed(format!("{} byte answer", body.len())));
    }
    let compressed = body.get_u8();
    let len = body.get_u32() as usize;
    if compressed != 0 || len > body.len() {
        return Err(ApiError::Malformed("bad gRPC frame".into()));
    }
    A::decode(body.slice(..len)).map_err(|e| ApiError::Malformed(e.to_string()))
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(u32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let request = GetContainerRequest { id: "abc".into() };
        let framed = frame(&request);
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 5]);
        let back: GetContainerRequest = unframe(framed).unwrap();
        assert_eq!(back, request);
        assert!(unframe::<GetContainerRequest>(Bytes::from_static(&[0, 0, 0, 0, 9, 1])).is_err());
        assert!(unframe::<GetContainerRequest>(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
    }
}
