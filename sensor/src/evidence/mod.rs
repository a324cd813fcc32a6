//! Tamper evidence: the hash chain every record is sealed into, the Ed25519 key that signs
//! checkpoints, and the verifier that checks trails.
pub mod chain;
pub mod signing;
pub mod verify;
