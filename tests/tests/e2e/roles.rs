//! Every route with every role and with none: the route × role matrix.

use e2e_tests::*;
use reqwest::{Method, StatusCode};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    Nobody,
    Enforcement,
    Auditor,
    Admin,
}

const ROUTES: &[(&str, &str, &[Who])] = {
    use Who::*;
    &[
        ("POST", "/v1/inquiries", &[Enforcement]),
        (
            "GET",
            "/v1/inquiries?case_number=(2024)%E7%94%980503%E6%89%A71234%E5%8F%B7",
            &[Enforcement],
        ),
        ("GET", "/v1/inquiries/inq_0", &[Enforcement]),
        ("POST", "/v1/orders", &[Enforcement]),
        (
            "GET",
            "/v1/orders?case_number=(2024)%E7%94%980503%E6%89%A71234%E5%8F%B7",
            &[Enforcement],
        ),
        ("GET", "/v1/orders/ord_0", &[Enforcement]),
        ("POST", "/v1/freeze-plans", &[Enforcement]),
        ("GET", "/v1/freeze-plans/fpl_0", &[Enforcement]),
        (
            "GET",
            "/v1/cases/(2024)%E7%94%980503%E6%89%A71234%E5%8F%B7",
            &[Enforcement],
        ),
        ("GET", "/v1/audit/events", &[Auditor]),
        ("GET", "/v1/audit/events/1", &[Auditor]),
        ("GET", "/v1/audit/verify", &[Auditor]),
        (
            "GET",
            "/v1/audit/bundle?case_number=(2024)%E7%94%980503%E6%89%A71234%E5%8F%B7",
            &[Auditor],
        ),
        (
            "GET",
            "/v1/audit/questions/subjects-in-several-cases",
            &[Auditor],
        ),
        ("GET", "/v1/agencies", &[Enforcement, Admin]),
        ("POST", "/v1/admin/reload", &[Admin]),
        ("GET", "/v1/admin/agencies", &[Admin]),
        ("POST", "/v1/callbacks/registry-x", &[]),
    ]
};

const OPEN: &[&str] = &["/healthz", "/readyz", "/metrics"];

#[tokio::test]
async fn every_route_answers_each_role_as_the_contract_says() -> anyhow::Result<()> {
    // registry-x takes pushed results with its own token here.
    let sys = System::start_with(|_, agencies| {
        for a in agencies.iter_mut().filter(|a| a.id == "registry-x") {
            a.callback_token_sha256 =
                Some("4907ecbd212438d41b3f2857079dd0186ef963d760100daef74cde8ed8123657".into());
        }
    })
    .await?;
    let tokens = [
        (Who::Nobody, None),
        (Who::Enforcement, Some(ENFORCEMENT)),
        (Who::Auditor, Some(AUDITOR)),
        (Who::Admin, Some(ADMIN)),
    ];
    for (method, path, allowed) in ROUTES {
        for (who, token) in tokens {
            let method = Method::from_bytes(method.as_bytes())?;
            let body = (method == Method::POST).then(|| b"{}".to_vec());
            let reply = sys.call(method.clone(), path, token, body).await?;
            let status = reply.status;
            let expected = if who == Who::Nobody {
                "401"
            } else if allowed.contains(&who) {
                "allowed"
            } else if path.starts_with("/v1/callbacks") {
                // An agency's own token only; callers' tokens are strangers.
                "401"
            } else {
                "403"
            };
            match expected {
                "401" => assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} as {who:?}: {}",
                    reply.body
                ),
                "403" => assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {who:?}: {}",
                    reply.body
                ),
                _ => assert!(
                    status != StatusCode::UNAUTHORIZED
                        && status != StatusCode::FORBIDDEN
                        && !status.is_server_error(),
                    "{method} {path} as {who:?}: {status} {}",
                    reply.body
                ),
            }
            if status.is_client_error() {
                assert!(
                    reply.body["error"]["code"].is_string(),
                    "{method} {path}: {}",
                    reply.body
                );
            }
        }
    }
    for path in OPEN {
        for (who, token) in tokens {
            let reply = sys.call(Method::GET, path, token, None).await?;
            assert_eq!(reply.status, StatusCode::OK, "{path} as {who:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_caller_over_its_rate_gets_429_with_retry_after() -> anyhow::Result<()> {
    let sys = System::start_with(|config, _| {
        for c in config
            .callers
            .iter_mut()
            .filter(|c| c.name == "demo-auditor")
        {
            c.rate_per_second = Some(1);
            c.burst = Some(3);
        }
    })
    .await?;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let reply = sys.get("/v1/audit/events?limit=1", AUDITOR).await?;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(reply.body["error"]["code"], "rate_limited");
            assert!(reply.headers.get("retry-after").is_some());
        }
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // Other callers are not held back by the auditor's quota.
    let reply = sys.get("/v1/agencies", ENFORCEMENT).await?;
    assert_eq!(reply.status, StatusCode::OK);
    Ok(())
}
