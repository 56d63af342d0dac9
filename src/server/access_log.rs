//! One access-log line per request, written when the response is finished or abandoned.

use std::time::Instant;

use http::{Method, StatusCode};

/// Collects what the access log line needs while a request is served; logs on drop, so a
/// streamed response is logged once its last byte went out or the client went away.
#[derive(Debug)]
pub struct AccessRecord {
    request_id: String,
    method: Method,
    path: String,
    started: Instant,
    status: Option<StatusCode>,
    bytes: u64,
    complete: bool,
}

impl AccessRecord {
    pub fn new(request_id: &str, method: &Method, path: &str) -> Self {
        AccessRecord {
            request_id: request_id.to_string(),
            method: method.clone(),
            path: path.to_string(),
            started: Instant::now(),
            status: None,
            bytes: 0,
            complete: false,
        }
    }

    pub fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
    }

    pub fn add_bytes(&mut self, count: usize) {
        self.bytes += count as u64;
    }

    /// Marks the response as fully produced (as opposed to cut short).
    pub fn complete(&mut self) {
        self.complete = true;
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let status = self.status.map_or(0, |s| s.as_u16());
        tracing::info!(
            target: "wcgi::access",
            "{} {} {} {} {}B {:.1}ms{}",
            self.request_id,
            self.method,
            self.path,
            status,
            self.bytes,
            self.started.elapsed().as_secs_f64() * 1000.0,
            if self.complete { "" } else { " (cut short)" }
        );
    }
}
