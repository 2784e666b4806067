//! The officers' pages: a case opened by its number shows its inquiries
//! with each agency's line, the assets found (every kind, each with its
//! own fields), the freezes and seals standing with those due for renewal
//! marked, and the freeze plans with what each order controls; while an
//! agency has not answered, the page updates itself in place. Only for
//! the enforcement role; every look is recorded.

use std::time::Duration;

use chrono::Days;
use e2e_tests::{
    AUDITOR, Backend, CASE, ENFORCEMENT, System, ZHANG_SAN_ID, inquiry_body, on_both_backends, q,
    zhang_san,
};
use fantoccini::Locator;
use mock_agencies::fixtures;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::{get_with_cookie, sign_in, sign_in_over_http};

/// The case's page, the case number percent-encoded.
fn case_page(sys: &System, case: &str) -> String {
    format!("{}/console/cases/{}", sys.base, q(case).replace('+', "%20"))
}

/// A control measure needs two officers.
fn officers() -> Value {
    json!([
        e2e_tests::officer(),
        {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"},
    ])
}

/// The ruling and the assistance notice a control order carries.
fn documents() -> Value {
    json!([
        {"kind": "ruling", "number": "(2024)甘0503执1234号之一",
         "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
        {"kind": "assist_notice", "number": "协冻-1",
         "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
    ])
}

/// Places an order as the enforcement system and waits until it is
/// decided.
async fn place(sys: &System, key: &str, body: &Value) -> anyhow::Result<Value> {
    let reply = sys.order(key, body).await?;
    anyhow::ensure!(
        reply.status == StatusCode::ACCEPTED,
        "order refused: {} {}",
        reply.status,
        reply.body
    );
    let id = reply.body["id"].as_str().unwrap_or_default().to_owned();
    sys.wait_for_order(&id, &["applied", "partial", "waiting", "refused", "failed"])
        .await
}

/// Waits (up to `limit`) until `css` finds an element, the page left as
/// it is (no reload, no navigation): what htmx swaps in.
async fn wait_in_place(browser: &Browser, css: &str, limit: Duration) -> anyhow::Result<()> {
    browser
        .client
        .wait()
        .at_most(limit)
        .for_element(Locator::Css(css))
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("waiting for {css:?} on the page: {e}"))
}

/// Whether the page is still the one the mark was left on (a reload or a
/// navigation makes a new document, without it).
async fn still_marked(browser: &Browser) -> anyhow::Result<bool> {
    Ok(browser
        .client
        .execute("return window.caseViewMark === 'kept'", vec![])
        .await?
        == json!(true))
}

async fn the_case_view_updates_in_place_as_the_registry_answers_late(
    backend: Backend,
) -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start_on(backend, |_, _| {}).await?;
    sign_in(&browser, &sys, ENFORCEMENT).await?;
    // The registry takes its time: its answer is ready some seconds after
    // it took the request (the gateway polls it until then).
    sys.fault(fixtures::REGISTRY_X, json!({"result_delay_ms": 6_000}))
        .await?;
    let reply = sys.inquire(zhang_san(), 0).await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let inquiry = reply.body["id"].as_str().unwrap_or_default().to_owned();

    browser.open(&case_page(&sys, CASE), "#case-live").await?;
    browser
        .client
        .execute("window.caseViewMark = 'kept'", vec![])
        .await?;
    // The registry's line is pending, and no real estate is listed; the
    // banks answer meanwhile.
    let registry = "tr.agency[data-agency='registry-x']";
    wait_in_place(
        &browser,
        &format!("{registry}[data-status='pending']"),
        Duration::from_secs(5),
    )
    .await?;
    wait_in_place(
        &browser,
        "tr.agency[data-agency='bank-b'][data-status='answered']",
        Duration::from_secs(15),
    )
    .await?;
    assert!(
        browser
            .client
            .find(Locator::Css("tr.asset[data-kind='real_estate']"))
            .await
            .is_err(),
        "real estate before the registry answered"
    );
    assert_eq!(
        browser.text(&format!("{registry} .agency-status")).await?,
        "等待答复 pending"
    );
    let status = browser.text(".case-status").await?;
    assert!(status.contains("Under way"), "{status}");
    assert!(browser.text("#inquiries").await?.contains(&inquiry));
    browser.screenshot("case-view-pending").await?;

    // Then, without the test reloading anything, the registry's line turns
    // answered and its unit appears among the assets.
    wait_in_place(
        &browser,
        &format!("{registry}[data-status='answered']"),
        Duration::from_secs(30),
    )
    .await?;
    wait_in_place(
        &browser,
        "tr.asset[data-kind='real_estate'][data-agency='registry-x']",
        Duration::from_secs(5),
    )
    .await?;
    let unit = browser.text("tr.asset[data-kind='real_estate']").await?;
    assert!(unit.contains(fixtures::ZHANG_SAN_UNIT_NUMBER), "{unit}");
    assert!(unit.contains(fixtures::ZHANG_SAN_UNIT_LOCATION), "{unit}");
    assert!(still_marked(&browser).await?, "the page was reloaded");
    // Nothing is under way any more: the page stops asking.
    wait_in_place(
        &browser,
        "#case-live[data-polling='false']",
        Duration::from_secs(10),
    )
    .await?;
    assert!(
        browser
            .client
            .find(Locator::Css("#case-live[hx-trigger]"))
            .await
            .is_err()
    );
    assert!(still_marked(&browser).await?, "the page was reloaded");

    // The page and each of its refreshes were reads of the case.
    let reads = sys
        .audit("action=console.case.read&caller=demo-court")
        .await?;
    assert!(reads.len() >= 2, "{reads:?}");
    let refreshes = reads
        .iter()
        .filter(|r| r["direction"] == "inbound" && r["status"] == "ok")
        .count();
    assert_eq!(refreshes, reads.len(), "{reads:?}");
    browser.finish().await
}

on_both_backends!(the_case_view_updates_in_place_as_the_registry_answers_late);

async fn the_case_view_shows_assets_measures_due_and_plans(backend: Backend) -> anyhow::Result<()> {
    let Some(browser) = Browser::start().await? else {
        return Ok(());
    };
    let sys = System::start_with_every_kind(backend, |_, _| {}).await?;
    // 张三 asked about at every agency: every kind of asset but equity.
    let reply = sys.inquire(zhang_san(), 20).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let inquiry = reply.body["id"].as_str().unwrap_or_default().to_owned();
    // And 示例有限公司, for its equity.
    let mut org = inquiry_body(e2e_tests::organisation());
    org["agencies"] = json!([fixtures::MARKET_M, "bank-a"]);
    let reply = sys
        .post_json("/v1/inquiries?wait=20", ENFORCEMENT, &org)
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // A seal of his car ending in ten days (within the warning window of
    // fourteen), a freeze at bank-b in 180, and a plan of 100.00.
    let today = sys.clock.today();
    let seal = place(
        &sys,
        "console-seal",
        &json!({
            "case_number": CASE, "subject": zhang_san(), "officers": officers(),
            "action": "seal", "agency": fixtures::VEHICLE_V,
            "asset": {"vin": fixtures::ZHANG_SAN_VIN},
            "end_date": (today + Days::new(10)).to_string(),
            "documents": documents(),
        }),
    )
    .await?;
    assert_eq!(seal["status"], "applied", "{seal}");
    let freeze = place(
        &sys,
        "console-freeze",
        &json!({
            "case_number": CASE, "subject": zhang_san(), "officers": officers(),
            "action": "freeze", "agency": "bank-b",
            "asset": {"account_number": fixtures::ZHANG_SAN_BANK_B_ACCOUNT},
            "amount_fen": 100_000,
            "end_date": (today + Days::new(180)).to_string(),
            "documents": documents(),
        }),
    )
    .await?;
    assert_eq!(freeze["status"], "applied", "{freeze}");
    let reply = sys
        .keyed_post(
            "/v1/freeze-plans",
            "console-plan",
            &json!({
                "case_number": CASE, "subject": zhang_san(), "officers": officers(),
                "inquiry": inquiry, "amount_fen": 10_000,
                "end_date": (today + Days::new(180)).to_string(),
                "documents": documents(),
            }),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let plan_id = reply.body["id"].as_str().unwrap_or_default().to_owned();
    let plan = sys
        .wait_for(
            &format!("/v1/freeze-plans/{plan_id}"),
            Duration::from_secs(20),
            |p| p["status"] != "running",
        )
        .await?;
    assert_eq!(plan["status"], "completed", "{plan}");

    // The officer opens the case from the form, by its number.
    sign_in(&browser, &sys, ENFORCEMENT).await?;
    let nav = browser.text("header nav").await?;
    assert!(nav.contains("Cases"), "{nav}");
    browser
        .client
        .find(Locator::Css("main a[href='/console/cases']"))
        .await?
        .click()
        .await?;
    let field = browser.wait_for("#f-case").await?;
    field.send_keys(CASE).await?;
    browser.screenshot("cases").await?;
    browser
        .client
        .find(Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;
    let url = browser
        .wait_for_url(|u| u.path().starts_with("/console/cases/"))
        .await?;
    assert_eq!(
        url.path(),
        "/console/cases/%282024%29%E7%94%980503%E6%89%A71234%E5%8F%B7"
    );
    browser.wait_for("#case-live").await?;
    assert!(browser.text("main h1").await?.contains(CASE));

    // Every kind of asset, each with its own fields.
    let kinds = browser
        .client
        .find_all(Locator::Css("section.asset-group"))
        .await?;
    let mut seen = Vec::new();
    for k in kinds {
        seen.push(k.attr("data-kind").await?.unwrap_or_default());
    }
    assert_eq!(
        seen,
        [
            "bank_account",
            "real_estate",
            "vehicle",
            "securities",
            "payment_account",
            "provident_fund",
            "equity"
        ]
    );
    let car = browser
        .text("section.asset-group[data-kind='vehicle']")
        .await?;
    assert!(car.contains(fixtures::ZHANG_SAN_VIN), "{car}");
    assert!(car.contains("Plate"), "{car}");
    assert!(car.contains(seal["id"].as_str().unwrap_or("?")), "{car}");
    let fund = browser
        .text("section.asset-group[data-kind='provident_fund']")
        .await?;
    assert!(fund.contains(fixtures::ZHANG_SAN_FUND_ACCOUNT), "{fund}");
    assert!(fund.contains("Balance"), "{fund}");
    let unit = browser
        .text("section.asset-group[data-kind='real_estate']")
        .await?;
    assert!(unit.contains("Owners"), "{unit}");

    // The seal is due for renewal: marked by a label, not by colour alone;
    // the freeze is not.
    let seal_row = format!(
        "tr.measure[data-order='{}']",
        seal["id"].as_str().unwrap_or("?")
    );
    let due = browser.text(&format!("{seal_row}.renewal-due")).await?;
    assert!(due.contains("Renewal due"), "{due}");
    assert!(due.contains("10 days left"), "{due}");
    let freeze_row = format!(
        "tr.measure[data-order='{}']",
        freeze["id"].as_str().unwrap_or("?")
    );
    let standing = browser.text(&freeze_row).await?;
    assert!(!standing.contains("Renewal due"), "{standing}");
    assert!(standing.contains("¥1,000.00"), "{standing}");
    assert!(
        browser
            .client
            .find(Locator::Css(&format!("{freeze_row}.renewal-due")))
            .await
            .is_err()
    );
    let counts = browser.text("ul.counts li.due").await?;
    assert!(counts.starts_with('1'), "{counts}");

    // The plan: what it was to freeze, what it controls, and each order
    // with what it controls.
    let plan_section = browser.text(&format!("#plan-{plan_id}")).await?;
    assert!(plan_section.contains("已完成 completed"), "{plan_section}");
    assert_eq!(
        browser
            .text(&format!("#plan-{plan_id} .plan-amount"))
            .await?,
        "¥100.00"
    );
    assert_eq!(
        browser
            .text(&format!("#plan-{plan_id} .plan-controlled"))
            .await?,
        "¥100.00"
    );
    let orders = browser
        .client
        .find_all(Locator::Css(&format!("#plan-{plan_id} tr.plan-order")))
        .await?;
    assert_eq!(orders.len(), 1);
    assert_eq!(
        browser
            .text(&format!("#plan-{plan_id} tr.plan-order td.controlled"))
            .await?,
        "¥100.00"
    );

    // Identity numbers as the API masks them; nothing is under way.
    let source = browser.client.source().await?;
    assert!(
        !source.contains(ZHANG_SAN_ID),
        "an identity number in the clear"
    );
    assert!(source.contains("3604************71"));
    assert!(
        browser
            .client
            .find(Locator::Css("#case-live[data-polling='false']"))
            .await
            .is_ok()
    );
    browser.screenshot("case-view").await?;

    let opened = sys.audit("action=console.cases&caller=demo-court").await?;
    assert_eq!(opened.len(), 2, "the form, and the number sent: {opened:?}");
    let reads = sys
        .audit("action=console.case.read&caller=demo-court")
        .await?;
    assert_eq!(reads.len(), 1, "{reads:?}");
    browser.finish().await
}

on_both_backends!(the_case_view_shows_assets_measures_due_and_plans);

/// Other roles are refused the officers' pages, recorded as refusals;
/// bad case numbers are 4xx pages saying what is wrong; a case without
/// anything of the caller's says nothing is recorded.
#[tokio::test]
async fn only_officers_open_cases_and_bad_numbers_are_told() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let reply = sys
        .post_json(
            "/v1/inquiries?wait=10",
            ENFORCEMENT,
            &inquiry_body(zhang_san()),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let path = format!("/console/cases/{}", q(CASE));
    let (auditor, _) = sign_in_over_http(&sys, AUDITOR).await?;
    let (admin, _) = sign_in_over_http(&sys, e2e_tests::ADMIN).await?;
    for page in ["/console/cases", path.as_str(), &format!("{path}/live")] {
        for (who, cookie) in [("auditor", &auditor), ("admin", &admin)] {
            let refused = get_with_cookie(&sys, cookie, page).await?;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{who} {page}");
            let text = refused.text().await?;
            assert!(text.contains("enforcement"), "{text}");
            assert!(!text.contains("case-live"), "{text}");
        }
    }
    let refusals = sys.audit("action=auth.refused&caller=demo-auditor").await?;
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(sys.audit("action=console.case.read").await?.is_empty());
    // The auditor's home offers no case pages.
    let home = get_with_cookie(&sys, &auditor, "/console")
        .await?
        .text()
        .await?;
    assert!(!home.contains("/console/cases"), "{home}");

    let (officer, _) = sign_in_over_http(&sys, ENFORCEMENT).await?;
    let home = get_with_cookie(&sys, &officer, "/console")
        .await?
        .text()
        .await?;
    assert!(home.contains("href=\"/console/cases\""), "{home}");
    assert!(!home.contains("still to come"), "{home}");
    let page = get_with_cookie(&sys, &officer, &path).await?;
    assert_eq!(page.status(), StatusCode::OK);
    let text = page.text().await?;
    assert!(text.contains("bank-b"), "{text}");
    assert!(!text.contains(ZHANG_SAN_ID), "{text}");
    // The form sends the number: the way to the case's page.
    let sent = get_with_cookie(
        &sys,
        &officer,
        &format!("/console/cases?case_number={}", q(CASE)),
    )
    .await?;
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        sent.headers().get("location").and_then(|l| l.to_str().ok()),
        Some(path.as_str())
    );

    for (bad, status, says) in [
        ("/console/cases?case_number=", 400, "Enter a case number"),
        (
            "/console/cases?case_number=%20%20",
            400,
            "Enter a case number",
        ),
        (
            "/console/cases?case_number=not-a-case",
            422,
            "Not a case number",
        ),
        (
            "/console/cases?case_number=x&other=1",
            400,
            "could not be read",
        ),
        ("/console/cases/not-a-case", 422, "Not a case number"),
        ("/console/cases/%E7%94%98", 422, "Not a case number"),
        ("/console/cases/%FF", 400, "cannot be read"),
        ("/console/cases/%FF/live", 400, "cannot be read"),
    ] {
        let reply = get_with_cookie(&sys, &officer, bad).await?;
        assert_eq!(reply.status().as_u16(), status, "{bad}");
        let text = reply.text().await?;
        assert!(text.contains(says), "{bad}: {text}");
        assert!(
            text.contains("case_number") || status == 400,
            "{bad}: {text}"
        );
    }
    let long = "9".repeat(5_000);
    let reply = get_with_cookie(&sys, &officer, &format!("/console/cases/{long}")).await?;
    assert!(reply.status().is_client_error(), "{}", reply.status());

    // A case with nothing of the caller's.
    let other = "(2024)甘0503执1235号";
    let reply = get_with_cookie(&sys, &officer, &format!("/console/cases/{}", q(other))).await?;
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    let text = reply.text().await?;
    assert!(text.contains("Nothing is recorded under case"), "{text}");
    let reads = sys
        .audit("action=console.case.read&caller=demo-court")
        .await?;
    assert_eq!(reads.len(), 2, "the case, and the empty one: {reads:?}");
    Ok(())
}
