//! Control orders against the mock agencies: the law's checks, what banks
//! and the registry answer (partial, waiting, promoted, renewed, released,
//! deducted, sealed, lapsed), idempotency, and signed callbacks.

use std::time::Duration;

use chrono::{Days, NaiveDate};
use e2e_tests::{
    Backend, CASE, System, ZHANG_SAN_ID, officer, on_both_backends, received_once, zhang_san,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const OTHER_CASE: &str = "(2024)甘0503执1235号";
const LI_SI_ID: &str = "62050319850615003X";
/// 李四 at bank-a: 8,000.00, all frozen by another court.
const LI_SI_A_FROZEN: &str = "6222020200155550002";
const LI_SI_A_FROZEN_DOCUMENT: &str = "(2024)甘0523执15号";
/// 李四 at bank-b: 40,000.00 available.
const LI_SI_B: &str = "6217000010005550003";
/// 李四's flat at registry-x: no seals.
const LI_SI_UNIT: &str = "620503001002GB00002F00020002";
/// 张三 at bank-a: 8,650.50 available.
const ZHANG_SAN_SAVINGS: &str = "6222020200118877665";
/// 张三 at bank-a: 125,000.00 available.
const ZHANG_SAN_DEBIT: &str = "6222020200112233445";
/// 张三's flat at registry-x, sealed by another court until 2027-02-28.
const ZHANG_SAN_UNIT: &str = "620503001001GB00001F00010001";

pub fn li_si() -> Value {
    json!({"kind": "person", "name": "李四", "id_number": LI_SI_ID})
}

pub fn officers() -> Value {
    json!([
        officer(),
        {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"},
    ])
}

pub fn documents() -> Value {
    json!([
        {"kind": "ruling", "number": "(2024)甘0503执1234号之一",
         "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
        {"kind": "assist_notice", "number": "协冻-1",
         "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
    ])
}

fn date_after(sys: &System, days: u64) -> NaiveDate {
    sys.clock.today() + Days::new(days)
}

/// A freeze on an account, ending in 180 days.
pub fn freeze(sys: &System, subject: Value, agency: &str, account: &str, amount_fen: i64) -> Value {
    json!({
        "case_number": CASE,
        "subject": subject,
        "officers": officers(),
        "action": "freeze",
        "agency": agency,
        "asset": {"account_number": account},
        "amount_fen": amount_fen,
        "end_date": date_after(sys, 180).to_string(),
        "documents": documents(),
    })
}

/// An order acting on a prior one (renew, release, deduct, ...).
fn follow_up(subject: Value, action: &str, prior: &str) -> Value {
    json!({
        "case_number": CASE,
        "subject": subject,
        "officers": officers(),
        "action": action,
        "prior_order": prior,
        "documents": documents(),
    })
}

/// Places an order and waits until its status is one of `statuses`.
pub async fn place(
    sys: &System,
    key: &str,
    body: &Value,
    statuses: &[&str],
) -> anyhow::Result<Value> {
    let reply = sys.order(key, body).await?;
    anyhow::ensure!(
        reply.status == StatusCode::ACCEPTED,
        "order refused: {} {}",
        reply.status,
        reply.body
    );
    let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
    sys.wait_for_order(&id, statuses).await
}

fn measure<'a>(ledger: &'a Value, account: &str, request_number: &str) -> &'a Value {
    ledger["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(ledger["units"].as_array().into_iter().flatten())
        .filter(|a| a["account_number"] == account || a["unit_number"] == account)
        .flat_map(|a| {
            a["measures"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(a["seals"].as_array().into_iter().flatten())
        })
        .find(|m| m["request_number"] == request_number)
        .unwrap_or(&Value::Null)
}

async fn expect_422(
    sys: &System,
    key: &str,
    body: &Value,
    code: &str,
    field: &str,
) -> anyhow::Result<()> {
    expect_422_one_of(sys, key, body, &[code], field).await
}

/// As `expect_422`, where a background step the test does not control
/// (the expiry sweep) decides which of `codes` applies.
async fn expect_422_one_of(
    sys: &System,
    key: &str,
    body: &Value,
    codes: &[&str],
    field: &str,
) -> anyhow::Result<()> {
    let reply = sys.order(key, body).await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{key}: {}",
        reply.body
    );
    let code = reply.body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        codes.contains(&code),
        "{key}: one of {codes:?}: {}",
        reply.body
    );
    assert_eq!(reply.body["error"]["field"], field, "{key}: {}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() > 10),
        "{key}: a clear message: {}",
        reply.body
    );
    Ok(())
}

async fn every_rule_of_the_law_is_a_422_with_its_reason(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let base = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 100_000);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut b = base.clone();
        change(&mut b);
        b
    };

    // Terms: a deposit freeze lasts at most one year; the end is not past.
    let year_end = sys.clock.today() + chrono::Months::new(12) - Days::new(1);
    let too_long = with(&|b| b["end_date"] = json!((year_end + Days::new(1)).to_string()));
    expect_422(&sys, "r1", &too_long, "term_too_long", "end_date").await?;
    let past = with(&|b| b["end_date"] = json!((sys.clock.today() - Days::new(1)).to_string()));
    expect_422(&sys, "r2", &past, "end_date_in_past", "end_date").await?;
    // Real estate: three years are fine, a day more is not.
    let seal = |end: NaiveDate| {
        json!({"case_number": CASE, "subject": li_si(), "officers": officers(), "action": "seal",
               "agency": "registry-x", "asset": {"unit_number": LI_SI_UNIT},
               "end_date": end.to_string(), "documents": documents()})
    };
    let three_years = sys.clock.today() + chrono::Months::new(36) - Days::new(1);
    expect_422(
        &sys,
        "r3",
        &seal(three_years + Days::new(1)),
        "term_too_long",
        "end_date",
    )
    .await?;

    // Documents: the ruling and the assistance notice, with number and digest.
    let no_notice = with(&|b| b["documents"] = json!([documents()[0].clone()]));
    expect_422(&sys, "r4", &no_notice, "missing_document", "documents").await?;
    let bad_digest = with(&|b| b["documents"][1]["sha256"] = json!("not-a-digest"));
    expect_422(
        &sys,
        "r5",
        &bad_digest,
        "invalid_value",
        "documents[1].sha256",
    )
    .await?;

    // Two officers with both credentials, not one officer twice.
    let one_officer = with(&|b| b["officers"] = json!([officer()]));
    expect_422(&sys, "r6", &one_officer, "too_few_officers", "officers").await?;
    let twice = with(&|b| b["officers"] = json!([officer(), officer()]));
    expect_422(
        &sys,
        "r7",
        &twice,
        "duplicate_officer",
        "officers[1].credential_no",
    )
    .await?;
    let no_credential = with(&|b| b["officers"][1]["credential_no"] = json!(" "));
    expect_422(
        &sys,
        "r8",
        &no_credential,
        "invalid_value",
        "officers[1].credential_no",
    )
    .await?;

    // Amounts are positive.
    let zero = with(&|b| b["amount_fen"] = json!(0));
    expect_422(&sys, "r9", &zero, "amount_not_positive", "amount_fen").await?;

    // Release, renew and deduct name a prior order of the same case.
    let orphan = follow_up(zhang_san(), "release", "ord_nonexistent");
    expect_422(&sys, "r10", &orphan, "unknown_prior_order", "prior_order").await?;
    let mut no_prior = follow_up(zhang_san(), "deduct", "x");
    no_prior.as_object_mut().map(|o| o.remove("prior_order"));
    no_prior["amount_fen"] = json!(100);
    expect_422(
        &sys,
        "r11",
        &no_prior,
        "prior_order_required",
        "prior_order",
    )
    .await?;

    let frozen = place(&sys, "f1", &base, &["applied"]).await?;
    let id = frozen["id"].as_str().unwrap_or_default();
    let mut other_case = follow_up(zhang_san(), "release", id);
    other_case["case_number"] = json!(OTHER_CASE);
    expect_422(
        &sys,
        "r12",
        &other_case,
        "prior_order_other_case",
        "prior_order",
    )
    .await?;
    // A deduction no larger than what the freeze controls.
    let mut too_much = follow_up(zhang_san(), "deduct", id);
    too_much["amount_fen"] = json!(100_001);
    expect_422(
        &sys,
        "r13",
        &too_much,
        "deduction_exceeds_freeze",
        "amount_fen",
    )
    .await?;
    // A renewal runs at most a full term from the current end.
    let mut long_renewal = follow_up(zhang_san(), "renew", id);
    let current_end: NaiveDate = frozen["end_date"].as_str().unwrap_or_default().parse()?;
    long_renewal["end_date"] =
        json!((current_end + chrono::Months::new(12) + Days::new(1)).to_string());
    expect_422(&sys, "r14", &long_renewal, "term_too_long", "end_date").await?;
    // ... and only before the measure's end date.
    sys.clock.set_offset_days(181);
    let mut late = follow_up(zhang_san(), "renew", id);
    late["end_date"] = json!((current_end + Days::new(30)).to_string());
    // Past its end date the measure has lapsed: too late to renew, or,
    // once the expiry sweep has recorded the lapse (it may run the moment
    // the clock moves), no longer in force.
    expect_422_one_of(
        &sys,
        "r15",
        &late,
        &["renewal_too_late", "measure_not_in_force"],
        "prior_order",
    )
    .await?;
    sys.clock.set_offset_days(0);

    // No Idempotency-Key: 400, and nothing was sent for any refused order.
    let reply = sys
        .post_json("/v1/orders", e2e_tests::ENFORCEMENT, &base)
        .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "idempotency_key_required");
    let ledger = sys.ledger("bank-a").await?;
    let controls = ledger["controls"].as_array().map_or(0, Vec::len);
    assert_eq!(
        controls, 1,
        "only the one valid freeze reached the bank: {ledger}"
    );
    let sent = ledger["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "control")
        .count();
    assert_eq!(sent, 1, "only its control message arrived: {ledger}");
    received_once(
        &ledger,
        frozen["request_number"].as_str().unwrap_or_default(),
    )?;
    Ok(())
}

async fn a_freeze_larger_than_the_balance_controls_what_is_there(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_SAVINGS, 1_000_000);
    let order = place(
        &sys,
        "partial",
        &body,
        &["partial", "applied", "refused", "failed"],
    )
    .await?;
    assert_eq!(order["status"], "partial", "{order}");
    assert_eq!(order["requested_fen"], 1_000_000);
    assert_eq!(order["controlled_fen"], 865_050);
    assert_eq!(order["shortfall_fen"], 134_950);
    assert!(
        order["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{order}"
    );
    assert!(order["agency_reference"].as_str().is_some(), "{order}");
    // The bank holds exactly that, from one message.
    let ledger = sys.ledger("bank-a").await?;
    let rn = order["request_number"].as_str().unwrap_or_default();
    let m = measure(&ledger, ZHANG_SAN_SAVINGS, rn);
    assert_eq!(m["amount_fen"], 865_050, "{ledger}");
    received_once(&ledger, rn)?;
    Ok(())
}

async fn a_waiting_freeze_is_promoted_when_the_measure_ahead_is_released(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    // Case 1234 freezes everything on the account...
    let first = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_SAVINGS, 865_050);
    let first = place(&sys, "first", &first, &["applied"]).await?;
    // ...so case 1235's freeze waits in line.
    let mut second = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_SAVINGS, 300_000);
    second["case_number"] = json!(OTHER_CASE);
    let second = place(&sys, "second", &second, &["waiting", "applied", "refused"]).await?;
    assert_eq!(second["status"], "waiting", "{second}");
    assert_eq!(second["queue_position"], 1, "{second}");
    assert_eq!(second["controlled_fen"], 0, "{second}");

    // Releasing the first measure promotes the waiting one; the gateway
    // learns of it by looking again.
    let release = follow_up(
        zhang_san(),
        "release",
        first["id"].as_str().unwrap_or_default(),
    );
    let release = place(
        &sys,
        "release-first",
        &release,
        &["applied", "refused", "failed"],
    )
    .await?;
    assert_eq!(release["status"], "applied", "{release}");
    let first = sys
        .wait_for_order(first["id"].as_str().unwrap_or_default(), &["released"])
        .await?;
    assert_eq!(first["status"], "released");
    let promoted = sys
        .wait_for_order(second["id"].as_str().unwrap_or_default(), &["applied"])
        .await?;
    assert_eq!(promoted["controlled_fen"], 300_000, "{promoted}");
    assert!(promoted["queue_position"].is_null(), "{promoted}");
    Ok(())
}

async fn a_freeze_behind_another_court_waits_and_takes_effect_when_that_court_lifts_its_own(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = freeze(&sys, li_si(), "bank-a", LI_SI_A_FROZEN, 500_000);
    let order = place(&sys, "behind", &body, &["waiting", "applied", "refused"]).await?;
    assert_eq!(order["status"], "waiting", "{order}");
    assert_eq!(order["queue_position"], 1);
    sys.mock_post(
        "bank-a",
        "/_mock/lift",
        &json!({"account_number": LI_SI_A_FROZEN, "document_number": LI_SI_A_FROZEN_DOCUMENT}),
    )
    .await?;
    let promoted = sys
        .wait_for_order(
            order["id"].as_str().unwrap_or_default(),
            &["applied", "partial"],
        )
        .await?;
    assert_eq!(promoted["status"], "applied", "{promoted}");
    assert_eq!(promoted["controlled_fen"], 500_000);
    Ok(())
}

async fn a_freeze_is_renewed_before_it_ends_and_then_released(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    // At the JSON bank: every control action goes through both dialects.
    let body = freeze(&sys, li_si(), "bank-b", LI_SI_B, 1_000_000);
    let frozen = place(&sys, "freeze-b", &body, &["applied"]).await?;
    let id = frozen["id"].as_str().unwrap_or_default().to_owned();
    let old_end: NaiveDate = frozen["end_date"].as_str().unwrap_or_default().parse()?;

    let mut renew = follow_up(li_si(), "renew", &id);
    let new_end = old_end + chrono::Months::new(12) - Days::new(1);
    renew["end_date"] = json!(new_end.to_string());
    let renewal = place(&sys, "renew-b", &renew, &["applied", "refused", "failed"]).await?;
    assert_eq!(renewal["status"], "applied", "{renewal}");
    assert_eq!(renewal["start_date"], (old_end + Days::new(1)).to_string());
    // The measure now ends later, at the gateway and at the bank.
    let measure_now = sys.wait_for_order(&id, &["applied"]).await?;
    assert_eq!(
        measure_now["end_date"],
        new_end.to_string(),
        "{measure_now}"
    );
    let ledger = sys.ledger("bank-b").await?;
    let m = measure(
        &ledger,
        LI_SI_B,
        frozen["request_number"].as_str().unwrap_or_default(),
    );
    assert_eq!(m["end_date"], new_end.to_string(), "{ledger}");

    // A release may name the renewal: it acts on the same measure.
    let release = follow_up(
        li_si(),
        "release",
        renewal["id"].as_str().unwrap_or_default(),
    );
    let released = place(
        &sys,
        "release-b",
        &release,
        &["applied", "refused", "failed"],
    )
    .await?;
    assert_eq!(released["status"], "applied", "{released}");
    let measure_now = sys.wait_for_order(&id, &["released"]).await?;
    assert_eq!(measure_now["status"], "released");
    let ledger = sys.ledger("bank-b").await?;
    let m = measure(
        &ledger,
        LI_SI_B,
        frozen["request_number"].as_str().unwrap_or_default(),
    );
    // The bank keeps our measures after they end: it is listed, released.
    assert_eq!(m["origin"], "control", "{ledger}");
    assert_eq!(m["state"], "released", "{ledger}");
    // Each of the three orders reached the bank in one message.
    for order in [&frozen, &renewal, &released] {
        received_once(
            &ledger,
            order["request_number"].as_str().unwrap_or_default(),
        )?;
    }
    // Released means no more renewals.
    let mut again = follow_up(li_si(), "renew", &id);
    again["end_date"] = json!(new_end.to_string());
    expect_422(
        &sys,
        "renew-released",
        &again,
        "measure_not_in_force",
        "prior_order",
    )
    .await?;
    Ok(())
}

async fn a_deduction_moves_frozen_funds_to_the_court(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 2_000_000);
    let frozen = place(&sys, "freeze-d", &body, &["applied"]).await?;
    let id = frozen["id"].as_str().unwrap_or_default().to_owned();
    let mut deduct = follow_up(zhang_san(), "deduct", &id);
    deduct["amount_fen"] = json!(1_500_000);
    let deducted = place(&sys, "deduct-1", &deduct, &["applied", "refused", "failed"]).await?;
    assert_eq!(deducted["status"], "applied", "{deducted}");
    assert_eq!(deducted["controlled_fen"], 1_500_000);
    // What the freeze still controls is what is left of it.
    let measure_now = sys
        .get(&format!("/v1/orders/{id}"), e2e_tests::ENFORCEMENT)
        .await?
        .body;
    assert_eq!(measure_now["controlled_fen"], 500_000, "{measure_now}");
    assert_eq!(measure_now["deducted_fen"], 1_500_000, "{measure_now}");
    // A second deduction may not take more than that.
    let mut more = follow_up(zhang_san(), "deduct", &id);
    more["amount_fen"] = json!(500_001);
    expect_422(
        &sys,
        "deduct-2",
        &more,
        "deduction_exceeds_freeze",
        "amount_fen",
    )
    .await?;
    // The bank moved the money.
    let ledger = sys.ledger("bank-a").await?;
    let transfers = ledger["transfers"].as_array().cloned().unwrap_or_default();
    assert_eq!(transfers.len(), 1, "{ledger}");
    assert_eq!(transfers[0]["amount_fen"], 1_500_000);
    let account = ledger["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["account_number"] == ZHANG_SAN_DEBIT))
        .cloned()
        .unwrap_or_default();
    assert_eq!(account["balance_fen"], 12_500_000 - 1_500_000, "{account}");
    Ok(())
}

async fn seals_at_the_registry_apply_or_wait_in_line(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let end = date_after(&sys, 3 * 365);
    let seal = |subject: Value, unit: &str| {
        json!({"case_number": CASE, "subject": subject, "officers": officers(), "action": "seal",
               "agency": "registry-x", "asset": {"unit_number": unit},
               "end_date": end.to_string(), "documents": documents()})
    };
    // 李四's flat is free: sealed, after the registry's delay, by polling.
    let sealed = place(
        &sys,
        "seal-1",
        &seal(li_si(), LI_SI_UNIT),
        &["applied", "refused", "failed"],
    )
    .await?;
    assert_eq!(sealed["status"], "applied", "{sealed}");
    assert_eq!(sealed["end_date"], end.to_string());
    assert!(sealed["agency_reference"].as_str().is_some(), "{sealed}");
    // 张三's flat is sealed by another court: this seal waits in line.
    let waiting = place(
        &sys,
        "seal-2",
        &seal(zhang_san(), ZHANG_SAN_UNIT),
        &["waiting", "applied", "refused"],
    )
    .await?;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["queue_position"], 1);
    // Renewing and releasing a seal.
    let mut renew = follow_up(
        li_si(),
        "renew_seal",
        sealed["id"].as_str().unwrap_or_default(),
    );
    renew["end_date"] = json!((end + Days::new(100)).to_string());
    let renewed = place(
        &sys,
        "seal-renew",
        &renew,
        &["applied", "refused", "failed"],
    )
    .await?;
    assert_eq!(renewed["status"], "applied", "{renewed}");
    let release = follow_up(
        li_si(),
        "release_seal",
        sealed["id"].as_str().unwrap_or_default(),
    );
    let released = place(
        &sys,
        "seal-release",
        &release,
        &["applied", "refused", "failed"],
    )
    .await?;
    assert_eq!(released["status"], "applied", "{released}");
    sys.wait_for_order(sealed["id"].as_str().unwrap_or_default(), &["released"])
        .await?;
    Ok(())
}

async fn a_measure_lapses_at_its_end_date_and_is_reported_ahead_of_time(
    backend: Backend,
) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let secret_dir = tempfile::tempdir()?;
    let secret_file = secret_dir.path().join("callback.secret");
    std::fs::write(&secret_file, "expiry-secret")?;
    let url = receiver.url();
    let sys = System::start_on(backend, |config, _| {
        for c in &mut config.callers {
            if c.name == "demo-court" {
                c.callback_url = Some(url.clone());
                c.callback_secret_file = Some(secret_file.clone());
            }
        }
    })
    .await?;
    // A freeze ending in ten days: within the warning window.
    let mut body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 100_000);
    body["end_date"] = json!(date_after(&sys, 10).to_string());
    let order = place(&sys, "lapse", &body, &["applied"]).await?;
    let id = order["id"].as_str().unwrap_or_default().to_owned();
    let warning = receiver
        .wait_for(|e| e["event"] == "order.expiring" && e["resource"]["id"] == id.as_str())
        .await?;
    assert_eq!(warning["resource"]["expires_on"], body["end_date"]);
    // It is listed among the orders expiring soon, and not after a date before it.
    let soon = format!(
        "/v1/orders?case_number={}&expiring_before={}",
        e2e_tests::q(CASE),
        date_after(&sys, 11)
    );
    let listed = sys.get(&soon, e2e_tests::ENFORCEMENT).await?.body;
    assert!(
        listed["orders"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["id"] == id.as_str())),
        "{listed}"
    );
    let later = format!(
        "/v1/orders?case_number={}&expiring_before={}",
        e2e_tests::q(CASE),
        date_after(&sys, 10)
    );
    let listed = sys.get(&later, e2e_tests::ENFORCEMENT).await?.body;
    assert_eq!(listed["orders"], json!([]), "{listed}");

    // Eleven days on, nobody renewed it: it lapsed, at the bank and here.
    sys.clock.set_offset_days(11);
    let today = date_after(&sys, 0);
    sys.mock_post(
        "bank-a",
        "/_mock/clock",
        &json!({"today": today.to_string()}),
    )
    .await?;
    let expired = sys.wait_for_order(&id, &["expired"]).await?;
    assert_eq!(expired["status"], "expired");
    receiver
        .wait_for(|e| e["event"] == "order.expired" && e["resource"]["id"] == id.as_str())
        .await?;
    let ledger = sys.ledger("bank-a").await?;
    let m = measure(
        &ledger,
        ZHANG_SAN_DEBIT,
        order["request_number"].as_str().unwrap_or_default(),
    );
    // The bank keeps our measures after they end: it is listed, lapsed.
    assert_eq!(m["origin"], "control", "{ledger}");
    assert_eq!(m["state"], "lapsed", "{ledger}");
    // Too late to renew.
    let mut renew = follow_up(zhang_san(), "renew", &id);
    renew["end_date"] = json!(date_after(&sys, 100).to_string());
    expect_422(
        &sys,
        "renew-lapsed",
        &renew,
        "measure_not_in_force",
        "prior_order",
    )
    .await?;
    Ok(())
}

async fn the_caller_receives_signed_callbacks_retried_until_accepted(
    backend: Backend,
) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    // The receiver refuses the first two attempts.
    receiver.refuse_first(2);
    let secret_dir = tempfile::tempdir()?;
    let secret_file = secret_dir.path().join("callback.secret");
    std::fs::write(&secret_file, "s3cret-for-demo-court\n")?;
    let url = receiver.url();
    let sys = System::start_on(backend, |config, _| {
        for c in &mut config.callers {
            if c.name == "demo-court" {
                c.callback_url = Some(url.clone());
                c.callback_secret_file = Some(secret_file.clone());
            }
        }
    })
    .await?;
    let body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 100_000);
    let order = place(&sys, "signed", &body, &["applied"]).await?;
    let id = order["id"].as_str().unwrap_or_default().to_owned();
    let event = receiver
        .wait_for(|e| e["event"] == "order.updated" && e["resource"]["id"] == id.as_str())
        .await?;
    assert_eq!(event["resource"]["status"], "applied");
    // Every delivery the receiver took carried a valid signature over its
    // exact bytes, under the caller's secret; a wrong secret fails.
    let deliveries = receiver.deliveries();
    assert!(!deliveries.is_empty());
    for d in &deliveries {
        assert!(
            gateway::notify::verify(b"s3cret-for-demo-court", &d.body, &d.signature),
            "{}",
            d.signature
        );
        assert!(!gateway::notify::verify(
            b"another secret",
            &d.body,
            &d.signature
        ));
    }
    // The two refused attempts were retried with the same delivery id, and
    // each attempt is in the audit log.
    assert!(receiver.refused() >= 2);
    let delivery = event["delivery"].as_str().unwrap_or_default();
    let attempts = sys
        .audit("action=callback.order.updated")
        .await?
        .into_iter()
        .filter(|e| e["request_number"] == delivery && e["direction"] == "outbound")
        .count();
    assert!(attempts >= 3, "three attempts audited, got {attempts}");
    // An inquiry's completion is called back too.
    let inquiry = sys.inquire(zhang_san(), 10).await?;
    let inquiry_id = inquiry.body["id"].as_str().unwrap_or_default().to_owned();
    let done = receiver
        .wait_for(|e| {
            e["event"] == "inquiry.completed" && e["resource"]["id"] == inquiry_id.as_str()
        })
        .await?;
    assert_eq!(done["resource"]["status"], "completed");
    // A release changes the freeze it lifts: its caller hears of both.
    let release = follow_up(zhang_san(), "release", &id);
    let released = place(&sys, "signed-release", &release, &["applied"]).await?;
    let release_id = released["id"].as_str().unwrap_or_default().to_owned();
    receiver
        .wait_for(|e| {
            e["event"] == "order.updated"
                && e["resource"]["id"] == release_id.as_str()
                && e["resource"]["status"] == "applied"
        })
        .await?;
    let lifted = receiver
        .wait_for(|e| {
            e["event"] == "order.updated"
                && e["resource"]["id"] == id.as_str()
                && e["resource"]["status"] == "released"
        })
        .await?;
    assert_eq!(lifted["resource"]["action"], "freeze", "{lifted}");
    Ok(())
}

async fn an_idempotent_replay_returns_the_same_order_and_another_body_is_a_409(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 100_000);
    let first = sys.order("same-key", &body).await?;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    // Same key, same content (keys in another order): the same order.
    let reordered: Value = serde_json::from_str(&serde_json::to_string(&body)?)?;
    let again = sys.order("same-key", &reordered).await?;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    // Same key, another body: 409, nothing new.
    let mut other = body.clone();
    other["amount_fen"] = json!(200_000);
    let conflict = sys.order("same-key", &other).await?;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.body);
    assert_eq!(conflict.body["error"]["code"], "idempotency_conflict");
    let id = first.body["id"].as_str().unwrap_or_default();
    let applied = sys.wait_for_order(id, &["applied"]).await?;
    // Sent once: the bank received its control message once (the replay
    // and the conflict sent nothing), and nothing else.
    let ledger = sys.ledger("bank-a").await?;
    let rn = applied["request_number"].as_str().unwrap_or_default();
    received_once(&ledger, rn)?;
    assert_eq!(
        ledger["controls"].as_array().map(Vec::len),
        Some(1),
        "{ledger}"
    );
    // Listing the case shows it once.
    let list = sys
        .get(
            &format!("/v1/orders?case_number={}", e2e_tests::q(CASE)),
            e2e_tests::ENFORCEMENT,
        )
        .await?
        .body;
    assert_eq!(list["orders"].as_array().map(Vec::len), Some(1), "{list}");
    let _ = ZHANG_SAN_ID;
    Ok(())
}

// A caller's callback endpoint, for the tests above --------------------------

use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Delivery {
    pub body: Vec<u8>,
    pub signature: String,
    pub event: Value,
}

#[derive(Default)]
struct ReceiverState {
    deliveries: Vec<Delivery>,
    refuse: usize,
    refused: usize,
}

/// An HTTP server on port 0 that takes callbacks as an enforcement system
/// would, remembering each one.
pub struct Receiver {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/callbacks",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let state = shared.clone();
                    async move {
                        let mut s = state
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if s.refused < s.refuse {
                            s.refused += 1;
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let signature = headers
                            .get("x-gateway-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        s.deliveries.push(Delivery {
                            body: body.to_vec(),
                            signature,
                            event,
                        });
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/callbacks", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReceiverState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn refuse_first(&self, n: usize) {
        self.lock().refuse = n;
    }

    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Waits for a delivered event matching `wanted`.
    pub async fn wait_for(&self, wanted: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(d) = self.deliveries().into_iter().find(|d| wanted(&d.event)) {
                return Ok(d.event);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "no such callback; got {:?}",
                    self.deliveries()
                        .iter()
                        .map(|d| d.event["event"].clone())
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

on_both_backends!(every_rule_of_the_law_is_a_422_with_its_reason);
on_both_backends!(a_freeze_larger_than_the_balance_controls_what_is_there);
on_both_backends!(a_waiting_freeze_is_promoted_when_the_measure_ahead_is_released);
on_both_backends!(a_freeze_is_renewed_before_it_ends_and_then_released);
on_both_backends!(a_deduction_moves_frozen_funds_to_the_court);
on_both_backends!(seals_at_the_registry_apply_or_wait_in_line);
on_both_backends!(a_measure_lapses_at_its_end_date_and_is_reported_ahead_of_time);
on_both_backends!(the_caller_receives_signed_callbacks_retried_until_accepted);
on_both_backends!(
    a_freeze_behind_another_court_waits_and_takes_effect_when_that_court_lifts_its_own
);
on_both_backends!(an_idempotent_replay_returns_the_same_order_and_another_body_is_a_409);
