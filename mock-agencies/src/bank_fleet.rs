//! A fleet of N mock banks behind one listener ([`MockBankFleet`]): bank
//! `fleet-0042` answers at `/banks/fleet-0042/...` exactly what a bank of its
//! dialect answers at `/...` on a listener of its own, inspection API
//! included (`/banks/{id}/_mock/ledger`, `/banks/{id}/_mock/faults`).
//!
//! One axum server for all of them: a request is dispatched by a map lookup
//! of the bank id, its path prefix removed, to that bank's router, which is
//! built on the bank's first request. Starting a fleet therefore costs the
//! population and one [`Agency`] per bank, not N routers; `GET /banks` lists
//! the banks, and `POST /banks/_mock/faults` changes the faults of all of
//! them at once. Which bank speaks what and holds which accounts is
//! [`crate::fleet_plan`]'s business.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::agency::{self, Agency, Holdings};
use crate::config::{MAX_POPULATION, MockDialect};
use crate::fleet::drain;
use crate::fleet_plan::{self, MAX_FLEET_BANKS};
use crate::inspect::{FaultsChange, bad_request};
use crate::population::Population;

/// One bank of the fleet; its router is made when first asked.
struct FleetBank {
    agency: Arc<Agency>,
    router: OnceLock<Router>,
}

impl FleetBank {
    fn router(&self) -> Router {
        self.router
            .get_or_init(|| agency::router(Arc::clone(&self.agency)))
            .clone()
    }
}

struct Banks {
    /// Ids in bank-number order.
    ids: Vec<String>,
    by_id: HashMap<String, FleetBank>,
}

/// N mock banks served from one listener, each under `/banks/{id}`.
pub struct MockBankFleet {
    addr: SocketAddr,
    banks: Arc<Banks>,
    population: Arc<Population>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockBankFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBankFleet")
            .field("addr", &self.addr)
            .field("banks", &self.banks.ids.len())
            .field("population", &self.population.len())
            .finish()
    }
}

impl MockBankFleet {
    /// Generates a population of `population` subjects from `seed`, spreads
    /// it over `banks` banks (`fleet-0001` ...), and serves them all on
    /// `listen` (`127.0.0.1:0` picks a free port).
    pub async fn start(
        seed: u64,
        population: usize,
        banks: usize,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_FLEET_BANKS).contains(&banks),
            "a fleet has 1 to {MAX_FLEET_BANKS} banks, not {banks}"
        );
        anyhow::ensure!(
            population <= MAX_POPULATION,
            "population {population} exceeds the maximum of {MAX_POPULATION}"
        );
        let started = Instant::now();
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("the bank fleet cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let population = Arc::new(Population::generate(seed, population));
        let books = fleet_plan::fleet_books(&population, banks);
        let mut ids = Vec::with_capacity(banks);
        let mut by_id = HashMap::with_capacity(banks);
        for (number, book) in (1..=banks).zip(books) {
            let spec = fleet_plan::fleet_bank_spec(number, banks);
            ids.push(spec.id.clone());
            by_id.insert(
                spec.id.clone(),
                FleetBank {
                    agency: Arc::new(Agency::new(spec, Holdings::bank(book))),
                    router: OnceLock::new(),
                },
            );
        }
        let banks = Arc::new(Banks { ids, by_id });
        let app = Router::new()
            .route("/banks", get(list))
            .route("/banks/_mock/faults", post(fleet_faults))
            .fallback(dispatch)
            .with_state(Arc::clone(&banks));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "mock bank fleet server failed");
            }
        });
        tracing::info!(
            banks = banks.ids.len(),
            population = population.len(),
            %addr,
            elapsed_ms = started.elapsed().as_millis(),
            "mock bank fleet listening"
        );
        Ok(Self {
            addr,
            banks,
            population,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address the fleet listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (the loopback address when listening on all
    /// interfaces).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Every bank's id, `fleet-0001` first.
    pub fn bank_ids(&self) -> Vec<String> {
        self.banks.ids.clone()
    }

    /// `{base_url}/banks/{id}`: where the bank's dialect paths start.
    pub fn agency_base_url(&self, id: &str) -> Option<String> {
        self.banks
            .by_id
            .contains_key(id)
            .then(|| format!("{}/banks/{id}", self.base_url()))
    }

    /// The dialect a bank speaks.
    pub fn bank_dialect(&self, id: &str) -> Option<MockDialect> {
        self.banks.by_id.get(id).map(|b| b.agency.spec.dialect)
    }

    /// The population the banks' accounts were drawn from.
    pub fn population(&self) -> &Population {
        &self.population
    }

    /// Stops the listener and waits for the requests in flight.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            drain(task).await;
        }
    }
}

fn not_found(message: String) -> Response {
    let body = json!({"error": {"code": "NOT_FOUND", "message": message}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// `GET /banks`: every bank with its dialect and path prefix.
async fn list(State(banks): State<Arc<Banks>>) -> Json<Value> {
    let list: Vec<Value> = banks
        .ids
        .iter()
        .filter_map(|id| banks.by_id.get(id))
        .map(|b| {
            let spec = &b.agency.spec;
            json!({
                "id": spec.id,
                "name": spec.name,
                "dialect": spec.dialect.as_str(),
                "encoding": spec.encoding,
                "path": format!("/banks/{}", spec.id),
            })
        })
        .collect();
    Json(json!({ "banks": list }))
}

/// `POST /banks/_mock/faults`: the same change of faults at every bank, as
/// `POST /banks/{id}/_mock/faults` takes it, except that a seed is mixed
/// with each bank's id (so the banks do not fail in step). Answers
/// `{"banks": N}`; a bad change is refused before any bank is changed.
async fn fleet_faults(State(banks): State<Arc<Banks>>, body: Bytes) -> Response {
    let change = match FaultsChange::parse(&body) {
        Ok(change) => change,
        Err(e) => return bad_request(&e),
    };
    let mut changed = 0usize;
    for bank in banks.ids.iter().filter_map(|id| banks.by_id.get(id)) {
        // Whether a change is acceptable does not depend on the faults it
        // changes: the first bank refuses it if any would.
        if let Err(e) = change.apply(&bank.agency, true) {
            return bad_request(&e);
        }
        changed += 1;
    }
    tracing::info!(banks = changed, "faults changed at every bank");
    Json(json!({ "banks": changed })).into_response()
}

/// `/banks/{id}/rest?query` → that bank's router, asked for `/rest?query`.
async fn dispatch(State(banks): State<Arc<Banks>>, mut request: Request) -> Response {
    let path = request.uri().path();
    let Some(rest) = path.strip_prefix("/banks/") else {
        return not_found(format!(
            "no such path {path:?}: banks are under /banks/{{id}}"
        ));
    };
    let (id, inner) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(bank) = banks.by_id.get(id) else {
        return not_found(format!("no bank {id:?} in this fleet"));
    };
    let inner = if inner.is_empty() { "/" } else { inner };
    let target = match request.uri().query() {
        Some(query) => format!("{inner}?{query}"),
        None => inner.to_owned(),
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "unusable request path").into_response();
    };
    *request.uri_mut() = uri;
    match bank.router().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
