//! Stops a running instance when its deadline passes or its request is abandoned.
//!
//! Two mechanisms are needed, and the watchdog uses both until the instance is gone:
//! the engine's host interrupter (`experimental-host-interrupt`: a signal to the thread running
//! the guest) stops pure WebAssembly code, even a `loop {}` without system calls; a WASIX
//! SIGKILL to the guest process wakes a guest blocked in a WASI call (sleep, poll), which the
//! interrupter does not reach. Both are best-effort at a single moment (a signal landing during
//! a host call is acted on when it returns), so they are repeated until the run ends.
//! Chosen over fuel metering, which costs ~50 % run time on every request and needs its own
//! compiled artifacts; this costs nothing until it fires.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a stop is repeated until the instance is gone.
const RETRY_EVERY: Duration = Duration::from_millis(20);

const RUNNING: u8 = 0;
const TIMED_OUT: u8 = 1;
const ABANDONED: u8 = 2;

/// Why the watchdog stopped an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    TimedOut,
    Abandoned,
}

/// A watchdog armed for one instance; disarm it when the instance has returned.
pub struct Watchdog {
    task: JoinHandle<()>,
    reason: Arc<AtomicU8>,
}

impl Watchdog {
    /// Arms a watchdog on the current Tokio runtime. `stop` is called repeatedly once the
    /// deadline passes or `abandoned` is cancelled; `abandoned` is cancelled by the watchdog on
    /// a timeout too, which releases a guest blocked writing its output.
    pub fn arm(
        deadline: Instant,
        abandoned: CancellationToken,
        stop: impl Fn() + Send + 'static,
    ) -> Watchdog {
        let reason = Arc::new(AtomicU8::new(RUNNING));
        let fired = reason.clone();
        let task = tokio::runtime::Handle::current().spawn(async move {
            let why = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => TIMED_OUT,
                _ = abandoned.cancelled() => ABANDONED,
            };
            fired.store(why, Ordering::SeqCst);
            abandoned.cancel();
            loop {
                stop();
                tokio::time::sleep(RETRY_EVERY).await;
            }
        });
        Watchdog { task, reason }
    }

    /// Stops the watchdog; says whether it had fired, and why.
    pub fn disarm(self) -> Option<StopReason> {
        self.task.abort();
        match self.reason.load(Ordering::SeqCst) {
            TIMED_OUT => Some(StopReason::TimedOut),
            ABANDONED => Some(StopReason::Abandoned),
            _ => None,
        }
    }
}
