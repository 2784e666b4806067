//! `chaos`: keeps the gateway's promises under sustained abuse, and proves
//! it from the agencies' side.
//!
//! ```sh
//! cargo run --release -p e2e-tests --bin chaos -- --backend sqlite --minutes 30
//! cargo run --release -p e2e-tests --bin chaos -- --backend postgres --minutes 30
//! ```
//!
//! It runs the real binaries as processes of their own: `mock-agencies`,
//! one gateway on SQLite or two sharing one PostgreSQL database, and a
//! callback endpoint of its own that checks every signature. A mixed
//! workload runs the whole time (`workload.rs`) while faults are injected
//! (`faults.rs`): SIGKILLs and restarts, agencies paused and answering
//! garbage, PostgreSQL's connections killed or SQLite's disk full. After a
//! quiet period it checks every promise (`checks.rs`) and prints a report;
//! the exit status is non-zero when any check fails. docs/reliability.md
//! explains each check and holds the figures of the long runs.

mod checks;
mod client;
mod faults;
mod receiver;
mod setup;
mod workload;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::Value;

use crate::setup::{Database, GatewaySlot, Mocks, SmallDisk};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Parser)]
#[command(about = "Kills, restarts and faults under a mixed workload; then checks every promise")]
struct Args {
    /// One gateway on SQLite, or two sharing one PostgreSQL database.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// How long the workload runs while faults are injected.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// SIGKILLs of a gateway (with two instances, of one or both) [default:
    /// 8, or one a minute for longer runs].
    #[arg(long)]
    kills: Option<u32>,
    /// Clients running cases at once.
    #[arg(long, default_value_t = 6)]
    workers: u64,
    /// Seeds the workload's and the faults' choices.
    #[arg(long, default_value_t = 20261204)]
    seed: u64,
    /// The PostgreSQL server on which the run makes its own database.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// How long the system may take to settle after the workload.
    #[arg(long, default_value_t = 300)]
    settle_secs: u64,
    /// Where the logs, configuration and report go [default: a new folder
    /// under the system's temporary folder, kept].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run SQLite without the disk-full fault (it needs root, to mount a
    /// small filesystem).
    #[arg(long)]
    no_disk_full: bool,
    /// Use the `gateway` and `mock-agencies` binaries beside this one as
    /// they are, without building them first.
    #[arg(long)]
    prebuilt: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway::install_crypto_provider();
    let out = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => tempfile::Builder::new().prefix("chaos-").tempdir()?.keep(),
    };
    println!(
        "chaos run: backend {:?}, {} minutes; logs and report in {}",
        args.backend,
        args.minutes,
        out.display()
    );
    let passed = run(&args, &out).await?;
    std::process::exit(if passed { 0 } else { 1 });
}

async fn run(args: &Args, out: &std::path::Path) -> anyhow::Result<bool> {
    let (gateway_bin, mocks_bin) = setup::build_binaries(args.prebuilt)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;

    // The database: SQLite on a filesystem of its own, or a new PostgreSQL
    // database dropped at the end.
    let mut _disk = None;
    let mut _drop_db = None;
    let database = match args.backend {
        Backend::Sqlite => {
            let mount = if args.no_disk_full {
                std::fs::create_dir_all(out.join("db"))?;
                None
            } else {
                let disk = SmallDisk::mount(&out.join("db"), setup::DISK_MIB)?;
                let at = disk.at.clone();
                _disk = Some(disk);
                Some(at)
            };
            Database::Sqlite {
                file: out.join("db").join("gateway.db"),
                mount,
            }
        }
        Backend::Postgres => {
            let (url, guard) = e2e_tests::postgres_database(&args.database_url, "chaos")
                .await
                .context("cannot make the run's database on PostgreSQL")?;
            let name = url::Url::parse(&url)?
                .path()
                .trim_start_matches('/')
                .to_owned();
            _drop_db = Some(guard);
            Database::Postgres {
                url,
                name,
                server_url: args.database_url.clone(),
            }
        }
    };

    let (callback_url, received) = receiver::start(setup::CALLBACK_SECRET).await?;
    let mocks = Mocks::start(&mocks_bin, out, &http).await?;
    let instances = match args.backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    };
    let mut slots = Vec::new();
    for i in 1..=instances {
        let mut slot =
            GatewaySlot::prepare(i, out, &gateway_bin, &database, &mocks, &callback_url)?;
        slot.start(&http).await?;
        slots.push(slot);
    }
    let bases: Vec<String> = slots.iter().map(|s| s.base.clone()).collect();
    let verify_config = slots[0].config().to_owned();
    let gateways = Arc::new(tokio::sync::Mutex::new(slots));

    let subjects = workload::subjects(&http, &mocks).await?;
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let work = Arc::new(workload::Workload::new(
        client::Api::new(bases)?,
        subjects,
        today,
        started + duration,
    ));
    let kills = args
        .kills
        .unwrap_or_else(|| (args.minutes.ceil() as u32).max(8));
    println!("{} workers, {kills} kills planned", args.workers);

    let mut workers = Vec::new();
    for w in 0..args.workers {
        let work = work.clone();
        let seed = args.seed.wrapping_add(w);
        workers.push(tokio::spawn(async move { work.run_worker(seed).await }));
    }
    let mocks_pid = mocks.proc.pid;
    let mocks_peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let gateways = gateways.clone();
        let mocks_peak = mocks_peak.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut g) = gateways.try_lock() {
                    g.iter_mut().for_each(GatewaySlot::sample_memory);
                }
                if let Some(kib) = setup::peak_kib(mocks_pid) {
                    mocks_peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let fault_log = Arc::new(std::sync::Mutex::new(faults::FaultLog::default()));
    let injector = Arc::new(faults::Injector {
        gateways: gateways.clone(),
        http: http.clone(),
        mocks_urls: mocks.urls.clone(),
        database: database.clone(),
        log: fault_log.clone(),
        started,
        duration,
        kills,
        seed: args.seed,
        today,
    });
    let faults_done = tokio::spawn(injector.run());
    for w in workers {
        let _ = w.await;
    }
    let _ = faults_done.await;
    let workload_secs = started.elapsed().as_secs_f64();
    println!("[{workload_secs:7.1}s] workload over; waiting for the system to settle");

    // Every instance up, every fault off.
    {
        let mut g = gateways.lock().await;
        for slot in g.iter_mut().filter(|s| s.proc.is_none()) {
            slot.start(&http).await?;
        }
    }
    let db = checks::Db::open(&database).await?;
    let settle_start = Instant::now();
    let left = checks::settle(&db, Duration::from_secs(args.settle_secs)).await?;
    let settle_secs = settle_start.elapsed().as_secs_f64();
    println!(
        "settled in {settle_secs:.1} s (left: {} inquiries running, {} orders undecided, {} plans running, {} callbacks undelivered)",
        left[0], left[1], left[2], left[3]
    );

    let mut ledgers = BTreeMap::new();
    for (id, url) in &mocks.urls {
        let ledger: Value = http
            .get(format!("{url}/_mock/ledger"))
            .send()
            .await?
            .json()
            .await?;
        ledgers.insert(id.clone(), ledger);
    }
    let verify = tokio::process::Command::new(&gateway_bin)
        .args(["audit", "verify", "--config"])
        .arg(&verify_config)
        .env(setup::CALLBACK_SECRET_ENV, setup::CALLBACK_SECRET)
        .output()
        .await?;
    let verify_text = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    sampler.abort();
    let mut logs = vec![mocks.proc.log.clone()];
    let mut peaks = Vec::new();
    {
        let mut g = gateways.lock().await;
        for slot in g.iter_mut() {
            slot.stop().await;
            logs.extend(slot.logs());
            peaks.push((
                format!("gateway {}", slot.index),
                slot.peak_kib,
                slot.starts,
            ));
        }
    }
    if let Some(kib) = setup::peak_kib(mocks_pid) {
        mocks_peak.fetch_max(kib, Ordering::Relaxed);
    }
    mocks.proc.stop(Duration::from_secs(5)).await;

    let work =
        Arc::try_unwrap(work).map_err(|_| anyhow::anyhow!("a worker outlived the workload"))?;
    let counters = &work.api.counters;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let server_errors = (
        load(&counters.server_errors),
        counters
            .server_error_samples
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default(),
    );
    let client_counts = BTreeMap::from([
        ("requests", load(&counters.requests)),
        ("attempts", load(&counters.attempts)),
        ("no answer (retried)", load(&counters.no_answer)),
        ("503 (retried)", load(&counters.unavailable)),
        ("429 (retried)", load(&counters.throttled)),
        ("gave up", load(&counters.gave_up)),
    ]);
    let mut seen = work.seen.into_inner().unwrap_or_default();
    seen.client = client_counts;
    let fault_log = std::mem::take(
        &mut *fault_log
            .lock()
            .map_err(|_| anyhow::anyhow!("fault log poisoned"))?,
    );
    let received = std::mem::take(
        &mut *received
            .lock()
            .map_err(|_| anyhow::anyhow!("receiver poisoned"))?,
    );
    let evidence = checks::Evidence {
        kills: (kills, fault_log.kills),
        seen,
        received,
        ledgers,
        logs,
        verify: (verify.status.success(), verify_text),
        server_errors,
        disk_full: match (&database, &fault_log.disk_full) {
            (Database::Sqlite { mount: Some(_), .. }, None) => Some(faults::DiskFull {
                error: Some("the disk-full fault never ran".into()),
                ..faults::DiskFull::default()
            }),
            (_, d) => d.clone(),
        },
    };
    let results = checks::run(&db, &evidence).await?;

    let report = report(
        args,
        &evidence,
        &fault_log,
        &results,
        workload_secs,
        settle_secs,
        &peaks,
        mocks_peak.load(Ordering::Relaxed),
        instances,
    );
    print!("{report}");
    std::fs::write(out.join("report.md"), &report)?;
    println!("report written to {}", out.join("report.md").display());
    Ok(results.iter().all(checks::Check::passed))
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    ev: &checks::Evidence,
    faults: &faults::FaultLog,
    results: &[checks::Check],
    workload_secs: f64,
    settle_secs: f64,
    peaks: &[(String, u64, u32)],
    mocks_peak: u64,
    instances: usize,
) -> String {
    let mut r = String::new();
    let passed = results.iter().filter(|c| c.passed()).count();
    let _ = writeln!(
        r,
        "\n# Chaos run: {:?}, {instances} gateway(s), {:.1} minutes",
        args.backend, args.minutes
    );
    let _ = writeln!(
        r,
        "\n{} of {} checks passed. Workload {workload_secs:.0} s, settled {settle_secs:.0} s after it; seed {}, {} workers.\n",
        passed,
        results.len(),
        args.seed,
        args.workers
    );
    let _ = writeln!(
        r,
        "## Checks\n\n| check | result | counted |\n|---|---|---|"
    );
    for c in results {
        let _ = writeln!(
            r,
            "| {} | {} | {} |",
            c.name,
            if c.passed() { "pass" } else { "**FAIL**" },
            c.counted
        );
    }
    for c in results.iter().filter(|c| !c.passed()) {
        let _ = writeln!(r, "\n### {} ({} problems)\n", c.name, c.problems.len());
        for p in c.problems.iter().take(20) {
            let _ = writeln!(r, "- {p}");
        }
    }
    let _ = writeln!(
        r,
        "\n## Faults\n\n{} SIGKILLs, {} restarts, {} agency fault changes, {} PostgreSQL connections killed.\n",
        faults.kills, faults.restarts, faults.agency_faults, faults.connections_killed
    );
    for (at, what) in &faults.entries {
        let _ = writeln!(r, "- {at:7.1} s: {what}");
    }
    let _ = writeln!(r, "\n## Workload\n");
    let _ = writeln!(r, "- steps: {:?}", ev.seen.steps);
    let _ = writeln!(r, "- client: {:?}", ev.seen.client);
    let _ = writeln!(
        r,
        "- refusals (4xx, expected kinds): {:?}",
        ev.seen.refusals
    );
    let _ = writeln!(r, "- waits that ran out: {}", ev.seen.waits_timed_out);
    let _ = writeln!(r, "\n## Peak memory (VmHWM)\n");
    for (name, kib, starts) in peaks {
        let _ = writeln!(
            r,
            "- {name}: {:.1} MiB (highest of its {starts} processes)",
            *kib as f64 / 1024.0
        );
    }
    let _ = writeln!(r, "- mock-agencies: {:.1} MiB", mocks_peak as f64 / 1024.0);
    if let Some(kib) = setup::peak_kib(std::process::id()) {
        let _ = writeln!(r, "- the harness itself: {:.1} MiB", kib as f64 / 1024.0);
    }
    r
}
