//! The further kinds of asset end to end, with the real mock agencies of
//! config/mock-agencies.toml behind the repository's agency files: the
//! vehicle register (SOAP 1.1), the securities depository (polled), the
//! payment platform (signed both ways), the provident fund centre (its
//! result pushed back) and the market-regulation registry (GBK), each
//! answering from its own ledger, on both backends.

use e2e_tests::*;
use mock_agencies::fixtures;
use reqwest::StatusCode;
use serde_json::{Value, json};

const FURTHER: [&str; 5] = [
    fixtures::VEHICLE_V,
    fixtures::SECURITIES_S,
    fixtures::PAYMENT_P,
    fixtures::FUND_F,
    fixtures::MARKET_M,
];

fn li_si() -> Value {
    json!({"kind": "person", "name": fixtures::LI_SI_NAME, "id_number": fixtures::LI_SI_ID})
}

/// The one asset of `kind` an inquiry found at `agency`.
fn one<'a>(inquiry: &'a Value, kind: &str, agency: &str) -> &'a Value {
    let found: Vec<&Value> = assets(inquiry, kind)
        .into_iter()
        .filter(|a| a["agency"] == agency)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} at {agency}: {inquiry}");
    found[0]
}

/// What a mock agency's ledger holds for a subject.
async fn ledger(sys: &System, agency: &str, holder: &str) -> anyhow::Result<Value> {
    Ok(sys
        .client
        .get(format!(
            "{}/_mock/ledger?holder={holder}",
            sys.mock_url(agency)
        ))
        .send()
        .await?
        .json()
        .await?)
}

/// Asks about `subject` and waits (at most 20 s) for every agency's answer.
async fn completed(sys: &System, subject: Value) -> anyhow::Result<Value> {
    let reply = sys.inquire(subject, 20).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "completed", "{}", reply.body);
    Ok(reply.body)
}

async fn the_further_kinds_are_asked_of_the_mock_agencies_and_answered_from_their_ledgers(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_with_every_kind(backend, |_, _| {}).await?;

    // 张三: a car, shares, a payment account and a provident fund account,
    // beside his bank accounts and flat; no equity.
    let inquiry = completed(&sys, zhang_san()).await?;
    for agency in &FURTHER[..4] {
        assert_eq!(
            agency_status(&inquiry, agency),
            "answered",
            "{agency}: {inquiry}"
        );
    }
    assert_eq!(
        agency_status(&inquiry, fixtures::MARKET_M),
        "no_record",
        "{inquiry}"
    );
    assert_eq!(agency_status(&inquiry, "bank-a"), "answered", "{inquiry}");

    let car = one(&inquiry, "vehicle", fixtures::VEHICLE_V);
    assert_eq!(car["vin"], fixtures::ZHANG_SAN_VIN);
    assert_eq!(car["plate_number"], fixtures::ZHANG_SAN_PLATE);
    assert_eq!(car["plate_type"], fixtures::ZHANG_SAN_PLATE_TYPE);
    assert_eq!(car["make_model"], fixtures::ZHANG_SAN_MAKE_MODEL);
    assert_eq!(car["first_registered"], "2021-05-10");
    assert_eq!(car["state"], "normal");
    assert_eq!(car["mortgaged"], false);
    assert_eq!(car["measures"], json!([]));
    // The register answered from its ledger: the same car there.
    let book = ledger(&sys, fixtures::VEHICLE_V, ZHANG_SAN_ID).await?;
    assert_eq!(
        book["vehicles"][0]["vin"],
        fixtures::ZHANG_SAN_VIN,
        "{book}"
    );
    assert_eq!(book["vehicles"][0]["state_flags"], "A", "{book}");

    let shares = one(&inquiry, "securities", fixtures::SECURITIES_S);
    assert_eq!(
        shares["securities_account"],
        fixtures::ZHANG_SAN_SECURITIES_ACCOUNT
    );
    assert_eq!(shares["market"], "SH");
    assert_eq!(shares["security_code"], fixtures::ZHANG_SAN_SECURITY_CODE);
    assert_eq!(shares["security_name"], fixtures::ZHANG_SAN_SECURITY_NAME);
    assert_eq!(shares["quantity"], fixtures::ZHANG_SAN_SECURITY_QUANTITY);
    assert_eq!(
        shares["available_quantity"],
        fixtures::ZHANG_SAN_SECURITY_QUANTITY
    );
    assert_eq!(shares["custodian"], fixtures::ZHANG_SAN_CUSTODIAN);
    // Submitted once, then polled until ready.
    let book = ledger(&sys, fixtures::SECURITIES_S, ZHANG_SAN_ID).await?;
    let kinds: Vec<&Value> = book["requests"]
        .as_array()
        .map(|r| r.iter().map(|r| &r["kind"]).collect())
        .unwrap_or_default();
    assert!(kinds.contains(&&json!("inquiry")), "{book}");
    assert!(kinds.contains(&&json!("poll")), "{book}");

    let account = one(&inquiry, "payment_account", fixtures::PAYMENT_P);
    assert_eq!(
        account["payment_account"],
        fixtures::ZHANG_SAN_PAYMENT_ACCOUNT
    );
    assert_eq!(account["holder"], fixtures::ZHANG_SAN_NAME);
    assert_eq!(
        account["balance_fen"],
        fixtures::ZHANG_SAN_PAYMENT_BALANCE_FEN
    );
    assert_eq!(
        account["available_fen"],
        fixtures::ZHANG_SAN_PAYMENT_BALANCE_FEN
    );
    assert_eq!(
        account["fund_balance_fen"],
        fixtures::ZHANG_SAN_PAYMENT_FUND_FEN
    );

    let fund = one(&inquiry, "provident_fund", fixtures::FUND_F);
    assert_eq!(fund["fund_account"], fixtures::ZHANG_SAN_FUND_ACCOUNT);
    assert_eq!(fund["balance_fen"], fixtures::ZHANG_SAN_FUND_BALANCE_FEN);
    assert_eq!(fund["available_fen"], fixtures::ZHANG_SAN_FUND_BALANCE_FEN);
    assert_eq!(fund["state"], "contributing");
    assert_eq!(fund["withdrawable"], fixtures::ZHANG_SAN_FUND_WITHDRAWABLE);
    // The centre pushed its result, and the gateway took it.
    let book = ledger(&sys, fixtures::FUND_F, ZHANG_SAN_ID).await?;
    let pushes: Vec<&Value> = book["requests"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["kind"] == "callback").collect())
        .unwrap_or_default();
    assert!(
        pushes.iter().any(|p| p["callback_status"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s))),
        "{book}"
    );

    // 示例有限公司: equity, another court's freeze on part of it.
    let inquiry = completed(&sys, organisation()).await?;
    assert_eq!(
        agency_status(&inquiry, fixtures::MARKET_M),
        "answered",
        "{inquiry}"
    );
    for agency in &FURTHER[..4] {
        assert_eq!(
            agency_status(&inquiry, agency),
            "no_record",
            "{agency}: {inquiry}"
        );
    }
    let equity = one(&inquiry, "equity", fixtures::MARKET_M);
    assert_eq!(equity["company_name"], fixtures::SAMPLE_ORG_EQUITY_COMPANY);
    assert_eq!(
        equity["company_credit_code"],
        fixtures::SAMPLE_ORG_EQUITY_CREDIT_CODE
    );
    assert_eq!(
        equity["subscribed_capital_fen"],
        fixtures::SAMPLE_ORG_EQUITY_SUBSCRIBED_FEN
    );
    assert_eq!(
        equity["paid_in_capital_fen"],
        fixtures::SAMPLE_ORG_EQUITY_PAID_IN_FEN
    );
    assert_eq!(equity["share_ratio"], fixtures::SAMPLE_ORG_EQUITY_RATIO);
    let freezes = equity["measures"].as_array().cloned().unwrap_or_default();
    assert_eq!(freezes.len(), 1, "{equity}");
    assert_eq!(
        freezes[0]["authority"],
        fixtures::SAMPLE_ORG_EQUITY_FREEZE_AUTHORITY
    );
    assert_eq!(
        freezes[0]["document_number"],
        fixtures::SAMPLE_ORG_EQUITY_FREEZE_DOCUMENT
    );
    assert_eq!(
        freezes[0]["amount_fen"],
        fixtures::SAMPLE_ORG_EQUITY_FREEZE_FEN
    );
    assert_eq!(freezes[0]["start_date"], "2025-03-01");
    assert_eq!(freezes[0]["end_date"], "2028-02-29");
    assert_eq!(freezes[0]["waiting"], false);
    // Frozen in part: less than the capital the equity stands for.
    assert!(
        freezes[0]["amount_fen"].as_i64() < equity["subscribed_capital_fen"].as_i64(),
        "{equity}"
    );

    // 李四: his car, sealed by another court, a second seal waiting.
    let inquiry = completed(&sys, li_si()).await?;
    assert_eq!(
        agency_status(&inquiry, fixtures::VEHICLE_V),
        "answered",
        "{inquiry}"
    );
    let car = one(&inquiry, "vehicle", fixtures::VEHICLE_V);
    assert_eq!(car["vin"], fixtures::LI_SI_VIN);
    assert_eq!(car["plate_number"], fixtures::LI_SI_PLATE);
    assert_eq!(car["state"], "sealed, mortgaged");
    assert_eq!(car["mortgaged"], true);
    let seals = car["measures"].as_array().cloned().unwrap_or_default();
    assert_eq!(seals.len(), 2, "{car}");
    assert_eq!(seals[0]["authority"], fixtures::LI_SI_SEAL_AUTHORITY);
    assert_eq!(seals[0]["document_number"], fixtures::LI_SI_SEAL_DOCUMENT);
    assert_eq!(seals[0]["start_date"], "2025-03-01");
    assert_eq!(seals[0]["end_date"], "2027-02-28");
    assert_eq!(seals[0]["waiting"], false);
    assert_eq!(
        seals[1]["authority"],
        fixtures::LI_SI_WAITING_SEAL_AUTHORITY
    );
    assert_eq!(seals[1]["waiting"], true);
    assert_eq!(seals[1]["queue_position"], 1);
    Ok(())
}

on_both_backends!(the_further_kinds_are_asked_of_the_mock_agencies_and_answered_from_their_ledgers);
