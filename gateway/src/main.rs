//! The `gateway` command: `serve`, `demo`, `config check`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::GatewayConfig;

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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check the gateway file and every agency file; list every error.
    Check {
        #[arg(long, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    gateway::telemetry::init(cli.log_json);
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

fn check(config: &Path) -> anyhow::Result<()> {
    let gateway = GatewayConfig::load(config)?;
    let catalog = gateway.load_catalog()?;
    println!(
        "ok: {}, {} dialect(s) in {}, {} agency file(s) in {}",
        config.display(),
        catalog.dialects.names().len(),
        gateway.dialects_dir.display(),
        catalog.agencies.len(),
        gateway.agencies_dir.display()
    );
    Ok(())
}
