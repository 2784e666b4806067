//! The PostgreSQL store: the same semantics as the SQLite store, for several
//! gateways sharing one database.
//!
//! Work is claimed with `FOR UPDATE SKIP LOCKED`, so two instances never
//! claim the same row; the audit chain is extended under the lock of the
//! one-row `audit_head` table, so several writers keep one chain. Text
//! columns are `COLLATE "C"`: comparisons and orderings are byte-wise, as in
//! SQLite. A negative `limit` means no limit, as in SQLite.
//!
//! Plans: every statement is prepared, and by default PostgreSQL soon
//! switches a prepared statement to a generic plan, made once from the
//! statistics of that moment. On a new database those are of nearly empty
//! tables, and the generic plans scan them whole: each completion check
//! read every inquiry until the next `ANALYZE`. So the gateway's
//! connections set `plan_cache_mode = force_custom_plan`: each execution
//! is planned for its own parameters (the arrays' lengths included) and
//! the tables' current sizes, at a few tens of microseconds a statement.
//! The conditions are also written so that the only index that serves
//! them is the one meant: `COALESCE(status, '')` and `COALESCE(state, '')`
//! keep a lookup by key off `inquiries_running` and `agency_tasks_due`,
//! whose ranges hold every running inquiry or unfinished task. With a
//! plain `state IN (...)` the planner, misled by statistics taken when few
//! tasks were unfinished, intersected the primary key with
//! `agency_tasks_due`, reading every unfinished task for each inquiry it
//! checked: the further the gateway fell behind, the slower each check.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder, Row};

use super::sqlite::REQUESTS;
use super::{
    AuditStore, Checkpoint, ClaimedTask, InquiryRecord, JobStore, NewAuditRow, NewInquiry,
    OfficerCase, OfficerDay, STATE_AWAITING, STATE_POLLING, STATE_QUEUED, StoreError, SubjectCases,
    TaskRecord, TaskUpdate, Window,
};
use super::{
    AuditTail, FinishedTasks, TaskResult, chain_rows, officers_json, stored_results, unchain,
};
use crate::audit::{AuditFilter, AuditRow, GENESIS_HASH, StoredAuditEvent};

#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    audit_tail: AuditTail,
    /// Decisions' turns: this process's part, and the connections that
    /// hold the database's part (a pool of their own, so that turns never
    /// take the connections their work needs).
    pub(super) local_locks: super::decision::LocalLocks,
    pub(super) lock_pool: PgPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections one gateway keeps to the database at most.
const MAX_CONNECTIONS: u32 = 16;

/// Connections one gateway keeps for decisions' turns at most: one for
/// each decision in its turn; more wait for one.
const LOCK_CONNECTIONS: u32 = 8;

/// A pooled connection idle this long is pinged before it is used.
const PING_WHEN_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

impl PgStore {
    /// Connects to the database a `postgres://` (or `postgresql://`) URL
    /// names and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// The same, from connection options.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        // Every statement is planned for its own parameters (the module's
        // note on plans).
        let options = options.options([("plan_cache_mode", "force_custom_plan")]);
        // A connection is pinged when it goes back to the pool (sqlx does
        // that always); before use only when it has been idle a while: a
        // ping before every statement would be one more round trip each.
        let pool_options = |max| {
            PgPoolOptions::new()
                .max_connections(max)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_WHEN_IDLE {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
        };
        let pool = pool_options(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await?;
        // The migrator holds an advisory lock while it runs: gateways
        // starting together apply each migration once.
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            audit_tail: AuditTail::default(),
            local_locks: Default::default(),
            lock_pool: pool_options(LOCK_CONNECTIONS).connect_lazy_with(options),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// New tasks column by column, for one `UNNEST` insert.
#[derive(Default)]
struct TaskColumns<'a> {
    inquiry_id: Vec<&'a str>,
    agency: Vec<&'a str>,
    request_number: Vec<&'a str>,
    due_at_ms: Vec<i64>,
    lease_owner: Vec<Option<&'a str>>,
    lease_until_ms: Vec<Option<i64>>,
    attempts: Vec<i64>,
}

/// SQLite reads a negative LIMIT as no limit; PostgreSQL refuses it, and
/// reads `LIMIT NULL` as no limit.
pub(super) fn limit(n: i64) -> Option<i64> {
    (n >= 0).then_some(n)
}

/// `$1, $2, ..., $n`.
pub(super) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const INQUIRY_COLUMNS: &str = "id, caller, case_number, subject_kind, subject_name, subject_id, \
     officers, asset_kinds, court, warnings, status, created_at_ms, deadline_at_ms, completed_at_ms, \
     catalog_version";

fn inquiry_from(row: &PgRow) -> Result<InquiryRecord, sqlx::Error> {
    Ok(InquiryRecord {
        id: row.try_get("id")?,
        caller: row.try_get("caller")?,
        case_number: row.try_get("case_number")?,
        subject_kind: row.try_get("subject_kind")?,
        subject_name: row.try_get("subject_name")?,
        subject_id: row.try_get("subject_id")?,
        officers: row.try_get("officers")?,
        asset_kinds: row.try_get("asset_kinds")?,
        court: row.try_get("court")?,
        warnings: row.try_get("warnings")?,
        status: row.try_get("status")?,
        created_at_ms: row.try_get("created_at_ms")?,
        deadline_at_ms: row.try_get("deadline_at_ms")?,
        completed_at_ms: row.try_get("completed_at_ms")?,
        catalog_version: row.try_get("catalog_version")?,
    })
}

/// A task row as `claim_due_tasks` and `awaiting_task` return it.
fn claimed_from(r: &PgRow) -> Result<ClaimedTask, sqlx::Error> {
    Ok(ClaimedTask {
        inquiry_id: r.try_get("inquiry_id")?,
        agency: r.try_get("agency")?,
        request_number: r.try_get("request_number")?,
        state: r.try_get("state")?,
        ticket: r.try_get("ticket")?,
        sent_at_ms: r.try_get("sent_at_ms")?,
        attempts: r.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
    })
}

#[async_trait]
impl JobStore for PgStore {
    async fn create_inquiries(&self, new: &[NewInquiry]) -> Result<(), StoreError> {
        if new.is_empty() {
            return Ok(());
        }
        // Column by column, each an array: one statement for every
        // inquiry, one for every task.
        let text = |f: fn(&InquiryRecord) -> &str| -> Vec<&str> {
            new.iter().map(|n| f(&n.record)).collect()
        };
        let number = |f: fn(&InquiryRecord) -> i64| -> Vec<i64> {
            new.iter().map(|n| f(&n.record)).collect()
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO inquiries ({INQUIRY_COLUMNS}) SELECT * FROM UNNEST(\
             $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], \
             $14::bigint[], $15::text[])"
        )))
        .bind(text(|r| &r.id))
        .bind(text(|r| &r.caller))
        .bind(text(|r| &r.case_number))
        .bind(text(|r| &r.subject_kind))
        .bind(text(|r| &r.subject_name))
        .bind(text(|r| &r.subject_id))
        .bind(text(|r| &r.officers))
        .bind(text(|r| &r.asset_kinds))
        .bind(text(|r| &r.court))
        .bind(text(|r| &r.warnings))
        .bind(text(|r| &r.status))
        .bind(number(|r| r.created_at_ms))
        .bind(number(|r| r.deadline_at_ms))
        .bind(
            new.iter()
                .map(|n| n.record.completed_at_ms)
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|n| n.record.catalog_version.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        let mut tasks = TaskColumns::default();
        for n in new {
            for (i, (agency, request_number)) in n.tasks.iter().enumerate() {
                // The first `lease.count` of each inquiry's tasks are
                // claimed.
                let lease = n.lease.as_ref().filter(|l| i < l.count);
                tasks.inquiry_id.push(n.record.id.as_str());
                tasks.agency.push(agency);
                tasks.request_number.push(request_number);
                tasks.due_at_ms.push(n.record.created_at_ms);
                tasks.lease_owner.push(lease.map(|l| l.owner.as_str()));
                tasks.lease_until_ms.push(lease.map(|l| l.until_ms));
                tasks.attempts.push(i64::from(lease.is_some()));
            }
        }
        if !tasks.inquiry_id.is_empty() {
            sqlx::query(
                "INSERT INTO agency_tasks (inquiry_id, agency, request_number, state, due_at_ms, \
                 lease_owner, lease_until_ms, attempts) \
                 SELECT t.inquiry_id, t.agency, t.request_number, $1, t.due_at_ms, \
                   t.lease_owner, t.lease_until_ms, t.attempts \
                 FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], \
                   $7::bigint[], $8::bigint[]) \
                   AS t (inquiry_id, agency, request_number, due_at_ms, lease_owner, \
                   lease_until_ms, attempts)",
            )
            .bind(STATE_QUEUED)
            .bind(tasks.inquiry_id)
            .bind(tasks.agency)
            .bind(tasks.request_number)
            .bind(tasks.due_at_ms)
            .bind(tasks.lease_owner)
            .bind(tasks.lease_until_ms)
            .bind(tasks.attempts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn inquiry(&self, id: &str) -> Result<Option<InquiryRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INQUIRY_COLUMNS} FROM inquiries WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(inquiry_from).transpose()?)
    }

    async fn tasks(&self, inquiry_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT inquiry_id, agency, request_number, state, detail, ticket, latency_ms, result \
             FROM agency_tasks WHERE inquiry_id = $1 ORDER BY agency",
        )
        .bind(inquiry_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TaskRecord {
                    inquiry_id: r.try_get("inquiry_id")?,
                    agency: r.try_get("agency")?,
                    request_number: r.try_get("request_number")?,
                    state: r.try_get("state")?,
                    detail: r.try_get("detail")?,
                    ticket: r.try_get("ticket")?,
                    latency_ms: r.try_get("latency_ms")?,
                    result: r.try_get("result")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn inquiry_with_tasks(
        &self,
        id: &str,
    ) -> Result<Option<(InquiryRecord, Vec<TaskRecord>)>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(super::inquiry_with_tasks_sql("$1")))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(super::inquiry_with_tasks_from(&rows, inquiry_from)?)
    }

    async fn inquiries_by_case(
        &self,
        caller: &str,
        case_number: &str,
        n: i64,
    ) -> Result<Vec<InquiryRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INQUIRY_COLUMNS} FROM inquiries WHERE case_number = $1 AND caller = $2 \
             ORDER BY created_at_ms DESC, id DESC LIMIT $3"
        )))
        .bind(case_number)
        .bind(caller)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(inquiry_from)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn claim_due_tasks(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        n: i64,
        skip_agencies: &[String],
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        // SKIP LOCKED: rows another instance is claiming right now are left
        // to it; a row it claimed and committed fails the lease test when
        // re-read under the lock.
        let rows = sqlx::query(
            "WITH due AS MATERIALIZED ( \
                 SELECT inquiry_id, agency FROM agency_tasks \
                 WHERE state IN ($3, $4) AND due_at_ms <= $5 \
                   AND (lease_until_ms IS NULL OR lease_until_ms <= $5) \
                   AND agency <> ALL ($6::text[]) \
                 ORDER BY due_at_ms LIMIT $7 \
                 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
                 UPDATE agency_tasks t \
                 SET lease_owner = $1, lease_until_ms = $2, attempts = t.attempts + 1 \
                 FROM due WHERE t.inquiry_id = due.inquiry_id AND t.agency = due.agency \
                 RETURNING t.inquiry_id, t.agency, t.request_number, t.state, t.ticket, \
                     t.sent_at_ms, t.due_at_ms, t.attempts) \
             SELECT inquiry_id, agency, request_number, state, ticket, sent_at_ms, attempts \
             FROM claimed \
             ORDER BY due_at_ms, inquiry_id, agency",
        )
        .bind(owner)
        .bind(lease_until_ms)
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(now_ms)
        .bind(skip_agencies)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(claimed_from)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn release_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        due_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE agency_tasks SET lease_owner = NULL, lease_until_ms = NULL, due_at_ms = $1 \
             WHERE inquiry_id = $2 AND agency = $3 AND lease_owner = $4",
        )
        .bind(due_at_ms)
        .bind(inquiry_id)
        .bind(agency)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn defer_task(
        &self,
        owner: &str,
        inquiry_id: &str,
        agency: &str,
        due_at_ms: i64,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE agency_tasks SET lease_owner = NULL, lease_until_ms = NULL, due_at_ms = $1, \
             detail = $2 WHERE inquiry_id = $3 AND agency = $4 AND lease_owner = $5",
        )
        .bind(due_at_ms)
        .bind(detail)
        .bind(inquiry_id)
        .bind(agency)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn running_catalog_versions(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT catalog_version FROM inquiries \
             WHERE status = 'running' AND catalog_version IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("catalog_version"))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn expire_overdue(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        // The running inquiries past their deadline first, along
        // `inquiries_running`; then their unfinished tasks, by primary key.
        // Every such inquiry is returned, also one with no task left to
        // time out: one whose last results were stored but whose
        // completion check failed (the database went away between the
        // two) is completed by its deadline at the latest.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM inquiries WHERE status = 'running' AND deadline_at_ms <= $1 \
             ORDER BY deadline_at_ms LIMIT 1000",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        if ids.is_empty() {
            return Ok(ids);
        }
        // `COALESCE(state, '')`: see the module's note on plans.
        sqlx::query(
            "UPDATE agency_tasks SET state = 'timeout', \
                 detail = 'no answer before the inquiry''s deadline', \
                 lease_owner = NULL, lease_until_ms = NULL \
             WHERE inquiry_id = ANY($1::text[]) AND COALESCE(state, '') IN ($2, $3, $4) \
               AND (lease_until_ms IS NULL OR lease_until_ms <= $5)",
        )
        .bind(&ids)
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(STATE_AWAITING)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(ids)
    }

    async fn try_complete(&self, inquiry_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE inquiries SET status = 'completed', completed_at_ms = $1, callback_due = 1 \
             WHERE id = $2 AND COALESCE(status, '') = 'running' AND NOT EXISTS \
               (SELECT 1 FROM agency_tasks WHERE inquiry_id = $2 AND COALESCE(state, '') IN ($3, $4, $5))",
        )
        .bind(now_ms)
        .bind(inquiry_id)
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(STATE_AWAITING)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    fn concurrent_writers(&self) -> usize {
        4
    }

    async fn finish_tasks(
        &self,
        owner: &str,
        results: &[TaskResult],
        now_ms: i64,
    ) -> Result<FinishedTasks, StoreError> {
        use std::collections::HashSet;
        if results.is_empty() {
            return Ok(FinishedTasks::default());
        }
        let text = |f: for<'a> fn(&'a TaskResult) -> Option<&'a str>| {
            results.iter().map(f).collect::<Vec<Option<&str>>>()
        };
        let int = |f: fn(&TaskResult) -> Option<i64>| results.iter().map(f).collect::<Vec<_>>();
        // One statement for the batch, one array per column, committed on
        // its own.
        let rows = sqlx::query(
            "UPDATE agency_tasks t SET state = v.state, detail = v.detail, \
                 ticket = COALESCE(v.ticket, t.ticket), due_at_ms = v.due_at_ms, \
                 sent_at_ms = COALESCE(t.sent_at_ms, v.sent_at_ms), latency_ms = v.latency_ms, \
                 result = v.result, lease_owner = NULL, lease_until_ms = NULL \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::int8[], $7::int8[], $8::int8[], $9::text[]) \
                 AS v (inquiry_id, agency, state, detail, ticket, due_at_ms, sent_at_ms, \
                     latency_ms, result) \
             WHERE t.inquiry_id = v.inquiry_id AND t.agency = v.agency AND t.lease_owner = $10 \
             RETURNING t.inquiry_id, t.agency",
        )
        .bind(text(|r| Some(r.inquiry_id.as_str())))
        .bind(text(|r| Some(r.agency.as_str())))
        .bind(text(|r| Some(r.update.state.as_str())))
        .bind(text(|r| r.update.detail.as_deref()))
        .bind(text(|r| r.update.ticket.as_deref()))
        .bind(int(|r| Some(r.update.due_at_ms)))
        .bind(int(|r| r.update.sent_at_ms))
        .bind(int(|r| r.update.latency_ms))
        .bind(text(|r| r.update.result.as_deref()))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let mut stored_keys: HashSet<(String, String)> = HashSet::new();
        for row in rows {
            stored_keys.insert((row.try_get("inquiry_id")?, row.try_get("agency")?));
        }
        let (stored, touched) = stored_results(results, &stored_keys);
        // The completion check runs after the results' commit, in a
        // statement of its own (READ COMMITTED: a fresh snapshot). Of two
        // batches finishing the last tasks of one inquiry at once, the
        // later to commit sees both results; had the check run inside the
        // batch's transaction, each could see the other's task unfinished
        // and neither would complete the inquiry.
        // The COALESCEs keep the plan on the primary keys (the module's
        // note on plans). Another instance's writer may check some of the
        // same inquiries at once (after a lease ran out), locking them in
        // another order: a deadlock then fails one of the two statements,
        // which is simply run again. The results are committed already;
        // failing here would leave their inquiry running until its
        // deadline.
        let mut attempt = 0;
        let rows = loop {
            attempt += 1;
            let checked = sqlx::query(
                "UPDATE inquiries SET status = 'completed', completed_at_ms = $1, callback_due = 1 \
                 WHERE id = ANY($2::text[]) AND COALESCE(status, '') = 'running' \
                   AND NOT EXISTS (SELECT 1 FROM agency_tasks \
                       WHERE inquiry_id = inquiries.id AND COALESCE(state, '') IN ($3, $4, $5)) \
                 RETURNING id",
            )
            .bind(now_ms)
            .bind(&touched)
            .bind(STATE_QUEUED)
            .bind(STATE_POLLING)
            .bind(STATE_AWAITING)
            .fetch_all(&self.pool)
            .await;
            match checked {
                Err(e) if attempt < 3 && is_deadlock(&e) => continue,
                other => break other?,
            }
        };
        let completed = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<Vec<String>, _>>()?;
        Ok(FinishedTasks { stored, completed })
    }

    async fn awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
    ) -> Result<Option<ClaimedTask>, StoreError> {
        let row = sqlx::query(
            "SELECT inquiry_id, agency, request_number, state, ticket, sent_at_ms, attempts \
             FROM agency_tasks WHERE agency = $1 AND request_number = $2 AND state = $3",
        )
        .bind(agency)
        .bind(request_number)
        .bind(STATE_AWAITING)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(claimed_from)
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
    }

    async fn finish_awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
        u: &TaskUpdate,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE agency_tasks SET state = $1, detail = $2, ticket = COALESCE($3, ticket), \
             due_at_ms = $4, latency_ms = $5, result = $6 \
             WHERE agency = $7 AND request_number = $8 AND state = $9",
        )
        .bind(&u.state)
        .bind(&u.detail)
        .bind(&u.ticket)
        .bind(u.due_at_ms)
        .bind(u.latency_ms)
        .bind(&u.result)
        .bind(agency)
        .bind(request_number)
        .bind(STATE_AWAITING)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn next_due_ms(&self, skip_agencies: &[String]) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(GREATEST(due_at_ms, COALESCE(lease_until_ms, 0))) AS next \
             FROM agency_tasks WHERE state IN ($1, $2) AND agency <> ALL ($3::text[])",
        )
        .bind(STATE_QUEUED)
        .bind(STATE_POLLING)
        .bind(skip_agencies)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("next")?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // The probe row tries the audit table itself, rolled back: a
        // read-only database (a standby, or `default_transaction_read_only`)
        // refuses it, and so does an audit table that takes no rows while
        // the rest of the database does. Its number is no chain row's, and
        // it takes no lock on the chain's head.
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO audit_events (seq, at_ms, direction, action, prev_hash, hash) \
             VALUES (-1, 0, 'internal', 'readiness.probe', '', '')",
        )
        .execute(&mut *tx)
        .await?;
        tx.rollback().await?;
        Ok(())
    }

    async fn queue_counts(&self, now_ms: i64) -> Result<Vec<super::QueueCount>, StoreError> {
        super::fetch_queue_counts(&self.pool, ["$1", "$2", "$3"], now_ms).await
    }
}

const AUDIT_COLUMNS: &str = "seq, at_ms, direction, caller, officers, case_number, subject, agency, \
     action, inquiry_id, request_number, status, latency_ms, body_sha256, body, prev_hash, hash";
/// What reads select: officers as the JSON text.
const AUDIT_SELECT: &str = "seq, at_ms, direction, caller, officers::text AS officers, case_number, \
     subject, agency, action, inquiry_id, request_number, status, latency_ms, body_sha256, body, \
     prev_hash, hash";
/// The same, with NULL for the body (verification needs only its digest).
const AUDIT_SELECT_NO_BODY: &str = "seq, at_ms, direction, caller, officers::text AS officers, \
     case_number, subject, agency, action, inquiry_id, request_number, status, latency_ms, \
     body_sha256, NULL::bytea AS body, prev_hash, hash";

/// ASCII case folding, as SQLite's LIKE does (and nothing more).
const ASCII_UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ASCII_LOWER: &str = "abcdefghijklmnopqrstuvwxyz";

/// The records of rows that were not stored, to be chained again.
/// The statement lost a deadlock (or a serialization conflict) and can be
/// run again.
fn is_deadlock(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

fn is_unique_violation(e: &StoreError) -> bool {
    match e {
        StoreError::Database(e) => e
            .as_database_error()
            .is_some_and(|d| d.is_unique_violation()),
        _ => false,
    }
}

/// Inserts `rows` (one statement, one array per column) and moves the
/// chain's head (`audit_head`: the last row's number and hash) to the last
/// of them. With `after`, only if the head is still that tail: otherwise
/// nothing is stored and the answer is `false`. A writer that finds the
/// head row locked re-reads it once the holder commits (READ COMMITTED),
/// so two writers never both chain after one tail. Without `after` the
/// head moves unconditionally: the caller holds its lock.
async fn insert_audit<'e, E>(
    executor: E,
    rows: &[AuditRow],
    after: Option<(i64, &str)>,
) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let Some(last) = rows.last() else {
        return Ok(true);
    };
    let officers = officers_json(rows)?;
    let col_i64 = |f: fn(&AuditRow) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let text = |f: for<'a> fn(&'a AuditRow) -> Option<&'a str>| {
        rows.iter().map(f).collect::<Vec<Option<&str>>>()
    };
    let directions: Vec<&str> = rows
        .iter()
        .map(|r| r.record.direction.map(|d| d.as_str()).unwrap_or("inbound"))
        .collect();
    let actions: Vec<&str> = rows.iter().map(|r| r.record.action.as_str()).collect();
    let latencies: Vec<Option<i64>> = rows.iter().map(|r| r.record.latency_ms).collect();
    let bodies: Vec<Option<&[u8]>> = rows.iter().map(|r| r.record.body.as_deref()).collect();
    let prevs: Vec<&str> = rows.iter().map(|r| r.prev_hash.as_str()).collect();
    let hashes: Vec<&str> = rows.iter().map(|r| r.hash.as_str()).collect();
    let done = sqlx::query(AssertSqlSafe(format!(
        "WITH head AS ( \
             UPDATE audit_head SET seq = $18, hash = $19 \
             WHERE id = 1 AND ($20::int8 IS NULL OR (seq = $20 AND hash = $21)) \
             RETURNING id) \
         INSERT INTO audit_events ({AUDIT_COLUMNS}) \
         SELECT seq, at_ms, direction, caller, officers::jsonb, case_number, subject, \
             agency, action, inquiry_id, request_number, status, latency_ms, body_sha256, \
             body, prev_hash, hash \
         FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
             $12::text[], $13::int8[], $14::text[], $15::bytea[], $16::text[], $17::text[]) \
             AS t ({AUDIT_COLUMNS}) \
         WHERE EXISTS (SELECT 1 FROM head)"
    )))
    .bind(col_i64(|r| r.seq))
    .bind(col_i64(|r| r.at_ms))
    .bind(directions)
    .bind(text(|r| r.record.caller.as_deref()))
    .bind(&officers)
    .bind(text(|r| r.record.case_number.as_deref()))
    .bind(text(|r| r.record.subject.as_deref()))
    .bind(text(|r| r.record.agency.as_deref()))
    .bind(actions)
    .bind(text(|r| r.record.inquiry_id.as_deref()))
    .bind(text(|r| r.record.request_number.as_deref()))
    .bind(text(|r| r.record.status.as_deref()))
    .bind(latencies)
    .bind(text(|r| r.body_sha256.as_deref()))
    .bind(bodies)
    .bind(prevs)
    .bind(hashes)
    .bind(last.seq)
    .bind(last.hash.as_str())
    .bind(after.map(|(seq, _)| seq))
    .bind(after.map(|(_, hash)| hash))
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == rows.len() as u64)
}

fn audit_from(row: &PgRow) -> Result<StoredAuditEvent, StoreError> {
    let officers: Option<String> = row.try_get("officers")?;
    let officers = match officers {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("audit officers: {e}")))?,
        None => Vec::new(),
    };
    Ok(StoredAuditEvent {
        seq: row.try_get("seq")?,
        at_ms: row.try_get("at_ms")?,
        direction: row.try_get("direction")?,
        caller: row.try_get("caller")?,
        officers,
        case_number: row.try_get("case_number")?,
        subject: row.try_get("subject")?,
        agency: row.try_get("agency")?,
        action: row.try_get("action")?,
        inquiry_id: row.try_get("inquiry_id")?,
        request_number: row.try_get("request_number")?,
        status: row.try_get("status")?,
        latency_ms: row.try_get("latency_ms")?,
        body_sha256: row.try_get("body_sha256")?,
        body: row.try_get("body")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[async_trait]
impl AuditStore for PgStore {
    async fn audit_tail(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("seq")?, r.try_get("hash")?)))
            .transpose()?)
    }

    async fn append_audit(&self, new: Vec<NewAuditRow>) -> Result<Vec<AuditRow>, StoreError> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        // The fast path: the batch chained after the tail this handle last
        // wrote, in one statement that moves the chain's head only if it is
        // still that tail (see `insert_audit`).
        let cached = self.audit_tail.get();
        let new = match cached {
            Some((seq, hash)) => {
                let rows = chain_rows(new, seq, hash.clone());
                match insert_audit(&self.pool, &rows, Some((seq, &hash))).await {
                    Ok(true) => {
                        self.audit_tail.keep(Some(&rows));
                        return Ok(rows);
                    }
                    // Another writer moved the chain on (or, as a gateway
                    // of an earlier version would, appended without moving
                    // the head: the sequence numbers collide).
                    Ok(false) => unchain(rows),
                    Err(e) if is_unique_violation(&e) => unchain(rows),
                    Err(e) => {
                        self.audit_tail.keep(None);
                        return Err(e);
                    }
                }
            }
            None => new,
        };
        // The slow path: under the head row's lock, after the tail as
        // stored.
        let appended = async {
            let mut tx = self.pool.begin().await?;
            // The chain's write lock, held until commit: another writer
            // waits here, and then (READ COMMITTED: a new snapshot per
            // statement) reads the tail this transaction leaves.
            sqlx::query("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
            let tail = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
            let (seq, prev) = match tail {
                Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
                None => (0, GENESIS_HASH.to_owned()),
            };
            let rows = chain_rows(new, seq, prev);
            insert_audit(&mut *tx, &rows, None).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(rows)
        }
        .await;
        match appended {
            Ok(rows) => {
                self.audit_tail.keep(Some(&rows));
                Ok(rows)
            }
            Err(e) => {
                self.audit_tail.keep(None);
                Err(e)
            }
        }
    }

    async fn audit_chain(
        &self,
        after_seq: i64,
        n: i64,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AUDIT_SELECT_NO_BODY} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after_seq)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at_ms, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.at_ms)
        .bind(&c.key_id)
        .bind(&c.signature)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, hash, at_ms, key_id, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at_ms: r.try_get("at_ms")?,
                    key_id: r.try_get("key_id")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn purge_bodies(&self, before_ms: i64, n: i64) -> Result<u64, StoreError> {
        // Two instances purging at once each drop different rows: the rows
        // one has locked the other skips, and a row already purged fails
        // `body IS NOT NULL` when re-read.
        let done = sqlx::query(
            "UPDATE audit_events SET body = NULL WHERE body IS NOT NULL AND seq IN ( \
                 SELECT seq FROM audit_events WHERE body IS NOT NULL AND at_ms < $1 \
                 ORDER BY at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(before_ms)
        .bind(limit(n))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn subjects_in_several_cases(
        &self,
        window: &Window,
        n: i64,
    ) -> Result<Vec<SubjectCases>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT subject, \
                 array_agg(DISTINCT case_number) FILTER (WHERE case_number IS NOT NULL) AS cases, \
                 COUNT(*) AS requests \
             FROM audit_events WHERE {REQUESTS} AND subject IS NOT NULL \
             AND at_ms >= $1 AND at_ms < $2 \
             GROUP BY subject HAVING COUNT(DISTINCT case_number) > 1 \
             ORDER BY COUNT(DISTINCT case_number) DESC, subject LIMIT $3"
        )))
        .bind(window.from_ms.unwrap_or(i64::MIN))
        .bind(window.to_ms.unwrap_or(i64::MAX))
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let cases: Option<Vec<String>> = r.try_get("cases")?;
                let mut cases = cases.unwrap_or_default();
                cases.sort();
                Ok(SubjectCases {
                    subject: r.try_get("subject")?,
                    cases,
                    requests: r.try_get("requests")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn officer_cases(&self, window: &Window) -> Result<Vec<OfficerCase>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT caller, o.officer COLLATE \"C\" AS officer, case_number, COUNT(*) AS requests \
             FROM audit_events \
             CROSS JOIN LATERAL jsonb_array_elements_text(audit_events.officers) AS o (officer) \
             WHERE {REQUESTS} AND case_number IS NOT NULL AND caller IS NOT NULL \
             AND at_ms >= $1 AND at_ms < $2 \
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )))
        .bind(window.from_ms.unwrap_or(i64::MIN))
        .bind(window.to_ms.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OfficerCase {
                    caller: r.try_get("caller")?,
                    officer: r.try_get("officer")?,
                    case_number: r.try_get("case_number")?,
                    requests: r.try_get("requests")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn officer_daily_volume(
        &self,
        window: &Window,
        threshold: i64,
    ) -> Result<Vec<OfficerDay>, StoreError> {
        // The civil day in UTC+8, from whole seconds truncated toward zero
        // as SQLite's integer division does.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT o.officer COLLATE \"C\" AS officer, \
                 to_char(to_timestamp((at_ms + 28800000) / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD') \
                     COLLATE \"C\" AS day, \
                 COUNT(*) AS requests \
             FROM audit_events \
             CROSS JOIN LATERAL jsonb_array_elements_text(audit_events.officers) AS o (officer) \
             WHERE {REQUESTS} AND at_ms >= $1 AND at_ms < $2 \
             GROUP BY 1, 2 HAVING COUNT(*) > $3 ORDER BY 2, 3 DESC, 1"
        )))
        .bind(window.from_ms.unwrap_or(i64::MIN))
        .bind(window.to_ms.unwrap_or(i64::MAX))
        .bind(threshold)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OfficerDay {
                    officer: r.try_get("officer")?,
                    day: r.try_get("day")?,
                    requests: r.try_get("requests")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<StoredAuditEvent>, StoreError> {
        // PostgreSQL text cannot hold U+0000, so no stored row matches a
        // filter that contains it (and binding it would be an error).
        let texts = [
            &f.case_number,
            &f.subject,
            &f.agency,
            &f.caller,
            &f.officer,
            &f.action,
            &f.inquiry_id,
        ];
        if texts
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
        {
            return Ok(Vec::new());
        }
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {AUDIT_SELECT} FROM audit_events WHERE 1 = 1"
        ));
        let text_filters = [
            ("case_number", &f.case_number),
            ("subject", &f.subject),
            ("agency", &f.agency),
            ("caller", &f.caller),
            ("action", &f.action),
            ("inquiry_id", &f.inquiry_id),
        ];
        for (column, value) in text_filters {
            if let Some(v) = value {
                q.push(format!(" AND {column} = ")).push_bind(v.clone());
            }
        }
        if let Some(officer) = &f.officer {
            // Officers are stored as a JSON array of "name (credential)"
            // strings; the filter is a substring of one, ASCII letters in
            // either case, taken literally (as on SQLite).
            let needle = officer.to_ascii_lowercase();
            q.push(format!(
                " AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(audit_events.officers) \
                 AS o (officer) WHERE strpos(translate(o.officer, '{ASCII_UPPER}', \
                 '{ASCII_LOWER}'), "
            ))
            .push_bind(needle)
            .push(") > 0)");
        }
        if let Some(from) = f.from_ms {
            q.push(" AND at_ms >= ").push_bind(from);
        }
        if let Some(to) = f.to_ms {
            q.push(" AND at_ms < ").push_bind(to);
        }
        if let Some(after) = f.after_seq {
            q.push(" AND seq > ").push_bind(after);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(limit(f.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_event(&self, seq: i64) -> Result<Option<StoredAuditEvent>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AUDIT_SELECT} FROM audit_events WHERE seq = $1"
        )))
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(audit_from).transpose()
    }
}
