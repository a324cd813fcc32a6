//! Where kernel records come from: the ring buffer of a live run ([`ring`]), or recorded
//! records replayed without a kernel ([`replay`]). Both push the same raw batches into the
//! pipeline's inbox. [`forge`] makes such records without a kernel, for replays.
pub mod forge;
pub mod replay;
pub mod ring;
