//! Tamper evidence: the hash chain every record is sealed into, the Ed25519 key that signs
//! checkpoints (`audit::verify` checks them).
pub mod chain;
pub mod sealer;
pub mod signing;
