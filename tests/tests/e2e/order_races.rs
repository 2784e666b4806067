//! Orders and freeze plans sent at once: the enforcement system retries,
//! several clerks act on one freeze, two gateways share the load. Whatever
//! arrives together is decided one at a time, so no check is outrun: a
//! freeze is never deducted beyond what it holds, released twice, or
//! created twice under one key, and the audit log names only what exists.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Days;
use e2e_tests::{Backend, CASE, ENFORCEMENT, System, on_both_backends, zhang_san};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::orders::{documents, freeze, li_si, officers, place};

/// 张三 at bank-a: 125,000.00 available.
const ZHANG_SAN_DEBIT: &str = "6222020200112233445";

/// An order acting on the measure of `prior`.
fn acting_on(action: &str, prior: &str) -> Value {
    json!({
        "case_number": CASE,
        "subject": zhang_san(),
        "officers": officers(),
        "action": action,
        "prior_order": prior,
        "documents": documents(),
    })
}

/// `POST` with an `Idempotency-Key` to the gateway at `base`: the status
/// and the body.
async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(StatusCode, Value)> {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(ENFORCEMENT)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Sends every `(base, key, body)` at once and returns the answers in the
/// same order.
async fn all_at_once(
    sys: &System,
    path: &str,
    requests: Vec<(String, String, Value)>,
) -> anyhow::Result<Vec<(StatusCode, Value)>> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(requests.len()));
    let mut tasks = Vec::new();
    for (base, key, body) in requests {
        let client = sys.client.clone();
        let path = path.to_owned();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            post(&client, &base, &path, &key, &body).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await??);
    }
    Ok(answers)
}

/// The orders the bank received for `account`'s holder, of one action.
async fn received(sys: &System, bank: &str, action: &str) -> anyhow::Result<Vec<Value>> {
    let ledger = sys.ledger(bank).await?;
    Ok(ledger["controls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["action"] == action)
        .cloned()
        .collect())
}

/// Ten clerks deduct 600 fen each from a 1,000-fen freeze at once, through
/// the gateways at `bases` in turn: one deduction is accepted, the others
/// are refused by the gateway, and the bank sees one.
async fn ten_deductions_from_one_freeze(sys: &System, bases: &[String]) -> anyhow::Result<()> {
    let body = freeze(sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 1_000);
    let frozen = place(sys, "freeze-1000", &body, &["applied"]).await?;
    let id = frozen["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(frozen["controlled_fen"], 1_000, "{frozen}");

    let requests = (0..10)
        .map(|i| {
            let mut deduct = acting_on("deduct", &id);
            deduct["amount_fen"] = json!(600);
            (
                bases[i % bases.len()].clone(),
                format!("deduct-{i}"),
                deduct,
            )
        })
        .collect();
    let answers = all_at_once(sys, "/v1/orders", requests).await?;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(accepted.len(), 1, "one deduction fits: {answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED) {
        assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "deduction_exceeds_freeze", "{body}");
        assert_eq!(body["error"]["field"], "amount_fen", "{body}");
    }

    let deduction = accepted[0]["id"].as_str().unwrap_or_default();
    let done = sys
        .wait_for_order(deduction, &["applied", "refused", "failed"])
        .await?;
    assert_eq!(done["status"], "applied", "{done}");
    // The bank was asked once and moved 600 fen once.
    let asked = received(sys, "bank-a", "deduct").await?;
    assert_eq!(asked.len(), 1, "{asked:?}");
    let ledger = sys.ledger("bank-a").await?;
    let transfers = ledger["transfers"].as_array().cloned().unwrap_or_default();
    assert_eq!(transfers.len(), 1, "{ledger}");
    assert_eq!(transfers[0]["amount_fen"], 600, "{ledger}");
    let measure = sys
        .get(&format!("/v1/orders/{id}"), ENFORCEMENT)
        .await?
        .body;
    assert_eq!(measure["controlled_fen"], 400, "{measure}");
    assert_eq!(measure["deducted_fen"], 600, "{measure}");
    // The log accepted the freeze and that one deduction; nine refusals.
    let rows = sys.audit("action=order.create").await?;
    let accepted_rows: Vec<&Value> = rows.iter().filter(|r| r["status"] == "accepted").collect();
    assert_eq!(accepted_rows.len(), 2, "{rows:?}");
    let refused = rows
        .iter()
        .filter(|r| r["status"] == "deduction_exceeds_freeze")
        .count();
    assert_eq!(refused, 9, "{rows:?}");
    Ok(())
}

async fn parallel_deductions_take_no_more_than_the_freeze_holds(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    ten_deductions_from_one_freeze(&sys, std::slice::from_ref(&sys.base)).await
}

/// The same through two gateways on one PostgreSQL database: the turns
/// are the database's, not one process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_deductions_through_two_gateways_take_no_more_than_the_freeze_holds()
-> anyhow::Result<()> {
    let Some(backend) = Backend::postgres() else {
        eprintln!("skipping PostgreSQL: TEST_DATABASE_URL is not set");
        return Ok(());
    };
    let sys = System::start_on(backend, |_, _| {}).await?;
    let (second, second_base) = sys.start_another_gateway().await?;
    ten_deductions_from_one_freeze(&sys, &[sys.base.clone(), second_base]).await?;
    second.shutdown().await;
    Ok(())
}

async fn parallel_releases_of_one_freeze_accept_one(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 100_000);
    let frozen = place(&sys, "freeze", &body, &["applied"]).await?;
    let id = frozen["id"].as_str().unwrap_or_default().to_owned();

    let requests = (0..10)
        .map(|i| {
            (
                sys.base.clone(),
                format!("release-{i}"),
                acting_on("release", &id),
            )
        })
        .collect();
    let answers = all_at_once(&sys, "/v1/orders", requests).await?;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(accepted.len(), 1, "one release: {answers:?}");
    // The others learn that a release is on its way (or, if the bank was
    // quick, that the freeze is gone).
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED) {
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            (*status == StatusCode::CONFLICT && code == "release_pending")
                || (*status == StatusCode::UNPROCESSABLE_ENTITY && code == "measure_not_in_force"),
            "{status} {body}"
        );
        assert_eq!(body["error"]["field"], "prior_order", "{body}");
    }
    let release = accepted[0]["id"].as_str().unwrap_or_default();
    let done = sys
        .wait_for_order(release, &["applied", "refused", "failed"])
        .await?;
    assert_eq!(done["status"], "applied", "{done}");
    sys.wait_for_order(&id, &["released"]).await?;
    assert_eq!(received(&sys, "bank-a", "release").await?.len(), 1);

    // Once released, neither a release nor a deduction is taken.
    let again = sys
        .order("release-late", &acting_on("release", &id))
        .await?;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        again.body
    );
    assert_eq!(again.body["error"]["code"], "measure_not_in_force");
    Ok(())
}

/// A release on its way holds off renewals, deductions and more releases
/// of its measure, with a 409 that names it; once the bank has answered,
/// the measure's state decides.
async fn a_release_on_its_way_holds_off_other_orders_on_its_freeze(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 100_000);
    let frozen = place(&sys, "freeze", &body, &["applied"]).await?;
    let id = frozen["id"].as_str().unwrap_or_default().to_owned();
    // The bank answers nothing for now: the release stays on its way.
    sys.fault("bank-a", json!({"mode": "error"})).await?;
    let release = sys.order("release", &acting_on("release", &id)).await?;
    assert_eq!(release.status, StatusCode::ACCEPTED, "{}", release.body);
    let release_id = release.body["id"].as_str().unwrap_or_default().to_owned();

    let mut deduct = acting_on("deduct", &id);
    deduct["amount_fen"] = json!(1);
    let mut renew = acting_on("renew", &id);
    renew["end_date"] = json!((sys.clock.today() + Days::new(200)).to_string());
    for (key, body) in [
        ("release-2", acting_on("release", &id)),
        ("deduct", deduct),
        ("renew", renew),
    ] {
        let reply = sys.order(key, &body).await?;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{key}: {}", reply.body);
        assert_eq!(
            reply.body["error"]["code"], "release_pending",
            "{}",
            reply.body
        );
        assert_eq!(reply.body["error"]["field"], "prior_order");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&release_id)),
            "the message names the release: {}",
            reply.body
        );
    }
    sys.fault("bank-a", json!({"mode": "normal"})).await?;
    sys.wait_for_order(&release_id, &["applied"]).await?;
    sys.wait_for_order(&id, &["released"]).await?;
    assert_eq!(received(&sys, "bank-a", "release").await?.len(), 1);
    assert!(received(&sys, "bank-a", "deduct").await?.is_empty());
    assert!(received(&sys, "bank-a", "renew").await?.is_empty());
    Ok(())
}

/// Two renewals of one measure on their way at once would both run from
/// its current end: of renewals sent together, one is taken, and the
/// others are told to wait for its answer.
async fn a_renewal_on_its_way_holds_off_another(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 100_000);
    let frozen = place(&sys, "freeze", &body, &["applied"]).await?;
    let id = frozen["id"].as_str().unwrap_or_default().to_owned();
    let end: chrono::NaiveDate = frozen["end_date"].as_str().unwrap_or_default().parse()?;
    // The bank answers nothing for now: the renewal stays on its way.
    sys.fault("bank-a", json!({"mode": "error"})).await?;
    let requests = (0..10)
        .map(|i| {
            let mut renew = acting_on("renew", &id);
            renew["end_date"] = json!((end + Days::new(30 + i)).to_string());
            (sys.base.clone(), format!("renew-{i}"), renew)
        })
        .collect();
    let answers = all_at_once(&sys, "/v1/orders", requests).await?;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(accepted.len(), 1, "one renewal: {answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED) {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "renewal_pending", "{body}");
        assert_eq!(body["error"]["field"], "prior_order", "{body}");
    }
    sys.fault("bank-a", json!({"mode": "normal"})).await?;
    let renewal = accepted[0]["id"].as_str().unwrap_or_default();
    let done = sys.wait_for_order(renewal, &["applied"]).await?;
    // The measure ends where that renewal said.
    let measure = sys.wait_for_order(&id, &["applied"]).await?;
    assert_eq!(measure["end_date"], done["end_date"], "{measure}");
    assert_eq!(received(&sys, "bank-a", "renew").await?.len(), 1);
    Ok(())
}

async fn li_si_inquiry(sys: &System) -> anyhow::Result<String> {
    let reply = sys.inquire(li_si(), 20).await?;
    anyhow::ensure!(reply.status == StatusCode::OK, "inquiry: {}", reply.body);
    Ok(reply.body["id"].as_str().unwrap_or_default().to_owned())
}

/// Checks the log of `action` after `n` requests under one key: one
/// "accepted" row and `n - 1` "replayed" rows, all naming `id`.
async fn one_accepted_the_rest_replayed(
    sys: &System,
    action: &str,
    n: usize,
    id: &str,
) -> anyhow::Result<()> {
    let rows = sys.audit(&format!("action={action}")).await?;
    let statuses: Vec<&str> = rows.iter().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "accepted").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "replayed").count(),
        n - 1,
        "{statuses:?}"
    );
    let named: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r["inquiry_id"].as_str())
        .collect();
    assert_eq!(
        named,
        BTreeSet::from([id]),
        "every row names the one object"
    );
    Ok(())
}

async fn parallel_plans_under_one_key_create_one(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let inquiry = li_si_inquiry(&sys).await?;
    let body = json!({
        "case_number": CASE,
        "subject": li_si(),
        "officers": officers(),
        "inquiry": inquiry,
        "amount_fen": 100_000,
        "end_date": (sys.clock.today() + Days::new(180)).to_string(),
        "documents": documents(),
    });
    let requests = (0..50)
        .map(|_| (sys.base.clone(), "one-plan".to_owned(), body.clone()))
        .collect();
    let answers = all_at_once(&sys, "/v1/freeze-plans", requests).await?;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::ACCEPTED),
        "{answers:?}"
    );
    let ids: BTreeSet<&str> = answers
        .iter()
        .filter_map(|(_, b)| b["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one plan: {ids:?}");
    let id = ids.into_iter().next().unwrap_or_default().to_owned();
    let plan = sys
        .get(&format!("/v1/freeze-plans/{id}"), ENFORCEMENT)
        .await?;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    one_accepted_the_rest_replayed(&sys, "freeze_plan.create", 50, &id).await?;
    // The plan runs once: what it freezes is the amount, not fifty times it.
    let done = sys
        .wait_for(
            &format!("/v1/freeze-plans/{id}"),
            Duration::from_secs(20),
            |p| p["status"] != "running",
        )
        .await?;
    assert_eq!(done["controlled_fen"], 100_000, "{done}");
    Ok(())
}

async fn parallel_orders_under_one_key_create_one(backend: Backend) -> anyhow::Result<()> {
    let sys = System::start_on(backend, |_, _| {}).await?;
    let body = freeze(&sys, zhang_san(), "bank-a", ZHANG_SAN_DEBIT, 100_000);
    let requests = (0..20)
        .map(|_| (sys.base.clone(), "one-order".to_owned(), body.clone()))
        .collect();
    let answers = all_at_once(&sys, "/v1/orders", requests).await?;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::ACCEPTED),
        "{answers:?}"
    );
    let ids: BTreeSet<&str> = answers
        .iter()
        .filter_map(|(_, b)| b["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one order: {ids:?}");
    let id = ids.into_iter().next().unwrap_or_default().to_owned();
    one_accepted_the_rest_replayed(&sys, "order.create", 20, &id).await?;
    let list = sys
        .get(
            &format!("/v1/orders?case_number={}", e2e_tests::q(CASE)),
            ENFORCEMENT,
        )
        .await?
        .body;
    assert_eq!(list["orders"].as_array().map(Vec::len), Some(1), "{list}");
    sys.wait_for_order(&id, &["applied"]).await?;
    assert_eq!(received(&sys, "bank-a", "freeze").await?.len(), 1);
    Ok(())
}

/// `on_both_backends!` on a runtime of several threads: the requests, the
/// gateway and the mocks run side by side, as in production, and a check
/// that can be outrun is.
macro_rules! on_both_backends_in_parallel {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() -> anyhow::Result<()> {
                    super::$name(e2e_tests::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() -> anyhow::Result<()> {
                    match e2e_tests::Backend::postgres() {
                        Some(backend) => super::$name(backend).await,
                        None => {
                            eprintln!("skipping PostgreSQL: TEST_DATABASE_URL is not set");
                            Ok(())
                        }
                    }
                }
            }
        )*
    };
}

on_both_backends_in_parallel!(
    parallel_deductions_take_no_more_than_the_freeze_holds,
    parallel_releases_of_one_freeze_accept_one,
    a_renewal_on_its_way_holds_off_another,
    parallel_plans_under_one_key_create_one,
    parallel_orders_under_one_key_create_one,
);
on_both_backends!(a_release_on_its_way_holds_off_other_orders_on_its_freeze);
