//! Inquiries: the request body, its validation into domain values, how an
//! inquiry is stored, and how its tasks merge into the answer the caller sees.

use adapters::dialect::InquiryRequest;
use adapters::ids::{CaseNumber, CreditCode, IdNumber};
use adapters::model::{AgencyStatus, AssetKind, Court, Officer, Subject, SubjectKind};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agencies::AgencyRegistry;
use crate::input;
use crate::rules::BrokenRule;
use crate::store::{InquiryRecord, InquiryStatus, TaskRecord};

/// `POST /v1/inquiries` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "case_number": "(2024)甘0503执1234号",
    "subject": {"kind": "person", "name": "张三", "id_number": "360426199101010071"},
    "officers": [{"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"}],
    "asset_kinds": ["bank_account", "real_estate"],
    "agencies": ["bank-a", "bank-b", "registry-x"]
}))]
pub struct InquiryBody {
    /// The case the inquiry is made under: `(year)court code, case type,
    /// serial号`.
    #[schema(max_length = 64, example = "(2024)甘0503执1234号")]
    pub case_number: String,
    #[serde(deserialize_with = "input::object")]
    pub subject: SubjectBody,
    /// The officers acting: at least one; no officer twice.
    #[serde(default, deserialize_with = "input::objects")]
    #[schema(min_items = 1, max_items = 10)]
    pub officers: Vec<OfficerBody>,
    /// The kinds of asset asked about (default: every kind), each once.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 16)]
    pub asset_kinds: Option<Vec<AssetKind>>,
    /// The agencies to ask (default: every enabled agency serving those
    /// kinds).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 10000, inline, value_type = Option<Vec<AgencyId>>)]
    pub agencies: Option<Vec<String>>,
}

/// An agency's id, as `GET /v1/agencies` lists it.
#[derive(ToSchema)]
#[schema(max_length = 64, min_length = 1, example = "bank-a")]
#[allow(dead_code)]
pub struct AgencyId(String);

/// The subject asked about: a person (with `id_number`) or an
/// organisation (with `credit_code`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectBody {
    pub kind: SubjectKind,
    #[schema(min_length = 1, max_length = 100, example = "张三")]
    pub name: String,
    /// A person's resident identity number: 18 characters with a valid
    /// check character (15-digit legacy numbers are accepted with a
    /// warning).
    #[serde(default)]
    #[schema(max_length = 32, example = "360426199101010071")]
    pub id_number: Option<String>,
    /// An organisation's unified social credit code (18 characters).
    #[serde(default)]
    #[schema(max_length = 32, example = "91110000600037341L")]
    pub credit_code: Option<String>,
}

/// An officer acting in the request, with the work card and enforcement
/// credential the agencies keep on file. Credentials and work cards are
/// compared in NFKC, trimmed and in one letter case.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfficerBody {
    #[schema(min_length = 1, max_length = 100, example = "李明")]
    pub name: String,
    #[schema(min_length = 1, max_length = 32, example = "G620503001")]
    pub work_card_no: String,
    #[schema(min_length = 1, max_length = 32, example = "ZX620503001")]
    pub credential_no: String,
}

impl SubjectBody {
    /// Cleans the subject's text in place (module `input`).
    pub fn normalise(&mut self, at: &str) -> Result<(), BrokenRule> {
        self.name = input::text(&format!("{at}.name"), &self.name, input::NAME_MAX)?;
        input::optional_folded(
            &format!("{at}.id_number"),
            &mut self.id_number,
            input::SUBJECT_ID_MAX,
        )?;
        input::optional_folded(
            &format!("{at}.credit_code"),
            &mut self.credit_code,
            input::SUBJECT_ID_MAX,
        )
    }
}

/// Cleans officers' text in place: names as text, numbers as identifiers.
pub fn normalise_officers(officers: &mut [OfficerBody]) -> Result<(), BrokenRule> {
    input::bounded("officers", officers, input::OFFICERS_MAX)?;
    for (i, o) in officers.iter_mut().enumerate() {
        o.name = input::text(&format!("officers[{i}].name"), &o.name, input::NAME_MAX)?;
        o.work_card_no = input::folded(
            &format!("officers[{i}].work_card_no"),
            &o.work_card_no,
            input::CREDENTIAL_MAX,
        )?;
        o.credential_no = input::folded(
            &format!("officers[{i}].credential_no"),
            &o.credential_no,
            input::CREDENTIAL_MAX,
        )?;
    }
    Ok(())
}

impl input::Normalise for InquiryBody {
    fn normalise(&mut self) -> Result<(), BrokenRule> {
        self.case_number = input::text("case_number", &self.case_number, input::CASE_NUMBER_MAX)?;
        self.subject.normalise("subject")?;
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

/// A validated inquiry, ready to store.
#[derive(Debug)]
pub struct NewInquiry {
    pub case_number: CaseNumber,
    pub subject: Subject,
    pub officers: Vec<Officer>,
    pub asset_kinds: Vec<AssetKind>,
    pub agencies: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks a subject and returns it with any warnings (legacy identity
/// number, credit code failing its checksum).
pub fn validate_subject(body: &SubjectBody) -> Result<(Subject, Vec<String>), BrokenRule> {
    let mut warnings = Vec::new();
    let name = body.name.trim();
    if name.is_empty() {
        return Err(BrokenRule::SubjectNameRequired);
    }
    let subject = match body.kind {
        SubjectKind::Person => {
            if body.credit_code.is_some() {
                return Err(BrokenRule::PersonWithCreditCode);
            }
            let raw = body
                .id_number
                .as_deref()
                .ok_or(BrokenRule::IdNumberRequired)?;
            let id_number = IdNumber::parse(raw).map_err(BrokenRule::InvalidIdNumber)?;
            if id_number.is_legacy() {
                warnings.push(
                    "subject.id_number is a legacy 15-digit number; agencies may hold records \
                     under the 18-digit form, so absence of records is less certain"
                        .to_owned(),
                );
            }
            Subject::Person {
                name: name.to_owned(),
                id_number,
            }
        }
        SubjectKind::Organization => {
            if body.id_number.is_some() {
                return Err(BrokenRule::OrganizationWithIdNumber);
            }
            let raw = body
                .credit_code
                .as_deref()
                .ok_or(BrokenRule::CreditCodeRequired)?;
            let credit_code = CreditCode::parse(raw).map_err(BrokenRule::InvalidCreditCode)?;
            if !credit_code.checksum_ok() {
                warnings.push(
                    "subject.credit_code fails its checksum; accepted because some early codes \
                     are legally valid that way, but check it against the registration"
                        .to_owned(),
                );
            }
            Subject::Organization {
                name: name.to_owned(),
                credit_code,
            }
        }
    };
    Ok((subject, warnings))
}

/// Checks the officers acting in a request: at least `minimum`, each with
/// both numbers.
pub fn validate_officers(
    officers: &[OfficerBody],
    minimum: usize,
) -> Result<Vec<Officer>, BrokenRule> {
    if officers.len() < minimum {
        return Err(BrokenRule::TooFewOfficers { minimum });
    }
    let officers = officers
        .iter()
        .enumerate()
        .map(|(i, o)| {
            for (field, value) in [
                ("name", &o.name),
                ("work_card_no", &o.work_card_no),
                ("credential_no", &o.credential_no),
            ] {
                if value.trim().is_empty() {
                    return Err(BrokenRule::Empty {
                        field: format!("officers[{i}].{field}"),
                    });
                }
            }
            Ok(Officer {
                name: o.name.trim().to_owned(),
                work_card_no: o.work_card_no.trim().to_owned(),
                credential_no: o.credential_no.trim().to_owned(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Numbers arrive normalised (NFKC, trimmed, one letter case), so one
    // officer is caught however the request spells them.
    for (i, o) in officers.iter().enumerate() {
        for (field, same) in [
            (
                "credential_no",
                officers[..i]
                    .iter()
                    .any(|p| p.credential_no == o.credential_no),
            ),
            (
                "work_card_no",
                officers[..i]
                    .iter()
                    .any(|p| p.work_card_no == o.work_card_no),
            ),
        ] {
            if same {
                return Err(BrokenRule::DuplicateOfficer {
                    index: i,
                    number: field,
                });
            }
        }
    }
    Ok(officers)
}

impl InquiryBody {
    pub fn validate(&self, agencies: &AgencyRegistry) -> Result<NewInquiry, BrokenRule> {
        let case_number =
            CaseNumber::parse(&self.case_number).map_err(BrokenRule::InvalidCaseNumber)?;
        let (subject, warnings) = validate_subject(&self.subject)?;
        let officers = validate_officers(&self.officers, 1)?;
        let asset_kinds = match &self.asset_kinds {
            None => AssetKind::ALL.to_vec(),
            Some(k) if k.is_empty() => {
                return Err(BrokenRule::NoAssetKinds);
            }
            Some(k) => {
                // Each kind once, in the order asked.
                let mut unique = Vec::with_capacity(k.len());
                for kind in k {
                    if !unique.contains(kind) {
                        unique.push(*kind);
                    }
                }
                unique
            }
        };
        let targets: Vec<String> = match &self.agencies {
            None => agencies
                .serving(&asset_kinds)
                .into_iter()
                .map(|a| a.id().to_owned())
                .collect(),
            Some(ids) => {
                let mut chosen = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    let field = format!("agencies[{i}]");
                    let agency = agencies.get(id).ok_or_else(|| BrokenRule::UnknownAgency {
                        field: field.clone(),
                        agency: id.clone(),
                    })?;
                    if !agency.config().enabled {
                        return Err(BrokenRule::AgencyDisabled {
                            field,
                            agency: id.clone(),
                        });
                    }
                    if !asset_kinds.contains(&agency.config().asset_kind()) {
                        return Err(BrokenRule::AgencyHoldsOtherKinds {
                            index: i,
                            agency: id.clone(),
                        });
                    }
                    if !chosen.contains(id) {
                        chosen.push(id.clone());
                    }
                }
                chosen
            }
        };
        if targets.is_empty() {
            return Err(BrokenRule::NoAgencyServes);
        }
        Ok(NewInquiry {
            case_number,
            subject,
            officers,
            asset_kinds,
            agencies: targets,
            warnings,
        })
    }
}

/// The request number for one agency's part of an inquiry. Derived from the
/// inquiry and the agency, never from an attempt, so a retry is recognisable.
pub fn request_number(inquiry_id: &str, agency: &str) -> String {
    format!("Q{}-{agency}", inquiry_id.trim_start_matches("inq_"))
}

/// How officers appear in the audit log: name and credential number.
pub fn officer_labels(officers: &[Officer]) -> Vec<String> {
    officers
        .iter()
        .map(|o| format!("{} ({}/{})", o.name, o.work_card_no, o.credential_no))
        .collect()
}

pub fn new_record(
    id: &str,
    caller: &str,
    court: &Court,
    inquiry: &NewInquiry,
    now_ms: i64,
    deadline_ms: i64,
    catalog_version: &str,
) -> InquiryRecord {
    InquiryRecord {
        id: id.to_owned(),
        caller: caller.to_owned(),
        case_number: inquiry.case_number.as_str().to_owned(),
        subject: inquiry.subject.clone(),
        officers: inquiry.officers.clone(),
        asset_kinds: inquiry.asset_kinds.clone(),
        court: court.clone(),
        warnings: inquiry.warnings.clone(),
        status: InquiryStatus::Running,
        created_at_ms: now_ms,
        deadline_at_ms: deadline_ms,
        completed_at_ms: None,
        catalog_version: Some(catalog_version.to_owned()),
        batch_id: None,
        batch_line: None,
    }
}

/// Rebuilds the domain request from a stored inquiry (for dispatch after a
/// restart as much as right away).
pub fn stored_request(
    record: &InquiryRecord,
    request_number: &str,
) -> Result<(InquiryRequest, Court), String> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        format!("stored inquiry {}: {what}: {e}", record.id)
    };
    let case_number =
        CaseNumber::parse(&record.case_number).map_err(|e| corrupt("case number", &e))?;
    Ok((
        InquiryRequest {
            request_number: request_number.to_owned(),
            case_number,
            subject: record.subject.clone(),
            officers: record.officers.clone(),
        },
        record.court.clone(),
    ))
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The inquiry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InquiryView {
    #[schema(example = "inq_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub id: String,
    pub case_number: String,
    #[schema(value_type = crate::api::schema::SubjectView)]
    pub subject: serde_json::Value,
    /// `running` until every agency answered or the deadline passed, then
    /// `completed`.
    #[schema(value_type = String)]
    pub status: InquiryStatus,
    pub created_at: String,
    pub deadline_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub progress: Progress,
    pub agencies: Vec<AgencyView>,
    #[schema(value_type = Vec<crate::api::schema::AssetView>)]
    pub assets: Vec<serde_json::Value>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Progress {
    pub total: usize,
    pub answered: usize,
    pub failed: usize,
    pub pending: usize,
}

/// One agency's part of an inquiry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgencyView {
    pub agency: String,
    #[schema(value_type = AgencyStatus)]
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    pub request_number: String,
}

pub fn view(record: &InquiryRecord, tasks: &[TaskRecord]) -> Result<InquiryView, String> {
    let mut progress = Progress {
        total: tasks.len(),
        ..Progress::default()
    };
    let mut agencies = Vec::with_capacity(tasks.len());
    let mut assets = Vec::new();
    for task in tasks {
        let status = task.state.agency_status();
        if !status.is_final() {
            progress.pending += 1;
        } else if status.is_answer() {
            progress.answered += 1;
        } else {
            progress.failed += 1;
        }
        if let Some(found) = &task.result {
            for asset in found {
                let mut value = serde_json::to_value(asset).map_err(|e| e.to_string())?;
                if let Some(map) = value.as_object_mut() {
                    map.insert("agency".into(), task.agency.clone().into());
                }
                assets.push(value);
            }
        }
        agencies.push(AgencyView {
            agency: task.agency.clone(),
            status: status.as_str().to_owned(),
            detail: task.detail.clone(),
            latency_ms: task.latency_ms,
            request_number: task.request_number.clone(),
        });
    }
    let id_key = match record.subject.kind() {
        SubjectKind::Person => "id_number",
        SubjectKind::Organization => "credit_code",
    };
    let subject = serde_json::json!({
        "kind": record.subject.kind(),
        "name": record.subject.name(),
        id_key: record.subject.identifier(),
    });
    Ok(InquiryView {
        id: record.id.clone(),
        case_number: record.case_number.clone(),
        subject,
        status: record.status,
        created_at: rfc3339(record.created_at_ms),
        deadline_at: rfc3339(record.deadline_at_ms),
        completed_at: record.completed_at_ms.map(rfc3339),
        progress,
        agencies,
        assets,
        warnings: record.warnings.clone(),
    })
}

pub fn timestamp(ms: i64) -> String {
    rfc3339(ms)
}
