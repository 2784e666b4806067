//! Inquiries and their agency tasks, on both backends.

use std::collections::HashSet;

use adapters::model::AgencyStatus;
use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};

use super::{Arg, Backend, Conn, Sql, SqlStore, batches, insert_rows, limit, select};
use crate::store::columns::{json, subject_kind};
use crate::store::states::sql_list;
use crate::store::{
    ClaimedTask, InquiryRecord, InquiryStatus, JobStore, NewInquiry, OrderPhase, QueueCount,
    StoreError, TaskRecord, TaskResult, TaskState, TaskUpdate, TimedTask,
};

const RUNNING: InquiryStatus = InquiryStatus::Running;
const QUEUED: TaskState = TaskState::Queued;
const POLLING: TaskState = TaskState::Polling;
const AWAITING: TaskState = TaskState::Awaiting;

pub(super) const INQUIRY_COLUMNS: &str = "id, caller, case_number, subject_kind, subject_name, \
     subject_id, officers, asset_kinds, court, warnings, status, created_at_ms, deadline_at_ms, \
     completed_at_ms, catalog_version, batch_id, batch_line";

pub(super) const TASK_COLUMNS: &str =
    "inquiry_id, agency, request_number, state, detail, ticket, latency_ms, result";

const CLAIMED_COLUMNS: &str =
    "inquiry_id, agency, request_number, state, ticket, sent_at_ms, attempts";

/// The most rows to a statement where statements take few values
/// (SQLite): inquiries (17 values each), tasks (8) and task results (9).
const INQUIRIES_PER_INSERT: usize = 64;
const TASKS_PER_INSERT: usize = 512;
const TASK_RESULTS_PER_UPDATE: usize = 256;

#[async_trait]
impl<B: Backend> JobStore for SqlStore<B> {
    async fn inquiry(&self, id: &str) -> Result<Option<InquiryRecord>, StoreError> {
        self.read_optional(select(INQUIRY_COLUMNS, "inquiries", "id = $1").bind(id))
            .await
    }

    async fn tasks(&self, inquiry_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let condition = "inquiry_id = $1 ORDER BY agency";
        self.read_all(select(TASK_COLUMNS, "agency_tasks", condition).bind(inquiry_id))
            .await
    }

    async fn inquiry_with_tasks(
        &self,
        id: &str,
    ) -> Result<Option<(InquiryRecord, Vec<TaskRecord>)>, StoreError> {
        let rows: Vec<InquiryTaskRow> = self.read_all(inquiry_with_tasks(id)).await?;
        Ok(InquiryTaskRow::gather(rows))
    }

    async fn inquiries_by_case(
        &self,
        caller: &str,
        case_number: &str,
        n: i64,
    ) -> Result<Vec<InquiryRecord>, StoreError> {
        self.read_all(
            select(
                INQUIRY_COLUMNS,
                "inquiries",
                "case_number = $1 AND caller = $2 ORDER BY created_at_ms DESC, id DESC LIMIT $3",
            )
            .bind(case_number)
            .bind(caller)
            .bind(limit(n)),
        )
        .await
    }

    async fn case_inquiries(
        &self,
        caller: &str,
        case_number: &str,
        n: i64,
    ) -> Result<Vec<(InquiryRecord, Vec<TimedTask>)>, StoreError> {
        // The inquiries along `inquiries_by_case`, their tasks along the
        // primary key (inquiry_id, agency).
        let rows: Vec<InquiryTimedTaskRow> = self
            .read_all(
                Sql::new(format!(
                    "WITH i AS (SELECT {INQUIRY_COLUMNS} FROM inquiries \
                         WHERE case_number = $1 AND caller = $2 \
                         ORDER BY created_at_ms DESC, id DESC LIMIT $3) \
                     SELECT {INQUIRY_COLUMNS}, {TASK_COLUMNS}, \
                         COALESCE(t.sent_at_ms + t.latency_ms, t.due_at_ms) AS finished_at_ms \
                     FROM i LEFT JOIN agency_tasks t ON t.inquiry_id = i.id \
                     ORDER BY i.created_at_ms DESC, i.id DESC, t.agency"
                ))
                .bind(case_number)
                .bind(caller)
                .bind(limit(n)),
            )
            .await?;
        Ok(InquiryTimedTaskRow::gather(rows))
    }

    async fn claim_due_tasks(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        n: i64,
        skip_agencies: &[String],
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        self.all(
            Sql::new(B::statements().claim_tasks.as_str())
                .bind(owner)
                .bind(lease_until_ms)
                .bind(QUEUED)
                .bind(POLLING)
                .bind(now_ms)
                .bind(skip_agencies)
                .bind(limit(n)),
        )
        .await
    }

    async fn running_catalog_versions(&self) -> Result<Vec<String>, StoreError> {
        let versions: Vec<(String,)> = self
            .all(Sql::new(format!(
                "SELECT DISTINCT catalog_version FROM inquiries \
                 WHERE status = '{RUNNING}' AND catalog_version IS NOT NULL"
            )))
            .await?;
        Ok(versions.into_iter().map(|(v,)| v).collect())
    }

    async fn overdue_inquiries(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        // Along `inquiries_running`.
        let ids: Vec<(String,)> = self
            .read_all(
                Sql::new(format!(
                    "SELECT id FROM inquiries WHERE status = '{RUNNING}' AND deadline_at_ms <= $1 \
                     ORDER BY deadline_at_ms LIMIT 1000"
                ))
                .bind(now_ms),
            )
            .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn awaiting_task(
        &self,
        agency: &str,
        request_number: &str,
    ) -> Result<Option<ClaimedTask>, StoreError> {
        self.read_optional(
            select(
                CLAIMED_COLUMNS,
                "agency_tasks",
                "agency = $1 AND request_number = $2 AND state = $3",
            )
            .bind(agency)
            .bind(request_number)
            .bind(AWAITING),
        )
        .await
    }

    async fn next_due_ms(&self, skip_agencies: &[String]) -> Result<Option<i64>, StoreError> {
        let next: Option<(Option<i64>,)> = self
            .optional(
                Sql::new(format!(
                    "SELECT MIN({greatest}(due_at_ms, COALESCE(lease_until_ms, 0))) AS next \
                     FROM agency_tasks WHERE state IN ($1, $2) AND NOT ({skip})",
                    greatest = B::GREATEST,
                    skip = B::one_of("agency", "$3"),
                ))
                .bind(QUEUED)
                .bind(POLLING)
                .bind(skip_agencies),
            )
            .await?;
        Ok(next.and_then(|(n,)| n))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A write transaction (SQLite takes the write lock at once: a
        // read-only or broken file fails here). The probe row tries the
        // audit table itself (where a full disk, a read-only standby or a
        // broken table shows first) and is rolled back. Its number is no
        // chain row's, and it takes no lock on the chain's head.
        let mut tx = self.begin().await?;
        B::execute(
            &mut tx,
            Sql::new(
                "INSERT INTO audit_events (seq, at_ms, direction, action, prev_hash, hash) \
                 VALUES (-1, 0, 'internal', 'readiness.probe', '', '')",
            ),
        )
        .await?;
        tx.rollback().await?;
        Ok(())
    }

    async fn queue_counts(&self, now_ms: i64) -> Result<Vec<QueueCount>, StoreError> {
        let rows: Vec<QueueRow> = self
            .read_all(Sql::new(queue_counts_sql()).bind(now_ms))
            .await?;
        let mut counts = Vec::with_capacity(rows.len() * 2);
        for r in rows {
            // Inquiries and orders by status are never claimed (`claimed`
            // is 0): one line each.
            if !matches!(r.queue.as_str(), "inquiry" | "order") {
                counts.push(QueueCount {
                    queue: r.queue.clone(),
                    key: r.k.clone(),
                    claimed: true,
                    count: r.claimed,
                });
            }
            counts.push(QueueCount {
                queue: r.queue,
                key: r.k,
                claimed: false,
                count: r.n - r.claimed,
            });
        }
        Ok(counts)
    }
}

/// An inquiry's row with one of its tasks, if it has any.
pub struct InquiryTaskRow {
    inquiry: InquiryRecord,
    task: Option<TaskRecord>,
}

impl InquiryTaskRow {
    /// The inquiry and its tasks, from the rows of `inquiry_with_tasks`.
    pub fn gather(rows: Vec<Self>) -> Option<(InquiryRecord, Vec<TaskRecord>)> {
        let mut rows = rows.into_iter();
        let first = rows.next()?;
        let tasks = first.task.into_iter().chain(rows.filter_map(|r| r.task));
        Some((first.inquiry, tasks.collect()))
    }
}

/// An inquiry with its tasks in one statement: the inquiry's columns come
/// with each task (the two tables share no column name); an inquiry
/// without tasks comes as one row with NULL task columns.
pub fn inquiry_with_tasks(id: &str) -> Sql<'_> {
    Sql::new(format!(
        "SELECT {INQUIRY_COLUMNS}, {TASK_COLUMNS} \
         FROM inquiries i LEFT JOIN agency_tasks t ON t.inquiry_id = i.id \
         WHERE i.id = $1 ORDER BY t.agency"
    ))
    .bind(id)
}

impl<'r, R: Row> FromRow<'r, R> for InquiryTaskRow
where
    InquiryRecord: FromRow<'r, R>,
    TaskRecord: FromRow<'r, R>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: ColumnIndex<R>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let task = match row.try_get::<Option<String>, _>("agency")? {
            Some(_) => Some(TaskRecord::from_row(row)?),
            None => None,
        };
        Ok(Self {
            inquiry: InquiryRecord::from_row(row)?,
            task,
        })
    }
}

/// An inquiry's row with one of its tasks and the time its last step was
/// stored, if it has any (`case_inquiries`).
pub struct InquiryTimedTaskRow {
    inquiry: InquiryRecord,
    task: Option<TimedTask>,
}

impl InquiryTimedTaskRow {
    /// Each inquiry with its tasks, in the rows' order (the rows of one
    /// inquiry come together).
    pub fn gather(rows: Vec<Self>) -> Vec<(InquiryRecord, Vec<TimedTask>)> {
        let mut out: Vec<(InquiryRecord, Vec<TimedTask>)> = Vec::new();
        for row in rows {
            match out.last_mut() {
                Some((inquiry, tasks)) if inquiry.id == row.inquiry.id => tasks.extend(row.task),
                _ => out.push((row.inquiry, row.task.into_iter().collect())),
            }
        }
        out
    }
}

impl<'r, R: Row> FromRow<'r, R> for InquiryTimedTaskRow
where
    InquiryRecord: FromRow<'r, R>,
    TimedTask: FromRow<'r, R>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: ColumnIndex<R>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let task = match row.try_get::<Option<String>, _>("agency")? {
            Some(_) => Some(TimedTask::from_row(row)?),
            None => None,
        };
        Ok(Self {
            inquiry: InquiryRecord::from_row(row)?,
            task,
        })
    }
}

/// One line of `queue_counts_sql`.
#[derive(sqlx::FromRow)]
struct QueueRow {
    queue: String,
    k: String,
    claimed: i64,
    n: i64,
}

/// The query behind `queue_counts`: per group, how many rows are claimed
/// and how many there are. Grouping by the indexed column alone (the
/// claimed ones summed, not grouped by) lets the database count along the
/// index instead of sorting every unfinished row. The lease bound is a
/// parameter, so the statement stays prepared.
fn queue_counts_sql() -> String {
    let claimed = "CAST(COALESCE(SUM(CASE WHEN COALESCE(lease_until_ms, 0) > $1 \
                   THEN 1 ELSE 0 END), 0) AS BIGINT)";
    let unfinished = sql_list(&TaskState::UNFINISHED);
    let done = OrderPhase::Done;
    format!(
        "SELECT 'task' AS queue, state AS k, {claimed} AS claimed, COUNT(*) AS n \
           FROM agency_tasks WHERE state IN {unfinished} GROUP BY state \
         UNION ALL SELECT 'inquiry', status, CAST(0 AS BIGINT), COUNT(*) FROM inquiries GROUP BY status \
         UNION ALL SELECT 'order_phase', phase, {claimed}, COUNT(*) FROM orders \
           WHERE phase <> '{done}' GROUP BY phase \
         UNION ALL SELECT 'order', status, CAST(0 AS BIGINT), COUNT(*) FROM orders GROUP BY status \
         UNION ALL SELECT 'outbox', 'pending', {claimed}, COUNT(*) FROM outbox \
           WHERE delivered_at_ms IS NULL AND failed_at_ms IS NULL"
    )
}

/// Stores an agency's pushed result for the task awaiting it, returning
/// its inquiry's id (no row when no task awaits it).
pub fn finish_awaiting<'a>(agency: &'a str, request_number: &'a str, u: &'a TaskUpdate) -> Sql<'a> {
    Sql::new(
        "UPDATE agency_tasks SET state = $1, detail = $2, \
         ticket = COALESCE($3, ticket), due_at_ms = $4, latency_ms = $5, result = $6 \
         WHERE agency = $7 AND request_number = $8 AND state = $9 \
         RETURNING inquiry_id",
    )
    .bind(u.state)
    .bind(&u.detail)
    .bind(&u.ticket)
    .bind(u.due_at_ms)
    .bind(u.latency_ms)
    .bind_json(u.result.as_ref())
    .bind(agency)
    .bind(request_number)
    .bind(AWAITING)
}

/// Times out the unfinished, unleased tasks of overdue inquiries
/// (`Change::TimeOut`, on the journal's transaction, which then completes
/// each inquiry left with no unfinished task: also one whose last results
/// were stored but not its completion).
pub async fn time_out<B: Backend>(
    conn: &mut Conn<B>,
    ids: &[String],
    now_ms: i64,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE agency_tasks SET state = '{timeout}', \
             detail = 'no answer before the inquiry''s deadline', \
             lease_owner = NULL, lease_until_ms = NULL \
         WHERE {ids} AND {state} IN ($2, $3, $4) \
           AND (lease_until_ms IS NULL OR lease_until_ms <= $5)",
        timeout = TaskState::Finished(AgencyStatus::Timeout),
        ids = B::one_of("inquiry_id", "$1"),
        state = B::by_key("state"),
    );
    B::execute(
        conn,
        Sql::new(sql)
            .bind(ids)
            .bind(QUEUED)
            .bind(POLLING)
            .bind(AWAITING)
            .bind(now_ms),
    )
    .await?;
    Ok(())
}

/// Completes the inquiries among `ids` that have no unfinished task left,
/// returning their ids and callers.
pub async fn complete_inquiries<B: Backend>(
    conn: &mut Conn<B>,
    ids: &[String],
    now_ms: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = Sql::new(format!(
        "UPDATE inquiries SET status = '{completed}', completed_at_ms = $1, callback_due = 1 \
         WHERE {ids} AND {status} = '{RUNNING}' \
           AND NOT EXISTS (SELECT 1 FROM agency_tasks \
               WHERE inquiry_id = inquiries.id AND {state} IN ($3, $4, $5)) \
         RETURNING id, caller",
        completed = InquiryStatus::Completed,
        ids = B::one_of("id", "$2"),
        status = B::by_key("status"),
        state = B::by_key("state"),
    ))
    .bind(now_ms)
    .bind(ids)
    .bind(QUEUED)
    .bind(POLLING)
    .bind(AWAITING);
    Ok(B::fetch_all(conn, sql).await?)
}

/// Inserts inquiries with their tasks (`Change::Inquiry`, in the
/// journal's transaction), the first `lease.count` of each inquiry's
/// tasks claimed.
pub async fn insert_inquiries<B: Backend>(
    conn: &mut Conn<B>,
    new: &[NewInquiry],
) -> Result<(), StoreError> {
    let inquiries = new.iter().map(|n| inquiry_row(&n.record));
    let inquiries = inquiries.collect::<Result<_, _>>()?;
    insert_rows::<B>(
        conn,
        "inquiries",
        INQUIRY_COLUMNS,
        inquiries,
        INQUIRIES_PER_INSERT,
    )
    .await?;
    // Many tasks per statement: an inquiry may go to thousands of agencies.
    let tasks = new.iter().flat_map(|n| {
        n.tasks
            .iter()
            .enumerate()
            .map(move |(i, (agency, request_number))| {
                let lease = n.lease.as_ref().filter(|l| i < l.count);
                vec![
                    Arg::from(&n.record.id),
                    agency.into(),
                    request_number.into(),
                    QUEUED.into(),
                    n.record.created_at_ms.into(),
                    lease.map(|l| l.owner.as_str()).into(),
                    lease.map(|l| l.until_ms).into(),
                    i64::from(lease.is_some()).into(),
                ]
            })
    });
    let columns = "inquiry_id, agency, request_number, state, due_at_ms, lease_owner, \
                   lease_until_ms, attempts";
    insert_rows::<B>(
        conn,
        "agency_tasks",
        columns,
        tasks.collect(),
        TASKS_PER_INSERT,
    )
    .await
}

/// An inquiry's values, in the order of `INQUIRY_COLUMNS`.
fn inquiry_row(r: &InquiryRecord) -> Result<Vec<Arg<'_>>, sqlx::Error> {
    Ok(vec![
        Arg::from(&r.id),
        (&r.caller).into(),
        (&r.case_number).into(),
        subject_kind(r.subject.kind()).into(),
        r.subject.name().into(),
        r.subject.identifier().into(),
        json(&r.officers)?.into(),
        json(&r.asset_kinds)?.into(),
        json(&r.court)?.into(),
        json(&r.warnings)?.into(),
        r.status.into(),
        r.created_at_ms.into(),
        r.deadline_at_ms.into(),
        r.completed_at_ms.into(),
        (&r.catalog_version).into(),
        (&r.batch_id).into(),
        r.batch_line.into(),
    ])
}

/// Stores task results, each only where `owner` still holds the task's
/// lease, releasing it; returns the (inquiry, agency) keys stored.
pub async fn update_tasks<B: Backend>(
    conn: &mut Conn<B>,
    owner: &str,
    results: &[TaskResult],
) -> Result<HashSet<(String, String)>, StoreError> {
    let rows = results.iter().map(|r| -> Result<_, sqlx::Error> {
        let u = &r.update;
        Ok(vec![
            Arg::from(&r.inquiry_id),
            (&r.agency).into(),
            u.state.into(),
            (&u.detail).into(),
            (&u.ticket).into(),
            u.due_at_ms.into(),
            u.sent_at_ms.into(),
            u.latency_ms.into(),
            u.result.as_ref().map(json).transpose()?.into(),
        ])
    });
    let rows = rows.collect::<Result<_, _>>()?;
    let mut stored = HashSet::new();
    for batch in batches::<B>(rows, TASK_RESULTS_PER_UPDATE) {
        let mut sql = Sql::new(
            "WITH v (inquiry_id, agency, state, detail, ticket, due_at_ms, sent_at_ms, \
             latency_ms, result) AS (",
        );
        B::push_rows(&mut sql, batch);
        // The padding rows' NULL keys match no task.
        sql.push(
            ") UPDATE agency_tasks SET state = v.state, detail = v.detail, \
             ticket = COALESCE(v.ticket, agency_tasks.ticket), due_at_ms = v.due_at_ms, \
             sent_at_ms = COALESCE(agency_tasks.sent_at_ms, v.sent_at_ms), \
             latency_ms = v.latency_ms, result = v.result, \
             lease_owner = NULL, lease_until_ms = NULL \
             FROM v WHERE agency_tasks.inquiry_id = v.inquiry_id \
               AND agency_tasks.agency = v.agency AND agency_tasks.lease_owner = ",
        )
        .push_bind(owner)
        .push(" RETURNING agency_tasks.inquiry_id, agency_tasks.agency");
        stored.extend(B::fetch_all::<(String, String)>(conn, sql).await?);
    }
    Ok(stored)
}
