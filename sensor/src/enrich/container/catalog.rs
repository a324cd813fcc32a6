//! Container metadata by container id, looked up from the container's runtime when its cgroup
//! is first seen and cached; a container the runtime does not (yet) know is asked about again
//! a little later, never on every event.
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{ContainerMeta, ContainerRef, containerd, docker, storage};

/// How long a failed lookup is remembered before the runtime is asked again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Where the runtimes keep what they know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeSources {
    /// containerd's API socket.
    pub containerd_socket: PathBuf,
    /// The containers/storage root of podman and CRI-O.
    pub storage_root: PathBuf,
    /// Docker's data root.
    pub docker_root: PathBuf,
}

impl Default for RuntimeSources {
    fn default() -> Self {
        Self {
            containerd_socket: containerd::DEFAULT_SOCKET.into(),
            storage_root: storage::DEFAULT_ROOT.into(),
            docker_root: docker::DEFAULT_ROOT.into(),
        }
    }
}

enum Known {
    Found(Arc<ContainerMeta>),
    Missing { since: Instant },
}

/// The metadata of each container seen, by id, and the runtimes to ask about new ones.
pub struct Catalog {
    sources: RuntimeSources,
    containerd: containerd::Client,
    known: HashMap<String, Known>,
    /// containerd's last error, so a runtime that is down is reported once, not per lookup.
    containerd_error: Option<String>,
}

impl Catalog {
    /// An empty catalog that asks the runtimes at `sources` (nothing is asked until a lookup).
    pub fn new(sources: RuntimeSources) -> Self {
        Self {
            containerd: containerd::Client::new(&sources.containerd_socket),
            sources,
            known: HashMap::new(),
            containerd_error: None,
        }
    }

    /// What the runtime records of the container, if it can be found.
    pub async fn lookup(&mut self, c: &ContainerRef) -> Option<Arc<ContainerMeta>> {
        match self.known.get(&c.id) {
            Some(Known::Found(meta)) => return Some(meta.clone()),
            Some(Known::Missing { since }) if since.elapsed() < RETRY_AFTER => return None,
            _ => {}
        }
        let found = self.ask_runtimes(c).await.map(Arc::new);
        let entry = match &found {
            Some(meta) => Known::Found(meta.clone()),
            None => Known::Missing {
                since: Instant::now(),
            },
        };
        self.known.insert(c.id.clone(), entry);
        found
    }

    /// Forgets containers that are gone.
    pub fn retain(&mut self, live: &HashSet<&str>) {
        self.known.retain(|id, _| live.contains(id.as_str()));
    }

    async fn ask_runtimes(&mut self, c: &ContainerRef) -> Option<ContainerMeta> {
        let (storage_root, docker_root) = (
            self.sources.storage_root.clone(),
            self.sources.docker_root.clone(),
        );
        match c.runtime {
            "containerd" => self.ask_containerd(&c.id).await,
            "cri-o" => storage::container(&storage_root, "cri-o", &c.id),
            "podman" => storage::container(&storage_root, "podman", &c.id),
            "docker" => docker::container(&docker_root, &c.id),
            // A pod's container whose runtime its cgroup path does not name.
            _ => match self.ask_containerd(&c.id).await {
                Some(meta) => Some(meta),
                None => storage::container(&storage_root, "cri-o", &c.id)
                    .or_else(|| docker::container(&docker_root, &c.id)),
            },
        }
    }

    async fn ask_containerd(&mut self, id: &str) -> Option<ContainerMeta> {
        if !self.containerd.socket().exists() {
            return None;
        }
        match self.containerd.container(id).await {
            Ok(found) => {
                if self.containerd_error.take().is_some() {
                    tracing::info!("containerd answers again");
                }
                found
            }
            Err(e) => {
                let e = e.to_string();
                if self.containerd_error.as_ref() != Some(&e) {
                    tracing::warn!(container = id, "cannot read container metadata: {e}");
                }
                self.containerd_error = Some(e);
                None
            }
        }
    }
}
