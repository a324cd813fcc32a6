//! Records as bytes, one encoder per output format: the ECS-style JSON writer (the default)
//! and OCSF.
pub mod ecs;
pub mod ocsf;
