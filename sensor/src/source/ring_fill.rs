//! How full the kernel's ring buffer is, for the metrics: the consumer and producer
//! positions, read at scrape time from a read-only mapping of the ring map's first two pages
//! (the kernel's layout of a `BPF_MAP_TYPE_RINGBUF`: page 0 holds the consumer position, page
//! 1 the producer position). aya's `RingBuf` does not expose them; nothing on the record path
//! reads them.
use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::operate::metrics::{Collect, Exposition, Kind};

/// The two position pages of one ring buffer, mapped read-only.
pub struct RingFill {
    /// Page-aligned: the start of the mapping.
    base: NonNull<AtomicU64>,
    page: usize,
    size: u64,
}

// SAFETY: the mapping is read-only and only read with atomic loads; it lives until drop.
unsafe impl Send for RingFill {}
// SAFETY: as above.
unsafe impl Sync for RingFill {}

impl RingFill {
    /// Maps the positions of the ring buffer map `fd`, `size` bytes of data.
    pub fn map(fd: BorrowedFd<'_>, size: u32) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("no page size"))?;
        // SAFETY: a new shared read-only mapping of the map's first two pages; the kernel
        // allows read-only mappings of a ring buffer from offset 0.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        #[allow(
            clippy::cast_ptr_alignment,
            reason = "mmap returns a page-aligned address"
        )]
        let base = base.cast::<AtomicU64>();
        Ok(Self {
            base: NonNull::new(base).ok_or_else(|| io::Error::other("mmap gave null"))?,
            page,
            size: u64::from(size),
        })
    }

    fn position(&self, page: usize) -> u64 {
        // SAFETY: `page` is 0 or 1, within the mapping; each page starts with the kernel's
        // position (aligned: pages are), which it stores with release semantics.
        let pos = unsafe { &*self.base.as_ptr().add(page * self.page / 8) };
        pos.load(Ordering::Acquire)
    }

    /// Bytes written by the programs and not yet consumed by the daemon (reserved records
    /// included).
    pub fn used(&self) -> u64 {
        let consumer = self.position(0);
        let producer = self.position(1);
        producer.saturating_sub(consumer).min(self.size)
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmapping what `map` mapped, once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), 2 * self.page) };
    }
}

impl Collect for RingFill {
    fn collect(&self, out: &mut Exposition) {
        out.family(
            "ring_buffer_used_bytes",
            Kind::Gauge,
            "Bytes in the kernel's ring buffer the daemon has not read yet.",
        );
        out.sample("ring_buffer_used_bytes", &[], self.used());
        out.family(
            "ring_buffer_size_bytes",
            Kind::Gauge,
            "The kernel's ring buffer size (kernel.ring_buffer_bytes).",
        );
        out.sample("ring_buffer_size_bytes", &[], self.size);
    }
}
