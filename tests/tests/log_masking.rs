//! No identity number, token or secret in any log line: the logs of a full
//! run (inquiries, orders, a freeze plan, the case view, the admin's agency
//! page, an audit read, an evidence bundle, a refused call, the web
//! console's sign-in, search, export and rows), at debug level for every
//! crate, captured and searched.
//!
//! Its own test binary: it installs the process's log subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use e2e_tests::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_no_identity_number_token_or_secret() -> anyhow::Result<()> {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(logs.clone())
        .with_ansi(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let sys = System::start().await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    let inquiry = reply.body["id"].as_str().unwrap_or_default().to_owned();
    sys.inquire(organisation(), 10).await?;
    let end = (chrono::Utc::now().date_naive() + chrono::Days::new(60)).to_string();
    let documents = json!([
        {"kind": "ruling", "number": "(2024)甘0503执1234号之一", "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
        {"kind": "assist_notice", "number": "协冻-1", "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
    ]);
    let officers = json!([officer(), {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"}]);
    let plan = sys
        .keyed_post(
            "/v1/freeze-plans",
            "log-plan",
            &json!({"case_number": CASE, "subject": zhang_san(), "officers": officers,
                    "inquiry": inquiry, "amount_fen": 13_000_000, "end_date": end, "documents": documents}),
        )
        .await?;
    let id = plan.body["id"].as_str().unwrap_or_default().to_owned();
    sys.wait_for(
        &format!("/v1/freeze-plans/{id}"),
        std::time::Duration::from_secs(15),
        |p| p["status"] != "running",
    )
    .await?;
    // The case view and the admin's agency page.
    let case = sys
        .get(&format!("/v1/cases/{}", q(CASE)), ENFORCEMENT)
        .await?;
    assert!(case.status.is_success(), "{}", case.body);
    let page = sys.get("/v1/admin/agencies", ADMIN).await?;
    assert!(page.status.is_success(), "{}", page.body);
    sys.audit(&format!("subject={ZHANG_SAN_ID}")).await?;
    let bundle = sys
        .get(&format!("/v1/audit/bundle?subject={ZHANG_SAN_ID}"), AUDITOR)
        .await?;
    assert!(bundle.status.is_success(), "{}", bundle.body);
    // The web console: signed in with a token in a form, a search by
    // subject and its export, a row with its body, a page asked for
    // without a session (its address, the subject in it, comes back in a
    // redirect).
    let session = console_pages(&sys).await?;
    // A refused call with an identity number in a bad body.
    let mut bad =
        inquiry_body(json!({"kind": "person", "name": "张三", "id_number": "360426199101010072"}));
    bad["case_number"] = json!(CASE);
    sys.post_json("/v1/inquiries", ENFORCEMENT, &bad).await?;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    assert!(
        text.len() > 10_000,
        "the run logged too little to prove anything: {} bytes",
        text.len()
    );
    for secret in [
        ZHANG_SAN_ID,
        "360426199101010072",
        // (An organisation's credit code is public registration data, not a
        // personal number: it may be logged.)
        ENFORCEMENT,
        AUDITOR,
        ADMIN,
        "demo-registry-callback-token",
        &session,
    ] {
        assert!(
            !text.contains(secret),
            "{secret} appears in the logs:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The bank-b API key (a file beside its agency file) never appears either.
    let key = std::fs::read_to_string(config_dir().join("agencies/secrets/bank-b-api-key"))?;
    assert!(
        !text.contains(key.trim()),
        "bank-b's API key appears in the logs"
    );
    Ok(())
}

/// Uses the console as an auditor would; the session cookie's value.
async fn console_pages(sys: &System) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = format!("token={AUDITOR}");
    let signed_in = client
        .post(format!("{}/console/sign-in", sys.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(cookie.starts_with("gw_console="), "{cookie}");
    let sent = sys.audit("agency=bank-a&direction=outbound").await?;
    for path in [
        format!("/console/audit?subject={ZHANG_SAN_ID}&direction=outbound"),
        format!("/console/audit/export.csv?subject={ZHANG_SAN_ID}"),
        format!("/console/audit/{}", sent[0]["seq"]),
        format!("/console/audit/{}/raw", sent[0]["seq"]),
    ] {
        let page = client
            .get(format!("{}{path}", sys.base))
            .header("cookie", &cookie)
            .send()
            .await?;
        anyhow::ensure!(page.status().is_success(), "{path}: {}", page.status());
        page.bytes().await?;
    }
    let redirected = client
        .get(format!("{}/console/audit?subject={ZHANG_SAN_ID}", sys.base))
        .send()
        .await?;
    anyhow::ensure!(redirected.status().is_redirection());
    Ok(cookie.trim_start_matches("gw_console=").to_owned())
}
