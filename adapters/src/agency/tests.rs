//! Agency files as an onboarding engineer writes them: what is accepted,
//! and every mistake reported with its line.

use super::*;

const GOOD: &str = r#"
id = "bank-a"
name = "Bank A"
kind = "bank"
dialect = "court-bank-xml"
base_url = "http://127.0.0.1:18101"
encoding = "GB18030"

[limits]
timeout_ms = 5000
max_batch = 20
"#;

/// A folder of its own for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "agency-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse(text: &str) -> Result<AgencyConfig, Vec<ConfigError>> {
    parse_agency(Path::new("bank-a.toml"), text)
}

fn lines(errors: &[ConfigError]) -> Vec<Option<usize>> {
    errors.iter().map(ConfigError::line).collect()
}

#[test]
fn a_good_file_parses_with_defaults() {
    let a = parse(GOOD).expect("valid");
    assert!(a.enabled);
    assert_eq!(a.limits.timeout_ms, 5000);
    assert_eq!(a.limits.max_batch, Some(20));
    assert_eq!(a.limits.max_concurrency, None);
    assert_eq!(a.poll_interval_ms, 1000);
    assert_eq!(a.business_hours, None);
    assert_eq!(a.asset_kind(), AssetKind::BankAccount);
    assert_eq!(a.line_of("dialect"), Some(5));
    assert_eq!(a.line_of("limits.max_batch"), Some(11));
    assert_eq!(a.at_key("limits.rate_per_second", "x"), "line 9: x");
}

#[test]
fn each_kind_of_agency_serves_its_kind_of_asset() {
    let mut served = Vec::new();
    for kind in AgencyKind::ALL {
        let text = GOOD.replace("kind = \"bank\"", &format!("kind = \"{}\"", kind.as_str()));
        let a = parse(&text).unwrap_or_else(|e| panic!("{kind:?}: {e:?}"));
        assert_eq!(a.kind, kind);
        served.push(a.asset_kind());
    }
    // One kind of agency for each kind of asset.
    assert_eq!(served, AssetKind::ALL);
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let text = format!("{GOOD}colour = \"red\"\n");
    let errors = parse(&text).expect_err("unknown key");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line(), Some(12));
    let shown = errors[0].to_string();
    assert!(shown.starts_with("bank-a.toml: line 12: "), "{shown}");
    assert!(shown.contains("colour"), "{shown}");
}

#[test]
fn the_old_top_level_limits_are_unknown_keys_now() {
    let text = GOOD.replace("encoding = \"GB18030\"", "timeout_ms = 5000");
    let errors = parse(&text).expect_err("moved key");
    assert_eq!(lines(&errors), vec![Some(7)], "{errors:?}");
    assert!(errors[0].text().contains("timeout_ms"), "{errors:?}");
}

#[test]
fn three_mistakes_are_three_errors_each_with_its_line() {
    let text = r#"id = "bank-b"
name = "Bank B"
kind = "bank"
dialect = "bank-json"
base_url = "htp//bank-b.example"
colour = "blue"

[[auth.headers]]
name = "X-Api-Key"
value = "literal-secret-123"
"#;
    let errors = parse(text).expect_err("three mistakes");
    assert_eq!(
        lines(&errors),
        vec![Some(5), Some(6), Some(10)],
        "{errors:?}"
    );
    assert!(errors[0].text().contains("base_url"));
    assert!(
        errors[1]
            .text()
            .starts_with("unknown key colour, expected one of `id`")
    );
    assert!(errors[2].text().contains("secrets never inline"));
    let all: String = errors.iter().map(|e| e.to_string()).collect();
    assert!(!all.contains("literal-secret-123"), "{all}");
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let text = GOOD
        .replace("bank-a\"", "Bank A\"")
        .replace("court-bank-xml", " ")
        .replace("http://127.0.0.1:18101", "ftp://x")
        .replace("max_batch = 20", "max_batch = 0");
    let errors = parse(&text).expect_err("four problems");
    assert_eq!(
        lines(&errors),
        vec![Some(2), Some(5), Some(6), Some(11)],
        "{errors:?}"
    );
}

#[test]
fn a_wrong_type_does_not_hide_the_other_mistakes() {
    let text = GOOD
        .replace("kind = \"bank\"", "kind = \"bnak\"")
        .replace("timeout_ms = 5000", "timeout_ms = \"fast\"")
        .replace("http://127.0.0.1:18101", "not a url");
    let errors = parse(&text).expect_err("three problems");
    assert_eq!(
        lines(&errors),
        vec![Some(4), Some(6), Some(10)],
        "{errors:?}"
    );
}

#[test]
fn a_missing_required_key_is_named_and_the_rest_still_checked() {
    let text = GOOD
        .replace("name = \"Bank A\"\n", "")
        .replace("max_batch = 20", "max_batch = 0");
    let errors = parse(&text).expect_err("two problems");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].text().contains("name: required key is missing"),
        "{errors:?}"
    );
    assert_eq!(errors[1].line(), Some(10), "{errors:?}");
}

#[test]
fn a_syntax_error_has_its_line() {
    let errors = parse("id = \"a\"\nname = \n").expect_err("syntax");
    assert_eq!(errors[0].line(), Some(2), "{errors:?}");
}

#[test]
fn limits_must_be_positive() {
    let text = format!("{GOOD}rate_per_second = 0\nmax_concurrency = 0\nhedge_percent = 101\n");
    let errors = parse(&text).expect_err("zero limits");
    assert_eq!(
        lines(&errors),
        vec![Some(12), Some(13), Some(14)],
        "{errors:?}"
    );
    let ok = format!("{GOOD}rate_per_second = 50\nmax_concurrency = 4\nhedge_percent = 5\n");
    let a = parse(&ok).expect("valid");
    assert_eq!(
        (
            a.limits.rate_per_second,
            a.limits.max_concurrency,
            a.limits.hedge_percent
        ),
        (Some(50), Some(4), 5)
    );
}

#[test]
fn business_hours_are_read_and_checked() {
    let text = format!(
        "{GOOD}\n[business_hours]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nopen = \"08:00\"\nclose = \"17:00\"\n"
    );
    let hours = parse(&text).expect("valid").business_hours.expect("hours");
    assert_eq!(hours.describe(), "mon,tue,wed,thu,fri 08:00-17:00 UTC+8");

    let bad_day = text.replace("\"wed\"", "\"wednesday\"");
    let errors = parse(&bad_day).expect_err("bad day");
    assert_eq!(lines(&errors), vec![Some(14)], "{errors:?}");
    let backwards = text.replace("17:00", "07:00");
    let errors = parse(&backwards).expect_err("closes before it opens");
    assert_eq!(lines(&errors), vec![Some(16)], "{errors:?}");
    let bad_time = text.replace("08:00", "8 am");
    let errors = parse(&bad_time).expect_err("bad time");
    assert_eq!(lines(&errors), vec![Some(15)], "{errors:?}");
}

#[test]
fn auth_values_come_from_the_environment_or_a_file_next_to_the_agency_file() {
    let scratch = Scratch::new("auth");
    scratch.write("secrets/bank-b.key", "  key-from-file\n");
    let text = format!(
        "{GOOD}\n[[auth.headers]]\nname = \"X-Api-Key\"\nfile = \"secrets/bank-b.key\"\n\n\
         [[auth.headers]]\nname = \"X-Env\"\nenv = \"PATH\"\n"
    );
    let file = scratch.write("bank-a.toml", &text);
    let config = parse_agency(&file, &text).expect("valid");
    assert_eq!(
        config.auth.headers[0].file.as_deref(),
        Some(scratch.0.join("secrets/bank-b.key").as_path()),
        "relative paths are anchored at the agency file's folder"
    );
    let connection = Connection::resolve(&config).expect("resolved");
    assert_eq!(connection.headers[0].value.expose(), b"key-from-file");
    assert!(!connection.headers[1].value.expose().is_empty());
    assert!(!format!("{connection:?}").contains("key-from-file"));
}

#[test]
fn a_missing_variable_or_file_is_an_error_naming_the_file() {
    let text = format!(
        "{GOOD}\n[[auth.headers]]\nname = \"X-Api-Key\"\nenv = \"SURELY_UNSET_AGENCY_KEY_91\"\n\n\
         [[auth.headers]]\nname = \"X-Other\"\nfile = \"/nonexistent/secret.key\"\n\n\
         [[auth.headers]]\nname = \"X-Both\"\nenv = \"PATH\"\nfile = \"x\"\n\n\
         [[auth.headers]]\nname = \"X-Neither\"\n"
    );
    let errors = parse(&text).expect_err("four problems");
    assert_eq!(
        lines(&errors),
        vec![Some(15), Some(19), Some(23), Some(27)],
        "{errors:?}"
    );
    assert!(errors[0].to_string().starts_with("bank-a.toml: line 15: "));
    assert!(
        errors[0]
            .text()
            .contains("SURELY_UNSET_AGENCY_KEY_91 (auth header \"X-Api-Key\") is not set")
    );
}

#[test]
fn tls_files_must_exist_and_cert_and_key_come_together() {
    let scratch = Scratch::new("tls");
    scratch.write(
        "tls/ca.pem",
        "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
    );
    scratch.write(
        "tls/client.pem",
        "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
    );
    scratch.write(
        "tls/client.key",
        "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n",
    );
    let https = GOOD.replace("http://", "https://");
    let good = format!(
        "{https}\n[tls]\nca = \"tls/ca.pem\"\nclient_cert = \"tls/client.pem\"\nclient_key = \"tls/client.key\"\n"
    );
    let file = scratch.write("bank-a.toml", &good);
    let config = parse_agency(&file, &good).expect("valid");
    let tls = Connection::resolve(&config)
        .expect("resolved")
        .tls
        .expect("tls");
    assert!(tls.ca_pem.is_some());
    let identity = tls.identity_pem.expect("identity");
    assert!(String::from_utf8_lossy(identity.expose()).contains("PRIVATE KEY"));

    let without_key = good.replace("client_key = \"tls/client.key\"\n", "");
    let errors = parse_agency(&file, &without_key).expect_err("cert without key");
    assert_eq!(lines(&errors), vec![Some(15)], "{errors:?}");
    let missing_ca = good.replace("tls/ca.pem", "tls/nope.pem");
    let errors = parse_agency(&file, &missing_ca).expect_err("no such CA");
    assert_eq!(lines(&errors), vec![Some(14)], "{errors:?}");
    let plain_http = good.replace("https://", "http://");
    let errors = parse_agency(&file, &plain_http).expect_err("tls over http");
    assert_eq!(lines(&errors), vec![Some(13)], "{errors:?}");
}

#[test]
fn a_parsed_file_written_back_reads_the_same() {
    let text = format!(
        "{GOOD}max_concurrency = 2\n\n[business_hours]\ndays = [\"mon\"]\nopen = \"09:30\"\nclose = \"16:00\"\n\n\
         [[auth.headers]]\nname = \"X-Env\"\nenv = \"PATH\"\n"
    );
    let config = parse(&text).expect("valid");
    let written = toml::to_string(&config).expect("serialise");
    let again = parse(&written).expect("valid again");
    assert_eq!(again.limits, config.limits);
    assert_eq!(again.business_hours, config.business_hours);
    assert_eq!(again.auth, config.auth);
}

#[test]
fn a_directory_with_errors_is_refused_whole() {
    let scratch = Scratch::new("dir");
    scratch.write("a.toml", GOOD);
    scratch.write("b.toml", GOOD);
    scratch.write("c.toml", "id = ");
    let errors = load_agencies(&scratch.0).expect_err("duplicate and broken");
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert!(errors.to_string().contains("already used"));
    assert!(errors.0.iter().all(|e| e.line().is_some()), "{errors}");
}

/// A dialect that signs its messages takes the agency's key from the agency
/// file, by reference; the key signs the requests. Without a key, with a
/// key its dialect has no use for, or with the key written inline, the
/// file is refused, naming the key.
#[test]
fn a_signing_dialect_takes_its_key_from_the_agency_file() {
    use crate::dialect::{Envelope, InquiryRequest};
    use crate::ids::{CaseNumber, IdNumber};
    use crate::model::{Court, Officer, Subject};

    let dialects = crate::catalog::DialectSet::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/dialects"),
    )
    .expect("dialects");
    let scratch = Scratch::new("signing");
    scratch.write("secrets/pay.key", "platform-key\n");
    let pay = GOOD
        .replace("id = \"bank-a\"", "id = \"pay-x\"")
        .replace("kind = \"bank\"", "kind = \"payment_platform\"")
        .replace("dialect = \"court-bank-xml\"", "dialect = \"payment-json\"")
        .replace("encoding = \"GB18030\"\n", "")
        .replace("max_batch = 20", "max_batch = 1");
    let agency = |text: &str| {
        let file = scratch.write("pay-x.toml", text);
        let config = parse_agency(&file, text).map_err(|e| format!("{e:?}"))?;
        Agency::new(config, &dialects)
    };

    let with_key = format!("{pay}\n[auth.signing_key]\nfile = \"secrets/pay.key\"\n");
    let a = agency(&with_key).expect("a signing agency with its key");
    assert!(!format!("{a:?}").contains("platform-key"));
    let request = InquiryRequest {
        request_number: "Q1-pay-x".into(),
        case_number: CaseNumber::parse("(2024)甘0503执1234号").expect("case"),
        subject: Subject::Person {
            name: "张三".into(),
            id_number: IdNumber::parse("360426199101010071").expect("id"),
        },
        officers: vec![Officer {
            name: "李明".into(),
            work_card_no: "G1".into(),
            credential_no: "ZX1".into(),
        }],
    };
    let envelope = Envelope {
        court: Court {
            code: "甘0503".into(),
            name: "x".into(),
        },
        batch_number: "P1".into(),
        callback_url: None,
    };
    let wire = a
        .dialect
        .inquiry_request(&envelope, std::slice::from_ref(&request))
        .expect("renders");
    let body: serde_json::Value = serde_json::from_slice(&wire.body).expect("json");
    let serde_json::Value::Object(object) = &body else {
        panic!("an object")
    };
    assert_eq!(
        body["sign"],
        crate::engine::signing::signature(
            b"platform-key",
            &crate::engine::signing::canonical(object, "sign")
        )
        .expect("mac")
    );
    assert_eq!(body["nonce"].as_str().map(str::len), Some(32));
    // Two messages never share a nonce.
    let again = a
        .dialect
        .inquiry_request(&envelope, std::slice::from_ref(&request))
        .expect("renders");
    let again: serde_json::Value = serde_json::from_slice(&again.body).expect("json");
    assert_ne!(again["nonce"], body["nonce"]);

    let missing = agency(&pay).expect_err("no key");
    assert!(missing.contains("auth.signing_key"), "{missing}");
    let inline = format!("{pay}\n[auth.signing_key]\nvalue = \"platform-key\"\n");
    let inline = agency(&inline).expect_err("inline");
    assert!(inline.contains("never inline"), "{inline}");
    assert!(!inline.contains("platform-key\""), "{inline}");
    let unused = format!("{GOOD}\n[auth.signing_key]\nfile = \"secrets/pay.key\"\n");
    let file = scratch.write("bank-a.toml", &unused);
    let config = parse_agency(&file, &unused).expect("parses");
    let unused = Agency::new(config, &dialects).expect_err("no use");
    assert!(unused.contains("has no use"), "{unused}");
}
