//! The global allocator: mimalloc, asked through its plain entry points whenever they already
//! give the alignment a layout needs.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`. In mimalloc 3 that
//! call over-allocates (size + alignment − 1, in a larger size class, and marks the page as
//! holding interior pointers) whenever its fast path misses for a size that is not a power of
//! two: any size above 1 KiB, and any size when its page's free list has run dry. At 1,000 busy
//! chats a message's allocations took 3,480 instructions that way, 1,900 this way (callgrind,
//! BENCHMARKS.md). Plain `mi_malloc`
//! blocks are aligned to 8 bytes, and to 16 when their size is a multiple of 16: size classes
//! are multiples of 8, those of 16 bytes or more that hold a multiple of 16 are multiples of 16,
//! and a page's first block is 16-aligned.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

pub struct Mimalloc;

/// Whether a plain block of `size` bytes is aligned enough for `align`.
fn plain(size: usize, align: usize) -> bool {
    align <= 16 && size >= align && size.is_multiple_of(align)
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free` takes plain and aligned
// blocks alike); the alignment is either guaranteed by the size (`plain`) or asked for.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C calls; a null return is the allocation failure `GlobalAlloc` expects.
        unsafe {
            match plain(layout.size(), layout.align()) {
                true => mi::mi_malloc(layout.size()),
                false => mi::mi_malloc_aligned(layout.size(), layout.align()),
            }
        }
        .cast()
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            match plain(layout.size(), layout.align()) {
                true => mi::mi_zalloc(layout.size()),
                false => mi::mi_zalloc_aligned(layout.size(), layout.align()),
            }
        }
        .cast()
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the `GlobalAlloc` contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the `GlobalAlloc` contract).
        unsafe {
            match plain(new_size, layout.align()) {
                true => mi::mi_realloc(ptr.cast(), new_size),
                false => mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()),
            }
        }
        .cast()
    }
}

/// Gives back to the system what the calling thread freed: its empty pages, and the memory of
/// any thread whose return has waited long enough (mimalloc waits 10 ms before it returns freed
/// memory, to reuse it meanwhile). mimalloc only does this while it allocates and frees, so
/// after a burst a quiet thread would keep its freed memory resident for good: after 10,000
/// chats connected, up to 2.7 KiB per connection more than they hold, by chance of when the
/// burst ended (BENCHMARKS.md). A chat worker calls this once a second (`chat::tidy`).
pub fn collect() {
    // SAFETY: a plain C call; it only touches the calling thread's heap and the shared arenas,
    // under mimalloc's own synchronization.
    unsafe { mi::mi_collect(false) }
}

/// `collect`, and every freed range returned now, however recently freed: once, when the server
/// has started (compiling the intents and opening the store left 24 MB freed but resident, of
/// about 110 MB).
pub fn collect_all() {
    // SAFETY: as `collect`.
    unsafe { mi::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_is_aligned_and_holds_what_is_written_through_a_realloc() {
        let sizes = [1, 7, 8, 12, 16, 24, 40, 48, 56, 72, 100, 1000, 1024, 1100, 2320, 4096, 5000, 70_000];
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in sizes {
                let layout = Layout::from_size_align(size, align).expect("layout");
                for zeroed in [false, true] {
                    // Many at once, so some come from a page that just ran dry.
                    let blocks: Vec<*mut u8> = (0..64)
                        .map(|_| unsafe { if zeroed { Mimalloc.alloc_zeroed(layout) } else { Mimalloc.alloc(layout) } })
                        .collect();
                    for (i, &p) in blocks.iter().enumerate() {
                        assert!(
                            !p.is_null() && (p as usize).is_multiple_of(align),
                            "{size} bytes aligned to {align}: {p:?}"
                        );
                        let block = unsafe { std::slice::from_raw_parts_mut(p, size) };
                        if zeroed {
                            assert!(block.iter().all(|&b| b == 0), "{size} bytes zeroed");
                        }
                        block.fill(i as u8);
                    }
                    for (i, p) in blocks.into_iter().enumerate() {
                        let grown = unsafe { Mimalloc.realloc(p, layout, size * 3) };
                        assert!(
                            !grown.is_null() && (grown as usize).is_multiple_of(align),
                            "{size} → {} aligned to {align}",
                            size * 3
                        );
                        let block = unsafe { std::slice::from_raw_parts(grown, size) };
                        assert!(block.iter().all(|&b| b == i as u8), "{size} bytes kept through the realloc");
                        let grown_layout = Layout::from_size_align(size * 3, align).expect("layout");
                        unsafe { Mimalloc.dealloc(grown, grown_layout) };
                    }
                }
            }
        }
    }
}
