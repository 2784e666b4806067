//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text, which
//! Prometheus reads): per-agency latency histograms and outcomes by status,
//! breaker states, inquiries and orders by state, and the audit writer's
//! batch sizes and commit time. Labels never carry personal data: agency
//! ids and statuses only.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgencyLabel {
    pub agency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub agency: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

pub struct Metrics {
    registry: Registry,
    pub agency_latency: Family<AgencyLabel, Histogram>,
    pub agency_outcomes: Family<OutcomeLabel, Counter>,
    pub breaker_open: Family<AgencyLabel, Gauge>,
    pub inquiries: Family<StatusLabel, Counter>,
    pub orders: Family<StatusLabel, Counter>,
    pub audit_batch_rows: Histogram,
    pub audit_commit_seconds: Histogram,
    pub audit_failures: Counter,
    pub tls_handshake_failures: Counter,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~32 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("gateway");
        let agency_latency = Family::<AgencyLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "agency_latency_seconds",
            "Time of one exchange with an agency, reply body included",
            agency_latency.clone(),
        );
        let agency_outcomes = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "agency_outcomes",
            "Agency task outcomes by status (answered, no_record, refused, timeout, circuit_open, rate_limited, bad_reply, error)",
            agency_outcomes.clone(),
        );
        let breaker_open = Family::<AgencyLabel, Gauge>::default();
        registry.register(
            "agency_breaker_state",
            "Circuit breaker per agency: 0 closed, 1 half open, 2 open",
            breaker_open.clone(),
        );
        let inquiries = Family::<StatusLabel, Counter>::default();
        registry.register(
            "inquiries",
            "Inquiries by state reached (accepted, completed)",
            inquiries.clone(),
        );
        let orders = Family::<StatusLabel, Counter>::default();
        registry.register("orders", "Control orders by status reached", orders.clone());
        let audit_batch_rows = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "audit_batch_rows",
            "Rows per audit transaction (group commit)",
            audit_batch_rows.clone(),
        );
        let audit_commit_seconds = latency_histogram();
        registry.register(
            "audit_commit_seconds",
            "Time to commit one audit batch: how long a producer waits (the writer's lag)",
            audit_commit_seconds.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "audit_batch_failures",
            "Audit batches that failed to commit",
            audit_failures.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "Inbound TLS handshakes refused (no or wrong client certificate) or not finished in time",
            tls_handshake_failures.clone(),
        );
        Self {
            registry,
            agency_latency,
            agency_outcomes,
            breaker_open,
            inquiries,
            orders,
            audit_batch_rows,
            audit_commit_seconds,
            audit_failures,
            tls_handshake_failures,
        }
    }

    /// The metrics in OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

pub fn agency_outcome(agency: &str, status: &str, latency_ms: Option<i64>) {
    let m = global();
    m.agency_outcomes
        .get_or_create(&OutcomeLabel {
            agency: agency.to_owned(),
            status: status.to_owned(),
        })
        .inc();
    if let Some(ms) = latency_ms {
        m.agency_latency
            .get_or_create(&AgencyLabel {
                agency: agency.to_owned(),
            })
            .observe(ms as f64 / 1000.0);
    }
}

pub fn count(family: &Family<StatusLabel, Counter>, status: &str) {
    family
        .get_or_create(&StatusLabel {
            status: status.to_owned(),
        })
        .inc();
}
