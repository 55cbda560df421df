//! What an instance holds: its linear memory, and the bytes its allocator
//! has handed out and not had back. The shared budget
//! ([`super::budget`]) claims and records in these terms.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The instance's memory now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// The size of the linear memory: what the host holds for the instance.
    /// It never shrinks.
    pub memory: u64,
    /// Bytes allocated and not yet freed, when the component counts them
    /// ([`Counting`]); 0 otherwise.
    pub in_use: u64,
}

impl Footprint {
    /// What this instance's memory is now.
    pub fn now() -> Footprint {
        Footprint {
            memory: linear_memory(),
            in_use: IN_USE.load(Ordering::Relaxed),
        }
    }

    /// What the instance holds at the peak of a job that needs `peak` more
    /// bytes: the freed space inside its memory is reused first, so the
    /// memory grows only past what is already there.
    pub fn with_job(self, peak: u64) -> u64 {
        self.memory.max(self.in_use.saturating_add(peak))
    }
}

#[cfg(target_arch = "wasm32")]
fn linear_memory() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65_536
}

#[cfg(not(target_arch = "wasm32"))]
fn linear_memory() -> u64 {
    0
}

static IN_USE: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting the bytes it has out. A component makes
/// it its `#[global_allocator]` to give [`Footprint::in_use`] its value.
pub struct Counting;

// SAFETY: every call is passed to `System` unchanged; only the counter is
// added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            IN_USE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            IN_USE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(pointer, layout) };
        IN_USE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc`, passed on.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            IN_USE.fetch_add(new_size as u64, Ordering::Relaxed);
            IN_USE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        moved
    }
}
