//! `mock-agencies`: runs the configured mock banks, registries and agencies
//! of the further kinds of asset on their fixed addresses until Ctrl-C or SIGTERM, for trying the gateway by hand;
//! with `--banks N`, a fleet of N generated banks behind one listener
//! instead; `write-agencies` writes the gateway's agency files for such a
//! fleet and exits. Logs where each agency listens; never logs a full
//! identity number.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mock_agencies::fleet_plan::MAX_FLEET_BANKS;
use mock_agencies::{MockBankFleet, MockConfig, MockFleet, fixtures, ids};
use tracing_subscriber::EnvFilter;

/// Where a bank fleet listens unless told otherwise.
const DEFAULT_FLEET_LISTEN: &str = "127.0.0.1:18200";

#[derive(Parser)]
#[command(
    version,
    about = "Mock banks, registries and other agencies speaking the agencies' wire formats",
    long_about = "Mock banks, registries and other agencies speaking the agencies' wire formats \
        (docs/wire-formats.md).\n\n\
        By default runs the agencies of --config, each on its own address. \
        With --banks N runs a fleet of N generated banks (fleet-0001 ...) behind \
        one listener instead, bank ID under /banks/ID; a bank's dialect follows \
        from its number n: n % 4 = 0 bank-json, 1 court-bank-xml (GB18030), \
        2 court-bank-xml (UTF-8), 3 iso-bank-xml. `write-agencies` writes the \
        gateway's agency files for such a fleet.",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration of the agencies to run (not read with --banks).
    #[arg(long, default_value = "config/mock-agencies.toml")]
    config: PathBuf,
    /// Run a fleet of N generated banks behind one listener instead of the
    /// configured agencies.
    #[arg(long, value_name = "N", value_parser = bank_count, conflicts_with = "config")]
    banks: Option<usize>,
    /// Where the bank fleet listens (with --banks) [default: 127.0.0.1:18200].
    #[arg(long, requires = "banks")]
    listen: Option<SocketAddr>,
    /// Overrides the population seed (the configured one, or the standard
    /// one with --banks).
    #[arg(long)]
    seed: Option<u64>,
    /// Overrides the population size (the configured one, or the standard
    /// one with --banks).
    #[arg(long)]
    population: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Write the gateway's agency files for a bank fleet (one
    /// `fleet-NNNN.toml` per bank, base_url `{base-url}/banks/fleet-NNNN`)
    /// into a directory, creating it, and exit.
    WriteAgencies {
        /// How many banks the fleet has (as given to --banks).
        #[arg(long, value_name = "N", value_parser = bank_count)]
        banks: usize,
        /// Where the fleet listens, as the gateway reaches it.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:18200")]
        base_url: String,
        /// The directory to write the files into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn bank_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_FLEET_BANKS).contains(&n) => Ok(n),
        _ => Err(format!("a number of banks from 1 to {MAX_FLEET_BANKS}")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match (args.command, args.banks) {
        (
            Some(Command::WriteAgencies {
                banks,
                base_url,
                out,
            }),
            _,
        ) => {
            let written = mock_agencies::write_fleet_agency_files(&out, &base_url, banks)?;
            tracing::info!(files = written, dir = %out.display(), %base_url, "agency files written");
            Ok(())
        }
        (None, Some(banks)) => {
            let standard = MockConfig::standard();
            let listen = match args.listen {
                Some(listen) => listen,
                None => DEFAULT_FLEET_LISTEN.parse()?,
            };
            run_bank_fleet(
                args.seed.unwrap_or(standard.seed),
                args.population.unwrap_or(standard.population),
                banks,
                listen,
            )
            .await
        }
        (None, None) => run_configured(args.config, args.seed, args.population).await,
    }
}

async fn run_configured(
    path: PathBuf,
    seed: Option<u64>,
    population: Option<usize>,
) -> anyhow::Result<()> {
    let mut config = MockConfig::load(&path)?;
    if let Some(seed) = seed {
        config.seed = seed;
    }
    if let Some(population) = population {
        config.population = population;
    }
    config.validate()?;
    let fleet = MockFleet::start(&config, false)
        .await
        .context("starting the mock agencies")?;
    for (id, addr) in fleet.agencies() {
        let dialect = config
            .agencies
            .iter()
            .find(|a| a.id == id)
            .map_or("?", |a| a.dialect.as_str());
        tracing::info!(agency = %id, dialect, url = %format!("http://{addr}"), "serving");
    }
    tracing::info!(
        seed = config.seed,
        population = fleet.population().len(),
        zhang_san = %ids::mask(fixtures::ZHANG_SAN_ID),
        sample_org = %ids::mask(fixtures::SAMPLE_ORG_ID),
        wang_wu = %ids::mask(fixtures::WANG_WU_ID),
        li_si = %ids::mask(fixtures::LI_SI_ID),
        "population ready; fixture subjects always present"
    );
    shutdown_signal().await;
    tracing::info!("stopping");
    fleet.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn run_bank_fleet(
    seed: u64,
    population: usize,
    banks: usize,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let fleet = MockBankFleet::start(seed, population, banks, listen)
        .await
        .context("starting the mock bank fleet")?;
    let elapsed_ms = started.elapsed().as_millis();
    let mut dialects: BTreeMap<&str, usize> = BTreeMap::new();
    for id in fleet.bank_ids() {
        if let Some(dialect) = fleet.bank_dialect(&id) {
            *dialects.entry(dialect.as_str()).or_default() += 1;
        }
    }
    tracing::info!(
        url = %fleet.base_url(),
        banks,
        ?dialects,
        seed,
        population = fleet.population().len(),
        elapsed_ms,
        "bank fleet serving: bank ID under /banks/ID, list at /banks"
    );
    if let Some(url) = fleet.agency_base_url(fixtures::FLEET_ZHANG_SAN_BANK) {
        tracing::info!(
            zhang_san = %ids::mask(fixtures::ZHANG_SAN_ID),
            bank = fixtures::FLEET_ZHANG_SAN_BANK,
            %url,
            "fixture subject's fleet account"
        );
    }
    shutdown_signal().await;
    tracing::info!("stopping");
    fleet.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
