//! Batch inquiries: up to [`MAX_SUBJECTS`] subjects in one request, each
//! with its own case number, for the same officers. The request comes as
//! JSON or as a CSV file; each subject is checked by the rules of a single
//! inquiry, and becomes one when it passes. A bad subject is refused with
//! its line and its error and the others go ahead; what is common to the
//! batch (the officers, the kinds, the agencies) refuses the whole batch
//! when it is wrong.

use std::collections::BTreeMap;

use adapters::model::AssetKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agencies::AgencyRegistry;
use crate::error::ApiError;
use crate::input::{self, Normalise};
use crate::inquiry::{
    self, InquiryBody, InquiryView, NewInquiry, OfficerBody, SubjectBody, normalise_officers,
    validate_officers,
};
use crate::rules::BrokenRule;
use crate::store::{
    BatchCounts, BatchRecord, InquiryRecord, InquiryStatus, RefusedLine, TaskRecord,
};

/// The most subjects one batch may name.
pub const MAX_SUBJECTS: usize = 10_000;

/// The largest batch request body: 10,000 subjects of a few hundred bytes
/// each, with room to spare.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// `POST /v1/inquiry-batches` as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "officers": [{"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"}],
    "asset_kinds": ["bank_account", "real_estate"],
    "subjects": [
        {"case_number": "(2024)甘0503执1234号",
         "subject": {"kind": "person", "name": "张三", "id_number": "360426199101010071"}},
        {"case_number": "(2024)甘0503执1235号",
         "subject": {"kind": "organization", "name": "示例有限公司", "credit_code": "91110000600037341L"}}
    ]
}))]
pub struct BatchBody {
    /// The officers acting, for every subject: at least one.
    #[serde(default, deserialize_with = "input::objects")]
    #[schema(min_items = 1, max_items = 10)]
    pub officers: Vec<OfficerBody>,
    /// The kinds of asset asked about (default: every kind).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 16)]
    pub asset_kinds: Option<Vec<AssetKind>>,
    /// The agencies to ask (default: every enabled agency serving those
    /// kinds).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 10000, value_type = Option<Vec<String>>)]
    pub agencies: Option<Vec<String>>,
    /// The subjects, 1 to 10,000. Each is checked on its own: one that
    /// does not pass is refused with its place (from 1) and its error.
    #[schema(min_items = 1, max_items = 10000, value_type = Vec<BatchSubject>)]
    pub subjects: Vec<serde_json::Value>,
}

/// One subject of a batch, under its own case.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSubject {
    #[schema(max_length = 64, example = "(2024)甘0503执1234号")]
    pub case_number: String,
    #[serde(deserialize_with = "input::object")]
    pub subject: SubjectBody,
}

impl Normalise for BatchBody {
    /// What is common to the subjects; each subject is cleaned as it is
    /// checked.
    fn normalise(&mut self) -> Result<(), BrokenRule> {
        normalise_officers(&mut self.officers)?;
        if let Some(kinds) = &self.asset_kinds {
            input::bounded("asset_kinds", kinds, input::ASSET_KINDS_MAX)?;
        }
        if let Some(ids) = &mut self.agencies {
            input::bounded("agencies", ids, input::AGENCIES_MAX)?;
            for (i, id) in ids.iter_mut().enumerate() {
                *id = input::text(&format!("agencies[{i}]"), id, input::ID_MAX)?;
            }
        }
        Ok(())
    }
}

/// A batch as read from either form: what is common, and each subject
/// with its line (or the error that line already has).
#[derive(Debug)]
pub struct ParsedBatch {
    pub officers: Vec<OfficerBody>,
    pub asset_kinds: Option<Vec<AssetKind>>,
    pub agencies: Option<Vec<String>>,
    pub lines: Vec<(i64, Result<BatchSubject, ApiError>)>,
}

impl From<BatchBody> for ParsedBatch {
    fn from(body: BatchBody) -> Self {
        let lines = body
            .subjects
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let parsed =
                    serde_path_to_error::deserialize::<_, BatchSubject>(value).map_err(|e| {
                        let mut path = e.path().to_string();
                        let message = e.into_inner().to_string();
                        // A missing field is named by the message alone.
                        if path == "." || path.is_empty() {
                            path = message
                                .strip_prefix("missing field `")
                                .and_then(|rest| rest.split('`').next())
                                .unwrap_or_default()
                                .to_owned();
                        }
                        let err = ApiError::bad_request("invalid_field", message);
                        if path.is_empty() {
                            err
                        } else {
                            err.with_field(path)
                        }
                    });
                (i as i64 + 1, parsed)
            })
            .collect();
        Self {
            officers: body.officers,
            asset_kinds: body.asset_kinds,
            agencies: body.agencies,
            lines,
        }
    }
}

/// The CSV form: a header block of `# key: value` lines (`officer: name,
/// work card, credential`, once per officer; `asset_kinds: a, b`;
/// `agencies: a, b`), then a header row naming the columns
/// `case_number`, `kind` (`person` or `organization`), `name`,
/// `id_number`, `credit_code` (in any order; `kind` may be left out when
/// each row gives one of the two numbers), then one row per subject.
/// Lines are numbered as in the file, from 1.
pub fn parse_csv(raw: &[u8]) -> Result<ParsedBatch, ApiError> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        ApiError::bad_request(
            "malformed_csv",
            format!("the CSV file is not UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut officers = Vec::new();
    let mut asset_kinds = None;
    let mut agencies = None;
    let mut offset = 0usize;
    let mut header_lines = 0i64;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if !(trimmed.starts_with('#') || trimmed.is_empty()) {
            break;
        }
        offset += line.len();
        header_lines += 1;
        let Some(setting) = trimmed.strip_prefix('#') else {
            continue;
        };
        let at = format!("line {header_lines}");
        let Some((key, value)) = setting.split_once(':') else {
            continue;
        };
        let list = || -> Vec<String> {
            value
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        };
        match key.trim() {
            "officer" => {
                let parts = list();
                let [name, work_card_no, credential_no] = parts.as_slice() else {
                    return Err(ApiError::unprocessable(
                        "invalid_value",
                        format!(
                            "{at}: an officer is `# officer: name, work card number, credential number`"
                        ),
                    )
                    .with_field("officers"));
                };
                officers.push(OfficerBody {
                    name: name.clone(),
                    work_card_no: work_card_no.clone(),
                    credential_no: credential_no.clone(),
                });
            }
            "asset_kinds" => {
                let kinds = list()
                    .iter()
                    .map(|k| {
                        AssetKind::parse(k).ok_or_else(|| {
                            ApiError::unprocessable(
                                "invalid_value",
                                format!("{at}: {k:?} is no kind of asset"),
                            )
                            .with_field("asset_kinds")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                asset_kinds = Some(kinds);
            }
            "agencies" => agencies = Some(list()),
            // Other comments are the file's own.
            _ => {}
        }
    }
    // Where each line of the table starts: records are numbered by the
    // line their first byte is on, as in the file (the reader's own count
    // leaves out blank lines).
    let body = &text.as_bytes()[offset..];
    let starts: Vec<u64> = std::iter::once(0)
        .chain(
            body.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i as u64 + 1),
        )
        .collect();
    let line_at = |position: Option<&csv::Position>| -> i64 {
        // A record's position is where the reader began it, before the
        // blank lines it skipped.
        let mut byte = position.map_or(0, csv::Position::byte);
        while body
            .get(usize::try_from(byte).unwrap_or(usize::MAX))
            .is_some_and(|b| matches!(b, b'\n' | b'\r'))
        {
            byte += 1;
        }
        let index = starts.partition_point(|start| *start <= byte);
        index as i64 + header_lines
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| ApiError::bad_request("malformed_csv", format!("the header row: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let known = ["case_number", "kind", "name", "id_number", "credit_code"];
    if let Some(unknown) = headers.iter().find(|h| !known.contains(h)) {
        return Err(ApiError::bad_request(
            "malformed_csv",
            format!(
                "the header row names {unknown:?}; the columns are case_number, kind, name, \
                 id_number and credit_code"
            ),
        ));
    }
    let (Some(case_col), Some(name_col)) = (column("case_number"), column("name")) else {
        return Err(ApiError::bad_request(
            "malformed_csv",
            "the header row must name at least case_number and name (and id_number or \
             credit_code)",
        ));
    };
    let kind_col = column("kind");
    let id_col = column("id_number");
    let credit_col = column("credit_code");
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = line_at(e.position());
                lines.push((
                    line,
                    Err(ApiError::bad_request("malformed_csv", e.to_string())),
                ));
                continue;
            }
        };
        let line = line_at(record.position());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cell = |col: Option<usize>| {
            col.and_then(|c| record.get(c))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let id_number = cell(id_col);
        let credit_code = cell(credit_col);
        let kind = match cell(kind_col).as_deref() {
            Some("person") => Ok(adapters::model::SubjectKind::Person),
            Some("organization") => Ok(adapters::model::SubjectKind::Organization),
            Some(other) => Err(ApiError::bad_request(
                "invalid_field",
                format!("{other:?} is no kind of subject (person or organization)"),
            )
            .with_field("subject.kind")),
            None if credit_code.is_some() && id_number.is_none() => {
                Ok(adapters::model::SubjectKind::Organization)
            }
            None => Ok(adapters::model::SubjectKind::Person),
        };
        let subject = kind.map(|kind| BatchSubject {
            case_number: cell(Some(case_col)).unwrap_or_default(),
            subject: SubjectBody {
                kind,
                name: cell(Some(name_col)).unwrap_or_default(),
                id_number,
                credit_code,
            },
        });
        lines.push((line, subject));
    }
    Ok(ParsedBatch {
        officers,
        asset_kinds,
        agencies,
        lines,
    })
}

/// A batch checked: its subjects ready to store, with their lines, and
/// the lines refused.
#[derive(Debug)]
pub struct CheckedBatch {
    pub officers: Vec<adapters::model::Officer>,
    pub asset_kinds: Vec<AssetKind>,
    pub lines: i64,
    pub last_line: i64,
    pub accepted: Vec<(i64, NewInquiry)>,
    pub refused: Vec<RefusedLine>,
}

/// Errors of a subject's check that are the batch's, not the line's: the
/// same for every line, so the batch is refused whole.
fn is_common(error: &ApiError) -> bool {
    let field = error.field.as_deref().unwrap_or("");
    ["officers", "asset_kinds", "agencies"]
        .iter()
        .any(|f| field.starts_with(f))
        || matches!(error.code, "no_asset_kinds" | "no_agency_serves")
}

/// Checks a batch against the agency set: what is common first (an error
/// there refuses the whole batch), then each subject as a single inquiry.
pub fn check(mut parsed: ParsedBatch, agencies: &AgencyRegistry) -> Result<CheckedBatch, ApiError> {
    if parsed.lines.is_empty() {
        return Err(
            ApiError::unprocessable("no_subjects", "the batch names no subject")
                .with_field("subjects"),
        );
    }
    if parsed.lines.len() > MAX_SUBJECTS {
        return Err(ApiError::unprocessable(
            "too_many_subjects",
            format!(
                "a batch names at most {MAX_SUBJECTS} subjects; this one names {}",
                parsed.lines.len()
            ),
        )
        .with_field("subjects"));
    }
    normalise_officers(&mut parsed.officers)?;
    let officers = validate_officers(&parsed.officers, 1)?;
    let lines = parsed.lines.len() as i64;
    let last_line = parsed.lines.iter().map(|(l, _)| *l).max().unwrap_or(0);
    let mut accepted = Vec::with_capacity(parsed.lines.len());
    let mut refused = Vec::new();
    let mut asset_kinds = None;
    for (line, subject) in parsed.lines {
        let checked = subject.and_then(|s| {
            let mut body = InquiryBody {
                case_number: s.case_number,
                subject: s.subject,
                officers: parsed.officers.clone(),
                asset_kinds: parsed.asset_kinds.clone(),
                agencies: parsed.agencies.clone(),
            };
            body.normalise()?;
            Ok(body.validate(agencies)?)
        });
        match checked {
            Ok(new) => {
                asset_kinds.get_or_insert_with(|| new.asset_kinds.clone());
                accepted.push((line, new));
            }
            Err(e) if is_common(&e) => return Err(e),
            Err(e) => refused.push(RefusedLine {
                line,
                code: e.code.to_owned(),
                message: e.message.clone(),
                field: e.field.clone(),
            }),
        }
    }
    Ok(CheckedBatch {
        officers,
        asset_kinds: asset_kinds.unwrap_or_else(|| {
            parsed
                .asset_kinds
                .unwrap_or_else(|| AssetKind::ALL.to_vec())
        }),
        lines,
        last_line,
        accepted,
        refused,
    })
}

/// A batch as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    #[schema(example = "bat_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub id: String,
    /// `running` until every accepted subject's inquiry completed.
    #[schema(example = "running")]
    pub status: &'static str,
    pub created_at: String,
    /// Subjects the request named.
    pub lines: i64,
    /// Subjects accepted, each an inquiry.
    pub accepted: i64,
    /// Subjects refused, each listed in `refused_lines`.
    pub refused: i64,
    /// The accepted subjects by their inquiry's status.
    pub subjects: SubjectCounts,
    /// Every agency's part, over all subjects, by status.
    pub progress: inquiry::Progress,
    /// By agency: how many of its parts stand at each status
    /// (`pending`, `answered`, `no_record`, `refused`, `timeout` ...).
    pub agencies: Vec<AgencyCounts>,
    /// Subjects refused: their line and error.
    pub refused_lines: Vec<RefusedLine>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct SubjectCounts {
    pub running: i64,
    pub completed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgencyCounts {
    pub agency: String,
    pub total: i64,
    #[schema(value_type = Object, example = json!({"answered": 9980, "pending": 20}))]
    pub statuses: BTreeMap<String, i64>,
}

pub fn view(record: &BatchRecord, counts: &BatchCounts, with_refused: bool) -> BatchView {
    let mut subjects = SubjectCounts::default();
    for (status, n) in &counts.inquiries {
        match status {
            InquiryStatus::Running => subjects.running += n,
            InquiryStatus::Completed => subjects.completed += n,
        }
    }
    let mut progress = inquiry::Progress::default();
    let mut agencies: Vec<AgencyCounts> = Vec::new();
    for (agency, state, n) in &counts.tasks {
        let status = state.agency_status();
        let n_usize = usize::try_from(*n).unwrap_or(0);
        progress.total += n_usize;
        if !status.is_final() {
            progress.pending += n_usize;
        } else if status.is_answer() {
            progress.answered += n_usize;
        } else {
            progress.failed += n_usize;
        }
        if agencies.last().is_none_or(|a| &a.agency != agency) {
            agencies.push(AgencyCounts {
                agency: agency.clone(),
                total: 0,
                statuses: BTreeMap::new(),
            });
        }
        if let Some(a) = agencies.last_mut() {
            a.total += n;
            *a.statuses.entry(status.as_str().to_owned()).or_default() += n;
        }
    }
    BatchView {
        id: record.id.clone(),
        status: if subjects.running > 0 {
            "running"
        } else {
            "completed"
        },
        created_at: inquiry::timestamp(record.created_at_ms),
        lines: record.lines,
        accepted: record.accepted,
        refused: record.refused.len() as i64,
        subjects,
        progress,
        agencies,
        refused_lines: if with_refused {
            record.refused.clone()
        } else {
            Vec::new()
        },
    }
}

/// One line of a batch's results: the subject's inquiry as
/// `GET /v1/inquiries/{id}` shows it, or the error that refused the line.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub line: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inquiry: Option<InquiryView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RefusedLine>,
}

pub fn result(record: &InquiryRecord, tasks: &[TaskRecord]) -> Result<BatchResult, String> {
    Ok(BatchResult {
        line: record.batch_line.unwrap_or_default(),
        inquiry: Some(inquiry::view(record, tasks)?),
        error: None,
    })
}

pub fn refused_result(line: &RefusedLine) -> BatchResult {
    BatchResult {
        line: line.line,
        inquiry: None,
        error: Some(line.clone()),
    }
}

/// The CSV results' columns: one row per asset found, one per agency part
/// that found none, one per refused line.
pub const CSV_COLUMNS: [&str; 15] = [
    "line",
    "case_number",
    "subject_kind",
    "subject_name",
    "subject_id",
    "inquiry_id",
    "inquiry_status",
    "agency",
    "agency_status",
    "detail",
    "asset_kind",
    "asset",
    "balance_fen",
    "measures",
    "error",
];

/// The field that names an asset of each kind.
fn asset_key(asset: &serde_json::Value) -> String {
    const KEYS: [&str; 8] = [
        "account_number",
        "unit_number",
        "vin",
        "securities_account",
        "payment_account",
        "fund_account",
        "company_credit_code",
        "company_name",
    ];
    let mut parts = KEYS
        .iter()
        .filter_map(|k| asset.get(*k).and_then(|v| v.as_str()))
        .take(1)
        .map(str::to_owned)
        .collect::<Vec<_>>();
    if let Some(code) = asset.get("security_code").and_then(|v| v.as_str()) {
        parts.push(code.to_owned());
    }
    parts.join("/")
}

/// The CSV rows of one result.
pub fn csv_rows(result: &BatchResult) -> Vec<[String; 15]> {
    let line = result.line.to_string();
    if let Some(error) = &result.error {
        let mut row: [String; 15] = Default::default();
        row[0] = line;
        row[14] = format!("{}: {}", error.code, error.message);
        return vec![row];
    }
    let Some(view) = &result.inquiry else {
        return Vec::new();
    };
    let text =
        |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let subject_id = text(view.subject.get("id_number")) + &text(view.subject.get("credit_code"));
    let base = |agency: &inquiry::AgencyView| -> [String; 15] {
        [
            line.clone(),
            view.case_number.clone(),
            text(view.subject.get("kind")),
            text(view.subject.get("name")),
            subject_id.clone(),
            view.id.clone(),
            view.status.as_str().to_owned(),
            agency.agency.clone(),
            agency.status.clone(),
            agency.detail.clone().unwrap_or_default(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]
    };
    let mut rows = Vec::new();
    for agency in &view.agencies {
        let found: Vec<&serde_json::Value> = view
            .assets
            .iter()
            .filter(|a| a.get("agency").and_then(|v| v.as_str()) == Some(&agency.agency))
            .collect();
        if found.is_empty() {
            rows.push(base(agency));
        }
        for asset in found {
            let mut row = base(agency);
            row[10] = text(asset.get("kind"));
            row[11] = asset_key(asset);
            row[12] = asset
                .get("balance_fen")
                .and_then(|v| v.as_i64())
                .map(|v| v.to_string())
                .unwrap_or_default();
            row[13] = asset
                .get("measures")
                .and_then(|v| v.as_array())
                .map_or(0, Vec::len)
                .to_string();
            rows.push(row);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_file_gives_its_header_block_and_numbers_its_lines_as_in_the_file() {
        let csv = "\u{feff}# officer: 李明, G620503001, ZX620503001\n\
                   # officer: 王强, G620503002, ZX620503002\n\
                   # asset_kinds: bank_account, real_estate\n\
                   \n\
                   case_number,kind,name,id_number,credit_code\n\
                   (2024)甘0503执1234号,person,张三,360426199101010071,\n\
                   \n\
                   (2024)甘0503执1235号,,示例有限公司,,91110000600037341L\n\
                   (2024)甘0503执1236号,robot,某,,\n";
        let parsed = parse_csv(csv.as_bytes()).expect("a batch");
        assert_eq!(parsed.officers.len(), 2);
        assert_eq!(parsed.officers[1].credential_no, "ZX620503002");
        assert_eq!(
            parsed.asset_kinds,
            Some(vec![AssetKind::BankAccount, AssetKind::RealEstate])
        );
        let lines: Vec<i64> = parsed.lines.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![6, 8, 9]);
        let second = parsed.lines[1].1.as_ref().expect("line 8 parses");
        assert_eq!(
            second.subject.kind,
            adapters::model::SubjectKind::Organization
        );
        let third = parsed.lines[2].1.as_ref().expect_err("line 9 has no kind");
        assert_eq!(third.field.as_deref(), Some("subject.kind"));
    }

    #[test]
    fn a_csv_file_with_unknown_columns_or_bad_officers_is_refused_whole() {
        let unknown = "case_number,name,email\nx,y,z\n";
        assert_eq!(
            parse_csv(unknown.as_bytes()).expect_err("refused").code,
            "malformed_csv"
        );
        let officer = "# officer: 李明\ncase_number,name\n";
        assert_eq!(
            parse_csv(officer.as_bytes())
                .expect_err("refused")
                .field
                .as_deref(),
            Some("officers")
        );
        assert_eq!(
            parse_csv(b"\xff\xfe").expect_err("refused").code,
            "malformed_csv"
        );
    }

    #[test]
    fn a_json_subject_of_the_wrong_shape_is_refused_alone() {
        let body: BatchBody = serde_json::from_value(serde_json::json!({
            "officers": [],
            "subjects": [
                {"case_number": "x", "subject": {"kind": "person", "name": "a", "id_number": "1"}},
                {"case_number": 5, "subject": {}},
                {"case_number": "x", "subject": {"kind": "person", "name": "a"}, "extra": 1}
            ]
        }))
        .expect("the body parses");
        let parsed = ParsedBatch::from(body);
        assert!(parsed.lines[0].1.is_ok());
        let second = parsed.lines[1].1.as_ref().expect_err("a number as case");
        assert_eq!(second.field.as_deref(), Some("case_number"));
        assert!(parsed.lines[2].1.is_err());
        assert_eq!(parsed.lines[2].0, 3);
    }
}
