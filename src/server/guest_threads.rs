//! The threads instances run on: one per instance slot, started with the server.
//!
//! An instance runs synchronously and may block (a WASI sleep, a read of a slow upload), so it
//! cannot run on the async workers. Tokio's blocking pool would do, but it starts a new thread
//! whenever none is idle at that instant — under steady load, when the previous instance's
//! thread is still winding down — and keeps each for 10 s: dozens of threads for a handful of
//! slots, and a thread start on many requests. Admission already bounds the instances running
//! at once to the slot count, so exactly that many threads always suffice.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a thread; an idle thread waits on `ready`, and each new job wakes one.
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

impl Queue {
    fn jobs(&self) -> MutexGuard<'_, VecDeque<Job>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, job: Job) {
        self.jobs().push_back(job);
        self.ready.notify_one();
    }

    fn next(&self) -> Job {
        let mut jobs = self.jobs();
        loop {
            if let Some(job) = jobs.pop_front() {
                return job;
            }
            jobs = self
                .ready
                .wait(jobs)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

pub struct GuestThreads {
    queue: Arc<Queue>,
}

impl GuestThreads {
    /// Starts `count` threads, each inside the current Tokio runtime's context (the WASI
    /// runtime needs one). They live as long as the process.
    pub fn start(count: usize) -> anyhow::Result<Self> {
        let queue = Arc::new(Queue::default());
        let runtime = tokio::runtime::Handle::current();
        for _ in 0..count.max(1) {
            let queue = queue.clone();
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name("wcgi-guest".to_string())
                .spawn(move || {
                    let _context = runtime.enter();
                    loop {
                        queue.next()();
                    }
                })
                .context("cannot start the instance threads")?;
        }
        Ok(GuestThreads { queue })
    }

    /// Runs `work` on one of the threads. The receiver fails if `work` panicked.
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (result, receiver) = oneshot::channel();
        self.queue.push(Box::new(move || {
            // A panic drops `result` (the caller sees the failure) and spares the thread.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
                let _ = result.send(value);
            }
        }));
        receiver
    }
}
