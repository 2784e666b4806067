//! One inquiry fanned out to a fleet of banks served by one mock process,
//! connected by agency files the mock wrote: every bank answers.

use std::time::Duration;

use e2e_tests::*;
use mock_agencies::{MockBankFleet, fixtures};
use reqwest::StatusCode;

#[tokio::test]
async fn an_inquiry_fans_out_to_every_bank_of_a_fleet() -> anyhow::Result<()> {
    const BANKS: usize = 200;
    let fleet = MockBankFleet::start(20241127, 500, BANKS, "127.0.0.1:0".parse()?).await?;
    let sys = System::start_with(|_, agencies| agencies.clear()).await?;
    mock_agencies::write_fleet_agency_files(&sys.config.agencies_dir, &fleet.base_url(), BANKS)?;
    let reload = sys
        .call(reqwest::Method::POST, "/v1/admin/reload", Some(ADMIN), None)
        .await?;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.body);

    let reply = sys.inquire(zhang_san(), 30).await?;
    let id = reply.body["id"].as_str().expect("id").to_owned();
    let done = sys
        .wait_for_inquiry(&id, Duration::from_secs(60), |i| i["status"] == "completed")
        .await?;
    let agencies = done["agencies"].as_array().expect("agencies");
    assert_eq!(agencies.len(), BANKS);
    assert!(
        agencies
            .iter()
            .all(|a| a["status"] == "answered" || a["status"] == "no_record"),
        "{:?}",
        agencies
            .iter()
            .filter(|a| a["status"] != "answered" && a["status"] != "no_record")
            .collect::<Vec<_>>()
    );
    let found = assets(&done, "bank_account");
    assert!(
        found
            .iter()
            .any(|a| a["agency"] == fixtures::FLEET_ZHANG_SAN_BANK
                && a["account_number"] == fixtures::FLEET_ZHANG_SAN_ACCOUNT),
        "{found:?}"
    );
    fleet.shutdown().await;
    Ok(())
}
