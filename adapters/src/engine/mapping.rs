//! Mapping reply records into the model, field by field, as a dialect file
//! declares it; and the checks that a declaration only names model fields
//! that exist, with conversions that fit them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::{Map, Value};

use super::select::{Node, Path};
use super::spec::{FieldSpec, RecordSpec};
use crate::excerpt;
use crate::model::{AssetKind, Fen, MoneyError};

/// The kind of value a model field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    Text,
    Money,
    Decimal,
    Integer,
    Bool,
    Date,
}

/// One field of the model, as dialects may fill it.
#[derive(Debug)]
struct ModelField {
    name: &'static str,
    ty: FieldType,
    required: bool,
    /// `Option` in the model: absent stays absent.
    optional: bool,
}

const fn field(name: &'static str, ty: FieldType, required: bool, optional: bool) -> ModelField {
    ModelField {
        name,
        ty,
        required,
        optional,
    }
}

use FieldType::*;

const BANK_ACCOUNT: &[ModelField] = &[
    field("account_number", Text, true, false),
    field("account_type", Text, false, false),
    field("currency", Text, false, false),
    field("balance_fen", Money, true, false),
    field("available_fen", Money, true, false),
    field("branch", Text, false, false),
    field("state", Text, false, true),
];

const REAL_ESTATE: &[ModelField] = &[
    field("unit_number", Text, true, false),
    field("certificate_number", Text, false, false),
    field("location", Text, false, false),
    field("area_m2", Decimal, false, false),
    field("use", Text, false, false),
    field("mortgaged", Bool, false, false),
];

const VEHICLE: &[ModelField] = &[
    field("vin", Text, true, false),
    field("plate_number", Text, false, false),
    field("plate_type", Text, false, false),
    field("make_model", Text, false, false),
    field("first_registered", Date, false, true),
    field("state", Text, false, false),
    field("mortgaged", Bool, false, false),
];

const SECURITIES: &[ModelField] = &[
    field("securities_account", Text, true, false),
    field("market", Text, false, false),
    field("security_code", Text, true, false),
    field("security_name", Text, false, false),
    field("quantity", Integer, true, false),
    field("available_quantity", Integer, false, true),
    field("custodian", Text, false, false),
];

const PAYMENT_ACCOUNT: &[ModelField] = &[
    field("payment_account", Text, true, false),
    field("holder", Text, false, false),
    field("balance_fen", Money, true, false),
    field("available_fen", Money, false, true),
    field("fund_balance_fen", Money, false, true),
];

const PROVIDENT_FUND: &[ModelField] = &[
    field("fund_account", Text, true, false),
    field("balance_fen", Money, true, false),
    field("available_fen", Money, false, true),
    field("state", Text, false, false),
    field("withdrawable", Bool, false, false),
];

const EQUITY: &[ModelField] = &[
    field("company_name", Text, true, false),
    field("company_credit_code", Text, true, false),
    field("subscribed_capital_fen", Money, true, false),
    field("paid_in_capital_fen", Money, false, true),
    field("share_ratio", Text, false, false),
];

const MEASURE: &[ModelField] = &[
    field("authority", Text, false, false),
    field("document_number", Text, false, false),
    field("amount_fen", Money, false, true),
    field("start_date", Date, false, true),
    field("end_date", Date, false, true),
    field("waiting", Bool, false, false),
    field("queue_position", Integer, false, true),
    field("quantity", Integer, false, true),
];

const CONTROL_RESULT: &[ModelField] = &[
    field("controlled_fen", Money, false, true),
    field("shortfall_fen", Money, false, true),
    field("controlled_quantity", Integer, false, true),
    field("shortfall_quantity", Integer, false, true),
    field("start_date", Date, false, true),
    field("end_date", Date, false, true),
    field("queue_position", Integer, false, true),
    field("agency_reference", Text, false, true),
];

/// A document an agency acknowledges: the digest is the one it computed.
const DOCUMENT_ACK: &[ModelField] = &[
    field("number", Text, true, false),
    field("sha256", Text, true, false),
];

const OWNER: &[ModelField] = &[
    field("name", Text, true, false),
    field("share", Text, false, true),
];

/// How wire text becomes a model value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Convert {
    Text,
    Yuan,
    Fen,
    Decimal,
    Integer,
    Bool,
    /// Yes when the wire text contains these letters: a state written as
    /// several one-letter flags standing together (`KM`: sealed and
    /// mortgaged).
    Flag(String),
    Date(String),
}

impl Convert {
    fn parse(text: Option<&str>, ty: FieldType) -> Result<Self, String> {
        let convert = match text {
            None => match ty {
                Text => Convert::Text,
                Bool => Convert::Bool,
                Decimal => Convert::Decimal,
                Integer => Convert::Integer,
                Money => return Err("a money field needs convert = \"yuan\" or \"fen\"".into()),
                Date => {
                    return Err(
                        "a date field needs convert = \"date:<format>\", e.g. \"date:%Y%m%d\""
                            .into(),
                    );
                }
            },
            Some("text") => Convert::Text,
            Some("yuan") => Convert::Yuan,
            Some("fen") => Convert::Fen,
            Some("decimal") => Convert::Decimal,
            Some("integer") => Convert::Integer,
            Some("bool") => Convert::Bool,
            Some(other) if other.starts_with("flag:") => {
                let letters = &other["flag:".len()..];
                if letters.is_empty() {
                    return Err("convert \"flag:\" needs the letters to look for".into());
                }
                Convert::Flag(letters.to_owned())
            }
            Some(other) => match other.strip_prefix("date:") {
                Some(format) => {
                    // A format that cannot print a date cannot read one either.
                    let probe = NaiveDate::from_ymd_opt(2027, 1, 5).ok_or("date")?;
                    let printed = probe.format(format).to_string();
                    if NaiveDate::parse_from_str(&printed, format) != Ok(probe) {
                        return Err(format!("{format:?} is not a usable date format"));
                    }
                    Convert::Date(format.to_owned())
                }
                None => {
                    return Err(format!(
                        "convert {other:?} is unknown (text, yuan, fen, decimal, integer, bool, flag:<letters>, date:<format>)"
                    ));
                }
            },
        };
        let fits = matches!(
            (&convert, ty),
            (Convert::Text, Text)
                | (Convert::Yuan | Convert::Fen, Money)
                | (Convert::Decimal, Decimal)
                | (Convert::Integer, Integer)
                | (Convert::Bool | Convert::Flag(_), Bool)
                | (Convert::Date(_), Date)
        );
        if !fits {
            return Err(format!("convert {convert:?} does not fit a {ty:?} field"));
        }
        Ok(convert)
    }

    fn apply(&self, raw: &str) -> Result<Value, String> {
        let quoted = || excerpt(raw);
        Ok(match self {
            Convert::Text => Value::String(raw.to_owned()),
            Convert::Yuan => Fen::parse_yuan(raw)
                .map_err(|_| MoneyError(quoted()).to_string())?
                .0
                .into(),
            Convert::Fen => raw
                .parse::<i64>()
                .map_err(|_| format!("{:?} is not an amount in fen", quoted()))?
                .into(),
            Convert::Decimal => {
                let n: f64 = raw
                    .parse()
                    .map_err(|_| format!("{:?} is not a number", quoted()))?;
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{:?} is not a finite number", quoted()))?
            }
            Convert::Integer => raw
                .parse::<u64>()
                .map_err(|_| format!("{:?} is not a whole number", quoted()))?
                .into(),
            Convert::Bool => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "y" => true.into(),
                "false" | "0" | "no" | "n" => false.into(),
                _ => return Err(format!("{:?} is not a yes/no value", quoted())),
            },
            Convert::Flag(letters) => raw.contains(letters.as_str()).into(),
            Convert::Date(format) => NaiveDate::parse_from_str(raw, format)
                .map_err(|_| format!("{:?} is not a date in the format {format:?}", quoted()))?
                .format("%Y-%m-%d")
                .to_string()
                .into(),
        })
    }
}

/// A model field with the rule that fills it.
#[derive(Debug)]
struct CompiledField {
    model: &'static ModelField,
    path: Path,
    convert: Convert,
    codes: Option<BTreeMap<String, String>>,
    default: Option<String>,
    absent_if: Vec<String>,
}

/// A compiled set of fields for one kind of record.
#[derive(Debug)]
pub struct RecordMapping {
    records: Path,
    fields: Vec<CompiledField>,
    kind: RecordKind,
    schema: &'static [ModelField],
    measures: Option<Box<RecordMapping>>,
    owners: Option<Box<RecordMapping>>,
}

/// What a dialect file says about one kind of record.
#[derive(Debug, Clone, Copy)]
pub struct RecordSource<'a> {
    pub records: &'a str,
    pub fields: &'a BTreeMap<String, FieldSpec>,
    pub measures: Option<&'a RecordSpec>,
    pub owners: Option<&'a RecordSpec>,
}

/// The record kinds a dialect may map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A found asset of one kind, with its standing measures.
    Asset(AssetKind),
    Measure,
    Owner,
    ControlResult,
    /// A document acknowledged in a control answer.
    DocumentAck,
}

impl RecordKind {
    fn schema(self) -> &'static [ModelField] {
        match self {
            RecordKind::Asset(kind) => match kind {
                AssetKind::BankAccount => BANK_ACCOUNT,
                AssetKind::RealEstate => REAL_ESTATE,
                AssetKind::Vehicle => VEHICLE,
                AssetKind::Securities => SECURITIES,
                AssetKind::PaymentAccount => PAYMENT_ACCOUNT,
                AssetKind::ProvidentFund => PROVIDENT_FUND,
                AssetKind::Equity => EQUITY,
            },
            RecordKind::Measure => MEASURE,
            RecordKind::Owner => OWNER,
            RecordKind::ControlResult => CONTROL_RESULT,
            RecordKind::DocumentAck => DOCUMENT_ACK,
        }
    }

    fn name(self) -> &'static str {
        match self {
            RecordKind::Asset(kind) => kind.as_str(),
            RecordKind::Measure => "measure",
            RecordKind::Owner => "owner",
            RecordKind::ControlResult => "control result",
            RecordKind::DocumentAck => "document acknowledgement",
        }
    }
}

impl RecordMapping {
    /// Compiles a record's fields; every problem is pushed to `errors` with
    /// `at` (the TOML key path) in front.
    pub fn compile(
        kind: RecordKind,
        source: RecordSource<'_>,
        codes: &BTreeMap<String, BTreeMap<String, String>>,
        at: &str,
        errors: &mut Vec<String>,
    ) -> Option<Self> {
        let RecordSource {
            records,
            fields,
            measures,
            owners,
        } = source;
        let schema = kind.schema();
        let before = errors.len();
        let records = Path::parse(records)
            .map_err(|e| errors.push(format!("{at}.records: {e}")))
            .ok();
        let mut compiled = Vec::new();
        for (name, spec) in fields {
            let key = format!("{at}.fields.{name}");
            let Some(model) = schema.iter().find(|f| f.name == name) else {
                let known: Vec<&str> = schema.iter().map(|f| f.name).collect();
                errors.push(format!(
                    "{key}: the model has no field {name:?} for a {} (fields: {})",
                    kind.name(),
                    known.join(", ")
                ));
                continue;
            };
            let rule = spec.rule();
            let path = Path::parse(&rule.path).map_err(|e| errors.push(format!("{key}: {e}")));
            let convert = Convert::parse(rule.convert.as_deref(), model.ty)
                .map_err(|e| errors.push(format!("{key}: {e}")));
            let table =
                match &rule.codes {
                    None => Ok(None),
                    Some(t) => codes.get(t).cloned().map(Some).ok_or_else(|| {
                        errors.push(format!("{key}: no code table {t:?} in [codes]"))
                    }),
                };
            if let (Ok(path), Ok(convert), Ok(codes)) = (path, convert, table) {
                compiled.push(CompiledField {
                    model,
                    path,
                    convert,
                    codes,
                    default: rule.default,
                    absent_if: rule.absent_if,
                });
            }
        }
        for required in schema.iter().filter(|f| f.required) {
            if !fields.contains_key(required.name) {
                errors.push(format!(
                    "{at}.fields: the required field {:?} of a {} is not mapped",
                    required.name,
                    kind.name()
                ));
            }
        }
        let sub = |spec: Option<&RecordSpec>,
                   sub_kind: RecordKind,
                   name: &str,
                   errors: &mut Vec<String>| {
            spec.and_then(|s| {
                Self::compile(
                    sub_kind,
                    RecordSource {
                        records: &s.records,
                        fields: &s.fields,
                        measures: None,
                        owners: None,
                    },
                    codes,
                    &format!("{at}.{name}"),
                    errors,
                )
                .map(Box::new)
            })
        };
        let measures = sub(measures, RecordKind::Measure, "measures", errors);
        let owners = match (kind, owners) {
            (RecordKind::Asset(AssetKind::RealEstate), o) => {
                sub(o, RecordKind::Owner, "owners", errors)
            }
            (_, Some(_)) => {
                errors.push(format!("{at}.owners: only real_estate records have owners"));
                None
            }
            (_, None) => None,
        };
        if errors.len() > before {
            return None;
        }
        Some(Self {
            records: records?,
            fields: compiled,
            kind,
            schema,
            measures,
            owners,
        })
    }

    /// Every record under `item`, mapped to the model's JSON form.
    pub fn map_all(&self, item: Node<'_>) -> Result<Vec<Value>, String> {
        self.records
            .select(item)
            .into_iter()
            .map(|record| self.map_one(record))
            .collect()
    }

    /// The fields of one record (the node itself, not its `records`).
    pub fn map_one(&self, record: Node<'_>) -> Result<Value, String> {
        let mut out = Map::new();
        for f in &self.fields {
            // The text stays borrowed from the reply (or the dialect's
            // tables) until its conversion makes the model's value.
            let raw = f
                .path
                .text_ref(record)
                .filter(|t| !f.absent_if.iter().any(|a| a == t.as_ref()));
            let raw: Option<Cow<'_, str>> = match (&f.codes, raw) {
                (Some(table), Some(code)) => {
                    let mapped = table
                        .get(code.as_ref())
                        .or_else(|| table.get("*"))
                        .ok_or_else(|| {
                            format!(
                                "{}: code {:?} is not in its table",
                                f.model.name,
                                excerpt(&code)
                            )
                        })?;
                    Some(Cow::Borrowed(mapped.as_str()))
                }
                (_, raw) => raw,
            };
            match raw.or_else(|| f.default.as_deref().map(Cow::Borrowed)) {
                Some(text) => {
                    let value = f
                        .convert
                        .apply(&text)
                        .map_err(|e| format!("{}: {e}", f.model.name))?;
                    out.insert(f.model.name.to_owned(), value);
                }
                None if f.model.required => {
                    return Err(format!("{} is missing", f.model.name));
                }
                None => {}
            }
        }
        // Fields the model always has get their empty value when not given.
        for model in self.schema {
            if model.optional || out.contains_key(model.name) {
                continue;
            }
            let empty = match model.ty {
                Text => Value::String(String::new()),
                Bool => false.into(),
                Decimal => 0.0.into(),
                Money | Integer => 0.into(),
                Date => continue,
            };
            out.insert(model.name.to_owned(), empty);
        }
        if let RecordKind::Asset(kind) = self.kind {
            let measures = match &self.measures {
                Some(m) => m.map_all(record)?,
                None => Vec::new(),
            };
            out.insert("measures".into(), measures.into());
            if kind == AssetKind::RealEstate {
                let owners = match &self.owners {
                    Some(o) => o.map_all(record)?,
                    None => Vec::new(),
                };
                out.insert("owners".into(), owners.into());
            }
            // The API's tag: the value reads as an `Asset`.
            out.insert("kind".into(), kind.as_str().into());
        }
        Ok(Value::Object(out))
    }
}
