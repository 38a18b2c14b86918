//! The global allocator of plugins built for WebAssembly: size-class free
//! lists for small blocks in front of talc.
//!
//! A `process` call allocates and frees a few small blocks per document and
//! per action (keys, strings, index maps, encoded BSON). In the sandbox
//! wasi-libc's dlmalloc, the default behind Rust's `System` allocator on
//! WASI, was the largest single cost of a call; talc, an allocator written
//! for single-threaded WebAssembly, is faster but still searches bins. Blocks
//! of up to 256 bytes are therefore served from one free list per
//! size class (an allocation pops, a free pushes), carved from chunks that
//! talc provides. Larger blocks go to talc directly.
//!
//! Trade-off: a small block once freed is only reused for its own size
//! class, never returned to talc. A plugin's batches repeat the same shapes,
//! so the lists settle after the first batch; a plugin that first fills
//! memory with blocks of one small size and then with another keeps both.
//! All memory comes from `memory.grow`, so the host's memory cap applies.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

/// Size classes are multiples of this; it is also the largest alignment the
/// free lists serve (blocks are carved back to back from aligned chunks).
const STEP: usize = 8;
/// Blocks up to this size use the free lists.
const SMALL_MAX: usize = 256;
const CLASSES: usize = SMALL_MAX / STEP;
/// Small blocks are carved from chunks of this size, taken from talc.
const CHUNK: usize = 64 * 1024;

/// Small blocks from free lists, everything else (and the chunks the small
/// blocks are carved from) from `L`.
pub struct Allocator<L> {
    large: L,
    small: UnsafeCell<Small>,
}

struct Small {
    /// Head of each size class's list of free blocks; a free block's first
    /// word points to the next one.
    free: [*mut u8; CLASSES],
    /// Unused rest of the current chunk.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: `Sync` (needed for a `#[global_allocator]` static) exists only in
// wasm without the atomics feature, which has a single thread, so the cell is
// never accessed concurrently; elsewhere the type cannot be made a global
// allocator. (Tests use it from one thread, without `Sync`.)
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<L: Sync> Sync for Allocator<L> {}

impl<L: GlobalAlloc> Allocator<L> {
    /// An allocator with empty free lists that takes its memory from `large`.
    pub const fn new(large: L) -> Self {
        Allocator {
            large,
            small: UnsafeCell::new(Small {
                free: [ptr::null_mut(); CLASSES],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }

    /// The size class of `layout`, or `None` for blocks talc serves.
    #[inline(always)]
    fn class(layout: Layout) -> Option<usize> {
        if layout.size() <= SMALL_MAX && layout.align() <= STEP {
            Some(layout.size().saturating_sub(1) / STEP)
        } else {
            None
        }
    }

    #[inline(always)]
    unsafe fn alloc_small(&self, class: usize) -> *mut u8 {
        // SAFETY: single-threaded (see `Sync`), and no reference into the
        // cell outlives this call.
        let small = unsafe { &mut *self.small.get() };
        let head = small.free[class];
        if !head.is_null() {
            // SAFETY: `head` is a free block of this class; its first word
            // holds the next free block.
            small.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = (class + 1) * STEP;
        if (small.end as usize) - (small.next as usize) < size {
            // SAFETY: CHUNK is non-zero and STEP a power of two.
            let chunk = unsafe { self.large.alloc(Layout::from_size_align_unchecked(CHUNK, STEP)) };
            if chunk.is_null() {
                return chunk;
            }
            small.next = chunk;
            // SAFETY: the chunk is CHUNK bytes long.
            small.end = unsafe { chunk.add(CHUNK) };
        }
        let block = small.next;
        // SAFETY: at least `size` bytes are left in the chunk.
        small.next = unsafe { block.add(size) };
        block
    }

    #[inline(always)]
    unsafe fn dealloc_small(&self, block: *mut u8, class: usize) {
        // SAFETY: as in `alloc_small`; the block is at least STEP bytes and
        // STEP-aligned, so it can hold the list's next pointer.
        unsafe {
            let small = &mut *self.small.get();
            block.cast::<*mut u8>().write(small.free[class]);
            small.free[class] = block;
        }
    }
}

// SAFETY: small blocks are handed out once until freed, are at least as
// large and as aligned as their layout asks (classes round sizes up to a
// multiple of STEP, chunks are STEP-aligned), and everything else is talc's.
unsafe impl<L: GlobalAlloc> GlobalAlloc for Allocator<L> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::class(layout) {
            Some(class) => unsafe { self.alloc_small(class) },
            None => unsafe { self.large.alloc(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match Self::class(layout) {
            Some(class) => unsafe { self.dealloc_small(block, class) },
            None => unsafe { self.large.dealloc(block, layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the
        // alignment, does not overflow isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (Self::class(layout), Self::class(new_layout)) {
            (Some(old), Some(new)) if old == new => block,
            (None, None) => unsafe { self.large.realloc(block, layout, new_size) },
            _ => unsafe {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                moved
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn blocks_are_distinct_aligned_reused_and_keep_their_bytes_on_realloc() {
        let a = Allocator::new(System);
        let layout = |size, align| Layout::from_size_align(size, align).unwrap();
        unsafe {
            let mut blocks = Vec::new();
            for size in [1, 7, 8, 9, 24, 100, 255, 256, 257, 5000] {
                for align in [1, 4, 8, 16] {
                    let l = layout(size, align);
                    let p = a.alloc(l);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    ptr::write_bytes(p, size as u8, size);
                    blocks.push((p, l));
                }
            }
            for (p, l) in &blocks {
                assert!((0..l.size()).all(|i| *p.add(i) == l.size() as u8), "no overlap");
            }
            // A freed small block is the next one handed out for its class.
            let (p, l) = blocks.remove(5);
            a.dealloc(p, l);
            assert_eq!(a.alloc(l), p);
            blocks.push((p, l));
            // Growing across classes (and into talc's range) keeps the bytes.
            let mut p = a.alloc(layout(3, 1));
            ptr::copy_nonoverlapping(b"abc".as_ptr(), p, 3);
            let mut size = 3;
            for new_size in [5, 16, 17, 200, 300, 10_000, 40, 3] {
                p = a.realloc(p, layout(size, 1), new_size);
                assert_eq!(std::slice::from_raw_parts(p, 3), b"abc");
                size = new_size;
            }
            a.dealloc(p, layout(size, 1));
            for (p, l) in blocks {
                a.dealloc(p, l);
            }
        }
    }

    #[test]
    fn many_small_blocks_span_chunks() {
        let a = Allocator::new(System);
        let l = Layout::from_size_align(200, 8).unwrap();
        unsafe {
            let blocks: Vec<*mut u8> = (0..2 * CHUNK / 200).map(|_| a.alloc(l)).collect();
            let mut sorted = blocks.clone();
            sorted.sort();
            assert!(sorted.windows(2).all(|w| w[1] as usize - w[0] as usize >= 200));
            for p in blocks {
                a.dealloc(p, l);
            }
        }
    }
}
