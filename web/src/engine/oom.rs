//! The allocator of the page and the engine: the system one, except that an allocation wasm's
//! memory cannot give panics with its size instead of aborting. Rust's default aborts with a
//! bare `unreachable` trap and skips the panic hook, so a pool thread that ran out of memory hung
//! its job with no message; now `worker::report_panics` tells the page what happened. (Panics abort on
//! wasm, so the panic never unwinds out of the allocator.)
#![allow(unsafe_code)] // Implementing `GlobalAlloc` is unsafe by definition.

use std::alloc::{GlobalAlloc, Layout, System};

struct PanicOnOom;

#[cold]
fn out_of_memory(size: usize) -> ! {
    panic!(
        "out of memory: this run asked for {} MB more than the page's memory (at most 4 GB) \
         could give; try a smaller run",
        size.div_ceil(1 << 20)
    )
}

// SAFETY: every call goes to `System` unchanged; only a null result is turned into a panic.
unsafe impl GlobalAlloc for PanicOnOom {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            out_of_memory(new_size);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: PanicOnOom = PanicOnOom;
