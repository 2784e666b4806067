//! The checks at the end, once the system has settled: what the client saw,
//! what the gateway stored, what the mock agencies' own ledgers say they
//! received and applied, what the callback endpoint received, the audit
//! chain and the logs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::receiver::Received;
use crate::setup::Database;
use crate::workload::Seen;

/// One check: its name, what was counted, and what went wrong (empty when
/// it passed).
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub counted: String,
    pub problems: Vec<String>,
}

impl Check {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            counted: String::new(),
            problems: Vec::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    fn fail(&mut self, problem: String) {
        self.problems.push(problem);
    }
}

pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

macro_rules! fetch {
    ($db:expr, $ty:ty, $sql:expr) => {
        match $db {
            Db::Sqlite(p) => sqlx::query_as::<_, $ty>($sql).fetch_all(p).await,
            Db::Pg(p) => sqlx::query_as::<_, $ty>($sql).fetch_all(p).await,
        }
    };
}

impl Db {
    pub async fn open(database: &Database) -> anyhow::Result<Self> {
        Ok(match database {
            Database::Sqlite { file, .. } => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(file)
                    .read_only(true);
                Db::Sqlite(sqlx::SqlitePool::connect_with(options).await?)
            }
            Database::Postgres { url, .. } => Db::Pg(sqlx::PgPool::connect(url).await?),
        })
    }

    async fn count(&self, sql: &'static str) -> anyhow::Result<i64> {
        let rows = fetch!(self, (i64,), sql)?;
        Ok(rows.first().map_or(0, |r| r.0))
    }

    /// What is still moving: inquiries running, orders undecided, plans
    /// running, callbacks undelivered.
    pub async fn unsettled(&self) -> anyhow::Result<[i64; 4]> {
        Ok([
            self.count("SELECT COUNT(*) FROM inquiries WHERE status <> 'completed'").await?,
            self.count("SELECT COUNT(*) FROM orders WHERE status IN ('accepted', 'dispatched')").await?,
            self.count("SELECT COUNT(*) FROM freeze_plans WHERE status = 'running'").await?,
            self.count("SELECT COUNT(*) FROM outbox WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL").await?,
        ])
    }
}

/// Waits until nothing is moving, or `within` passes; what was left.
pub async fn settle(db: &Db, within: Duration) -> anyhow::Result<[i64; 4]> {
    let deadline = Instant::now() + within;
    loop {
        let left = db.unsettled().await?;
        if left == [0; 4] || Instant::now() > deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

type OrderRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
);

#[derive(Debug)]
struct Order {
    id: String,
    key: String,
    action: String,
    rn: String,
    status: String,
    plan: Option<String>,
    controlled: Option<i64>,
}

/// Everything the checks read, gathered once.
pub struct Evidence {
    pub seen: Seen,
    pub received: Received,
    /// Agency id → its `/_mock/ledger`.
    pub ledgers: BTreeMap<String, Value>,
    pub logs: Vec<PathBuf>,
    pub verify: (bool, String),
    pub server_errors: (u64, Vec<String>),
    pub disk_full: Option<crate::faults::DiskFull>,
    /// SIGKILLs planned, and done.
    pub kills: (u32, u32),
}

pub async fn run(db: &Db, ev: &Evidence) -> anyhow::Result<Vec<Check>> {
    let orders: Vec<Order> = fetch!(
        db,
        OrderRow,
        "SELECT id, idempotency_key, action, request_number, status, plan_id, controlled_fen FROM orders"
    )?
    .into_iter()
    .map(|r| Order { id: r.0, key: r.1, action: r.2, rn: r.3, status: r.4, plan: r.5, controlled: r.6 })
    .collect();
    let by_rn: HashMap<&str, &str> = orders
        .iter()
        .map(|o| (o.rn.as_str(), o.id.as_str()))
        .collect();
    let by_id: HashMap<&str, &Order> = orders.iter().map(|o| (o.id.as_str(), o)).collect();
    let plans: Vec<(String, String, i64, String)> = fetch!(
        db,
        (String, String, i64, String),
        "SELECT id, idempotency_key, amount_fen, status FROM freeze_plans"
    )?;
    let inquiries: Vec<(String, String)> =
        fetch!(db, (String, String), "SELECT id, status FROM inquiries")?;
    let tasks: Vec<(String, String, String)> = fetch!(
        db,
        (String, String, String),
        "SELECT inquiry_id, agency, state FROM agency_tasks"
    )?;
    let outbound: Vec<(String,)> = fetch!(
        db,
        (String,),
        "SELECT DISTINCT request_number FROM audit_events WHERE direction = 'outbound' AND request_number IS NOT NULL"
    )?;
    let audited: BTreeSet<&str> = outbound.iter().map(|r| r.0.as_str()).collect();
    let failed_callbacks = db
        .count("SELECT COUNT(*) FROM outbox WHERE failed_at_ms IS NOT NULL")
        .await?;

    let mut checks = Vec::new();

    // Every request the client saw accepted exists, exactly once.
    let mut c = Check::new("accepted requests exist exactly once");
    let inquiry_ids: BTreeSet<&str> = inquiries.iter().map(|i| i.0.as_str()).collect();
    for id in &ev.seen.inquiries {
        if !inquiry_ids.contains(id.as_str()) {
            c.fail(format!("inquiry {id} was accepted but is not stored"));
        }
    }
    for (key, ids) in &ev.seen.orders {
        if ids.len() != 1 {
            c.fail(format!(
                "Idempotency-Key {key} answered with several orders: {ids:?}"
            ));
        }
        for id in ids {
            match by_id.get(id.as_str()) {
                Some(o) if &o.key == key => {}
                Some(o) => c.fail(format!(
                    "order {id} is stored under the key {}, not {key}",
                    o.key
                )),
                None => c.fail(format!("order {id} was accepted but is not stored")),
            }
        }
    }
    let plan_ids: HashMap<&str, &str> =
        plans.iter().map(|p| (p.0.as_str(), p.1.as_str())).collect();
    for (key, ids) in &ev.seen.plans {
        if ids.len() != 1 {
            c.fail(format!(
                "Idempotency-Key {key} answered with several plans: {ids:?}"
            ));
        }
        for id in ids {
            match plan_ids.get(id.as_str()) {
                Some(k) if k == key => {}
                _ => c.fail(format!(
                    "plan {id} (key {key}) was accepted but is not stored under its key"
                )),
            }
        }
    }
    c.counted = format!(
        "{} inquiries, {} orders, {} plans seen accepted; stored: {} inquiries, {} orders ({} by plans), {} plans",
        ev.seen.inquiries.len(),
        ev.seen.orders.len(),
        ev.seen.plans.len(),
        inquiries.len(),
        orders.len(),
        orders.iter().filter(|o| o.plan.is_some()).count(),
        plans.len()
    );
    checks.push(c);

    // The log and the stored requests agree both ways, whatever the kills
    // interrupted: an acceptance and its request are committed together.
    let mut c = Check::new("every acceptance in the log names a stored request, and each its row");
    let acceptances: Vec<(String, String)> = fetch!(
        db,
        (String, String),
        "SELECT action, inquiry_id FROM audit_events WHERE direction = 'inbound' \
         AND status = 'accepted' AND inquiry_id IS NOT NULL \
         AND action IN ('inquiry.create', 'order.create', 'freeze_plan.create')"
    )?;
    let mut logged: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (action, id) in &acceptances {
        logged.insert((action.as_str(), id.as_str()));
        let stored = match action.as_str() {
            "inquiry.create" => inquiry_ids.contains(id.as_str()),
            "order.create" => by_id.contains_key(id.as_str()),
            _ => plan_ids.contains_key(id.as_str()),
        };
        if !stored {
            c.fail(format!(
                "the log accepted {action} {id}, which was never stored"
            ));
        }
    }
    for id in &inquiry_ids {
        if !logged.contains(&("inquiry.create", id)) {
            c.fail(format!("inquiry {id} is stored without its acceptance row"));
        }
    }
    for o in orders.iter().filter(|o| o.plan.is_none()) {
        if !logged.contains(&("order.create", o.id.as_str())) {
            c.fail(format!(
                "order {} is stored without its acceptance row",
                o.id
            ));
        }
    }
    for id in plan_ids.keys() {
        if !logged.contains(&("freeze_plan.create", id)) {
            c.fail(format!("plan {id} is stored without its acceptance row"));
        }
    }
    c.counted = format!("{} acceptance rows", acceptances.len());
    checks.push(c);

    // Every inquiry completed, with a status for each agency.
    let mut c = Check::new("every inquiry completed, a status for each agency");
    let mut per_inquiry: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for (inq, agency, state) in &tasks {
        per_inquiry
            .entry(inq.as_str())
            .or_default()
            .push((agency.as_str(), state.as_str()));
    }
    let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
    for (id, status) in &inquiries {
        if status != "completed" {
            c.fail(format!("inquiry {id} is {status}"));
        }
        let tasks = per_inquiry.get(id.as_str()).cloned().unwrap_or_default();
        if tasks.len() != 4 {
            c.fail(format!("inquiry {id} has {} agencies, not 4", tasks.len()));
        }
        for (agency, state) in tasks {
            *by_state.entry(state).or_default() += 1;
            if matches!(state, "queued" | "polling" | "awaiting") {
                c.fail(format!("inquiry {id}: {agency} is still {state}"));
            }
        }
    }
    c.counted = format!(
        "{} inquiries; agency answers by state {by_state:?}",
        inquiries.len()
    );
    checks.push(c);

    // Control orders: final, and applied exactly once per the agencies'
    // own ledgers.
    let mut final_check = Check::new("every control order in a final state");
    let mut statuses: BTreeMap<&str, u64> = BTreeMap::new();
    let mut actions: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &orders {
        *statuses.entry(o.status.as_str()).or_default() += 1;
        *actions.entry(o.action.as_str()).or_default() += 1;
        if matches!(o.status.as_str(), "accepted" | "dispatched") {
            final_check.fail(format!(
                "order {} ({}) is still {}",
                o.id, o.action, o.status
            ));
        }
    }
    final_check.counted = format!("{} orders {actions:?}: {statuses:?}", orders.len());
    checks.push(final_check);

    let mut once = Check::new("every control applied once at its agency, none without an order");
    let mut receipts = Check::new("every control message received once (received_count)");
    let mut at_agencies: HashMap<String, &Value> = HashMap::new();
    let mut mock_requests: Vec<(String, String, &Value)> = Vec::new();
    for (agency, ledger) in &ev.ledgers {
        for control in ledger["controls"].as_array().into_iter().flatten() {
            let rn = control["request_number"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if at_agencies.insert(rn.clone(), control).is_some() {
                once.fail(format!("{agency}: request number {rn} decided twice"));
            }
            if !by_rn.contains_key(rn.as_str()) {
                once.fail(format!(
                    "{agency} applied {rn}, which no order of the gateway has"
                ));
            }
            let received = control["received_count"].as_u64().unwrap_or(0);
            if received != 1 {
                receipts.fail(format!(
                    "{agency} received control {rn} ({}) {received} times",
                    by_rn.get(rn.as_str()).unwrap_or(&"?")
                ));
            }
        }
        for r in ledger["requests"].as_array().into_iter().flatten() {
            let kind = r["kind"].as_str().unwrap_or_default().to_owned();
            if kind != "callback" {
                mock_requests.push((agency.clone(), kind, r));
            }
        }
    }
    let mut with_agency = 0;
    for o in &orders {
        let rn = o.rn.as_str();
        let at_agency = at_agencies.get(rn);
        let agency_decided = matches!(
            o.status.as_str(),
            "applied" | "partial" | "waiting" | "released" | "expired"
        );
        match (agency_decided, at_agency) {
            (true, None) => once.fail(format!(
                "order {} is {} but its agency has no record of {rn}",
                o.id, o.status
            )),
            (_, Some(_)) if o.status == "failed" => {
                once.fail(format!(
                    "order {} failed at the gateway, but its agency applied {rn}",
                    o.id
                ));
            }
            (_, Some(control)) => {
                with_agency += 1;
                // A freeze or seal in force: the gateway's amount is the agency's.
                if matches!(o.status.as_str(), "applied" | "partial") && o.action == "freeze" {
                    let at_bank: i64 = control["results"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["controlled_fen"].as_i64())
                        .sum();
                    if o.controlled != Some(at_bank) {
                        once.fail(format!(
                            "order {} controls {:?} per the gateway, {at_bank} per its bank",
                            o.id, o.controlled
                        ));
                    }
                }
            }
            (false, None) => {}
        }
    }
    once.counted = format!(
        "{} controls at the agencies, {with_agency} orders matched to one",
        at_agencies.len()
    );
    receipts.counted = format!(
        "{} control messages; {} status queries",
        at_agencies.len(),
        mock_requests
            .iter()
            .filter(|r| r.1 == "control_query")
            .count()
    );
    checks.push(once);
    checks.push(receipts);

    // No plan controls more than its amount, per the ledgers.
    let mut c = Check::new("no freeze plan controls more than its amount");
    let mut plan_totals: HashMap<&str, i64> = HashMap::new();
    for o in orders.iter().filter(|o| o.action == "freeze") {
        if let Some(plan) = &o.plan {
            let rn = o.rn.as_str();
            let at_bank: i64 = at_agencies
                .get(rn)
                .map(|c| {
                    c["results"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["controlled_fen"].as_i64())
                        .sum()
                })
                .unwrap_or(0);
            *plan_totals.entry(plan.as_str()).or_default() += at_bank;
        }
    }
    let mut plan_status: BTreeMap<&str, u64> = BTreeMap::new();
    for (id, _, amount, status) in &plans {
        *plan_status.entry(status.as_str()).or_default() += 1;
        let total = plan_totals.get(id.as_str()).copied().unwrap_or(0);
        if total > *amount {
            c.fail(format!(
                "plan {id} of {amount} fen controls {total} fen at the banks"
            ));
        }
    }
    c.counted = format!(
        "{} plans {plan_status:?}, {} fen controlled by them in all",
        plans.len(),
        plan_totals.values().sum::<i64>()
    );
    checks.push(c);

    // Callbacks: every event that happened arrived, and none that did not.
    let mut c = Check::new("every callback arrived, none that did not happen");
    let r = &ev.received;
    let mut got: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
    for e in r.events.values() {
        got.entry((e.event.as_str(), e.resource_id.as_str()))
            .or_default()
            .insert(e.status.as_str());
    }
    let mut expected = 0;
    for (id, status) in &inquiries {
        if status == "completed" {
            expected += 1;
            if !got.contains_key(&("inquiry.completed", id.as_str())) {
                c.fail(format!("no inquiry.completed for {id}"));
            }
        }
    }
    for o in &orders {
        if !matches!(o.status.as_str(), "accepted" | "dispatched") {
            expected += 1;
            let statuses = got.get(&("order.updated", o.id.as_str()));
            if !statuses.is_some_and(|s| s.contains(o.status.as_str())) {
                c.fail(format!(
                    "no order.updated for {} as {} (got {statuses:?})",
                    o.id, o.status
                ));
            }
        }
    }
    for (id, _, _, status) in &plans {
        if status != "running" {
            expected += 1;
            let statuses = got.get(&("freeze_plan.completed", id.as_str()));
            if !statuses.is_some_and(|s| s.contains(status.as_str())) {
                c.fail(format!(
                    "no freeze_plan.completed for {id} as {status} (got {statuses:?})"
                ));
            }
        }
    }
    let plan_status_of: HashMap<&str, &str> =
        plans.iter().map(|p| (p.0.as_str(), p.3.as_str())).collect();
    for e in r.events.values() {
        let ok = match e.event.as_str() {
            "inquiry.completed" => {
                inquiry_ids.contains(e.resource_id.as_str()) && e.status == "completed"
            }
            "order.updated" => by_id.get(e.resource_id.as_str()).is_some_and(|o| {
                e.status == o.status
                    || (matches!(
                        o.status.as_str(),
                        "released" | "expired" | "applied" | "partial"
                    ) && matches!(e.status.as_str(), "applied" | "partial" | "waiting"))
            }),
            "freeze_plan.completed" => {
                plan_status_of.get(e.resource_id.as_str()) == Some(&e.status.as_str())
            }
            "order.expiring" | "order.expired" => by_id.contains_key(e.resource_id.as_str()),
            _ => false,
        };
        if !ok {
            c.fail(format!(
                "{} for {} as {} did not happen",
                e.event, e.resource_id, e.status
            ));
        }
    }
    if r.bad_signatures > 0 {
        c.fail(format!(
            "{} deliveries had a bad signature",
            r.bad_signatures
        ));
    }
    if r.bad_bodies > 0 {
        c.fail(format!(
            "{} deliveries had a bad body or headers",
            r.bad_bodies
        ));
    }
    if failed_callbacks > 0 {
        c.fail(format!(
            "{failed_callbacks} callbacks given up by the gateway"
        ));
    }
    c.counted = format!(
        "{expected} events expected; {} distinct deliveries received, {} repeats dropped, {} refused on purpose (503) and retried",
        r.events.len(),
        r.repeats,
        r.refused_on_purpose
    );
    checks.push(c);

    // The audit chain verifies.
    let mut c = Check::new("gateway audit verify");
    c.counted = ev.verify.1.lines().last().unwrap_or_default().to_owned();
    if !ev.verify.0 {
        c.fail(ev.verify.1.clone());
    }
    checks.push(c);

    // Every message a mock received has its outbound audit row.
    let mut c = Check::new("every message an agency received has its audit row");
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (agency, kind, r) in &mock_requests {
        let rn = r["request_number"].as_str().unwrap_or_default();
        *kinds.entry(kind.clone()).or_default() += r["count"].as_u64().unwrap_or(1);
        if !audited.contains(rn) {
            c.fail(format!(
                "{agency} received {kind} {rn} with no outbound audit row"
            ));
        }
    }
    c.counted = format!(
        "{} request numbers, messages by kind {kinds:?}",
        mock_requests.len()
    );
    checks.push(c);

    // The disk-full fault: 503, nothing sent unrecorded, recovery.
    if let Some(d) = &ev.disk_full {
        let mut c = Check::new("disk full: 503, nothing sent unrecorded, recovery");
        if let Some(e) = &d.error {
            c.fail(format!("the disk was not filled: {e}"));
        }
        if d.answered_503 == 0 {
            c.fail("the gateway never answered 503 while its disk was full".into());
        }
        if d.answered_other.iter().any(|s| *s >= 500 && *s != 503) {
            c.fail(format!(
                "answers other than 503 while full: {:?}",
                d.answered_other
            ));
        }
        if d.recovered_after_secs.is_none() {
            c.fail("the gateway did not accept work again once space was back".into());
        }
        let sent_while_full = match (d.full_from, d.freed_at) {
            (Some(from), Some(to)) => mock_requests
                .iter()
                .filter(|(_, _, r)| {
                    r["last_received_at"]
                        .as_str()
                        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                        .is_some_and(|t| t > from && t < to)
                })
                .count(),
            _ => 0,
        };
        c.counted = format!(
            "{} probes answered 503 while full (others: {:?}); {sent_while_full} request numbers reached an agency while full (each audited, above); accepting again {:.1} s after space came back",
            d.answered_503,
            d.answered_other,
            d.recovered_after_secs.unwrap_or(f64::NAN)
        );
        checks.push(c);
    }

    // The API never answered 5xx but 503.
    let mut c = Check::new("no 500 (or any 5xx but 503) answered");
    c.counted = format!("{} such answers", ev.server_errors.0);
    for s in &ev.server_errors.1 {
        c.fail(s.clone());
    }
    if ev.server_errors.0 > 0 && ev.server_errors.1.is_empty() {
        c.fail(format!("{} such answers", ev.server_errors.0));
    }
    checks.push(c);

    // The run did what it is for: a check over nothing proves nothing.
    let mut c = Check::new("the run exercised every path");
    let mut missing = Vec::new();
    for action in [
        "freeze",
        "renew",
        "deduct",
        "release",
        "seal",
        "release_seal",
    ] {
        if actions.get(action).copied().unwrap_or(0) == 0 {
            missing.push(format!("no {action} order"));
        }
    }
    if statuses.get("waiting").copied().unwrap_or(0) == 0 {
        missing.push("no order waited in line".into());
    }
    if orders.iter().all(|o| o.plan.is_none()) {
        missing.push("no plan placed a freeze".into());
    }
    if !tasks
        .iter()
        .any(|(_, agency, state)| agency == "registry-y" && state == "answered")
    {
        missing.push("no inquiry answered by a push".into());
    }
    if !tasks
        .iter()
        .any(|(_, agency, state)| agency == "registry-x" && state == "answered")
    {
        missing.push("no inquiry answered by polling".into());
    }
    if !mock_requests
        .iter()
        .any(|(_, kind, _)| kind == "control_query")
    {
        missing.push("no order was ever in doubt".into());
    }
    if r.events.is_empty() {
        missing.push("no callback".into());
    }
    if ev.kills.1 < ev.kills.0 {
        missing.push(format!("{} of {} kills done", ev.kills.1, ev.kills.0));
    }
    c.counted = if missing.is_empty() {
        format!(
            "every action, waiting, plans, pushed and polled answers, orders in doubt, callbacks; {} kills",
            ev.kills.1
        )
    } else {
        missing.join("; ")
    };
    for m in missing {
        c.fail(m);
    }
    checks.push(c);

    // No panic in any log.
    let mut c = Check::new("no panic in the logs");
    for log in &ev.logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("panicked")) {
            c.fail(format!("{}: {line}", log.display()));
        }
    }
    c.counted = format!("{} log files", ev.logs.len());
    checks.push(c);
    Ok(checks)
}
