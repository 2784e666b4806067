//! Inquiries across the three mock agencies.

use std::time::Duration;

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::json;

async fn an_officer_finds_zhang_sans_accounts_at_both_banks_and_his_sealed_flat(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let inq = &reply.body;
    assert_eq!(inq["status"], "completed");
    assert!(reply.headers.contains_key("x-request-id"));
    assert_eq!(
        inq["progress"],
        json!({"total": 3, "answered": 3, "failed": 0, "pending": 0})
    );
    for agency in ["bank-a", "bank-b", "registry-x"] {
        assert_eq!(agency_status(inq, agency), "answered", "{agency}: {inq}");
    }

    let accounts = assets(inq, "bank_account");
    let at = |agency: &str| accounts.iter().filter(|a| a["agency"] == agency).count();
    assert_eq!((at("bank-a"), at("bank-b")), (2, 1), "{accounts:?}");
    let icbc = accounts
        .iter()
        .find(|a| a["account_number"] == "6222020200112233445")
        .expect("the GB18030 bank's first account");
    // The GB18030 reply decoded: the Chinese branch name arrives intact.
    assert_eq!(icbc["branch"], "中国工商银行天水麦积支行");
    assert_eq!(icbc["balance_fen"], 12_500_000);
    assert_eq!(icbc["available_fen"], 12_500_000);
    assert_eq!(icbc["measures"], json!([]));
    let ccb = accounts
        .iter()
        .find(|a| a["agency"] == "bank-b")
        .expect("bank-b account");
    assert_eq!(ccb["account_number"], "6217000010001234567");
    assert_eq!(ccb["balance_fen"], 5_600_000);
    assert!(accounts.iter().all(|a| a["balance_fen"].is_i64()));

    let units = assets(inq, "real_estate");
    assert_eq!(units.len(), 1);
    let flat = units[0];
    assert_eq!(flat["agency"], "registry-x");
    assert_eq!(flat["unit_number"], "620503001001GB00001F00010001");
    assert_eq!(flat["location"], "麦积区桥南伯阳路88号3单元501室");
    assert_eq!(flat["area_m2"], 89.5);
    assert_eq!(flat["mortgaged"], true);
    let seal = &flat["measures"][0];
    assert_eq!(seal["authority"], "秦州区人民法院");
    assert_eq!(seal["document_number"], "(2023)甘0502执88号");
    assert_eq!(seal["end_date"], "2027-02-28");
    assert_eq!(seal["waiting"], false);
    Ok(())
}

async fn a_person_no_agency_knows_gets_no_record_everywhere(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let reply = sys.inquire(nobody(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["assets"], json!([]));
    let agencies = reply.body["agencies"].as_array().expect("agencies");
    assert_eq!(agencies.len(), 3);
    assert!(
        agencies.iter().all(|a| a["status"] == "no_record"),
        "{agencies:?}"
    );
    Ok(())
}

async fn an_organisation_is_found_by_its_credit_code(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let reply = sys.inquire(organisation(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let accounts = assets(&reply.body, "bank_account");
    assert!(
        accounts.len() >= 2 && accounts.iter().all(|a| a["agency"] == "bank-a"),
        "{accounts:?}"
    );
    assert_eq!(agency_status(&reply.body, "bank-b"), "no_record");
    assert_eq!(reply.body["warnings"], json!([]));
    Ok(())
}

async fn a_bank_that_is_down_does_not_fail_the_inquiry(backend: Backend) -> anyhow::Result<()> {
    let mut sys = System::start_on(backend, |_, _| {}).await?;
    assert!(sys.fleet.stop_agency("bank-b").await);
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let inq = &reply.body;
    assert_eq!(inq["status"], "completed");
    let down = agency_status(inq, "bank-b");
    assert!(down == "error" || down == "timeout", "{inq}");
    assert_eq!(agency_status(inq, "bank-a"), "answered");
    assert_eq!(agency_status(inq, "registry-x"), "answered");
    assert_eq!(inq["progress"]["failed"], 1);
    assert_eq!(assets(inq, "bank_account").len(), 2);
    Ok(())
}

async fn a_slow_bank_past_its_timeout_is_a_timeout_for_that_bank_only(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "bank-b") {
            a.limits.timeout_ms = 300;
        }
    })
    .await?;
    sys.fault("bank-b", json!({"latency_ms": 3000, "mode": "normal"}))
        .await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(agency_status(&reply.body, "bank-b"), "timeout");
    assert_eq!(agency_status(&reply.body, "bank-a"), "answered");
    Ok(())
}

async fn garbage_from_an_agency_is_a_bad_reply_never_a_crash(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    sys.fault("bank-a", json!({"latency_ms": 0, "mode": "malformed"}))
        .await?;
    sys.fault("bank-b", json!({"latency_ms": 0, "mode": "error"}))
        .await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        agency_status(&reply.body, "bank-a"),
        "bad_reply",
        "{}",
        reply.body
    );
    assert_eq!(
        agency_status(&reply.body, "bank-b"),
        "error",
        "{}",
        reply.body
    );
    assert_eq!(agency_status(&reply.body, "registry-x"), "answered");
    // The gateway is still healthy and answers the next inquiry.
    sys.fault("bank-a", json!({"latency_ms": 0, "mode": "normal"}))
        .await?;
    let again = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(agency_status(&again.body, "bank-a"), "answered");
    Ok(())
}

async fn a_refusal_is_a_normal_answer_with_its_reason(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    sys.fault("bank-a", json!({"latency_ms": 0, "mode": "refuse"}))
        .await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    let bank_a = reply.body["agencies"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["agency"] == "bank-a").cloned())
        .expect("bank-a");
    assert_eq!(bank_a["status"], "refused");
    assert!(bank_a["detail"].as_str().is_some_and(|d| !d.is_empty()));
    Ok(())
}

async fn without_wait_the_inquiry_is_accepted_and_completes_in_the_background(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let reply = sys.inquire(zhang_san(), 0).await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("inq_"));
    let done = sys
        .wait_for_inquiry(&id, Duration::from_secs(10), |i| i["status"] == "completed")
        .await?;
    assert_eq!(assets(&done, "bank_account").len(), 3);

    let listed = sys
        .get(
            &format!("/v1/inquiries?case_number={}", q(CASE)),
            ENFORCEMENT,
        )
        .await?;
    assert_eq!(listed.status, StatusCode::OK);
    let ids: Vec<&str> = listed.body["inquiries"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);
    Ok(())
}

async fn only_the_asked_agencies_and_asset_kinds_are_queried(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let mut body = inquiry_body(zhang_san());
    body["asset_kinds"] = json!(["bank_account"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
        .await?;
    let agencies: Vec<&str> = reply.body["agencies"]
        .as_array()
        .expect("agencies")
        .iter()
        .filter_map(|a| a["agency"].as_str())
        .collect();
    assert_eq!(agencies, vec!["bank-a", "bank-b"]);

    body["agencies"] = json!(["bank-b"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
        .await?;
    assert_eq!(reply.body["progress"]["total"], 1);
    assert_eq!(assets(&reply.body, "bank_account").len(), 1);

    // A kind asked twice is asked once.
    body["agencies"] = json!(["bank-b"]);
    body["asset_kinds"] = json!(["bank_account", "bank_account"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["progress"]["total"], 1);

    // A kind of asset no configured agency serves: nobody to ask.
    body.as_object_mut().expect("object").remove("agencies");
    body["asset_kinds"] = json!(["vehicle", "equity"]);
    let reply = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["field"], "agencies", "{}", reply.body);
    // Naming a bank for those kinds: that bank holds none of them.
    body["agencies"] = json!(["bank-a"]);
    let reply = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(
        reply.body["error"]["field"], "agencies[0]",
        "{}",
        reply.body
    );
    // A kind the gateway does not know is a bad value, not a crash.
    body["asset_kinds"] = json!(["yacht"]);
    let reply = sys.post_json("/v1/inquiries", ENFORCEMENT, &body).await?;
    assert!(reply.status.is_client_error(), "{}", reply.body);
    Ok(())
}

async fn an_accepted_inquiry_survives_a_gateway_restart(backend: Backend) -> anyhow::Result<()> {
    // The registry takes its time; the gateway stops while it is polling.
    let mut sys = System::start_on(backend, |_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "registry-x") {
            a.poll_interval_ms = 100;
        }
    })
    .await?;
    sys.fault(
        "registry-x",
        json!({"latency_ms": 0, "mode": "normal", "result_delay_ms": 1500}),
    )
    .await?;
    let reply = sys.inquire(zhang_san(), 0).await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let id = reply.body["id"].as_str().expect("id").to_owned();
    sys.wait_for_inquiry(&id, Duration::from_secs(10), |i| {
        agency_status(i, "bank-a") == "answered" && agency_status(i, "registry-x") == "pending"
    })
    .await?;
    sys.stop_gateway().await;

    sys.start_gateway().await?;
    let done = sys
        .wait_for_inquiry(&id, Duration::from_secs(15), |i| i["status"] == "completed")
        .await?;
    assert_eq!(agency_status(&done, "registry-x"), "answered", "{done}");
    assert_eq!(assets(&done, "real_estate").len(), 1);
    Ok(())
}

async fn a_message_the_agency_encoding_cannot_carry_fails_that_agency_and_the_inquiry_completes(
    backend: Backend,
) -> anyhow::Result<()> {
    // GBK has no emoji: the message for this name cannot be written, so
    // nothing is sent, and the inquiry must not hang on that agency.
    let sys = System::start_on(backend, |_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "bank-a") {
            a.encoding = Some("GBK".into());
        }
    })
    .await?;
    let mut body =
        inquiry_body(json!({"kind": "person", "name": "张三😀", "id_number": ZHANG_SAN_ID}));
    body["agencies"] = json!(["bank-a"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=10", ENFORCEMENT, &body)
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "completed");
    assert_eq!(
        agency_status(&reply.body, "bank-a"),
        "error",
        "{}",
        reply.body
    );
    Ok(())
}

on_both_backends!(a_person_no_agency_knows_gets_no_record_everywhere);
on_both_backends!(an_organisation_is_found_by_its_credit_code);
on_both_backends!(a_bank_that_is_down_does_not_fail_the_inquiry);
on_both_backends!(a_slow_bank_past_its_timeout_is_a_timeout_for_that_bank_only);
on_both_backends!(garbage_from_an_agency_is_a_bad_reply_never_a_crash);
on_both_backends!(a_refusal_is_a_normal_answer_with_its_reason);
on_both_backends!(without_wait_the_inquiry_is_accepted_and_completes_in_the_background);
on_both_backends!(only_the_asked_agencies_and_asset_kinds_are_queried);
on_both_backends!(an_accepted_inquiry_survives_a_gateway_restart);
on_both_backends!(an_officer_finds_zhang_sans_accounts_at_both_banks_and_his_sealed_flat);
on_both_backends!(
    a_message_the_agency_encoding_cannot_carry_fails_that_agency_and_the_inquiry_completes
);
