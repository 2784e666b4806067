//! The dialect files of `config/dialects` against their conformance packs in
//! `config/conformance`, and the checks a broken dialect file must fail.

use std::path::PathBuf;

use adapters::catalog::DialectSet;
use adapters::conformance::load_cases;
use adapters::engine::CompiledDialect;

fn config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

#[test]
fn every_conformance_pack_passes() {
    let dialects = DialectSet::load(&config().join("dialects")).unwrap_or_else(|e| panic!("{e}"));
    let cases = load_cases(&config().join("conformance"), None).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for case in &cases {
        let result = case.run(&dialects);
        if !result.passed() {
            failures.push(format!(
                "{}/{}: {}\n  expected {}\n  actual   {}",
                result.dialect,
                result.name,
                result.problems.join("; "),
                result.expected,
                result.actual
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every dialect ships a pack.
    for name in dialects.names() {
        assert!(
            cases.iter().any(|c| c.dialect == name),
            "dialect {name} has no conformance pack"
        );
    }
    assert!(cases.len() >= 12);
}

fn court_bank_xml() -> String {
    std::fs::read_to_string(config().join("dialects/court-bank-xml.toml"))
        .expect("the dialect file")
}

#[test]
fn a_field_the_model_lacks_is_an_error_naming_it_and_its_line() {
    let text =
        court_bank_xml().replace("fields.branch = \"KHWD\"", "fields.branch_name = \"KHWD\"");
    let errors = CompiledDialect::from_toml(&text).expect_err("branch_name is not a model field");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("branch_name") && e.contains("no field")),
        "{errors:?}"
    );

    let dir = tempfile_dir("dialect-line");
    std::fs::write(dir.join("court-bank-xml.toml"), &text).expect("write");
    let shown = DialectSet::load(&dir).expect_err("refused").to_string();
    let line = text
        .lines()
        .position(|l| l.contains("branch_name"))
        .expect("line")
        + 1;
    assert!(shown.contains(&format!("line {line}")), "{shown}");
}

#[test]
fn every_mistake_of_a_dialect_file_is_reported() {
    let text = court_bank_xml()
        .replace(
            "convert = \"yuan\" }\nfields.available_fen",
            "convert = \"date:%Y\" }\nfields.available_fen",
        )
        .replace("codes = \"inquiry_result\"", "codes = \"results\"")
        .replace("{{ item.subject.name }}", "{{ item.subject.surname }}");
    let errors = CompiledDialect::from_toml(&text).expect_err("three mistakes");
    assert!(
        errors.iter().any(|e| e.contains("balance_fen")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("\"results\"")),
        "{errors:?}"
    );
    // The template is only rendered once the rest compiles; fix the others
    // and the template's unknown value is reported.
    let only_template =
        court_bank_xml().replace("{{ item.subject.name }}", "{{ item.subject.surname }}");
    let errors = CompiledDialect::from_toml(&only_template).expect_err("undefined value");
    assert!(
        errors.iter().any(|e| e.contains("inquiry.request.body")),
        "{errors:?}"
    );

    let unknown_key =
        court_bank_xml().replace("format = \"xml\"", "format = \"xml\"\ncolour = \"red\"");
    let errors = CompiledDialect::from_toml(&unknown_key).expect_err("unknown key");
    assert!(
        errors[0].contains("colour") && errors[0].contains("line"),
        "{errors:?}"
    );
}

#[test]
fn required_model_fields_must_be_mapped() {
    let text = court_bank_xml().replace("fields.account_number = \"KHZH\"\n", "");
    let errors = CompiledDialect::from_toml(&text).expect_err("account_number unmapped");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("account_number") && e.contains("required")),
        "{errors:?}"
    );
}

#[test]
fn subject_names_cannot_break_the_message() {
    use adapters::dialect::{Dialect, Envelope};
    use adapters::engine::DeclaredDialect;
    use adapters::model::Court;

    for file in ["court-bank-xml", "bank-json"] {
        let text =
            std::fs::read_to_string(config().join(format!("dialects/{file}.toml"))).expect("file");
        let compiled = std::sync::Arc::new(CompiledDialect::from_toml(&text).expect("compiles"));
        let dialect = DeclaredDialect::new(compiled, None, None).expect("instance");
        let nasty = "张三</XM><ZJH>0</ZJH>\"},\"x\":\"&amp;";
        let request = person_request(nasty);
        let envelope = Envelope {
            court: Court {
                code: "甘0503".into(),
                name: "x".into(),
            },
            batch_number: "P1".into(),
            callback_url: None,
        };
        let wire = dialect
            .inquiry_request(&envelope, &[request])
            .expect("renders");
        let body = String::from_utf8(wire.body.to_vec()).expect("utf-8");
        if file == "bank-json" {
            let v: serde_json::Value = serde_json::from_str(&body).expect("still JSON");
            assert_eq!(v["subject"]["name"], nasty);
        } else {
            let tree = adapters::xml::parse_tree(
                &adapters::xml::decode_document(body.as_bytes()).expect("decode"),
            )
            .expect("still XML");
            let item = tree.at(&["CXQQLIST", "CXQQXX"]).expect("item");
            assert_eq!(item.text_of("XM"), Some(nasty));
            assert_eq!(item.text_of("ZJH"), Some("360426199101010071"));
        }
    }
}

/// Bodies are not parsed when they are sent: the rehearsal must find a
/// template that makes a malformed body on any branch a request can take.
#[test]
fn a_body_malformed_on_one_branch_is_refused_when_the_dialect_loads() {
    let refused = |text: &str, what: &str| {
        let errors = CompiledDialect::from_toml(text).expect_err(what);
        assert!(
            errors.iter().any(|e| e.contains("does not render to")),
            "{what}: {errors:?}"
        );
    };
    // Only an organisation's message loses its closing tag.
    refused(
        &court_bank_xml().replace(
            "<XM>{{ item.subject.name }}</XM>",
            "<XM>{{ item.subject.name }}{% if item.subject.kind == \"person\" %}</XM>{% endif %}",
        ),
        "organisations",
    );
    // Only a measure without a prior request number does.
    refused(
        &court_bank_xml().replace(
            "<YKZQQDH>{{ item.prior_request_number or \"\" }}</YKZQQDH>",
            "<YKZQQDH>{% if item.prior_request_number %}{{ item.prior_request_number }}</YKZQQDH>{% endif %}",
        ),
        "a first measure",
    );
    // Only a batch of several subjects breaks the JSON.
    let json = std::fs::read_to_string(config().join("dialects/bank-json.toml")).expect("file");
    refused(
        &json
            .replace(
                "\"officers\": {{ item.officers }}",
                "\"officers\": {{ item.officers }}{% if items | length > 1 %},{% endif %}",
            )
            .replace("max_batch = 1", "max_batch = 5"),
        "a batch",
    );
}

/// `safe` would let a value into the message unescaped.
#[test]
fn a_template_may_not_mark_a_value_safe() {
    let text = court_bank_xml().replace(
        "<XM>{{ item.subject.name }}</XM>",
        "<XM>{{ item.subject.name | safe }}</XM>",
    );
    let errors = CompiledDialect::from_toml(&text).expect_err("safe is refused");
    assert!(
        errors.iter().any(|e| e.contains("safe filter")),
        "{errors:?}"
    );
}

fn tempfile_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn control_measures_are_carried_only_by_dialects_that_declare_them() {
    use adapters::control::ControlAction;
    use adapters::dialect::Dialect;
    use adapters::engine::DeclaredDialect;

    let load = |name: &str| {
        let text =
            std::fs::read_to_string(config().join(format!("dialects/{name}.toml"))).expect("file");
        let compiled = std::sync::Arc::new(CompiledDialect::from_toml(&text).expect("compiles"));
        DeclaredDialect::new(compiled, None, None).expect("instance")
    };
    let bank = load("court-bank-xml");
    assert!(bank.supports(ControlAction::Freeze) && bank.supports(ControlAction::Deduct));
    assert!(!bank.supports(ControlAction::Seal));
    assert!(load("bank-json").supports(ControlAction::Freeze));
    assert!(!load("iso-bank-xml").supports(ControlAction::Freeze));
    assert!(!load("registry-json").supports(ControlAction::Freeze));
    assert!(bank.can_query_control() && !load("iso-bank-xml").can_query_control());

    // A control template naming something a measure lacks fails at load time.
    let broken =
        court_bank_xml().replace("{{ item.amount_fen | yuan }}", "{{ item.amount | yuan }}");
    let errors = CompiledDialect::from_toml(&broken).expect_err("item.amount is undefined");
    assert!(errors.iter().any(|e| e.contains("control")), "{errors:?}");
    // An outcome table for control answers may only say what a control answer can be.
    let broken = court_bank_xml().replace("\"2\" = \"refused\"", "\"2\" = \"no_record\"");
    let errors =
        CompiledDialect::from_toml(&broken).expect_err("no_record is not a control outcome");
    assert!(errors.iter().any(|e| e.contains("no_record")), "{errors:?}");
}

/// A freeze of 5,000.00 on 李四's account at a bank, with its two documents.
fn sample_freeze(request_number: &str) -> adapters::control::ControlRequest {
    use adapters::control::{ControlAction, ControlRequest, DocumentRef};
    use adapters::ids::{CaseNumber, IdNumber};
    use adapters::model::{Fen, Officer, Subject};

    let officer = |n: u32| Officer {
        name: format!("执行员{n}"),
        work_card_no: format!("G62050300{n}"),
        credential_no: format!("ZX62050300{n}"),
    };
    ControlRequest {
        request_number: request_number.into(),
        case_number: CaseNumber::parse("(2024)甘0503执1234号").expect("case"),
        subject: Subject::Person {
            name: "李四".into(),
            id_number: IdNumber::parse("62050319850615003X").expect("id"),
        },
        officers: vec![officer(1), officer(2)],
        action: ControlAction::Freeze,
        asset: adapters::control::AssetRef::BankAccount {
            account_number: "6222020200155550002".into(),
        },
        quantity: None,
        amount_fen: Some(Fen(500_000)),
        start_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 27),
        end_date: chrono::NaiveDate::from_ymd_opt(2027, 11, 26),
        prior_request_number: None,
        documents: vec![
            DocumentRef {
                kind: "ruling".into(),
                number: "(2024)甘0503执1234号之一".into(),
                sha256: "ab".repeat(32),
            },
            DocumentRef {
                kind: "assist_notice".into(),
                number: "协冻-1".into(),
                sha256: "cd".repeat(32),
            },
        ],
    }
}

/// A one-subject inquiry (request number `Q1`) about a person named `name`.
fn person_request(name: &str) -> adapters::dialect::InquiryRequest {
    use adapters::ids::{CaseNumber, IdNumber};
    use adapters::model::{Officer, Subject};
    adapters::dialect::InquiryRequest {
        request_number: "Q1".into(),
        case_number: CaseNumber::parse("(2024)甘0503执1234号").expect("case"),
        subject: Subject::Person {
            name: name.into(),
            id_number: IdNumber::parse("360426199101010071").expect("id"),
        },
        officers: vec![Officer {
            name: "李明".into(),
            work_card_no: "G1".into(),
            credential_no: "ZX1".into(),
        }],
    }
}

fn declared(text: &str) -> adapters::engine::DeclaredDialect {
    let compiled = std::sync::Arc::new(CompiledDialect::from_toml(text).expect("compiles"));
    adapters::engine::DeclaredDialect::new(compiled, None, None).expect("instance")
}

#[test]
fn control_answers_carry_the_documents_the_agency_acknowledges() {
    use adapters::control::{ControlStatus, DocumentAck};
    use adapters::dialect::{Dialect, ReplyError, WireReply};

    let bank = declared(&court_bank_xml());
    let request = sample_freeze("K1-bank-a");
    let kzfk = |acks: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><KZFK><KZQQDH>K1-bank-a</KZQQDH>\
             <KZZT>1</KZZT><SKJE>5000.00</SKJE><CESKJE>0.00</CESKJE><WNKZYY/>\
             <KSRQ>20261127</KSRQ><JSRQ>20271126</JSRQ><LHXH>0</LHXH><KZBH>KZ1</KZBH>{acks}</KZFK>"
        )
    };
    fn reply(body: &str) -> WireReply<'_> {
        WireReply {
            status: 200,
            content_type: None,
            body: body.as_bytes(),
        }
    }
    let acks = format!(
        "<WSQRLIST><WSQR><WSBH>(2024)甘0503执1234号之一</WSBH><WSHASH>{}</WSHASH></WSQR>\
         <WSQR><WSBH>协冻-1</WSBH><WSHASH> {} </WSHASH></WSQR></WSQRLIST>",
        "ab".repeat(32),
        "EF".repeat(32)
    );
    let expected = vec![
        DocumentAck {
            number: "(2024)甘0503执1234号之一".into(),
            sha256: "ab".repeat(32),
        },
        // In the bank's order, trimmed, in lower case: compared with the
        // order's digest, it shows the bank holds another file.
        DocumentAck {
            number: "协冻-1".into(),
            sha256: "ef".repeat(32),
        },
    ];
    let body = kzfk(&acks);
    let answer = bank.control_reply(&request, reply(&body)).expect("reads");
    assert_eq!(answer.status, ControlStatus::Applied);
    assert_eq!(answer.acknowledged_documents, expected);
    // The status query reads them alike.
    let status = bank
        .control_poll_reply(&request, reply(&body))
        .expect("reads");
    assert_eq!(status.acknowledged_documents, expected);

    // No acknowledgement, or an empty list: none, and none in the JSON.
    for body in [kzfk(""), kzfk("<WSQRLIST/>")] {
        let answer = bank.control_reply(&request, reply(&body)).expect("reads");
        assert!(answer.acknowledged_documents.is_empty());
        let json = serde_json::to_value(&answer).expect("json");
        assert!(json.get("acknowledged_documents").is_none(), "{json}");
    }

    // An acknowledgement without its digest is an unreadable answer, as a
    // required field missing anywhere else.
    let body = kzfk("<WSQRLIST><WSQR><WSBH>协冻-1</WSBH><WSHASH/></WSQR></WSQRLIST>");
    match bank.control_reply(&request, reply(&body)) {
        Err(ReplyError::Malformed(why)) => assert!(why.contains("sha256"), "{why}"),
        other => panic!("expected a bad reply, got {other:?}"),
    }

    // A dialect that declares no acknowledgements reads none, whatever the
    // agency writes.
    let silent = court_bank_xml().replace(
        "[control.reply.documents]\nrecords = \"WSQRLIST/WSQR\"\nfields.number = \"WSBH\"\nfields.sha256 = \"WSHASH\"\n",
        "",
    );
    assert_ne!(silent, court_bank_xml(), "the section is there to remove");
    let answer = declared(&silent)
        .control_reply(&request, reply(&kzfk(&acks)))
        .expect("reads");
    assert!(answer.acknowledged_documents.is_empty());
}

#[test]
fn document_acknowledgements_are_checked_when_the_dialect_is_loaded() {
    let section = "[control.reply.documents]\nrecords = \"WSQRLIST/WSQR\"\nfields.number = \"WSBH\"\nfields.sha256 = \"WSHASH\"\n";
    assert!(court_bank_xml().contains(section));
    let with = |replacement: &str| court_bank_xml().replace(section, replacement);

    // A field the acknowledgement lacks, named with its key path.
    let errors = CompiledDialect::from_toml(&with(
        "[control.reply.documents]\nrecords = \"WSQRLIST/WSQR\"\nfields.number = \"WSBH\"\nfields.sha256 = \"WSHASH\"\nfields.digest = \"HASH\"\n",
    ))
    .expect_err("digest is not a field");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("control.reply.documents.fields.digest") && e.contains("no field")),
        "{errors:?}"
    );

    // Both fields are required.
    let errors = CompiledDialect::from_toml(&with(
        "[control.reply.documents]\nrecords = \"WSQRLIST/WSQR\"\nfields.number = \"WSBH\"\n",
    ))
    .expect_err("sha256 unmapped");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("control.reply.documents.fields")
                && e.contains("\"sha256\"")
                && e.contains("required")),
        "{errors:?}"
    );

    // Text only; a conversion that does not fit is an error.
    let errors = CompiledDialect::from_toml(&with(
        "[control.reply.documents]\nrecords = \"WSQRLIST/WSQR\"\nfields.number = { path = \"WSBH\", convert = \"yuan\" }\nfields.sha256 = \"WSHASH\"\n",
    ))
    .expect_err("a number is text");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("control.reply.documents.fields.number")),
        "{errors:?}"
    );

    // A bad records path, and an unknown key in the section.
    let errors = CompiledDialect::from_toml(&with(
        "[control.reply.documents]\nrecords = \"WSQRLIST//WSQR\"\nfields.number = \"WSBH\"\nfields.sha256 = \"WSHASH\"\n",
    ))
    .expect_err("empty segment");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("control.reply.documents.records")),
        "{errors:?}"
    );
    let errors = CompiledDialect::from_toml(&with(
        "[control.reply.documents]\nrecords = \"WSQRLIST/WSQR\"\nfields.number = \"WSBH\"\nfields.sha256 = \"WSHASH\"\nowners = \"QLR\"\n",
    ))
    .expect_err("unknown key");
    assert!(
        errors[0].contains("owners") || errors[0].contains("unknown"),
        "{errors:?}"
    );

    // The status query's section is checked the same way.
    let poll_section = "[control.poll.reply.documents]\nrecords = \"WSQRLIST/WSQR\"\nfields.number = \"WSBH\"\nfields.sha256 = \"WSHASH\"\n";
    assert!(court_bank_xml().contains(poll_section));
    let errors = CompiledDialect::from_toml(&court_bank_xml().replace(
        poll_section,
        "[control.poll.reply.documents]\nrecords = \"WSQRLIST/WSQR\"\nfields.sha256 = \"WSHASH\"\n",
    ))
    .expect_err("number unmapped");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("control.poll.reply.documents.fields") && e.contains("\"number\"")),
        "{errors:?}"
    );
}

/// Every kind of asset can be mapped by a dialect file into its typed
/// record: the answer merges all kinds, each with its own fields.
#[test]
fn a_dialect_maps_every_kind_of_asset_into_its_typed_record() {
    use adapters::dialect::{Dialect, WireReply};
    use adapters::model::{
        Asset, AssetKind, EquityHolding, Fen, InquiryOutcome, PaymentAccount, ProvidentFundAccount,
        SecuritiesHolding, StandingMeasure, Vehicle,
    };

    let dialect = declared(
        r#"
name = "all-kinds"
format = "json"
interaction = "synchronous"
max_batch = 1

[codes.outcome]
"0" = "answered"
"1" = "no_record"

[codes.vehicle_state]
A = "normal"
K = "sealed"
"*" = "other"

[inquiry.request]
method = "POST"
path = "/q"
body = """{"no": {{ item.request_number }}}"""

[inquiry.reply]
items = ""
request_number = "/no"
outcome = [{ path = "/code", codes = "outcome" }]

[[inquiry.reply.assets]]
kind = "vehicle"
records = "/vehicles"
fields.vin = "/vin"
fields.plate_number = "/plate"
fields.plate_type = "/plate_type"
fields.make_model = "/make"
fields.first_registered = { path = "/registered", convert = "date:%Y-%m-%d" }
fields.state = { path = "/state", codes = "vehicle_state" }
fields.mortgaged = { path = "/mortgaged", convert = "bool" }

[inquiry.reply.assets.measures]
records = "/seals"
fields.authority = "/by"
fields.document_number = "/doc"
fields.end_date = { path = "/until", convert = "date:%Y-%m-%d" }
fields.waiting = { path = "/waiting", convert = "bool" }

[[inquiry.reply.assets]]
kind = "securities"
records = "/holdings"
fields.securities_account = "/account"
fields.market = "/market"
fields.security_code = "/code"
fields.security_name = "/name"
fields.quantity = { path = "/qty", convert = "integer" }
fields.available_quantity = { path = "/free", convert = "integer" }
fields.custodian = "/custodian"

[inquiry.reply.assets.measures]
records = "/frozen"
fields.authority = "/by"
fields.document_number = "/doc"
fields.quantity = { path = "/qty", convert = "integer" }
fields.waiting = { path = "/waiting", convert = "bool" }

[[inquiry.reply.assets]]
kind = "payment_account"
records = "/payments"
fields.payment_account = "/id"
fields.holder = "/holder"
fields.balance_fen = { path = "/balance_fen", convert = "fen" }
fields.fund_balance_fen = { path = "/fund_fen", convert = "fen" }

[[inquiry.reply.assets]]
kind = "provident_fund"
records = "/funds"
fields.fund_account = "/account"
fields.balance_fen = { path = "/balance", convert = "yuan" }
fields.available_fen = { path = "/available", convert = "yuan" }
fields.state = "/state"
fields.withdrawable = { path = "/withdrawable", convert = "bool" }

[[inquiry.reply.assets]]
kind = "equity"
records = "/equity"
fields.company_name = "/company"
fields.company_credit_code = "/code"
fields.subscribed_capital_fen = { path = "/subscribed", convert = "yuan" }
fields.paid_in_capital_fen = { path = "/paid_in", convert = "yuan" }
fields.share_ratio = "/ratio"
"#,
    );
    let request = person_request("张三");
    let body = r#"{"no": "Q1", "code": "0",
        "vehicles": [{"vin": "LSVAU2A37N2123456", "plate": "甘E·A1234", "plate_type": "02",
                      "make": "大众", "registered": "2021-05-10", "state": "K", "mortgaged": "false",
                      "seals": [{"by": "兰州市中级人民法院", "doc": "(2025)甘01执9号",
                                 "until": "2027-01-31", "waiting": "false"}]}],
        "holdings": [{"account": "A123456789", "market": "SH", "code": "600000", "name": "浦发银行",
                      "qty": "12000", "free": "10000", "custodian": "12345",
                      "frozen": [{"by": "(2023)甘0502执88号", "doc": "(2023)甘0502执88号",
                                  "qty": "2000", "waiting": "false"}]}],
        "payments": [{"id": "2088000012341234", "holder": "张三", "balance_fen": "356000",
                      "fund_fen": "120000"}],
        "funds": [{"account": "GJJ-620503-001", "balance": "48200.50", "available": "48200.50",
                   "state": "contributing", "withdrawable": "false"}],
        "equity": [{"company": "天水某某商贸有限公司", "code": "91620500MA7XXXXX1K",
                    "subscribed": "3500000.00", "paid_in": "1000000.00", "ratio": "35.00%"}]}"#;
    let outcomes = dialect
        .inquiry_reply(
            std::slice::from_ref(&request),
            WireReply {
                status: 200,
                content_type: None,
                body: body.as_bytes(),
            },
        )
        .expect("reads");
    let Ok(InquiryOutcome::Answered { assets }) = &outcomes[0].outcome else {
        panic!("not answered: {:?}", outcomes[0].outcome);
    };
    let measure = |authority: &str, document: &str| StandingMeasure {
        authority: authority.into(),
        document_number: document.into(),
        amount_fen: None,
        start_date: None,
        end_date: None,
        waiting: false,
        queue_position: None,
        quantity: None,
    };
    let expected = vec![
        Asset::Vehicle(Vehicle {
            vin: "LSVAU2A37N2123456".into(),
            plate_number: "甘E·A1234".into(),
            plate_type: "02".into(),
            make_model: "大众".into(),
            first_registered: chrono::NaiveDate::from_ymd_opt(2021, 5, 10),
            state: "sealed".into(),
            mortgaged: false,
            measures: vec![StandingMeasure {
                end_date: chrono::NaiveDate::from_ymd_opt(2027, 1, 31),
                ..measure("兰州市中级人民法院", "(2025)甘01执9号")
            }],
        }),
        Asset::Securities(SecuritiesHolding {
            securities_account: "A123456789".into(),
            market: "SH".into(),
            security_code: "600000".into(),
            security_name: "浦发银行".into(),
            quantity: 12_000,
            available_quantity: Some(10_000),
            custodian: "12345".into(),
            measures: vec![StandingMeasure {
                quantity: Some(2_000),
                ..measure("(2023)甘0502执88号", "(2023)甘0502执88号")
            }],
        }),
        Asset::PaymentAccount(PaymentAccount {
            payment_account: "2088000012341234".into(),
            holder: "张三".into(),
            balance_fen: Fen(356_000),
            available_fen: None,
            fund_balance_fen: Some(Fen(120_000)),
            measures: vec![],
        }),
        Asset::ProvidentFund(ProvidentFundAccount {
            fund_account: "GJJ-620503-001".into(),
            balance_fen: Fen(4_820_050),
            available_fen: Some(Fen(4_820_050)),
            state: "contributing".into(),
            withdrawable: false,
            measures: vec![],
        }),
        Asset::Equity(EquityHolding {
            company_name: "天水某某商贸有限公司".into(),
            company_credit_code: "91620500MA7XXXXX1K".into(),
            subscribed_capital_fen: Fen(350_000_000),
            paid_in_capital_fen: Some(Fen(100_000_000)),
            share_ratio: "35.00%".into(),
            measures: vec![],
        }),
    ];
    assert_eq!(assets, &expected);
    let kinds: Vec<AssetKind> = assets.iter().map(Asset::kind).collect();
    assert_eq!(kinds, AssetKind::ALL[2..].to_vec());
    // The API's form: each tagged with its kind, in the contract's names.
    let json = serde_json::to_value(assets).expect("json");
    let tags: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert_eq!(
        tags,
        [
            "vehicle",
            "securities",
            "payment_account",
            "provident_fund",
            "equity"
        ]
    );

    // A required field of a new kind left unmapped is an error naming it.
    let text = std::fs::read_to_string(config().join("dialects/bank-json.toml")).expect("file");
    let broken = text.replace("kind = \"bank_account\"", "kind = \"securities\"");
    let err = CompiledDialect::from_toml(&broken)
        .expect_err("refused")
        .join("\n");
    assert!(
        err.contains("the required field \"securities_account\" of a securities is not mapped"),
        "{err}"
    );
    let unknown = text.replace("kind = \"bank_account\"", "kind = \"yacht\"");
    let err = CompiledDialect::from_toml(&unknown)
        .expect_err("refused")
        .join("\n");
    assert!(err.contains("\"yacht\" is not a kind of asset"), "{err}");
}

/// A dialect may send further headers of its own, fixed text; never the
/// ones the gateway sets, nor credentials (the agency file's), nor what is
/// not a header. Each mistake is named.
#[test]
fn a_dialects_own_headers_are_checked_when_it_loads() {
    let text = std::fs::read_to_string(config().join("dialects/vehicle-soap.toml")).expect("file");
    declared(&text);
    let with = |headers: &str| {
        text.replace(
            "headers = { SOAPAction = \"\\\"urn:example:vehicle:1#QueryVehicles\\\"\" }",
            &format!("headers = {headers}"),
        )
    };
    assert_ne!(with("{}"), text, "the headers line is there to replace");
    for (headers, named) in [
        ("{ Authorization = \"Bearer x\" }", "headers.Authorization"),
        ("{ content-type = \"text/plain\" }", "headers.content-type"),
        ("{ \"bad name\" = \"x\" }", "headers.bad name"),
        ("{ X-Version = \"1\\n2\" }", "headers.X-Version"),
    ] {
        let errors = CompiledDialect::from_toml(&with(headers))
            .expect_err(headers)
            .join("\n");
        assert!(errors.contains(named), "{headers}: {errors}");
    }
    CompiledDialect::from_toml(&with("{ X-Api-Version = \"2024-01\" }")).expect("a plain header");
    // A flag conversion needs its letters.
    let flagless = text.replace("convert = \"flag:M\"", "convert = \"flag:\"");
    let errors = CompiledDialect::from_toml(&flagless)
        .expect_err("refused")
        .join("\n");
    assert!(errors.contains("needs the letters"), "{errors}");
}
