//! Processor hints shared by the hot paths: they change no state a program can observe.

/// A read prefetch of the cache line holding `item` (a no-op where not supported): the
/// engine names the lines an event will need before it needs them, so that their misses
/// overlap instead of queueing one behind another.
#[inline(always)]
pub(crate) fn prefetch_read<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect a program can observe; the address
    // comes from a live reference anyway. SSE is part of every x86-64 processor.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(item).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

/// [`prefetch_read`] of every cache line `item` spans: an item need not start on a line, so
/// one of 64 bytes usually straddles two.
#[inline(always)]
pub(crate) fn prefetch_read_all<T>(item: &T) {
    let start = std::ptr::from_ref(item).cast::<u8>();
    let size = std::mem::size_of::<T>();
    let mut offset = 0;
    while offset < size {
        // SAFETY: `offset < size`, so the pointer stays inside `item`.
        prefetch_read(unsafe { &*start.add(offset) });
        offset += 64;
    }
    if size > 0 {
        // SAFETY: the last byte of `item`.
        prefetch_read(unsafe { &*start.add(size - 1) });
    }
}
