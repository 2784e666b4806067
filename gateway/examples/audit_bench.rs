//! Audit rows committed per second: the gateway's group commit (one writer
//! task, one transaction per batch, every producer acknowledged after
//! commit) against one transaction per row, on SQLite and on PostgreSQL.
//!
//! ```sh
//! cargo run --release -p gateway --example audit_bench                      # SQLite only
//! cargo run --release -p gateway --example audit_bench -- \
//!     --postgres postgres://postgres@127.0.0.1:5432/test                     # and PostgreSQL
//! ```
//!
//! Each run uses a fresh database (a temp SQLite file; a new PostgreSQL
//! database created on the server and dropped after). Prints a Markdown
//! table; docs/benchmarks/audit.md holds committed results.

use std::sync::Arc;
use std::time::Instant;

use gateway::audit::{AuditLog, AuditRecord, Direction};
use gateway::store::{NewAuditRow, Store};

/// Producers recording at once (inquiries and orders in flight).
const PRODUCERS: usize = 256;

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        direction: Some(Direction::Outbound),
        caller: Some("demo-court".into()),
        officers: vec!["李明 (ZX620503001)".into()],
        case_number: Some("(2024)甘0503执1234号".into()),
        subject: Some("360426199101010071".into()),
        agency: Some(format!("bank-{}", i % 50)),
        action: "inquiry.send".into(),
        inquiry_id: Some(format!("inq_{i:032}")),
        request_number: Some(format!("Q{i:032}-bank")),
        body: Some(format!("<CXQQ><CXQQDH>Q{i:032}</CXQQDH><XM>张三</XM></CXQQ>").into_bytes()),
        ..AuditRecord::default()
    }
}

/// Rows per second through the gateway's writer (group commit).
async fn group_commit(store: Arc<dyn Store>, rows: usize) -> anyhow::Result<f64> {
    let log = AuditLog::start(store, 4096).await?;
    let started = Instant::now();
    let per = rows / PRODUCERS;
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
    Ok((per * PRODUCERS) as f64 / started.elapsed().as_secs_f64())
}

/// Rows per second when every row is its own transaction.
async fn row_by_row(store: Arc<dyn Store>, rows: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let per = rows / PRODUCERS;
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
    Ok((per * PRODUCERS) as f64 / started.elapsed().as_secs_f64())
}

async fn postgres_database(server: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection;
    let name = format!("gw_bench_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let mut url = reqwest::Url::parse(server)?;
    url.set_path(&format!("/{name}"));
    Ok((url.to_string(), name))
}

async fn drop_postgres_database(server: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut admin) = sqlx::PgConnection::connect(server).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gateway::install_crypto_provider();
    let args: Vec<String> = std::env::args().collect();
    let postgres = args
        .iter()
        .position(|a| a == "--postgres")
        .and_then(|i| args.get(i + 1).cloned());
    let group_rows = 64_000;
    let single_rows = 6_400;
    println!("| backend | mode | rows | rows/s |\n|---|---|---|---|");
    let dir = tempfile::tempdir()?;
    for (mode, rows) in [
        ("group commit", group_rows),
        ("one transaction per row", single_rows),
    ] {
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("{}.db", rows)).display()
        );
        let store = gateway::store::open(&url).await?;
        let rate = if rows == group_rows {
            group_commit(store, rows).await?
        } else {
            row_by_row(store, rows).await?
        };
        println!("| SQLite (WAL, synchronous=NORMAL) | {mode} | {rows} | {rate:.0} |");
    }
    if let Some(server) = postgres {
        for (mode, rows) in [
            ("group commit", group_rows),
            ("one transaction per row", single_rows),
        ] {
            let (url, name) = postgres_database(&server).await?;
            let store = gateway::store::open(&url).await?;
            let rate = if rows == group_rows {
                group_commit(store.clone(), rows).await
            } else {
                row_by_row(store.clone(), rows).await
            };
            drop(store);
            drop_postgres_database(&server, &name).await;
            println!(
                "| PostgreSQL 15 (local, default settings) | {mode} | {rows} | {:.0} |",
                rate?
            );
        }
    }
    Ok(())
}
