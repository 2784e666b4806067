//! How a broken rule is answered: its status, `code`, `field` and details
//! in the API's error shape (api.md). The message is the rule's own text.
//!
//! Every rule is a 422 except a release or renewal still on its way (409:
//! wait for it, then send again) and an inconsistency found while checking
//! (500: not the request's fault). What this module must never do: answer
//! a rule with a code or field other than the one api.md documents.

use axum::http::StatusCode;
use serde_json::json;

use crate::error::ApiError;
use crate::rules::BrokenRule;

/// The status, `code` and `field` of a broken rule.
fn answer(rule: &BrokenRule) -> (StatusCode, &'static str, Option<String>) {
    use BrokenRule as R;
    let invalid = |field: &str| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            Some(field.to_owned()),
        )
    };
    let refused = |code: &'static str, field: &str| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            Some(field.to_owned()),
        )
    };
    // No wildcard: a new rule does not compile until it has its answer.
    match rule {
        R::InvalidCharacters { field, .. } => refused("invalid_characters", field),
        R::TooLong { field, .. } => refused("too_long", field),
        R::Empty { field } => invalid(field),
        R::TooMany { field, .. } => refused("too_many", field),
        R::AmountTooLarge { field } => refused("amount_too_large", field),
        R::InvalidDate { field } => invalid(field),

        R::InvalidCaseNumber(_) => invalid("case_number"),
        R::SubjectNameRequired => invalid("subject.name"),
        R::PersonWithCreditCode => invalid("subject.credit_code"),
        R::IdNumberRequired => invalid("subject.id_number"),
        R::InvalidIdNumber(_) => invalid("subject.id_number"),
        R::OrganizationWithIdNumber => invalid("subject.id_number"),
        R::CreditCodeRequired => invalid("subject.credit_code"),
        R::InvalidCreditCode(_) => invalid("subject.credit_code"),

        R::TooFewOfficers { .. } => invalid("officers"),
        R::TooFewControlOfficers { .. } => refused("too_few_officers", "officers"),
        R::DuplicateOfficer { index, number } => {
            refused("duplicate_officer", &format!("officers[{index}].{number}"))
        }

        R::UnknownDocumentKind { index, .. } | R::DocumentNamedTwice { index, .. } => {
            invalid(&format!("documents[{index}].kind"))
        }
        R::DocumentNumberMissing { index, .. } => invalid(&format!("documents[{index}].number")),
        R::DocumentDigestInvalid { index, .. } => invalid(&format!("documents[{index}].sha256")),
        R::MissingDocument { .. } => refused("missing_document", "documents"),

        R::UnknownAgency { field, .. } | R::AgencyDisabled { field, .. } => invalid(field),
        R::NoAssetKinds => invalid("asset_kinds"),
        R::AgencyHoldsOtherKinds { index, .. } => invalid(&format!("agencies[{index}]")),
        R::NoAgencyServes => invalid("agencies"),

        R::PriorOrderNotAllowed { .. } => invalid("prior_order"),
        R::PriorOrderRequired { .. } => refused("prior_order_required", "prior_order"),
        R::UnknownPriorOrder { .. } => refused("unknown_prior_order", "prior_order"),
        R::PriorOrderOtherCase { .. } => refused("prior_order_other_case", "prior_order"),
        R::PriorOrderWrongAction { .. } => refused("prior_order_wrong_action", "prior_order"),
        R::PriorOrderOtherSubject => refused("prior_order_other_subject", "subject"),

        R::AgencyNotTheMeasures { .. } => invalid("agency"),
        R::AgencyRequired => invalid("agency"),
        R::AssetNotTheMeasures => invalid("asset"),
        R::AssetRequired => invalid("asset"),
        R::AgencyHoldsNoSuchAsset { .. } => invalid("action"),
        R::ActionNotTaken { .. } => invalid("action"),
        R::AgencyCannotBeQueried { .. } => invalid("agency"),
        R::AssetNamedWrongly { field, .. } => invalid(field),

        R::AmountRequired { .. } => refused("amount_required", "amount_fen"),
        R::AmountNotPositive => refused("amount_not_positive", "amount_fen"),
        R::AmountNotAllowed { .. } => invalid("amount_fen"),
        R::AmountNotForKind { .. } => invalid("amount_fen"),
        R::QuantityRequired => refused("quantity_required", "quantity"),
        R::QuantityNotPositive => refused("quantity_not_positive", "quantity"),
        R::QuantityNotAllowed { .. } => invalid("quantity"),
        R::DeductionFromFreezeNotInForce { .. } => refused("measure_not_in_force", "prior_order"),
        R::DeductionExceedsFreeze { .. } => refused("deduction_exceeds_freeze", "amount_fen"),

        R::EndDateRequired { .. } | R::RenewalEndDateRequired => {
            refused("end_date_required", "end_date")
        }
        R::EndDateNotAllowed { .. } => invalid("end_date"),
        R::EndBeforeStart { .. } | R::EndBeforeToday { .. } => {
            refused("end_date_in_past", "end_date")
        }
        R::TermTooLong { .. } => refused("term_too_long", "end_date"),

        R::RenewalOfMeasureNotLive { .. }
        | R::MeasureEndUnknown
        | R::MeasureNotLive { .. }
        | R::MeasureReleased { .. } => refused("measure_not_in_force", "prior_order"),
        R::RenewalTooLate { .. } => refused("renewal_too_late", "prior_order"),
        R::RenewalEndsTooEarly { .. } => refused("end_date_too_early", "end_date"),
        R::ReleasePending { .. } => (
            StatusCode::CONFLICT,
            "release_pending",
            Some("prior_order".to_owned()),
        ),
        R::RenewalPending { .. } => (
            StatusCode::CONFLICT,
            "renewal_pending",
            Some("prior_order".to_owned()),
        ),

        R::UnknownInquiry { .. } => refused("unknown_inquiry", "inquiry"),
        R::InquiryOtherCase { .. } => refused("inquiry_other_case", "inquiry"),
        R::InquiryOtherSubject => refused("inquiry_other_subject", "inquiry"),
        R::InquiryRunning => refused("inquiry_running", "inquiry"),
        R::NoAccounts { .. } => refused("no_accounts", "inquiry"),

        R::Inconsistent(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
    }
}

impl From<BrokenRule> for ApiError {
    fn from(rule: BrokenRule) -> Self {
        let (status, code, field) = answer(&rule);
        let mut error = ApiError::new(status, code, rule.to_string());
        error.field = field;
        if let BrokenRule::NoAccounts { skipped } = rule {
            error = error.with_details(json!({ "skipped": skipped }));
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use adapters::control::ControlAction;
    use adapters::ids::IdError;
    use adapters::model::AssetKind;
    use axum::response::IntoResponse;
    use chrono::NaiveDate;

    use super::*;
    use crate::store::{OrderStatus, SkippedAccount};

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap_or_default()
    }

    /// Every rule, with the status, code and field it is answered with.
    fn table() -> Vec<(BrokenRule, StatusCode, &'static str, Option<&'static str>)> {
        use BrokenRule as R;
        const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
        let freeze = ControlAction::Freeze;
        let s = String::from;
        vec![
            (
                R::InvalidCharacters {
                    field: s("subject.name"),
                    character: '\u{200B}',
                },
                UNPROCESSABLE,
                "invalid_characters",
                Some("subject.name"),
            ),
            (
                R::TooLong {
                    field: s("case_number"),
                    max: 64,
                },
                UNPROCESSABLE,
                "too_long",
                Some("case_number"),
            ),
            (
                R::Empty {
                    field: s("officers[1].credential_no"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("officers[1].credential_no"),
            ),
            (
                R::TooMany {
                    field: s("officers"),
                    count: 11,
                    max: 10,
                },
                UNPROCESSABLE,
                "too_many",
                Some("officers"),
            ),
            (
                R::AmountTooLarge {
                    field: s("amount_fen"),
                },
                UNPROCESSABLE,
                "amount_too_large",
                Some("amount_fen"),
            ),
            (
                R::InvalidDate {
                    field: s("end_date"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("end_date"),
            ),
            (
                R::InvalidCaseNumber(IdError::CaseFormat),
                UNPROCESSABLE,
                "invalid_value",
                Some("case_number"),
            ),
            (
                R::SubjectNameRequired,
                UNPROCESSABLE,
                "invalid_value",
                Some("subject.name"),
            ),
            (
                R::PersonWithCreditCode,
                UNPROCESSABLE,
                "invalid_value",
                Some("subject.credit_code"),
            ),
            (
                R::IdNumberRequired,
                UNPROCESSABLE,
                "invalid_value",
                Some("subject.id_number"),
            ),
            (
                R::InvalidIdNumber(IdError::IdChecksum { expected: 'X' }),
                UNPROCESSABLE,
                "invalid_value",
                Some("subject.id_number"),
            ),
            (
                R::OrganizationWithIdNumber,
                UNPROCESSABLE,
                "invalid_value",
                Some("subject.id_number"),
            ),
            (
                R::CreditCodeRequired,
                UNPROCESSABLE,
                "invalid_value",
                Some("subject.credit_code"),
            ),
            (
                R::InvalidCreditCode(IdError::CreditLength(17)),
                UNPROCESSABLE,
                "invalid_value",
                Some("subject.credit_code"),
            ),
            (
                R::TooFewOfficers { minimum: 1 },
                UNPROCESSABLE,
                "invalid_value",
                Some("officers"),
            ),
            (
                R::TooFewControlOfficers { minimum: 2 },
                UNPROCESSABLE,
                "too_few_officers",
                Some("officers"),
            ),
            (
                R::DuplicateOfficer {
                    index: 1,
                    number: "credential_no",
                },
                UNPROCESSABLE,
                "duplicate_officer",
                Some("officers[1].credential_no"),
            ),
            (
                R::UnknownDocumentKind {
                    index: 0,
                    kind: s("warrant"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("documents[0].kind"),
            ),
            (
                R::DocumentNamedTwice {
                    index: 1,
                    kind: s("ruling"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("documents[1].kind"),
            ),
            (
                R::DocumentNumberMissing {
                    index: 0,
                    kind: s("ruling"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("documents[0].number"),
            ),
            (
                R::DocumentDigestInvalid {
                    index: 1,
                    kind: s("assist_notice"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("documents[1].sha256"),
            ),
            (
                R::MissingDocument { kind: "ruling" },
                UNPROCESSABLE,
                "missing_document",
                Some("documents"),
            ),
            (
                R::UnknownAgency {
                    field: s("agency"),
                    agency: s("bank-z"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("agency"),
            ),
            (
                R::AgencyDisabled {
                    field: s("agencies[2]"),
                    agency: s("bank-c"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("agencies[2]"),
            ),
            (
                R::NoAssetKinds,
                UNPROCESSABLE,
                "invalid_value",
                Some("asset_kinds"),
            ),
            (
                R::AgencyHoldsOtherKinds {
                    index: 0,
                    agency: s("registry-x"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("agencies[0]"),
            ),
            (
                R::NoAgencyServes,
                UNPROCESSABLE,
                "invalid_value",
                Some("agencies"),
            ),
            (
                R::PriorOrderNotAllowed { action: freeze },
                UNPROCESSABLE,
                "invalid_value",
                Some("prior_order"),
            ),
            (
                R::PriorOrderRequired {
                    action: ControlAction::Release,
                },
                UNPROCESSABLE,
                "prior_order_required",
                Some("prior_order"),
            ),
            (
                R::UnknownPriorOrder { id: s("ord_1") },
                UNPROCESSABLE,
                "unknown_prior_order",
                Some("prior_order"),
            ),
            (
                R::PriorOrderOtherCase {
                    prior_case: s("(2024)甘0503执1号"),
                    case: s("(2024)甘0503执2号"),
                },
                UNPROCESSABLE,
                "prior_order_other_case",
                Some("prior_order"),
            ),
            (
                R::PriorOrderWrongAction {
                    action: ControlAction::ReleaseSeal,
                    wanted: ControlAction::Seal,
                    found: freeze,
                },
                UNPROCESSABLE,
                "prior_order_wrong_action",
                Some("prior_order"),
            ),
            (
                R::PriorOrderOtherSubject,
                UNPROCESSABLE,
                "prior_order_other_subject",
                Some("subject"),
            ),
            (
                R::AgencyNotTheMeasures {
                    measure_agency: s("bank-a"),
                    named: s("bank-b"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("agency"),
            ),
            (
                R::AgencyRequired,
                UNPROCESSABLE,
                "invalid_value",
                Some("agency"),
            ),
            (
                R::AssetNotTheMeasures,
                UNPROCESSABLE,
                "invalid_value",
                Some("asset"),
            ),
            (
                R::AssetRequired,
                UNPROCESSABLE,
                "invalid_value",
                Some("asset"),
            ),
            (
                R::AgencyHoldsNoSuchAsset {
                    action: ControlAction::Seal,
                    held: AssetKind::BankAccount,
                    agency: s("bank-a"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("action"),
            ),
            (
                R::ActionNotTaken {
                    agency: s("bank-a"),
                    dialect: s("bank-a-v1"),
                    action: ControlAction::Deduct,
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("action"),
            ),
            (
                R::AgencyCannotBeQueried {
                    agency: s("bank-a"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("agency"),
            ),
            (
                R::AssetNamedWrongly {
                    kind: AssetKind::BankAccount,
                    field: s("asset.account_number"),
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("asset.account_number"),
            ),
            (
                R::AmountNotForKind {
                    kind: AssetKind::Securities,
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("amount_fen"),
            ),
            (
                R::QuantityRequired,
                UNPROCESSABLE,
                "quantity_required",
                Some("quantity"),
            ),
            (
                R::QuantityNotPositive,
                UNPROCESSABLE,
                "quantity_not_positive",
                Some("quantity"),
            ),
            (
                R::QuantityNotAllowed {
                    action: freeze,
                    kind: AssetKind::BankAccount,
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("quantity"),
            ),
            (
                R::AmountRequired { action: freeze },
                UNPROCESSABLE,
                "amount_required",
                Some("amount_fen"),
            ),
            (
                R::AmountNotPositive,
                UNPROCESSABLE,
                "amount_not_positive",
                Some("amount_fen"),
            ),
            (
                R::AmountNotAllowed {
                    action: ControlAction::Release,
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("amount_fen"),
            ),
            (
                R::DeductionFromFreezeNotInForce {
                    status: OrderStatus::Waiting,
                },
                UNPROCESSABLE,
                "measure_not_in_force",
                Some("prior_order"),
            ),
            (
                R::DeductionExceedsFreeze {
                    amount_fen: 500,
                    available_fen: 300,
                    after_pending: true,
                },
                UNPROCESSABLE,
                "deduction_exceeds_freeze",
                Some("amount_fen"),
            ),
            (
                R::EndDateRequired { action: freeze },
                UNPROCESSABLE,
                "end_date_required",
                Some("end_date"),
            ),
            (
                R::RenewalEndDateRequired,
                UNPROCESSABLE,
                "end_date_required",
                Some("end_date"),
            ),
            (
                R::EndDateNotAllowed {
                    action: ControlAction::Deduct,
                },
                UNPROCESSABLE,
                "invalid_value",
                Some("end_date"),
            ),
            (
                R::EndBeforeStart {
                    start: day(5),
                    end: day(4),
                },
                UNPROCESSABLE,
                "end_date_in_past",
                Some("end_date"),
            ),
            (
                R::EndBeforeToday {
                    today: day(5),
                    end: day(4),
                },
                UNPROCESSABLE,
                "end_date_in_past",
                Some("end_date"),
            ),
            (
                R::TermTooLong {
                    action: ControlAction::Seal,
                    kind: AssetKind::RealEstate,
                    start: day(1),
                    limit: day(2),
                    end: day(3),
                },
                UNPROCESSABLE,
                "term_too_long",
                Some("end_date"),
            ),
            (
                R::RenewalOfMeasureNotLive {
                    status: OrderStatus::Released,
                },
                UNPROCESSABLE,
                "measure_not_in_force",
                Some("prior_order"),
            ),
            (
                R::MeasureEndUnknown,
                UNPROCESSABLE,
                "measure_not_in_force",
                Some("prior_order"),
            ),
            (
                R::RenewalTooLate { ended: day(1) },
                UNPROCESSABLE,
                "renewal_too_late",
                Some("prior_order"),
            ),
            (
                R::RenewalEndsTooEarly {
                    current_end: day(1),
                },
                UNPROCESSABLE,
                "end_date_too_early",
                Some("end_date"),
            ),
            (
                R::MeasureNotLive {
                    status: OrderStatus::Expired,
                },
                UNPROCESSABLE,
                "measure_not_in_force",
                Some("prior_order"),
            ),
            (
                R::MeasureReleased {
                    release: s("ord_r"),
                },
                UNPROCESSABLE,
                "measure_not_in_force",
                Some("prior_order"),
            ),
            (
                R::ReleasePending {
                    release: s("ord_r"),
                },
                StatusCode::CONFLICT,
                "release_pending",
                Some("prior_order"),
            ),
            (
                R::RenewalPending {
                    renewal: s("ord_n"),
                },
                StatusCode::CONFLICT,
                "renewal_pending",
                Some("prior_order"),
            ),
            (
                R::UnknownInquiry { id: s("inq_1") },
                UNPROCESSABLE,
                "unknown_inquiry",
                Some("inquiry"),
            ),
            (
                R::InquiryOtherCase {
                    inquiry_case: s("(2024)甘0503执1号"),
                    case: s("(2024)甘0503执2号"),
                },
                UNPROCESSABLE,
                "inquiry_other_case",
                Some("inquiry"),
            ),
            (
                R::InquiryOtherSubject,
                UNPROCESSABLE,
                "inquiry_other_subject",
                Some("inquiry"),
            ),
            (
                R::InquiryRunning,
                UNPROCESSABLE,
                "inquiry_running",
                Some("inquiry"),
            ),
            (
                R::NoAccounts {
                    skipped: vec![SkippedAccount {
                        account_number: s("6217000010001234567"),
                        agency: s("bank-a"),
                        kind: AssetKind::BankAccount,
                        reason: s("not a CNY account"),
                    }],
                },
                UNPROCESSABLE,
                "no_accounts",
                Some("inquiry"),
            ),
            (
                R::Inconsistent(s("renewal without its measure")),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
        ]
    }

    /// A marker per rule, so that the table above is known to hold every
    /// one: a new rule must be added here (the match has no wildcard) and
    /// then to the table (the count below).
    fn rule_number(rule: &BrokenRule) -> usize {
        use BrokenRule as R;
        match rule {
            R::InvalidCharacters { .. } => 0,
            R::TooLong { .. } => 1,
            R::Empty { .. } => 2,
            R::TooMany { .. } => 3,
            R::AmountTooLarge { .. } => 4,
            R::InvalidDate { .. } => 5,
            R::InvalidCaseNumber(_) => 6,
            R::SubjectNameRequired => 7,
            R::PersonWithCreditCode => 8,
            R::IdNumberRequired => 9,
            R::InvalidIdNumber(_) => 10,
            R::OrganizationWithIdNumber => 11,
            R::CreditCodeRequired => 12,
            R::InvalidCreditCode(_) => 13,
            R::TooFewOfficers { .. } => 14,
            R::TooFewControlOfficers { .. } => 15,
            R::DuplicateOfficer { .. } => 16,
            R::UnknownDocumentKind { .. } => 17,
            R::DocumentNamedTwice { .. } => 18,
            R::DocumentNumberMissing { .. } => 19,
            R::DocumentDigestInvalid { .. } => 20,
            R::MissingDocument { .. } => 21,
            R::UnknownAgency { .. } => 22,
            R::AgencyDisabled { .. } => 23,
            R::NoAssetKinds => 24,
            R::AgencyHoldsOtherKinds { .. } => 25,
            R::NoAgencyServes => 26,
            R::PriorOrderNotAllowed { .. } => 27,
            R::PriorOrderRequired { .. } => 28,
            R::UnknownPriorOrder { .. } => 29,
            R::PriorOrderOtherCase { .. } => 30,
            R::PriorOrderWrongAction { .. } => 31,
            R::PriorOrderOtherSubject => 32,
            R::AgencyNotTheMeasures { .. } => 33,
            R::AgencyRequired => 34,
            R::AssetNotTheMeasures => 35,
            R::AssetRequired => 36,
            R::AgencyHoldsNoSuchAsset { .. } => 37,
            R::ActionNotTaken { .. } => 38,
            R::AgencyCannotBeQueried { .. } => 39,
            R::AssetNamedWrongly { .. } => 40,
            R::AmountRequired { .. } => 41,
            R::AmountNotPositive => 42,
            R::AmountNotAllowed { .. } => 43,
            R::DeductionFromFreezeNotInForce { .. } => 44,
            R::DeductionExceedsFreeze { .. } => 45,
            R::EndDateRequired { .. } => 46,
            R::RenewalEndDateRequired => 47,
            R::EndDateNotAllowed { .. } => 48,
            R::EndBeforeStart { .. } => 49,
            R::EndBeforeToday { .. } => 50,
            R::TermTooLong { .. } => 51,
            R::RenewalOfMeasureNotLive { .. } => 52,
            R::MeasureEndUnknown => 53,
            R::RenewalTooLate { .. } => 54,
            R::RenewalEndsTooEarly { .. } => 55,
            R::MeasureNotLive { .. } => 56,
            R::MeasureReleased { .. } => 57,
            R::ReleasePending { .. } => 58,
            R::RenewalPending { .. } => 59,
            R::UnknownInquiry { .. } => 60,
            R::InquiryOtherCase { .. } => 61,
            R::InquiryOtherSubject => 62,
            R::InquiryRunning => 63,
            R::NoAccounts { .. } => 64,
            R::Inconsistent(_) => 65,
            R::AmountNotForKind { .. } => 66,
            R::QuantityRequired => 67,
            R::QuantityNotPositive => 68,
            R::QuantityNotAllowed { .. } => 69,
        }
    }
    const RULES: usize = 70;

    #[test]
    fn every_rule_is_answered_with_its_status_code_and_field() {
        let table = table();
        let mut seen = [false; RULES];
        for (rule, status, code, field) in table {
            seen[rule_number(&rule)] = true;
            let message = rule.to_string();
            let e = ApiError::from(rule.clone());
            assert_eq!(e.status, status, "{rule:?}");
            assert_eq!(e.code, code, "{rule:?}");
            assert_eq!(e.field.as_deref(), field, "{rule:?}");
            assert_eq!(e.message, message, "{rule:?}");
            assert!(!e.message.is_empty(), "{rule:?}");
            assert!(e.retry_after.is_none(), "{rule:?}");
            assert_eq!(
                e.details.is_some(),
                matches!(rule, BrokenRule::NoAccounts { .. }),
                "{rule:?}"
            );
        }
        let missing: Vec<usize> = (0..RULES).filter(|i| !seen[*i]).collect();
        assert!(missing.is_empty(), "rules without a row: {missing:?}");
    }

    /// The bodies the API sent before the rules had their own type, word
    /// for word.
    #[tokio::test]
    async fn bodies_are_the_ones_the_api_always_sent() {
        let body = |rule: BrokenRule| async move {
            let response = ApiError::from(rule).into_response();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        assert_eq!(
            body(BrokenRule::TermTooLong {
                action: ControlAction::Freeze,
                kind: AssetKind::BankAccount,
                start: NaiveDate::from_ymd_opt(2026, 12, 5).unwrap_or_default(),
                limit: NaiveDate::from_ymd_opt(2027, 12, 4).unwrap_or_default(),
                end: NaiveDate::from_ymd_opt(2028, 1, 1).unwrap_or_default(),
            })
            .await,
            r#"{"error":{"code":"term_too_long","message":"a freeze of bank deposits lasts at most one year (funds): from 2026-12-05 it may end on 2027-12-04 at the latest, not 2028-01-01","field":"end_date"}}"#
        );
        assert_eq!(
            body(BrokenRule::DeductionExceedsFreeze {
                amount_fen: 150_000,
                available_fen: 100_000,
                after_pending: true,
            })
            .await,
            format!(
                r#"{{"error":{{"code":"deduction_exceeds_freeze","message":"the deduction ({}) is larger than what the freeze controls ({}, after deductions already on their way)","field":"amount_fen"}}}}"#,
                adapters::model::Fen(150_000),
                adapters::model::Fen(100_000)
            )
        );
        assert_eq!(
            body(BrokenRule::MissingDocument {
                kind: "assist_notice"
            })
            .await,
            r#"{"error":{"code":"missing_document","message":"a control order must carry the assistance notice (协助执行通知书), with its number and sha256","field":"documents"}}"#
        );
        assert_eq!(
            body(BrokenRule::InvalidCharacters {
                field: "subject.name".into(),
                character: '\u{200B}',
            })
            .await,
            r#"{"error":{"code":"invalid_characters","message":"subject.name contains the character U+200B, which text here may not contain (control, invisible, direction-changing or unassigned characters)","field":"subject.name"}}"#
        );
        assert_eq!(
            body(BrokenRule::NoAccounts {
                skipped: vec![SkippedAccount {
                    account_number: "6217000010001234567".into(),
                    agency: "bank-a".into(),
                    kind: AssetKind::BankAccount,
                    reason: "not a CNY account".into(),
                }],
            })
            .await,
            r#"{"error":{"code":"no_accounts","message":"the inquiry found no account a freeze could be placed on","field":"inquiry","details":{"skipped":[{"account_number":"6217000010001234567","agency":"bank-a","reason":"not a CNY account"}]}}}"#
        );
        assert_eq!(
            body(BrokenRule::ReleasePending {
                release: "ord_r".into()
            })
            .await,
            r#"{"error":{"code":"release_pending","message":"the release ord_r of this measure is on its way to the agency; nothing more can be asked of the measure until it is answered (GET /v1/orders/ord_r): if it is refused or fails, send this order again","field":"prior_order"}}"#
        );
        assert_eq!(
            body(BrokenRule::AssetRequired).await,
            r#"{"error":{"code":"invalid_value","message":"name the asset as an inquiry's answer names it: {\"account_number\"} at a bank, {\"unit_number\"} at a real-estate registry, {\"vin\"} at a vehicle registry, {\"securities_account\", \"security_code\"} at the depository, {\"payment_account\"} at a payment platform, {\"fund_account\"} at a provident fund centre, {\"company_credit_code\"} at a market-regulation registry","field":"asset"}}"#
        );
    }
}
