//! The process's Prometheus metrics: one registry, counted by whoever sees the event (the
//! request path, the instance threads, the caches), scraped on `--metrics-addr`'s own
//! listener in the OpenMetrics text format.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The labels of a served request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern that served it (`/...`, `/api/...`), empty when none did.
    pub route: String,
    /// `1xx` to `5xx` (see [`status_class`]).
    pub status: &'static str,
}

/// A status code's class: `2xx`, `3xx`, `4xx`, or `5xx` (also for a response never given).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Why a request was answered without an instance running for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `body_too_large` (413), `queue_full` or `waited_too_long` (503).
    pub reason: &'static str,
}

/// A cache lookup's result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

impl CacheLabels {
    pub const MISS: CacheLabels = CacheLabels { result: "miss" };

    fn of(hit: bool) -> Self {
        let result = if hit { "hit" } else { "miss" };
        CacheLabels { result }
    }
}

/// A reload's result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok`, or `failed` (the previous version kept serving).
    pub result: &'static str,
}

/// A compiler's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CompilerLabels {
    /// `cranelift` or `llvm`.
    pub compiler: &'static str,
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RequestLabels, Histogram>,
    pub instance_duration: Histogram,
    pub instances_running: Gauge,
    pub requests_waiting: Gauge,
    pub timeouts: Counter,
    pub memory_limit_hits: Counter,
    pub refusals: Family<RefusalLabels, Counter>,
    pub static_responses: Counter,
    pub compiled_cache: Family<CacheLabels, Counter>,
    pub snapshot_cache: Family<CacheLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub serving_compiler: Family<CompilerLabels, Gauge>,
}

/// From 1 ms to about 65 s, doubling.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 17)
}

impl Metrics {
    fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(duration_buckets())
        });
        let instance_duration = Histogram::new(duration_buckets());
        let instances_running = Gauge::default();
        let requests_waiting = Gauge::default();
        let timeouts = Counter::default();
        let memory_limit_hits = Counter::default();
        let refusals = Family::<RefusalLabels, Counter>::default();
        let static_responses = Counter::default();
        let compiled_cache = Family::<CacheLabels, Counter>::default();
        let snapshot_cache = Family::<CacheLabels, Counter>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let serving_compiler = Family::<CompilerLabels, Gauge>::default();

        let mut registry = Registry::with_prefix("wcgi");
        registry.register(
            "requests",
            "Requests answered, by route and status class",
            requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a request's head to its response's last byte",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register_with_unit(
            "instance_duration",
            "Time an instance ran, from its start to its exit",
            Unit::Seconds,
            instance_duration.clone(),
        );
        registry.register(
            "instances_running",
            "Instances running now",
            instances_running.clone(),
        );
        registry.register(
            "requests_waiting",
            "Requests waiting for an instance slot now",
            requests_waiting.clone(),
        );
        registry.register(
            "timeouts",
            "Instances stopped at their deadline (--timeout)",
            timeouts.clone(),
        );
        registry.register(
            "memory_limit_hits",
            "Instances whose memory could not grow past its maximum (--max-memory)",
            memory_limit_hits.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused before an instance ran: 413 (body_too_large) or 503",
            refusals.clone(),
        );
        registry.register(
            "static_responses",
            "Requests answered from a static directory, without an instance",
            static_responses.clone(),
        );
        registry.register(
            "compiled_cache",
            "Compiled-module cache lookups",
            compiled_cache.clone(),
        );
        registry.register(
            "snapshot_cache",
            "Pre-initialisation snapshot lookups (hit: cached or embedded in the package)",
            snapshot_cache.clone(),
        );
        registry.register(
            "reloads",
            "Site rebuilds after a watched file changed (--watch)",
            reloads.clone(),
        );
        registry.register(
            "serving_compiler",
            "1 for the compiler whose machine code the site being served runs, else 0 \
             (--compiler tiered switches from cranelift to llvm)",
            serving_compiler.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            instance_duration,
            instances_running,
            requests_waiting,
            timeouts,
            memory_limit_hits,
            refusals,
            static_responses,
            compiled_cache,
            snapshot_cache,
            reloads,
            serving_compiler,
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Counts a compiled-module cache lookup.
pub fn compiled_cache_lookup(hit: bool) {
    metrics()
        .compiled_cache
        .get_or_create(&CacheLabels::of(hit))
        .inc();
}

/// Counts a snapshot lookup (a hit: cached, or embedded in the package).
pub fn snapshot_lookup(hit: bool) {
    metrics()
        .snapshot_cache
        .get_or_create(&CacheLabels::of(hit))
        .inc();
}

/// Records that the site being served now runs `compiler`'s machine code.
pub fn serving_compiler(compiler: &'static str) {
    for name in ["cranelift", "llvm"] {
        let labels = CompilerLabels { compiler: name };
        metrics()
            .serving_compiler
            .get_or_create(&labels)
            .set(i64::from(name == compiler));
    }
}

/// The process's metrics, made on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(304), "3xx");
        assert_eq!(status_class(413), "4xx");
        assert_eq!(status_class(599), "5xx");
        assert_eq!(status_class(0), "5xx");
    }

    #[test]
    fn encodes_names_with_the_prefix_and_labels() {
        let metrics = Metrics::new();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: "/...".into(),
                status: "2xx",
            })
            .inc();
        let text = metrics.encode();
        assert!(
            text.contains("wcgi_requests_total{route=\"/...\",status=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
