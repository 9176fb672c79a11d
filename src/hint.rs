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
    prefetch_raw_all(std::ptr::from_ref(item));
}

/// [`prefetch_read_all`] of the `T` that would sit at `item`, which need not be one (a
/// prefetch never faults; any address will do).
#[inline(always)]
pub(crate) fn prefetch_raw_all<T>(item: *const T) {
    let start = item.cast::<u8>();
    let size = std::mem::size_of::<T>();
    let mut offset = 0;
    while offset < size {
        prefetch_address(start.wrapping_add(offset));
        offset += 64;
    }
    if size > 0 {
        prefetch_address(start.wrapping_add(size - 1));
    }
}

/// A read prefetch of the cache line holding `address`. Raw, so that no reference to a
/// byte that may be padding is made; a prefetch never faults and reads nothing a program sees.
#[inline(always)]
fn prefetch_address(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect a program can observe, whatever the
    // address. SSE is part of every x86-64 processor.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
