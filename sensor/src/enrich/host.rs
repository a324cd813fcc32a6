//! Who and where this sensor is: host identity, boot id, and this run's instance id.
use std::{fs, io};

use crate::record::host::{HostInfo, HostOs};

fn read_trimmed(path: &str) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

impl HostInfo {
    /// Reads this host's name, machine id, boot id and kernel release from procfs and
    /// `/etc/machine-id` (a missing machine id is left out).
    pub fn discover() -> io::Result<Self> {
        Ok(Self {
            name: read_trimmed("/proc/sys/kernel/hostname")?,
            id: read_trimmed("/etc/machine-id")
                .ok()
                .filter(|id| !id.is_empty()),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id")?,
            architecture: std::env::consts::ARCH,
            os: HostOs {
                kernel: read_trimmed("/proc/sys/kernel/osrelease")?,
                kind: "linux",
            },
        })
    }
}

/// A fresh random id for this run of the sensor (a UUID from the kernel's generator).
pub(crate) fn new_instance_id() -> io::Result<String> {
    read_trimmed("/proc/sys/kernel/random/uuid")
}
