//! An allocator for policies whose instance lives for one call, as in the host (a fresh
//! instance per call): allocations are carved from a static arena in order and never reused,
//! since the whole memory is reset when the call ends.
//!
//! Why: Rust's default allocator for WebAssembly asks the host for a new page of linear memory
//! at its first allocation, so every call of every policy grew its memory once, which cost the
//! host an `mprotect` to grow the instance's slot and another to shrink it for the next
//! instance: most of the kernel time of a `/validate` (strace of the server under load). The
//! arena is part of the module's zero-initialised data, so it is there from the start and only
//! the pages a call touches are ever made resident. When it runs out, more memory is grown.
//!
//! Use it with [`use_call_arena!`](crate::use_call_arena) at a policy crate's root; it applies to
//! `wasm32` builds only, so native tests keep the system allocator.

// An allocator is unsafe by nature; each use below says why it holds.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

/// Bytes of the static arena: what a call of a built-in needs several times over (the view of a
/// StatefulSet, the settings, the verdict: tens of KiB; the whole request, when asked for, a few
/// hundred).
const ARENA_BYTES: usize = 2 << 20;
const PAGE: usize = 64 << 10;

/// The allocator; see the module's documentation.
pub struct CallArena {
    memory: &'static ArenaMemory,
    state: UnsafeCell<State>,
}

struct State {
    /// Next free address, and the end of what the arena (or grown memory) provides.
    next: usize,
    end: usize,
    /// The last allocation, which `realloc` may extend in place.
    last: usize,
}

/// The arena's memory: zero-initialised static data, for one [`CallArena`].
#[repr(C, align(16))]
pub struct ArenaMemory(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: WebAssembly instances of policies are single-threaded, and each `ArenaMemory` is
// used by one `CallArena` only (`use_call_arena!` declares the two together).
unsafe impl Sync for ArenaMemory {}
// SAFETY: as above.
unsafe impl Sync for CallArena {}

impl ArenaMemory {
    #[allow(clippy::new_without_default)] // a static's initialiser
    pub const fn new() -> ArenaMemory {
        ArenaMemory(UnsafeCell::new([0; ARENA_BYTES]))
    }
}

impl CallArena {
    /// An arena carving `memory`, with nothing allocated yet.
    pub const fn new(memory: &'static ArenaMemory) -> CallArena {
        CallArena { memory, state: UnsafeCell::new(State { next: 0, end: 0, last: 0 }) }
    }
}

impl State {
    fn take(&mut self, memory: &ArenaMemory, layout: Layout) -> *mut u8 {
        if self.end == 0 {
            self.next = memory.0.get() as usize;
            self.end = self.next + ARENA_BYTES;
        }
        let start = self.next.next_multiple_of(layout.align());
        let Some(stop) = start.checked_add(layout.size()) else { return core::ptr::null_mut() };
        if stop > self.end && !self.grow(stop) {
            return core::ptr::null_mut();
        }
        self.next = stop;
        self.last = start;
        start as *mut u8
    }

    /// Continues the arena into newly grown linear memory, which is contiguous with the
    /// arena only if nothing else grew memory since; otherwise starts over in the new pages.
    fn grow(&mut self, stop: usize) -> bool {
        let wanted = (stop - self.end).div_ceil(PAGE).max(16);
        match grow_memory(wanted) {
            None => false,
            Some(base) if base == self.end => {
                self.end += wanted * PAGE;
                true
            }
            Some(base) => {
                // Not contiguous: the allocation goes at the start of the new pages.
                let size = stop - self.next;
                self.next = base;
                self.end = base + wanted * PAGE;
                self.next + size <= self.end || self.grow(self.next + size)
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn grow_memory(pages: usize) -> Option<usize> {
    match core::arch::wasm32::memory_grow(0, pages) {
        usize::MAX => None,
        previous => Some(previous * PAGE),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn grow_memory(_pages: usize) -> Option<usize> {
    None
}

// SAFETY: every block handed out is a distinct, suitably aligned range of memory that nothing
// else uses: the static arena (or pages grown for it) is only ever handed out here, in order.
unsafe impl GlobalAlloc for CallArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see `Sync`), and no reference to the state outlives this call.
        unsafe { &mut *self.state.get() }.take(self.memory, layout)
    }

    /// Nothing is freed: the host resets the whole memory when the call ends.
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let state = unsafe { &mut *self.state.get() };
        // The last block grows (or shrinks) in place: strings and vectors being built.
        if ptr as usize == state.last && state.last + new_size <= state.end {
            state.next = state.last + new_size;
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let new = state.take(self.memory, new_layout);
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap (the new one
            // was just carved after the old).
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}

/// Makes [`CallArena`] the global allocator of a policy's `wasm32` build.
#[macro_export]
macro_rules! use_call_arena {
    () => {
        #[cfg(target_arch = "wasm32")]
        static __MYSQL_WEBHOOK_POLICY_ARENA_MEMORY: $crate::arena::ArenaMemory =
            $crate::arena::ArenaMemory::new();
        #[cfg(target_arch = "wasm32")]
        #[global_allocator]
        static __MYSQL_WEBHOOK_POLICY_ARENA: $crate::arena::CallArena =
            $crate::arena::CallArena::new(&__MYSQL_WEBHOOK_POLICY_ARENA_MEMORY);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An arena of its own, on the heap (2 MiB would not fit a test thread's stack).
    fn arena() -> CallArena {
        // SAFETY: all zeroes is a valid `ArenaMemory`, and the allocation is leaked: 'static.
        let memory =
            unsafe { &*(std::alloc::alloc_zeroed(Layout::new::<ArenaMemory>()) as *const ArenaMemory) };
        CallArena::new(memory)
    }

    #[test]
    fn allocations_are_aligned_distinct_and_the_last_grows_in_place() {
        let arena = arena();
        let small = Layout::from_size_align(3, 1).unwrap();
        let wide = Layout::from_size_align(32, 16).unwrap();
        // SAFETY: the blocks are used within their layouts only.
        unsafe {
            let a = arena.alloc(small);
            let b = arena.alloc(wide);
            assert_eq!(b as usize % 16, 0);
            assert!(b as usize >= a as usize + 3, "distinct");
            b.write_bytes(7, 32);
            let grown = arena.realloc(b, wide, 64);
            assert_eq!(grown, b, "the last block grows in place");
            let c = arena.alloc(small);
            assert!(c as usize >= b as usize + 64);
            let moved = arena.realloc(b, Layout::from_size_align(64, 16).unwrap(), 128);
            assert_ne!(moved, b, "an earlier block is copied");
            assert_eq!(*moved.add(31), 7, "with its content");
        }
    }

    #[test]
    fn an_allocation_larger_than_the_arena_fails_where_memory_can_not_grow() {
        let arena = arena();
        // SAFETY: nothing is written.
        let block = unsafe { arena.alloc(Layout::from_size_align(ARENA_BYTES + 1, 1).unwrap()) };
        assert!(block.is_null());
    }
}
