//! Freeze plans: freeze up to an amount across the accounts an inquiry
//! found, never more, whatever the banks answer.

use std::time::Duration;

use chrono::Days;
use e2e_tests::{Backend, CASE, System, on_both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::orders::{documents, freeze, li_si, officers, place};

const LI_SI_A_PARTLY_FROZEN: &str = "6222020200155550001";
const LI_SI_A_FROZEN: &str = "6222020200155550002";
const LI_SI_B: &str = "6217000010005550003";

async fn li_si_inquiry(sys: &System) -> anyhow::Result<String> {
    let reply = sys.inquire(li_si(), 20).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "inquiry: {}", reply.body);
    Ok(reply.body["id"].as_str().unwrap_or_default().to_owned())
}

fn plan_body(sys: &System, inquiry: &str, amount_fen: i64) -> Value {
    json!({
        "case_number": CASE,
        "subject": li_si(),
        "officers": officers(),
        "inquiry": inquiry,
        "amount_fen": amount_fen,
        "end_date": (sys.clock.today() + Days::new(180)).to_string(),
        "documents": documents(),
    })
}

async fn run_plan(sys: &System, key: &str, body: &Value) -> anyhow::Result<Value> {
    let reply = sys.keyed_post("/v1/freeze-plans", key, body).await?;
    anyhow::ensure!(
        reply.status == StatusCode::ACCEPTED,
        "plan: {} {}",
        reply.status,
        reply.body
    );
    let id = reply.body["id"].as_str().unwrap_or_default();
    sys.wait_for(
        &format!("/v1/freeze-plans/{id}"),
        Duration::from_secs(20),
        |p| p["status"] != "running",
    )
    .await
}

/// What the plan's measures hold at the banks right now, by the banks' own
/// ledgers.
async fn held_at_banks(sys: &System, plan: &Value) -> anyhow::Result<i64> {
    let numbers: Vec<&str> = plan["orders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["action"] == "freeze")
        .filter_map(|o| o["request_number"].as_str())
        .collect();
    let mut total = 0;
    for bank in ["bank-a", "bank-b"] {
        let ledger = sys.ledger(bank).await?;
        for account in ledger["accounts"].as_array().into_iter().flatten() {
            for m in account["measures"].as_array().into_iter().flatten() {
                if m["state"] == "in_force"
                    && m["request_number"]
                        .as_str()
                        .is_some_and(|r| numbers.contains(&r))
                {
                    total += m["amount_fen"].as_i64().unwrap_or(0);
                }
            }
        }
    }
    Ok(total)
}

async fn a_plan_over_three_accounts_freezes_exactly_the_amount(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let inquiry = li_si_inquiry(&sys).await?;
    // 李四: 40,000.00 at bank-b, 30,000.00 at bank-a of which another court
    // froze 10,000.00, and 8,000.00 at bank-a frozen whole: 78,000.00 in all.
    let plan = run_plan(&sys, "plan-exact", &plan_body(&sys, &inquiry, 5_000_000)).await?;
    assert_eq!(plan["status"], "completed", "{plan}");
    assert_eq!(plan["controlled_fen"], 5_000_000, "{plan}");
    // Largest available first; the account with nothing available is not
    // disturbed.
    let orders = plan["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(orders.len(), 2, "{plan}");
    assert_eq!(orders[0]["asset"]["account_number"], LI_SI_B);
    assert_eq!(orders[0]["requested_fen"], 5_000_000);
    assert_eq!(orders[0]["status"], "partial");
    assert_eq!(orders[0]["controlled_fen"], 4_000_000);
    // The next asks only for what is missing.
    assert_eq!(orders[1]["asset"]["account_number"], LI_SI_A_PARTLY_FROZEN);
    assert_eq!(orders[1]["requested_fen"], 1_000_000);
    assert_eq!(orders[1]["status"], "applied");
    assert_eq!(
        plan["skipped_accounts"][0]["account_number"], LI_SI_A_FROZEN,
        "{plan}"
    );
    assert_eq!(held_at_banks(&sys, &plan).await?, 5_000_000);

    // Replaying the request returns the plan; nothing more is frozen.
    let again = sys
        .keyed_post(
            "/v1/freeze-plans",
            "plan-exact",
            &plan_body(&sys, &inquiry, 5_000_000),
        )
        .await?;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["id"], plan["id"]);
    let conflict = sys
        .keyed_post(
            "/v1/freeze-plans",
            "plan-exact",
            &plan_body(&sys, &inquiry, 1),
        )
        .await?;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{}", conflict.body);
    assert_eq!(held_at_banks(&sys, &plan).await?, 5_000_000);
    Ok(())
}

async fn a_plan_releases_a_freeze_that_would_wait_and_never_exceeds_the_amount(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let inquiry = li_si_inquiry(&sys).await?;
    // After the inquiry, another case freezes everything at bank-b: the
    // plan's first freeze there can only wait in line.
    let mut other = freeze(&sys, li_si(), "bank-b", LI_SI_B, 4_000_000);
    other["case_number"] = json!("(2024)甘0503执1235号");
    place(&sys, "other-case", &other, &["applied"]).await?;

    let plan = run_plan(&sys, "plan-partial", &plan_body(&sys, &inquiry, 6_500_000)).await?;
    // Only 20,000.00 could be frozen: the plan says partial.
    assert_eq!(plan["status"], "partial", "{plan}");
    assert_eq!(plan["controlled_fen"], 2_000_000, "{plan}");
    let orders = plan["orders"].as_array().cloned().unwrap_or_default();
    let waiting = orders
        .iter()
        .find(|o| o["action"] == "freeze" && o["asset"]["account_number"] == LI_SI_B)
        .cloned()
        .unwrap_or_default();
    // The waiting freeze was released before the plan went on.
    assert_eq!(waiting["status"], "released", "{plan}");
    assert!(
        orders.iter().any(|o| o["action"] == "release"
            && o["prior_order"] == waiting["id"]
            && o["status"] == "applied"),
        "{plan}"
    );
    assert_eq!(held_at_banks(&sys, &plan).await?, 2_000_000);

    // When the other case lets go, nothing of the plan takes effect at
    // bank-b: the total stays within the amount.
    let other_id = sys
        .get(
            &format!(
                "/v1/orders?case_number={}",
                e2e_tests::q("(2024)甘0503执1235号")
            ),
            e2e_tests::ENFORCEMENT,
        )
        .await?
        .body["orders"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut release = json!({
        "case_number": "(2024)甘0503执1235号", "subject": li_si(), "officers": officers(),
        "action": "release", "prior_order": other_id, "documents": documents(),
    });
    release["agency"] = json!("bank-b");
    place(&sys, "other-release", &release, &["applied"]).await?;
    let plan_now = sys
        .get(
            &format!(
                "/v1/freeze-plans/{}",
                plan["id"].as_str().unwrap_or_default()
            ),
            e2e_tests::ENFORCEMENT,
        )
        .await?
        .body;
    assert_eq!(
        held_at_banks(&sys, &plan_now).await?,
        2_000_000,
        "{plan_now}"
    );
    Ok(())
}

async fn a_plan_needs_a_finished_inquiry_of_the_same_case_and_subject(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let inquiry = li_si_inquiry(&sys).await?;
    let mut other_case = plan_body(&sys, &inquiry, 100);
    other_case["case_number"] = json!("(2024)甘0503执1235号");
    let reply = sys
        .keyed_post("/v1/freeze-plans", "p1", &other_case)
        .await?;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], "inquiry_other_case");
    let unknown = plan_body(&sys, "inq_nonexistent", 100);
    let reply = sys.keyed_post("/v1/freeze-plans", "p2", &unknown).await?;
    assert_eq!(
        reply.body["error"]["code"], "unknown_inquiry",
        "{}",
        reply.body
    );
    let mut too_long = plan_body(&sys, &inquiry, 100);
    too_long["end_date"] = json!((sys.clock.today() + Days::new(400)).to_string());
    let reply = sys.keyed_post("/v1/freeze-plans", "p3", &too_long).await?;
    assert_eq!(
        reply.body["error"]["code"], "term_too_long",
        "{}",
        reply.body
    );
    let reply = sys
        .post_json(
            "/v1/freeze-plans",
            e2e_tests::ENFORCEMENT,
            &plan_body(&sys, &inquiry, 100),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    Ok(())
}

on_both_backends!(a_plan_over_three_accounts_freezes_exactly_the_amount);
on_both_backends!(a_plan_needs_a_finished_inquiry_of_the_same_case_and_subject);
on_both_backends!(a_plan_releases_a_freeze_that_would_wait_and_never_exceeds_the_amount);
