//! The store's scenarios, run on both backends by the same code: against a
//! SQLite file always (`sqlite::*`), and against PostgreSQL (`postgres::*`)
//! when `TEST_DATABASE_URL` names a server, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`. Each PostgreSQL test creates
//! its own database there (`gw_test_<uuid>`) and drops it at the end, so the
//! tests run in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use adapters::control::{ControlAction, DocumentAck, DocumentRef};
use adapters::ids::IdNumber;
use adapters::model::{Asset, AssetKind, BankAccount, Court, Fen, Officer, Subject};
use gateway::audit::{
    AuditFilter, AuditRecord, Direction, GENESIS_HASH, StoredAuditEvent, row_hash,
};
use gateway::store::{
    self, Checkpoint, Created, InquiryRecord, InquiryStatus, MeasureEffect, NewAuditRow,
    NewInquiry, OrderPhase, OrderProgress, OrderRecord, OrderStatus, OutboxOutcome, OutboxRecord,
    PlanProgress, PlanRecord, PlanStatus, Store, StoreError, TaskLease, TaskResult, TaskState,
    TaskUpdate, Window,
};
use gateway::store::{PlanAccount, PlanAccounts, SkippedAccount};
use sha2::{Digest, Sha256};

/// A fixed "now": the store never reads the clock itself.
const NOW: i64 = 1_714_000_000_000;
/// A lease nobody outlives in a test.
const FAR: i64 = NOW + 3_600_000;

// ---------------------------------------------------------------------------
// Databases

/// One database for one test: a temporary SQLite file, or a fresh
/// PostgreSQL database dropped when this is.
struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    /// The server's URL and the database made on it.
    pg: Option<(String, String)>,
}

impl TestDb {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        Self {
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh database on the server `TEST_DATABASE_URL` names, or None
    /// (with a notice) when it is not set.
    async fn postgres() -> Option<Self> {
        let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("skipping PostgreSQL: TEST_DATABASE_URL is not set");
            return None;
        };
        gateway::install_crypto_provider();
        let name = format!("gw_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = sqlx::Connection::close(admin).await;
        Some(Self {
            url: with_database(&server, &name),
            _dir: None,
            pg: Some((server, name)),
        })
    }

    /// A new handle (its own pool) on the database, as another gateway
    /// would open it.
    async fn open(&self) -> Arc<dyn Store> {
        store::open(&self.url).await.expect("open the store")
    }
}

impl Drop for TestDb {
    /// Drops the PostgreSQL database, best-effort (also when the test
    /// panicked), on a thread of its own: `Drop` cannot await.
    fn drop(&mut self) {
        let Some((server, name)) = self.pg.take() else {
            return;
        };
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
                    .await
                    .ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                sqlx::Connection::close(admin).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop a test database (best-effort)");
        }
    }
}

/// The server URL with its database replaced by `name` (query kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Each scenario becomes `sqlite::<name>` and `postgres::<name>`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let db = super::TestDb::sqlite();
                    super::$scenario(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let Some(db) = super::TestDb::postgres().await else {
                        return;
                    };
                    super::$scenario(&db).await;
                }
            )*
        }
    };
}

on_both_backends!(
    inquiry_round_trip,
    concurrent_claimants_never_share_work,
    concurrent_appends_keep_one_chain,
    audit_filters_checkpoints_and_retention,
    auditor_questions,
    orders_idempotency_and_effects,
    order_expiry_and_warnings,
    plans_and_outbox,
    batched_task_results,
    inquiries_stored_with_their_tasks_claimed,
    inquiries_stored_together,
    audit_follows_rows_another_handle_appended,
    decisions_take_turns_by_key,
    records_keep_their_column_text,
    an_auditor_query_does_not_hold_up_the_journal,
    a_completion_queues_its_callback_in_its_transaction,
    an_order_outcome_is_never_stored_without_its_answer_row,
    batches_store_their_subjects_with_the_batch_row,
    a_cases_reads,
);

/// PostgreSQL keeps the chain's tail on its head row, and a writer chains
/// after the tail it last wrote. Rows appended without moving the head (as
/// a gateway of an earlier version does) make the next batch collide; it
/// is then chained after the stored tail, and the chain stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_audit_follows_rows_appended_behind_the_head() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    let batch = |at: i64, n: i64| (0..n).map(|i| audit(at + i, "inquiry.send")).collect();
    store.append_audit(batch(NOW, 3)).await.expect("first");
    store
        .append_audit(batch(NOW + 10, 2))
        .await
        .expect("after its own tail");

    // Two rows as an earlier gateway writes them: the head is not moved.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    let (mut seq, mut prev) = store.audit_tail().await.expect("tail").expect("rows");
    for i in 0..2 {
        seq += 1;
        let row = gateway::audit::AuditRow::chain(
            seq,
            NOW + 20 + i,
            audit(NOW + 20 + i, "inquiry.send").record,
            prev,
        );
        sqlx::query(
            "INSERT INTO audit_events (seq, at_ms, direction, officers, action, prev_hash, hash) \
             VALUES ($1, $2, 'inbound', '[]'::jsonb, 'inquiry.send', $3, $4)",
        )
        .bind(row.seq)
        .bind(row.at_ms)
        .bind(&row.prev_hash)
        .bind(&row.hash)
        .execute(&mut conn)
        .await
        .expect("insert behind the head");
        prev = row.hash;
    }

    let stored = store
        .append_audit(batch(NOW + 30, 2))
        .await
        .expect("after the stored tail");
    assert_eq!(stored.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![8, 9]);
    assert_eq!(stored[0].prev_hash, prev);
    // Another handle (another gateway) knows no tail yet.
    let other = db.open().await;
    other.append_audit(batch(NOW + 40, 1)).await.expect("other");
    store.append_audit(batch(NOW + 50, 1)).await.expect("again");

    let chain = verified_chain(&store).await;
    assert_eq!(chain.len(), 11);
    let last = chain.last().expect("rows");
    let head: (i64, String) = sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .expect("head");
    assert_eq!(head, (last.seq, last.hash.clone()), "the head is the tail");
    let _ = sqlx::Connection::close(conn).await;
}

#[tokio::test]
async fn store_open_refuses_other_urls() {
    for url in ["mysql://localhost/db", "gateway.db", ""] {
        match store::open(url).await {
            Err(StoreError::UnsupportedUrl(u)) => assert_eq!(u, url),
            Err(other) => panic!("{url:?}: {other}"),
            Ok(_) => panic!("{url:?} opened"),
        }
    }
}

#[test]
fn the_database_is_replaced_in_the_server_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/test?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

// ---------------------------------------------------------------------------
// Records

fn subject() -> Subject {
    Subject::Person {
        name: "张三".into(),
        id_number: IdNumber::parse("360426199101010071").expect("an identity number"),
    }
}

fn officers() -> Vec<Officer> {
    vec![Officer {
        name: "李明".into(),
        work_card_no: "G620503001".into(),
        credential_no: "ZX620503001".into(),
    }]
}

fn court() -> Court {
    Court {
        code: "甘0503".into(),
        name: "天水市麦积区人民法院".into(),
    }
}

fn documents() -> Vec<DocumentRef> {
    ["ruling", "assist_notice"]
        .into_iter()
        .map(|kind| DocumentRef {
            kind: kind.into(),
            number: format!("{kind}-1"),
            sha256: "ab".repeat(32),
        })
        .collect()
}

/// An account found at an agency, as an answered task stores it.
fn account(number: &str) -> Asset {
    Asset::BankAccount(BankAccount {
        account_number: number.into(),
        account_type: "savings".into(),
        currency: "CNY".into(),
        balance_fen: Fen(120_050),
        available_fen: Fen(100_000),
        branch: "麦积支行".into(),
        state: None,
        measures: Vec::new(),
    })
}

fn inquiry(id: &str, case_number: &str, created_at_ms: i64) -> InquiryRecord {
    InquiryRecord {
        id: id.into(),
        caller: "court-a".into(),
        case_number: case_number.into(),
        subject: subject(),
        officers: officers(),
        asset_kinds: vec![AssetKind::BankAccount, AssetKind::RealEstate],
        court: court(),
        warnings: Vec::new(),
        status: InquiryStatus::Running,
        created_at_ms,
        deadline_at_ms: created_at_ms + 60_000,
        completed_at_ms: None,
        catalog_version: Some("cfg_1".into()),
        batch_id: None,
        batch_line: None,
    }
}

fn tasks_for(inquiry_id: &str, agencies: &[&str]) -> Vec<(String, String)> {
    agencies
        .iter()
        .map(|a| (a.to_string(), format!("Q{inquiry_id}-{a}")))
        .collect()
}

// ---------------------------------------------------------------------------
// Writes: the store takes every write through its journal
// (`AuditStore::append_journal`); these name the changes the scenarios make.

/// What a batch of results did: per result, stored (the lease was still
/// held); the inquiries it completed.
#[derive(Debug, Default, PartialEq, Eq)]
struct FinishedTasks {
    stored: Vec<bool>,
    completed: Vec<String>,
}

#[async_trait::async_trait]
trait Writes: Store {
    async fn saved(&self, change: store::Change, now: i64) -> Result<bool, StoreError> {
        match self.apply(change, now, None).await? {
            store::Applied::Saved(saved) => Ok(saved),
            other => panic!("not a conditional change's receipt: {other:?}"),
        }
    }

    async fn create_inquiries(&self, new: &[NewInquiry]) -> Result<(), StoreError> {
        let entries = new
            .iter()
            .map(|n| store::JournalEntry {
                row: None,
                change: Some(store::Change::Inquiry(Box::new(n.clone()))),
            })
            .collect();
        self.append_journal(entries, NOW, None).await.map(drop)
    }

    async fn create_inquiry_claimed(
        &self,
        record: &InquiryRecord,
        tasks: &[(String, String)],
        lease: Option<&TaskLease>,
    ) -> Result<(), StoreError> {
        let new = NewInquiry {
            record: record.clone(),
            tasks: tasks.to_vec(),
            lease: lease.cloned(),
        };
        self.create_inquiries(&[new]).await
    }

    async fn create_inquiry(
        &self,
        record: &InquiryRecord,
        tasks: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.create_inquiry_claimed(record, tasks, None).await
    }

    async fn create_order(&self, order: &OrderRecord) -> Result<Created<OrderRecord>, StoreError> {
        match self
            .apply(store::Change::Order(Box::new(order.clone())), NOW, None)
            .await?
        {
            store::Applied::Order(created) => Ok(*created),
            other => panic!("not an order's receipt: {other:?}"),
        }
    }

    async fn create_plan(&self, plan: &PlanRecord) -> Result<Created<PlanRecord>, StoreError> {
        match self
            .apply(store::Change::Plan(Box::new(plan.clone())), NOW, None)
            .await?
        {
            store::Applied::Plan(created) => Ok(*created),
            other => panic!("not a plan's receipt: {other:?}"),
        }
    }

    /// Results in one transaction, completing the inquiries they finish.
    async fn finish_tasks(
        &self,
        owner: &str,
        results: &[TaskResult],
        now: i64,
    ) -> Result<FinishedTasks, StoreError> {
        let entries = results
            .iter()
            .map(|r| store::JournalEntry {
                row: None,
                change: Some(store::Change::Result {
                    owner: owner.to_owned(),
                    result: r.clone(),
                }),
            })
            .collect();
        let mut done = FinishedTasks::default();
        for (r, j) in results
            .iter()
            .zip(self.append_journal(entries, now, None).await?)
        {
            let Some(store::Applied::Finished { stored, completed }) = j.applied else {
                panic!("not a result's receipt");
            };
            done.stored.push(stored);
            if completed {
                done.completed.push(r.inquiry_id.clone());
            }
        }
        Ok(done)
    }

    /// A pushed result: (stored, completed its inquiry).
    async fn finish_awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
        update: &TaskUpdate,
        now: i64,
    ) -> Result<(bool, bool), StoreError> {
        let change = store::Change::Pushed {
            agency: agency.to_owned(),
            request_number: request_number.to_owned(),
            update: update.clone(),
        };
        match self.apply(change, now, None).await? {
            store::Applied::Finished { stored, completed } => Ok((stored, completed)),
            other => panic!("not a result's receipt: {other:?}"),
        }
    }

    /// The deadline's sweep: overdue inquiries' unfinished tasks time out,
    /// and those left with none complete. Returns (overdue, completed).
    async fn time_out(&self, now: i64) -> (Vec<String>, Vec<String>) {
        let overdue = self.overdue_inquiries(now).await.expect("overdue");
        if overdue.is_empty() {
            return (overdue, Vec::new());
        }
        let change = store::Change::TimeOut {
            inquiry_ids: overdue.clone(),
        };
        match self.apply(change, now, None).await.expect("time out") {
            store::Applied::Completed(ids) => (overdue, ids),
            other => panic!("not a time-out's receipt: {other:?}"),
        }
    }

    async fn give_back(
        &self,
        owner: &str,
        of: store::Leased,
        due: i64,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let change = store::Change::Release {
            owner: owner.to_owned(),
            of,
            due_at_ms: due,
            detail: detail.map(str::to_owned),
        };
        self.saved(change, NOW).await
    }

    async fn release_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        due: i64,
    ) -> Result<bool, StoreError> {
        let of = store::Leased::Task {
            inquiry_id: inquiry_id.to_owned(),
            agency: agency.to_owned(),
        };
        self.give_back(owner, of, due, None).await
    }

    async fn defer_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        due: i64,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let of = store::Leased::Task {
            inquiry_id: inquiry_id.to_owned(),
            agency: agency.to_owned(),
        };
        self.give_back(owner, of, due, Some(detail)).await
    }

    async fn release_order(
        &self,
        owner: &str,
        id: &str,
        due: i64,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let of = store::Leased::Order { id: id.to_owned() };
        self.give_back(owner, of, due, detail).await
    }

    async fn mark_sending(
        &self,
        owner: &str,
        id: &str,
        send_attempts: i64,
        now: i64,
        query_due_ms: i64,
    ) -> Result<bool, StoreError> {
        let change = store::Change::MarkSending {
            owner: owner.to_owned(),
            id: id.to_owned(),
            send_attempts,
            query_due_ms,
        };
        self.saved(change, now).await
    }

    async fn save_order(
        &self,
        owner: &str,
        id: &str,
        progress: &OrderProgress,
        effect: Option<&MeasureEffect>,
        notify: &[OutboxRecord],
        now: i64,
    ) -> Result<bool, StoreError> {
        let change = store::Change::SaveOrder(Box::new(store::SaveOrder {
            owner: owner.to_owned(),
            id: id.to_owned(),
            progress: progress.clone(),
            effect: effect.cloned(),
            notify: notify.to_vec(),
        }));
        self.saved(change, now).await
    }

    async fn save_plan(
        &self,
        owner: &str,
        id: &str,
        progress: &PlanProgress,
        notify: Option<&OutboxRecord>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let change = store::Change::SavePlan(Box::new(store::SavePlan {
            owner: owner.to_owned(),
            id: id.to_owned(),
            progress: progress.clone(),
            notify: notify.cloned(),
        }));
        self.saved(change, now).await
    }

    /// Expires lapsed measures, each with the callback `notify` makes.
    async fn expire_orders(
        &self,
        today: &str,
        now: i64,
        notify: &(dyn for<'r> Fn(&'r OrderRecord) -> Option<OutboxRecord> + Send + Sync),
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let change = store::Change::ExpireOrders {
            today: today.to_owned(),
        };
        match self.apply(change, now, Some(&Lapsing(notify))).await? {
            store::Applied::Expired(expired) => Ok(expired),
            other => panic!("not an expiry's receipt: {other:?}"),
        }
    }

    async fn mark_warned(
        &self,
        id: &str,
        end_date: &str,
        notify: Option<&OutboxRecord>,
    ) -> Result<bool, StoreError> {
        let change = store::Change::MarkWarned {
            id: id.to_owned(),
            end_date: end_date.to_owned(),
            notify: notify.cloned().map(Box::new),
        };
        self.saved(change, NOW).await
    }

    async fn enqueue(&self, item: &OutboxRecord) -> Result<bool, StoreError> {
        self.saved(store::Change::Enqueue(Box::new(item.clone())), NOW)
            .await
    }

    async fn outbox_attempted(
        &self,
        owner: &str,
        id: &str,
        attempts: i64,
        outcome: OutboxOutcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        let change = store::Change::Attempted {
            owner: owner.to_owned(),
            id: id.to_owned(),
            attempts,
            outcome,
        };
        self.saved(change, now).await
    }
}

impl<T: Store + ?Sized> Writes for T {}

/// Callbacks for expiries only, made by a test's function.
struct Lapsing<'a>(&'a (dyn for<'r> Fn(&'r OrderRecord) -> Option<OutboxRecord> + Send + Sync));

impl store::CompletionCallbacks for Lapsing<'_> {
    fn takes(&self, _caller: &str) -> bool {
        false
    }

    fn completed(
        &self,
        _inquiry: &InquiryRecord,
        _tasks: &[store::TaskRecord],
        _now_ms: i64,
    ) -> Option<OutboxRecord> {
        None
    }

    fn lapsed(&self, order: &OrderRecord, _now_ms: i64) -> Option<OutboxRecord> {
        (self.0)(order)
    }
}

/// Stores one step's result through `finish_tasks`; true when the lease
/// was still `owner`'s.
async fn finish_one(
    store: &Arc<dyn Store>,
    owner: &str,
    inquiry_id: &str,
    agency: &str,
    update: &TaskUpdate,
) -> bool {
    let result = TaskResult {
        inquiry_id: inquiry_id.into(),
        agency: agency.into(),
        update: update.clone(),
    };
    let done = store
        .finish_tasks(owner, &[result], NOW)
        .await
        .expect("finish");
    done.stored == [true]
}

/// A step's result leaving the task in `state` (its column text).
fn update(state: &str) -> TaskUpdate {
    TaskUpdate {
        state: TaskState::parse(state).expect("a task state"),
        detail: None,
        ticket: None,
        due_at_ms: NOW,
        sent_at_ms: Some(NOW),
        latency_ms: Some(12),
        result: None,
    }
}

fn order(id: &str, key: &str) -> OrderRecord {
    OrderRecord {
        id: id.into(),
        caller: "court-a".into(),
        idempotency_key: key.into(),
        body_sha256: "ab".repeat(32),
        case_number: "(2024)甘0503执1234号".into(),
        subject: subject(),
        officers: officers(),
        court: court(),
        documents: documents(),
        action: ControlAction::Freeze,
        agency: "bank-b".into(),
        asset: adapters::control::AssetRef::BankAccount {
            account_number: "6217000010001234567".into(),
        },
        amount_fen: Some(100_000),
        quantity: None,
        start_date: None,
        end_date: Some("2027-05-26".into()),
        prior_order: None,
        measure_order: id.into(),
        prior_request_number: None,
        plan_id: None,
        request_number: format!("K{id}"),
        status: OrderStatus::Accepted,
        phase: OrderPhase::Send,
        send_attempts: 0,
        steps: 0,
        ticket: None,
        controlled_fen: None,
        shortfall_fen: None,
        controlled_quantity: None,
        shortfall_quantity: None,
        deducted_fen: 0,
        reason: None,
        queue_position: None,
        measure_start: None,
        measure_end: None,
        agency_reference: None,
        detail: None,
        warned_end: None,
        due_at_ms: NOW,
        created_at_ms: NOW,
        updated_at_ms: NOW,
        decided_at_ms: None,
        acknowledged_documents: None,
        documents_mismatch: false,
    }
}

/// An order acting on `measure` (a renewal, release or deduction).
fn order_on(id: &str, measure: &str, action: ControlAction, created_at_ms: i64) -> OrderRecord {
    OrderRecord {
        action,
        measure_order: measure.into(),
        prior_order: Some(measure.into()),
        prior_request_number: Some(format!("K{measure}")),
        created_at_ms,
        ..order(id, &format!("key-{id}"))
    }
}

fn plan(id: &str, key: &str, due_at_ms: i64) -> PlanRecord {
    PlanRecord {
        id: id.into(),
        caller: "court-a".into(),
        idempotency_key: key.into(),
        body_sha256: "cd".repeat(32),
        case_number: "(2024)甘0503执1234号".into(),
        subject: subject(),
        officers: officers(),
        court: court(),
        documents: documents(),
        inquiry_id: "inq-1".into(),
        amount_fen: 13_000_000,
        end_date: "2027-05-26".into(),
        accounts: PlanAccounts {
            skipped: vec![SkippedAccount {
                account_number: "2".into(),
                agency: "bank-c".into(),
                kind: adapters::model::AssetKind::BankAccount,
                reason: "not a CNY account".into(),
            }],
            tried: vec![PlanAccount {
                account_number: "1".into(),
                agency: "bank-a".into(),
                available_fen: 13_000_000,
                kind: adapters::model::AssetKind::BankAccount,
            }],
        },
        next_index: 0,
        status: PlanStatus::Running,
        controlled_fen: 0,
        detail: None,
        due_at_ms,
        created_at_ms: NOW,
        updated_at_ms: NOW,
        completed_at_ms: None,
    }
}

fn callback(id: &str, due_at_ms: i64) -> OutboxRecord {
    OutboxRecord {
        id: id.into(),
        caller: "court-a".into(),
        event: "order.decided".into(),
        resource_id: "ord-1".into(),
        body: format!("{{\"id\":\"{id}\",\"bytes\":\"\\u0000\u{ff}\"}}").into_bytes(),
        attempts: 0,
        due_at_ms,
        created_at_ms: NOW,
    }
}

fn audit(at_ms: i64, action: &str) -> NewAuditRow {
    NewAuditRow {
        at_ms,
        record: AuditRecord {
            direction: Some(Direction::Inbound),
            action: action.into(),
            ..AuditRecord::default()
        },
    }
}

/// An accepted request about `subject` under `case_number`.
fn request(at_ms: i64, subject: &str, case_number: &str, officers: &[&str]) -> NewAuditRow {
    let mut row = audit(at_ms, "inquiry.create");
    row.record.caller = Some("court-a".into());
    row.record.subject = Some(subject.into());
    row.record.case_number = Some(case_number.into());
    row.record.status = Some("accepted".into());
    row.record.officers = officers.iter().map(|o| o.to_string()).collect();
    row
}

/// Checks every link and hash of the chain as stored, and returns it.
async fn verified_chain(store: &Arc<dyn Store>) -> Vec<StoredAuditEvent> {
    let mut chain = Vec::new();
    let mut prev = GENESIS_HASH.to_owned();
    loop {
        let after = chain.last().map_or(0, |r: &StoredAuditEvent| r.seq);
        let page = store.audit_chain(after, 97).await.expect("audit_chain");
        if page.is_empty() {
            break;
        }
        for row in page {
            assert_eq!(row.seq, chain.len() as i64 + 1, "gap-free numbering");
            assert_eq!(
                row.prev_hash, prev,
                "row {} links to the one before",
                row.seq
            );
            assert_eq!(
                row_hash(&row.prev_hash, &row),
                row.hash,
                "row {} hash",
                row.seq
            );
            assert!(row.body.is_none(), "audit_chain leaves bodies out");
            prev = row.hash.clone();
            chain.push(row);
        }
    }
    chain
}

// ---------------------------------------------------------------------------
// Scenarios

async fn inquiry_round_trip(db: &TestDb) {
    let store = db.open().await;
    store.ping().await.expect("ping");

    let first = inquiry("inq-1", "case-1", NOW - 2_000);
    store
        .create_inquiry(
            &first,
            &tasks_for("inq-1", &["bank-b", "bank-a", "registry-x"]),
        )
        .await
        .expect("create");
    let mut second = inquiry("inq-2", "case-1", NOW - 1_000);
    second.catalog_version = None;
    second.warnings = vec!["späte Antwort".into()];
    store
        .create_inquiry(&second, &tasks_for("inq-2", &["bank-a"]))
        .await
        .expect("create");

    let read = store.inquiry("inq-1").await.expect("read").expect("found");
    assert_eq!(read.officers, first.officers);
    assert_eq!(read.court, first.court);
    assert_eq!(read.subject, first.subject);
    assert_eq!(read.asset_kinds, first.asset_kinds);
    assert_eq!(read.catalog_version.as_deref(), Some("cfg_1"));
    assert_eq!(read.completed_at_ms, None);
    assert!(store.inquiry("nope").await.expect("read").is_none());

    let by_case = store
        .inquiries_by_case("court-a", "case-1", 10)
        .await
        .expect("by case");
    let ids: Vec<_> = by_case.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["inq-2", "inq-1"], "newest first");
    let one = store
        .inquiries_by_case("court-a", "case-1", 1)
        .await
        .expect("by case");
    assert_eq!(one.len(), 1);
    let unbounded = store
        .inquiries_by_case("court-a", "case-1", -1)
        .await
        .expect("a negative limit is no limit");
    assert_eq!(unbounded.len(), 2);
    assert_eq!(
        store.running_catalog_versions().await.expect("versions"),
        ["cfg_1"]
    );

    let tasks = store.tasks("inq-1").await.expect("tasks");
    let agencies: Vec<_> = tasks.iter().map(|t| t.agency.as_str()).collect();
    assert_eq!(agencies, ["bank-a", "bank-b", "registry-x"]);
    assert!(tasks.iter().all(|t| t.state == TaskState::Queued));
    assert_eq!(tasks[0].request_number, "Qinq-1-bank-a");

    // Claims: registry-x is at its bound and skipped.
    let skip = vec!["registry-x".to_string()];
    let claimed = store
        .claim_due_tasks("gw-1", NOW, NOW + 30_000, 10, &skip)
        .await
        .expect("claim");
    let mut got: Vec<_> = claimed
        .iter()
        .map(|t| (t.inquiry_id.as_str(), t.agency.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("inq-1", "bank-a"),
            ("inq-1", "bank-b"),
            ("inq-2", "bank-a")
        ]
    );
    assert_eq!(claimed[0].state, TaskState::Queued);
    assert_eq!(claimed[0].sent_at_ms, None);
    assert!(
        store
            .claim_due_tasks("gw-2", NOW, NOW + 30_000, 10, &skip)
            .await
            .expect("claim")
            .is_empty(),
        "leased tasks are not claimed again"
    );
    assert_eq!(
        store.next_due_ms(&skip).await.expect("next due"),
        Some(NOW + 30_000),
        "the leased tasks are due when their lease ends"
    );
    assert_eq!(
        store.next_due_ms(&[]).await.expect("next due"),
        Some(NOW - 2_000)
    );

    // Outcomes: only the lease holder records one.
    assert!(!finish_one(&store, "gw-2", "inq-1", "bank-a", &update("answered")).await);
    let mut answered = update("answered");
    answered.result = Some(vec![account("6217000010001234567")]);
    assert!(finish_one(&store, "gw-1", "inq-1", "bank-a", &answered).await);
    let mut polling = update("polling");
    polling.ticket = Some("T-1".into());
    polling.due_at_ms = NOW + 5_000;
    polling.sent_at_ms = Some(NOW - 500);
    assert!(finish_one(&store, "gw-1", "inq-1", "bank-b", &polling).await);
    assert!(
        store
            .release_task("gw-1", "inq-2", "bank-a", NOW + 1_000)
            .await
            .expect("release")
    );
    assert!(
        !store
            .defer_task("gw-2", "inq-2", "bank-a", NOW + 9_000, "not mine")
            .await
            .expect("defer"),
        "defer by a non-holder does nothing"
    );

    let tasks = store.tasks("inq-1").await.expect("tasks");
    assert_eq!(tasks[0].state.as_str(), "answered");
    assert_eq!(tasks[0].latency_ms, Some(12));
    assert_eq!(tasks[0].result, Some(vec![account("6217000010001234567")]));
    assert_eq!(tasks[1].state, TaskState::Polling);
    assert_eq!(tasks[1].ticket.as_deref(), Some("T-1"));
    let read = store.inquiry("inq-1").await.expect("read").expect("found");
    assert_eq!(read.status, InquiryStatus::Running, "a task is unfinished");

    // The polling task comes due; its ticket and first send time stay.
    let claimed = store
        .claim_due_tasks("gw-1", NOW + 5_000, NOW + 60_000, 10, &skip)
        .await
        .expect("claim");
    let mut ids: Vec<_> = claimed
        .iter()
        .map(|t| (t.inquiry_id.as_str(), t.agency.as_str()))
        .collect();
    ids.sort();
    assert_eq!(ids, [("inq-1", "bank-b"), ("inq-2", "bank-a")]);
    let poll = claimed
        .iter()
        .find(|t| t.agency == "bank-b")
        .expect("the polling task");
    assert_eq!(poll.state, TaskState::Polling);
    assert_eq!(poll.ticket.as_deref(), Some("T-1"));
    assert_eq!(poll.sent_at_ms, Some(NOW - 500));
    let mut done = update("no_record");
    done.sent_at_ms = Some(NOW + 5_000);
    assert!(finish_one(&store, "gw-1", "inq-1", "bank-b", &done).await);
    let tasks = store.tasks("inq-1").await.expect("tasks");
    assert_eq!(tasks[1].ticket.as_deref(), Some("T-1"), "COALESCE keeps it");
    store
        .defer_task("gw-1", "inq-2", "bank-a", NOW + 9_000, "closed until 09:00")
        .await
        .expect("defer");
    let tasks = store.tasks("inq-2").await.expect("tasks");
    assert_eq!(tasks[0].detail.as_deref(), Some("closed until 09:00"));
    assert_eq!(tasks[0].state, TaskState::Queued);

    // A callback agency: sent, then the pushed result.
    let claimed = store
        .claim_due_tasks("gw-1", NOW, NOW + 30_000, 10, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].agency, "registry-x");
    let mut awaiting = update("awaiting");
    awaiting.ticket = Some("ACK-7".into());
    awaiting.due_at_ms = NOW + 60_000;
    assert!(finish_one(&store, "gw-1", "inq-1", "registry-x", &awaiting).await);
    let waiting = store
        .awaiting_task("registry-x", "Qinq-1-registry-x")
        .await
        .expect("awaiting")
        .expect("found");
    assert_eq!(waiting.inquiry_id, "inq-1");
    assert_eq!(waiting.ticket.as_deref(), Some("ACK-7"));
    assert_eq!(waiting.sent_at_ms, Some(NOW));
    assert!(
        store
            .awaiting_task("registry-x", "Qinq-1-bank-a")
            .await
            .expect("awaiting")
            .is_none()
    );
    let mut pushed = update("answered");
    pushed.latency_ms = Some(90_000);
    assert_eq!(
        store
            .finish_awaiting_task("registry-x", "Qinq-1-registry-x", &pushed, NOW + 1)
            .await
            .expect("finish"),
        (true, true),
        "the last result, pushed, completes its inquiry"
    );
    assert_eq!(
        store
            .finish_awaiting_task("registry-x", "Qinq-1-registry-x", &pushed, NOW + 2)
            .await
            .expect("finish"),
        (false, false),
        "a repeated callback changes nothing"
    );
    let tasks = store.tasks("inq-1").await.expect("tasks");
    assert_eq!(tasks[2].ticket.as_deref(), Some("ACK-7"));
    assert_eq!(tasks[2].latency_ms, Some(90_000));

    let read = store.inquiry("inq-1").await.expect("read").expect("found");
    assert_eq!(read.status, InquiryStatus::Completed);
    assert_eq!(read.completed_at_ms, Some(NOW + 1));

    // The deadline passes for inq-2: its queued task times out.
    assert_eq!(
        store.time_out(NOW).await,
        (vec![], vec![]),
        "not overdue yet"
    );
    let (overdue, completed) = store.time_out(NOW + 60_000).await;
    assert_eq!(overdue, ["inq-2"]);
    assert_eq!(completed, ["inq-2"], "completed by the time-out");
    let tasks = store.tasks("inq-2").await.expect("tasks");
    assert_eq!(tasks[0].state.as_str(), "timeout");
    assert_eq!(
        tasks[0].detail.as_deref(),
        Some("no answer before the inquiry's deadline")
    );
    assert_eq!(store.next_due_ms(&[]).await.expect("next due"), None);
    assert!(
        store
            .running_catalog_versions()
            .await
            .expect("versions")
            .is_empty()
    );
}

async fn concurrent_claimants_never_share_work(db: &TestDb) {
    let first = db.open().await;
    let second = db.open().await;

    let agencies: Vec<String> = (0..40).map(|i| format!("bank-{i:02}")).collect();
    let agency_refs: Vec<&str> = agencies.iter().map(String::as_str).collect();
    for i in 0..3 {
        let id = format!("inq-{i}");
        first
            .create_inquiry(
                &inquiry(&id, "case-1", NOW - 10_000 + i),
                &tasks_for(&id, &agency_refs),
            )
            .await
            .expect("create");
    }
    for i in 0..60 {
        let mut o = order(&format!("ord-{i:03}"), &format!("key-{i}"));
        o.due_at_ms = NOW - 1_000 + i;
        first.create_order(&o).await.expect("order");
    }
    for i in 0..30 {
        first
            .create_plan(&plan(&format!("plan-{i:02}"), &format!("pk-{i}"), NOW - 5))
            .await
            .expect("plan");
        first
            .enqueue(&callback(&format!("cb-{i:02}"), NOW - i))
            .await
            .expect("enqueue");
    }

    // Four claimants, two on each handle, each claiming a few at a time
    // until nothing is left for it.
    let mut claimants = Vec::new();
    for (n, store) in [&first, &second, &first, &second].into_iter().enumerate() {
        let store = store.clone();
        claimants.push(tokio::spawn(async move {
            let owner = format!("gw-{n}");
            let mut mine: Vec<String> = Vec::new();
            loop {
                let tasks = store
                    .claim_due_tasks(&owner, NOW, FAR, 3, &[])
                    .await
                    .expect("claim tasks");
                let orders = store
                    .claim_due_orders(&owner, NOW, FAR, 2)
                    .await
                    .expect("claim orders");
                let plans = store
                    .claim_due_plans(&owner, NOW, FAR, 1)
                    .await
                    .expect("claim plans");
                let outbox = store
                    .claim_outbox(&owner, NOW, FAR, 1)
                    .await
                    .expect("claim outbox");
                if tasks.is_empty() && orders.is_empty() && plans.is_empty() && outbox.is_empty() {
                    break;
                }
                for o in &orders {
                    assert_eq!(o.steps, 1, "{} claimed once", o.id);
                }
                mine.extend(
                    tasks
                        .iter()
                        .map(|t| format!("task {}/{}", t.inquiry_id, t.agency)),
                );
                mine.extend(orders.iter().map(|o| format!("order {}", o.id)));
                mine.extend(plans.iter().map(|p| format!("plan {}", p.id)));
                mine.extend(outbox.iter().map(|c| format!("callback {}", c.id)));
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_claimant = Vec::new();
    for claimant in claimants {
        let mine = claimant.await.expect("claimant");
        per_claimant.push(mine.len());
        for item in mine {
            *seen.entry(item).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "claimed twice: {twice:?}");
    assert_eq!(
        seen.len(),
        3 * 40 + 60 + 30 + 30,
        "everything claimed once ({per_claimant:?} per claimant)"
    );
    // Nothing is left, and the next claim after the leases end takes it
    // all again (once).
    assert!(
        first
            .claim_due_orders("late", NOW, FAR, 100)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = second
        .claim_due_orders("late", FAR, FAR + 1, -1)
        .await
        .expect("claim");
    assert_eq!(again.len(), 60, "a negative limit is no limit");
    assert!(again.iter().all(|o| o.steps == 2));
}

async fn concurrent_appends_keep_one_chain(db: &TestDb) {
    let mut writers = Vec::new();
    for w in 0..4 {
        // Each writer its own handle (pool), as separate gateways.
        let store = db.open().await;
        writers.push(tokio::spawn(async move {
            let mut written = 0;
            let mut batch = 1;
            let mut seqs = Vec::new();
            while written < 200 {
                let n = batch.min(200 - written);
                let rows: Vec<NewAuditRow> = (0..n)
                    .map(|i| {
                        let mut row = audit(NOW + written as i64 + i as i64, "inquiry.send");
                        row.record.direction = Some(Direction::Outbound);
                        row.record.agency = Some(format!("bank-{w}"));
                        row.record.officers = vec![format!("officer {w}")];
                        row.record.body = Some(format!("<CXQQ>{w}-{written}-{i}</CXQQ>").into());
                        row
                    })
                    .collect();
                let stored = store.append_audit(rows.clone()).await.expect("append");
                assert_eq!(stored.len(), n);
                for pair in stored.windows(2) {
                    assert_eq!(pair[1].seq, pair[0].seq + 1, "a batch is consecutive");
                    assert_eq!(pair[1].prev_hash, pair[0].hash);
                }
                seqs.extend(stored.iter().map(|r| r.seq));
                written += n;
                batch = batch % 7 + 1;
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for writer in writers {
        all.extend(writer.await.expect("writer"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=800).collect::<Vec<i64>>());

    let store = db.open().await;
    let chain = verified_chain(&store).await;
    assert_eq!(chain.len(), 800);
    let last = chain.last().expect("rows");
    assert_eq!(
        store.audit_tail().await.expect("tail"),
        Some((800, last.hash.clone()))
    );
    // Bodies are stored and match their digests.
    let rows = store
        .audit_events(&AuditFilter {
            limit: 1_000,
            ..AuditFilter::default()
        })
        .await
        .expect("read");
    assert_eq!(rows.len(), 800);
    for row in rows {
        let body = row.body.as_ref().expect("body kept");
        assert_eq!(
            row.body_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(body)).as_str())
        );
    }
}

async fn audit_filters_checkpoints_and_retention(db: &TestDb) {
    let store = db.open().await;
    assert_eq!(store.audit_tail().await.expect("tail"), None);
    assert!(
        store
            .append_audit(Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );

    let mut inbound = request(NOW, "360426199101010071", "case-1", &["Li Ming (ZX1)"]);
    inbound.record.inquiry_id = Some("inq-1".into());
    inbound.record.body = Some(bytes::Bytes::from_static(b"{\"case_number\":\"case-1\"}"));
    inbound.record.latency_ms = Some(3);
    let mut outbound = audit(NOW + 10, "inquiry.send");
    outbound.record.direction = Some(Direction::Outbound);
    outbound.record.agency = Some("bank-a".into());
    outbound.record.inquiry_id = Some("inq-1".into());
    outbound.record.request_number = Some("Qinq-1-bank-a".into());
    outbound.record.body = Some(vec![0, 159, 146, 150, 255].into());
    let mut reply = audit(NOW + 20, "inquiry.reply");
    reply.record.direction = Some(Direction::Reply);
    reply.record.agency = Some("bank-a".into());
    reply.record.status = Some("answered".into());
    reply.record.body = Some(bytes::Bytes::new());
    let mut other = request(
        NOW + 30,
        "620503198812120015",
        "case-2",
        &["赵强 (ZX2)", "x_y%z"],
    );
    other.record.caller = Some("court-b".into());
    let bare = audit(NOW + 40, "audit.read");
    let stored = store
        .append_audit(vec![inbound, outbound, reply, other, bare])
        .await
        .expect("append");
    assert_eq!(stored[0].prev_hash, GENESIS_HASH);
    assert_eq!(stored[4].seq, 5);

    let all = |f: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .audit_events(&AuditFilter { limit: 100, ..f })
                .await
                .expect("audit_events")
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(all(AuditFilter::default()).await, [1, 2, 3, 4, 5]);
    assert_eq!(
        all(AuditFilter {
            case_number: Some("case-1".into()),
            ..AuditFilter::default()
        })
        .await,
        [1]
    );
    assert_eq!(
        all(AuditFilter {
            agency: Some("bank-a".into()),
            ..AuditFilter::default()
        })
        .await,
        [2, 3]
    );
    assert_eq!(
        all(AuditFilter {
            inquiry_id: Some("inq-1".into()),
            action: Some("inquiry.send".into()),
            ..AuditFilter::default()
        })
        .await,
        [2]
    );
    assert_eq!(
        all(AuditFilter {
            caller: Some("court-b".into()),
            ..AuditFilter::default()
        })
        .await,
        [4]
    );
    assert_eq!(
        all(AuditFilter {
            subject: Some("360426199101010071".into()),
            ..AuditFilter::default()
        })
        .await,
        [1]
    );
    // The officer filter: a substring of an officer's label, ASCII letters
    // in either case, taken literally: '%' and '_' are characters, not
    // wildcards (row 4 has an officer labelled "x_y%z").
    for (officer, expected) in [
        ("li ming", vec![1]),
        ("ZX", vec![1, 4]),
        ("赵强", vec![4]),
        ("xy", vec![]),
        ("x_y%z", vec![4]),
        ("y%z", vec![4]),
        ("%", vec![4]),
        ("_", vec![4]),
        ("li%ming", vec![]),
        ("li_ming", vec![]),
        ("x%z", vec![]),
        ("LI MING (zx1)", vec![1]),
        ("nobody", vec![]),
    ] {
        assert_eq!(
            all(AuditFilter {
                officer: Some(officer.into()),
                ..AuditFilter::default()
            })
            .await,
            expected,
            "officer {officer:?}"
        );
    }
    // A filter with U+0000 matches nothing (PostgreSQL text cannot hold
    // it; the store answers without asking the database).
    assert_eq!(
        all(AuditFilter {
            case_number: Some("case-1\0".into()),
            ..AuditFilter::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        all(AuditFilter {
            officer: Some("Li\0".into()),
            ..AuditFilter::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        all(AuditFilter {
            from_ms: Some(NOW + 10),
            to_ms: Some(NOW + 30),
            ..AuditFilter::default()
        })
        .await,
        [2, 3],
        "from inclusive, to exclusive"
    );
    assert_eq!(
        all(AuditFilter {
            after_seq: Some(3),
            ..AuditFilter::default()
        })
        .await,
        [4, 5]
    );
    let page = store
        .audit_events(&AuditFilter {
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .expect("page");
    assert_eq!(page.len(), 2);

    let one = store.audit_event(2).await.expect("event").expect("found");
    assert_eq!(one.direction, "outbound");
    assert_eq!(one.body.as_deref(), Some(&[0u8, 159, 146, 150, 255][..]));
    assert_eq!(one.request_number.as_deref(), Some("Qinq-1-bank-a"));
    assert!(one.officers.is_empty());
    let first = store.audit_event(1).await.expect("event").expect("found");
    assert_eq!(first.officers, ["Li Ming (ZX1)"]);
    assert_eq!(first.latency_ms, Some(3));
    assert_eq!(first.status.as_deref(), Some("accepted"));
    let empty_body = store.audit_event(3).await.expect("event").expect("found");
    assert_eq!(
        empty_body.body.as_deref(),
        Some(&[][..]),
        "empty, not absent"
    );
    assert!(store.audit_event(99).await.expect("event").is_none());
    let chain = verified_chain(&store).await;
    assert_eq!(chain.len(), 5);

    // Checkpoints: in sequence order, a repeated one ignored.
    let checkpoint = |seq: i64| Checkpoint {
        seq,
        hash: chain[seq as usize - 1].hash.clone(),
        at_ms: NOW + seq,
        key_id: "ab".repeat(32),
        signature: "cd".repeat(64),
    };
    store.add_checkpoint(&checkpoint(4)).await.expect("add");
    store.add_checkpoint(&checkpoint(2)).await.expect("add");
    let mut repeated = checkpoint(4);
    repeated.signature = "ef".repeat(64);
    store
        .add_checkpoint(&repeated)
        .await
        .expect("repeat ignored");
    assert_eq!(
        store.checkpoints().await.expect("checkpoints"),
        [checkpoint(2), checkpoint(4)]
    );

    // Retention drops the oldest bodies first; digests and chain stay.
    assert_eq!(store.purge_bodies(NOW + 25, 1).await.expect("purge"), 1);
    assert!(
        store
            .audit_event(1)
            .await
            .expect("event")
            .expect("found")
            .body
            .is_none()
    );
    assert!(
        store
            .audit_event(2)
            .await
            .expect("event")
            .expect("found")
            .body
            .is_some()
    );
    assert_eq!(store.purge_bodies(NOW + 25, 10).await.expect("purge"), 2);
    assert_eq!(store.purge_bodies(NOW + 25, 10).await.expect("purge"), 0);
    for seq in 1..=3 {
        let row = store.audit_event(seq).await.expect("event").expect("found");
        assert!(row.body.is_none(), "row {seq} purged");
        assert_eq!(row.body_sha256, stored[seq as usize - 1].body_sha256);
    }
    assert_eq!(
        stored[0].body_sha256.as_deref(),
        Some(hex::encode(Sha256::digest(b"{\"case_number\":\"case-1\"}")).as_str())
    );
    verified_chain(&store).await;
}

async fn auditor_questions(db: &TestDb) {
    let store = db.open().await;
    // 2024-05-01T15:59:59.999Z is 23:59:59.999 on 1 May in UTC+8;
    // one millisecond later it is 2 May there.
    const MAY_1_LATE: i64 = 1_714_579_199_999;
    const MAY_2: i64 = MAY_1_LATE + 1;
    let li = "李明 (ZX1)";
    let zhao = "Zhao Qiang (ZX2)";
    let mut rows = vec![
        request(MAY_1_LATE - 5_000, "S1", "case-A", &[li, zhao]),
        request(MAY_1_LATE, "S1", "case-B", &[li]),
        request(MAY_2, "S1", "case-A", &[li]),
        request(MAY_2 + 1, "S1", "case-C", &[zhao]),
        request(MAY_2 + 2, "S2", "case-A", &[li]),
        request(MAY_2 + 3, "S3", "case-A", &[zhao]),
        request(MAY_2 + 4, "S3", "case-D", &[zhao]),
    ];
    // Not requests: refused, not inbound, another action, no subject.
    let mut refused = request(MAY_2 + 5, "S2", "case-X", &[li]);
    refused.record.status = Some("refused".into());
    let mut outbound = request(MAY_2 + 6, "S2", "case-Y", &[li]);
    outbound.record.direction = Some(Direction::Outbound);
    let mut read = request(MAY_2 + 7, "S2", "case-Z", &[li]);
    read.record.action = "audit.read".into();
    let mut nobody = request(MAY_2 + 8, "S9", "case-Z", &[li]);
    nobody.record.subject = None;
    let mut order = request(MAY_2 + 9, "S2", "case-B", &[zhao]);
    order.record.action = "order.create".into();
    let mut plan = request(MAY_2 + 10, "S4", "case-E", &[]);
    plan.record.action = "freeze_plan.create".into();
    let mut other_court = request(MAY_2 + 11, "S4", "case-F", &[li]);
    other_court.record.caller = Some("court-b".into());
    rows.extend([refused, outbound, read, nobody, order, plan, other_court]);
    store.append_audit(rows.clone()).await.expect("append");

    let everything = Window::default();
    let several = store
        .subjects_in_several_cases(&everything, 10)
        .await
        .expect("subjects");
    let summary: Vec<_> = several
        .iter()
        .map(|s| (s.subject.as_str(), s.cases.join(","), s.requests))
        .collect();
    assert_eq!(
        summary,
        [
            ("S1", "case-A,case-B,case-C".to_string(), 4),
            ("S2", "case-A,case-B".to_string(), 2),
            ("S3", "case-A,case-D".to_string(), 2),
            ("S4", "case-E,case-F".to_string(), 2),
        ]
    );
    let top = store
        .subjects_in_several_cases(&everything, 1)
        .await
        .expect("subjects");
    assert_eq!(top.len(), 1);
    let may_2 = Window {
        from_ms: Some(MAY_2),
        to_ms: None,
    };
    let later = store
        .subjects_in_several_cases(&may_2, 10)
        .await
        .expect("subjects");
    let subjects: Vec<_> = later.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(subjects, ["S1", "S2", "S3", "S4"]);
    let before_may_2 = Window {
        from_ms: None,
        to_ms: Some(MAY_2),
    };
    let earlier = store
        .subjects_in_several_cases(&before_may_2, 10)
        .await
        .expect("subjects");
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0].cases, ["case-A", "case-B"]);

    let cases = store.officer_cases(&everything).await.expect("cases");
    let cases: Vec<_> = cases
        .iter()
        .map(|c| {
            (
                c.caller.as_str(),
                c.officer.as_str(),
                c.case_number.as_str(),
                c.requests,
            )
        })
        .collect();
    assert_eq!(
        cases,
        [
            ("court-a", "Zhao Qiang (ZX2)", "case-A", 2),
            ("court-a", "Zhao Qiang (ZX2)", "case-B", 1),
            ("court-a", "Zhao Qiang (ZX2)", "case-C", 1),
            ("court-a", "Zhao Qiang (ZX2)", "case-D", 1),
            ("court-a", "李明 (ZX1)", "case-A", 3),
            ("court-a", "李明 (ZX1)", "case-B", 1),
            ("court-a", "李明 (ZX1)", "case-Z", 1),
            ("court-b", "李明 (ZX1)", "case-F", 1),
        ],
        "byte order: Latin before CJK"
    );

    let days = store
        .officer_daily_volume(&everything, 0)
        .await
        .expect("days");
    let days: Vec<_> = days
        .iter()
        .map(|d| (d.day.as_str(), d.officer.as_str(), d.requests))
        .collect();
    assert_eq!(
        days,
        [
            ("2024-05-01", "李明 (ZX1)", 2),
            ("2024-05-01", "Zhao Qiang (ZX2)", 1),
            ("2024-05-02", "Zhao Qiang (ZX2)", 4),
            ("2024-05-02", "李明 (ZX1)", 4),
        ],
        "civil days in UTC+8, busiest first, then by officer"
    );
    let busy = store.officer_daily_volume(&may_2, 3).await.expect("days");
    let busy: Vec<_> = busy
        .iter()
        .map(|d| (d.day.as_str(), d.officer.as_str(), d.requests))
        .collect();
    assert_eq!(
        busy,
        [
            ("2024-05-02", "Zhao Qiang (ZX2)", 4),
            ("2024-05-02", "李明 (ZX1)", 4)
        ]
    );
}

async fn orders_idempotency_and_effects(db: &TestDb) {
    let store = db.open().await;
    let other = db.open().await;

    let mut freeze = order("ord-1", "key-1");
    freeze.plan_id = Some("plan-1".into());
    freeze.start_date = Some("2026-05-26".into());
    match store.create_order(&freeze).await.expect("create") {
        Created::New(o) => assert_eq!(o, freeze),
        Created::Existing(o) => panic!("existing {o:?}"),
    }
    let mut again = order("ord-other", "key-1");
    again.amount_fen = Some(1);
    match other.create_order(&again).await.expect("create") {
        Created::Existing(o) => assert_eq!(o, freeze, "the first order under the key"),
        Created::New(o) => panic!("new {o:?}"),
    }
    assert!(store.order("ord-other").await.expect("read").is_none());
    let mut elsewhere = order("ord-b", "key-1");
    elsewhere.caller = "court-b".into();
    assert!(matches!(
        store.create_order(&elsewhere).await.expect("create"),
        Created::New(_)
    ));
    assert_eq!(
        store.order("ord-1").await.expect("read"),
        Some(freeze.clone())
    );
    assert_eq!(
        store.order_by_key("court-a", "key-1").await.expect("read"),
        Some(freeze.clone())
    );
    assert!(
        store
            .order_by_key("court-a", "key-2")
            .await
            .expect("read")
            .is_none()
    );

    // A race on one key: one order is stored, every caller gets it.
    let racers: Vec<_> = (0..6)
        .map(|i| {
            let store = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                store
                    .create_order(&order(&format!("race-{i}"), "key-race"))
                    .await
                    .expect("create")
            })
        })
        .collect();
    let mut new = 0;
    let mut ids = BTreeSet::new();
    for racer in racers {
        match racer.await.expect("racer") {
            Created::New(o) => {
                new += 1;
                ids.insert(o.id);
            }
            Created::Existing(o) => {
                ids.insert(o.id);
            }
        }
    }
    assert_eq!(new, 1);
    assert_eq!(ids.len(), 1, "{ids:?}");

    // Orders on the measure, and the plan the freeze belongs to.
    store
        .create_plan(&plan("plan-1", "pk-1", FAR))
        .await
        .expect("plan");
    let renew = order_on("ord-2", "ord-1", ControlAction::Renew, NOW + 1);
    let deduct = order_on("ord-3", "ord-1", ControlAction::Deduct, NOW + 2);
    let release = order_on("ord-4", "ord-1", ControlAction::Release, NOW + 3);
    for o in [&renew, &deduct, &release] {
        store.create_order(o).await.expect("create");
    }
    let on_measure: Vec<_> = store
        .orders_of_measure("ord-1")
        .await
        .expect("measure")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(
        on_measure,
        ["ord-1", "ord-2", "ord-3", "ord-4"],
        "its own first"
    );
    let of_plan: Vec<_> = store
        .orders_of_plan("plan-1")
        .await
        .expect("plan")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(of_plan, ["ord-1"]);
    let by_case: Vec<_> = store
        .orders_by_case("court-a", &freeze.case_number, None, 10)
        .await
        .expect("by case")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(
        by_case,
        [
            "ord-4", "ord-3", "ord-2", "race-5", "race-4", "race-3", "race-2", "race-1", "race-0",
            "ord-1"
        ]
        .into_iter()
        .filter(|id| !id.starts_with("race") || ids.contains(*id))
        .collect::<Vec<_>>(),
        "newest first, then id descending"
    );

    // The freeze: claimed, marked sending, applied.
    let claimed = store
        .claim_due_orders("gw-1", NOW, NOW + 30_000, 10)
        .await
        .expect("claim");
    assert!(claimed.iter().any(|o| o.id == "ord-1"));
    assert!(
        !store
            .mark_sending("gw-2", "ord-1", 1, NOW, NOW + 10_000)
            .await
            .expect("mark"),
        "not the lease holder"
    );
    assert!(
        store
            .mark_sending("gw-1", "ord-1", 1, NOW + 1, NOW + 10_000)
            .await
            .expect("mark")
    );
    let sending = store.order("ord-1").await.expect("read").expect("found");
    assert_eq!(sending.phase, OrderPhase::Query);
    assert_eq!(sending.status, OrderStatus::Dispatched);
    assert_eq!(sending.send_attempts, 1);
    assert_eq!(sending.due_at_ms, NOW + 10_000);
    assert_eq!(sending.updated_at_ms, NOW + 1);
    assert_eq!(sending.steps, 1);

    let applied = OrderProgress {
        status: OrderStatus::Partial,
        phase: OrderPhase::Watch,
        controlled_fen: Some(80_000),
        shortfall_fen: Some(20_000),
        measure_start: Some("2026-05-26".into()),
        measure_end: Some("2027-05-25".into()),
        agency_reference: Some("DJ-1".into()),
        due_at_ms: NOW + 3_600_000,
        decided_at_ms: Some(NOW + 2),
        ..OrderProgress::of(&sending)
    };
    assert!(
        !store
            .save_order("gw-2", "ord-1", &applied, None, &[], NOW + 2)
            .await
            .expect("save"),
        "not the lease holder"
    );
    assert!(
        store
            .save_order(
                "gw-1",
                "ord-1",
                &applied,
                None,
                &[callback("cb-applied", NOW + 2)],
                NOW + 2
            )
            .await
            .expect("save")
    );
    let saved = store.order("ord-1").await.expect("read").expect("found");
    assert_eq!(saved.status, OrderStatus::Partial);
    assert_eq!(saved.controlled_fen, Some(80_000));
    assert_eq!(saved.shortfall_fen, Some(20_000));
    assert_eq!(saved.decided_at_ms, Some(NOW + 2));
    assert_eq!(saved.updated_at_ms, NOW + 2);
    assert_eq!(
        store
            .plan("plan-1")
            .await
            .expect("plan")
            .expect("found")
            .due_at_ms,
        NOW + 2,
        "the plan looks again"
    );
    assert!(
        !store
            .save_order("gw-1", "ord-1", &applied, None, &[], NOW + 3)
            .await
            .expect("save"),
        "the lease was released"
    );

    // Each effect on the measure's order.
    let mut steps = Vec::new();
    for (o, effect) in [
        (
            &renew,
            MeasureEffect::Renewed {
                end_date: "2028-05-25".into(),
            },
        ),
        (&deduct, MeasureEffect::Deducted { amount_fen: 30_000 }),
        (&deduct, MeasureEffect::Deducted { amount_fen: 70_000 }),
        (&release, MeasureEffect::Released),
    ] {
        // gw-1 still holds the leases of its first claim; the deduction
        // saved once is due again and claimed again.
        let now = NOW + 100 + steps.len() as i64;
        store
            .claim_due_orders("gw-1", now, now + 30_000, -1)
            .await
            .expect("claim");
        let progress = OrderProgress {
            status: OrderStatus::Applied,
            phase: if matches!(effect, MeasureEffect::Deducted { amount_fen: 30_000 }) {
                OrderPhase::Send
            } else {
                OrderPhase::Done
            },
            due_at_ms: now,
            decided_at_ms: Some(now),
            ..OrderProgress::of(o)
        };
        assert!(
            store
                .save_order("gw-1", &o.id, &progress, Some(&effect), &[], now)
                .await
                .expect("save")
        );
        steps.push(store.order("ord-1").await.expect("read").expect("found"));
        let plan = store.plan("plan-1").await.expect("plan").expect("found");
        assert_eq!(plan.due_at_ms, now, "the measure's plan looks again");
    }
    assert_eq!(steps[0].measure_end.as_deref(), Some("2028-05-25"));
    assert_eq!(steps[0].updated_at_ms, NOW + 100);
    assert_eq!(
        (steps[1].deducted_fen, steps[1].controlled_fen),
        (30_000, Some(50_000))
    );
    assert_eq!(
        (steps[2].deducted_fen, steps[2].controlled_fen),
        (100_000, Some(0)),
        "never below zero"
    );
    assert_eq!(steps[3].status, OrderStatus::Released);
    assert_eq!(steps[3].phase, OrderPhase::Done);
    assert_eq!(
        store
            .order("ord-2")
            .await
            .expect("read")
            .expect("found")
            .status,
        OrderStatus::Applied
    );

    // A renewal of a measure no longer live changes nothing; a deduction
    // on a measure with no controlled amount leaves 0.
    let late = order_on("ord-5", "ord-1", ControlAction::Renew, NOW + 4);
    store.create_order(&late).await.expect("create");
    let mut bare = order("ord-6", "key-6");
    bare.due_at_ms = FAR * 2;
    store.create_order(&bare).await.expect("create");
    let deduct_bare = order_on("ord-7", "ord-6", ControlAction::Deduct, NOW + 5);
    store.create_order(&deduct_bare).await.expect("create");
    let now = NOW + 200;
    let claimed = store
        .claim_due_orders("gw-1", now, now + 30_000, -1)
        .await
        .expect("claim");
    let claimed_ids: BTreeSet<_> = claimed.iter().map(|c| c.id.as_str()).collect();
    assert!(claimed_ids.contains("ord-5") && claimed_ids.contains("ord-7"));
    assert!(!claimed_ids.contains("ord-6"), "not due");
    let done = |o: &OrderRecord| OrderProgress {
        status: OrderStatus::Applied,
        phase: OrderPhase::Done,
        ..OrderProgress::of(o)
    };
    store
        .save_order(
            "gw-1",
            "ord-5",
            &done(&late),
            Some(&MeasureEffect::Renewed {
                end_date: "2030-01-01".into(),
            }),
            &[],
            now,
        )
        .await
        .expect("save");
    store
        .save_order(
            "gw-1",
            "ord-7",
            &done(&deduct_bare),
            Some(&MeasureEffect::Deducted { amount_fen: 5 }),
            &[],
            now,
        )
        .await
        .expect("save");
    let measure = store.order("ord-1").await.expect("read").expect("found");
    assert_eq!(measure.measure_end.as_deref(), Some("2028-05-25"));
    let bare = store.order("ord-6").await.expect("read").expect("found");
    assert_eq!((bare.deducted_fen, bare.controlled_fen), (5, Some(0)));

    // release_order keeps the detail unless given one.
    let mut pending = order("ord-8", "key-8");
    pending.detail = Some("first".into());
    store.create_order(&pending).await.expect("create");
    let claimed = store
        .claim_due_orders("gw-9", now, now + 30_000, -1)
        .await
        .expect("claim");
    assert!(claimed.iter().any(|c| c.id == "ord-8"));
    store
        .release_order("gw-9", "ord-8", now + 5, None)
        .await
        .expect("release");
    let read = store.order("ord-8").await.expect("read").expect("found");
    assert_eq!(
        (read.detail.as_deref(), read.due_at_ms),
        (Some("first"), now + 5)
    );
    store
        .claim_due_orders("gw-9", now + 5, now + 30_000, -1)
        .await
        .expect("claim");
    store
        .release_order("gw-9", "ord-8", now + 6, Some("second"))
        .await
        .expect("release");
    let read = store.order("ord-8").await.expect("read").expect("found");
    assert_eq!(read.detail.as_deref(), Some("second"));

    // The callback the freeze's step wrote.
    let outbox = store
        .claim_outbox("gw-1", NOW + 2, FAR, 10)
        .await
        .expect("outbox");
    assert_eq!(outbox, [callback("cb-applied", NOW + 2)]);
}

async fn order_expiry_and_warnings(db: &TestDb) {
    let store = db.open().await;
    let live = |id: &str, status: &str, end: &str| {
        let mut o = order(id, &format!("key-{id}"));
        o.status = OrderStatus::parse(status).expect("a status");
        o.phase = OrderPhase::Watch;
        o.measure_end = Some(end.into());
        o.due_at_ms = FAR;
        o
    };
    let mut with_plan = live("m-1", "applied", "2026-05-10");
    with_plan.plan_id = Some("plan-1".into());
    for o in [
        with_plan,
        live("m-2", "partial", "2026-05-20"),
        live("m-3", "waiting", "2026-06-30"),
        live("m-4", "released", "2026-05-01"),
        live("m-5", "applied", "2026-05-11"),
    ] {
        store.create_order(&o).await.expect("create");
    }
    let mut renewal = order_on("r-1", "m-3", ControlAction::Renew, NOW);
    renewal.status = OrderStatus::Applied;
    renewal.measure_end = Some("2026-01-01".into());
    store.create_order(&renewal).await.expect("create");
    store
        .create_plan(&plan("plan-1", "pk-1", FAR))
        .await
        .expect("plan");

    let expiring: Vec<_> = store
        .orders_by_case("court-a", &renewal.case_number, Some("2026-06-01"), 10)
        .await
        .expect("by case")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(
        expiring,
        ["m-1", "m-5", "m-2"],
        "by end date, measures only"
    );

    let warn: Vec<_> = store
        .orders_to_warn("2026-06-01", 2)
        .await
        .expect("warn")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(warn, ["m-1", "m-5"]);
    let mut warning = callback("cb-warn-m-1", NOW);
    warning.event = "measure.expiring".into();
    store
        .mark_warned("m-1", "2026-05-10", Some(&warning))
        .await
        .expect("warned");
    store
        .mark_warned("m-5", "2026-05-01", None)
        .await
        .expect("warned for another end date");
    let warn: Vec<_> = store
        .orders_to_warn("2026-06-01", -1)
        .await
        .expect("warn")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(warn, ["m-5", "m-2"], "warned once per end date");
    assert_eq!(
        store
            .order("m-1")
            .await
            .expect("read")
            .expect("found")
            .warned_end
            .as_deref(),
        Some("2026-05-10")
    );

    // A leased measure expires too, and its lease goes.
    let claimed = store
        .claim_due_orders("gw-1", FAR, FAR + 30_000, -1)
        .await
        .expect("claim");
    assert!(claimed.iter().any(|o| o.id == "m-2"));
    let notify = |o: &OrderRecord| {
        (o.id != "m-5").then(|| OutboxRecord {
            resource_id: o.id.clone(),
            event: "measure.expired".into(),
            ..callback(&format!("cb-exp-{}", o.id), NOW + 7)
        })
    };
    let expired = store
        .expire_orders("2026-05-21", NOW + 7, &notify)
        .await
        .expect("expire");
    let mut ids: Vec<_> = expired.iter().map(|o| o.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["m-1", "m-2", "m-5"]);
    assert!(
        expired
            .iter()
            .all(|o| o.status == OrderStatus::Expired && o.phase == OrderPhase::Done)
    );
    assert!(expired.iter().all(|o| o.updated_at_ms == NOW + 7));
    assert!(
        store
            .expire_orders("2026-05-21", NOW + 8, &notify)
            .await
            .expect("expire")
            .is_empty(),
        "once"
    );
    assert_eq!(
        store
            .plan("plan-1")
            .await
            .expect("plan")
            .expect("found")
            .due_at_ms,
        NOW + 7
    );
    // Expiry took m-2's lease: a step saved under the old lease is refused.
    let m2 = store.order("m-2").await.expect("read").expect("found");
    assert!(
        !store
            .save_order("gw-1", "m-2", &OrderProgress::of(&m2), None, &[], NOW + 9)
            .await
            .expect("save")
    );
    let mut callbacks: Vec<_> = store
        .claim_outbox("gw-1", NOW + 7, FAR, -1)
        .await
        .expect("outbox")
        .into_iter()
        .map(|c| c.id)
        .collect();
    callbacks.sort();
    assert_eq!(callbacks, ["cb-exp-m-1", "cb-exp-m-2", "cb-warn-m-1"]);
    assert_eq!(
        store
            .order("m-3")
            .await
            .expect("read")
            .expect("found")
            .status,
        OrderStatus::Waiting
    );
    assert_eq!(
        store
            .order("r-1")
            .await
            .expect("read")
            .expect("found")
            .status,
        OrderStatus::Applied,
        "only measures expire"
    );
}

async fn plans_and_outbox(db: &TestDb) {
    let store = db.open().await;
    let other = db.open().await;
    assert_eq!(store.next_order_work_ms().await.expect("next"), None);

    let first = plan("plan-1", "pk-1", NOW);
    assert!(matches!(
        store.create_plan(&first).await.expect("create"),
        Created::New(p) if p == first
    ));
    match other
        .create_plan(&plan("plan-2", "pk-1", NOW))
        .await
        .expect("create")
    {
        Created::Existing(p) => assert_eq!(p, first),
        Created::New(p) => panic!("new {p:?}"),
    }
    assert_eq!(
        store.plan_by_key("court-a", "pk-1").await.expect("read"),
        Some(first.clone())
    );
    assert!(store.plan("plan-2").await.expect("read").is_none());
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let store = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                matches!(
                    store
                        .create_plan(&plan(&format!("race-{i}"), "pk-race", FAR))
                        .await
                        .expect("create"),
                    Created::New(_)
                )
            })
        })
        .collect();
    let mut new = 0;
    for racer in racers {
        new += usize::from(racer.await.expect("racer"));
    }
    assert_eq!(new, 1, "one plan per key");

    let later = plan("plan-3", "pk-3", NOW + 50);
    store.create_plan(&later).await.expect("create");
    assert_eq!(store.next_order_work_ms().await.expect("next"), Some(NOW));

    let claimed = store
        .claim_due_plans("gw-1", NOW, NOW + 30_000, 10)
        .await
        .expect("claim");
    assert_eq!(claimed, std::slice::from_ref(&first));
    assert!(
        other
            .claim_due_plans("gw-2", NOW, NOW + 30_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let progress = PlanProgress {
        next_index: 1,
        status: PlanStatus::Running,
        controlled_fen: 12_500_000,
        detail: Some("bank-a: partial".into()),
        due_at_ms: NOW + 1_000,
        completed_at_ms: None,
    };
    assert!(
        !other
            .save_plan("gw-2", "plan-1", &progress, None, NOW + 1)
            .await
            .expect("save")
    );
    assert!(
        store
            .save_plan(
                "gw-1",
                "plan-1",
                &progress,
                Some(&callback("cb-plan", NOW + 1)),
                NOW + 1
            )
            .await
            .expect("save")
    );
    let saved = store.plan("plan-1").await.expect("read").expect("found");
    assert_eq!(saved.next_index, 1);
    assert_eq!(saved.controlled_fen, 12_500_000);
    assert_eq!(saved.detail.as_deref(), Some("bank-a: partial"));
    assert_eq!(saved.updated_at_ms, NOW + 1);
    let finished = PlanProgress {
        status: PlanStatus::Completed,
        completed_at_ms: Some(NOW + 1_000),
        ..progress.clone()
    };
    store
        .claim_due_plans("gw-1", NOW + 1_000, NOW + 30_000, 10)
        .await
        .expect("claim");
    assert!(
        store
            .save_plan("gw-1", "plan-1", &finished, None, NOW + 1_000)
            .await
            .expect("save")
    );
    let claimed: Vec<_> = store
        .claim_due_plans("gw-1", FAR, FAR, 10)
        .await
        .expect("claim")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert!(!claimed.contains(&"plan-1".to_string()), "completed");

    // The outbox: claimed when due, retried, given up, delivered.
    store
        .enqueue(&callback("cb-1", NOW + 5))
        .await
        .expect("enqueue");
    store
        .enqueue(&callback("cb-2", NOW + 6))
        .await
        .expect("enqueue");
    let outbox = store
        .claim_outbox("gw-1", NOW + 5, NOW + 100, 10)
        .await
        .expect("claim");
    let mut ids: Vec<_> = outbox.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["cb-1", "cb-plan"], "only the due ones");
    let cb1 = outbox.iter().find(|c| c.id == "cb-1").expect("cb-1");
    assert_eq!(*cb1, callback("cb-1", NOW + 5), "bytes kept");
    store
        .outbox_attempted(
            "gw-1",
            "cb-1",
            1,
            OutboxOutcome::Retry {
                due_at_ms: NOW + 500,
                error: "HTTP 503".into(),
            },
            NOW + 6,
        )
        .await
        .expect("attempted");
    store
        .outbox_attempted("gw-1", "cb-plan", 1, OutboxOutcome::Delivered, NOW + 6)
        .await
        .expect("attempted");
    store
        .outbox_attempted("gw-x", "cb-2", 9, OutboxOutcome::Delivered, NOW + 6)
        .await
        .expect("not the lease holder: nothing");
    let outbox = store
        .claim_outbox("gw-1", NOW + 6, NOW + 100, 10)
        .await
        .expect("claim");
    let ids: Vec<_> = outbox.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["cb-2"]);
    store
        .outbox_attempted(
            "gw-1",
            "cb-2",
            5,
            OutboxOutcome::GaveUp {
                error: "refused 5 times".into(),
            },
            NOW + 7,
        )
        .await
        .expect("attempted");
    let outbox = store
        .claim_outbox("gw-2", NOW + 500, NOW + 1_000, 10)
        .await
        .expect("claim");
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].id, "cb-1");
    assert_eq!(outbox[0].attempts, 1);
    assert_eq!(outbox[0].due_at_ms, NOW + 500);
    assert!(
        store
            .claim_outbox("gw-1", FAR, FAR, 10)
            .await
            .expect("claim")
            .iter()
            .all(|c| c.id == "cb-1"),
        "delivered and given-up callbacks are never claimed again"
    );
    assert_eq!(
        store.next_order_work_ms().await.expect("next"),
        Some(NOW + 50),
        "plan-3 is due first"
    );
}

/// Many results stored in one transaction: only where the lease is still
/// held, and the inquiries they finish completed, once, also when two
/// gateways finish the last two tasks of one inquiry at the same moment.
async fn batched_task_results(db: &TestDb) {
    let store = db.open().await;
    let other = db.open().await;
    for id in ["b-1", "b-2", "b-3"] {
        store
            .create_inquiry(
                &inquiry(id, "case-b", NOW - 1_000),
                &tasks_for(id, &["bank-a", "bank-b"]),
            )
            .await
            .expect("create");
    }
    let claimed = store
        .claim_due_tasks("gw-1", NOW, FAR, 10, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 6);
    let result = |inquiry: &str, agency: &str, state: &str| TaskResult {
        inquiry_id: inquiry.into(),
        agency: agency.into(),
        update: TaskUpdate {
            ticket: Some(format!("T-{inquiry}-{agency}")),
            result: (state == "answered").then(|| vec![account(inquiry)]),
            ..update(state)
        },
    };
    // b-1 finished whole, b-2 half, and a result for a lease gw-1 does not
    // hold (another owner's) is refused.
    let done = store
        .finish_tasks(
            "gw-1",
            &[
                result("b-1", "bank-a", "answered"),
                result("b-1", "bank-b", "no_record"),
                result("b-2", "bank-a", "timeout"),
            ],
            NOW,
        )
        .await
        .expect("finish");
    assert_eq!(done.stored, [true, true, true]);
    assert_eq!(done.completed, ["b-1"]);
    let refused = store
        .finish_tasks("gw-2", &[result("b-2", "bank-b", "answered")], NOW)
        .await
        .expect("finish");
    assert_eq!(refused.stored, [false]);
    assert!(refused.completed.is_empty());
    let b1 = store.inquiry("b-1").await.expect("read").expect("found");
    assert_eq!(b1.status, InquiryStatus::Completed);
    assert_eq!(b1.completed_at_ms, Some(NOW));
    let tasks = store.tasks("b-1").await.expect("tasks");
    let states: Vec<(&str, &str, Option<&str>)> = tasks
        .iter()
        .map(|t| (t.agency.as_str(), t.state.as_str(), t.ticket.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            ("bank-a", "answered", Some("T-b-1-bank-a")),
            ("bank-b", "no_record", Some("T-b-1-bank-b")),
        ]
    );
    assert_eq!(tasks[0].result, Some(vec![account("b-1")]));
    assert_eq!(tasks[0].latency_ms, Some(12));
    // Stored results release the lease: nothing of b-1 is claimable, and a
    // repeated result is refused.
    let again = store
        .finish_tasks("gw-1", &[result("b-1", "bank-a", "answered")], NOW)
        .await
        .expect("finish");
    assert_eq!(again.stored, [false]);

    // The last tasks of b-2 and b-3 finished by two store handles at once:
    // each inquiry is completed exactly once.
    let first = [
        result("b-2", "bank-b", "answered"),
        result("b-3", "bank-a", "answered"),
    ];
    let second = [result("b-3", "bank-b", "no_record")];
    let (x, y) = tokio::join!(
        store.finish_tasks("gw-1", &first, NOW + 1),
        other.finish_tasks("gw-1", &second, NOW + 2),
    );
    let (x, y) = (x.expect("finish"), y.expect("finish"));
    assert_eq!(x.stored, [true, true]);
    assert_eq!(y.stored, [true]);
    let mut completed: Vec<String> = x.completed.into_iter().chain(y.completed).collect();
    completed.sort();
    assert_eq!(completed, ["b-2", "b-3"]);
    for id in ["b-2", "b-3"] {
        let i = store.inquiry(id).await.expect("read").expect("found");
        assert_eq!(i.status, InquiryStatus::Completed, "{id}");
    }
    // A pushed result that is the last completes its inquiry in its own
    // transaction.
    let mut pushed = inquiry("b-4", "case-b", NOW - 1_000);
    pushed.deadline_at_ms = NOW + 10;
    store
        .create_inquiry(&pushed, &tasks_for("b-4", &["bank-a"]))
        .await
        .expect("create");
    let claimed = store
        .claim_due_tasks("gw-1", NOW, FAR, 10, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let mut acknowledged = update("awaiting");
    acknowledged.due_at_ms = FAR;
    assert!(finish_one(&store, "gw-1", "b-4", "bank-a", &acknowledged).await);
    assert_eq!(
        store
            .finish_awaiting_task("bank-a", "Qb-4-bank-a", &update("no_record"), NOW + 5)
            .await
            .expect("pushed result"),
        (true, true)
    );
    // An inquiry left with no unfinished task but not completed (here one
    // with no task at all; or one an older gateway left so) is completed
    // by its deadline at the latest.
    let mut empty = inquiry("b-5", "case-b", NOW - 1_000);
    empty.deadline_at_ms = NOW + 10;
    store.create_inquiry(&empty, &[]).await.expect("create");
    let (overdue, _) = store.time_out(NOW).await;
    assert!(!overdue.contains(&"b-5".to_owned()));
    assert_eq!(
        store.time_out(NOW + 10).await,
        (vec!["b-5".to_owned()], vec!["b-5".to_owned()])
    );
    assert_eq!(store.time_out(NOW + 20).await, (vec![], vec![]));
    // An empty batch is nothing.
    let empty = store.finish_tasks("gw-1", &[], NOW).await.expect("finish");
    assert!(empty.stored.is_empty() && empty.completed.is_empty());
}

/// An instance that accepts an inquiry stores its first tasks claimed by
/// itself (the dispatcher's hand-off): nobody else claims them while the
/// lease runs, the rest are due to anyone, the claimant's results are
/// stored as a claim's would be, and a lapsed lease frees them again with
/// the attempt counted.
async fn inquiries_stored_with_their_tasks_claimed(db: &TestDb) {
    let store = db.open().await;
    let other = db.open().await;
    let id = "h-1";
    let tasks = tasks_for(id, &["bank-a", "bank-b", "bank-c"]);
    let lease = TaskLease {
        owner: "gw-1".into(),
        until_ms: NOW + 10_000,
        count: 2,
    };
    store
        .create_inquiry_claimed(&inquiry(id, "case-h", NOW - 1_000), &tasks, Some(&lease))
        .await
        .expect("create");
    let handed = lease.claimed(id, &tasks);
    let agencies: Vec<&str> = handed.iter().map(|t| t.agency.as_str()).collect();
    assert_eq!(agencies, ["bank-a", "bank-b"]);
    assert!(
        handed
            .iter()
            .all(|t| t.state == TaskState::Queued && t.attempts == 1)
    );
    assert_eq!(handed[0].request_number, "Qh-1-bank-a");

    // Another instance finds only the unclaimed task.
    let claimed = other
        .claim_due_tasks("gw-2", NOW, FAR, 10, &[])
        .await
        .expect("claim");
    let agencies: Vec<&str> = claimed.iter().map(|t| t.agency.as_str()).collect();
    assert_eq!(agencies, ["bank-c"]);
    assert_eq!(claimed[0].attempts, 1);

    // The claimant's results are stored; another owner's are not.
    assert!(finish_one(&store, "gw-1", id, "bank-a", &update("answered")).await);
    assert!(!finish_one(&other, "gw-2", id, "bank-b", &update("answered")).await);

    // Once the lease lapses, anyone may claim what is left, and the
    // attempt made under it counts.
    let later = NOW + 10_000;
    let reclaimed = other
        .claim_due_tasks("gw-2", later, later + 10_000, 10, &[])
        .await
        .expect("claim after the lease");
    let agencies: Vec<&str> = reclaimed.iter().map(|t| t.agency.as_str()).collect();
    assert_eq!(agencies, ["bank-b"]);
    assert_eq!(reclaimed[0].attempts, 2);

    // Without a lease nothing is claimed; a lease over every task claims all.
    store
        .create_inquiry_claimed(
            &inquiry("h-2", "case-h", NOW),
            &tasks_for("h-2", &["bank-a"]),
            None,
        )
        .await
        .expect("create unclaimed");
    let all = TaskLease {
        owner: "gw-1".into(),
        until_ms: FAR,
        count: 1,
    };
    store
        .create_inquiry_claimed(
            &inquiry("h-3", "case-h", NOW),
            &tasks_for("h-3", &["bank-a"]),
            Some(&all),
        )
        .await
        .expect("create claimed");
    let claimed = other
        .claim_due_tasks("gw-2", NOW, FAR, 10, &[])
        .await
        .expect("claim");
    let ids: Vec<&str> = claimed.iter().map(|t| t.inquiry_id.as_str()).collect();
    assert_eq!(ids, ["h-2"]);
    let stored = store.tasks("h-3").await.expect("tasks");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].state, TaskState::Queued);
}

/// Several new inquiries in one call (the inquiry writer's group commit):
/// each with its own tasks and claim, all stored or none; read back with
/// their tasks in one call.
async fn inquiries_stored_together(db: &TestDb) {
    let store = db.open().await;
    let other = db.open().await;
    let lease = |count| {
        Some(TaskLease {
            owner: "gw-1".into(),
            until_ms: FAR,
            count,
        })
    };
    // A fleet inquiry spans several multi-row statements on SQLite.
    let fleet: Vec<String> = (0..1_100).map(|i| format!("bank-{i:04}")).collect();
    let fleet: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let new = vec![
        NewInquiry {
            record: inquiry("t-1", "case-t", NOW),
            tasks: tasks_for("t-1", &["bank-b", "bank-a"]),
            lease: lease(2),
        },
        NewInquiry {
            record: inquiry("t-2", "case-t", NOW),
            tasks: tasks_for("t-2", &fleet),
            lease: lease(1_000),
        },
        NewInquiry {
            record: inquiry("t-3", "case-t", NOW),
            tasks: tasks_for("t-3", &["bank-a", "bank-c"]),
            lease: None,
        },
        NewInquiry {
            record: inquiry("t-4", "case-t", NOW),
            tasks: Vec::new(),
            lease: None,
        },
    ];
    store.create_inquiries(&new).await.expect("create");

    let (record, tasks) = store
        .inquiry_with_tasks("t-1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(record.officers, new[0].record.officers);
    assert_eq!(record.catalog_version.as_deref(), Some("cfg_1"));
    let agencies: Vec<&str> = tasks.iter().map(|t| t.agency.as_str()).collect();
    assert_eq!(agencies, ["bank-a", "bank-b"], "by agency");
    assert!(tasks.iter().all(|t| t.inquiry_id == "t-1"));
    assert_eq!(tasks, store.tasks("t-1").await.expect("tasks"));
    let (_, tasks) = store
        .inquiry_with_tasks("t-2")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(tasks.len(), 1_100);
    let (record, tasks) = store
        .inquiry_with_tasks("t-4")
        .await
        .expect("read")
        .expect("an inquiry without tasks");
    assert_eq!(record.id, "t-4");
    assert!(tasks.is_empty());
    assert!(
        store
            .inquiry_with_tasks("nope")
            .await
            .expect("read")
            .is_none()
    );

    // What was claimed as stored is not claimed again: t-2's last 100 and
    // t-3's two are.
    let claimed = other
        .claim_due_tasks("gw-2", NOW, FAR, 10_000, &[])
        .await
        .expect("claim");
    let mut got: Vec<(&str, &str)> = claimed
        .iter()
        .map(|t| (t.inquiry_id.as_str(), t.agency.as_str()))
        .collect();
    got.sort();
    let mut want: Vec<(&str, &str)> = fleet[1_000..].iter().map(|a| ("t-2", *a)).collect();
    want.extend([("t-3", "bank-a"), ("t-3", "bank-c")]);
    assert_eq!(got, want);

    // One inquiry that cannot be stored (its id is taken) fails the call,
    // and nothing of it is stored.
    let failed = store
        .create_inquiries(&[
            NewInquiry {
                record: inquiry("t-5", "case-t", NOW),
                tasks: tasks_for("t-5", &["bank-a"]),
                lease: None,
            },
            NewInquiry {
                record: inquiry("t-1", "case-t", NOW),
                tasks: Vec::new(),
                lease: None,
            },
        ])
        .await;
    assert!(failed.is_err());
    assert!(store.inquiry("t-5").await.expect("read").is_none());
    assert!(store.tasks("t-5").await.expect("read").is_empty());
}

/// A handle chains a batch after the tail it last wrote, in a statement
/// that checks it is still the tail. When another handle (another gateway)
/// appended meanwhile, the batch is chained again after the tail as stored.
async fn audit_follows_rows_another_handle_appended(db: &TestDb) {
    let first = db.open().await;
    let second = db.open().await;
    let batch = |at: i64, n: i64| (0..n).map(|i| audit(at + i, "inquiry.send")).collect();
    let seqs = |rows: &[gateway::audit::AuditRow]| rows.iter().map(|r| r.seq).collect::<Vec<_>>();

    let a = first.append_audit(batch(NOW, 3)).await.expect("first");
    assert_eq!(seqs(&a), [1, 2, 3]);
    let b = first
        .append_audit(batch(NOW + 10, 2))
        .await
        .expect("its own tail");
    assert_eq!(seqs(&b), [4, 5]);
    let c = second
        .append_audit(batch(NOW + 20, 2))
        .await
        .expect("second");
    assert_eq!(seqs(&c), [6, 7]);
    assert_eq!(c[0].prev_hash, b[1].hash);
    let d = first
        .append_audit(batch(NOW + 30, 2))
        .await
        .expect("after the other's");
    assert_eq!(seqs(&d), [8, 9]);
    assert_eq!(d[0].prev_hash, c[1].hash);
    assert_eq!(verified_chain(&first).await.len(), 9);

    // Rows that come with a change (the journal's transaction under the
    // chain's lock) follow the handle's own tail, and the other's rows
    // when it moved the chain on meanwhile.
    let with_change = |store: &Arc<dyn Store>, at: i64, id: &'static str| {
        let store = store.clone();
        async move {
            let entry = store::JournalEntry {
                row: Some(audit(at, "order.freeze")),
                change: Some(store::Change::Enqueue(Box::new(callback(id, at)))),
            };
            let mut done = store
                .append_journal(vec![entry], at, None)
                .await
                .expect("journal");
            done.remove(0).row.expect("its row").seq
        }
    };
    assert_eq!(with_change(&first, NOW + 40, "cb-1").await, 10);
    assert_eq!(with_change(&first, NOW + 50, "cb-2").await, 11);
    let e = second
        .append_audit(batch(NOW + 60, 2))
        .await
        .expect("second again");
    assert_eq!(seqs(&e), [12, 13]);
    assert_eq!(with_change(&first, NOW + 70, "cb-3").await, 14);
    assert_eq!(with_change(&second, NOW + 80, "cb-4").await, 15);
    assert_eq!(verified_chain(&first).await.len(), 15);
}

/// Decisions' turns (`lock_decision`): one holder of a key at a time,
/// across two handles on PostgreSQL (two gateways on one database; a
/// SQLite file serves one gateway, so there both are one handle), other
/// keys free meanwhile, a wait that ends with `Busy`, a turn dropped
/// mid-way given back, and keys asked for in any order never deadlocked.
async fn decisions_take_turns_by_key(db: &TestDb) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    let first = db.open().await;
    let second = if db.pg.is_some() {
        db.open().await
    } else {
        first.clone()
    };
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let long = Duration::from_secs(20);

    // Twenty decisions on one asset, from both handles: never two inside.
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let deciders: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { &first } else { &second }.clone();
            let (inside, most) = (inside.clone(), most.clone());
            let keys = keys(&["asset:bank-a:account:1", &format!("key:order:c:{i}")]);
            tokio::spawn(async move {
                let turn = store.lock_decision(&keys, long).await.expect("a turn");
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // What a decision does in its turn: reads, and a write.
                store.order("ord-none").await.expect("read");
                store
                    .append_audit(vec![audit(NOW + i, "order.create")])
                    .await
                    .expect("audit");
                inside.fetch_sub(1, Ordering::SeqCst);
                turn.release().await;
            })
        })
        .collect();
    for d in deciders {
        d.await.expect("decider");
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "one decision at a time");

    // A held key: another key is free; the same key waits, then is Busy.
    let held = first
        .lock_decision(&keys(&["k1"]), long)
        .await
        .expect("free");
    second
        .lock_decision(&keys(&["k2"]), Duration::from_secs(5))
        .await
        .expect("another key is free")
        .release()
        .await;
    let asked = tokio::time::Instant::now();
    match second
        .lock_decision(&keys(&["k2", "k1"]), Duration::from_millis(300))
        .await
    {
        Err(StoreError::Busy(_)) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("k1 is held"),
    }
    assert!(
        asked.elapsed() >= Duration::from_millis(250),
        "{:?}",
        asked.elapsed()
    );
    // Dropped rather than released (a request cancelled mid-way): given
    // back all the same.
    drop(held);
    second
        .lock_decision(&keys(&["k1"]), Duration::from_secs(10))
        .await
        .expect("given back")
        .release()
        .await;

    // Keys asked for in either order, over and over, from both handles.
    let crossing: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 { &first } else { &second }.clone();
            let keys = if i % 4 < 2 {
                keys(&["p", "q"])
            } else {
                keys(&["q", "p"])
            };
            tokio::spawn(async move {
                store
                    .lock_decision(&keys, long)
                    .await
                    .expect("no deadlock")
                    .release()
                    .await;
            })
        })
        .collect();
    for c in crossing {
        c.await.expect("crossing");
    }
}

/// One column of one row as its text is stored, read around the store.
async fn column_text(db: &TestDb, sql: &'static str) -> Option<String> {
    if db.pg.is_some() {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .expect("connect");
        sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("read")
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
            .await
            .expect("connect");
        sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("read")
    }
}

/// Typed records are written to their columns in the very text earlier
/// versions wrote (states by name, JSON as `serde_json` writes it, a
/// plan's accounts with their keys sorted), so databases written before
/// read back, and rows written now read the same to anything else.
async fn records_keep_their_column_text(db: &TestDb) {
    let store = db.open().await;
    let record = inquiry("inq-t", "case-t", NOW);
    store
        .create_inquiry(&record, &tasks_for("inq-t", &["bank-a"]))
        .await
        .expect("create");
    let officers = r#"[{"name":"李明","work_card_no":"G620503001","credential_no":"ZX620503001"}]"#;
    let court = r#"{"code":"甘0503","name":"天水市麦积区人民法院"}"#;
    for (sql, text) in [
        ("SELECT subject_kind FROM inquiries", "person"),
        ("SELECT subject_id FROM inquiries", "360426199101010071"),
        ("SELECT officers FROM inquiries", officers),
        ("SELECT court FROM inquiries", court),
        (
            "SELECT asset_kinds FROM inquiries",
            r#"["bank_account","real_estate"]"#,
        ),
        ("SELECT warnings FROM inquiries", "[]"),
        ("SELECT status FROM inquiries", "running"),
        ("SELECT state FROM agency_tasks", "queued"),
    ] {
        assert_eq!(column_text(db, sql).await.as_deref(), Some(text), "{sql}");
    }
    let claimed = store
        .claim_due_tasks("gw-1", NOW, FAR, 1, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let mut answered = update("answered");
    answered.result = Some(vec![account("6217000010001234567")]);
    assert!(finish_one(&store, "gw-1", "inq-t", "bank-a", &answered).await);
    assert_eq!(
        column_text(db, "SELECT result FROM agency_tasks").await,
        serde_json::to_string(&answered.result).ok()
    );
    assert_eq!(
        column_text(db, "SELECT state FROM agency_tasks")
            .await
            .as_deref(),
        Some("answered")
    );

    let measure = order("ord-t", "key-t");
    store.create_order(&measure).await.expect("create");
    store
        .claim_due_orders("gw-1", NOW, FAR, 1)
        .await
        .expect("claim");
    let acked = vec![DocumentAck {
        number: "ruling-1".into(),
        sha256: "cd".repeat(32),
    }];
    let progress = OrderProgress {
        status: OrderStatus::Waiting,
        phase: OrderPhase::Watch,
        acknowledged_documents: Some(acked.clone()),
        documents_mismatch: true,
        ..OrderProgress::of(&measure)
    };
    assert!(
        store
            .save_order("gw-1", "ord-t", &progress, None, &[], NOW)
            .await
            .expect("save")
    );
    let digest = "ab".repeat(32);
    let documents = format!(
        r#"[{{"kind":"ruling","number":"ruling-1","sha256":"{digest}"}},{{"kind":"assist_notice","number":"assist_notice-1","sha256":"{digest}"}}]"#
    );
    let acknowledged = format!(
        r#"[{{"number":"ruling-1","sha256":"{}"}}]"#,
        "cd".repeat(32)
    );
    for (sql, text) in [
        ("SELECT action FROM orders", "freeze"),
        ("SELECT status FROM orders", "waiting"),
        ("SELECT phase FROM orders", "watch"),
        ("SELECT officers FROM orders", officers),
        ("SELECT court FROM orders", court),
        ("SELECT documents FROM orders", documents.as_str()),
        (
            "SELECT acknowledged_documents FROM orders",
            acknowledged.as_str(),
        ),
    ] {
        assert_eq!(column_text(db, sql).await.as_deref(), Some(text), "{sql}");
    }
    let read = store.order("ord-t").await.expect("read").expect("found");
    assert_eq!(read.acknowledged_documents, Some(acked));
    assert_eq!(read.documents, measure.documents);
    assert_eq!(read.action, ControlAction::Freeze);
    assert!(read.documents_mismatch);

    let p = plan("plan-t", "key-plan-t", NOW);
    store.create_plan(&p).await.expect("create");
    assert_eq!(
        column_text(db, "SELECT accounts FROM freeze_plans")
            .await
            .as_deref(),
        Some(
            r#"{"skipped":[{"account_number":"2","agency":"bank-c","reason":"not a CNY account"}],"try":[{"account_number":"1","agency":"bank-a","available_fen":13000000}]}"#
        )
    );
    let read = store.plan("plan-t").await.expect("read").expect("found");
    assert_eq!(read, p);
}

/// An auditor's long query runs on a reader's connection: commits of the
/// audit log go on while it runs. Shown by commits that both begin and
/// complete while a query runs; with reads and writes queued in turn on
/// one connection (as SQLite's store once had), a commit begun after the
/// query waits for its end.
async fn an_auditor_query_does_not_hold_up_the_journal(db: &TestDb) {
    let store = db.open().await;
    // Enough rows that a query no index answers (an officer's substring)
    // reads for a while.
    for batch in 0..100 {
        let rows = (0..500)
            .map(|i| {
                let n = batch * 500 + i;
                request(
                    NOW + n,
                    &format!("subject-{n}"),
                    &format!("(2024)京0105执{n}号"),
                    &[&format!("officer {n} (JZ{n})")],
                )
            })
            .collect();
        store.append_audit(rows).await.expect("fill the log");
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let commits = Arc::new(std::sync::Mutex::new(Vec::<(
        std::time::Instant,
        std::time::Instant,
    )>::new()));
    let writer = tokio::spawn({
        let (store, stop, commits) = (store.clone(), stop.clone(), commits.clone());
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let begun = std::time::Instant::now();
                store
                    .append_audit(vec![audit(NOW + 1_000_000 + n, "inquiry.read")])
                    .await
                    .expect("a commit beside the query");
                commits
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((begun, std::time::Instant::now()));
                n += 1;
            }
        }
    });
    let filter = AuditFilter {
        officer: Some("nobody by this name".into()),
        limit: 100,
        ..AuditFilter::default()
    };
    let mut overlapped = 0;
    let mut queries = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while overlapped == 0 && queries < 50 && std::time::Instant::now() < deadline {
        let started = std::time::Instant::now();
        let found = store
            .audit_events(&filter)
            .await
            .expect("the auditor's query");
        let ended = std::time::Instant::now();
        assert!(found.is_empty());
        queries += 1;
        overlapped = commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(begun, done)| *begun > started && *done < ended)
            .count();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("the writer");
    assert!(
        overlapped > 0,
        "no commit completed while any of {queries} auditor queries ran"
    );
    // The commits made beside the queries are in the chain like any other.
    verified_chain(&store).await;
}

/// The callbacks a test gateway makes: court-a takes them, nobody else.
struct TestCallbacks;

impl store::CompletionCallbacks for TestCallbacks {
    fn takes(&self, caller: &str) -> bool {
        caller == "court-a"
    }

    fn lapsed(&self, _order: &OrderRecord, _now_ms: i64) -> Option<OutboxRecord> {
        None
    }

    fn completed(
        &self,
        inquiry: &InquiryRecord,
        tasks: &[store::TaskRecord],
        now_ms: i64,
    ) -> Option<OutboxRecord> {
        Some(OutboxRecord {
            id: format!("dlv-{}", inquiry.id),
            caller: inquiry.caller.clone(),
            event: "inquiry.completed".into(),
            resource_id: inquiry.id.clone(),
            // What the transaction saw: every task finished.
            body: tasks
                .iter()
                .map(|t| format!("{}={}", t.agency, t.state.as_str()))
                .collect::<Vec<_>>()
                .join(",")
                .into_bytes(),
            attempts: 0,
            due_at_ms: now_ms,
            created_at_ms: now_ms,
        })
    }
}

/// The last result, the completion and the caller's callback are committed
/// by one journal transaction; a caller that takes no callbacks is left
/// owing none queued (the dispatcher clears it).
async fn a_completion_queues_its_callback_in_its_transaction(db: &TestDb) {
    let store = db.open().await;
    let mut other = inquiry("cb-2", "case-cb", NOW - 1_000);
    other.caller = "court-b".into();
    store
        .create_inquiry(
            &inquiry("cb-1", "case-cb", NOW - 1_000),
            &tasks_for("cb-1", &["bank-a", "bank-b"]),
        )
        .await
        .expect("create");
    store
        .create_inquiry(&other, &tasks_for("cb-2", &["bank-a"]))
        .await
        .expect("create");
    let claimed = store
        .claim_due_tasks("gw-1", NOW, FAR, 10, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    let entry = |inquiry: &str, agency: &str| store::JournalEntry {
        row: None,
        change: Some(store::Change::Result {
            owner: "gw-1".into(),
            result: TaskResult {
                inquiry_id: inquiry.into(),
                agency: agency.into(),
                update: update("no_record"),
            },
        }),
    };
    let finished = |j: &store::Journaled| match j.applied {
        Some(store::Applied::Finished { stored, completed }) => (stored, completed),
        ref other => panic!("{other:?}"),
    };
    // The first result completes nothing, and queues nothing.
    let first = store
        .append_journal(vec![entry("cb-1", "bank-a")], NOW, Some(&TestCallbacks))
        .await
        .expect("journal");
    assert_eq!(finished(&first[0]), (true, false));
    assert!(
        store
            .claim_outbox("gw-1", NOW, FAR, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let last = store
        .append_journal(
            vec![entry("cb-1", "bank-b"), entry("cb-2", "bank-a")],
            NOW,
            Some(&TestCallbacks),
        )
        .await
        .expect("journal");
    assert_eq!(finished(&last[0]), (true, true));
    assert_eq!(finished(&last[1]), (true, true));
    let queued = store
        .claim_outbox("gw-1", NOW, FAR, 10)
        .await
        .expect("claim");
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].resource_id, "cb-1");
    assert_eq!(queued[0].event, "inquiry.completed");
    assert_eq!(
        String::from_utf8_lossy(&queued[0].body),
        "bank-a=no_record,bank-b=no_record"
    );
    let owing = store
        .inquiries_owing_callbacks(&["court-a".into(), "court-b".into()], NOW, 10)
        .await
        .expect("owing");
    assert_eq!(owing, ["cb-2"], "queued ones are owed no more");
}

/// Makes the database refuse every audit row of `action`, as a failing
/// disk would refuse a write.
async fn refuse_audit_rows(db: &TestDb, action: &str) {
    if db.pg.is_some() {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .expect("connect");
        for sql in [
            "CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'could not write to file'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_events FOR EACH ROW \
                 WHEN (NEW.action = '{action}') EXECUTE FUNCTION refuse_row()"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("trigger");
        }
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
            .await
            .expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_events \
             WHEN NEW.action = '{action}' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )))
        .execute(&mut conn)
        .await
        .expect("trigger");
    }
}

/// A control order's outcome made of an agency's answer whose audit row
/// was given to the journal without waiting is stored with that row or
/// after it, never without it: refused when the row could not be recorded,
/// whether in the same transaction or an earlier one.
async fn an_order_outcome_is_never_stored_without_its_answer_row(db: &TestDb) {
    let store = db.open().await;
    store
        .create_order(&order("ord-a", "key-a"))
        .await
        .expect("create");
    let claimed = store
        .claim_due_orders("gw-1", NOW, FAR, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    refuse_audit_rows(db, "order.poison").await;
    let log = gateway::audit::AuditLog::start(store.clone(), 64)
        .await
        .expect("start");
    let answer = |action: &str| AuditRecord {
        direction: Some(Direction::Inbound),
        action: action.into(),
        agency: Some("bank-b".into()),
        ..AuditRecord::default()
    };
    let applied = OrderProgress {
        status: OrderStatus::Applied,
        phase: OrderPhase::Watch,
        controlled_fen: Some(100_000),
        decided_at_ms: Some(NOW + 1),
        ..OrderProgress::of(&claimed[0])
    };
    let save = || store::SaveOrder {
        owner: "gw-1".into(),
        id: "ord-a".into(),
        progress: applied.clone(),
        effect: None,
        notify: Vec::new(),
    };
    let status = || async {
        let o = store.order("ord-a").await.expect("read").expect("found");
        o.status
    };

    // The answer's row fails: the outcome made of it is refused (in the
    // row's transaction, or after it in one of its own).
    let bad = log
        .record_deferred(answer("order.poison"))
        .await
        .expect("queued");
    let refused = log.save_order_after(save(), vec![bad.clone()]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(bad.recorded().await.is_err());
    assert_eq!(status().await, OrderStatus::Accepted);
    // Given again after the row's failure is known: refused still, though
    // its own transaction would commit.
    let later = log.save_order_after(save(), vec![bad]).await;
    assert!(later.is_err(), "{later:?}");
    assert_eq!(status().await, OrderStatus::Accepted);

    // A recorded answer lets its outcome through.
    let good = log
        .record_deferred(answer("order.reply"))
        .await
        .expect("queued");
    assert!(
        log.save_order_after(save(), vec![good.clone()])
            .await
            .expect("stored"),
        "the lease holds"
    );
    good.recorded().await.expect("the row is committed");
    assert_eq!(status().await, OrderStatus::Applied);
    let rows = verified_chain(&store).await;
    let actions: Vec<_> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["order.reply"], "only the recorded row");
}

/// A batch, its subjects' inquiries with their tasks, and each subject's
/// "accepted" row are stored in one transaction after the batch's own row;
/// the same key again stores nothing (and no row says it was accepted).
/// Its counts and its subjects read back by line and by completion.
async fn batches_store_their_subjects_with_the_batch_row(db: &TestDb) {
    let store = db.open().await;
    let batch = |id: &str, key: &str| store::BatchRecord {
        id: id.into(),
        caller: "court-a".into(),
        idempotency_key: key.into(),
        body_sha256: "ab".repeat(32),
        court: court(),
        officers: officers(),
        asset_kinds: vec![AssetKind::BankAccount],
        lines: 4,
        last_line: 4,
        accepted: 3,
        refused: vec![store::RefusedLine {
            line: 3,
            code: "invalid_value".into(),
            message: "bad".into(),
            field: Some("subject.id_number".into()),
        }],
        created_at_ms: NOW,
    };
    // Lines 1, 2 and 4; the subjects' rows name their inquiries.
    let new_batch = |id: &str, key: &str, prefix: &str| {
        let mut inquiries = Vec::new();
        let mut rows = Vec::new();
        for line in [1i64, 2, 4] {
            let inquiry_id = format!("{prefix}-{line}");
            let mut record = inquiry(&inquiry_id, &format!("case-{line}"), NOW);
            record.batch_id = Some(id.into());
            record.batch_line = Some(line);
            let mut row = request(
                NOW,
                "360426199101010071",
                &format!("case-{line}"),
                &["李明"],
            );
            row.record.inquiry_id = Some(inquiry_id.clone());
            rows.push(row);
            inquiries.push(NewInquiry {
                tasks: tasks_for(&inquiry_id, &["bank-a", "bank-b"]),
                record,
                lease: None,
            });
        }
        store::NewBatch {
            record: batch(id, key),
            inquiries,
            rows,
        }
    };
    let entry = |new: store::NewBatch| store::JournalEntry {
        row: Some(audit(NOW, "inquiry_batch.create")),
        change: Some(store::Change::Batch(Box::new(new))),
    };
    // Another entry in the same transaction keeps its own receipt.
    let receipts = store
        .append_journal(
            vec![
                entry(new_batch("bat-1", "k-1", "b1")),
                store::JournalEntry {
                    row: Some(audit(NOW, "after")),
                    change: None,
                },
            ],
            NOW,
            None,
        )
        .await
        .expect("stored");
    let rows: Vec<Option<String>> = receipts
        .iter()
        .map(|r| r.row.as_ref().map(|r| r.record.action.clone()))
        .collect();
    assert_eq!(
        rows,
        [Some("inquiry_batch.create".into()), Some("after".into())]
    );
    assert!(matches!(
        receipts[0].applied,
        Some(store::Applied::Batch(ref c)) if matches!(**c, Created::New(_))
    ));
    let chain = verified_chain(&store).await;
    let actions: Vec<&str> = chain.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "inquiry_batch.create",
            "inquiry.create",
            "inquiry.create",
            "inquiry.create",
            "after"
        ]
    );
    assert_eq!(chain[2].inquiry_id.as_deref(), Some("b1-2"));

    // The same key again: the batch stored first, and nothing else.
    let again = store
        .append_journal(vec![entry(new_batch("bat-2", "k-1", "b2"))], NOW, None)
        .await
        .expect("replayed");
    assert!(again[0].row.is_none());
    match &again[0].applied {
        Some(store::Applied::Batch(c)) => match &**c {
            Created::Existing(b) => assert_eq!(b.id, "bat-1"),
            other => panic!("not the first batch: {other:?}"),
        },
        other => panic!("not a batch's receipt: {other:?}"),
    }
    assert!(store.inquiry("b2-1").await.expect("read").is_none());
    assert_eq!(verified_chain(&store).await.len(), 5);

    let stored = store.batch("bat-1").await.expect("read").expect("found");
    assert_eq!(stored.refused, batch("bat-1", "k-1").refused);
    assert_eq!(stored.officers, officers());
    let by_key = store
        .batch_by_key("court-a", "k-1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(by_key.id, "bat-1");
    assert!(
        store
            .batch_by_key("court-b", "k-1")
            .await
            .expect("read")
            .is_none()
    );

    // One subject answered and completed.
    let claimed = store
        .claim_due_tasks("gw-1", NOW, FAR, 10, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 6);
    for agency in ["bank-a", "bank-b"] {
        let finished = store
            .finish_tasks(
                "gw-1",
                &[TaskResult {
                    inquiry_id: "b1-2".into(),
                    agency: agency.into(),
                    update: update("answered"),
                }],
                NOW + 5,
            )
            .await
            .expect("finish");
        assert_eq!(finished.stored, [true]);
    }
    let counts = store.batch_counts("bat-1").await.expect("counts");
    let mut inquiries = counts.inquiries.clone();
    inquiries.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        inquiries,
        [(InquiryStatus::Completed, 1), (InquiryStatus::Running, 2)]
    );
    let bank_a: Vec<(TaskState, i64)> = counts
        .tasks
        .iter()
        .filter(|(a, _, _)| a == "bank-a")
        .map(|(_, s, n)| (*s, *n))
        .collect();
    assert_eq!(bank_a.len(), 2, "{bank_a:?}");
    assert_eq!(bank_a.iter().map(|(_, n)| n).sum::<i64>(), 3);

    let lines = store
        .batch_inquiries("bat-1", store::BatchSlice::Lines { after: 1, until: 4 })
        .await
        .expect("read");
    let got: Vec<(Option<i64>, usize)> =
        lines.iter().map(|(i, t)| (i.batch_line, t.len())).collect();
    assert_eq!(got, [(Some(2), 2), (Some(4), 2)]);
    let done = store
        .batch_inquiries(
            "bat-1",
            store::BatchSlice::CompletedAfter {
                at_ms: 0,
                after_line: 0,
                limit: 10,
            },
        )
        .await
        .expect("read");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0.id, "b1-2");
    assert_eq!(done[0].1.len(), 2);
    let at = done[0].0.completed_at_ms.expect("completed");
    let after = store
        .batch_inquiries(
            "bat-1",
            store::BatchSlice::CompletedAfter {
                at_ms: at,
                after_line: 2,
                limit: 10,
            },
        )
        .await
        .expect("read");
    assert!(after.is_empty());
}

/// What the case view reads (`GET /v1/cases/{case_number}`): the caller's
/// inquiries under a case with their tasks and when each answered, its
/// measures (not the orders acting on them), its plans and their orders;
/// another caller's and another case's rows never.
async fn a_cases_reads(db: &TestDb) {
    let store = db.open().await;
    let case = "(2024)甘0503执1234号";
    store
        .create_inquiry(
            &inquiry("inq-a", case, NOW - 2_000),
            &tasks_for("inq-a", &["bank-b", "bank-a"]),
        )
        .await
        .expect("create");
    store
        .create_inquiry(&inquiry("inq-b", case, NOW - 1_000), &[])
        .await
        .expect("create");
    let mut foreign = inquiry("inq-c", case, NOW);
    foreign.caller = "court-b".into();
    store
        .create_inquiry(&foreign, &tasks_for("inq-c", &["bank-a"]))
        .await
        .expect("create");
    store
        .create_inquiry(
            &inquiry("inq-d", "(2024)甘0503执1235号", NOW),
            &tasks_for("inq-d", &["bank-a"]),
        )
        .await
        .expect("create");
    let claimed = store
        .claim_due_tasks("gw-1", NOW, NOW + 30_000, 10, &[])
        .await
        .expect("claim");
    assert!(
        claimed
            .iter()
            .any(|t| t.inquiry_id == "inq-a" && t.agency == "bank-a")
    );
    let mut answered = update("answered");
    answered.result = Some(vec![account("6217000010001234567")]);
    assert!(finish_one(&store, "gw-1", "inq-a", "bank-a", &answered).await);

    let read = store
        .case_inquiries("court-a", case, 10)
        .await
        .expect("case inquiries");
    let shape: Vec<(&str, Vec<&str>)> = read
        .iter()
        .map(|(i, tasks)| {
            (
                i.id.as_str(),
                tasks.iter().map(|t| t.task.agency.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [("inq-b", vec![]), ("inq-a", vec!["bank-a", "bank-b"])],
        "newest first, an inquiry without tasks too, tasks by agency"
    );
    let bank_a = &read[1].1[0];
    assert_eq!(
        bank_a.finished_at_ms,
        NOW + 12,
        "sent, plus the answer's latency"
    );
    assert_eq!(bank_a.task.result.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        read[1].1[1].finished_at_ms,
        NOW - 2_000,
        "not sent: when due"
    );
    let one = store
        .case_inquiries("court-a", case, 1)
        .await
        .expect("read");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].0.id, "inq-b");
    assert!(
        store
            .case_inquiries("court-a", "(2024)甘0503执9999号", 10)
            .await
            .expect("read")
            .is_empty()
    );

    // Measures: the freezes and seals themselves, newest first.
    let mut freeze = order("ord-f", "k-f");
    freeze.case_number = case.into();
    freeze.created_at_ms = NOW - 10;
    store.create_order(&freeze).await.expect("create");
    let mut renewal = order_on("ord-r", "ord-f", ControlAction::Renew, NOW);
    renewal.case_number = case.into();
    store.create_order(&renewal).await.expect("create");
    let mut later = order("ord-g", "k-g");
    later.case_number = case.into();
    store.create_order(&later).await.expect("create");
    let mut elsewhere = order("ord-x", "k-x");
    elsewhere.case_number = "(2024)甘0503执1235号".into();
    store.create_order(&elsewhere).await.expect("create");
    let measures = store
        .measures_by_case("court-a", case, 10)
        .await
        .expect("measures");
    let ids: Vec<&str> = measures.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["ord-g", "ord-f"]);
    assert!(
        store
            .measures_by_case("court-b", case, 10)
            .await
            .expect("measures")
            .is_empty()
    );

    // Plans and their orders.
    let mut p1 = plan("plan-1", "pk-1", FAR);
    p1.case_number = case.into();
    store.create_plan(&p1).await.expect("create");
    let mut p2 = plan("plan-2", "pk-2", FAR);
    p2.case_number = case.into();
    p2.created_at_ms = NOW + 1;
    store.create_plan(&p2).await.expect("create");
    let mut p3 = plan("plan-3", "pk-3", FAR);
    p3.caller = "court-b".into();
    p3.case_number = case.into();
    store.create_plan(&p3).await.expect("create");
    let plans = store
        .plans_by_case("court-a", case, 10)
        .await
        .expect("plans");
    let ids: Vec<&str> = plans.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["plan-2", "plan-1"]);
    for (id, plan_id, at) in [
        ("ord-p2", "plan-2", NOW),
        ("ord-p1", "plan-1", NOW + 5),
        ("ord-p1b", "plan-1", NOW + 1),
    ] {
        let mut o = order(id, &format!("k-{id}"));
        o.plan_id = Some(plan_id.into());
        o.created_at_ms = at;
        store.create_order(&o).await.expect("create");
    }
    let of_plans = store
        .orders_of_plans(&["plan-1".to_owned(), "plan-2".to_owned()])
        .await
        .expect("orders of plans");
    let got: Vec<(&str, Option<&str>)> = of_plans
        .iter()
        .map(|o| (o.id.as_str(), o.plan_id.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("ord-p1b", Some("plan-1")),
            ("ord-p1", Some("plan-1")),
            ("ord-p2", Some("plan-2"))
        ]
    );
    assert!(store.orders_of_plans(&[]).await.expect("none").is_empty());
}
