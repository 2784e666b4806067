//! What every request handler shares.

use std::sync::Arc;

use crate::agencies::AgencySets;
use crate::audit::AuditLog;
use crate::auth::Callers;
use crate::clock::Clock;
use crate::config::GatewayConfig;
use crate::dispatch::DispatcherHandle;
use crate::order_worker::OrderWorkerHandle;
use crate::runtime::RuntimeParts;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<GatewayConfig>,
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    /// The current agency set, and older ones running inquiries still use.
    pub agencies: Arc<AgencySets>,
    pub callers: Callers,
    pub dispatcher: DispatcherHandle,
    /// What agencies' runtimes are built with on reload.
    pub runtimes: RuntimeParts,
    /// One reload at a time.
    pub reloading: Arc<tokio::sync::Mutex<()>>,
    /// Today's civil date, as the law's rules judge it.
    pub clock: Clock,
    pub orders: OrderWorkerHandle,
    /// Each agency's circuit breaker and rate limiter.
    pub guards: crate::resilience::Guards,
    /// How many refused calls each source may leave as rows of their own.
    pub refusals: crate::refusals::RefusalLimiter,
    /// Up to which row this gateway last verified the audit chain, so the
    /// console's chain page reads only the rows after it.
    pub chain: crate::verify::ChainMemory,
}
