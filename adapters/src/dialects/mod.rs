//! The dialects of the first release, and building one from an agency file.

mod bank_json;
mod court_bank_xml;
mod registry_json;

use std::sync::Arc;

pub use bank_json::BankJson;
pub use court_bank_xml::CourtBankXml;
pub use registry_json::RegistryJson;

use crate::agency::AgencyConfig;
use crate::dialect::Dialect;
use crate::model::Subject;

/// The dialect names agency files may use.
pub const KNOWN: [&str; 3] = ["court-bank-xml", "bank-json", "registry-json"];

/// Builds the dialect an agency speaks, with that agency's options.
pub fn for_agency(agency: &AgencyConfig) -> Result<Arc<dyn Dialect>, String> {
    match agency.dialect.as_str() {
        "court-bank-xml" => {
            let label = agency.encoding.as_deref().unwrap_or("UTF-8");
            Ok(Arc::new(CourtBankXml::new(label, agency.max_batch)?))
        }
        "bank-json" => Ok(Arc::new(BankJson)),
        "registry-json" => Ok(Arc::new(RegistryJson)),
        other => Err(format!(
            "unknown dialect {other:?} (known: {})",
            KNOWN.join(", ")
        )),
    }
}

/// The identity document type code (ZJZL) shared by the pinyin-tag formats.
pub(crate) fn wire_id_type(subject: &Subject) -> &'static str {
    match subject {
        Subject::Person { .. } => "01",
        Subject::Organization { .. } => "02",
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::dialect::{Envelope, InquiryRequest};
    use crate::ids::{CaseNumber, IdNumber};
    use crate::model::{Court, Officer, Subject};

    pub fn envelope() -> Envelope {
        Envelope {
            court: Court {
                code: "甘0503".into(),
                name: "天水市麦积区人民法院".into(),
            },
            batch_number: "P1".into(),
        }
    }

    pub fn request(request_number: &str, id: &str) -> InquiryRequest {
        InquiryRequest {
            request_number: request_number.into(),
            case_number: CaseNumber::parse("(2024)甘0503执1234号").expect("case"),
            subject: Subject::Person {
                name: if id.starts_with("3604") {
                    "张三"
                } else {
                    "王五"
                }
                .into(),
                id_number: IdNumber::parse(id).expect("id"),
            },
            officers: vec![Officer {
                name: "李明".into(),
                work_card_no: "G620503001".into(),
                credential_no: "ZX620503001".into(),
            }],
        }
    }
}
