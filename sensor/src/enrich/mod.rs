//! What userspace adds to kernel events, from caches that background tasks keep fresh: the
//! process table and start-up snapshot, entity ids, host identity, wall-clock time, DNS
//! answers, file classes and containers.
pub mod clock;
pub mod container;
pub mod dns;
pub mod dns_cache;
pub mod entity;
pub mod fspath;
pub mod host;
pub mod process_table;
pub mod snapshot;
