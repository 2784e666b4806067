//! A registry that pushes its results instead of being polled: the
//! callback pattern end to end, and what the callback endpoint refuses.

use e2e_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The demo token registry-x presents (config/mock-agencies.toml); only its
/// SHA-256 is in the agency file.
const TOKEN: &str = "demo-registry-callback-token";
const TOKEN_SHA256: &str = "4907ecbd212438d41b3f2857079dd0186ef963d760100daef74cde8ed8123657";

/// The gateway with registry-y: the registry-x mock, spoken to in the
/// `registry-callback` dialect.
async fn system(backend: Backend) -> anyhow::Result<System> {
    system_with(backend, |_| {}).await
}

/// [`system`], with the gateway's configuration changed by `tweak`.
async fn system_with(
    backend: Backend,
    tweak: impl FnOnce(&mut gateway::config::GatewayConfig),
) -> anyhow::Result<System> {
    System::start_on(backend, |config, agencies| {
        tweak(config);
        let mut y = agencies
            .iter()
            .find(|a| a.id == "registry-x")
            .expect("registry-x")
            .clone();
        y.id = "registry-y".into();
        y.name = "Registry Y (pushes its results)".into();
        y.dialect = "registry-callback".into();
        y.callback_token_sha256 = Some(TOKEN_SHA256.into());
        agencies.push(y);
    })
    .await
}

fn for_registry_y(subject: Value) -> Value {
    let mut body = inquiry_body(subject);
    body["agencies"] = json!(["registry-y"]);
    body
}

async fn a_registry_pushes_its_result_and_the_inquiry_completes(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = system(backend).await?;
    let reply = sys
        .post_json(
            "/v1/inquiries?wait=10",
            ENFORCEMENT,
            &for_registry_y(zhang_san()),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        agency_status(&reply.body, "registry-y"),
        "answered",
        "{}",
        reply.body
    );
    let units = assets(&reply.body, "real_estate");
    assert_eq!(units.len(), 1);
    assert_eq!(units[0]["unit_number"], "620503001001GB00001F00010001");

    // The push is in the audit log, after the message that asked for it.
    let id = reply.body["id"].as_str().expect("id");
    let events = sys.audit(&format!("inquiry={id}")).await?;
    let seq = |direction: &str, action: &str| {
        events
            .iter()
            .find(|e| e["direction"] == direction && e["action"] == action)
            .and_then(|e| e["seq"].as_i64())
    };
    let sent = seq("outbound", "inquiry.send").expect("outbound recorded");
    let pushed = seq("callback", "inquiry.callback_result").expect("callback recorded");
    assert!(sent < pushed);
    assert!(
        events.iter().all(|e| e["action"] != "inquiry.poll"),
        "nothing was polled"
    );

    let nobody = sys
        .post_json(
            "/v1/inquiries?wait=10",
            ENFORCEMENT,
            &for_registry_y(nobody()),
        )
        .await?;
    assert_eq!(
        agency_status(&nobody.body, "registry-y"),
        "no_record",
        "{}",
        nobody.body
    );
    Ok(())
}

/// An inquiry that an agency's push completes is called back to its caller
/// too: the push's result, the completion and the callback are committed
/// together.
async fn an_inquiry_a_push_completes_is_called_back_to_its_caller(
    backend: Backend,
) -> anyhow::Result<()> {
    let receiver = crate::orders::Receiver::start().await?;
    let secret_dir = tempfile::tempdir()?;
    let secret_file = secret_dir.path().join("callback.secret");
    std::fs::write(&secret_file, "push-secret")?;
    let url = receiver.url();
    let sys = system_with(backend, |config| {
        for c in &mut config.callers {
            if c.name == "demo-court" {
                c.callback_url = Some(url.clone());
                c.callback_secret_file = Some(secret_file.clone());
            }
        }
    })
    .await?;
    // Not waited for: the push is what completes it.
    let reply = sys
        .post_json("/v1/inquiries", ENFORCEMENT, &for_registry_y(zhang_san()))
        .await?;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("id").to_owned();
    let event = receiver
        .wait_for(|e| e["event"] == "inquiry.completed" && e["resource"]["id"] == id.as_str())
        .await?;
    assert_eq!(event["resource"]["status"], "completed", "{event}");
    assert_eq!(
        agency_status(&event["resource"], "registry-y"),
        "answered",
        "{event}"
    );
    let pushed = sys.audit(&format!("inquiry={id}")).await?;
    assert!(
        pushed
            .iter()
            .any(|e| e["direction"] == "callback" && e["action"] == "inquiry.callback_result"),
        "completed by the push: {pushed:?}"
    );
    // Called back once, not once per instance or sweep.
    let deliveries = receiver
        .deliveries()
        .into_iter()
        .filter(|d| {
            d.event["event"] == "inquiry.completed" && d.event["resource"]["id"] == id.as_str()
        })
        .count();
    assert_eq!(deliveries, 1);
    Ok(())
}

/// An inquiry's last result, its completion and its callback are
/// committed together, so no stop can fall between them. A completion that
/// could not make its callback then (or one by an older gateway) is left
/// owing it, and whichever gateway runs next calls it back. That state
/// (completed, owing, nothing queued) is made by hand from a completed
/// inquiry.
async fn a_stop_between_the_last_result_and_its_callback_loses_neither(
    backend: Backend,
) -> anyhow::Result<()> {
    let receiver = crate::orders::Receiver::start().await?;
    let secret_dir = tempfile::tempdir()?;
    let secret_file = secret_dir.path().join("callback.secret");
    std::fs::write(&secret_file, "stop-secret")?;
    let url = receiver.url();
    let mut sys = system_with(backend, |config| {
        for c in &mut config.callers {
            if c.name == "demo-court" {
                c.callback_url = Some(url.clone());
                c.callback_secret_file = Some(secret_file.clone());
            }
        }
    })
    .await?;
    let reply = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("id").to_owned();
    let first = receiver
        .wait_for(|e| e["event"] == "inquiry.completed" && e["resource"]["id"] == id.as_str())
        .await?;
    sys.stop_gateway().await;
    // As the stop would have left it: completed, the callback owed, none
    // queued.
    let q = |s: &str| s.replace('\'', "\'\'");
    assert_eq!(
        sys.sql(&format!(
            "DELETE FROM outbox WHERE resource_id = '{}'",
            q(&id)
        ))
        .await?,
        1
    );
    assert_eq!(
        sys.sql(&format!(
            "UPDATE inquiries SET callback_due = 1 WHERE id = '{}'",
            q(&id)
        ))
        .await?,
        1
    );
    let before = receiver.deliveries().len();
    sys.start_gateway().await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let again = loop {
        let delivered: Vec<_> = receiver.deliveries().into_iter().skip(before).collect();
        if let Some(d) = delivered.iter().find(|d| {
            d.event["event"] == "inquiry.completed" && d.event["resource"]["id"] == id.as_str()
        }) {
            break d.event.clone();
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the owed callback was not delivered after the restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // The same inquiry, as completed: nothing of its result was lost.
    assert_eq!(again["resource"]["status"], "completed", "{again}");
    assert!(
        again["resource"]["agencies"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{again}"
    );
    assert_eq!(again["resource"]["agencies"], first["resource"]["agencies"]);
    assert_eq!(reply.body["agencies"], again["resource"]["agencies"]);
    Ok(())
}

async fn the_callback_endpoint_refuses_strangers_and_garbage_and_ignores_repeats(
    backend: Backend,
) -> anyhow::Result<()> {
    let sys = system(backend).await?;
    let url = |agency: &str| format!("{}/v1/callbacks/{agency}", sys.base);
    let push = |agency: &str, token: Option<&str>, body: &str| {
        let mut r = sys
            .client
            .post(url(agency))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let result = r#"{"RESULT":"0000","CXQQDH":"Q-unknown-registry-y","CXJG":"0","BDCLIST":[]}"#;
    assert_eq!(
        push("registry-y", None, result).await?.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        push("registry-y", Some("guess"), result).await?.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        push("registry-x", Some(TOKEN), result).await?.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        push("registry-z", Some(TOKEN), result).await?.status(),
        StatusCode::NOT_FOUND
    );

    let garbage = push("registry-y", Some(TOKEN), "<html>502</html>").await?;
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let body: Value = garbage.json().await?;
    assert_eq!(body["error"]["code"], "bad_callback");
    let recorded = sys.audit("agency=registry-y").await?;
    assert!(
        recorded
            .iter()
            .any(|e| e["direction"] == "callback" && e["status"] == "bad_reply")
    );

    // A result for no awaiting request (unknown, or already answered) is
    // acknowledged and changes nothing.
    let unknown = push("registry-y", Some(TOKEN), result).await?;
    assert_eq!(unknown.status(), StatusCode::OK);
    let body: Value = unknown.json().await?;
    assert_eq!(body["ignored"], json!(["Q-unknown-registry-y"]));

    let reply = sys
        .post_json(
            "/v1/inquiries?wait=10",
            ENFORCEMENT,
            &for_registry_y(zhang_san()),
        )
        .await?;
    assert_eq!(agency_status(&reply.body, "registry-y"), "answered");
    let rn = reply.body["agencies"][0]["request_number"]
        .as_str()
        .expect("rn")
        .to_owned();
    let again = push(
        "registry-y",
        Some(TOKEN),
        &format!(r#"{{"RESULT":"0000","CXQQDH":"{rn}","CXJG":"0","BDCLIST":[]}}"#),
    )
    .await?;
    let body: Value = again.json().await?;
    assert_eq!(body["ignored"], json!([rn]));
    let id = reply.body["id"].as_str().expect("id");
    let still = sys.get(&format!("/v1/inquiries/{id}"), ENFORCEMENT).await?;
    assert_eq!(
        agency_status(&still.body, "registry-y"),
        "answered",
        "a late callback changes nothing"
    );
    Ok(())
}

on_both_backends!(a_registry_pushes_its_result_and_the_inquiry_completes);
on_both_backends!(an_inquiry_a_push_completes_is_called_back_to_its_caller);
on_both_backends!(a_stop_between_the_last_result_and_its_callback_loses_neither);
on_both_backends!(the_callback_endpoint_refuses_strangers_and_garbage_and_ignores_repeats);
