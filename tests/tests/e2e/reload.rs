//! Hot reload: an onboarding engineer changes the agency files and reloads
//! the running gateway; a broken set is refused whole and the old one keeps
//! serving; inquiries in flight finish on the set they started with.

use std::time::Duration;

use e2e_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn current_version(sys: &System) -> anyhow::Result<String> {
    let listed = sys.get("/v1/agencies", ADMIN).await?;
    anyhow::ensure!(listed.status == StatusCode::OK, "{}", listed.body);
    Ok(listed.body["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn an_engineer_adds_an_agency_file_and_after_a_reload_new_inquiries_reach_it()
-> anyhow::Result<()> {
    let sys = System::start().await?;
    let old_version = current_version(&sys).await?;

    // A second connection to the bank-b mock, under an id of its own.
    let mut twin = sys.agency("bank-b")?;
    twin.id = "bank-b2".into();
    twin.name = "Bank B, second connection".into();
    sys.write_agency(&twin)?;

    let reply = sys.reload().await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "reloaded");
    assert_eq!(reply.body["agencies"], 4);
    assert!(
        reply.body["dialects"].as_u64().unwrap_or(0) >= 3,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["previous_version"], old_version.as_str());
    let new_version = reply.body["version"].as_str().expect("version").to_owned();
    assert_ne!(new_version, old_version);

    let listed = sys.get("/v1/agencies", ENFORCEMENT).await?;
    assert_eq!(listed.body["version"], new_version.as_str());
    let ids: Vec<&str> = listed.body["agencies"]
        .as_array()
        .expect("agencies")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["bank-a", "bank-b", "bank-b2", "registry-x"]);

    let inquiry = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(inquiry.status, StatusCode::OK, "{}", inquiry.body);
    assert_eq!(inquiry.body["progress"]["total"], 4, "{}", inquiry.body);
    assert_eq!(agency_status(&inquiry.body, "bank-b2"), "answered");
    let at_twin = assets(&inquiry.body, "bank_account")
        .into_iter()
        .filter(|a| a["agency"] == "bank-b2")
        .count();
    assert_eq!(at_twin, 1, "{}", inquiry.body);

    let reloads = sys.audit("action=config.reload").await?;
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert_eq!(reloads[0]["status"], "ok");
    assert_eq!(reloads[0]["caller"], "demo-admin");
    Ok(())
}

#[tokio::test]
async fn a_broken_file_is_refused_with_every_error_and_its_line_and_the_old_set_keeps_serving()
-> anyhow::Result<()> {
    let sys = System::start().await?;
    let old_version = current_version(&sys).await?;
    sys.write_agency_text(
        "bank-c.toml",
        r#"id = "bank-c"
name = "Bank C"
kind = "bank"
dialect = "bank-json"
base_url = "htp//bank-c.example"
colour = "red"

[[auth.headers]]
name = "X-Api-Key"
value = "pasted-secret"
"#,
    )?;

    let reply = sys.reload().await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let error = &reply.body["error"];
    assert_eq!(error["code"], "invalid_configuration");
    let details = error["details"].as_array().expect("details");
    let found: Vec<(u64, bool)> = details
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().unwrap_or(0),
                d["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("bank-c.toml")),
            )
        })
        .collect();
    assert_eq!(found, vec![(5, true), (6, true), (10, true)], "{details:?}");
    assert!(
        details[1]["message"]
            .as_str()
            .unwrap_or("")
            .contains("colour")
    );
    assert!(
        details[2]["message"]
            .as_str()
            .unwrap_or("")
            .contains("secrets never inline")
    );
    assert!(!reply.body.to_string().contains("pasted-secret"));

    // Nothing changed: same version, and an inquiry reaches the three agencies.
    assert_eq!(current_version(&sys).await?, old_version);
    let inquiry = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(inquiry.status, StatusCode::OK, "{}", inquiry.body);
    for agency in ["bank-a", "bank-b", "registry-x"] {
        assert_eq!(agency_status(&inquiry.body, agency), "answered", "{agency}");
    }
    assert_eq!(inquiry.body["progress"]["total"], 3);

    let reloads = sys.audit("action=config.reload").await?;
    assert_eq!(reloads.len(), 1);
    assert_eq!(reloads[0]["status"], "invalid_configuration");

    // Fixed, the same file goes live.
    std::fs::remove_file(sys.agencies_dir().join("bank-c.toml"))?;
    let reply = sys.reload().await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["previous_version"], old_version.as_str());
    Ok(())
}

#[tokio::test]
async fn only_an_admin_may_reload() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let anonymous = sys
        .call(Method::POST, "/v1/admin/reload", None, None)
        .await?;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    for token in [ENFORCEMENT, AUDITOR] {
        let refused = sys
            .call(Method::POST, "/v1/admin/reload", Some(token), None)
            .await?;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        assert_eq!(refused.body["error"]["code"], "forbidden");
    }
    let wrong_method = sys.get("/v1/admin/reload", ADMIN).await?;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(sys.reload().await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn an_inquiry_in_flight_finishes_on_the_set_it_started_with() -> anyhow::Result<()> {
    let sys = System::start_with(|_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "registry-x") {
            a.poll_interval_ms = 100;
        }
    })
    .await?;
    // The registry takes its time: the first inquiry is still polling it
    // when the registry is taken out of the configuration.
    sys.fault("registry-x", json!({"result_delay_ms": 1500}))
        .await?;
    let first = sys.inquire(zhang_san(), 0).await?;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let id = first.body["id"].as_str().expect("id").to_owned();
    sys.wait_for_inquiry(&id, Duration::from_secs(10), |i| {
        agency_status(i, "bank-a") == "answered" && agency_status(i, "registry-x") == "pending"
    })
    .await?;
    let started_on = current_version(&sys).await?;

    sys.remove_agency("registry-x")?;
    let reply = sys.reload().await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["agencies"], 2);
    let listed = sys.get("/v1/agencies", ADMIN).await?;
    assert_eq!(listed.body["retired_versions"], json!([started_on]));

    // New inquiries fan out to the new set only.
    let second = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["progress"]["total"], 2, "{}", second.body);
    assert!(agency_line(&second.body, "registry-x").is_null());

    // The first one still gets the registry's answer.
    let done = sys
        .wait_for_inquiry(&id, Duration::from_secs(15), |i| i["status"] == "completed")
        .await?;
    assert_eq!(agency_status(&done, "registry-x"), "answered", "{done}");
    assert_eq!(assets(&done, "real_estate").len(), 1);

    // Once no running inquiry uses the old set, it is let go.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = sys.get("/v1/agencies", ADMIN).await?;
        if listed.body["retired_versions"] == json!([]) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the old set is still kept: {}",
            listed.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
