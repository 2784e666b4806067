//! The shipped configuration file and how the fleet starts from it.

use std::path::Path;

use mock_agencies::{MockConfig, MockDialect, MockFleet, fixtures};

fn shipped() -> MockConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/mock-agencies.toml");
    MockConfig::load(&path).expect("config/mock-agencies.toml loads")
}

#[test]
fn the_shipped_file_is_the_standard_fleet_on_fixed_ports() {
    let mut file = shipped();
    let ports: Vec<u16> = file
        .agencies
        .iter()
        .map(|a| a.listen.expect("a listen address").port())
        .collect();
    assert_eq!(
        ports,
        [18101, 18102, 18103, 18104, 18105, 18106, 18107, 18108]
    );
    for a in &mut file.agencies {
        a.listen = None;
    }
    // The payment platform's key: the gateway's agency file's, beside it.
    let key_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/agencies/secrets/payment-p-signing-key");
    assert_eq!(
        file,
        MockConfig::standard().with_further_kinds(key_file.clone())
    );
    let payment = file
        .agencies
        .iter()
        .find(|a| a.id == fixtures::PAYMENT_P)
        .expect("payment-p");
    assert!(payment.signing_key().is_ok_and(|k| k.is_some()));
}

#[test]
fn mistakes_in_a_config_are_all_reported() {
    let text = r#"
        seed = 1
        population = 10
        [[agencies]]
        id = "bank-a"
        dialect = "bank-json"
        encoding = "EBCDIC-nonsense"
        [[agencies]]
        id = "bank-a"
        dialect = "registry-json"
    "#;
    let config: MockConfig = toml::from_str(text).expect("parses");
    let error = config.validate().expect_err("invalid").to_string();
    assert!(error.contains("only for court-bank-xml"), "{error}");
    assert!(error.contains("unknown or not ASCII-compatible"), "{error}");
    assert!(error.contains("appears twice"), "{error}");
    assert!(toml::from_str::<MockConfig>("agencies = []\nsurprise = 1").is_err());
    assert_eq!(
        toml::from_str::<MockConfig>("[[agencies]]\nid = \"r\"\ndialect = \"registry-json\"\n")
            .expect("defaults apply")
            .agencies[0]
            .result_delay_ms,
        300
    );
}

#[tokio::test]
async fn fixed_addresses_are_required_unless_ephemeral() {
    let error = MockFleet::start(&MockConfig::standard(), false)
        .await
        .expect_err("no listen addresses");
    assert!(error.to_string().contains("bank-a"), "{error}");

    let fleet = MockFleet::start(&MockConfig::standard(), true)
        .await
        .expect("ephemeral ports");
    let agencies = fleet.agencies();
    assert_eq!(agencies.len(), 3);
    for (id, addr) in &agencies {
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        assert_eq!(
            fleet.base_url(id),
            Some(format!("http://127.0.0.1:{}", addr.port()))
        );
    }
    assert_eq!(fleet.base_url("nobody"), None);
    assert_eq!(
        MockConfig::standard().agencies[0].dialect,
        MockDialect::CourtBankXml
    );
    assert_eq!(MockConfig::standard().agencies[0].id, fixtures::BANK_A);
    fleet.shutdown().await;
}

#[test]
fn a_payment_platform_needs_its_key_file_and_no_other_agency_takes_one() {
    let text = r#"
        [[agencies]]
        id = "payment-p"
        dialect = "payment-json"
        [[agencies]]
        id = "bank-b"
        dialect = "bank-json"
        signing_key_file = "secrets/key"
        callback_token = "t"
        [[agencies]]
        id = "market-m"
        dialect = "market-gbk-xml"
        encoding = "GB18030"
    "#;
    let config: MockConfig = toml::from_str(text).expect("parses");
    let error = config.validate().expect_err("invalid").to_string();
    assert!(
        error.contains("payment-p: payment-json signs its messages"),
        "{error}"
    );
    assert!(
        error.contains("bank-b: signing_key_file is only for payment-json"),
        "{error}"
    );
    assert!(
        error.contains("bank-b: callback_token is only for"),
        "{error}"
    );
    assert!(
        !error.contains("market-m"),
        "a market registry takes an encoding: {error}"
    );
}
