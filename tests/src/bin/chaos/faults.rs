//! The faults, injected on a schedule while the workload runs:
//! - SIGKILLs of a gateway at random moments, each followed by a restart
//!   (with two instances, one or both);
//! - an agency paused (it answers after the gateway's timeout), then
//!   resumed; an agency answering garbage for a while; a registry failing
//!   a third of its requests;
//! - PostgreSQL: every connection of the gateways killed from the server
//!   side, twice; SQLite: the disk full (its tmpfs shrunk to what is in
//!   use), until the gateway has answered 503 for a while, then space again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::setup::{Database, GatewaySlot, used_bytes};

/// What was done, and when (seconds from the workload's start).
#[derive(Debug, Default)]
pub struct FaultLog {
    pub entries: Vec<(f64, String)>,
    pub kills: u32,
    pub restarts: u32,
    pub agency_faults: u32,
    pub connections_killed: u64,
    pub disk_full: Option<DiskFull>,
}

/// How the gateway behaved while its disk was full.
#[derive(Debug, Clone, Default)]
pub struct DiskFull {
    /// When the filesystem was full, and when space came back.
    pub full_from: Option<DateTime<Utc>>,
    pub freed_at: Option<DateTime<Utc>>,
    /// Probe inquiries answered while full: 503s, and anything else.
    pub answered_503: u64,
    pub answered_other: Vec<u16>,
    /// Seconds from space back to the first probe accepted again.
    pub recovered_after_secs: Option<f64>,
    /// Why the disk could not be filled.
    pub error: Option<String>,
}

pub struct Injector {
    pub gateways: Arc<Mutex<Vec<GatewaySlot>>>,
    pub http: reqwest::Client,
    pub mocks_urls: Vec<(String, String)>,
    pub database: Database,
    pub log: Arc<std::sync::Mutex<FaultLog>>,
    pub started: Instant,
    pub duration: Duration,
    pub kills: u32,
    pub seed: u64,
    pub today: chrono::NaiveDate,
}

/// One thing to do at a fraction of the run.
#[derive(Debug, Clone)]
enum Action {
    Kill,
    Agency(&'static str, Value, &'static str),
    KillConnections,
    DiskFull,
}

impl Injector {
    fn note(&self, what: String) {
        let at = self.started.elapsed().as_secs_f64();
        println!("[{at:7.1}s] {what}");
        if let Ok(mut log) = self.log.lock() {
            log.entries.push((at, what));
        }
    }

    fn with_log(&self, f: impl FnOnce(&mut FaultLog)) {
        if let Ok(mut log) = self.log.lock() {
            f(&mut log);
        }
    }

    fn mock(&self, id: &str) -> String {
        self.mocks_urls
            .iter()
            .find(|(a, _)| a == id)
            .map(|(_, u)| u.clone())
            .unwrap_or_default()
    }

    /// The schedule: agency faults and the database fault at fixed
    /// fractions of the run; the kills spread at random over the rest,
    /// never inside the database fault's window (a disk-full gateway must be
    /// seen answering 503, not seen dead).
    fn schedule(&self) -> Vec<(f64, Action)> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        let mut plan = vec![
            (
                0.12,
                Action::Agency(
                    "bank-b",
                    json!({"latency_ms": 6000}),
                    "bank-b paused (answers after 6 s, past the gateway's 2 s timeout)",
                ),
            ),
            (
                0.20,
                Action::Agency("bank-b", json!({"latency_ms": 0}), "bank-b resumed"),
            ),
            (
                0.28,
                Action::Agency(
                    "bank-a",
                    json!({"mode": "garbage"}),
                    "bank-a answers garbage",
                ),
            ),
            (
                0.36,
                Action::Agency(
                    "bank-a",
                    json!({"mode": "normal"}),
                    "bank-a answers normally again",
                ),
            ),
            (
                0.40,
                Action::Agency(
                    "registry-x",
                    json!({"error_rate": 0.3}),
                    "registry-x fails 30 % of requests",
                ),
            ),
            (
                0.46,
                Action::Agency(
                    "registry-x",
                    json!({"error_rate": 0.0}),
                    "registry-x recovered",
                ),
            ),
        ];
        // The database fault's window, kept free of kills.
        let (db_from, db_to) = (0.50, 0.62);
        match self.database {
            Database::Sqlite { .. } => plan.push((db_from, Action::DiskFull)),
            Database::Postgres { .. } => {
                plan.push((db_from, Action::KillConnections));
                plan.push((0.70, Action::KillConnections));
            }
        }
        let span = 0.90 - 0.03 - (db_to - db_from);
        for i in 0..self.kills {
            let slot = span / f64::from(self.kills);
            let mut at = 0.03 + slot * (f64::from(i) + rng.random_range(0.1..0.9));
            if at >= db_from {
                at += db_to - db_from;
            }
            plan.push((at, Action::Kill));
        }
        plan.sort_by(|a, b| a.0.total_cmp(&b.0));
        plan
    }

    pub async fn run(self: Arc<Self>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ 0x5eed);
        for (fraction, action) in self.schedule() {
            let at = self.started + self.duration.mul_f64(fraction);
            tokio::time::sleep_until(at.into()).await;
            match action {
                Action::Kill => self.kill(&mut rng).await,
                Action::Agency(id, change, what) => {
                    let url = format!("{}/_mock/faults", self.mock(id));
                    match self.http.post(url).json(&change).send().await {
                        Ok(r) if r.status().is_success() => {
                            self.with_log(|l| l.agency_faults += 1);
                            self.note(what.to_owned());
                        }
                        other => self.note(format!("could not change {id}'s faults: {other:?}")),
                    }
                }
                Action::KillConnections => self.kill_connections().await,
                Action::DiskFull => self.disk_full().await,
            }
        }
    }

    async fn kill(&self, rng: &mut impl Rng) {
        let mut gateways = self.gateways.lock().await;
        let n = gateways.len();
        let victims: Vec<usize> = if n > 1 && rng.random_bool(0.25) {
            (0..n).collect()
        } else {
            vec![rng.random_range(0..n)]
        };
        for &v in &victims {
            gateways[v].kill().await;
            self.with_log(|l| l.kills += 1);
        }
        self.note(format!(
            "SIGKILL gateway {}",
            victims
                .iter()
                .map(|v| (v + 1).to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
        // Down for a moment, then up again.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1500))).await;
        for &v in &victims {
            let t = Instant::now();
            match gateways[v].start(&self.http).await {
                Ok(()) => {
                    self.with_log(|l| l.restarts += 1);
                    self.note(format!(
                        "gateway {} restarted, ready in {:.1} s",
                        v + 1,
                        t.elapsed().as_secs_f64()
                    ));
                }
                Err(e) => self.note(format!("gateway {} did not come back: {e:#}", v + 1)),
            }
        }
    }

    /// PostgreSQL ends every connection of the gateways' database, as a
    /// server restart or a failover would.
    async fn kill_connections(&self) {
        let Database::Postgres {
            server_url, name, ..
        } = &self.database
        else {
            return;
        };
        let killed = async {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(server_url).await?;
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()) t",
            )
            .bind(name)
            .fetch_one(&mut admin)
            .await?;
            let _ = admin.close().await;
            anyhow::Ok(n)
        }
        .await;
        match killed {
            Ok(n) => {
                self.with_log(|l| l.connections_killed += n as u64);
                self.note(format!(
                    "PostgreSQL terminated {n} connections of the gateways"
                ));
            }
            Err(e) => self.note(format!("could not kill PostgreSQL connections: {e:#}")),
        }
    }

    /// Fills the SQLite file's filesystem (it is shrunk to what is in use),
    /// waits until the gateway answers 503, keeps it full ten seconds more,
    /// then gives the space back and waits until it accepts work again.
    async fn disk_full(&self) {
        let Database::Sqlite {
            mount: Some(mount), ..
        } = &self.database
        else {
            self.note(
                "disk-full fault skipped: the database is not on a filesystem of the harness's own"
                    .into(),
            );
            return;
        };
        let mut report = DiskFull::default();
        if let Err(e) = fill(mount).await {
            self.note(format!("could not fill the disk: {e:#}"));
            report.error = Some(format!("{e:#}"));
            self.with_log(|l| l.disk_full = Some(report));
            return;
        }
        self.note("disk full".into());
        let base = self.gateways.lock().await[0].base.clone();
        let filled = Instant::now();
        let mut held_since: Option<Instant> = None;
        while held_since.is_none_or(|t| t.elapsed() < Duration::from_secs(10))
            && filled.elapsed() < Duration::from_secs(90)
        {
            match self.probe(&base).await {
                Some(503) => {
                    report.answered_503 += 1;
                    if held_since.is_none() {
                        held_since = Some(Instant::now());
                        report.full_from = Some(Utc::now());
                        self.note("the gateway answers 503 (disk full)".into());
                    }
                }
                Some(s) => report.answered_other.push(s),
                None => {}
            }
            // Whatever the gateway freed (a checkpoint, a WAL reset) is
            // taken away again.
            let _ = fill(mount).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Err(e) = unfill(mount).await {
            self.note(format!("could not give the space back: {e:#}"));
        }
        let freed = Instant::now();
        report.freed_at = Some(Utc::now());
        self.note("disk space back".into());
        while freed.elapsed() < Duration::from_secs(90) {
            if matches!(self.probe(&base).await, Some(200 | 202)) {
                report.recovered_after_secs = Some(freed.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.note(match report.recovered_after_secs {
            Some(s) => format!("the gateway accepts work again, {s:.1} s after space came back"),
            None => "the gateway did not accept work again within 90 s".into(),
        });
        self.with_log(|l| l.disk_full = Some(report));
    }

    /// One inquiry about the subject no agency knows; its HTTP status.
    async fn probe(&self, base: &str) -> Option<u16> {
        let body = json!({
            "case_number": format!("({})甘0503执9999号", self.today.format("%Y")),
            "subject": {"kind": "person", "name": "王五", "id_number": "620503198812120015"},
            "officers": [{"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"}],
        });
        let reply = self
            .http
            .post(format!("{base}/v1/inquiries"))
            .bearer_auth(crate::client::ENFORCEMENT)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        Some(reply.status().as_u16())
    }
}

/// Shrinks the tmpfs at `mount` to the pages in use: nothing is left.
async fn fill(mount: &Path) -> anyhow::Result<()> {
    for _ in 0..10 {
        let used = used_bytes(mount)?;
        let status = tokio::process::Command::new("mount")
            .args(["-o", &format!("remount,size={used}"), "tmpfs"])
            .arg(mount)
            .stderr(std::process::Stdio::null())
            .status()
            .await?;
        // Refused when the files grew between the two steps: again.
        if status.success() {
            return Ok(());
        }
    }
    anyhow::bail!("cannot shrink the tmpfs at {} to its use", mount.display())
}

/// Gives the tmpfs at `mount` its size back.
async fn unfill(mount: &Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("mount")
        .args([
            "-o",
            &format!("remount,size={}m", crate::setup::DISK_MIB),
            "tmpfs",
        ])
        .arg(mount)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "remount failed: {status}");
    Ok(())
}
