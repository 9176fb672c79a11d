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
