//! The mixed workload: workers run an enforcement case's steps one after
//! another, the whole time, whatever the faults:
//! - inquiries (every agency: two banks, a registry that is polled and the
//!   same registry pushing its results), waited for or not;
//! - a freeze on an account an inquiry found, then perhaps a renewal, a
//!   deduction and a release;
//! - a freeze plan over everything an inquiry found;
//! - a seal of a flat, perhaps released;
//! - a freeze of an account another court froze whole (it waits in line),
//!   then its release.
//!
//! Everything the gateway accepted is written down for the final checks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use mock_agencies::fixtures;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

use crate::client::{Answer, Api};

/// A subject the mock agencies know.
#[derive(Debug, Clone)]
pub struct Subject {
    pub body: Value,
    pub has_units: bool,
}

/// What the client saw accepted, for the final checks.
#[derive(Debug, Default)]
pub struct Seen {
    /// Inquiry ids answered 200 or 202.
    pub inquiries: BTreeSet<String>,
    /// Idempotency-Key → every order id answered for it.
    pub orders: BTreeMap<String, BTreeSet<String>>,
    /// Idempotency-Key → every plan id answered for it.
    pub plans: BTreeMap<String, BTreeSet<String>>,
    /// Steps run, by name.
    pub steps: BTreeMap<&'static str, u64>,
    /// Requests refused with a 4xx, by status and code (expected ones:
    /// a deduction larger than what is left, a release on its way ...).
    pub refusals: BTreeMap<String, u64>,
    /// Waits that ran out (a status not reached in time): not failures of
    /// the gateway by themselves, the final checks judge.
    pub waits_timed_out: u64,
    /// The client's own counts (attempts, retries, answers given up on).
    pub client: BTreeMap<&'static str, u64>,
}

pub struct Workload {
    pub api: Api,
    pub seen: Mutex<Seen>,
    subjects: Vec<Subject>,
    with_units: Vec<Subject>,
    today: NaiveDate,
    serial: AtomicU64,
    stop_at: Instant,
}

fn officers() -> Value {
    json!([
        {"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"},
        {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"},
    ])
}

fn documents() -> Value {
    json!([
        {"kind": "ruling", "number": "(2024)甘0503执1234号之一", "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
        {"kind": "assist_notice", "number": "协冻-1", "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
    ])
}

fn person(name: &str, id: &str) -> Value {
    json!({"kind": "person", "name": name, "id_number": id})
}

fn decided(order: &Value) -> bool {
    !matches!(
        order["status"].as_str(),
        Some("accepted" | "dispatched") | None
    )
}

/// Subjects with holdings at the mocks, read from their ledgers: persons
/// and organisations with accounts, and which of them own a flat.
pub async fn subjects(
    http: &reqwest::Client,
    mocks: &crate::setup::Mocks,
) -> anyhow::Result<Vec<Subject>> {
    let mut found: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for bank in ["bank-a", "bank-b"] {
        let ledger: Value = http
            .get(format!("{}/_mock/ledger", mocks.url(bank)?))
            .send()
            .await?
            .json()
            .await?;
        for a in ledger["accounts"].as_array().into_iter().flatten() {
            if let (Some(id), Some(name)) = (a["holder_id"].as_str(), a["holder_name"].as_str()) {
                found
                    .entry(id.to_owned())
                    .or_insert((name.to_owned(), false));
            }
        }
    }
    let registry: Value = http
        .get(format!("{}/_mock/ledger", mocks.url("registry-x")?))
        .send()
        .await?
        .json()
        .await?;
    for u in registry["units"].as_array().into_iter().flatten() {
        if let (Some(id), Some(name)) = (u["holder_id"].as_str(), u["holder_name"].as_str()) {
            found
                .entry(id.to_owned())
                .or_insert((name.to_owned(), false))
                .1 = true;
        }
    }
    let subjects: Vec<Subject> = found
        .into_iter()
        .filter_map(|(id, (name, has_units))| {
            let body = if adapters::ids::IdNumber::parse(&id).is_ok() {
                person(&name, &id)
            } else if adapters::ids::CreditCode::parse(&id).is_ok() {
                json!({"kind": "organization", "name": name, "credit_code": id})
            } else {
                return None;
            };
            Some(Subject { body, has_units })
        })
        .collect();
    anyhow::ensure!(
        subjects.len() > 100,
        "the mocks' ledgers name only {} subjects",
        subjects.len()
    );
    Ok(subjects)
}

impl Workload {
    pub fn new(api: Api, subjects: Vec<Subject>, today: NaiveDate, stop_at: Instant) -> Self {
        let with_units = subjects.iter().filter(|s| s.has_units).cloned().collect();
        Self {
            api,
            seen: Mutex::default(),
            subjects,
            with_units,
            today,
            serial: AtomicU64::new(1),
            stop_at,
        }
    }

    fn note(&self, f: impl FnOnce(&mut Seen)) {
        match self.seen.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn next(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }

    fn case(&self) -> String {
        format!("({})甘0503执{}号", self.today.format("%Y"), self.next())
    }

    fn key(&self, what: &str) -> String {
        format!("chaos-{what}-{}", self.next())
    }

    fn refused(&self, what: &str, status: reqwest::StatusCode, body: &Value) {
        let code = body["error"]["code"].as_str().unwrap_or("-").to_owned();
        self.note(|s| {
            *s.refusals
                .entry(format!("{what} {} {code}", status.as_u16()))
                .or_default() += 1
        });
    }

    /// One worker: steps until the workload's end.
    pub async fn run_worker(&self, seed: u64) {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
        while Instant::now() < self.stop_at {
            let roll = rng.random_range(0..100);
            let step: &'static str = match roll {
                0..25 => "inquiry",
                25..60 => "freeze",
                60..75 => "plan",
                75..90 => "seal",
                _ => "waiting",
            };
            self.note(|s| *s.steps.entry(step).or_default() += 1);
            match step {
                "inquiry" => {
                    let subject = self.pick(&mut rng, false);
                    let wait = if rng.random_bool(0.5) { 5 } else { 0 };
                    let _ = self.inquire(&subject, &self.case(), wait, false).await;
                }
                "freeze" => self.freeze_life(&mut rng).await,
                "plan" => self.plan(&mut rng).await,
                "seal" => self.seal_life(&mut rng).await,
                _ => self.waiting(&mut rng).await,
            }
        }
    }

    fn pick(&self, rng: &mut impl Rng, with_units: bool) -> Value {
        let pool = if with_units && !self.with_units.is_empty() {
            &self.with_units
        } else {
            &self.subjects
        };
        pool.choose(rng)
            .map(|s| s.body.clone())
            .unwrap_or_else(|| person(fixtures::LI_SI_NAME, fixtures::LI_SI_ID))
    }

    /// An inquiry; with `complete`, waits until it has completed.
    async fn inquire(
        &self,
        subject: &Value,
        case: &str,
        wait: u64,
        complete: bool,
    ) -> Option<Value> {
        let body =
            json!({"case_number": case, "subject": subject, "officers": [officers()[0].clone()]});
        let answer = self
            .api
            .post(&format!("/v1/inquiries?wait={wait}"), None, &body)
            .await;
        let inquiry = match answer {
            Answer::Got(s, v) if s.is_success() => v,
            Answer::Got(s, v) => {
                self.refused("inquiry", s, &v);
                return None;
            }
            Answer::GaveUp => return None,
        };
        let id = inquiry["id"].as_str()?.to_owned();
        self.note(|s| {
            s.inquiries.insert(id.clone());
        });
        if !complete || inquiry["status"] == "completed" {
            return Some(inquiry);
        }
        self.wait(
            &format!("/v1/inquiries/{id}"),
            Duration::from_secs(150),
            |v| v["status"] == "completed",
        )
        .await
    }

    async fn wait(
        &self,
        path: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let found = self.api.wait_until(path, within, done).await;
        if found.is_none() {
            self.note(|s| s.waits_timed_out += 1);
        }
        found
    }

    /// An order under a new key; the stored order once decided.
    async fn order(&self, body: Value) -> Option<Value> {
        let key = self.key("order");
        let answer = self.api.post("/v1/orders", Some(&key), &body).await;
        let order = match answer {
            Answer::Got(s, v) if s.is_success() => v,
            Answer::Got(s, v) => {
                self.refused(body["action"].as_str().unwrap_or("order"), s, &v);
                return None;
            }
            Answer::GaveUp => return None,
        };
        let id = order["id"].as_str()?.to_owned();
        self.note(|s| {
            s.orders.entry(key).or_default().insert(id.clone());
        });
        self.wait(
            &format!("/v1/orders/{id}"),
            Duration::from_secs(150),
            decided,
        )
        .await
    }

    fn follow_up(&self, first: &Value, subject: &Value, case: &str, action: &str) -> Value {
        json!({
            "case_number": case, "subject": subject, "officers": officers(),
            "action": action, "prior_order": first["id"], "documents": documents(),
        })
    }

    async fn freeze_life(&self, rng: &mut (impl Rng + Send)) {
        let subject = self.pick(rng, false);
        let case = self.case();
        let Some(inquiry) = self.inquire(&subject, &case, 10, true).await else {
            return;
        };
        let accounts: Vec<&Value> = inquiry["assets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| {
                a["kind"] == "bank_account"
                    && a["currency"] == "CNY"
                    && a["available_fen"].as_i64().unwrap_or(0) > 0
            })
            .collect();
        let Some(account) = accounts.choose(rng) else {
            return;
        };
        let available = account["available_fen"].as_i64().unwrap_or(1);
        let amount = rng.random_range(1..=available.min(200_000));
        let end = self.today + Days::new(rng.random_range(30..300));
        let body = json!({
            "case_number": case, "subject": subject, "officers": officers(),
            "action": "freeze", "agency": account["agency"], "asset": {"account_number": account["account_number"]},
            "amount_fen": amount, "end_date": end.to_string(), "documents": documents(),
        });
        let Some(freeze) = self.order(body).await else {
            return;
        };
        if !matches!(freeze["status"].as_str(), Some("applied" | "partial")) {
            return;
        }
        if rng.random_bool(0.4) {
            let mut renew = self.follow_up(&freeze, &subject, &case, "renew");
            renew["end_date"] = (end + Days::new(30)).to_string().into();
            let _ = self.order(renew).await;
        }
        if rng.random_bool(0.4) {
            let controlled = freeze["controlled_fen"].as_i64().unwrap_or(1);
            let mut deduct = self.follow_up(&freeze, &subject, &case, "deduct");
            deduct["amount_fen"] = (controlled / 3).max(1).into();
            let _ = self.order(deduct).await;
        }
        if rng.random_bool(0.6) {
            let _ = self
                .order(self.follow_up(&freeze, &subject, &case, "release"))
                .await;
        }
    }

    async fn plan(&self, rng: &mut (impl Rng + Send)) {
        let subject = self.pick(rng, false);
        let case = self.case();
        let Some(inquiry) = self.inquire(&subject, &case, 10, true).await else {
            return;
        };
        let available: i64 = inquiry["assets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["available_fen"].as_i64())
            .sum();
        if available <= 0 {
            return;
        }
        // Sometimes more than the accounts hold, sometimes less.
        let amount = ((available as f64) * rng.random_range(0.2..1.5)).max(1.0) as i64;
        let key = self.key("plan");
        let body = json!({
            "case_number": case, "subject": subject, "officers": officers(), "inquiry": inquiry["id"],
            "amount_fen": amount, "end_date": (self.today + Days::new(180)).to_string(), "documents": documents(),
        });
        let plan = match self.api.post("/v1/freeze-plans", Some(&key), &body).await {
            Answer::Got(s, v) if s.is_success() => v,
            Answer::Got(s, v) => return self.refused("plan", s, &v),
            Answer::GaveUp => return,
        };
        let Some(id) = plan["id"].as_str().map(str::to_owned) else {
            return;
        };
        self.note(|s| {
            s.plans.entry(key).or_default().insert(id.clone());
        });
        let _ = self
            .wait(
                &format!("/v1/freeze-plans/{id}"),
                Duration::from_secs(300),
                |v| v["status"] != "running",
            )
            .await;
    }

    async fn seal_life(&self, rng: &mut (impl Rng + Send)) {
        let subject = self.pick(rng, true);
        let case = self.case();
        let Some(inquiry) = self.inquire(&subject, &case, 10, true).await else {
            return;
        };
        let units: Vec<&Value> = inquiry["assets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["kind"] == "real_estate" && a["agency"] == "registry-x")
            .collect();
        let Some(unit) = units.choose(rng) else {
            return;
        };
        let body = json!({
            "case_number": case, "subject": subject, "officers": officers(),
            "action": "seal", "agency": "registry-x", "asset": {"unit_number": unit["unit_number"]},
            "end_date": (self.today + Days::new(rng.random_range(100..1000))).to_string(), "documents": documents(),
        });
        let Some(seal) = self.order(body).await else {
            return;
        };
        if matches!(
            seal["status"].as_str(),
            Some("applied" | "partial" | "waiting")
        ) && rng.random_bool(0.5)
        {
            let _ = self
                .order(self.follow_up(&seal, &subject, &case, "release_seal"))
                .await;
        }
    }

    /// A freeze of 李四's debit card, which another court froze whole: it
    /// waits in line; then it is released.
    async fn waiting(&self, rng: &mut (impl Rng + Send)) {
        let subject = person(fixtures::LI_SI_NAME, fixtures::LI_SI_ID);
        let case = self.case();
        let body = json!({
            "case_number": case, "subject": subject, "officers": officers(),
            "action": "freeze", "agency": "bank-a", "asset": {"account_number": fixtures::LI_SI_BANK_A_DEBIT_ACCOUNT},
            "amount_fen": rng.random_range(100..=50_000), "end_date": (self.today + Days::new(200)).to_string(),
            "documents": documents(),
        });
        let Some(freeze) = self.order(body).await else {
            return;
        };
        if freeze["status"] == "waiting" && rng.random_bool(0.7) {
            let _ = self
                .order(self.follow_up(&freeze, &subject, &case, "release"))
                .await;
        }
    }
}
