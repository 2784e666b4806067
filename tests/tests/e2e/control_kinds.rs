//! Control measures on the further kinds of asset, end to end, on both
//! backends: each kind's actions at its own mock agency, in its own
//! dialect, with the law's rules per kind (domain.md, "More kinds of
//! asset"): a vehicle sealed for at most two years and waiting behind
//! another court's seal; securities frozen by quantity, in part when fewer
//! are free, waiting in line and promoted; payment accounts frozen and
//! deducted like deposits; a provident fund deducted only when eligible
//! for withdrawal; equity frozen whole and waiting behind another court's
//! freeze; and a freeze plan across every money-like kind, checked against
//! each agency's own ledger.

use chrono::{Days, Months, NaiveDate};
use e2e_tests::*;
use mock_agencies::fixtures;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::orders::{documents, officers, place};

const OTHER_CASE: &str = "(2024)甘0503执1235号";

/// What the gateway waits for before it looks at an order.
const DECIDED: [&str; 5] = ["applied", "partial", "waiting", "refused", "failed"];

fn person(name: &str, id: &str) -> Value {
    json!({"kind": "person", "name": name, "id_number": id})
}

fn li_si() -> Value {
    person(fixtures::LI_SI_NAME, fixtures::LI_SI_ID)
}

fn zhao_liu() -> Value {
    person(fixtures::ZHAO_LIU_NAME, fixtures::ZHAO_LIU_ID)
}

fn sample_org() -> Value {
    json!({"kind": "organization", "name": fixtures::SAMPLE_ORG_NAME,
           "credit_code": fixtures::SAMPLE_ORG_ID})
}

fn date_after(sys: &System, days: u64) -> NaiveDate {
    sys.clock.today() + Days::new(days)
}

/// The last day a measure starting today may run for `months` (the day
/// before the same date `months` later), plus `past` days.
fn term_end(sys: &System, months: u32, past: u64) -> NaiveDate {
    sys.clock.today() + Months::new(months) - Days::new(1) + Days::new(past)
}

/// A measure starting today on `asset` at `agency`, ending after `days`.
fn measure(
    sys: &System,
    subject: Value,
    action: &str,
    agency: &str,
    asset: Value,
    days: u64,
) -> Value {
    json!({
        "case_number": CASE,
        "subject": subject,
        "officers": officers(),
        "action": action,
        "agency": agency,
        "asset": asset,
        "end_date": date_after(sys, days).to_string(),
        "documents": documents(),
    })
}

/// An order acting on a prior one.
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

/// A renewal of the measure `order` to 30 days past its current end.
fn renewal(subject: Value, action: &str, order: &Value) -> anyhow::Result<(Value, NaiveDate)> {
    let end: NaiveDate = order["end_date"].as_str().unwrap_or_default().parse()?;
    let mut body = follow_up(subject, action, id(order));
    let new_end = end + Days::new(30);
    body["end_date"] = json!(new_end.to_string());
    Ok((body, new_end))
}

fn id(order: &Value) -> &str {
    order["id"].as_str().unwrap_or_default()
}

/// The 422 (`code` on `field`) an order is refused with.
async fn refused(
    sys: &System,
    key: &str,
    body: &Value,
    code: &str,
    field: &str,
) -> anyhow::Result<Value> {
    let reply = sys.order(key, body).await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{key}: {}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], code, "{key}: {}", reply.body);
    assert_eq!(reply.body["error"]["field"], field, "{key}: {}", reply.body);
    Ok(reply.body)
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

/// The measure anywhere in an agency's ledger that its control order
/// `request_number` placed on an asset (`origin` says whose it is).
fn find_measure<'a>(value: &'a Value, request_number: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => {
            if map.get("request_number").and_then(Value::as_str) == Some(request_number)
                && map.contains_key("origin")
            {
                return Some(value);
            }
            map.values().find_map(|v| find_measure(v, request_number))
        }
        Value::Array(items) => items.iter().find_map(|v| find_measure(v, request_number)),
        _ => None,
    }
}

/// The measure the agency's ledger keeps for `order`, on the asset.
async fn measure_at_agency(
    sys: &System,
    agency: &str,
    holder: &str,
    order: &Value,
) -> anyhow::Result<Value> {
    let book = ledger(sys, agency, holder).await?;
    let rn = order["request_number"].as_str().unwrap_or_default();
    find_measure(&book, rn)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{agency} keeps no measure {rn}: {book}"))
}

async fn a_vehicle_is_sealed_renewed_released_and_waits_behind_another_courts_seal(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_with_every_kind(backend, |_, _| {}).await?;
    let car = json!({"vin": fixtures::ZHANG_SAN_VIN});

    // The law's rules for a vehicle: sealed (never frozen), by its VIN,
    // for at most two years.
    let mut frozen = measure(
        &sys,
        zhang_san(),
        "freeze",
        fixtures::VEHICLE_V,
        car.clone(),
        90,
    );
    frozen["amount_fen"] = json!(100);
    let body = refused(&sys, "v0", &frozen, "invalid_value", "action").await?;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("vehicle"), "{body}");
    assert!(message.contains("seal"), "{body}");
    let by_account = measure(
        &sys,
        zhang_san(),
        "seal",
        fixtures::VEHICLE_V,
        json!({"account_number": fixtures::ZHANG_SAN_VIN}),
        90,
    );
    refused(
        &sys,
        "v1",
        &by_account,
        "invalid_value",
        "asset.account_number",
    )
    .await?;
    let too_long = measure(
        &sys,
        zhang_san(),
        "seal",
        fixtures::VEHICLE_V,
        car.clone(),
        0,
    );
    let mut too_long = too_long;
    too_long["end_date"] = json!(term_end(&sys, 24, 1).to_string());
    let body = refused(&sys, "v2", &too_long, "term_too_long", "end_date").await?;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("two years")),
        "{body}"
    );

    // Sealed for the full two years, at the register.
    let mut full = measure(
        &sys,
        zhang_san(),
        "seal",
        fixtures::VEHICLE_V,
        car.clone(),
        0,
    );
    full["end_date"] = json!(term_end(&sys, 24, 0).to_string());
    let sealed = place(&sys, "v3", &full, &DECIDED).await?;
    assert_eq!(sealed["status"], "applied", "{sealed}");
    assert_eq!(sealed["asset_kind"], "vehicle", "{sealed}");
    assert_eq!(sealed["asset"], car, "{sealed}");
    let at_register =
        measure_at_agency(&sys, fixtures::VEHICLE_V, fixtures::ZHANG_SAN_ID, &sealed).await?;
    assert_eq!(at_register["case_number"], CASE, "{at_register}");
    assert_eq!(at_register["state"], "in_force", "{at_register}");

    // Renewed before it ends: the seal now ends later.
    let (renew, new_end) = renewal(zhang_san(), "renew_seal", &sealed)?;
    let renewed = place(&sys, "v4", &renew, &DECIDED).await?;
    assert_eq!(renewed["status"], "applied", "{renewed}");
    let sealed_now = sys.wait_for_order(id(&sealed), &["applied"]).await?;
    assert_eq!(sealed_now["end_date"], new_end.to_string(), "{sealed_now}");

    // Released: the seal is lifted.
    let release = follow_up(zhang_san(), "release_seal", id(&sealed));
    let released = place(&sys, "v5", &release, &DECIDED).await?;
    assert_eq!(released["status"], "applied", "{released}");
    sys.wait_for_order(id(&sealed), &["released"]).await?;

    // 李四's car is sealed by another court, with another seal in line:
    // ours waits behind both.
    let li_si_car = json!({"vin": fixtures::LI_SI_VIN});
    let seal = measure(&sys, li_si(), "seal", fixtures::VEHICLE_V, li_si_car, 365);
    let waiting = place(&sys, "v6", &seal, &DECIDED).await?;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert!(
        waiting["queue_position"].as_i64().is_some_and(|p| p >= 1),
        "{waiting}"
    );
    Ok(())
}
on_both_backends!(a_vehicle_is_sealed_renewed_released_and_waits_behind_another_courts_seal);

async fn securities_are_frozen_by_quantity_in_part_and_in_line(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_with_every_kind(backend, |_, _| {}).await?;
    let shares = json!({
        "securities_account": fixtures::ZHANG_SAN_SECURITIES_ACCOUNT,
        "security_code": fixtures::ZHANG_SAN_SECURITY_CODE,
    });
    let freeze = |units: Option<i64>, days: u64| {
        let mut body = measure(
            &sys,
            zhang_san(),
            "freeze",
            fixtures::SECURITIES_S,
            shares.clone(),
            days,
        );
        if let Some(units) = units {
            body["quantity"] = json!(units);
        }
        body
    };

    // By quantity, never by amount; for at most three years.
    refused(
        &sys,
        "s0",
        &freeze(None, 90),
        "quantity_required",
        "quantity",
    )
    .await?;
    let mut by_amount = freeze(None, 90);
    by_amount["amount_fen"] = json!(100_000);
    refused(&sys, "s1", &by_amount, "invalid_value", "amount_fen").await?;
    refused(
        &sys,
        "s2",
        &freeze(Some(0), 90),
        "quantity_not_positive",
        "quantity",
    )
    .await?;
    let mut half_named = freeze(Some(100), 90);
    half_named["asset"] = json!({"securities_account": fixtures::ZHANG_SAN_SECURITIES_ACCOUNT});
    refused(
        &sys,
        "s3",
        &half_named,
        "invalid_value",
        "asset.security_code",
    )
    .await?;
    let mut too_long = freeze(Some(100), 0);
    too_long["end_date"] = json!(term_end(&sys, 36, 1).to_string());
    refused(&sys, "s4", &too_long, "term_too_long", "end_date").await?;

    // 15,000 asked, 12,000 held: the depository freezes what is free.
    let asked = fixtures::ZHANG_SAN_SECURITY_QUANTITY + 3_000;
    let first = place(&sys, "s5", &freeze(Some(asked), 365), &DECIDED).await?;
    assert_eq!(first["status"], "partial", "{first}");
    assert_eq!(first["asset_kind"], "securities", "{first}");
    assert_eq!(first["requested_quantity"], asked, "{first}");
    assert_eq!(
        first["controlled_quantity"],
        fixtures::ZHANG_SAN_SECURITY_QUANTITY,
        "{first}"
    );
    assert_eq!(first["shortfall_quantity"], 3_000, "{first}");
    assert!(first.get("requested_fen").is_none(), "{first}");

    // Nothing is free now: a freeze of another case waits in line.
    let mut second_body = freeze(Some(1_000), 365);
    second_body["case_number"] = json!(OTHER_CASE);
    let second = place(&sys, "s6", &second_body, &DECIDED).await?;
    assert_eq!(second["status"], "waiting", "{second}");
    assert_eq!(second["queue_position"], 1, "{second}");

    // Securities are never deducted online.
    let mut deduct = follow_up(zhang_san(), "deduct", id(&first));
    deduct["amount_fen"] = json!(100);
    refused(&sys, "s7", &deduct, "invalid_value", "action").await?;

    // Renewed, then released: the freeze in line takes effect.
    let (renew, new_end) = renewal(zhang_san(), "renew", &first)?;
    let renewed = place(&sys, "s8", &renew, &DECIDED).await?;
    assert_eq!(renewed["status"], "applied", "{renewed}");
    let first_now = sys.wait_for_order(id(&first), &["partial"]).await?;
    assert_eq!(first_now["end_date"], new_end.to_string(), "{first_now}");
    let release = follow_up(zhang_san(), "release", id(&first));
    let released = place(&sys, "s9", &release, &DECIDED).await?;
    assert_eq!(released["status"], "applied", "{released}");
    sys.wait_for_order(id(&first), &["released"]).await?;
    let promoted = sys.wait_for_order(id(&second), &["applied"]).await?;
    assert_eq!(promoted["controlled_quantity"], 1_000, "{promoted}");
    let at_depository = measure_at_agency(
        &sys,
        fixtures::SECURITIES_S,
        fixtures::ZHANG_SAN_ID,
        &promoted,
    )
    .await?;
    assert_eq!(at_depository["state"], "in_force", "{at_depository}");
    assert_eq!(at_depository["quantity"], 1_000, "{at_depository}");
    assert_eq!(at_depository["case_number"], OTHER_CASE, "{at_depository}");

    // 赵六's shares are wholly frozen by another court: ours waits.
    let zhao_liu_shares = json!({
        "securities_account": fixtures::ZHAO_LIU_SECURITIES_ACCOUNT,
        "security_code": fixtures::ZHAO_LIU_SECURITY_CODE,
    });
    let mut body = measure(
        &sys,
        zhao_liu(),
        "freeze",
        fixtures::SECURITIES_S,
        zhao_liu_shares,
        365,
    );
    body["quantity"] = json!(fixtures::ZHAO_LIU_SECURITY_QUANTITY);
    let waiting = place(&sys, "s10", &body, &DECIDED).await?;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["queue_position"], 1, "{waiting}");
    Ok(())
}
on_both_backends!(securities_are_frozen_by_quantity_in_part_and_in_line);

async fn a_payment_account_is_frozen_deducted_renewed_and_released(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_with_every_kind(backend, |_, _| {}).await?;
    let account = json!({"payment_account": fixtures::ZHANG_SAN_PAYMENT_ACCOUNT});
    let freeze = |amount: i64, days: u64| {
        let mut body = measure(
            &sys,
            zhang_san(),
            "freeze",
            fixtures::PAYMENT_P,
            account.clone(),
            days,
        );
        body["amount_fen"] = json!(amount);
        body
    };
    // Funds: a year at most, an amount always.
    let mut too_long = freeze(100, 0);
    too_long["end_date"] = json!(term_end(&sys, 12, 1).to_string());
    refused(&sys, "p0", &too_long, "term_too_long", "end_date").await?;
    let mut no_amount = freeze(100, 90);
    no_amount.as_object_mut().map(|m| m.remove("amount_fen"));
    refused(&sys, "p1", &no_amount, "amount_required", "amount_fen").await?;

    let frozen = place(&sys, "p2", &freeze(200_000, 180), &DECIDED).await?;
    assert_eq!(frozen["status"], "applied", "{frozen}");
    assert_eq!(frozen["asset_kind"], "payment_account", "{frozen}");
    assert_eq!(frozen["controlled_fen"], 200_000, "{frozen}");

    // Deducted to the court: the platform's balance falls by as much.
    let mut deduct = follow_up(zhang_san(), "deduct", id(&frozen));
    deduct["amount_fen"] = json!(50_000);
    let deducted = place(&sys, "p3", &deduct, &DECIDED).await?;
    assert_eq!(deducted["status"], "applied", "{deducted}");
    let frozen_now = sys.wait_for_order(id(&frozen), &["applied"]).await?;
    assert_eq!(frozen_now["deducted_fen"], 50_000, "{frozen_now}");
    assert_eq!(frozen_now["controlled_fen"], 150_000, "{frozen_now}");
    let book = ledger(&sys, fixtures::PAYMENT_P, fixtures::ZHANG_SAN_ID).await?;
    let account = &book["payment_accounts"][0];
    assert_eq!(
        account["balance_fen"],
        fixtures::ZHANG_SAN_PAYMENT_BALANCE_FEN - 50_000,
        "{book}"
    );
    let at_platform =
        measure_at_agency(&sys, fixtures::PAYMENT_P, fixtures::ZHANG_SAN_ID, &frozen).await?;
    assert_eq!(at_platform["amount_fen"], 150_000, "{at_platform}");

    let (renew, _) = renewal(zhang_san(), "renew", &frozen)?;
    let renewed = place(&sys, "p4", &renew, &DECIDED).await?;
    assert_eq!(renewed["status"], "applied", "{renewed}");
    let release = follow_up(zhang_san(), "release", id(&frozen));
    let released = place(&sys, "p5", &release, &DECIDED).await?;
    assert_eq!(released["status"], "applied", "{released}");
    sys.wait_for_order(id(&frozen), &["released"]).await?;
    Ok(())
}
on_both_backends!(a_payment_account_is_frozen_deducted_renewed_and_released);

async fn a_provident_fund_is_deducted_only_when_eligible_for_withdrawal(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_with_every_kind(backend, |_, _| {}).await?;
    let freeze = |subject: Value, account: &str, amount: i64| {
        let mut body = measure(
            &sys,
            subject,
            "freeze",
            fixtures::FUND_F,
            json!({"fund_account": account}),
            300,
        );
        body["amount_fen"] = json!(amount);
        body
    };
    let mut too_long = freeze(zhang_san(), fixtures::ZHANG_SAN_FUND_ACCOUNT, 100);
    too_long["end_date"] = json!(term_end(&sys, 12, 1).to_string());
    refused(&sys, "f0", &too_long, "term_too_long", "end_date").await?;

    // 张三's account is not eligible for withdrawal: frozen, but a
    // deduction is refused with the centre's reason, and the freeze stands.
    let frozen = place(
        &sys,
        "f1",
        &freeze(zhang_san(), fixtures::ZHANG_SAN_FUND_ACCOUNT, 1_000_000),
        &DECIDED,
    )
    .await?;
    assert_eq!(frozen["status"], "applied", "{frozen}");
    assert_eq!(frozen["asset_kind"], "provident_fund", "{frozen}");
    let mut deduct = follow_up(zhang_san(), "deduct", id(&frozen));
    deduct["amount_fen"] = json!(100_000);
    let not_eligible = place(&sys, "f2", &deduct, &DECIDED).await?;
    assert_eq!(not_eligible["status"], "refused", "{not_eligible}");
    assert!(
        not_eligible["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{not_eligible}"
    );
    let frozen_now = sys.wait_for_order(id(&frozen), &["applied"]).await?;
    assert_eq!(frozen_now["deducted_fen"], 0, "{frozen_now}");
    assert_eq!(frozen_now["controlled_fen"], 1_000_000, "{frozen_now}");

    // 赵六's is eligible: the deduction goes through.
    let frozen = place(
        &sys,
        "f3",
        &freeze(zhao_liu(), fixtures::ZHAO_LIU_FUND_ACCOUNT, 1_000_000),
        &DECIDED,
    )
    .await?;
    assert_eq!(frozen["status"], "applied", "{frozen}");
    let mut deduct = follow_up(zhao_liu(), "deduct", id(&frozen));
    deduct["amount_fen"] = json!(400_000);
    let deducted = place(&sys, "f4", &deduct, &DECIDED).await?;
    assert_eq!(deducted["status"], "applied", "{deducted}");
    let frozen_now = sys.wait_for_order(id(&frozen), &["applied"]).await?;
    assert_eq!(frozen_now["deducted_fen"], 400_000, "{frozen_now}");

    // Renewed and released like any freeze of funds.
    let (renew, _) = renewal(zhao_liu(), "renew", &frozen)?;
    let renewed = place(&sys, "f5", &renew, &DECIDED).await?;
    assert_eq!(renewed["status"], "applied", "{renewed}");
    let release = follow_up(zhao_liu(), "release", id(&frozen));
    let released = place(&sys, "f6", &release, &DECIDED).await?;
    assert_eq!(released["status"], "applied", "{released}");
    sys.wait_for_order(id(&frozen), &["released"]).await?;
    Ok(())
}
on_both_backends!(a_provident_fund_is_deducted_only_when_eligible_for_withdrawal);

async fn equity_is_frozen_whole_and_waits_behind_another_courts_freeze(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_with_every_kind(backend, |_, _| {}).await?;
    let holding = json!({"company_credit_code": fixtures::ZHAO_LIU_EQUITY_CREDIT_CODE});
    let freeze = |subject: Value, holding: Value, days: u64| {
        measure(&sys, subject, "freeze", fixtures::MARKET_M, holding, days)
    };
    // Whole: no amount, no quantity; three years at most.
    let mut with_amount = freeze(zhao_liu(), holding.clone(), 90);
    with_amount["amount_fen"] = json!(100);
    refused(&sys, "e0", &with_amount, "invalid_value", "amount_fen").await?;
    let mut with_quantity = freeze(zhao_liu(), holding.clone(), 90);
    with_quantity["quantity"] = json!(100);
    refused(&sys, "e1", &with_quantity, "invalid_value", "quantity").await?;
    let mut too_long = freeze(zhao_liu(), holding.clone(), 0);
    too_long["end_date"] = json!(term_end(&sys, 36, 1).to_string());
    refused(&sys, "e2", &too_long, "term_too_long", "end_date").await?;

    let mut full = freeze(zhao_liu(), holding.clone(), 0);
    full["end_date"] = json!(term_end(&sys, 36, 0).to_string());
    let frozen = place(&sys, "e3", &full, &DECIDED).await?;
    assert_eq!(frozen["status"], "applied", "{frozen}");
    assert_eq!(frozen["asset_kind"], "equity", "{frozen}");
    assert_eq!(frozen["asset"], holding, "{frozen}");
    let (renew, new_end) = renewal(zhao_liu(), "renew", &frozen)?;
    // A full term from the current end is the most a renewal may run.
    let renewed = place(&sys, "e4", &renew, &DECIDED).await?;
    assert_eq!(renewed["status"], "applied", "{renewed}");
    let frozen_now = sys.wait_for_order(id(&frozen), &["applied"]).await?;
    assert_eq!(frozen_now["end_date"], new_end.to_string(), "{frozen_now}");
    let release = follow_up(zhao_liu(), "release", id(&frozen));
    let released = place(&sys, "e5", &release, &DECIDED).await?;
    assert_eq!(released["status"], "applied", "{released}");
    sys.wait_for_order(id(&frozen), &["released"]).await?;

    // 示例有限公司's equity is frozen in part by another court: ours waits.
    let theirs = json!({"company_credit_code": fixtures::SAMPLE_ORG_EQUITY_CREDIT_CODE});
    let waiting = place(&sys, "e6", &freeze(sample_org(), theirs, 365), &DECIDED).await?;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["queue_position"], 1, "{waiting}");
    Ok(())
}
on_both_backends!(equity_is_frozen_whole_and_waits_behind_another_courts_freeze);

async fn a_plan_freezes_across_every_money_like_kind_and_never_more_than_the_amount(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_with_every_kind(backend, |_, _| {}).await?;
    let reply = sys.inquire(zhang_san(), 20).await?;
    assert_eq!(reply.body["status"], "completed", "{}", reply.body);
    let inquiry = reply.body["id"].as_str().unwrap_or_default().to_owned();

    // Every account of 张三's, largest first: bank-a's debit account,
    // bank-b's, the provident fund, bank-a's savings, then the payment
    // account for the last 1,000.00.
    let funds = fixtures::ZHANG_SAN_BANK_A_DEBIT_AVAILABLE_FEN
        + fixtures::ZHANG_SAN_BANK_B_AVAILABLE_FEN
        + fixtures::ZHANG_SAN_FUND_BALANCE_FEN
        + fixtures::ZHANG_SAN_BANK_A_SAVINGS_AVAILABLE_FEN;
    let amount = funds + 100_000;
    let body = json!({
        "case_number": CASE,
        "subject": zhang_san(),
        "officers": officers(),
        "inquiry": inquiry,
        "amount_fen": amount,
        "end_date": date_after(&sys, 180).to_string(),
        "documents": documents(),
    });
    let reply = sys.keyed_post("/v1/freeze-plans", "plan-1", &body).await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let plan_id = reply.body["id"].as_str().unwrap_or_default().to_owned();
    let plan = sys
        .wait_for(
            &format!("/v1/freeze-plans/{plan_id}"),
            std::time::Duration::from_secs(30),
            |p| p["status"] != "running",
        )
        .await?;
    assert_eq!(plan["status"], "completed", "{plan}");
    assert_eq!(plan["controlled_fen"], amount, "{plan}");
    let kinds: Vec<&str> = plan["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["kind"].as_str().unwrap_or("bank_account"))
        .collect();
    assert!(kinds.contains(&"payment_account"), "{plan}");
    assert!(kinds.contains(&"provident_fund"), "{plan}");

    // What each agency's own ledger holds adds up to the amount, never more.
    let mut held = 0;
    for order in plan["orders"].as_array().into_iter().flatten() {
        if order["action"] != "freeze" || order["status"] == "released" {
            continue;
        }
        let agency = order["agency"].as_str().unwrap_or_default();
        let at_agency = measure_at_agency(&sys, agency, ZHANG_SAN_ID, order).await?;
        let controlled = order["controlled_fen"].as_i64().unwrap_or(0);
        assert_eq!(at_agency["state"], "in_force", "{agency}: {at_agency}");
        assert_eq!(at_agency["amount_fen"], controlled, "{agency}: {at_agency}");
        held += at_agency["amount_fen"].as_i64().unwrap_or(0);
    }
    assert_eq!(held, amount, "{plan}");
    let by_kind = |kind: &str| {
        plan["orders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["asset_kind"] == kind && o["action"] == "freeze")
            .map(|o| o["controlled_fen"].as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    assert_eq!(by_kind("payment_account"), 100_000, "{plan}");
    assert_eq!(
        by_kind("provident_fund"),
        fixtures::ZHANG_SAN_FUND_BALANCE_FEN,
        "{plan}"
    );
    Ok(())
}
on_both_backends!(a_plan_freezes_across_every_money_like_kind_and_never_more_than_the_amount);
