//! `cargo run --release -p e2e-tests --bin fleet-run -- [BANKS]`: one inquiry
//! for 张三 against a fleet of mock banks (4,000 by default), all on this
//! machine. Prints how long the gateway took to load the agency files, how
//! long the fan-out took until every bank had answered, every status count,
//! and the process's peak memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_tests::{CASE, ENFORCEMENT, config_dir, officer};
use gateway::Gateway;
use gateway::config::GatewayConfig;
use mock_agencies::MockBankFleet;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let banks: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(4000);
    gateway::install_crypto_provider();
    let dir = tempfile::tempdir()?;

    let started = Instant::now();
    let fleet = MockBankFleet::start(20241127, 2000, banks, "127.0.0.1:0".parse()?).await?;
    println!(
        "fleet of {banks} banks up in {:?} at {}",
        started.elapsed(),
        fleet.base_url()
    );
    let agencies = dir.path().join("agencies");
    mock_agencies::write_fleet_agency_files(&agencies, &fleet.base_url(), banks)?;

    let mut config = GatewayConfig::load(&config_dir().join("gateway.toml"))?;
    config.database_url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    config.agencies_dir = agencies;
    config.dialects_dir = config_dir().join("dialects");
    config.audit.signing_key_file = Some(config_dir().join("demo-audit-signing-key.hex"));
    config.dispatcher.max_in_flight = 512;

    let started = Instant::now();
    let catalog = config.load_catalog().map_err(|e| anyhow::anyhow!("{e}"))?;
    let load = started.elapsed();
    println!(
        "catalog: {} agency files loaded and checked in {load:?}",
        catalog.agencies.len()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let started = Instant::now();
    let gateway = Gateway::start(config, listener).await?;
    println!(
        "gateway started (loading its catalog again) in {:?}",
        started.elapsed()
    );

    let client = reqwest::Client::new();
    let body = json!({"case_number": CASE, "officers": [officer()],
        "subject": {"kind": "person", "name": "张三", "id_number": e2e_tests::ZHANG_SAN_ID}});
    let started = Instant::now();
    let reply: Value = client
        .post(format!("{}/v1/inquiries?wait=30", gateway.base_url()))
        .bearer_auth(ENFORCEMENT)
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let mut inquiry = reply;
    let id = inquiry["id"].as_str().unwrap_or_default().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    while inquiry["status"] != "completed" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        inquiry = client
            .get(format!("{}/v1/inquiries/{id}", gateway.base_url()))
            .bearer_auth(ENFORCEMENT)
            .send()
            .await?
            .json()
            .await?;
    }
    let fan_out = started.elapsed();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for a in inquiry["agencies"].as_array().into_iter().flatten() {
        *statuses
            .entry(a["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let accounts: Vec<String> = inquiry["assets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} at {}",
                a["account_number"].as_str().unwrap_or(""),
                a["agency"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!(
        "inquiry {id}: {} after {fan_out:?}; {} agencies: {statuses:?}",
        inquiry["status"], inquiry["progress"]["total"]
    );
    println!("accounts found: {accounts:?}");
    println!(
        "peak memory of this process (gateway + mocks + client): {}",
        peak_memory()
    );
    gateway.shutdown().await;
    fleet.shutdown().await;
    anyhow::ensure!(
        inquiry["status"] == "completed",
        "the inquiry did not complete"
    );
    Ok(())
}

fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}
