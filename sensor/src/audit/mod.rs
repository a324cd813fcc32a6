//! What auditors run over trails, after the fact: the verifier that proves each sensor run's
//! chain complete and unaltered (or says where it is not).
pub mod verify;
