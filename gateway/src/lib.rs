//! The court enforcement asset inquiry and freeze gateway.
//!
//! `Gateway::start` wires the pieces: the store, the audit writer, the agency
//! registry, the dispatcher and the HTTP API. The binary (`main.rs`) is a thin
//! command line over this library; tests start it on port 0.

pub mod agencies;
pub mod agency_test;
pub mod api;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod batch_cli;
pub mod bundle;
pub mod case;
pub mod clock;
pub mod config;
pub mod console;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dispatch;
pub mod error;
pub mod input;
pub mod inquiry;
pub mod metrics;
pub mod notify;
pub mod order;
pub mod order_worker;
pub mod plan;
pub mod refusals;
pub mod reload;
pub mod resilience;
pub mod rules;
pub mod runtime;
pub mod serve;
pub mod services;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod verify;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agencies::AgencySets;
use crate::audit::AuditLog;
use crate::auth::Callers;
use crate::clock::Clock;
use crate::config::GatewayConfig;
use crate::dispatch::Dispatcher;
use crate::notify::Notifier;
use crate::order_worker::OrderWorker;
use crate::runtime::RuntimeParts;
use crate::state::AppState;
use crate::transport::Transport;

/// Installs the one rustls crypto provider of the process (aws-lc-rs). Safe
/// to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    dispatcher: JoinHandle<()>,
    order_worker: JoinHandle<()>,
    retention: Option<JoinHandle<()>>,
    refusals: JoinHandle<()>,
}

impl Gateway {
    /// Starts the gateway on `listener` with the agencies and dialects its
    /// configuration names.
    pub async fn start(config: GatewayConfig, listener: TcpListener) -> anyhow::Result<Self> {
        Self::start_with_clock(config, listener, Clock::default()).await
    }

    /// Starts the gateway with a clock the caller controls (tests move
    /// today forward to see measures lapse).
    pub async fn start_with_clock(
        config: GatewayConfig,
        listener: TcpListener,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        let notifier = Notifier::new(&config.callers, config.callbacks.clone())?;
        let guards = resilience::Guards::default();
        let transport = Transport::new(config.limits.max_reply_bytes)?;
        let runtimes = RuntimeParts::new(transport, guards.clone(), &config.dispatcher);
        let registry = reload::load_registry(&config, &runtimes, None)?;
        let store = store::open(&config.database_url)
            .await
            .with_context(|| format!("opening the store at {}", config.database_url))?;
        let checkpoints = config
            .audit
            .signing_key()
            .map_err(anyhow::Error::msg)?
            .map(|key| audit::CheckpointPolicy {
                key: Arc::new(key),
                every_rows: config.audit.checkpoint_every_rows,
                every_ms: config.audit.checkpoint_every_secs as i64 * 1000,
            });
        let audit = AuditLog::start_signing(
            store.clone(),
            config.audit.queue_capacity,
            checkpoints,
            Some(Arc::new(notifier.clone())),
        )
        .await?;
        let agencies = Arc::new(AgencySets::new(registry));
        let addr = listener.local_addr()?;
        let tls_config = match &config.tls {
            None => None,
            Some(tls) => Some(tls.server_config().map_err(anyhow::Error::msg)?),
        };
        let scheme = if tls_config.is_some() {
            "https"
        } else {
            "http"
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        let dispatcher = Dispatcher::new(
            store.clone(),
            audit.clone(),
            agencies.clone(),
            config.dispatcher.clone(),
            public_url,
            notifier.clone(),
        );
        let orders = OrderWorker::new(
            store.clone(),
            audit.clone(),
            agencies.clone(),
            config.orders.clone(),
            clock.clone(),
            notifier,
            config.dispatcher.lease_grace_secs,
        );
        let state = AppState {
            callers: Callers::from_config(&config.callers),
            refusals: refusals::RefusalLimiter::from_config(&config.audit),
            config: Arc::new(config),
            store,
            audit,
            agencies,
            dispatcher: dispatcher.handle(),
            runtimes,
            reloading: Arc::new(tokio::sync::Mutex::new(())),
            clock,
            orders: orders.handle(),
            guards,
            chain: Default::default(),
        };
        let (stop, stopped) = watch::channel(false);
        let dispatcher = tokio::spawn(dispatcher.run(stopped.clone()));
        let order_worker = tokio::spawn(orders.run(stopped.clone()));
        let refusals = tokio::spawn(
            state
                .refusals
                .clone()
                .run(state.audit.clone(), stopped.clone()),
        );
        let retention = state.config.audit.body_retention_days.map(|days| {
            tokio::spawn(retention(
                state.store.clone(),
                state.audit.clone(),
                days,
                Duration::from_secs(state.config.audit.retention_sweep_secs.max(1)),
                stopped.clone(),
            ))
        });
        let app = api::router(state.clone());
        let server = serve::spawn(listener, tls_config, app, &state.config.limits, stopped)?;
        let current = state.agencies.current();
        tracing::info!(
            %addr,
            tls = state.config.tls.is_some(),
            agencies = current.len(),
            version = current.version(),
            "gateway listening"
        );
        Ok(Self {
            addr,
            state,
            stop,
            server,
            dispatcher,
            order_worker,
            retention,
            refusals,
        })
    }

    /// `http://` or, with `[tls]`, `https://` and the listening address.
    pub fn base_url(&self) -> String {
        let scheme = if self.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops taking requests, lets in-flight ones finish, stops the dispatcher.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        // After the last request: no refusal is counted after its summary.
        let _ = self.refusals.await;
        self.state.refusals.flush(&self.state.audit).await;
        let _ = self.dispatcher.await;
        let _ = self.order_worker.await;
        if let Some(r) = self.retention {
            let _ = r.await;
        }
    }

    /// Today's civil date as the gateway judges terms and expiries.
    pub fn clock(&self) -> &Clock {
        &self.state.clock
    }

    /// Reloads the agency and dialect files, as `POST /v1/admin/reload`
    /// and SIGHUP do; `caller` is recorded in the audit log.
    pub async fn reload(&self, caller: &str) -> Result<reload::ReloadSummary, reload::ReloadError> {
        reload::reload(&self.state, caller).await
    }

    /// Serves until the process is told to stop (Ctrl-C or SIGTERM),
    /// reloading the agency and dialect files on SIGHUP.
    pub async fn run_until_signal(self) {
        reload::on_hangup(self.state.clone(), wait_for_signal()).await;
        tracing::info!("stopping");
        self.shutdown().await;
    }
}

/// Purges message bodies older than `days` from the audit log, every
/// `every`: rows, digests and the chain stay, so the log still verifies.
async fn retention(
    store: Arc<dyn store::Store>,
    audit: AuditLog,
    days: u32,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let cutoff = chrono::Utc::now().timestamp_millis() - i64::from(days) * 86_400_000;
        let mut purged = 0u64;
        loop {
            match store.purge_bodies(cutoff, 5_000).await {
                Ok(0) => break,
                Ok(n) => purged += n,
                Err(e) => {
                    tracing::warn!(error = %e, "audit retention failed; retrying later");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(purged, days, "audit bodies past retention purged");
            let _ = audit
                .record(audit::AuditRecord {
                    direction: Some(audit::Direction::Internal),
                    action: "audit.retention".into(),
                    status: Some(format!("purged_{purged}")),
                    ..audit::AuditRecord::default()
                })
                .await;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
