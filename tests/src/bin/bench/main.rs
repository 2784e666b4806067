//! `cargo run --release -p e2e-tests --bin bench`: the end-to-end
//! benchmark. Starts the mock bank fleet (`mock-agencies --banks 4000`) and
//! the gateway (`gateway serve`, release build, generated configuration,
//! fresh database) as processes of their own, drives them from this
//! process's tokio runtime, and measures scenarios A to E beside the direct
//! and nginx baselines. Prints the tables, writes `results.json`,
//! `results.md`, `latency.csv` and `latency-vs-load.svg` into `--out`
//! (docs/benchmarks/ by default). Only 127.0.0.1 is used; everything it
//! starts is stopped at the end. `docs/benchmarks/README.md` explains the
//! figures.

mod audit;
mod batch;
mod chart;
mod console;
mod direct;
mod http;
mod load;
mod nginx;
mod procs;
mod report;
mod scenarios;
mod stats;
mod system;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use crate::report::{Databases, GatewayUnderTest, Machine, Results};
use crate::scenarios::{Ctx, Timing};
use crate::system::{Backend, GatewayBinary, Mocks};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "The benchmark: the gateway against the direct and nginx baselines"
)]
struct Args {
    /// Short steps and holds, small fleet batches: a smoke run (the
    /// committed results come from a full run).
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, comma-separated: a, nginx, b, c, d, e, audit (the
    /// audit writer's capacity); or `batch` alone (a batch inquiry across
    /// the demo's agencies, written to batch-<backend>.md); or `probe` alone, a quick profiling run
    /// (`--perf` records its closed loop), or `memory` alone, scenario A's
    /// memory probe by itself; neither writes results.
    #[arg(long, value_delimiter = ',', default_value = "a,nginx,b,c,d,e,audit")]
    only: Vec<String>,
    /// The probe's length of each run, in seconds.
    #[arg(long, default_value_t = 20)]
    probe_secs: u64,
    /// The probe's open-loop rate, inquiries a second.
    #[arg(long, default_value_t = 300.0)]
    probe_rate: f64,
    /// The probe's database: `sqlite`, or `postgres` (on the server of
    /// `--postgres`).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    probe_backend: String,
    /// Where the results go (relative to the repository root unless
    /// absolute).
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// The PostgreSQL server of scenarios B and E (a database is created
    /// for each run and dropped after it) [default: TEST_DATABASE_URL, else
    /// postgres://postgres@127.0.0.1:5432/test].
    #[arg(long)]
    postgres: Option<String>,
    /// Never install nginx (skip its baseline when it is missing).
    #[arg(long)]
    no_install: bool,
    /// Mock banks in the fleet (scenarios C and D ask them all).
    #[arg(long, default_value_t = 4000)]
    banks: usize,
    /// Record the gateway with `perf record -g` during scenario A's hold
    /// into this file.
    #[arg(long)]
    perf: Option<PathBuf>,
    /// Run this gateway binary instead of building this tree's: an older
    /// commit's, built in a worktree of its own, as the "before" of a
    /// comparison (see `--gateway-config`).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// The folder the gateway's `gateway.toml`, `dialects/` and demo audit
    /// key come from [default: the `config/` beside `--gateway-bin` in its
    /// tree when there is one, else this tree's].
    #[arg(long)]
    gateway_config: Option<PathBuf>,
    /// Run this mock-agencies binary instead of building this tree's.
    #[arg(long)]
    mocks_bin: Option<PathBuf>,
    /// A name for this run in its results (`before`, `after` ...).
    #[arg(long)]
    label: Option<String>,
    /// Subjects in the batch scenario (`--only batch`).
    #[arg(long, default_value_t = 10_000)]
    batch_subjects: usize,
    /// The batch scenario's database: `sqlite`, or `postgres`.
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    batch_backend: String,
    /// Rounds of the audit scenario [default: 3, 1 with --quick].
    #[arg(long)]
    audit_rounds: Option<usize>,
    /// Audit rows the console scenario seeds (`--only console`)
    /// [default: 1,000,000, 100,000 with --quick].
    #[arg(long)]
    console_rows: Option<usize>,
    /// Requests of each console page [default: 50, 10 with --quick].
    #[arg(long)]
    console_requests: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The load generator's own runtime: two workers, as many as the cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    gateway::install_crypto_provider();
    if cfg!(debug_assertions) {
        println!("warning: the bench itself is a debug build; run it with --release");
    }
    let wants = |s: &str| args.only.iter().any(|o| o.eq_ignore_ascii_case(s));
    let timing = if args.quick {
        Timing::quick()
    } else {
        Timing::full()
    };
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        procs::repo_root().join(&args.out)
    };
    std::fs::create_dir_all(&out)?;
    let (gateway_bin, mocks_bin) =
        procs::binaries(args.gateway_bin.clone(), args.mocks_bin.clone())?;
    let gateway_config = args
        .gateway_config
        .clone()
        .or_else(|| args.gateway_bin.as_deref().and_then(procs::config_beside))
        .unwrap_or_else(procs::config_dir);
    let gateway_bin = GatewayBinary {
        path: gateway_bin,
        config_dir: gateway_config,
    };
    let postgres_url = args
        .postgres
        .clone()
        .or_else(|| {
            std::env::var("TEST_DATABASE_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
        })
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let probe_on_postgres = wants("probe") && args.probe_backend == "postgres";
    let postgres = if wants("b")
        || wants("e")
        || wants("audit")
        || wants("console")
        || probe_on_postgres
    {
        match system::postgres_reachable(&postgres_url).await {
            Ok(()) => Some(postgres_url.clone()),
            Err(e) => {
                println!(
                    "PostgreSQL at {postgres_url} cannot be reached ({e}): scenario B, and E and the audit writer on PostgreSQL, are skipped"
                );
                None
            }
        }
    } else {
        None
    };
    let nginx_bin = if wants("nginx") {
        Some(nginx::find_or_install(!args.no_install))
    } else {
        None
    };

    let dir = tempfile::Builder::new()
        .prefix("gateway-bench-")
        .tempdir()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(2048)
        .build()?;
    if wants("batch") {
        // The batch scenario runs the demo's agencies, not the bank fleet.
        let backend = if args.batch_backend == "postgres" {
            Backend::Postgres {
                server_url: postgres_url.clone(),
            }
        } else {
            Backend::Sqlite
        };
        batch::run(
            &gateway_bin,
            &mocks_bin,
            dir.path(),
            &client,
            backend,
            args.batch_subjects,
            &out,
        )
        .await?;
        return Ok(());
    }
    if wants("console") {
        // The console scenario needs no agencies: the log is seeded.
        let (rows, requests) = if args.quick {
            (100_000, 10)
        } else {
            (1_000_000, 50)
        };
        return console::run(
            &gateway_bin,
            dir.path(),
            &client,
            postgres,
            args.console_rows.unwrap_or(rows),
            args.console_requests.unwrap_or(requests).max(2),
            &out,
        )
        .await;
    }
    println!("starting the mock fleet of {} banks ...", args.banks);
    let mocks = Mocks::start(&mocks_bin, args.banks, dir.path(), &client).await?;
    let subjects = Arc::new(direct::Subjects::standard()?);
    let ctx = Ctx {
        client: client.clone(),
        http: http::Lean::new(),
        mocks,
        gateway_bin: gateway_bin.clone(),
        dir: dir.path().to_path_buf(),
        subjects,
        timing,
        perf: args.perf.clone(),
    };

    let mut results = Results {
        when: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: machine(
            postgres.as_deref(),
            nginx_bin.as_ref(),
            &gateway_bin,
            args.label.clone(),
            dir.path(),
        )
        .await,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: args.quick,
        a: None,
        nginx: None,
        b: None,
        b_skipped: None,
        c: None,
        d: None,
        e: Vec::new(),
        e_skipped: Vec::new(),
        audit: Vec::new(),
        audit_indexes: Vec::new(),
        targets: Vec::new(),
        total_secs: 0.0,
    };
    if wants("probe") {
        let backend = match (&postgres, probe_on_postgres) {
            (Some(server_url), true) => Backend::Postgres {
                server_url: server_url.clone(),
            },
            (None, true) => anyhow::bail!("the probe on PostgreSQL needs a reachable server"),
            (_, false) => Backend::Sqlite,
        };
        let outcome = scenarios::probe(&ctx, backend, args.probe_secs, args.probe_rate).await;
        let Ctx { mocks, .. } = ctx;
        mocks.proc.stop(Duration::from_secs(10)).await;
        return outcome.map(|_| ());
    }
    if wants("memory") {
        let outcome = scenarios::memory_alone(&ctx).await;
        let Ctx { mocks, .. } = ctx;
        mocks.proc.stop(Duration::from_secs(10)).await;
        return outcome;
    }
    let outcome = run_scenarios(&ctx, &args, &mut results, postgres, nginx_bin).await;
    let Ctx { mocks, .. } = ctx;
    mocks.proc.stop(Duration::from_secs(10)).await;
    if let Err(e) = &outcome {
        println!("\nthe bench stopped early: {e:#}");
    }
    results.total_secs = started.elapsed().as_secs_f64();
    results.targets = report::check_targets(&results);
    let text = tables(&results);
    println!("\n{text}");
    std::fs::write(out.join("results.md"), &text)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(out.join("latency.csv"), report::latency_csv(&results))?;
    match chart::draw(&results, &out.join("latency-vs-load.svg")) {
        Ok(()) => println!("chart: {}", out.join("latency-vs-load.svg").display()),
        Err(e) => println!("no chart: {e}"),
    }
    println!(
        "results: {} (results.json, results.md, latency.csv); the whole run took {:.0} s",
        out.display(),
        results.total_secs
    );
    outcome
}

async fn run_scenarios(
    ctx: &Ctx,
    args: &Args,
    results: &mut Results,
    postgres: Option<String>,
    nginx_bin: Option<Result<PathBuf, String>>,
) -> anyhow::Result<()> {
    let wants = |s: &str| args.only.iter().any(|o| o.eq_ignore_ascii_case(s));
    let dialects = procs::config_dir().join("dialects");
    let four = ctx.dir.join("agencies-direct");
    ctx.mocks
        .write_agency_files(&four, &scenarios::FOUR_BANKS)?;
    let direct = if wants("a") || wants("b") || wants("nginx") {
        println!("the direct baseline: rendering and checking every message ...");
        Some(Arc::new(
            direct::Direct::load(&four, &dialects, ctx.subjects.clone(), None).await?,
        ))
    } else {
        None
    };
    let direct = || direct.clone().context("the direct baseline was not loaded");

    if wants("a") || wants("nginx") {
        let (a, gateway) = scenarios::inquiry_scenario(
            ctx,
            "A",
            Backend::Sqlite,
            wants("a"),
            direct()?,
            wants("nginx"),
        )
        .await?;
        if wants("a") {
            results.a = Some(a);
        }
        if let (Some(gateway), Some(bin)) = (gateway, nginx_bin) {
            let n = scenarios::nginx_scenario(ctx, &gateway, bin).await;
            gateway.stop().await;
            results.nginx = Some(n?);
        }
    }
    if wants("b") {
        match &postgres {
            Some(url) => {
                let (b, _) = scenarios::inquiry_scenario(
                    ctx,
                    "B",
                    Backend::Postgres {
                        server_url: url.clone(),
                    },
                    false,
                    direct()?,
                    false,
                )
                .await?;
                results.b = Some(b);
            }
            None => results.b_skipped = Some("PostgreSQL could not be reached".into()),
        }
    }
    if wants("c") || wants("d") {
        let (c, d) = scenarios::fleet_scenarios(ctx, wants("c"), wants("d")).await?;
        results.c = c;
        results.d = d;
    }
    if wants("e") {
        results
            .e
            .push(scenarios::scenario_e(ctx, Backend::Sqlite).await?);
        match &postgres {
            Some(url) => results.e.push(
                scenarios::scenario_e(
                    ctx,
                    Backend::Postgres {
                        server_url: url.clone(),
                    },
                )
                .await?,
            ),
            None => results
                .e_skipped
                .push("PostgreSQL: the server could not be reached".into()),
        }
    }
    if wants("audit") {
        println!("\n== The audit writer's capacity, durability and indexes ==");
        let (rows, rounds) = if args.quick { (16_000, 1) } else { (64_000, 3) };
        let rounds = args.audit_rounds.unwrap_or(rounds).max(1);
        let mut backends = vec![Backend::Sqlite];
        if let Some(url) = &postgres {
            backends.push(Backend::Postgres {
                server_url: url.clone(),
            });
        }
        for backend in &backends {
            let s = audit::scenario(backend, &ctx.dir, rows, rounds).await?;
            results.audit.extend(s.runs);
            results.audit_indexes.extend(s.indexes);
        }
    }
    Ok(())
}

fn tables(r: &Results) -> String {
    let m = &r.machine;
    let g = &m.gateway;
    let d = &m.databases;
    let unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "–".into());
    let mut text = format!(
        "## Results of {} ({}{})\n\nMachine: {}, {} cores, {:.0} GiB, Linux {}; bench at commit {}; PostgreSQL: {}; nginx: {}.\n\n\
         Gateway: {} (commit {}{}), configuration from {}.\n\n\
         Databases: SQLite synchronous={} ({}), files on {}; \
         PostgreSQL synchronous_commit={}, fsync={}, data on {}.\n\n",
        r.when,
        if r.quick {
            "quick smoke run"
        } else {
            "full run"
        },
        m.label
            .as_deref()
            .map(|l| format!(", {l}"))
            .unwrap_or_default(),
        m.cpu,
        m.cores,
        m.memory_gib,
        m.kernel,
        m.commit,
        m.postgres.as_deref().unwrap_or("not used"),
        m.nginx.as_deref().unwrap_or("not used"),
        g.binary,
        unknown(&g.commit),
        if g.dirty == Some(true) {
            ", with changes not committed"
        } else {
            ""
        },
        g.config_dir,
        unknown(&d.sqlite_synchronous),
        d.sqlite_synchronous_source,
        unknown(&d.sqlite_filesystem),
        unknown(&d.postgres_synchronous_commit),
        unknown(&d.postgres_fsync),
        unknown(&d.postgres_filesystem),
    );
    text.push_str(&report::targets_table(&r.targets));
    text.push('\n');
    if let Some(a) = &r.a {
        text.push_str(&report::inquiry_table(a));
        text.push('\n');
    }
    if let Some(n) = &r.nginx {
        text.push_str(&report::nginx_table(n));
        text.push('\n');
    }
    if let Some(b) = &r.b {
        text.push_str(&report::inquiry_table(b));
        text.push('\n');
    } else if let Some(why) = &r.b_skipped {
        text.push_str(&format!("### Scenario B\n\nSkipped: {why}.\n\n"));
    }
    if r.c.is_some() || r.d.is_some() {
        text.push_str(&report::fleet_table(r.c.as_ref(), r.d.as_ref()));
        text.push('\n');
    }
    if !r.e.is_empty() || !r.e_skipped.is_empty() {
        text.push_str(&report::order_table(&r.e, &r.e_skipped));
    }
    if !r.audit.is_empty() {
        text.push('\n');
        text.push_str(&report::audit_table(&r.audit, &r.audit_indexes));
    }
    text
}

async fn machine(
    postgres: Option<&str>,
    nginx: Option<&Result<PathBuf, String>>,
    gateway: &GatewayBinary,
    label: Option<String>,
    scratch: &std::path::Path,
) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let memory_gib = procs::parse_status_kib(&read("/proc/meminfo"), "MemTotal")
        .map_or(0.0, |k| k as f64 / 1024.0 / 1024.0);
    let commit = procs::git_commit(&procs::repo_root()).unwrap_or_default();
    let postgres_settings = match postgres {
        Some(url) => pg_settings(url).await.ok(),
        None => None,
    };
    let bin_dir = gateway
        .path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let (sqlite_synchronous, sqlite_synchronous_source) =
        gateway_sqlite_synchronous(gateway, scratch).await;
    let databases = Databases {
        sqlite_synchronous,
        sqlite_synchronous_source,
        sqlite_filesystem: procs::mount_of(scratch).map(|m| m.to_string()),
        postgres_synchronous_commit: postgres_settings
            .as_ref()
            .map(|s| s.synchronous_commit.clone()),
        postgres_fsync: postgres_settings.as_ref().map(|s| s.fsync.clone()),
        postgres_filesystem: postgres_settings
            .as_ref()
            .and_then(|s| procs::mount_of(std::path::Path::new(&s.data_directory)))
            .map(|m| m.to_string()),
    };
    let nginx_version = match nginx {
        Some(Ok(bin)) => std::process::Command::new(bin)
            .arg("-v")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stderr).ok())
            .map(|s| s.trim().trim_start_matches("nginx version: ").to_owned()),
        Some(Err(why)) => Some(format!("skipped ({why})")),
        None => None,
    };
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        commit,
        postgres: postgres_settings.map(|s| s.version),
        nginx: nginx_version,
        label,
        gateway: GatewayUnderTest {
            binary: gateway.path.display().to_string(),
            commit: procs::git_commit(&bin_dir),
            dirty: procs::git_dirty(&bin_dir),
            config_dir: gateway.config_dir.display().to_string(),
        },
        databases,
    }
}

/// SQLite's `synchronous` as the gateway under test opens its files, and
/// how that is known. A binary of this tree opens them with this tree's
/// `SqliteStore::open`, which the bench runs and reads back; one of
/// another tree (an older commit's) as that tree's source says; of one
/// that lies in no tree, nothing is known.
async fn gateway_sqlite_synchronous(
    gateway: &GatewayBinary,
    scratch: &std::path::Path,
) -> (Option<String>, String) {
    let tree = gateway
        .path
        .canonicalize()
        .ok()
        .and_then(|bin| procs::git_toplevel(bin.parent()?));
    let ours = procs::git_toplevel(&procs::repo_root());
    match tree {
        Some(tree) if Some(&tree) == ours.as_ref() => {
            match audit::sqlite_synchronous_as_opened(scratch).await {
                Ok(level) => (
                    Some(level.trim_start_matches("synchronous=").to_owned()),
                    "read back from SqliteStore::open of this tree".into(),
                ),
                Err(e) => (None, format!("could not be read back: {e:#}")),
            }
        }
        Some(tree) => {
            let source = tree.join("gateway/src/store/sqlite.rs");
            let text = std::fs::read_to_string(&source).unwrap_or_default();
            match sqlite_synchronous_in_source(&text) {
                Some(level) => (Some(level), format!("as {} sets it", source.display())),
                None => (
                    None,
                    format!("{} does not say in one word", source.display()),
                ),
            }
        }
        None => (None, "the gateway binary lies in no git tree".into()),
    }
}

/// The one `SqliteSynchronous::` level a store's source names, in
/// `PRAGMA synchronous`'s words.
fn sqlite_synchronous_in_source(text: &str) -> Option<String> {
    let mut levels: Vec<&str> = text
        .split("SqliteSynchronous::")
        .skip(1)
        .filter_map(|rest| {
            let word = rest.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
            ["Off", "Normal", "Full", "Extra"]
                .contains(&word)
                .then_some(word)
        })
        .collect();
    levels.dedup();
    match levels[..] {
        [level] => Some(level.to_ascii_uppercase()),
        _ => None,
    }
}

/// What the results say of the PostgreSQL server.
struct PgSettings {
    version: String,
    synchronous_commit: String,
    fsync: String,
    data_directory: String,
}

async fn pg_settings(url: &str) -> anyhow::Result<PgSettings> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    let mut show = async |name: &str| -> anyhow::Result<String> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut c)
            .await
            .with_context(|| format!("SHOW {name}"))
    };
    let settings = PgSettings {
        version: show("server_version").await?,
        synchronous_commit: show("synchronous_commit").await?,
        fsync: show("fsync").await?,
        // Readable by superusers and pg_read_all_settings only.
        data_directory: show("data_directory").await.unwrap_or_default(),
    };
    let _ = c.close().await;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::sqlite_synchronous_in_source;

    #[test]
    fn the_synchronous_level_a_store_source_names() {
        let full = "use sqlx::sqlite::{SqliteConnectOptions, SqliteSynchronous};\n\
                    .synchronous(SqliteSynchronous::Full)\n";
        assert_eq!(sqlite_synchronous_in_source(full).as_deref(), Some("FULL"));
        let normal = ".synchronous(SqliteSynchronous::Normal)";
        assert_eq!(
            sqlite_synchronous_in_source(normal).as_deref(),
            Some("NORMAL")
        );
        let two = ".synchronous(SqliteSynchronous::Normal) .synchronous(SqliteSynchronous::Full)";
        assert_eq!(sqlite_synchronous_in_source(two), None);
        assert_eq!(
            sqlite_synchronous_in_source("PRAGMA synchronous = FULL"),
            None
        );
    }
}
