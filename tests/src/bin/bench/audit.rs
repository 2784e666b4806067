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
//! `synchronous = FULL`, as the gateway opens it) or a new PostgreSQL
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
    /// Which rows: `as inquiries make them` or `every row another case`.
    pub rows_like: String,
    pub rows: usize,
    pub secs: f64,
    pub rows_per_s: f64,
}

/// The rows' case numbers and identity numbers, which decide how many
/// index pages each commit touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// As a four-agency inquiry makes them: its inbound row, then four
    /// outbound rows at once, then four replies at once, all nine about
    /// one case and one subject.
    Inquiries,
    /// The same rows, each about another case and subject: the worst case
    /// for the indexes on them.
    Distinct,
}

impl Mix {
    pub const INQUIRIES: &str = "as inquiries make them";

    fn label(self) -> &'static str {
        match self {
            Mix::Inquiries => Self::INQUIRIES,
            Mix::Distinct => "every row another case",
        }
    }
}

/// Rows an inquiry makes: its inbound row, four outbound, four replies.
const ROWS_PER_INQUIRY: usize = 9;

/// Row `row` of inquiry `inquiry` (0 inbound, 1-4 outbound, 5-8 replies),
/// about the case and subject `key`.
fn record(inquiry: usize, row: usize, key: usize) -> AuditRecord {
    let (direction, action, status) = match row {
        0 => (Direction::Inbound, "inquiry.create", Some("accepted")),
        1..=4 => (Direction::Outbound, "inquiry.send", None),
        _ => (Direction::Reply, "inquiry.reply", Some("http_200")),
    };
    let agency = format!("bank-{}", (inquiry + row) % 4);
    AuditRecord {
        direction: Some(direction),
        caller: Some("demo-court".into()),
        officers: vec!["李明 (ZX620503001)".into()],
        case_number: Some(format!("(2024)甘0503执{key}号")),
        subject: Some(format!("36042619910{key:07}")),
        agency: (row > 0).then(|| agency.clone()),
        action: action.into(),
        inquiry_id: Some(format!("inq_{inquiry:032}")),
        request_number: (row > 0).then(|| format!("Q{inquiry:032}-{agency}")),
        status: status.map(str::to_owned),
        body: Some(format!("<CXQQ><CXQQDH>Q{inquiry:032}</CXQQDH><XM>张三</XM></CXQQ>").into()),
        ..AuditRecord::default()
    }
}

/// The case and subject of row `row` of inquiry `inquiry` under `mix`.
fn key(mix: Mix, inquiry: usize, row: usize) -> usize {
    match mix {
        Mix::Inquiries => inquiry,
        Mix::Distinct => inquiry * ROWS_PER_INQUIRY + row,
    }
}

/// Runs `PRODUCERS` producers making about `rows` rows in all: each
/// makes the rows of one inquiry after another with `inquiry(number)`.
/// The rows made and the seconds it took.
async fn produce<F, Fut>(rows: usize, inquiry: F) -> anyhow::Result<(usize, f64)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let per = (rows / PRODUCERS / ROWS_PER_INQUIRY).max(1);
    let inquiry = Arc::new(inquiry);
    let started = Instant::now();
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let inquiry = inquiry.clone();
            tokio::spawn(async move {
                for q in 0..per {
                    inquiry(p * per + q).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((
        per * PRODUCERS * ROWS_PER_INQUIRY,
        started.elapsed().as_secs_f64(),
    ))
}

/// Through the gateway's writer, each inquiry's rows in its three steps
/// (waiting for each step's acknowledgements before the next, as the
/// gateway does).
async fn group_commit(
    store: Arc<dyn Store>,
    rows: usize,
    mix: Mix,
) -> anyhow::Result<(usize, f64)> {
    let log = AuditLog::start(store, 4096).await?;
    produce(rows, move |inquiry| {
        let log = log.clone();
        async move {
            for step in [0..1, 1..5, 5..9] {
                let records =
                    step.map(|row| log.record(record(inquiry, row, key(mix, inquiry, row))));
                for done in futures::future::join_all(records).await {
                    done?;
                }
            }
            Ok(())
        }
    })
    .await
}

/// Rows as inquiries make them, appended one transaction each through the
/// same store method.
async fn row_by_row(store: Arc<dyn Store>, rows: usize) -> anyhow::Result<(usize, f64)> {
    produce(rows, move |inquiry| {
        let store = store.clone();
        async move {
            for row in 0..ROWS_PER_INQUIRY {
                let new = NewAuditRow {
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    record: record(inquiry, row, inquiry),
                };
                store.append_audit(vec![new]).await?;
            }
            Ok(())
        }
    })
    .await
}

/// Each mode on `backend`, `rounds` times; a fresh database for every
/// run.
pub async fn scenario(
    backend: &Backend,
    dir: &std::path::Path,
    group_rows: usize,
    rounds: usize,
) -> anyhow::Result<Vec<AuditRun>> {
    let mut runs = Vec::new();
    let modes = [
        ("group commit", Some(Mix::Inquiries)),
        ("group commit", Some(Mix::Distinct)),
        ("one transaction per row", None),
    ];
    for round in 0..rounds {
        for (n, (mode, mix)) in modes.into_iter().enumerate() {
            let rows = if mix.is_some() {
                group_rows
            } else {
                group_rows / 10
            };
            let (url, database) = backend.database(dir, &format!("audit-{round}-{n}")).await?;
            let store = gateway::store::open(&url).await?;
            let measured = match mix {
                Some(mix) => group_commit(store.clone(), rows, mix).await,
                None => row_by_row(store.clone(), rows).await,
            };
            drop(store);
            drop(database);
            let (rows, secs) = measured?;
            let run = AuditRun {
                backend: backend.label().into(),
                mode: mode.into(),
                rows_like: mix.unwrap_or(Mix::Inquiries).label().into(),
                rows,
                secs,
                rows_per_s: rows as f64 / secs,
            };
            println!(
                "  audit  {:<10} {:<24} {:<24} {:>7} rows  {:>8.0} rows/s",
                run.backend, run.mode, run.rows_like, run.rows, run.rows_per_s
            );
            runs.push(run);
        }
    }
    Ok(runs)
}
