//! `mock-agencies`: runs the configured mock banks and registries on their
//! fixed addresses until Ctrl-C or SIGTERM, for trying the gateway by hand.
//! Logs where each agency listens; never logs a full identity number.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mock_agencies::{MockConfig, MockFleet, fixtures, ids};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "Mock banks and registries speaking the agencies' wire formats"
)]
struct Args {
    /// The fleet's configuration file.
    #[arg(long, default_value = "config/mock-agencies.toml")]
    config: PathBuf,
    /// Overrides the configured population seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Overrides the configured population size.
    #[arg(long)]
    population: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = MockConfig::load(&args.config)?;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(population) = args.population {
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
        "population ready; fixture subjects always present"
    );
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
