//! The `gateway` command: `serve`, `demo`, `config check`, `audit verify`,
//! `audit verify-bundle`, `batch submit`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::GatewayConfig;

/// mimalloc instead of the system's allocator: under load the gateway
/// allocates and frees small buffers on many threads at once, where glibc's
/// allocator takes about 14 % of the gateway's samples and mimalloc about 8 %
/// (`docs/benchmarks/README.md`). Transparent huge pages are turned off for
/// the process before anything runs (`small_pages_only`): with them,
/// mimalloc's memory grows in 2 MiB pages, which cost a third more memory
/// per inquiry in flight and no less CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Court enforcement asset inquiry and freeze gateway"
)]
struct Cli {
    /// Log JSON lines instead of text.
    #[arg(long, global = true, env = "GATEWAY_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API with the agencies of the configuration.
    Serve {
        #[arg(long, default_value = "config/gateway.toml", env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// Overrides `listen` of the configuration.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Start the mock agencies and the gateway in-process, run one inquiry
    /// for the demo subject, print it, and keep serving until Ctrl-C.
    #[cfg(feature = "demo")]
    Demo {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        #[arg(long, default_value = "config/mock-agencies.toml")]
        mocks: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Agency tools.
    Agencies {
        #[command(subcommand)]
        command: AgenciesCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Batch inquiries from a file, against a running gateway.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
}

/// The gateway a batch command talks to, and the caller's token.
#[derive(clap::Args)]
struct BatchServer {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "GATEWAY_URL")]
    url: String,
    /// The caller's bearer token (role `enforcement`).
    #[arg(long, env = "GATEWAY_TOKEN", hide_env_values = true)]
    token: String,
}

impl BatchServer {
    fn server(self) -> gateway::batch_cli::Server {
        gateway::batch_cli::Server {
            url: self.url,
            token: self.token,
        }
    }
}

#[derive(Subcommand)]
enum BatchCommand {
    /// Submit a batch from FILE (CSV, or JSON when it ends in .json),
    /// follow it with a progress bar, and download its results. Running the
    /// same command again finds the same batch (the Idempotency-Key comes
    /// from the file's content).
    Submit {
        /// The batch: a CSV file (`# officer:` header lines, then
        /// `case_number,kind,name,id_number,credit_code` rows), or JSON.
        file: PathBuf,
        #[command(flatten)]
        server: BatchServer,
        /// Where the results go (default: FILE with the extension
        /// .results.ndjson or .results.csv).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: gateway::batch_cli::Format,
        /// The Idempotency-Key (default: `file-` and the SHA-256 of FILE).
        #[arg(long)]
        key: Option<String>,
    },
    /// Follow a batch submitted before and download its results.
    Resume {
        /// The batch's id (`bat_...`), as `submit` printed it.
        batch_id: String,
        #[command(flatten)]
        server: BatchServer,
        /// Where the results go.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t)]
        format: gateway::batch_cli::Format,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain and signed checkpoints; name the
    /// first bad row. Exit status 0 only when the whole log verifies.
    Verify {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// The database to check, instead of the configuration's.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Check an evidence bundle (`GET /v1/audit/bundle`) offline: every
    /// row's body and hash, the links between rows, each proof up to its
    /// checkpoint and each checkpoint's signature. Needs no database and
    /// no network. Exit status 0 when everything verifies and every row is
    /// covered by a signed checkpoint; 3 when everything verifies but some
    /// rows are proven only up to the chain's unsigned head; 1 when
    /// anything does not verify (the first such row is named).
    VerifyBundle {
        /// The bundle (a JSON file).
        file: PathBuf,
        /// The Ed25519 public key (64 hex digits) the court trusts: the
        /// bundle must name this key and its checkpoints verify with it.
        /// Without it the key the bundle carries is used, and the output
        /// says the key was not pinned.
        #[arg(long)]
        public_key: Option<String>,
        /// Also print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AgenciesCommand {
    /// Run a dialect's conformance pack (config/conformance/<dialect>/) and
    /// print each normalised result beside the expected one. TARGET is a
    /// dialect name or an agency id (then its dialect's pack).
    Test {
        target: String,
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// Also send one inquiry for the test subject to the agency's real
        /// endpoint (TARGET must be an agency) and print what came back.
        #[arg(long)]
        live: bool,
        /// The test subject's name (live only).
        #[arg(long, default_value = "王五")]
        name: String,
        /// The test subject's identity number (live only): a subject the
        /// agency agreed to be asked about.
        #[arg(long, default_value = "620503198812120015")]
        id_number: String,
        /// The case the live inquiry is made under.
        #[arg(long, default_value = "(2024)甘0503执1234号")]
        case_number: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check the gateway file and every agency file; list every error.
    Check {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let small_pages = small_pages_only();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli, small_pages))
}

/// Turns transparent huge pages off for this process (Linux; elsewhere
/// there is nothing to turn off). Where the kernel backs every anonymous
/// mapping with huge pages (`always`), the allocator's arenas and each
/// thread's heap would take memory 2 MiB at a time.
fn small_pages_only() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        rustix::thread::disable_transparent_huge_pages(true).map_err(|e| e.to_string())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

async fn run(cli: Cli, small_pages: Result<(), String>) -> ExitCode {
    gateway::telemetry::init(cli.log_json);
    if let Err(e) = small_pages {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off; memory grows in larger steps");
    }
    gateway::install_crypto_provider();
    let result = match cli.command {
        Command::Serve { config, listen } => serve(&config, listen).await,
        #[cfg(feature = "demo")]
        Command::Demo {
            config,
            mocks,
            listen,
        } => gateway::demo::run(&config, &mocks, listen).await,
        Command::Config {
            command: ConfigCommand::Check { config },
        } => check(&config),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    database_url,
                },
        } => audit_verify(&config, database_url).await,
        Command::Audit {
            command:
                AuditCommand::VerifyBundle {
                    file,
                    public_key,
                    json,
                },
        } => return verify_bundle(&file, public_key.as_deref(), json),
        Command::Batch {
            command:
                BatchCommand::Submit {
                    file,
                    server,
                    out,
                    format,
                    key,
                },
        } => gateway::batch_cli::submit(&server.server(), &file, out, format, key).await,
        Command::Batch {
            command:
                BatchCommand::Resume {
                    batch_id,
                    server,
                    out,
                    format,
                },
        } => gateway::batch_cli::resume(&server.server(), &batch_id, &out, format).await,
        Command::Agencies {
            command:
                AgenciesCommand::Test {
                    target,
                    config,
                    live,
                    name,
                    id_number,
                    case_number,
                },
        } => {
            agencies_test(
                &config,
                &target,
                live.then_some(gateway::agency_test::LiveSubject {
                    name,
                    id_number,
                    case_number,
                }),
            )
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Path, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut gateway_config = GatewayConfig::load(config)?;
    if let Some(listen) = listen {
        gateway_config.listen = listen;
    }
    let listener = tokio::net::TcpListener::bind(gateway_config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", gateway_config.listen))?;
    let gateway = gateway::Gateway::start(gateway_config, listener).await?;
    gateway.run_until_signal().await;
    Ok(())
}

async fn audit_verify(config: &Path, database_url: Option<String>) -> anyhow::Result<()> {
    let gateway = GatewayConfig::load(config)?;
    let url = database_url.unwrap_or(gateway.database_url.clone());
    let key = gateway.audit.verifying_key().map_err(anyhow::Error::msg)?;
    let store = gateway::store::open(&url)
        .await
        .with_context(|| format!("opening the store at {url}"))?;
    let report = gateway::verify::verify(&*store, key.as_ref()).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.ok {
        println!(
            "ok: {} rows, {} signed checkpoint(s) verified",
            report.checked, report.checkpoints
        );
        Ok(())
    } else {
        anyhow::bail!(
            "the audit log does not verify at row {}: {}",
            report.first_bad_seq.unwrap_or_default(),
            report.problem.as_deref().unwrap_or("unknown")
        )
    }
}

/// The exit status of `audit verify-bundle` when everything verifies but
/// some rows are proven only up to the chain's unsigned head.
const PARTLY_UNSIGNED: u8 = 3;

/// `gateway audit verify-bundle FILE [--public-key HEX] [--json]`.
fn verify_bundle(file: &Path, public_key: Option<&str>, json: bool) -> ExitCode {
    let pinned = match public_key.map(gateway::verify::verifying_key).transpose() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("error: --public-key: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bundle = match std::fs::read(file)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|bytes| gateway::bundle::parse(&bytes))
    {
        Ok(bundle) => bundle,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let report = gateway::bundle::verify(&bundle, pinned.as_ref());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    let h = &bundle.header;
    let head = h
        .head
        .as_ref()
        .map_or("the log was empty".to_owned(), |head| {
            format!("the chain's head was row {}", head.seq)
        });
    println!(
        "bundle: {}, exported {} by {}; {head}",
        h.filter.described(),
        h.exported_at,
        h.exported_by
    );
    match (&report.public_key, report.key_pinned) {
        (Some(key), true) => println!("key: {key} (pinned with --public-key)"),
        (Some(key), false) => println!(
            "key: {key} (taken from the bundle, not pinned: pass --public-key HEX to check that \
             it is the key the court trusts)"
        ),
        (None, _) => println!("key: none (the bundle names no key)"),
    }
    if !report.ok {
        let at = report
            .first_bad_seq
            .map_or("the bundle".to_owned(), |seq| format!("row {seq}"));
        eprintln!(
            "FAILED at {at}: {}: {}",
            report
                .fault
                .map_or("does not verify".to_owned(), |f| f.to_string()),
            report.problem.as_deref().unwrap_or("unknown")
        );
        return ExitCode::FAILURE;
    }
    println!(
        "ok: {} row(s) ({} with their bodies, {} with bodies purged to their digests) and {} \
         linking row(s) verified; {} signed checkpoint(s) verified",
        report.rows, report.bodies, report.purged_bodies, report.links, report.checkpoints
    );
    if report.unsigned_rows.is_empty() {
        println!("every row is proven up to a signed checkpoint");
        return ExitCode::SUCCESS;
    }
    let mut listed: Vec<String> = report
        .unsigned_rows
        .iter()
        .take(20)
        .map(i64::to_string)
        .collect();
    if report.unsigned_rows.len() > listed.len() {
        listed.push(format!("... ({} in all)", report.unsigned_rows.len()));
    }
    println!(
        "UNSIGNED: row(s) {} are proven only up to the chain's head (row {}), which no \
         checkpoint had signed when the bundle was made: export the bundle again after the \
         next checkpoint",
        listed.join(", "),
        report.head_seq.unwrap_or_default()
    );
    ExitCode::from(PARTLY_UNSIGNED)
}

async fn agencies_test(
    config: &Path,
    target: &str,
    live: Option<gateway::agency_test::LiveSubject>,
) -> anyhow::Result<()> {
    let gateway = GatewayConfig::load(config)?;
    if gateway::agency_test::run(&gateway, target, live).await? {
        Ok(())
    } else {
        anyhow::bail!("{target}: not every case passed")
    }
}

/// Checks everything `serve` would load, the agencies' TLS files and
/// secrets included, without starting anything. Every error is listed with
/// its file and line; the exit status is non-zero when there is any.
fn check(config: &Path) -> anyhow::Result<()> {
    let gateway = GatewayConfig::load(config)?;
    gateway.audit.signing_key().map_err(anyhow::Error::msg)?;
    gateway.audit.verifying_key().map_err(anyhow::Error::msg)?;
    let transport = gateway::transport::Transport::new(gateway.limits.max_reply_bytes)?;
    let parts = gateway::runtime::RuntimeParts::new(
        transport,
        gateway::resilience::Guards::default(),
        &gateway.dispatcher,
    );
    let registry = gateway::reload::load_registry(&gateway, &parts, None)?;
    println!(
        "ok: {}, {} dialect(s) in {}, {} agency file(s) in {}",
        config.display(),
        registry.dialect_count(),
        gateway.dialects_dir.display(),
        registry.len(),
        gateway.agencies_dir.display()
    );
    Ok(())
}
