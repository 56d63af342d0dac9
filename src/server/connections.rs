//! The server's open connections: how many there are, which are idle, and closing the
//! longest-idle one when the server needs room (a connection cap reached, or the process out
//! of file descriptors).
//!
//! A connection is idle from the moment it is accepted until its first request head is
//! complete, and again whenever it has no request in flight (a keep-alive connection between
//! requests). Only idle connections are ever closed to make room: a request in flight is never
//! cut for another one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Every open connection of the server; shared by the accept loop and the connections.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    state: Mutex<State>,
    /// Woken when a connection closes or becomes idle: either may make room.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Connections counted against the cap (accepted, not closed, not evicted).
    open: usize,
    /// Idle connections by the order they became idle: the first is the longest idle.
    idle: BTreeMap<u64, CancellationToken>,
    next_idle_key: u64,
}

/// Why the accept loop may not take a new connection yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCapacity;

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Connections {
            max,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        })
    }

    /// The cap on open connections.
    pub fn max(&self) -> usize {
        self.max
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes room for one more connection: at once if under the cap, else by closing the
    /// longest-idle connection. `Err` when every connection has a request in flight.
    pub fn make_room(&self) -> Result<(), AtCapacity> {
        let mut state = self.state();
        if state.open < self.max {
            return Ok(());
        }
        match state.evict_longest_idle() {
            true => Ok(()),
            false => Err(AtCapacity),
        }
    }

    /// Closes the longest-idle connection, if there is one; used when the process is out of
    /// file descriptors. Returns whether one was closed.
    pub fn close_longest_idle(&self) -> bool {
        self.state().evict_longest_idle()
    }

    /// Resolves when a connection closes or becomes idle.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Registers a newly accepted connection, idle until its first request.
    pub fn open(self: &Arc<Self>) -> Connection {
        let close = CancellationToken::new();
        let mut state = self.state();
        state.open += 1;
        let idle_key = Some(state.mark_idle(close.clone()));
        drop(state);
        Connection {
            connections: self.clone(),
            close,
            requests: Mutex::new(RequestCount {
                in_flight: 0,
                idle_key,
                evicted: false,
            }),
        }
    }
}

impl State {
    fn mark_idle(&mut self, close: CancellationToken) -> u64 {
        let key = self.next_idle_key;
        self.next_idle_key += 1;
        self.idle.insert(key, close);
        key
    }

    fn evict_longest_idle(&mut self) -> bool {
        let Some((_, close)) = self.idle.pop_first() else {
            return false;
        };
        // The connection stops counting now; its descriptor is freed a moment later, when
        // its task sees the cancellation.
        self.open -= 1;
        close.cancel();
        true
    }
}

/// One open connection's entry; dropping it (when the connection ends) frees its place.
#[derive(Debug)]
pub struct Connection {
    connections: Arc<Connections>,
    close: CancellationToken,
    requests: Mutex<RequestCount>,
}

#[derive(Debug)]
struct RequestCount {
    in_flight: usize,
    /// The connection's key in the idle map while it is idle.
    idle_key: Option<u64>,
    /// Closed to make room: no longer counted, must not be marked idle again.
    evicted: bool,
}

impl Connection {
    /// Cancelled when the server closes this connection to make room for another.
    pub fn closing(&self) -> &CancellationToken {
        &self.close
    }

    fn requests(&self) -> MutexGuard<'_, RequestCount> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request head arrived: the connection is busy until the returned guard is dropped
    /// (with the response's body).
    pub fn request_started(self: &Arc<Self>) -> RequestInFlight {
        let mut requests = self.requests();
        requests.in_flight += 1;
        if let Some(key) = requests.idle_key.take() {
            let mut state = self.connections.state();
            if state.idle.remove(&key).is_none() {
                // Evicted just as its request arrived; it is closing already.
                requests.evicted = true;
            }
        }
        RequestInFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut requests = self.requests();
        requests.in_flight -= 1;
        if requests.in_flight == 0 && !requests.evicted && !self.close.is_cancelled() {
            let mut state = self.connections.state();
            requests.idle_key = Some(state.mark_idle(self.close.clone()));
            drop(state);
            self.connections.changed.notify_one();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let requests = self.requests();
        let mut state = self.connections.state();
        let still_counted = match requests.idle_key {
            Some(key) => state.idle.remove(&key).is_some(),
            None => !requests.evicted,
        };
        if still_counted {
            state.open -= 1;
        }
        drop(state);
        drop(requests);
        self.connections.changed.notify_one();
    }
}

/// Held while a request is in flight on a connection.
#[derive(Debug)]
pub struct RequestInFlight(Arc<Connection>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its connection marked busy until it is finished or dropped.
pub struct GuardedBody {
    inner: axum::body::Body,
    _in_flight: RequestInFlight,
}

impl GuardedBody {
    pub fn new(inner: axum::body::Body, in_flight: RequestInFlight) -> Self {
        GuardedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_the_cap_there_is_room() {
        let connections = Connections::new(2);
        let _a = connections.open();
        assert_eq!(connections.make_room(), Ok(()));
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_is_closed() {
        let connections = Connections::new(2);
        let oldest = connections.open();
        let newer = connections.open();
        assert_eq!(connections.make_room(), Ok(()));
        assert!(oldest.closing().is_cancelled());
        assert!(!newer.closing().is_cancelled());
        // The evicted one no longer counts, so there is room for exactly one more.
        let _third = connections.open();
        assert_eq!(connections.make_room(), Ok(()));
        assert!(newer.closing().is_cancelled());
    }

    #[test]
    fn a_connection_with_a_request_in_flight_is_never_closed() {
        let connections = Connections::new(1);
        let busy = Arc::new(connections.open());
        let request = busy.request_started();
        assert_eq!(connections.make_room(), Err(AtCapacity));
        assert!(!busy.closing().is_cancelled());
        // Once its response is done it is idle again, and may go.
        drop(request);
        assert_eq!(connections.make_room(), Ok(()));
        assert!(busy.closing().is_cancelled());
    }

    #[test]
    fn a_closed_connection_frees_its_place_once() {
        let connections = Connections::new(1);
        let evicted = connections.open();
        assert_eq!(connections.make_room(), Ok(()));
        let replacement = connections.open();
        drop(evicted); // already uncounted: must not free the replacement's place
        assert_eq!(connections.make_room(), Ok(()));
        assert!(replacement.closing().is_cancelled());
        drop(replacement);
        let _next = connections.open();
        assert_eq!(connections.state().open, 1);
    }
}
