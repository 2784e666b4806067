//! An onboarding engineer connects a bank that speaks a message format the
//! gateway has never seen, with one dialect file and one agency file, and a
//! reload: no Rust change, no restart.

use adapters::agency::AgencyConfig;
use e2e_tests::*;
use mock_agencies::{MockConfig, MockFleet, fixtures};
use reqwest::StatusCode;

#[tokio::test]
async fn a_bank_speaking_a_fourth_dialect_is_onboarded_by_configuration_alone() -> anyhow::Result<()>
{
    // The new bank: an ISO 20022-flavoured XML API, amounts in fen.
    let mut iso = MockConfig::standard().with_iso_bank();
    iso.agencies.retain(|a| a.id == fixtures::BANK_D);
    let bank_d = MockFleet::start(&iso, true).await?;

    // The gateway starts with the three dialects of the first release only.
    let dialects = tempfile::tempdir()?;
    for name in ["court-bank-xml", "bank-json", "registry-json"] {
        std::fs::copy(
            config_dir().join(format!("dialects/{name}.toml")),
            dialects.path().join(format!("{name}.toml")),
        )?;
    }
    let dialects_dir = dialects.path().to_owned();
    let sys = System::start_with(|config, _| config.dialects_dir = dialects_dir).await?;
    let before = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(before.body["progress"]["total"], 3);

    // The engineer adds the dialect file and the agency file ...
    std::fs::copy(
        config_dir().join("dialects/iso-bank-xml.toml"),
        dialects.path().join("iso-bank-xml.toml"),
    )?;
    let agency: AgencyConfig = toml::from_str(&format!(
        "id = \"bank-d\"\nname = \"Bank D (ISO 20022-flavoured XML)\"\nkind = \"bank\"\n\
         dialect = \"iso-bank-xml\"\nbase_url = \"{}\"\n",
        bank_d.base_url(fixtures::BANK_D).expect("bank-d runs")
    ))?;
    sys.write_agency(&agency)?;
    // ... and reloads.
    let reload = sys.reload().await?;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.body);

    let after = sys.inquire(zhang_san(), 10).await?;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    assert_eq!(
        agency_status(&after.body, "bank-d"),
        "answered",
        "{}",
        after.body
    );
    let account = assets(&after.body, "bank_account")
        .into_iter()
        .find(|a| a["agency"] == "bank-d")
        .expect("张三's account at bank-d");
    assert_eq!(
        account["account_number"],
        fixtures::ZHANG_SAN_BANK_D_ACCOUNT
    );
    assert_eq!(account["branch"], fixtures::ZHANG_SAN_BANK_D_BRANCH);
    assert_eq!(
        account["balance_fen"],
        fixtures::ZHANG_SAN_BANK_D_BALANCE_FEN
    );
    assert_eq!(
        account["available_fen"],
        fixtures::ZHANG_SAN_BANK_D_AVAILABLE_FEN
    );
    assert_eq!(account["account_type"], fixtures::ZHANG_SAN_BANK_D_TYPE);

    // The unknown person is unknown there too.
    let nobody = sys.inquire(nobody(), 10).await?;
    assert_eq!(agency_status(&nobody.body, "bank-d"), "no_record");
    bank_d.shutdown().await;
    Ok(())
}
