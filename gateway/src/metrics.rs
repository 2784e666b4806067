//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text, which
//! Prometheus reads): per-agency latency histograms and outcomes by status,
//! breaker states, calls in flight, calls refused by the agency stack's
//! layers and retries; inquiries and orders by state reached (counters) and
//! by current state (gauges); the work queues' depths; the audit writer's
//! batch sizes and commit time. Labels never carry personal data: agency
//! ids, states and layer names only.
//!
//! The gauges of current state and queue depth are sampled from the store
//! at each scrape (`render_sampled`), so they count the work of every
//! gateway sharing the database, and are right after a restart.

pub mod recent;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use adapters::model::AgencyStatus;

use crate::store::{InquiryStatus, OrderPhase, QueueCount, Store, TaskState};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabel {
    pub agency: String,
    /// `rate_limit`, `concurrency` or `breaker`.
    pub layer: String,
}

/// `waiting` (due or not yet due, no one on it) or `in_flight` (claimed
/// under a live lease).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskQueueLabel {
    pub state: String,
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderQueueLabel {
    pub phase: String,
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

pub struct Metrics {
    registry: Registry,
    pub agency_latency: Family<AgencyLabel, Histogram>,
    pub agency_outcomes: Family<OutcomeLabel, Counter>,
    pub breaker_open: Family<AgencyLabel, Gauge>,
    pub inquiries: Family<StatusLabel, Counter>,
    /// `inquiries{status="accepted"}` and `{status="completed"}`, resolved
    /// once: each inquiry counts in both.
    pub inquiries_accepted: Counter,
    pub inquiries_completed: Counter,
    pub orders: Family<StatusLabel, Counter>,
    pub agency_in_flight: Family<AgencyLabel, Gauge>,
    pub agency_rejections: Family<RejectionLabel, Counter>,
    pub agency_retries: Family<AgencyLabel, Counter>,
    pub agency_hedges: Family<AgencyLabel, Counter>,
    pub task_queue: Family<TaskQueueLabel, Gauge>,
    pub order_queue: Family<OrderQueueLabel, Gauge>,
    pub callback_outbox: Family<StageLabel, Gauge>,
    pub inquiries_current: Family<StatusLabel, Gauge>,
    pub orders_current: Family<StatusLabel, Gauge>,
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
        let agency_in_flight = Family::<AgencyLabel, Gauge>::default();
        registry.register(
            "agency_in_flight",
            "Exchanges with the agency on the wire now (this gateway)",
            agency_in_flight.clone(),
        );
        let agency_rejections = Family::<RejectionLabel, Counter>::default();
        registry.register(
            "agency_rejections",
            "Calls the agency's stack refused before sending, by the layer that refused (rate_limit, concurrency, breaker)",
            agency_rejections.clone(),
        );
        let agency_retries = Family::<AgencyLabel, Counter>::default();
        registry.register(
            "agency_retries",
            "Inquiry messages sent again after a failed exchange",
            agency_retries.clone(),
        );
        let agency_hedges = Family::<AgencyLabel, Counter>::default();
        registry.register(
            "agency_hedges",
            "Inquiry messages sent a second time because the first was not answered within the agency's p95",
            agency_hedges.clone(),
        );
        let task_queue = Family::<TaskQueueLabel, Gauge>::default();
        registry.register(
            "task_queue",
            "Unfinished agency tasks by state (queued, polling, awaiting) and stage (waiting, in_flight)",
            task_queue.clone(),
        );
        let order_queue = Family::<OrderQueueLabel, Gauge>::default();
        registry.register(
            "order_queue",
            "Control orders not done, by phase (send, query, poll, watch) and stage (waiting, in_flight)",
            order_queue.clone(),
        );
        let callback_outbox = Family::<StageLabel, Gauge>::default();
        registry.register(
            "callback_outbox",
            "Callbacks to callers not yet delivered, by stage (waiting, in_flight)",
            callback_outbox.clone(),
        );
        let inquiries_current = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "inquiries_current",
            "Inquiries by current status",
            inquiries_current.clone(),
        );
        let orders_current = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "orders_current",
            "Control orders by current status",
            orders_current.clone(),
        );
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
        let status = |s: &str| StatusLabel {
            status: s.to_owned(),
        };
        Self {
            registry,
            agency_latency,
            agency_outcomes,
            breaker_open,
            inquiries_accepted: inquiries.get_or_create_owned(&status("accepted")),
            inquiries_completed: inquiries.get_or_create_owned(&status("completed")),
            inquiries,
            orders,
            agency_in_flight,
            agency_rejections,
            agency_retries,
            agency_hedges,
            task_queue,
            order_queue,
            callback_outbox,
            inquiries_current,
            orders_current,
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

pub fn count(family: &Family<StatusLabel, Counter>, status: &str) {
    family
        .get_or_create(&StatusLabel {
            status: status.to_owned(),
        })
        .inc();
}

fn agency_label(agency: &str) -> AgencyLabel {
    AgencyLabel {
        agency: agency.to_owned(),
    }
}

/// The finished statuses an agency's counters are made for up front: every
/// one a task can end in.
const OUTCOMES: [AgencyStatus; 8] = [
    AgencyStatus::Answered,
    AgencyStatus::NoRecord,
    AgencyStatus::Refused,
    AgencyStatus::Timeout,
    AgencyStatus::CircuitOpen,
    AgencyStatus::RateLimited,
    AgencyStatus::BadReply,
    AgencyStatus::Error,
];

/// The layers that refuse calls, as `Refusal::layer` names them.
const REFUSING_LAYERS: [&str; 3] = ["rate_limit", "concurrency", "breaker"];

/// One agency's metrics, resolved from their families once and kept (its
/// runtime's layers hold them): counting a call touches the metric itself,
/// never a family's map, and builds no label. Every series of the agency is
/// there from the start, at zero.
#[derive(Debug)]
pub struct AgencyMetrics {
    agency: String,
    latency: Histogram,
    outcomes: [Counter; OUTCOMES.len()],
    in_flight: Gauge,
    rejections: [Counter; REFUSING_LAYERS.len()],
    retries: Counter,
    hedges: Counter,
}

impl AgencyMetrics {
    /// The metrics of `agency`: the same handles for every caller.
    pub fn of(agency: &str) -> Arc<Self> {
        static BY_AGENCY: OnceLock<RwLock<HashMap<String, Arc<AgencyMetrics>>>> = OnceLock::new();
        let map = BY_AGENCY.get_or_init(Default::default);
        if let Some(m) = map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agency)
        {
            return m.clone();
        }
        map.write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(agency.to_owned())
            .or_insert_with(|| Arc::new(Self::resolve(agency)))
            .clone()
    }

    fn resolve(agency: &str) -> Self {
        let m = global();
        let label = agency_label(agency);
        let outcome = |status: AgencyStatus| {
            m.agency_outcomes.get_or_create_owned(&OutcomeLabel {
                agency: agency.to_owned(),
                status: status.as_str().to_owned(),
            })
        };
        let rejection = |layer: &str| {
            m.agency_rejections.get_or_create_owned(&RejectionLabel {
                agency: agency.to_owned(),
                layer: layer.to_owned(),
            })
        };
        Self {
            agency: agency.to_owned(),
            latency: m.agency_latency.get_or_create_owned(&label),
            outcomes: OUTCOMES.map(outcome),
            in_flight: m.agency_in_flight.get_or_create_owned(&label),
            rejections: REFUSING_LAYERS.map(rejection),
            retries: m.agency_retries.get_or_create_owned(&label),
            hedges: m.agency_hedges.get_or_create_owned(&label),
        }
    }

    /// A task of the agency reached `status`, `latency_ms` after it was sent.
    pub fn outcome(&self, status: AgencyStatus, latency_ms: Option<i64>) {
        match OUTCOMES.iter().position(|s| *s == status) {
            Some(i) => {
                self.outcomes[i].inc();
            }
            None => {
                global()
                    .agency_outcomes
                    .get_or_create(&OutcomeLabel {
                        agency: self.agency.clone(),
                        status: status.as_str().to_owned(),
                    })
                    .inc();
            }
        }
        if let Some(ms) = latency_ms {
            self.latency.observe(ms as f64 / 1000.0);
        }
    }

    /// Counts one exchange in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// A call refused by the stack's `layer`.
    pub fn rejected(&self, layer: &str) {
        if let Some(i) = REFUSING_LAYERS.iter().position(|l| *l == layer) {
            self.rejections[i].inc();
        }
    }

    /// An inquiry message sent again.
    pub fn retried(&self) {
        self.retries.inc();
    }

    /// An inquiry message hedged.
    pub fn hedged(&self) {
        self.hedges.inc();
    }
}

/// One exchange in flight, counted until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Exchanges with `agency` in flight now.
pub fn in_flight(agency: &str) -> i64 {
    global()
        .agency_in_flight
        .get_or_create(&agency_label(agency))
        .get()
}

/// Calls to `agency` refused by `layer` so far.
pub fn rejections(agency: &str, layer: &str) -> u64 {
    global()
        .agency_rejections
        .get_or_create(&RejectionLabel {
            agency: agency.to_owned(),
            layer: layer.to_owned(),
        })
        .get()
}

fn stage(claimed: bool) -> String {
    if claimed { "in_flight" } else { "waiting" }.to_owned()
}

impl Metrics {
    /// Sets the sampled gauges from the store's counts. Every state a
    /// gauge may show is set, to zero when nothing is in it.
    fn set_queues(&self, counts: &[QueueCount]) {
        self.inquiries_current.clear();
        self.orders_current.clear();
        self.task_queue.clear();
        self.order_queue.clear();
        self.callback_outbox.clear();
        for claimed in [false, true] {
            for state in TaskState::UNFINISHED {
                self.task_queue
                    .get_or_create(&TaskQueueLabel {
                        state: state.as_str().to_owned(),
                        stage: stage(claimed),
                    })
                    .set(0);
            }
            for phase in OrderPhase::ALL.iter().filter(|p| **p != OrderPhase::Done) {
                self.order_queue
                    .get_or_create(&OrderQueueLabel {
                        phase: phase.as_str().to_owned(),
                        stage: stage(claimed),
                    })
                    .set(0);
            }
            self.callback_outbox
                .get_or_create(&StageLabel {
                    stage: stage(claimed),
                })
                .set(0);
        }
        for status in InquiryStatus::ALL {
            self.inquiries_current
                .get_or_create(&StatusLabel {
                    status: status.as_str().to_owned(),
                })
                .set(0);
        }
        for c in counts {
            let gauge = match c.queue.as_str() {
                "task" => self.task_queue.get_or_create_owned(&TaskQueueLabel {
                    state: c.key.clone(),
                    stage: stage(c.claimed),
                }),
                "order_phase" => self.order_queue.get_or_create_owned(&OrderQueueLabel {
                    phase: c.key.clone(),
                    stage: stage(c.claimed),
                }),
                "outbox" => self.callback_outbox.get_or_create_owned(&StageLabel {
                    stage: stage(c.claimed),
                }),
                "inquiry" => self.inquiries_current.get_or_create_owned(&StatusLabel {
                    status: c.key.clone(),
                }),
                "order" => self.orders_current.get_or_create_owned(&StatusLabel {
                    status: c.key.clone(),
                }),
                _ => continue,
            };
            gauge.set(c.count);
        }
    }
}

/// The sampled gauges are at most this old: the sample counts rows in the
/// store, and scrapes (or readiness probes polling /metrics) may come far
/// more often than a queue's size is worth recounting.
const QUEUE_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Samples the work queues from the store (at most once a
/// `QUEUE_SAMPLE_EVERY`), then renders every metric. One scrape at a time:
/// no scrape sees a gauge family half set. When the store cannot be read
/// the sampled gauges keep their last values.
pub async fn render_sampled(store: &dyn Store) -> String {
    static SCRAPE: OnceLock<tokio::sync::Mutex<Option<std::time::Instant>>> = OnceLock::new();
    let mut sampled_at = SCRAPE.get_or_init(Default::default).lock().await;
    let m = global();
    if sampled_at.is_none_or(|at| at.elapsed() >= QUEUE_SAMPLE_EVERY) {
        match store
            .queue_counts(chrono::Utc::now().timestamp_millis())
            .await
        {
            Ok(counts) => {
                m.set_queues(&counts);
                *sampled_at = Some(std::time::Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "cannot sample the work queues for the metrics"),
        }
    }
    m.render()
}
