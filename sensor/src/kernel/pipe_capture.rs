//! The stdio capture's map of opted-in agents (`PIPE_AGENTS`, see `sensor-ebpf/src/pipe.rs`),
//! kept in step with the manifest: the programs copy only the pipe calls of the agents in it.
use std::collections::HashSet;

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};
use sensor_common::TlsCapture;

use crate::kernel::loader::LoadError;

/// The kernel's map of agents whose pipes are captured.
pub(crate) struct PipeAgents {
    map: BpfHashMap<MapData, u32, TlsCapture>,
    agents: HashSet<u32>,
}

impl PipeAgents {
    /// Takes the map out of the loaded object.
    pub(crate) fn new(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        let name = "PIPE_AGENTS";
        let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
        let map = BpfHashMap::try_from(map).map_err(|source| LoadError::Map { name, source })?;
        Ok(Self {
            map,
            agents: HashSet::new(),
        })
    }

    /// Puts the opted-in agents (agent number, settings), and only those, in the map.
    pub(crate) fn sync(&mut self, wanted: &[(u32, TlsCapture)]) {
        let mut now = HashSet::new();
        for &(n, value) in wanted {
            if let Err(e) = self.map.insert(n, value, 0) {
                tracing::warn!(agent = n, "cannot turn stdio capture on: {e}");
                continue;
            }
            now.insert(n);
        }
        for gone in self.agents.difference(&now) {
            let _ = self.map.remove(gone);
        }
        self.agents = now;
    }
}
