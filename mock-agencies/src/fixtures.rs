//! Named subjects whose holdings are fixed, whatever the seed or size of the
//! population: the gateway's demo and the end-to-end tests assert against
//! these constants. Holdings are filed by agency id (`bank-a`, `bank-b`,
//! `bank-d`, `registry-x`, the bank fleet's `fleet-0042`, and the further
//! kinds' `vehicle-v`, `securities-s`, `payment-p`, `fund-f`, `market-m`):
//! an agency with another id holds none of them.
//!
//! - 张三: two accounts at bank-a, one at bank-b, one at bank-d, one at the
//!   bank fleet's fleet-0042, one sealed and mortgaged flat at registry-x
//!   (and the further kinds' holdings below);
//!   no measures on the accounts.
//! - 示例有限公司: two accounts at bank-a, and equity at market-m.
//! - 王五: known to no agency.
//! - 李四 (`62050319850615003X`, a valid GB 11643 number; for control
//!   measures): at bank-a a savings account of 30,000.00
//!   with 10,000.00 frozen by 秦州区人民法院 (20,000.00 available) and a
//!   debit card of 8,000.00 wholly frozen by 甘谷县人民法院 (nothing
//!   available: a new freeze there waits in line); at bank-b a savings
//!   account of 40,000.00, nothing frozen; at registry-x a flat he owns
//!   alone, not mortgaged, not sealed.
//!
//! - 赵六 (`620503197903150039`; for control measures on the further
//!   kinds): no bank account, no flat; his holdings of the further kinds
//!   are in [`further_kinds`] (shares wholly frozen by another court, a
//!   provident fund account eligible for withdrawal, free equity).
//!
//! The standing measures and seals of other authorities never lapse with
//! the clock (the fixtures must not age); they leave only when that
//! authority lifts them (`POST /_mock/lift`).
//!
//! Their holdings of the further kinds of asset (a car, shares, payment and
//! provident fund accounts, equity) are in [`further_kinds`], re-exported
//! here.

use chrono::NaiveDate;

pub mod further_kinds;
pub use further_kinds::*;

use crate::bank_book::{Account, AccountKind, AccountState, Measure};
use crate::registry_book::{Owner, Seal, Unit};

pub const BANK_A: &str = "bank-a";
pub const BANK_B: &str = "bank-b";
pub const REGISTRY_X: &str = "registry-x";
/// The `iso-bank-xml` bank ([`crate::MockConfig::with_iso_bank`]).
pub const BANK_D: &str = "bank-d";
/// The bank of a [`crate::MockBankFleet`] where 张三 holds an account. Its
/// number, 42, makes it a `court-bank-xml` bank answering in UTF-8
/// ([`crate::fleet_plan::fleet_dialect`]). A fleet of fewer than 42 banks
/// has no such bank, nor has one of over 9,999 (its ids have more digits):
/// there 张三 holds no fleet account.
pub const FLEET_ZHANG_SAN_BANK: &str = "fleet-0042";

const fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(y, m, d) {
        Some(d) => d,
        None => panic!("invalid fixture date"),
    }
}

/// The day generated measures and seals are dated around (not the clock,
/// so a seed gives the same population on every day).
pub const REFERENCE_DATE: NaiveDate = date(2026, 11, 27);

// 张三 -------------------------------------------------------------------
pub const ZHANG_SAN_NAME: &str = "张三";
pub const ZHANG_SAN_ID: &str = "360426199101010071";

pub const ZHANG_SAN_BANK_A_DEBIT_ACCOUNT: &str = "6222020200112233445";
pub const ZHANG_SAN_BANK_A_DEBIT_TYPE: &str = "借记卡";
pub const ZHANG_SAN_BANK_A_DEBIT_BRANCH: &str = "中国工商银行天水麦积支行";
pub const ZHANG_SAN_BANK_A_DEBIT_BALANCE_FEN: i64 = 12_500_000;
pub const ZHANG_SAN_BANK_A_DEBIT_AVAILABLE_FEN: i64 = 12_500_000;

pub const ZHANG_SAN_BANK_A_SAVINGS_ACCOUNT: &str = "6222020200118877665";
pub const ZHANG_SAN_BANK_A_SAVINGS_TYPE: &str = "活期储蓄";
pub const ZHANG_SAN_BANK_A_SAVINGS_BRANCH: &str = "中国工商银行天水秦州支行";
pub const ZHANG_SAN_BANK_A_SAVINGS_BALANCE_FEN: i64 = 865_050;
pub const ZHANG_SAN_BANK_A_SAVINGS_AVAILABLE_FEN: i64 = 865_050;

pub const ZHANG_SAN_BANK_B_ACCOUNT: &str = "6217000010001234567";
pub const ZHANG_SAN_BANK_B_PRODUCT: &str = "SAVINGS";
pub const ZHANG_SAN_BANK_B_BRANCH: &str = "中国建设银行天水分行营业部";
pub const ZHANG_SAN_BANK_B_BALANCE_FEN: i64 = 5_600_000;
pub const ZHANG_SAN_BANK_B_AVAILABLE_FEN: i64 = 5_600_000;

/// At bank-d, written in the words of `iso-bank-xml` (`Tp Cd`).
pub const ZHANG_SAN_BANK_D_ACCOUNT: &str = "6228480000012345678";
pub const ZHANG_SAN_BANK_D_TYPE: &str = "SVGS";
pub const ZHANG_SAN_BANK_D_BRANCH: &str = "中国农业银行天水分行营业部";
pub const ZHANG_SAN_BANK_D_BALANCE_FEN: i64 = 2_000_000;
pub const ZHANG_SAN_BANK_D_AVAILABLE_FEN: i64 = 2_000_000;

/// At [`FLEET_ZHANG_SAN_BANK`], written in the words of `court-bank-xml`.
pub const FLEET_ZHANG_SAN_ACCOUNT: &str = "6228480042004200428";
pub const FLEET_ZHANG_SAN_TYPE: &str = "借记卡";
pub const FLEET_ZHANG_SAN_BRANCH: &str = "中国农业银行天水麦积支行";
pub const FLEET_ZHANG_SAN_BALANCE_FEN: i64 = 4_200_042;
pub const FLEET_ZHANG_SAN_AVAILABLE_FEN: i64 = 4_200_042;

pub const ZHANG_SAN_UNIT_NUMBER: &str = "620503001001GB00001F00010001";
pub const ZHANG_SAN_CERTIFICATE_NUMBER: &str = "甘(2019)麦积区不动产权第0001234号";
pub const ZHANG_SAN_UNIT_LOCATION: &str = "麦积区桥南伯阳路88号3单元501室";
/// As the registry writes it (`MJ`).
pub const ZHANG_SAN_UNIT_AREA: &str = "89.50";
pub const ZHANG_SAN_UNIT_AREA_CENTI_M2: i64 = 8950;
pub const ZHANG_SAN_UNIT_USE: &str = "住宅";
pub const ZHANG_SAN_UNIT_SHARE: &str = "1/1";
pub const ZHANG_SAN_UNIT_MORTGAGED: bool = true;
pub const ZHANG_SAN_SEAL_AUTHORITY: &str = "秦州区人民法院";
pub const ZHANG_SAN_SEAL_DOCUMENT: &str = "(2023)甘0502执88号";
pub const ZHANG_SAN_SEAL_START: NaiveDate = date(2024, 3, 1);
pub const ZHANG_SAN_SEAL_END: NaiveDate = date(2027, 2, 28);

// 示例有限公司 -------------------------------------------------------------
pub const SAMPLE_ORG_NAME: &str = "示例有限公司";
pub const SAMPLE_ORG_ID: &str = "91110000600037341L";

pub const SAMPLE_ORG_BASIC_ACCOUNT: &str = "2705021109200012345";
pub const SAMPLE_ORG_BASIC_TYPE: &str = "基本存款账户";
pub const SAMPLE_ORG_BASIC_BRANCH: &str = "中国工商银行天水分行营业部";
pub const SAMPLE_ORG_BASIC_BALANCE_FEN: i64 = 325_678_045;
pub const SAMPLE_ORG_BASIC_AVAILABLE_FEN: i64 = 325_678_045;

pub const SAMPLE_ORG_GENERAL_ACCOUNT: &str = "2705021109200067890";
pub const SAMPLE_ORG_GENERAL_TYPE: &str = "一般存款账户";
pub const SAMPLE_ORG_GENERAL_BRANCH: &str = "中国工商银行天水麦积支行";
pub const SAMPLE_ORG_GENERAL_BALANCE_FEN: i64 = 48_000_000;
pub const SAMPLE_ORG_GENERAL_AVAILABLE_FEN: i64 = 48_000_000;

// 王五 -------------------------------------------------------------------
pub const WANG_WU_NAME: &str = "王五";
pub const WANG_WU_ID: &str = "620503198812120015";

// 李四 -------------------------------------------------------------------
pub const LI_SI_NAME: &str = "李四";
pub const LI_SI_ID: &str = "62050319850615003X";

/// Partly frozen by another court: 20,000.00 of 30,000.00 available.
pub const LI_SI_BANK_A_SAVINGS_ACCOUNT: &str = "6222020200155550001";
pub const LI_SI_BANK_A_SAVINGS_TYPE: &str = "活期储蓄";
pub const LI_SI_BANK_A_SAVINGS_BRANCH: &str = "中国工商银行天水麦积支行";
pub const LI_SI_BANK_A_SAVINGS_BALANCE_FEN: i64 = 3_000_000;
pub const LI_SI_BANK_A_SAVINGS_AVAILABLE_FEN: i64 = 2_000_000;
pub const LI_SI_BANK_A_SAVINGS_MEASURE_AUTHORITY: &str = "秦州区人民法院";
pub const LI_SI_BANK_A_SAVINGS_MEASURE_DOCUMENT: &str = "(2023)甘0502执77号";
pub const LI_SI_BANK_A_SAVINGS_MEASURE_FEN: i64 = 1_000_000;
pub const LI_SI_BANK_A_SAVINGS_MEASURE_END: NaiveDate = date(2027, 6, 30);

/// Wholly frozen by another court: nothing available.
pub const LI_SI_BANK_A_DEBIT_ACCOUNT: &str = "6222020200155550002";
pub const LI_SI_BANK_A_DEBIT_TYPE: &str = "借记卡";
pub const LI_SI_BANK_A_DEBIT_BRANCH: &str = "中国工商银行天水秦州支行";
pub const LI_SI_BANK_A_DEBIT_BALANCE_FEN: i64 = 800_000;
pub const LI_SI_BANK_A_DEBIT_AVAILABLE_FEN: i64 = 0;
pub const LI_SI_BANK_A_DEBIT_MEASURE_AUTHORITY: &str = "甘谷县人民法院";
pub const LI_SI_BANK_A_DEBIT_MEASURE_DOCUMENT: &str = "(2024)甘0523执15号";
pub const LI_SI_BANK_A_DEBIT_MEASURE_FEN: i64 = 800_000;
pub const LI_SI_BANK_A_DEBIT_MEASURE_END: NaiveDate = date(2027, 3, 31);

pub const LI_SI_BANK_B_ACCOUNT: &str = "6217000010005550003";
pub const LI_SI_BANK_B_PRODUCT: &str = "SAVINGS";
pub const LI_SI_BANK_B_BRANCH: &str = "中国建设银行天水分行营业部";
pub const LI_SI_BANK_B_BALANCE_FEN: i64 = 4_000_000;
pub const LI_SI_BANK_B_AVAILABLE_FEN: i64 = 4_000_000;

pub const LI_SI_UNIT_NUMBER: &str = "620503001002GB00002F00020002";
pub const LI_SI_CERTIFICATE_NUMBER: &str = "甘(2021)麦积区不动产权第0005678号";
pub const LI_SI_UNIT_LOCATION: &str = "麦积区马跑泉镇东方红路12号2单元302室";
/// As the registry writes it (`MJ`).
pub const LI_SI_UNIT_AREA: &str = "102.30";
pub const LI_SI_UNIT_AREA_CENTI_M2: i64 = 10_230;
pub const LI_SI_UNIT_USE: &str = "住宅";
pub const LI_SI_UNIT_SHARE: &str = "1/1";
pub const LI_SI_UNIT_MORTGAGED: bool = false;

// 赵六 -------------------------------------------------------------------
pub const ZHAO_LIU_NAME: &str = "赵六";
/// A valid GB 11643 number.
pub const ZHAO_LIU_ID: &str = "620503197903150039";

/// Identifiers the generated population must never use.
pub const ALL_SUBJECT_IDS: [&str; 5] = [
    ZHANG_SAN_ID,
    SAMPLE_ORG_ID,
    WANG_WU_ID,
    LI_SI_ID,
    ZHAO_LIU_ID,
];

/// Account numbers generated accounts must never use.
pub const ALL_ACCOUNT_NUMBERS: [&str; 10] = [
    ZHANG_SAN_BANK_A_DEBIT_ACCOUNT,
    ZHANG_SAN_BANK_A_SAVINGS_ACCOUNT,
    ZHANG_SAN_BANK_B_ACCOUNT,
    ZHANG_SAN_BANK_D_ACCOUNT,
    FLEET_ZHANG_SAN_ACCOUNT,
    SAMPLE_ORG_BASIC_ACCOUNT,
    SAMPLE_ORG_GENERAL_ACCOUNT,
    LI_SI_BANK_A_SAVINGS_ACCOUNT,
    LI_SI_BANK_A_DEBIT_ACCOUNT,
    LI_SI_BANK_B_ACCOUNT,
];

/// Unit numbers generated units must never use.
pub const ALL_UNIT_NUMBERS: [&str; 2] = [ZHANG_SAN_UNIT_NUMBER, LI_SI_UNIT_NUMBER];

fn account(
    number: &str,
    (holder_id, holder_name): (&str, &str),
    kind: AccountKind,
    branch: &str,
    balance_fen: i64,
    available_fen: i64,
) -> Account {
    Account {
        account_number: number.into(),
        holder_id: holder_id.into(),
        holder_name: holder_name.into(),
        kind,
        state: AccountState::Normal,
        currency: "CNY".into(),
        balance_fen,
        available_fen,
        branch: branch.into(),
        measures: Vec::new(),
    }
}

/// A measure another court has standing on a fixture account, in force.
fn standing(
    authority: &str,
    document_number: &str,
    amount_fen: i64,
    end_date: NaiveDate,
) -> Measure {
    Measure {
        authority: authority.into(),
        document_number: document_number.into(),
        amount_fen,
        end_date,
        waiting: false,
    }
}

/// The fixture accounts a bank with this id holds.
pub fn bank_accounts(agency_id: &str) -> Vec<Account> {
    let zhang = (ZHANG_SAN_ID, ZHANG_SAN_NAME);
    let org = (SAMPLE_ORG_ID, SAMPLE_ORG_NAME);
    let li = (LI_SI_ID, LI_SI_NAME);
    match agency_id {
        BANK_A => vec![
            account(
                ZHANG_SAN_BANK_A_DEBIT_ACCOUNT,
                zhang,
                AccountKind::DebitCard,
                ZHANG_SAN_BANK_A_DEBIT_BRANCH,
                ZHANG_SAN_BANK_A_DEBIT_BALANCE_FEN,
                ZHANG_SAN_BANK_A_DEBIT_AVAILABLE_FEN,
            ),
            account(
                ZHANG_SAN_BANK_A_SAVINGS_ACCOUNT,
                zhang,
                AccountKind::DemandSavings,
                ZHANG_SAN_BANK_A_SAVINGS_BRANCH,
                ZHANG_SAN_BANK_A_SAVINGS_BALANCE_FEN,
                ZHANG_SAN_BANK_A_SAVINGS_AVAILABLE_FEN,
            ),
            account(
                SAMPLE_ORG_BASIC_ACCOUNT,
                org,
                AccountKind::BasicDeposit,
                SAMPLE_ORG_BASIC_BRANCH,
                SAMPLE_ORG_BASIC_BALANCE_FEN,
                SAMPLE_ORG_BASIC_AVAILABLE_FEN,
            ),
            account(
                SAMPLE_ORG_GENERAL_ACCOUNT,
                org,
                AccountKind::GeneralDeposit,
                SAMPLE_ORG_GENERAL_BRANCH,
                SAMPLE_ORG_GENERAL_BALANCE_FEN,
                SAMPLE_ORG_GENERAL_AVAILABLE_FEN,
            ),
            Account {
                measures: vec![standing(
                    LI_SI_BANK_A_SAVINGS_MEASURE_AUTHORITY,
                    LI_SI_BANK_A_SAVINGS_MEASURE_DOCUMENT,
                    LI_SI_BANK_A_SAVINGS_MEASURE_FEN,
                    LI_SI_BANK_A_SAVINGS_MEASURE_END,
                )],
                ..account(
                    LI_SI_BANK_A_SAVINGS_ACCOUNT,
                    li,
                    AccountKind::DemandSavings,
                    LI_SI_BANK_A_SAVINGS_BRANCH,
                    LI_SI_BANK_A_SAVINGS_BALANCE_FEN,
                    LI_SI_BANK_A_SAVINGS_AVAILABLE_FEN,
                )
            },
            Account {
                measures: vec![standing(
                    LI_SI_BANK_A_DEBIT_MEASURE_AUTHORITY,
                    LI_SI_BANK_A_DEBIT_MEASURE_DOCUMENT,
                    LI_SI_BANK_A_DEBIT_MEASURE_FEN,
                    LI_SI_BANK_A_DEBIT_MEASURE_END,
                )],
                ..account(
                    LI_SI_BANK_A_DEBIT_ACCOUNT,
                    li,
                    AccountKind::DebitCard,
                    LI_SI_BANK_A_DEBIT_BRANCH,
                    LI_SI_BANK_A_DEBIT_BALANCE_FEN,
                    LI_SI_BANK_A_DEBIT_AVAILABLE_FEN,
                )
            },
        ],
        BANK_B => vec![
            account(
                ZHANG_SAN_BANK_B_ACCOUNT,
                zhang,
                AccountKind::DemandSavings,
                ZHANG_SAN_BANK_B_BRANCH,
                ZHANG_SAN_BANK_B_BALANCE_FEN,
                ZHANG_SAN_BANK_B_AVAILABLE_FEN,
            ),
            account(
                LI_SI_BANK_B_ACCOUNT,
                li,
                AccountKind::DemandSavings,
                LI_SI_BANK_B_BRANCH,
                LI_SI_BANK_B_BALANCE_FEN,
                LI_SI_BANK_B_AVAILABLE_FEN,
            ),
        ],
        BANK_D => vec![account(
            ZHANG_SAN_BANK_D_ACCOUNT,
            zhang,
            AccountKind::DemandSavings,
            ZHANG_SAN_BANK_D_BRANCH,
            ZHANG_SAN_BANK_D_BALANCE_FEN,
            ZHANG_SAN_BANK_D_AVAILABLE_FEN,
        )],
        FLEET_ZHANG_SAN_BANK => vec![account(
            FLEET_ZHANG_SAN_ACCOUNT,
            zhang,
            AccountKind::DebitCard,
            FLEET_ZHANG_SAN_BRANCH,
            FLEET_ZHANG_SAN_BALANCE_FEN,
            FLEET_ZHANG_SAN_AVAILABLE_FEN,
        )],
        _ => Vec::new(),
    }
}

/// The fixture units a registry with this id holds.
pub fn registry_units(agency_id: &str) -> Vec<Unit> {
    if agency_id != REGISTRY_X {
        return Vec::new();
    }
    vec![
        Unit {
            unit_number: ZHANG_SAN_UNIT_NUMBER.into(),
            certificate_number: ZHANG_SAN_CERTIFICATE_NUMBER.into(),
            location: ZHANG_SAN_UNIT_LOCATION.into(),
            area_centi_m2: ZHANG_SAN_UNIT_AREA_CENTI_M2,
            usage: ZHANG_SAN_UNIT_USE.into(),
            owners: vec![Owner {
                name: ZHANG_SAN_NAME.into(),
                id_number: ZHANG_SAN_ID.into(),
                share: ZHANG_SAN_UNIT_SHARE.into(),
            }],
            mortgaged: ZHANG_SAN_UNIT_MORTGAGED,
            seals: vec![Seal {
                authority: ZHANG_SAN_SEAL_AUTHORITY.into(),
                document_number: ZHANG_SAN_SEAL_DOCUMENT.into(),
                start_date: ZHANG_SAN_SEAL_START,
                end_date: ZHANG_SAN_SEAL_END,
                queue_position: 0,
            }],
        },
        Unit {
            unit_number: LI_SI_UNIT_NUMBER.into(),
            certificate_number: LI_SI_CERTIFICATE_NUMBER.into(),
            location: LI_SI_UNIT_LOCATION.into(),
            area_centi_m2: LI_SI_UNIT_AREA_CENTI_M2,
            usage: LI_SI_UNIT_USE.into(),
            owners: vec![Owner {
                name: LI_SI_NAME.into(),
                id_number: LI_SI_ID.into(),
                share: LI_SI_UNIT_SHARE.into(),
            }],
            mortgaged: LI_SI_UNIT_MORTGAGED,
            seals: Vec::new(),
        },
    ]
}
