//! One runtime per agency: its HTTP channel (client and auth headers), its
//! guard (breaker, quota, hedging), its concurrency bound, its metric
//! handles, and its two tower stacks (inquiries, control orders), all built
//! once when the agency set is loaded. A message takes a clone of a stack
//! and goes; nothing is looked up or built per message.
//!
//! A reload keeps an agency's runtime, the very same one, while everything
//! it was built from (`RuntimeBasis`: the base URL, the connection, the
//! limits) is unchanged: its breaker stays open or closed, its quota keeps
//! counting, its connections stay pooled. A change to any of them builds a
//! new runtime, which still takes over whatever did not change (the guard
//! when the breaker, quota and hedging settings stand; the semaphore when
//! the bound does). Running inquiries keep the set they started with, and so
//! the runtime of that set.

use std::sync::Arc;
use std::time::Duration;

use adapters::agency::{Agency, Connection, Limits};
use tokio::sync::Semaphore;

use crate::metrics::AgencyMetrics;
use crate::metrics::recent::Recorder;
use crate::resilience::exchange::Exchange;
use crate::resilience::retry::InquiryRetry;
use crate::resilience::stack::{self, AgencyService, StackParts};
use crate::resilience::{Guard, Guards};
use crate::transport::{AgencyChannel, Transport};

/// What every agency's runtime is built with.
#[derive(Debug, Clone)]
pub struct RuntimeParts {
    pub transport: Transport,
    /// Each agency's guard, kept across reloads while its limits stand.
    pub guards: Guards,
    /// The first wait before an inquiry message is sent again
    /// (`dispatcher.retry_base_ms`); it doubles, up to 1024 times as long.
    pub retry_base: Duration,
}

impl RuntimeParts {
    pub fn new(
        transport: Transport,
        guards: Guards,
        dispatcher: &crate::config::DispatcherSettings,
    ) -> Self {
        Self {
            transport,
            guards,
            retry_base: Duration::from_millis(dispatcher.retry_base_ms),
        }
    }
}

/// What an agency's runtime is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RuntimeBasis {
    base_url: String,
    connection: Connection,
    limits: Limits,
}

impl RuntimeBasis {
    fn of(agency: &Agency) -> Self {
        Self {
            base_url: agency.config.base_url.clone(),
            connection: agency.connection.clone(),
            limits: agency.config.limits.clone(),
        }
    }
}

/// An agency's channel, guard, bound, metrics and stacks.
#[derive(Debug)]
pub struct AgencyRuntime {
    basis: RuntimeBasis,
    pub channel: AgencyChannel,
    pub guard: Arc<Guard>,
    /// `limits.max_concurrency` permits.
    pub concurrency: Option<Arc<Semaphore>>,
    pub metrics: Arc<AgencyMetrics>,
    /// This gateway's record of the agency's recent traffic, the same
    /// across reloads.
    pub recorder: Arc<Recorder>,
    inquiries: AgencyService,
    orders: AgencyService,
}

impl AgencyRuntime {
    /// The runtime of `agency`: `previous` itself when it was built from the
    /// same basis, else a new one (taking over what `previous` has that
    /// still fits). An error says what is wrong with the connection (a PEM
    /// that does not parse, ...), without any secret.
    pub fn for_agency(
        agency: &Agency,
        parts: &RuntimeParts,
        previous: Option<&Arc<AgencyRuntime>>,
    ) -> Result<Arc<Self>, String> {
        let basis = RuntimeBasis::of(agency);
        if let Some(previous) = previous.filter(|p| p.basis == basis) {
            return Ok(previous.clone());
        }
        let id = agency.id();
        let channel = parts.transport.channel_for(&agency.connection)?;
        let limits = &basis.limits;
        let concurrency = limits.max_concurrency.map(|n| {
            previous
                .filter(|p| p.basis.limits.max_concurrency == Some(n))
                .and_then(|p| p.concurrency.clone())
                .unwrap_or_else(|| Arc::new(Semaphore::new(n as usize)))
        });
        let metrics = AgencyMetrics::of(id);
        let stack_parts = StackParts {
            timeout: Duration::from_millis(limits.timeout_ms),
            guard: parts.guards.get(id, limits),
            concurrency,
            metrics,
            recorder: parts.guards.recorder(id),
        };
        let exchange = Exchange::new(
            parts.transport.clone(),
            channel.clone(),
            &basis.base_url,
            stack_parts.metrics.clone(),
        );
        let base = parts.retry_base;
        let retry = InquiryRetry::new(
            base,
            base.saturating_mul(1 << 10),
            stack_parts.metrics.clone(),
        );
        Ok(Arc::new(Self {
            inquiries: stack::inquiry_stack(exchange.clone(), &stack_parts, retry),
            orders: stack::control_stack(exchange, &stack_parts),
            channel,
            guard: stack_parts.guard,
            concurrency: stack_parts.concurrency,
            metrics: stack_parts.metrics,
            recorder: stack_parts.recorder,
            basis,
        }))
    }

    /// The stack for inquiry messages (sends and polls): retried within
    /// `dispatcher.max_attempts`, refused when the agency is busy.
    pub fn inquiry_stack(&self) -> AgencyService {
        self.inquiries.clone()
    }

    /// The stack for control orders: never retried, waiting for room.
    pub fn order_stack(&self) -> AgencyService {
        self.orders.clone()
    }

    /// The agency's breaker: `closed`, `half_open` or `open`.
    pub fn breaker_state(&self) -> &'static str {
        self.guard.breaker.state_name()
    }

    /// Whether every exchange the agency's bound allows is in flight.
    pub fn is_busy(&self) -> bool {
        self.concurrency
            .as_ref()
            .is_some_and(|s| s.available_permits() == 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use adapters::catalog::Catalog;
    use tower::ServiceExt;

    use super::*;
    use crate::agencies::AgencyRegistry;
    use crate::resilience::testing::call;
    use crate::resilience::{CallError, Refusal};
    use crate::transport::HttpReply;

    /// An agency on a real port that answers `status` to everything, and
    /// how many messages reached it.
    async fn agency(status: u16) -> anyhow::Result<(String, Arc<AtomicUsize>)> {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::from_u16(status)
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((url, hits))
    }

    /// The agency set of one JSON bank `bank-r` named `name`, with these
    /// `[limits]` lines, reached at `url`.
    fn load(
        dir: &Path,
        name: &str,
        limits: &str,
        url: &str,
        parts: &RuntimeParts,
        previous: Option<&AgencyRegistry>,
    ) -> anyhow::Result<AgencyRegistry> {
        let file = format!(
            "id = \"bank-r\"\nname = \"{name}\"\nkind = \"bank\"\ndialect = \"bank-json\"\n\
             base_url = \"{url}\"\n\n[limits]\n{limits}\n"
        );
        std::fs::write(dir.join("bank-r.toml"), file)?;
        let dialects = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/dialects");
        let catalog = Catalog::load(dir, &dialects, &BTreeMap::new())?;
        Ok(AgencyRegistry::build(catalog, parts, dir, previous)?)
    }

    fn parts() -> anyhow::Result<RuntimeParts> {
        Ok(RuntimeParts {
            transport: Transport::new(1024 * 1024)?,
            guards: Guards::default(),
            retry_base: Duration::from_millis(10),
        })
    }

    fn runtime(registry: &AgencyRegistry) -> anyhow::Result<Arc<AgencyRuntime>> {
        registry
            .get("bank-r")
            .map(|l| l.runtime.clone())
            .ok_or_else(|| anyhow::anyhow!("bank-r is not in the set"))
    }

    /// One inquiry message through the runtime's stack, never retried.
    async fn send(runtime: &AgencyRuntime) -> Result<HttpReply, CallError> {
        runtime.inquiry_stack().oneshot(call()).await
    }

    fn refused_by_breaker(result: &Result<HttpReply, CallError>) -> bool {
        matches!(result, Err(CallError::Refused(Refusal::CircuitOpen { .. })))
    }

    #[tokio::test]
    async fn a_reload_that_leaves_the_agency_as_it_was_keeps_its_runtime_and_its_open_breaker()
    -> anyhow::Result<()> {
        let (url, hits) = agency(503).await?;
        let dir = tempfile::tempdir()?;
        let parts = parts()?;
        let limits = "breaker_failures = 2\nbreaker_cooldown_ms = 600000";
        let first = load(dir.path(), "Bank R", limits, &url, &parts, None)?;
        let before = runtime(&first)?;
        for _ in 0..2 {
            assert_eq!(send(&before).await.map(|r| r.status).ok(), Some(503));
        }
        assert!(refused_by_breaker(&send(&before).await));
        assert_eq!(before.breaker_state(), "open");

        // The agency's name changes, nothing it is reached or bounded by.
        let second = load(
            dir.path(),
            "Bank R (renamed)",
            limits,
            &url,
            &parts,
            Some(&first),
        )?;
        let after = runtime(&second)?;
        assert!(Arc::ptr_eq(&before, &after), "the runtime was rebuilt");
        assert_eq!(
            second.get("bank-r").map(|l| l.config().name.as_str()),
            Some("Bank R (renamed)")
        );
        assert_eq!(after.breaker_state(), "open");
        assert!(refused_by_breaker(&send(&after).await));
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "the open breaker let one through"
        );

        // A new threshold is a new breaker, closed.
        let limits = "breaker_failures = 3\nbreaker_cooldown_ms = 600000";
        let third = load(dir.path(), "Bank R", limits, &url, &parts, Some(&second))?;
        let rebuilt = runtime(&third)?;
        assert!(!Arc::ptr_eq(&after, &rebuilt));
        assert_eq!(rebuilt.breaker_state(), "closed");
        assert_eq!(send(&rebuilt).await.map(|r| r.status).ok(), Some(503));
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        // The set the old runtime belongs to keeps it, breaker and all.
        assert!(refused_by_breaker(&send(&*runtime(&second)?).await));
        Ok(())
    }

    #[tokio::test]
    async fn a_reload_that_changes_the_agency_quota_gets_the_new_quota() -> anyhow::Result<()> {
        let (url, hits) = agency(200).await?;
        let dir = tempfile::tempdir()?;
        let parts = parts()?;
        let quota = |rate: u32| format!("rate_per_second = {rate}\nmax_concurrency = 4");
        let first = load(dir.path(), "Bank R", &quota(1), &url, &parts, None)?;
        let before = runtime(&first)?;
        assert!(send(&before).await.is_ok());
        let limited = send(&before).await;
        assert!(
            matches!(
                limited,
                Err(CallError::Refused(Refusal::RateLimited { .. }))
            ),
            "{limited:?}"
        );

        let second = load(dir.path(), "Bank R", &quota(3), &url, &parts, Some(&first))?;
        let after = runtime(&second)?;
        assert!(!Arc::ptr_eq(&before, &after), "the runtime was kept");
        for _ in 0..3 {
            assert_eq!(send(&after).await.map(|r| r.status).ok(), Some(200));
        }
        let limited = send(&after).await;
        assert!(
            matches!(
                limited,
                Err(CallError::Refused(Refusal::RateLimited { .. }))
            ),
            "{limited:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        // The concurrency bound did not change: both sets share its
        // permits, so the reload does not double it.
        let (old, new) = (before.concurrency.as_ref(), after.concurrency.as_ref());
        assert!(old.zip(new).is_some_and(|(o, n)| Arc::ptr_eq(o, n)));
        Ok(())
    }
}
