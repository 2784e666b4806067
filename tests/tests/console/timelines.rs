//! Timelines of what spans many requests: a freeze plan with the orders
//! it placed, a batch with its subjects' inquiries and the batch messages
//! that carried them.

use std::time::Duration;

use chrono::Days;
use e2e_tests::{AUDITOR, Backend, CASE, ENFORCEMENT, System, officer, on_both_backends};
use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::{get_with_cookie, sign_in, sign_in_over_http};

fn li_si() -> Value {
    json!({"kind": "person", "name": "李四", "id_number": "62050319850615003X"})
}

/// A batch of three people under three cases, on the banks only.
async fn batch(sys: &System) -> anyhow::Result<String> {
    let line = |case: &str, name: &str, id: &str| {
        json!({"case_number": case,
               "subject": {"kind": "person", "name": name, "id_number": id}})
    };
    let body = json!({
        "officers": [officer()],
        "asset_kinds": ["bank_account"],
        "subjects": [
            line(CASE, "张三", "360426199101010071"),
            line("(2024)甘0503执1235号", "李四", "62050319850615003X"),
            line("(2024)甘0503执1236号", "王五", "620503198812120015"),
        ]
    });
    let reply = sys
        .keyed_post("/v1/inquiry-batches", "tl-batch", &body)
        .await?;
    anyhow::ensure!(reply.status == StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
    sys.wait_for(
        &format!("/v1/inquiry-batches/{id}"),
        Duration::from_secs(30),
        |b| b["status"] == "completed",
    )
    .await?;
    Ok(id)
}

/// A freeze plan over 李四's accounts: it places an order at each bank.
async fn plan(sys: &System) -> anyhow::Result<Value> {
    let inquiry = sys.inquire(li_si(), 20).await?;
    anyhow::ensure!(inquiry.status == StatusCode::OK, "{}", inquiry.body);
    let body = json!({
        "case_number": CASE,
        "subject": li_si(),
        "officers": [
            officer(),
            {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"},
        ],
        "inquiry": inquiry.body["id"],
        "amount_fen": 5_000_000,
        "end_date": (sys.clock.today() + Days::new(180)).to_string(),
        "documents": [
            {"kind": "ruling", "number": "(2024)甘0503执1234号之一",
             "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
            {"kind": "assist_notice", "number": "协冻-1",
             "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
        ],
    });
    let reply = sys.keyed_post("/v1/freeze-plans", "tl-plan", &body).await?;
    anyhow::ensure!(reply.status == StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
    sys.wait_for(
        &format!("/v1/freeze-plans/{id}"),
        Duration::from_secs(30),
        |p| p["status"] != "running",
    )
    .await
}

/// The steps of the timeline on the page, as text.
async fn steps(browser: &Browser) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for step in browser
        .client
        .find_all(Locator::Css("ol.timeline li.step"))
        .await?
    {
        texts.push(step.text().await?);
    }
    Ok(texts)
}

async fn a_batch_s_timeline_shows_each_batch_message_once(backend: Backend) -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start_on(backend, |_, _| {}).await?;
    let id = batch(&sys).await?;
    // The log holds a row per subject of each batch message.
    let outbound = sys.audit("direction=outbound&agency=bank-a").await?;
    assert_eq!(outbound.len(), 3, "{outbound:?}");
    let same_message = outbound
        .windows(2)
        .filter(|w| {
            w[0]["body_sha256"] == w[1]["body_sha256"]
                && w[1]["seq"].as_i64() == w[0]["seq"].as_i64().map(|s| s + 1)
        })
        .count();

    sign_in(&browser, &sys, AUDITOR).await?;
    browser
        .open(
            &format!("{}/console/audit/timeline/{id}", sys.base),
            "ol.timeline",
        )
        .await?;
    let steps = steps(&browser).await?;
    assert!(steps[0].contains("inquiry_batch.create"), "{steps:?}");
    // Its subjects accepted with it, in one step.
    assert!(steps[1].contains("inquiry.create"), "{steps:?}");
    assert!(steps[1].contains("× 3"), "{steps:?}");
    // Each subject's inquiry is in, named by its id where a step is one
    // subject's.
    for row in &outbound {
        let inquiry = row["inquiry_id"].as_str().unwrap_or_default();
        let rows = sys.audit(&format!("inquiry={inquiry}")).await?;
        assert!(rows.len() >= 3, "{rows:?}");
    }
    // The bank's message for several subjects at once is one step.
    let bank_a: Vec<&String> = steps
        .iter()
        .filter(|s| s.contains("outbound") && s.contains("bank-a"))
        .collect();
    assert_eq!(
        bank_a.len(),
        3 - same_message,
        "one step per message to bank-a: {steps:?}"
    );
    if same_message > 0 {
        let folded = bank_a.iter().find(|s| s.contains('×')).copied();
        assert!(
            folded.is_some_and(|s| s.contains(&format!("× {}", same_message + 1))),
            "{steps:?}"
        );
    }
    let summary = browser
        .text("section[aria-labelledby=summary-heading]")
        .await?;
    assert!(summary.contains("3 different"), "three cases: {summary}");
    let scope = browser.text("p.scope").await?;
    assert!(scope.contains("3 of its 3 subject"), "{scope}");
    browser.screenshot("audit-timeline-batch").await?;
    browser.finish().await
}

on_both_backends!(a_batch_s_timeline_shows_each_batch_message_once);

async fn a_plan_s_timeline_takes_in_its_orders(backend: Backend) -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start_on(backend, |_, _| {}).await?;
    let plan = plan(&sys).await?;
    let id = plan["id"].as_str().unwrap_or_default().to_owned();
    let orders: Vec<String> = plan["orders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect();
    assert!(orders.len() >= 2, "{plan}");
    let own = sys.audit(&format!("inquiry={id}")).await?;
    let mut rows = own.len();
    for order in &orders {
        rows += sys.audit(&format!("inquiry={order}")).await?.len();
    }

    sign_in(&browser, &sys, AUDITOR).await?;
    browser
        .open(
            &format!("{}/console/audit/timeline/{id}", sys.base),
            "ol.timeline",
        )
        .await?;
    let steps = steps(&browser).await?;
    assert_eq!(
        steps.len(),
        rows,
        "the plan's rows and its orders': {steps:?}"
    );
    assert!(steps[0].contains("freeze_plan.create"), "{steps:?}");
    for order in &orders {
        // The order's rows name it and link to its own timeline.
        let link = browser
            .client
            .find(Locator::Css(&format!(
                "ol.timeline a[href='/console/audit/timeline/{order}']"
            )))
            .await;
        assert!(link.is_ok(), "a step of {order}");
    }
    let scope = browser.text("p.scope").await?;
    assert!(
        scope.contains(&format!("with its {} order(s)", orders.len())),
        "{scope}"
    );
    browser.screenshot("audit-timeline-plan").await?;

    // An enforcement session may not read timelines.
    let (session, _) = sign_in_over_http(&sys, ENFORCEMENT).await?;
    let refused = get_with_cookie(&sys, &session, &format!("/console/audit/timeline/{id}")).await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    browser.finish().await
}

on_both_backends!(a_plan_s_timeline_takes_in_its_orders);
