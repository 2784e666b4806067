//! The audit log, on both backends: reads, checkpoints and the auditors'
//! questions; what appending needs of either backend (the chain's tail as
//! a handle last wrote it, rows chained after a tail).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::batches::insert_batch;
use super::console::{open_session, revoke_session};
use super::jobs::{
    InquiryTaskRow, complete_inquiries, finish_awaiting, inquiry_with_tasks, insert_inquiries,
    time_out, update_tasks,
};
use super::orders::{
    drop_unwanted_callbacks, expire_orders, insert_order, insert_outbox, insert_plan, mark_sending,
    mark_warned, outbox_attempted, queue_owed, release, save_order_in, save_plan,
};
use super::{Arg, Backend, Conn, Sql, SqlStore, limit, select};
use crate::audit::{AuditFilter, AuditRow, GENESIS_HASH, StoredAuditEvent};
use crate::store::columns::json;
use crate::store::{
    Applied, AuditStore, Change, Checkpoint, CompletionCallbacks, Created, JournalEntry, Journaled,
    NewAuditRow, OfficerCase, OfficerDay, StoreError, SubjectCases, TaskResult, Window,
};

pub const AUDIT_COLUMNS: &str = "seq, at_ms, direction, caller, officers, case_number, subject, \
     agency, action, inquiry_id, request_number, status, latency_ms, body_sha256, body, \
     prev_hash, hash";

/// Audit rows to a statement where statements take few values (17 each,
/// well under SQLite's limit of 32,766): as many as the audit writer's
/// largest batch, so that each batch is one statement.
pub const AUDIT_ROWS_PER_INSERT: usize = 512;

/// The rows that are requests about a subject: accepted inquiries, orders
/// and freeze plans.
pub const REQUESTS: &str = "direction = 'inbound' AND status = 'accepted' \
     AND action IN ('inquiry.create', 'order.create', 'freeze_plan.create')";

#[async_trait]
impl<B: Backend> AuditStore for SqlStore<B> {
    fn writer_on_own_thread(&self) -> bool {
        B::WRITER_ON_OWN_THREAD
    }

    async fn audit_tail(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.optional(Sql::new(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
        ))
        .await
    }

    async fn append_audit(&self, rows: Vec<NewAuditRow>) -> Result<Vec<AuditRow>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // The fast path: the batch chained after the tail this handle last
        // wrote, in one statement that stores it only if that is still the
        // tail.
        let new = match chain_after::<B>(rows, self.audit_tail.get()) {
            Ok((rows, (seq, hash))) => {
                let mut conn = self.pool.acquire().await?;
                match B::insert_audit(&mut conn, &rows, Some((seq, &hash))).await {
                    Ok(true) => {
                        self.audit_tail.keep(Some(&rows));
                        return Ok(rows);
                    }
                    // Another writer moved the chain on: the slow path reads
                    // the tail as stored.
                    Ok(false) => unchain(rows),
                    Err(e) if B::audit_retry(&e) => unchain(rows),
                    Err(e) => {
                        self.audit_tail.keep(None);
                        return Err(e);
                    }
                }
            }
            Err(rows) => rows,
        };
        // The slow path: under the chain's lock, after the tail as stored.
        let appended = async {
            let mut tx = self.begin_locked().await?;
            let rows = append_after_tail::<B>(&mut tx, new, None).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(rows)
        }
        .await;
        self.audit_tail
            .keep(appended.as_ref().ok().map(Vec::as_slice));
        appended
    }

    async fn append_journal(
        &self,
        entries: Vec<JournalEntry>,
        now_ms: i64,
        callbacks: Option<&dyn CompletionCallbacks>,
    ) -> Result<Vec<Journaled>, StoreError> {
        // Rows alone take the fast path (chained after the tail this
        // handle last wrote, without the lock).
        if entries
            .iter()
            .all(|e| e.change.is_none() && e.row.is_some())
        {
            let rows = entries.into_iter().filter_map(|e| e.row).collect();
            let appended = self.append_audit(rows).await?;
            return Ok(appended
                .into_iter()
                .map(|row| Journaled {
                    row: Some(row),
                    applied: None,
                })
                .collect());
        }
        let journaled = async {
            let mut tx = self.begin_locked().await?;
            let count = entries.len();
            let mut rows = Vec::with_capacity(count);
            let mut kept = Vec::with_capacity(count);
            let mut applied: Vec<Option<Applied>> = Vec::with_capacity(count);
            let mut inquiries = Vec::new();
            let mut inquiry_at = Vec::new();
            let mut results: BTreeMap<String, Vec<(usize, TaskResult)>> = BTreeMap::new();
            let mut pushes = Vec::new();
            let mut timeouts: Vec<(usize, Vec<String>)> = Vec::new();
            let mut extra: Vec<usize> = Vec::with_capacity(count);
            for (i, entry) in entries.into_iter().enumerate() {
                let mut more_rows: Vec<NewAuditRow> = Vec::new();
                // An order or plan whose key another request took meanwhile
                // (only a gateway that takes no turns can) was not accepted:
                // its row is left out (the caller records the replay).
                let (keep, done) = match entry.change {
                    None => (true, None),
                    Some(Change::Inquiry(new)) => {
                        inquiries.push(*new);
                        inquiry_at.push(i);
                        (true, None)
                    }
                    Some(Change::Order(o)) => {
                        let created = insert_order::<B>(&mut tx, &o).await?;
                        (
                            matches!(created, Created::New(_)),
                            Some(Applied::Order(Box::new(created))),
                        )
                    }
                    Some(Change::Plan(p)) => {
                        let created = insert_plan::<B>(&mut tx, &p).await?;
                        (
                            matches!(created, Created::New(_)),
                            Some(Applied::Plan(Box::new(created))),
                        )
                    }
                    Some(Change::Batch(batch)) => {
                        let created = insert_batch::<B>(&mut tx, &batch).await?;
                        let new = matches!(created, Created::New(_));
                        if new {
                            // Each subject's "accepted" row follows the
                            // batch's own.
                            more_rows = batch.rows;
                        }
                        (new, Some(Applied::Batch(Box::new(created))))
                    }
                    Some(Change::Result { owner, result }) => {
                        results.entry(owner).or_default().push((i, result));
                        (true, None)
                    }
                    Some(Change::SaveOrder(save)) => {
                        let saved = save_order_in::<B>(
                            &mut tx,
                            &save.owner,
                            &save.id,
                            &save.progress,
                            save.effect.as_ref(),
                            &save.notify,
                            now_ms,
                        )
                        .await?;
                        (true, Some(Applied::Saved(saved)))
                    }
                    Some(Change::TimeOut { inquiry_ids }) => {
                        time_out::<B>(&mut tx, &inquiry_ids, now_ms).await?;
                        timeouts.push((i, inquiry_ids));
                        (true, None)
                    }
                    Some(Change::Release {
                        owner,
                        of,
                        due_at_ms,
                        detail,
                    }) => {
                        let released =
                            release::<B>(&mut tx, &owner, &of, due_at_ms, detail.as_deref())
                                .await?;
                        (true, Some(Applied::Saved(released)))
                    }
                    Some(Change::MarkSending {
                        owner,
                        id,
                        send_attempts,
                        query_due_ms,
                    }) => {
                        let marked = mark_sending::<B>(
                            &mut tx,
                            &owner,
                            &id,
                            send_attempts,
                            query_due_ms,
                            now_ms,
                        )
                        .await?;
                        (true, Some(Applied::Saved(marked)))
                    }
                    Some(Change::SavePlan(save)) => {
                        let saved = save_plan::<B>(&mut tx, &save, now_ms).await?;
                        (true, Some(Applied::Saved(saved)))
                    }
                    Some(Change::ExpireOrders { today }) => {
                        let expired =
                            expire_orders::<B>(&mut tx, &today, now_ms, callbacks).await?;
                        (true, Some(Applied::Expired(expired)))
                    }
                    Some(Change::MarkWarned {
                        id,
                        end_date,
                        notify,
                    }) => {
                        let marked =
                            mark_warned::<B>(&mut tx, &id, &end_date, notify.as_deref()).await?;
                        (true, Some(Applied::Saved(marked)))
                    }
                    Some(Change::QueueOwed { inquiry_id, item }) => {
                        let queued = queue_owed::<B>(&mut tx, &inquiry_id, &item).await?;
                        (true, Some(Applied::Saved(queued)))
                    }
                    Some(Change::Enqueue(item)) => {
                        insert_outbox::<B>(&mut tx, &item).await?;
                        (true, Some(Applied::Saved(true)))
                    }
                    Some(Change::DropUnwantedCallbacks { callers }) => {
                        let dropped = drop_unwanted_callbacks::<B>(&mut tx, &callers).await?;
                        (true, Some(Applied::Count(dropped)))
                    }
                    Some(Change::Attempted {
                        owner,
                        id,
                        attempts,
                        outcome,
                    }) => {
                        let done =
                            outbox_attempted::<B>(&mut tx, &owner, &id, attempts, &outcome, now_ms)
                                .await?;
                        (true, Some(Applied::Saved(done)))
                    }
                    Some(Change::Pushed {
                        agency,
                        request_number,
                        update,
                    }) => {
                        pushes.push((i, agency, request_number, update));
                        (true, None)
                    }
                    Some(Change::OpenSession(session)) => {
                        open_session::<B>(&mut tx, &session).await?;
                        (true, Some(Applied::Saved(true)))
                    }
                    Some(Change::RevokeSession { id_sha256, at_ms }) => {
                        let revoked = revoke_session::<B>(&mut tx, &id_sha256, at_ms).await?;
                        (true, Some(Applied::Saved(revoked)))
                    }
                };
                let row = entry.row.filter(|_| keep);
                kept.push(row.is_some());
                rows.extend(row);
                extra.push(more_rows.len());
                rows.append(&mut more_rows);
                applied.push(done);
            }
            // The inquiries go in together (multi-row statements).
            if !inquiries.is_empty() {
                insert_inquiries::<B>(&mut tx, &inquiries).await?;
            }
            // The results, then the completion of the inquiries they
            // finish, in this transaction (it holds the journal's lock:
            // every result committed before is seen).
            let mut finished: Vec<(usize, String, bool)> = Vec::new();
            for (owner, group) in results {
                let (at, group): (Vec<usize>, Vec<TaskResult>) = group.into_iter().unzip();
                let stored = update_tasks::<B>(&mut tx, &owner, &group).await?;
                for (i, r) in at.into_iter().zip(group) {
                    let key = (r.inquiry_id, r.agency);
                    let kept = stored.contains(&key);
                    finished.push((i, key.0, kept));
                }
            }
            for (i, agency, request_number, update) in pushes {
                let inquiry: Option<(String,)> =
                    B::fetch_optional(&mut tx, finish_awaiting(&agency, &request_number, &update))
                        .await?;
                match inquiry {
                    Some((id,)) => finished.push((i, id, true)),
                    None => finished.push((i, String::new(), false)),
                }
            }
            if !finished.is_empty() || !timeouts.is_empty() {
                let touched: BTreeSet<&String> = finished
                    .iter()
                    .filter(|(_, _, stored)| *stored)
                    .map(|(_, id, _)| id)
                    .chain(timeouts.iter().flat_map(|(_, ids)| ids))
                    .collect();
                let touched: Vec<String> = touched.into_iter().cloned().collect();
                let done = complete_inquiries::<B>(&mut tx, &touched, now_ms).await?;
                // Each completion's callback in its transaction: nothing
                // between the last result and the caller's callback can
                // lose it. A caller that takes none is left owing (the
                // dispatcher clears it), as is one whose callback cannot
                // be made now (the dispatcher queues what is owed).
                if let Some(callbacks) = callbacks {
                    for (id, caller) in &done {
                        if callbacks.takes(caller) {
                            queue_completed::<B>(&mut tx, callbacks, id, now_ms).await?;
                        }
                    }
                }
                let mut completed: HashSet<String> = done.into_iter().map(|(id, _)| id).collect();
                for (i, id, stored) in finished {
                    applied[i] = Some(Applied::Finished {
                        stored,
                        completed: stored && completed.remove(&id),
                    });
                }
                for (i, ids) in timeouts {
                    let done = ids.into_iter().filter(|id| completed.remove(id)).collect();
                    applied[i] = Some(Applied::Completed(done));
                }
            }
            let chained = append_after_tail::<B>(&mut tx, rows, self.audit_tail.get()).await?;
            tx.commit().await?;
            for (i, new) in inquiry_at.into_iter().zip(inquiries) {
                applied[i] = Some(Applied::Inquiry(Box::new(new)));
            }
            Ok::<_, StoreError>((kept, extra, chained, applied))
        }
        .await;
        match &journaled {
            Ok((_, _, chained, _)) if chained.is_empty() => {}
            Ok((_, _, chained, _)) => self.audit_tail.keep(Some(chained)),
            Err(_) => self.audit_tail.keep(None),
        }
        let (kept, extra, chained, applied) = journaled?;
        let mut chained = chained.into_iter();
        Ok(kept
            .into_iter()
            .zip(extra)
            .zip(applied)
            .map(|((kept, extra), applied)| {
                let row = if kept { chained.next() } else { None };
                // A batch's subject rows are its own receipt's business.
                chained.by_ref().take(extra).for_each(drop);
                Journaled { row, applied }
            })
            .collect())
    }

    async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<StoredAuditEvent>, StoreError> {
        match filtered::<B>(B::statements().audit_select, f) {
            Some(q) => self.read_all(q).await,
            None => Ok(Vec::new()),
        }
    }

    async fn audit_seqs(&self, f: &AuditFilter) -> Result<Vec<i64>, StoreError> {
        let Some(q) = filtered::<B>("seq", f) else {
            return Ok(Vec::new());
        };
        let seqs: Vec<(i64,)> = self.read_all(q).await?;
        Ok(seqs.into_iter().map(|(s,)| s).collect())
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.read_optional(Sql::new(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
        ))
        .await
    }

    async fn audit_event(&self, seq: i64) -> Result<Option<StoredAuditEvent>, StoreError> {
        let columns = B::statements().audit_select;
        self.read_optional(select(columns, "audit_events", "seq = $1").bind(seq))
            .await
    }

    async fn audit_chain(
        &self,
        after_seq: i64,
        n: i64,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let columns = B::statements().audit_select_no_body;
        let condition = "seq > $1 ORDER BY seq LIMIT $2";
        self.read_all(
            select(columns, "audit_events", condition)
                .bind(after_seq)
                .bind(limit(n)),
        )
        .await
    }

    async fn checkpointed_rows(
        &self,
        through_seq: i64,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let columns = B::statements().audit_select_no_body;
        let condition = "seq IN (SELECT seq FROM audit_checkpoints WHERE seq <= $1) ORDER BY seq";
        self.read_all(select(columns, "audit_events", condition).bind(through_seq))
            .await
    }

    async fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        self.run(
            Sql::new(
                "INSERT INTO audit_checkpoints (seq, hash, at_ms, key_id, signature) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
            )
            .bind(c.seq)
            .bind(&c.hash)
            .bind(c.at_ms)
            .bind(&c.key_id)
            .bind(&c.signature),
        )
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.read_all(Sql::new(
            "SELECT seq, hash, at_ms, key_id, signature FROM audit_checkpoints ORDER BY seq",
        ))
        .await
    }

    async fn checkpoint_at_or_after(&self, seq: i64) -> Result<Option<Checkpoint>, StoreError> {
        self.read_optional(
            Sql::new(
                "SELECT seq, hash, at_ms, key_id, signature FROM audit_checkpoints \
                 WHERE seq >= $1 ORDER BY seq LIMIT 1",
            )
            .bind(seq),
        )
        .await
    }

    async fn purge_bodies(&self, before_ms: i64, n: i64) -> Result<u64, StoreError> {
        self.run(
            Sql::new(B::statements().purge_bodies.as_str())
                .bind(before_ms)
                .bind(limit(n)),
        )
        .await
    }

    async fn subjects_in_several_cases(
        &self,
        window: &Window,
        n: i64,
    ) -> Result<Vec<SubjectCases>, StoreError> {
        let rows: Vec<(String, String, i64)> = self
            .all(
                Sql::new(B::statements().subjects_in_several_cases.as_str())
                    .bind(window.from_ms.unwrap_or(i64::MIN))
                    .bind(window.to_ms.unwrap_or(i64::MAX))
                    .bind(limit(n)),
            )
            .await?;
        rows.into_iter()
            .map(|(subject, cases, requests)| {
                let mut cases: Vec<String> = serde_json::from_str(&cases)
                    .map_err(|e| StoreError::Corrupt(format!("cases: {e}")))?;
                cases.sort();
                Ok(SubjectCases {
                    subject,
                    cases,
                    requests,
                })
            })
            .collect()
    }

    async fn officer_cases(&self, window: &Window) -> Result<Vec<OfficerCase>, StoreError> {
        self.read_all(
            Sql::new(B::statements().officer_cases.as_str())
                .bind(window.from_ms.unwrap_or(i64::MIN))
                .bind(window.to_ms.unwrap_or(i64::MAX)),
        )
        .await
    }

    async fn officer_daily_volume(
        &self,
        window: &Window,
        threshold: i64,
    ) -> Result<Vec<OfficerDay>, StoreError> {
        self.read_all(
            Sql::new(B::statements().officer_daily_volume.as_str())
                .bind(window.from_ms.unwrap_or(i64::MIN))
                .bind(window.to_ms.unwrap_or(i64::MAX))
                .bind(threshold),
        )
        .await
    }
}

/// `SELECT columns FROM audit_events` with the filter's conditions, in
/// sequence order, up to its limit; none when no row can match (a filter
/// holding U+0000).
fn filtered<'a, B: Backend>(columns: &str, f: &'a AuditFilter) -> Option<Sql<'a>> {
    let statements = B::statements();
    let texts = [
        ("case_number", &f.case_number),
        ("subject", &f.subject),
        ("agency", &f.agency),
        ("caller", &f.caller),
        ("action", &f.action),
        ("inquiry_id", &f.inquiry_id),
        ("direction", &f.direction),
    ];
    // No stored text holds U+0000 (PostgreSQL's cannot, and requests
    // refuse control characters), so no row matches a filter that
    // does (and PostgreSQL would refuse to bind it).
    let nul = |t: &Option<String>| t.as_deref().is_some_and(|t| t.contains('\0'));
    if texts.iter().any(|(_, t)| nul(t))
        || nul(&f.officer)
        || f.inquiry_ids.iter().any(|id| id.contains('\0'))
    {
        return None;
    }
    let mut q = select(columns, "audit_events", "1 = 1");
    for (column, value) in texts {
        if let Some(v) = value {
            q.push(&format!(" AND {column} = ")).push_bind(v);
        }
    }
    if !f.inquiry_ids.is_empty() {
        q.push(" AND ")
            .push_one_of::<B>("inquiry_id", &f.inquiry_ids);
    }
    if let Some(officer) = &f.officer {
        // Officers are stored as a JSON array of "name (credential)"
        // strings; the filter is a substring of one, ASCII letters in
        // either case, taken literally: `%` and `_` are characters
        // like any other.
        let [before, after] = statements.officer_contains;
        q.push(" AND ")
            .push(before)
            .push_bind(officer.to_ascii_lowercase())
            .push(after);
    }
    if let Some(from) = f.from_ms {
        q.push(" AND at_ms >= ").push_bind(from);
    }
    if let Some(to) = f.to_ms {
        q.push(" AND at_ms < ").push_bind(to);
    }
    if let Some(after) = f.after_seq {
        // With a time window, the cursor must not lead the plan: the
        // window's index (then a sort of its rows) finds the page, where
        // an index walked in `seq` order from the cursor on would read
        // every row after the window's end before finding none (the last
        // page of an export, docs/benchmarks/console.md). `+seq` is the
        // same value, of no index.
        let windowed = f.from_ms.is_some() || f.to_ms.is_some();
        q.push(if windowed {
            " AND +seq > "
        } else {
            " AND seq > "
        })
        .push_bind(after);
    }
    if let Some(through) = f.through_seq {
        q.push(" AND seq <= ").push_bind(through);
    }
    if let Some(before) = f.before_seq {
        q.push(" AND seq < ").push_bind(before);
    }
    q.push(" ORDER BY seq LIMIT ").push_bind(limit(f.limit));
    Some(q)
}

/// Queues the `inquiry.completed` callback of an inquiry this transaction
/// completed, as it stands in it, unless it was queued already.
async fn queue_completed<B: Backend>(
    conn: &mut Conn<B>,
    callbacks: &dyn CompletionCallbacks,
    inquiry_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let rows: Vec<InquiryTaskRow> = B::fetch_all(conn, inquiry_with_tasks(inquiry_id)).await?;
    let Some((inquiry, tasks)) = InquiryTaskRow::gather(rows) else {
        return Ok(());
    };
    let Some(item) = callbacks.completed(&inquiry, &tasks, now_ms) else {
        return Ok(());
    };
    queue_owed::<B>(conn, inquiry_id, &item).await?;
    Ok(())
}

/// Chains `new` after the tail and appends it, on a transaction that
/// holds the chain's lock (`SqlStore::begin_locked`). With `remembered`
/// (the tail this handle last wrote), the rows are chained after it, and
/// the statement that appends them checks that it is still the tail: a
/// statement fewer than reading the tail first. Otherwise, or when another
/// writer moved the chain on, after the tail as stored.
async fn append_after_tail<B: Backend>(
    conn: &mut Conn<B>,
    new: Vec<NewAuditRow>,
    remembered: Option<(i64, String)>,
) -> Result<Vec<AuditRow>, StoreError> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let new = match chain_after::<B>(new, remembered) {
        Ok((rows, (seq, hash))) => {
            if B::insert_audit(&mut *conn, &rows, Some((seq, &hash))).await? {
                return Ok(rows);
            }
            unchain(rows)
        }
        Err(new) => new,
    };
    let tail: Option<(i64, String)> = B::fetch_optional(
        &mut *conn,
        Sql::new("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"),
    )
    .await?;
    let (seq, prev) = tail.unwrap_or((0, GENESIS_HASH.to_owned()));
    let rows = chain_rows(new, seq, prev);
    B::insert_audit(conn, &rows, None).await?;
    Ok(rows)
}

/// A row of the chain as its successor names it: sequence number, hash.
type Tail = (i64, String);

/// `new` chained after the tail a handle remembers, with that tail, when
/// one statement can append it (`Backend::insert_audit` with `after`): a
/// second statement would find the first one's rows as the tail. Otherwise
/// `new` back, to be chained after the tail as stored.
fn chain_after<B: Backend>(
    new: Vec<NewAuditRow>,
    remembered: Option<Tail>,
) -> Result<(Vec<AuditRow>, Tail), Vec<NewAuditRow>> {
    match remembered {
        Some((seq, hash)) if new.len() <= B::rows_per_statement(AUDIT_ROWS_PER_INSERT) => {
            Ok((chain_rows(new, seq, hash.clone()), (seq, hash)))
        }
        _ => Err(new),
    }
}

/// Numbers and chains `new` after the row (`seq`, `prev`).
fn chain_rows(new: Vec<NewAuditRow>, mut seq: i64, mut prev: String) -> Vec<AuditRow> {
    let mut rows = Vec::with_capacity(new.len());
    for n in new {
        seq += 1;
        let row = AuditRow::chain(seq, n.at_ms, n.record, prev);
        prev = row.hash.clone();
        rows.push(row);
    }
    rows
}

/// The rows of a batch that was not appended, to be chained again.
fn unchain(rows: Vec<AuditRow>) -> Vec<NewAuditRow> {
    rows.into_iter()
        .map(|r| NewAuditRow {
            at_ms: r.at_ms,
            record: r.record,
        })
        .collect()
}

/// The rows' values, in the order of `AUDIT_COLUMNS` (the officers as the
/// JSON array both backends store).
pub fn audit_rows(rows: &[AuditRow]) -> Result<Vec<Vec<Arg<'_>>>, sqlx::Error> {
    rows.iter().map(audit_row).collect()
}

fn audit_row(row: &AuditRow) -> Result<Vec<Arg<'_>>, sqlx::Error> {
    let r = &row.record;
    Ok(vec![
        Arg::from(row.seq),
        row.at_ms.into(),
        r.direction.map_or("inbound", |d| d.as_str()).into(),
        (&r.caller).into(),
        json(&r.officers)?.into(),
        (&r.case_number).into(),
        (&r.subject).into(),
        (&r.agency).into(),
        r.action.as_str().into(),
        (&r.inquiry_id).into(),
        (&r.request_number).into(),
        (&r.status).into(),
        r.latency_ms.into(),
        (&row.body_sha256).into(),
        r.body.as_deref().into(),
        (&row.prev_hash).into(),
        (&row.hash).into(),
    ])
}

/// The audit chain's tail as a store handle last wrote it. The next batch
/// is chained after it without reading the tail first; the statement that
/// appends it checks that it is still the tail, and otherwise the batch is
/// chained again after the tail as stored, under the chain's lock. Several
/// gateways writing one database thus keep one chain.
#[derive(Debug, Clone, Default)]
pub struct AuditTail(Arc<Mutex<Option<(i64, String)>>>);

impl AuditTail {
    fn get(&self) -> Option<(i64, String)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps the last of `rows` as the tail; with none (after a failure,
    /// when the statement may or may not have been applied) the next batch
    /// reads the tail as stored.
    fn keep(&self, rows: Option<&[AuditRow]>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = rows
            .and_then(|r| r.last())
            .map(|last| (last.seq, last.hash.clone()));
    }
}
