//! One access-log line per request, written when the response is finished or abandoned: a
//! line of text, or (with `--log-format json`) an event whose fields are the record's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::metrics::{RequestLabels, metrics, status_class};

/// Whether access events carry their facts as fields (for JSON logs) instead of one line.
static AS_FIELDS: AtomicBool = AtomicBool::new(false);

/// Access events from now on carry their facts as fields, for a structured log.
pub fn log_access_as_fields() {
    AS_FIELDS.store(true, Ordering::Relaxed);
}

/// Collects what the access log line needs while a request is served; logs on drop, so a
/// streamed response is logged once its last byte went out or the client went away.
#[derive(Debug)]
pub struct AccessRecord {
    request_id: String,
    method: Method,
    /// The path with its query, as the client sent it.
    target: String,
    started: Instant,
    status: Option<StatusCode>,
    bytes: u64,
    complete: bool,
    /// The route that served it, when one did.
    route: Option<String>,
    /// How long its instances ran.
    instance_time: InstanceTime,
}

/// The run time of a request's instances (more than one after local redirects), added by the
/// threads they ran on.
#[derive(Debug, Clone, Default)]
pub struct InstanceTime(Arc<AtomicU64>);

impl InstanceTime {
    pub fn add(&self, ran: Duration) {
        let micros = u64::try_from(ran.as_micros()).unwrap_or(u64::MAX);
        self.0.fetch_add(micros, Ordering::Relaxed);
    }

    fn millis(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

impl AccessRecord {
    pub fn new(request_id: &str, method: &Method, target: &str) -> Self {
        AccessRecord {
            request_id: request_id.to_string(),
            method: method.clone(),
            target: target.to_string(),
            started: Instant::now(),
            status: None,
            bytes: 0,
            complete: false,
            route: None,
            instance_time: InstanceTime::default(),
        }
    }

    /// Where the request's instances add their run time.
    pub fn instance_time(&self) -> InstanceTime {
        self.instance_time.clone()
    }

    pub fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
    }

    pub fn set_route(&mut self, route: &str) {
        self.route = Some(route.to_string());
    }

    pub fn add_bytes(&mut self, count: usize) {
        self.bytes += count as u64;
    }

    /// Marks the response as fully produced (as opposed to cut short).
    pub fn complete(&mut self) {
        self.complete = true;
    }
}

impl AccessRecord {
    fn log(&self, status: u16, duration_ms: f64) {
        let outcome = if self.complete {
            "complete"
        } else {
            "cut short"
        };
        if AS_FIELDS.load(Ordering::Relaxed) {
            tracing::info!(
                target: "wcgi::access",
                request_id = %self.request_id,
                method = %self.method,
                path = %self.target,
                status,
                bytes = self.bytes,
                duration_ms,
                instance_ms = self.instance_time.millis(),
                route = self.route.as_deref().unwrap_or(""),
                outcome,
                "request"
            );
            return;
        }
        tracing::info!(
            target: "wcgi::access",
            "{} {} {} {} {}B {:.1}ms{}",
            self.request_id,
            self.method,
            self.target,
            status,
            self.bytes,
            duration_ms,
            if self.complete { "" } else { " (cut short)" }
        );
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let status = self.status.map_or(0, |s| s.as_u16());
        let elapsed = self.started.elapsed().as_secs_f64();
        self.log(status, elapsed * 1000.0);
        // The log line has read the route; the metrics' labels take it.
        let labels = RequestLabels {
            route: self.route.take().unwrap_or_default(),
            status: status_class(status),
        };
        let metrics = metrics();
        metrics
            .request_duration
            .get_or_create(&labels)
            .observe(elapsed);
        metrics.requests.get_or_create(&labels).inc();
    }
}
