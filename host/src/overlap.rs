//! Two pieces of one step at once: a future driven on the calling thread
//! while CPU-bound work runs on a thread of its own. The batch write uses it
//! to check and hash images while the writes are in flight; the engine, to
//! run the next batch through the plugin while this one commits.

/// Drives `future` here while `work` runs on a scoped thread, on a
/// multi-threaded runtime (the binary's); on a current-thread runtime,
/// `work` first and then `future`. A panic in `work` is resumed here.
/// Nested calls work: `future` runs inside `Handle::block_on`, where
/// `block_in_place` is allowed.
pub async fn overlap<F: std::future::Future, R: Send>(future: F, work: impl FnOnce() -> R + Send) -> (F::Output, R) {
    let handle = tokio::runtime::Handle::current();
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        let done = work();
        return (future.await, done);
    }
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let worker = scope.spawn(work);
            let out = handle.block_on(future);
            let done = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (out, done)
        })
    })
}
