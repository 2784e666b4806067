//! The kinds of asset control orders act on, and what differs between
//! them: how an asset is measured ([`Measuring`]: money, shares, or whole),
//! how long a measure may last, whether money may be deducted, the words
//! of a refusal, the key an order names an asset by, and who holds it. The
//! ledger's rules are the same for every kind; this module is all a new
//! kind needs to say.

use chrono::{Months, NaiveDate};

use crate::agency::Holdings;
use crate::further_book::FurtherBook;

/// The kinds of asset an agency's book holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AssetKind {
    BankAccount,
    RealEstate,
    Vehicle,
    Securities,
    PaymentAccount,
    ProvidentFund,
    Equity,
}

/// How measures on an asset are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Measuring {
    /// Money, in fen: a measure holds part of the balance.
    Money,
    /// Shares: a measure holds part of the quantity.
    Shares,
    /// The whole asset: in force or waiting, nothing in between.
    Whole,
}

impl Measuring {
    /// Measured by an amount (money or shares) rather than whole.
    pub fn counted(self) -> bool {
        self != Self::Whole
    }
}

/// The words an agency of a kind refuses and explains with.
#[derive(Debug)]
pub(crate) struct Words {
    /// What a measure on it is called: 冻结 or 查封.
    pub measure: &'static str,
    pub missing: &'static str,
    pub not_owned: &'static str,
    pub too_long: &'static str,
    /// Counted kinds: nothing is free and nobody else holds it.
    pub nothing_free: &'static str,
    /// Counted kinds: less is free than asked.
    pub short: &'static str,
    /// Whole kinds: this case's measure is already on it.
    pub already_ours: &'static str,
    pub renew_gone: &'static str,
    pub release_gone: &'static str,
}

const FREEZE_GONE: (&str, &str) = ("原冻结已失效或已解除，不能续冻", "原冻结不存在或已解除");
const SEAL_GONE: (&str, &str) = ("原查封已失效或已解除，不能续封", "原查封不存在或已解除");

const fn words(
    measure: &'static str,
    (missing, not_owned, too_long): (&'static str, &'static str, &'static str),
    (nothing_free, short, already_ours): (&'static str, &'static str, &'static str),
    (renew_gone, release_gone): (&'static str, &'static str),
) -> Words {
    Words {
        measure,
        missing,
        not_owned,
        too_long,
        nothing_free,
        short,
        already_ours,
        renew_gone,
        release_gone,
    }
}

const BANK_ACCOUNT_WORDS: Words = words(
    "冻结",
    ("账号不存在", "账户与被执行人不符", "冻结期限超过一年"),
    ("账户可用余额为零", "余额不足", ""),
    FREEZE_GONE,
);
const REAL_ESTATE_WORDS: Words = words(
    "查封",
    (
        "不动产单元不存在",
        "不动产权利人与被执行人不符",
        "查封期限超过三年",
    ),
    ("", "", "该不动产已被本案查封"),
    SEAL_GONE,
);
const VEHICLE_WORDS: Words = words(
    "查封",
    (
        "无此车辆登记信息",
        "车辆所有人与被执行人不符",
        "查封期限超过两年",
    ),
    ("", "", "该车辆已被本案查封"),
    SEAL_GONE,
);
const SECURITIES_WORDS: Words = words(
    "冻结",
    (
        "无此证券持有记录",
        "证券账户持有人与被执行人不符",
        "冻结期限超过三年",
    ),
    ("可冻结证券数量为零", "可冻结证券数量不足", ""),
    FREEZE_GONE,
);
const PAYMENT_ACCOUNT_WORDS: Words = words(
    "冻结",
    ("支付账户不存在", "账户与被执行人不符", "冻结期限超过一年"),
    ("账户可用余额为零", "余额不足", ""),
    FREEZE_GONE,
);
const PROVIDENT_FUND_WORDS: Words = words(
    "冻结",
    ("公积金账户不存在", "账户与被执行人不符", "冻结期限超过一年"),
    ("账户可用余额为零", "余额不足", ""),
    FREEZE_GONE,
);
const EQUITY_WORDS: Words = words(
    "冻结",
    ("无此股权登记信息", "股东与被执行人不符", "冻结期限超过三年"),
    ("", "", "该股权已被本案冻结"),
    FREEZE_GONE,
);

/// Why a provident fund account's money may not be deducted.
pub(crate) const NOT_WITHDRAWABLE: &str = "账户未满足提取条件，不能划拨";
/// Why an asset of a kind not measured in money may not be deducted from.
pub(crate) const NOT_MONEY: &str = "该财产不能划拨";

impl AssetKind {
    pub fn of(holdings: &Holdings) -> Self {
        match holdings {
            Holdings::Bank(_) => Self::BankAccount,
            Holdings::Registry(_) => Self::RealEstate,
            Holdings::Further(book) => match book.as_ref() {
                FurtherBook::Vehicles(_) => Self::Vehicle,
                FurtherBook::Securities(_) => Self::Securities,
                FurtherBook::PaymentAccounts(_) => Self::PaymentAccount,
                FurtherBook::FundAccounts(_) => Self::ProvidentFund,
                FurtherBook::Equity(_) => Self::Equity,
            },
        }
    }

    pub fn measuring(self) -> Measuring {
        match self {
            Self::BankAccount | Self::PaymentAccount | Self::ProvidentFund => Measuring::Money,
            Self::Securities => Measuring::Shares,
            Self::RealEstate | Self::Vehicle | Self::Equity => Measuring::Whole,
        }
    }

    /// The longest term of a measure, in months (domain.md: funds 1 year,
    /// movables 2, real estate and other property rights 3).
    pub fn term_months(self) -> u32 {
        match self {
            Self::BankAccount | Self::PaymentAccount | Self::ProvidentFund => 12,
            Self::Vehicle => 24,
            Self::RealEstate | Self::Securities | Self::Equity => 36,
        }
    }

    pub fn words(self) -> &'static Words {
        match self {
            Self::BankAccount => &BANK_ACCOUNT_WORDS,
            Self::RealEstate => &REAL_ESTATE_WORDS,
            Self::Vehicle => &VEHICLE_WORDS,
            Self::Securities => &SECURITIES_WORDS,
            Self::PaymentAccount => &PAYMENT_ACCOUNT_WORDS,
            Self::ProvidentFund => &PROVIDENT_FUND_WORDS,
            Self::Equity => &EQUITY_WORDS,
        }
    }

    /// The term a measure may have: `end ≤ start + limit − 1 day`.
    pub fn check_term(
        self,
        start: Option<NaiveDate>,
        end: Option<NaiveDate>,
    ) -> Result<(NaiveDate, NaiveDate), &'static str> {
        let (Some(start), Some(end)) = (start, end) else {
            return Err("缺少控制起止日期");
        };
        if end < start {
            return Err("结束日期早于开始日期");
        }
        match start
            .checked_add_months(Months::new(self.term_months()))
            .and_then(|d| d.pred_opt())
        {
            Some(limit) if end <= limit => Ok((start, end)),
            _ => Err(self.words().too_long),
        }
    }
}

/// The key a securities holding is controlled by: the account and the
/// security, `A123456789:600000`.
pub(crate) fn securities_target(account: &str, code: &str) -> String {
    format!("{account}:{code}")
}

/// Every asset of a book with the key control orders name it by (an asset
/// may share its key with another holder's: equity in one company).
pub(super) fn targets(holdings: &Holdings) -> Vec<(String, usize)> {
    fn keyed<T>(records: &[T], key: impl Fn(&T) -> String) -> Vec<(String, usize)> {
        records
            .iter()
            .enumerate()
            .map(|(i, r)| (key(r), i))
            .collect()
    }
    match holdings {
        Holdings::Bank(book) => keyed(book.accounts(), |a| a.account_number.clone()),
        Holdings::Registry(book) => keyed(book.units(), |u| u.unit_number.clone()),
        Holdings::Further(book) => match book.as_ref() {
            FurtherBook::Vehicles(b) => keyed(b.records(), |v| v.vin.clone()),
            FurtherBook::Securities(b) => keyed(b.records(), |h| {
                securities_target(&h.securities_account, &h.security_code)
            }),
            FurtherBook::PaymentAccounts(b) => keyed(b.records(), |a| a.account_id.clone()),
            FurtherBook::FundAccounts(b) => keyed(b.records(), |a| a.account_no.clone()),
            FurtherBook::Equity(b) => keyed(b.records(), |e| e.company_credit_code.clone()),
        },
    }
}

/// Whether the subject `holder_id` holds the asset at `position` (a unit:
/// owns a share of it).
pub(super) fn owned_by(holdings: &Holdings, position: usize, holder_id: &str) -> bool {
    fn holder<T: crate::further_book::Filed>(records: &[T], position: usize) -> Option<&str> {
        records.get(position).map(|r| r.holder_id())
    }
    let holder = match holdings {
        Holdings::Bank(book) => book.get(position).map(|a| a.holder_id.as_str()),
        Holdings::Registry(book) => {
            return book
                .get(position)
                .is_some_and(|u| u.owners.iter().any(|o| o.id_number == holder_id));
        }
        Holdings::Further(book) => match book.as_ref() {
            FurtherBook::Vehicles(b) => holder(b.records(), position),
            FurtherBook::Securities(b) => holder(b.records(), position),
            FurtherBook::PaymentAccounts(b) => holder(b.records(), position),
            FurtherBook::FundAccounts(b) => holder(b.records(), position),
            FurtherBook::Equity(b) => holder(b.records(), position),
        },
    };
    holder == Some(holder_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    #[test]
    fn terms_end_the_day_before_the_anniversary_each_kind_its_own() {
        let start = Some(d(2026, 11, 27));
        for (kind, years, too_long) in [
            (AssetKind::BankAccount, 1, "冻结期限超过一年"),
            (AssetKind::PaymentAccount, 1, "冻结期限超过一年"),
            (AssetKind::ProvidentFund, 1, "冻结期限超过一年"),
            (AssetKind::Vehicle, 2, "查封期限超过两年"),
            (AssetKind::RealEstate, 3, "查封期限超过三年"),
            (AssetKind::Securities, 3, "冻结期限超过三年"),
            (AssetKind::Equity, 3, "冻结期限超过三年"),
        ] {
            let last = d(2026 + years, 11, 26);
            assert!(kind.check_term(start, Some(last)).is_ok(), "{kind:?}");
            assert_eq!(
                kind.check_term(start, last.succ_opt()),
                Err(too_long),
                "{kind:?}"
            );
            assert!(kind.check_term(start, Some(d(2026, 11, 26))).is_err());
            assert!(kind.check_term(None, Some(last)).is_err());
        }
    }
}
