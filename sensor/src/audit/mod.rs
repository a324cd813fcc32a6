//! What auditors run over trails, after the fact: the verifier that proves each sensor run's
//! chain complete and unaltered (or says where it is not), its verdict as an exit status, and
//! the per-agent report built on the same pass.
pub mod report;
pub mod verdict;
pub mod verify;
