//! Independent pieces of work on the CPU's threads: natively, and in the page's threaded engine
//! (`threads` feature: rayon over Web Workers). Elsewhere — the page's single-threaded module —
//! one after another. Results come back in order either way.

/// Threads available for independent work (1 where there are none).
pub fn threads() -> usize {
    #[cfg(any(feature = "threads", not(target_family = "wasm")))]
    return rayon::current_num_threads().max(1);
    #[cfg(not(any(feature = "threads", not(target_family = "wasm"))))]
    1
}

/// `f` over `items`, on the CPU's threads where there are several; results in order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    #[cfg(any(feature = "threads", not(target_family = "wasm")))]
    if items.len() > 1 {
        use rayon::prelude::*;
        return items.par_iter().map(&f).collect();
    }
    items.iter().map(f).collect()
}

/// `a` and `b` at the same time where there are threads (one after the other elsewhere): e.g. a
/// reservoir simulating its next chunk of steps while its readout takes in the last one.
pub fn join<RA: Send, RB: Send>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    #[cfg(any(feature = "threads", not(target_family = "wasm")))]
    return rayon::join(a, b);
    #[cfg(not(any(feature = "threads", not(target_family = "wasm"))))]
    (a(), b())
}

/// `f` on one of the pool's threads (natively and in the page's threaded engine; directly
/// elsewhere, or when already on one). A computation that splits many products over the pool
/// runs inside it, so between products the pool's idle threads spin beside the one working
/// instead of beside it and the calling thread: on a 2-core machine that third thread took the
/// gains of splitting. While `f` waits inside the pool, its thread may run another caller's
/// installed job (rayon's work stealing), so `f` must not hold a lock another run takes; and in
/// the page a panic in `f` is on a pool worker (the panic hook still reports it), so `f`'s code
/// returns errors rather than panicking on what a user gives it.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(any(feature = "threads", not(target_family = "wasm")))]
    if rayon::current_thread_index().is_none() && threads() > 1 {
        return rayon::scope(|_| f());
    }
    f()
}
