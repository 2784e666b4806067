//! The audit writer's capacity: rows committed per second through the
//! gateway's own writer (`AuditLog`: one writer task, one transaction or
//! statement per batch, every producer acknowledged after the commit)
//! when producers keep it busy, against one transaction per row through
//! the same store. The load scenarios cannot show it: there the audit
//! writer takes what the inquiries make (9 rows each), far below what it
//! can commit.
//!
//! It runs the gateway's library code in the bench's own process, on a
//! fresh database each time: a temporary SQLite file (WAL,
//! `synchronous = NORMAL`, as the gateway opens it) or a new PostgreSQL
//! database created for the run and dropped after it.

use std::sync::Arc;
use std::time::Instant;

use gateway::audit::{AuditLog, AuditRecord, Direction};
use gateway::store::{NewAuditRow, Store};
use serde::Serialize;

use crate::system::Backend;

/// Producers recording at once (inquiries and orders in flight).
const PRODUCERS: usize = 256;

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRun {
    /// `SQLite` or `PostgreSQL`.
    pub backend: String,
    /// `group commit` (the gateway's writer) or `one transaction per row`.
    pub mode: String,
    pub rows: usize,
    pub secs: f64,
    pub rows_per_s: f64,
}

/// A row as the dispatcher records an outbound message: a case number, an
/// identity number, officers and a small body.
fn record(i: usize) -> AuditRecord {
    AuditRecord {
        direction: Some(Direction::Outbound),
        caller: Some("demo-court".into()),
        officers: vec!["李明 (ZX620503001)".into()],
        case_number: Some(format!("(2024)甘0503执{}号", i % 997)),
        subject: Some(format!("3604261991010{:05}", i % 99_991)),
        agency: Some(format!("bank-{}", i % 50)),
        action: "inquiry.send".into(),
        inquiry_id: Some(format!("inq_{i:032}")),
        request_number: Some(format!("Q{i:032}-bank")),
        body: Some(format!("<CXQQ><CXQQDH>Q{i:032}</CXQQDH><XM>张三</XM></CXQQ>").into_bytes()),
        ..AuditRecord::default()
    }
}

/// `rows` through the gateway's writer from `PRODUCERS` producers, each
/// waiting for its acknowledgement before recording the next.
async fn group_commit(store: Arc<dyn Store>, rows: usize) -> anyhow::Result<(usize, f64)> {
    let log = AuditLog::start(store, 4096).await?;
    let per = rows / PRODUCERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    log.record(record(p * per + i)).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((per * PRODUCERS, started.elapsed().as_secs_f64()))
}

/// `rows` appended one transaction each through the same store method.
async fn row_by_row(store: Arc<dyn Store>, rows: usize) -> anyhow::Result<(usize, f64)> {
    let per = rows / PRODUCERS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    let row = NewAuditRow {
                        at_ms: chrono::Utc::now().timestamp_millis(),
                        record: record(p * per + i),
                    };
                    store.append_audit(vec![row]).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((per * PRODUCERS, started.elapsed().as_secs_f64()))
}

/// Both modes on `backend`, `rounds` times each; a fresh database for
/// every run.
pub async fn scenario(
    backend: &Backend,
    dir: &std::path::Path,
    group_rows: usize,
    rounds: usize,
) -> anyhow::Result<Vec<AuditRun>> {
    let mut runs = Vec::new();
    for round in 0..rounds {
        for group in [true, false] {
            let rows = if group { group_rows } else { group_rows / 10 };
            let (url, database) = backend
                .database(dir, &format!("audit-{round}-{group}"))
                .await?;
            let store = gateway::store::open(&url).await?;
            let measured = if group {
                group_commit(store.clone(), rows).await
            } else {
                row_by_row(store.clone(), rows).await
            };
            drop(store);
            if let Some(database) = database {
                database.drop_now().await;
            }
            let (rows, secs) = measured?;
            let run = AuditRun {
                backend: backend.label().into(),
                mode: if group {
                    "group commit".into()
                } else {
                    "one transaction per row".into()
                },
                rows,
                secs,
                rows_per_s: rows as f64 / secs,
            };
            println!(
                "  audit  {:<10} {:<24} {:>7} rows  {:>8.0} rows/s",
                run.backend, run.mode, run.rows, run.rows_per_s
            );
            runs.push(run);
        }
    }
    Ok(runs)
}
