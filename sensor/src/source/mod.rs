//! Where kernel records come from: the ring buffer of a live run ([`ring`]), or recorded
//! records replayed without a kernel ([`replay`]). Both push the same raw batches into the
//! pipeline's inbox; [`ring_fill`] reads how full the ring is, for the metrics. [`forge`]
//! makes such records without a kernel, for replays.
pub mod forge;
pub mod replay;
pub mod ring;
pub mod ring_fill;
