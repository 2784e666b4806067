//! `gateway demo`: the whole system on one machine. Starts the mock agencies
//! in-process on free ports, points the agency files at them, starts the
//! gateway with SQLite under `./data/`, runs one inquiry for the demo subject
//! (张三) and prints what came back and the audit trail, then keeps serving.
//!
//! Identity numbers are printed masked, as in every log line.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use mock_agencies::{MockConfig, MockFleet, fixtures};
use serde_json::Value;

use crate::config::GatewayConfig;

const ENFORCEMENT_TOKEN: &str = "demo-enforcement-token";
const AUDITOR_TOKEN: &str = "demo-auditor-token";
const DEMO_CASE: &str = "(2024)甘0503执1234号";

pub async fn run(config: &Path, mocks: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    let mut gateway_config = GatewayConfig::load(config)?;
    let mock_config = MockConfig::load(mocks)?;
    let fleet = MockFleet::start(&mock_config, true)
        .await
        .context("starting the mock agencies")?;
    for (id, _) in fleet.agencies() {
        if let Some(url) = fleet.base_url(&id) {
            gateway_config.agency_base_urls.insert(id, url);
        }
    }
    for (id, addr) in fleet.agencies() {
        println!("mock agency {id:<12} http://{addr}");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let gateway = crate::Gateway::start(gateway_config, listener).await?;
    let base = gateway.base_url();
    println!("gateway             {base}\n");

    match show_inquiry(&base).await {
        Ok(inquiry_id) => {
            if let Err(e) = show_freeze_plan(&base, &inquiry_id).await {
                eprintln!("the demo freeze plan failed: {e:#}");
            }
        }
        Err(e) => eprintln!("the demo inquiry failed: {e:#}"),
    }
    println!("\nWeb console: {base}/console (sign in by pasting a demo token):");
    println!("  {AUDITOR_TOKEN}      the audit log, timelines, the chain, the misuse questions");
    println!(
        "  {ENFORCEMENT_TOKEN}  the demo case, its assets, measures and plan: {base}{}",
        crate::console::case_url(DEMO_CASE)
    );
    println!("  demo-admin-token        the agencies' live state, the configuration and reload");
    println!("  The demo tokens are for the demo only.");
    println!("\nServing until Ctrl-C. The README shows curl commands to try against {base}, e.g.:");
    println!("  curl -s {base}/v1/agencies -H 'Authorization: Bearer {ENFORCEMENT_TOKEN}'");
    println!(
        "  curl -s '{base}/v1/audit/events?limit=20' -H 'Authorization: Bearer {AUDITOR_TOKEN}'"
    );
    gateway.run_until_signal().await;
    fleet.shutdown().await;
    Ok(())
}

fn inquiry_body() -> Value {
    serde_json::json!({
        "case_number": DEMO_CASE,
        "subject": {"kind": "person", "name": fixtures::ZHANG_SAN_NAME, "id_number": fixtures::ZHANG_SAN_ID},
        "officers": [{"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"}]
    })
}

async fn show_inquiry(base: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let subject = adapters::ids::IdNumber::parse(fixtures::ZHANG_SAN_ID)?;
    println!(
        "Inquiry for {} ({}) under {DEMO_CASE}, waiting up to 10 s ...",
        fixtures::ZHANG_SAN_NAME,
        subject.masked()
    );
    let response = client
        .post(format!("{base}/v1/inquiries?wait=10"))
        .bearer_auth(ENFORCEMENT_TOKEN)
        .json(&inquiry_body())
        .send()
        .await?;
    let status = response.status();
    let inquiry: Value = response.json().await?;
    println!(
        "HTTP {status}: inquiry {} is {}\n",
        inquiry["id"].as_str().unwrap_or("?"),
        inquiry["status"].as_str().unwrap_or("?")
    );
    println!("Agencies:");
    for a in inquiry["agencies"].as_array().into_iter().flatten() {
        println!(
            "  {:<12} {:<10} {:>5} ms  {}",
            a["agency"].as_str().unwrap_or(""),
            a["status"].as_str().unwrap_or(""),
            a["latency_ms"]
                .as_i64()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
            a["detail"].as_str().unwrap_or("")
        );
    }
    println!("\nAssets:");
    for asset in inquiry["assets"].as_array().into_iter().flatten() {
        print_asset(asset);
    }
    let inquiry_id = inquiry["id"].as_str().unwrap_or_default();
    let audit: Value = client
        .get(format!("{base}/v1/audit/events"))
        .query(&[("inquiry", inquiry_id), ("limit", "1000")])
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    println!("\nAudit trail of this inquiry:");
    for e in audit["events"].as_array().into_iter().flatten() {
        let subject = e["subject"]
            .as_str()
            .map(adapters::ids::mask)
            .unwrap_or_default();
        println!(
            "  #{:<4} {} {:<8} {:<18} {:<11} {:<12} {:<10} {}",
            e["seq"].as_i64().unwrap_or(0),
            e["at"].as_str().unwrap_or(""),
            e["direction"].as_str().unwrap_or(""),
            e["action"].as_str().unwrap_or(""),
            e["agency"].as_str().unwrap_or("-"),
            e["status"].as_str().unwrap_or(""),
            subject,
            &e["hash"].as_str().unwrap_or("")[..12.min(e["hash"].as_str().unwrap_or("").len())]
        );
    }
    Ok(inquiry_id.to_owned())
}

/// The amount the demo plan freezes: more than 张三's two largest bank
/// accounts hold, so that the plan goes on to his provident fund (every
/// money-like kind is one pool); less than all his accounts.
const DEMO_PLAN_FEN: i64 = 20_000_000;

/// Freezes 200,000.00 across the accounts the inquiry found (deposits,
/// payment and provident fund accounts), one after another, and prints
/// each order and the total.
async fn show_freeze_plan(base: &str, inquiry_id: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).context("UTC+8")?)
        .date_naive();
    let end = crate::clock::term_end(today, 6).context("end date")?;
    let body = serde_json::json!({
        "case_number": DEMO_CASE,
        "subject": {"kind": "person", "name": fixtures::ZHANG_SAN_NAME, "id_number": fixtures::ZHANG_SAN_ID},
        "officers": [
            {"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"},
            {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"},
        ],
        "inquiry": inquiry_id,
        "amount_fen": DEMO_PLAN_FEN,
        "end_date": end.to_string(),
        "documents": [
            {"kind": "ruling", "number": "(2024)甘0503执1234号之一",
             "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
            {"kind": "assist_notice", "number": "(2024)甘0503执1234号协冻-1",
             "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
        ],
    });
    println!(
        "\nFreeze plan: {} across those accounts, never more, until {end} ...",
        adapters::model::Fen(DEMO_PLAN_FEN)
    );
    let response = client
        .post(format!("{base}/v1/freeze-plans"))
        .bearer_auth(ENFORCEMENT_TOKEN)
        .header("idempotency-key", format!("demo-{}", uuid::Uuid::now_v7()))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let plan: Value = response.json().await?;
    anyhow::ensure!(status.as_u16() == 202, "HTTP {status}: {plan}");
    let id = plan["id"].as_str().unwrap_or_default().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let plan = loop {
        let plan: Value = client
            .get(format!("{base}/v1/freeze-plans/{id}"))
            .bearer_auth(ENFORCEMENT_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        if plan["status"] != "running" || std::time::Instant::now() > deadline {
            break plan;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    for o in plan["orders"].as_array().into_iter().flatten() {
        println!(
            "  {:<8} at {:<12} {} asked {:>12} controlled {:>12} {:<8} {}",
            o["action"].as_str().unwrap_or(""),
            o["agency"].as_str().unwrap_or(""),
            // The account, whichever kind: a bank's, a payment
            // platform's, a provident fund centre's.
            o["asset"]
                .as_object()
                .and_then(|a| a.values().next())
                .and_then(Value::as_str)
                .unwrap_or(""),
            yuan(&o["requested_fen"]),
            yuan(&o["controlled_fen"]),
            o["status"].as_str().unwrap_or(""),
            o["reason"].as_str().unwrap_or(""),
        );
    }
    println!(
        "Plan {id} is {}: {} controlled of {}.",
        plan["status"].as_str().unwrap_or("?"),
        yuan(&plan["controlled_fen"]),
        adapters::model::Fen(DEMO_PLAN_FEN)
    );
    Ok(())
}

fn yuan(v: &Value) -> String {
    v.as_i64()
        .map(|f| adapters::model::Fen(f).to_yuan())
        .unwrap_or_else(|| "-".into())
}

fn print_asset(a: &Value) {
    let s = |k: &str| a[k].as_str().unwrap_or("").to_owned();
    match a["kind"].as_str() {
        Some("bank_account") => {
            println!(
                "  [{}] account {} ({}, {}) balance {} available {} {}",
                s("agency"),
                s("account_number"),
                s("account_type"),
                s("branch"),
                yuan(&a["balance_fen"]),
                yuan(&a["available_fen"]),
                s("currency"),
            );
        }
        Some("real_estate") => {
            println!(
                "  [{}] unit {} certificate {}\n      {} · {} m² · {} · mortgaged: {}",
                s("agency"),
                s("unit_number"),
                s("certificate_number"),
                s("location"),
                a["area_m2"],
                s("use"),
                a["mortgaged"]
            );
        }
        Some("vehicle") => {
            println!(
                "  [{}] vehicle {} plate {} ({}) · {} · mortgaged: {}",
                s("agency"),
                s("vin"),
                s("plate_number"),
                s("make_model"),
                s("state"),
                a["mortgaged"]
            );
        }
        Some("securities") => {
            println!(
                "  [{}] securities account {}: {} {} × {} ({} free) at {}",
                s("agency"),
                s("securities_account"),
                s("security_code"),
                s("security_name"),
                a["quantity"],
                a["available_quantity"],
                s("custodian"),
            );
        }
        Some("payment_account") => {
            println!(
                "  [{}] payment account {} balance {} available {} in funds {}",
                s("agency"),
                s("payment_account"),
                yuan(&a["balance_fen"]),
                yuan(&a["available_fen"]),
                yuan(&a["fund_balance_fen"]),
            );
        }
        Some("provident_fund") => {
            println!(
                "  [{}] provident fund account {} balance {} · {} · eligible for withdrawal: {}",
                s("agency"),
                s("fund_account"),
                yuan(&a["balance_fen"]),
                s("state"),
                a["withdrawable"],
            );
        }
        Some("equity") => {
            println!(
                "  [{}] equity in {} ({}): {} of subscribed capital {}",
                s("agency"),
                s("company_name"),
                s("company_credit_code"),
                s("share_ratio"),
                yuan(&a["subscribed_capital_fen"]),
            );
        }
        _ => println!("  {a}"),
    }
    for m in a["measures"].as_array().into_iter().flatten() {
        // What the measure holds: units of a security, or an amount.
        let extent = match (m["quantity"].as_i64(), m["amount_fen"].as_i64()) {
            (Some(units), _) => format!(" on {units} units"),
            (None, Some(fen)) if fen > 0 => format!(" on {}", yuan(&m["amount_fen"])),
            _ => String::new(),
        };
        println!(
            "      {} by {} ({}){extent} until {}",
            if m["waiting"].as_bool() == Some(true) {
                "waiting measure"
            } else {
                "measure in force"
            },
            m["authority"].as_str().unwrap_or(""),
            m["document_number"].as_str().unwrap_or(""),
            m["end_date"].as_str().unwrap_or("-"),
        );
    }
}
