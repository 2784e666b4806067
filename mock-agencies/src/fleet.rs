//! Starting and stopping the agencies: one TCP listener and one axum server
//! task per agency, all sharing one generated population. Stopping an agency
//! closes its listener for good, so that later connections are refused: how
//! the tests make an agency "go down"; a stopped registry also cancels the
//! result pushes it has not made yet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::agency::{self, Agency, Holdings};
use crate::bank_book::BankBook;
use crate::config::{MockConfig, MockDialect};
use crate::further_population;
use crate::names::{self, BankBrand};
use crate::population::Population;
use crate::registry_book::RegistryBook;

/// How long a stopping agency may take to finish the requests in flight
/// before its server task is abandoned.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How long we wait for a stopped listener to refuse connections.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

struct RunningAgency {
    id: String,
    addr: SocketAddr,
    /// What the server serves, kept to stop its result pushes.
    served: Arc<Agency>,
    /// `None` once stopped. Dropping the sender is the stop signal too, so a
    /// fleet dropped without `shutdown` still stops its servers.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The running mock agencies.
pub struct MockFleet {
    agencies: Vec<RunningAgency>,
    population: Arc<Population>,
}

impl std::fmt::Debug for MockFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockFleet")
            .field("agencies", &self.agencies())
            .field("population", &self.population.len())
            .finish()
    }
}

impl MockFleet {
    /// Starts every agency. `ephemeral = true` binds each on 127.0.0.1:0
    /// (tests, demo); false uses each spec's `listen` (error if missing).
    pub async fn start(config: &MockConfig, ephemeral: bool) -> anyhow::Result<MockFleet> {
        config.validate()?;
        if !ephemeral {
            let missing: Vec<&str> = config
                .agencies
                .iter()
                .filter(|a| a.listen.is_none())
                .map(|a| a.id.as_str())
                .collect();
            if !missing.is_empty() {
                bail!("no listen address configured for: {}", missing.join(", "));
            }
        }
        // Bind everything before serving anything: a port already taken
        // fails the whole start instead of leaving half a fleet running.
        let mut listeners = Vec::with_capacity(config.agencies.len());
        for spec in &config.agencies {
            let addr = if ephemeral {
                SocketAddr::from(([127, 0, 0, 1], 0))
            } else {
                spec.listen.with_context(|| {
                    format!("agency {} has no listen address configured", spec.id)
                })?
            };
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("agency {} cannot listen on {addr}", spec.id))?;
            listeners.push(listener);
        }
        let population = Arc::new(Population::generate(config.seed, config.population));
        let mut agencies = Vec::with_capacity(listeners.len());
        for (spec, listener) in config.agencies.iter().zip(listeners) {
            let holdings = match spec.dialect {
                MockDialect::RegistryJson => {
                    Holdings::registry(RegistryBook::generate(&population, &spec.id))
                }
                dialect => match further_population::generate(&population, &spec.id, dialect) {
                    Some(book) => Holdings::further(book),
                    None => {
                        let brand =
                            BankBrand::named_in(spec.display_name()).unwrap_or(match dialect {
                                MockDialect::CourtBankXml => names::ICBC,
                                MockDialect::IsoBankXml => names::ABC,
                                _ => names::CCB,
                            });
                        Holdings::bank(BankBook::generate(&population, &spec.id, brand))
                    }
                },
            };
            let signing_key = spec.signing_key()?;
            let addr = listener.local_addr()?;
            let agency =
                Arc::new(Agency::new(spec.clone(), holdings).with_signing_key(signing_key));
            let app = agency::router(Arc::clone(&agency));
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "mock agency server failed");
                }
            });
            tracing::info!(agency = %spec.id, dialect = spec.dialect.as_str(), %addr, "mock agency listening");
            agencies.push(RunningAgency {
                id: spec.id.clone(),
                addr,
                served: agency,
                stop: Some(stop),
                task: Some(task),
            });
        }
        Ok(MockFleet {
            agencies,
            population,
        })
    }

    /// `http://127.0.0.1:PORT` of an agency, still known after it was stopped
    /// (so a test can point the gateway at an agency that is down).
    pub fn base_url(&self, id: &str) -> Option<String> {
        self.agencies
            .iter()
            .find(|a| a.id == id)
            .map(|a| format!("http://{}", a.addr))
    }

    /// Every agency with the address it listens (or listened) on.
    pub fn agencies(&self) -> Vec<(String, SocketAddr)> {
        self.agencies
            .iter()
            .map(|a| (a.id.clone(), a.addr))
            .collect()
    }

    /// The population the agencies' holdings were drawn from.
    pub fn population(&self) -> &Population {
        &self.population
    }

    /// Stops one agency and returns once its listener refuses connections.
    /// False when no such agency is running.
    pub async fn stop_agency(&mut self, id: &str) -> bool {
        let Some(agency) = self.agencies.iter_mut().find(|a| a.id == id) else {
            return false;
        };
        let Some(stop) = agency.stop.take() else {
            return false;
        };
        let _ = stop.send(());
        if let Some(task) = agency.task.take() {
            drain(task).await;
        }
        // After the drain: a submission in flight may still schedule a push.
        agency.served.stop_callbacks();
        wait_until_refused(agency.addr).await;
        tracing::info!(agency = %id, "mock agency stopped");
        true
    }

    /// Stops every agency still running.
    pub async fn shutdown(mut self) {
        for agency in &mut self.agencies {
            if let Some(stop) = agency.stop.take() {
                let _ = stop.send(());
            }
        }
        for agency in &mut self.agencies {
            if let Some(task) = agency.task.take() {
                drain(task).await;
            }
            agency.served.stop_callbacks();
        }
    }
}

/// Waits for a server task to finish its requests in flight; one stuck on a
/// long injected latency is abandoned (its listener is already closed).
pub(crate) async fn drain(mut task: JoinHandle<()>) {
    if tokio::time::timeout(DRAIN_GRACE, &mut task).await.is_err() {
        task.abort();
    }
}

/// axum drops the listener as soon as the stop signal arrives, before the
/// connections drain; this checks from the outside that it really is gone.
async fn wait_until_refused(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + CLOSE_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        match TcpStream::connect(addr).await {
            Err(_) => return,
            Ok(stream) => drop(stream),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(%addr, "a stopped mock agency still accepts connections");
}
