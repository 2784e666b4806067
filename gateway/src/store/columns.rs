//! How typed values sit in text columns, in one place. A row field that is
//! not plain text or a number is read as [`Text`] (`#[sqlx(try_from =
//! "Text")]`) and parsed by its `TryFrom<Text>`: states by their names
//! (`states`), the rest as JSON, written by [`json`]. A subject is three
//! columns ([`SubjectColumns`]), an order's asset four ([`AssetColumns`]).

use adapters::control::{AssetRef, ControlAction, DocumentAck, DocumentRef};
use adapters::ids::{CreditCode, IdNumber};
use adapters::model::{Asset, AssetKind, Court, Officer, Subject, SubjectKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::error::BoxDynError;
use sqlx::{Decode, Postgres, Sqlite, Type};

use super::shared::Arg;
use super::{PlanAccounts, RefusedLine};

/// A text column as read, NULL as `None`.
#[derive(Debug)]
pub struct Text(pub Option<String>);

macro_rules! text_on {
    ($db:ty) => {
        impl Type<$db> for Text {
            fn type_info() -> <$db as sqlx::Database>::TypeInfo {
                <String as Type<$db>>::type_info()
            }

            fn compatible(ty: &<$db as sqlx::Database>::TypeInfo) -> bool {
                <String as Type<$db>>::compatible(ty)
            }
        }

        impl<'r> Decode<'r, $db> for Text {
            fn decode(value: <$db as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                <Option<String> as Decode<'r, $db>>::decode(value).map(Text)
            }
        }
    };
}

text_on!(Sqlite);
text_on!(Postgres);

/// The JSON text a value is stored as.
pub fn json(value: &impl Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn from_json<T: DeserializeOwned>(text: Option<&str>) -> Result<T, BoxDynError> {
    let text = text.ok_or("a JSON column is NULL")?;
    serde_json::from_str(text).map_err(|e| format!("stored JSON is unreadable: {e}").into())
}

/// Columns of JSON, NOT NULL.
macro_rules! json_columns {
    ($($ty:ty),* $(,)?) => {
        $(
            impl TryFrom<Text> for $ty {
                type Error = BoxDynError;

                fn try_from(text: Text) -> Result<Self, Self::Error> {
                    from_json(text.0.as_deref())
                }
            }
        )*
    };
}

json_columns!(
    Vec<Officer>,
    Vec<DocumentRef>,
    Vec<AssetKind>,
    Court,
    PlanAccounts,
    Vec<RefusedLine>,
);

/// Columns of JSON that may be NULL (nothing acknowledged, no result).
macro_rules! nullable_json_columns {
    ($($ty:ty),* $(,)?) => {
        $(
            impl TryFrom<Text> for Option<$ty> {
                type Error = BoxDynError;

                fn try_from(text: Text) -> Result<Self, Self::Error> {
                    text.0.map(|t| from_json(Some(&t))).transpose()
                }
            }
        )*
    };
}

nullable_json_columns!(Vec<DocumentAck>, Vec<Asset>);

/// A JSON array of texts (the audit log's officers); NULL as none.
impl TryFrom<Text> for Vec<String> {
    type Error = BoxDynError;

    fn try_from(text: Text) -> Result<Self, Self::Error> {
        text.0
            .map_or_else(|| Ok(Vec::new()), |t| from_json(Some(&t)))
    }
}

/// An order's action, by its API name.
impl TryFrom<Text> for ControlAction {
    type Error = BoxDynError;

    fn try_from(text: Text) -> Result<Self, Self::Error> {
        let text = text.0.unwrap_or_default();
        ControlAction::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| format!("{text:?} is no control action").into())
    }
}

impl From<ControlAction> for Arg<'_> {
    fn from(action: ControlAction) -> Self {
        Arg::from(action.as_str())
    }
}

/// A subject's kind as its column holds it.
pub fn subject_kind(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Person => "person",
        SubjectKind::Organization => "organization",
    }
}

/// A subject as stored: its kind, its name, and its identifier (an
/// identity number or a credit code, checked again as it is read).
#[derive(Debug, sqlx::FromRow)]
pub struct SubjectColumns {
    subject_kind: String,
    subject_name: String,
    subject_id: String,
}

impl TryFrom<SubjectColumns> for Subject {
    type Error = BoxDynError;

    fn try_from(c: SubjectColumns) -> Result<Self, Self::Error> {
        let name = c.subject_name;
        Ok(match c.subject_kind.as_str() {
            "person" => Subject::Person {
                name,
                id_number: IdNumber::parse(&c.subject_id)
                    .map_err(|e| format!("stored identity number: {e}"))?,
            },
            "organization" => Subject::Organization {
                name,
                credit_code: CreditCode::parse(&c.subject_id)
                    .map_err(|e| format!("stored credit code: {e}"))?,
            },
            other => return Err(format!("{other:?} is no subject kind").into()),
        })
    }
}

/// An order's asset as stored: its kind, the account acted on (a bank's,
/// a payment platform's, a provident fund centre's, or a securities
/// account), the registered thing (a real-estate unit, a vehicle's VIN, the
/// credit code of the company whose equity is frozen), and a securities
/// account's security.
#[derive(Debug, sqlx::FromRow)]
pub struct AssetColumns {
    asset_kind: String,
    account_number: Option<String>,
    unit_number: Option<String>,
    security_code: Option<String>,
}

/// The columns `(account_number, unit_number, security_code)` of an asset.
pub fn asset_columns(asset: &AssetRef) -> (Option<&str>, Option<&str>, Option<&str>) {
    match asset {
        AssetRef::BankAccount { account_number: a }
        | AssetRef::PaymentAccount { payment_account: a }
        | AssetRef::ProvidentFund { fund_account: a } => (Some(a), None, None),
        AssetRef::RealEstate { unit_number: u }
        | AssetRef::Vehicle { vin: u }
        | AssetRef::Equity {
            company_credit_code: u,
        } => (None, Some(u), None),
        AssetRef::Securities {
            securities_account,
            security_code,
        } => (Some(securities_account), None, Some(security_code)),
    }
}

impl TryFrom<AssetColumns> for AssetRef {
    type Error = BoxDynError;

    fn try_from(c: AssetColumns) -> Result<Self, Self::Error> {
        let kind = AssetKind::parse(&c.asset_kind)
            .ok_or_else(|| format!("{:?} is no asset kind", c.asset_kind))?;
        let (account, unit, code) = (c.account_number, c.unit_number, c.security_code);
        AssetRef::build(kind, |name| match name {
            "account_number" | "payment_account" | "fund_account" | "securities_account" => {
                account.as_deref()
            }
            "unit_number" | "vin" | "company_credit_code" => unit.as_deref(),
            "security_code" => code.as_deref(),
            _ => None,
        })
        .map_err(|field| format!("a stored {} order lacks its {field}", kind.as_str()).into())
    }
}
