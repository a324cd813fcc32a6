//! What SREs run the daemon with: the metrics registry and its Prometheus text exposition
//! ([`metrics`]), and the HTTP endpoint that serves it with the liveness and readiness probes
//! ([`endpoint`]), and SIGHUP's re-read of the configuration ([`reload`]). Components count with their own atomics and register a collector; nothing
//! here is global, and nothing here knows the pipeline.
pub mod endpoint;
pub mod metrics;
pub mod reload;
