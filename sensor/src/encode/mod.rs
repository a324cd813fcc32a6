//! Records as bytes, one encoder per output format: the ECS-style JSON writer (the default)
//! and OCSF.
#![warn(missing_docs)]
pub mod ecs;
pub mod ocsf;
