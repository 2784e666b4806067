//! Agencies that only work during business hours (UTC+8): outside them
//! their part of an inquiry waits, it does not fail, and nothing is sent.

use std::time::Duration;

use adapters::agency::{BusinessHours, ClockTime};
use e2e_tests::*;
use reqwest::StatusCode;

#[tokio::test]
async fn a_registry_closed_today_keeps_its_part_pending_while_the_banks_answer()
-> anyhow::Result<()> {
    // Working days that leave out today and tomorrow (UTC+8): closed now,
    // whatever the clock says, even if the test runs across midnight.
    let days = china_days_from_today()[2..].to_vec();
    let sys = System::start_with(|_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "registry-x") {
            a.business_hours = Some(BusinessHours {
                days: days.clone(),
                open: ClockTime::parse("00:00").expect("time"),
                close: ClockTime::parse("23:59").expect("time"),
            });
        }
    })
    .await?;

    let listed = sys.get("/v1/agencies", ENFORCEMENT).await?;
    let registry = listed.body["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == "registry-x"))
        .cloned()
        .expect("registry-x listed");
    assert_eq!(registry["business_hours"]["open_now"], false, "{registry}");

    let reply = sys.inquire(zhang_san(), 0).await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("id").to_owned();
    let inquiry = sys
        .wait_for_inquiry(&id, Duration::from_secs(10), |i| {
            agency_status(i, "bank-a") == "answered"
                && agency_status(i, "bank-b") == "answered"
                && agency_line(i, "registry-x")["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("business hours"))
        })
        .await?;
    assert_eq!(inquiry["status"], "running", "{inquiry}");
    let waiting = agency_line(&inquiry, "registry-x");
    assert_eq!(waiting["status"], "pending", "{inquiry}");
    assert!(
        waiting["detail"]
            .as_str()
            .is_some_and(|d| d.contains("next opening") && d.contains("UTC+8")),
        "{waiting}"
    );
    assert_eq!(inquiry["progress"]["pending"], 1);
    assert_eq!(inquiry["progress"]["failed"], 0);

    // Nothing was sent to the registry.
    let ledger: serde_json::Value = sys
        .client
        .get(format!(
            "{}/_mock/ledger?holder={ZHANG_SAN_ID}",
            sys.mock_url("registry-x")
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ledger["requests"], serde_json::json!([]), "{ledger}");
    let sent = sys.audit("agency=registry-x").await?;
    assert!(sent.is_empty(), "{sent:?}");
    Ok(())
}

#[tokio::test]
async fn after_a_reload_that_opens_the_registry_new_inquiries_reach_it_while_older_ones_keep_their_hours()
-> anyhow::Result<()> {
    let days = china_days_from_today()[2..].to_vec();
    let sys = System::start_with(|_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "registry-x") {
            a.poll_interval_ms = 100;
            a.business_hours = Some(BusinessHours {
                days: days.clone(),
                open: ClockTime::parse("00:00").expect("time"),
                close: ClockTime::parse("23:59").expect("time"),
            });
        }
    })
    .await?;
    let waiting_for_hours = |i: &serde_json::Value| {
        agency_line(i, "registry-x")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("business hours"))
    };
    let reply = sys.inquire(zhang_san(), 0).await?;
    let before = reply.body["id"].as_str().expect("id").to_owned();
    sys.wait_for_inquiry(&before, Duration::from_secs(10), waiting_for_hours)
        .await?;

    // The registry now works every day.
    let mut registry = sys.agency("registry-x")?;
    registry.business_hours = None;
    sys.write_agency(&registry)?;
    assert_eq!(sys.reload().await?.status, StatusCode::OK);

    let after = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    assert_eq!(agency_status(&after.body, "registry-x"), "answered");
    // The inquiry started before keeps the hours it started with.
    let still = sys
        .wait_for_inquiry(&before, Duration::from_secs(5), waiting_for_hours)
        .await?;
    assert_eq!(still["status"], "running");
    assert_eq!(agency_status(&still, "registry-x"), "pending");
    Ok(())
}
