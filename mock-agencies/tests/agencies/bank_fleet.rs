//! A fleet of banks behind one listener, each under `/banks/{id}` and
//! speaking the dialect its number gives it; and the agency files that
//! point the gateway at them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use mock_agencies::{MockBankFleet, MockDialect, fixtures, fleet_agency_files};
use serde_json::json;

use crate::bank_json::inquiry;
use crate::common::*;
use crate::iso_bank_xml::{iso_request, post_iso, report, wang_wu_inq};

const SEED: u64 = 20_241_127;

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn fleet_of(banks: usize) -> MockBankFleet {
    MockBankFleet::start(SEED, 500, banks, any_port())
        .await
        .expect("the bank fleet starts")
}

fn bank_url(fleet: &MockBankFleet, id: &str, path: &str) -> String {
    format!(
        "{}{path}",
        fleet.agency_base_url(id).expect("a bank of the fleet")
    )
}

/// A court-bank batch as UTF-8 (the fleet's even XML banks) or GB18030.
fn cxqq_in(encoding: &'static encoding_rs::Encoding, subjects: &[Subject<'_>]) -> Vec<u8> {
    let text = cxqq_text("P-fleet", subjects).replace("GB18030", encoding.name());
    encoding.encode(&text).0.into_owned()
}

#[tokio::test]
async fn fifty_banks_are_numbered_and_speak_by_their_number() {
    let fleet = fleet_of(50).await;
    let ids = fleet.bank_ids();
    assert_eq!(ids.len(), 50);
    assert_eq!(ids[0], "fleet-0001");
    assert_eq!(ids[49], "fleet-0050");
    let base = fleet.base_url();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_ne!(fleet.local_addr().port(), 0);
    assert_eq!(
        fleet.agency_base_url("fleet-0042"),
        Some(format!("{base}/banks/fleet-0042"))
    );
    assert_eq!(fleet.agency_base_url("fleet-0051"), None);
    assert_eq!(fleet.bank_dialect("bank-a"), None);
    let expected = [
        MockDialect::BankJson,
        MockDialect::CourtBankXml,
        MockDialect::CourtBankXml,
        MockDialect::IsoBankXml,
    ];
    for (n, id) in (1..).zip(&ids) {
        assert_eq!(fleet.bank_dialect(id), Some(expected[n % 4]), "{id}");
    }
    let (status, list) = get_json(&format!("{base}/banks")).await;
    assert_eq!(status, 200);
    assert_eq!(list["banks"].as_array().map(Vec::len), Some(50));
    assert_eq!(list["banks"][0]["encoding"], "GB18030");
    assert_eq!(list["banks"][1]["encoding"], "UTF-8");
    fleet.shutdown().await;
}

#[tokio::test]
async fn zhang_san_is_found_at_fleet_0042_in_its_own_dialect_and_path() {
    let fleet = fleet_of(50).await;
    let bank = fixtures::FLEET_ZHANG_SAN_BANK;
    assert_eq!(fleet.bank_dialect(bank), Some(MockDialect::CourtBankXml));
    let (status, content_type, bytes) = post_bytes(
        &bank_url(&fleet, bank, "/ckxt/cxqq"),
        "application/xml; charset=UTF-8",
        cxqq_in(encoding_rs::UTF_8, &[zhang_san("Q-f-1"), wang_wu("Q-f-2")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/xml; charset=UTF-8");
    let text = String::from_utf8(bytes).expect("fleet-0042 answers in UTF-8");
    assert!(text.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#));
    let feedbacks = blocks(&text, "CXFK");
    let zhang = feedbacks
        .iter()
        .find(|f| value(f, "CXQQDH") == Some("Q-f-1"))
        .expect("张三's feedback");
    assert_eq!(value(zhang, "CXJG"), Some("1"));
    let accounts = blocks(zhang, "ZHXX");
    assert_eq!(accounts.len(), 1, "one account at the fleet: {zhang}");
    let a = accounts[0];
    assert_eq!(value(a, "KHZH"), Some(fixtures::FLEET_ZHANG_SAN_ACCOUNT));
    assert_eq!(value(a, "CCLB"), Some(fixtures::FLEET_ZHANG_SAN_TYPE));
    assert_eq!(value(a, "KHWD"), Some(fixtures::FLEET_ZHANG_SAN_BRANCH));
    assert_eq!(value(a, "YE"), Some("42000.42"));
    assert_eq!(value(a, "KYYE"), Some("42000.42"));
    let wang = feedbacks
        .iter()
        .find(|f| value(f, "CXQQDH") == Some("Q-f-2"))
        .expect("王五's feedback");
    assert_eq!(value(wang, "CXJG"), Some("0"));

    // Only fleet-0042 knows him; the ledgers are the banks' own.
    let holder = format!("/_mock/ledger?holder={}", fixtures::ZHANG_SAN_ID);
    let (status, ledger) = get_json(&bank_url(&fleet, bank, &holder)).await;
    assert_eq!(status, 200);
    assert_eq!(ledger["agency"], bank);
    assert_eq!(ledger["accounts"].as_array().map(Vec::len), Some(1));
    let numbers: Vec<&str> = ledger["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["request_number"].as_str())
        .collect();
    assert_eq!(numbers, ["Q-f-1"]);
    for other in fleet.bank_ids().iter().filter(|id| id.as_str() != bank) {
        let (_, ledger) = get_json(&bank_url(&fleet, other, &holder)).await;
        assert_eq!(ledger["accounts"], json!([]), "{other}");
        assert_eq!(ledger["requests"], json!([]), "{other}");
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn every_dialect_of_the_fleet_answers_wang_wu_with_no_record() {
    let fleet = fleet_of(50).await;
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 33, 42, 47, 50] {
        let id = format!("fleet-{n:04}");
        let rn = format!("Q-ww-{n}");
        match fleet.bank_dialect(&id).expect("a bank") {
            MockDialect::BankJson => {
                let (status, reply) = post_json(
                    &bank_url(&fleet, &id, "/api/v1/asset-inquiries"),
                    &inquiry(&rn, fixtures::WANG_WU_NAME, fixtures::WANG_WU_ID),
                )
                .await;
                assert_eq!(status, 200, "{id}");
                assert_eq!(reply["outcome"], "NOT_FOUND", "{id}");
            }
            MockDialect::CourtBankXml => {
                let encoding = if n % 4 == 1 {
                    encoding_rs::GB18030
                } else {
                    encoding_rs::UTF_8
                };
                let (status, _, bytes) = post_bytes(
                    &bank_url(&fleet, &id, "/ckxt/cxqq"),
                    &format!("application/xml; charset={}", encoding.name()),
                    cxqq_in(encoding, &[wang_wu(&rn)]),
                )
                .await;
                assert_eq!(status, 200, "{id}");
                let (text, _, had_errors) = encoding.decode(&bytes);
                assert!(!had_errors, "{id} answers in {}", encoding.name());
                let declared = format!("encoding=\"{}\"", encoding.name());
                assert!(
                    text.to_ascii_lowercase()
                        .contains(&declared.to_ascii_lowercase()),
                    "{text}"
                );
                assert_eq!(value(&text, "CXJG"), Some("0"), "{id}");
            }
            MockDialect::IsoBankXml => {
                let (status, text) = post_iso(
                    &bank_url(&fleet, &id, "/iso/v1/account-inquiries"),
                    iso_request("P-ww", &[wang_wu_inq(&rn)]),
                )
                .await;
                assert_eq!(status, 200, "{id}");
                assert!(report(&text, &rn).contains(r#"<Sts Cd="NONE"/>"#), "{id}");
            }
            other => panic!("{id}: a fleet has only banks, not {}", other.as_str()),
        }
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn unknown_banks_and_paths_are_404_and_faults_stay_with_their_bank() {
    let fleet = fleet_of(50).await;
    let base = fleet.base_url();
    for path in [
        "/banks/fleet-0051/_mock/ledger",
        "/banks/fleet-42/_mock/ledger",
        "/banks/bank-a/ckxt/cxqq",
        "/banks/",
        "/banks/fleet-0001/no/such/path",
        "/ckxt/cxqq",
    ] {
        let response = client()
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("the fleet answers");
        assert_eq!(response.status(), 404, "{path}");
    }
    let (status, body) = get_json(&format!("{base}/banks/fleet-0099/_mock/faults")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NOT_FOUND");

    let (status, _) = post_json(
        &bank_url(&fleet, "fleet-0004", "/_mock/faults"),
        &json!({"mode": "error"}),
    )
    .await;
    assert_eq!(status, 200);
    let ask = |id: &'static str| {
        let url = bank_url(&fleet, id, "/api/v1/asset-inquiries");
        async move {
            post_json(
                &url,
                &inquiry("Q-fault", fixtures::WANG_WU_NAME, fixtures::WANG_WU_ID),
            )
            .await
        }
    };
    let (status, body) = ask("fleet-0004").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    let (status, body) = ask("fleet-0008").await;
    assert_eq!(status, 200, "the next bank-json bank is unaffected");
    assert_eq!(body["outcome"], "NOT_FOUND");
    let (_, faults) = get_json(&bank_url(&fleet, "fleet-0008", "/_mock/faults")).await;
    assert_eq!(faults["mode"], "normal");
    let (_, ledger) = get_json(&bank_url(&fleet, "fleet-0008", "/_mock/ledger")).await;
    assert_eq!(ledger["requests"][0]["request_number"], "Q-fault");
    let (_, ledger) = get_json(&bank_url(&fleet, "fleet-0004", "/_mock/ledger")).await;
    assert_eq!(
        ledger["requests"],
        json!([]),
        "nothing processed in error mode"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn the_population_is_spread_thinly_and_the_same_seed_spreads_it_alike() {
    let fleet = fleet_of(50).await;
    let again = fleet_of(50).await;
    let mut holders_per_bank = Vec::new();
    let mut banks_of: std::collections::HashMap<String, BTreeSet<String>> = Default::default();
    for id in fleet.bank_ids() {
        let (_, ledger) = get_json(&bank_url(&fleet, &id, "/_mock/ledger")).await;
        let (_, twin) = get_json(&bank_url(&again, &id, "/_mock/ledger")).await;
        assert_eq!(ledger["accounts"], twin["accounts"], "{id}");
        let accounts = ledger["accounts"].as_array().expect("accounts");
        let holders: BTreeSet<String> = accounts
            .iter()
            .filter_map(|a| a["holder_id"].as_str().map(str::to_owned))
            .collect();
        for h in &holders {
            banks_of.entry(h.clone()).or_default().insert(id.clone());
        }
        holders_per_bank.push(holders.len());
    }
    assert!(banks_of.values().all(|banks| banks.len() <= 3));
    assert!(banks_of.values().any(|banks| banks.len() > 1));
    // 500 subjects, about 1.2 banks each, over 50 banks: a dozen a bank.
    let total: usize = holders_per_bank.iter().sum();
    assert!((400..900).contains(&total), "{total}");
    assert!(!banks_of.contains_key(fixtures::WANG_WU_ID));
    assert_eq!(
        banks_of.get(fixtures::ZHANG_SAN_ID),
        Some(&BTreeSet::from([fixtures::FLEET_ZHANG_SAN_BANK.to_owned()]))
    );
    fleet.shutdown().await;
    again.shutdown().await;
}

#[test]
fn agency_files_point_the_gateway_at_every_bank() {
    let files = fleet_agency_files("http://127.0.0.1:18200/", 50);
    assert_eq!(files.len(), 50);
    for (n, (name, text)) in (1..).zip(&files) {
        let id = format!("fleet-{n:04}");
        assert_eq!(name, &format!("{id}.toml"));
        let table: toml::Table = toml::from_str(text).expect("valid TOML");
        let keys: BTreeSet<&str> = table.keys().map(String::as_str).collect();
        let xml = n % 4 != 0;
        let mut expected = BTreeSet::from([
            "id", "name", "kind", "dialect", "base_url", "enabled", "limits",
        ]);
        if xml {
            expected.insert("encoding");
        }
        assert_eq!(keys, expected, "{name}");
        assert_eq!(table["id"].as_str(), Some(id.as_str()));
        assert_eq!(table["kind"].as_str(), Some("bank"));
        assert_eq!(
            table["base_url"].as_str(),
            Some(format!("http://127.0.0.1:18200/banks/{id}").as_str())
        );
        assert_eq!(table["enabled"].as_bool(), Some(true));
        assert_eq!(table["limits"]["timeout_ms"].as_integer(), Some(5000));
        assert_eq!(
            table["limits"]["max_batch"].as_integer(),
            Some(if xml { 20 } else { 1 })
        );
        let (dialect, encoding) = match n % 4 {
            0 => ("bank-json", None),
            1 => ("court-bank-xml", Some("GB18030")),
            2 => ("court-bank-xml", Some("UTF-8")),
            _ => ("iso-bank-xml", Some("UTF-8")),
        };
        assert_eq!(table["dialect"].as_str(), Some(dialect), "{name}");
        assert_eq!(table.get("encoding").and_then(|e| e.as_str()), encoding);
        assert!(table["name"].as_str().is_some_and(|s| s.contains(&id)));
    }
    assert_eq!(
        fleet_agency_files("http://h:1", 12_000)[0].0,
        "fleet-00001.toml"
    );
}

#[test]
fn agency_files_are_written_into_a_new_directory() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("agencies");
    let written = mock_agencies::write_fleet_agency_files(&out, "http://127.0.0.1:18200", 7)
        .expect("written");
    assert_eq!(written, 7);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("the directory exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    assert_eq!(names.first().map(String::as_str), Some("fleet-0001.toml"));
    assert_eq!(names.len(), 7);
    let text = std::fs::read_to_string(out.join("fleet-0003.toml")).expect("readable");
    assert!(text.contains("dialect = \"iso-bank-xml\""), "{text}");
    assert!(mock_agencies::write_fleet_agency_files(&out, "ftp://x", 3).is_err());
    assert!(mock_agencies::write_fleet_agency_files(&out, "http://x", 0).is_err());
}

#[tokio::test]
async fn four_thousand_banks_start_quickly_on_one_listener() {
    let started = Instant::now();
    let fleet = MockBankFleet::start(SEED, 2000, 4000, any_port())
        .await
        .expect("4,000 banks start");
    let elapsed = started.elapsed();
    println!("a 4,000-bank fleet (population 2,000) started in {elapsed:?}");
    assert_eq!(fleet.bank_ids().len(), 4000);
    assert_eq!(fleet.bank_ids()[3999], "fleet-4000");
    let (status, ledger) = get_json(&bank_url(&fleet, "fleet-4000", "/_mock/ledger")).await;
    assert_eq!(status, 200);
    assert_eq!(ledger["dialect"], "bank-json");
    let (_, reply) = post_json(
        &bank_url(&fleet, "fleet-4000", "/api/v1/asset-inquiries"),
        &inquiry("Q-4000", fixtures::ZHANG_SAN_NAME, fixtures::ZHANG_SAN_ID),
    )
    .await;
    assert_eq!(reply["outcome"], "NOT_FOUND");
    let (_, ledger) = get_json(&bank_url(
        &fleet,
        fixtures::FLEET_ZHANG_SAN_BANK,
        &format!("/_mock/ledger?holder={}", fixtures::ZHANG_SAN_ID),
    ))
    .await;
    assert_eq!(
        ledger["accounts"][0]["account_number"],
        fixtures::FLEET_ZHANG_SAN_ACCOUNT
    );
    fleet.shutdown().await;
}
