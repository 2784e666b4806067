//! `bank-json`: a modern JSON bank API, synchronous, one subject per call
//! (docs/wire-formats.md).

use serde::{Deserialize, Serialize};

use crate::dialect::{
    Dialect, EncodeError, Envelope, HttpMethod, InquiryRequest, Interaction, ItemOutcome,
    ReplyError, WireReply, WireRequest, agency_error, match_items,
};
use crate::model::{
    Asset, BankAccount, Fen, InquiryOutcome, Officer, StandingMeasure, Subject, parse_civil_date,
};

const NAME: &str = "bank-json";

#[derive(Debug, Default)]
pub struct BankJson;

#[derive(Serialize)]
struct Request<'a> {
    request_number: &'a str,
    case_number: &'a str,
    court: Court<'a>,
    subject: WireSubject<'a>,
    officers: &'a [Officer],
}

#[derive(Serialize)]
struct Court<'a> {
    code: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct WireSubject<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id_type: &'static str,
    id_number: &'a str,
}

#[derive(Deserialize)]
struct Reply {
    request_number: String,
    outcome: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    accounts: Vec<WireAccount>,
}

#[derive(Deserialize)]
struct WireAccount {
    account_number: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    currency: Option<String>,
    ledger_balance: String,
    available_balance: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    holds: Vec<Hold>,
}

#[derive(Deserialize)]
struct Hold {
    #[serde(default)]
    authority: String,
    #[serde(default)]
    document_number: String,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    expires_on: Option<String>,
    #[serde(default)]
    queued: bool,
}

impl Dialect for BankJson {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interaction(&self) -> Interaction {
        Interaction::Synchronous
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn inquiry_request(
        &self,
        envelope: &Envelope,
        items: &[InquiryRequest],
    ) -> Result<WireRequest, EncodeError> {
        let err = |reason: String| EncodeError {
            dialect: NAME,
            reason,
        };
        let [item] = items else {
            return Err(err(format!("one subject per call, got {}", items.len())));
        };
        let (kind, id_type) = match item.subject {
            Subject::Person { .. } => ("individual", "RESIDENT_ID"),
            Subject::Organization { .. } => ("organization", "USCC"),
        };
        let body = serde_json::to_vec(&Request {
            request_number: &item.request_number,
            case_number: item.case_number.as_str(),
            court: Court {
                code: &envelope.court.code,
                name: &envelope.court.name,
            },
            subject: WireSubject {
                kind,
                name: item.subject.name(),
                id_type,
                id_number: item.subject.identifier(),
            },
            officers: &item.officers,
        })
        .map_err(|e| err(e.to_string()))?;
        Ok(WireRequest {
            method: HttpMethod::Post,
            path: "/api/v1/asset-inquiries".into(),
            content_type: Some("application/json".into()),
            body,
        })
    }

    fn inquiry_reply(
        &self,
        items: &[InquiryRequest],
        reply: WireReply<'_>,
    ) -> Result<Vec<ItemOutcome>, ReplyError> {
        if reply.status != 200 {
            return Err(agency_error(reply));
        }
        let decoded: Reply = serde_json::from_slice(reply.body).map_err(ReplyError::malformed)?;
        let outcome = match decoded.outcome.as_str() {
            "FOUND" => decoded
                .accounts
                .into_iter()
                .map(account)
                .collect::<Result<Vec<_>, _>>()
                .map(|accounts| InquiryOutcome::Answered {
                    assets: accounts.into_iter().map(Asset::BankAccount).collect(),
                }),
            "NOT_FOUND" => Ok(InquiryOutcome::NoRecord),
            "REJECTED" => Ok(InquiryOutcome::Refused {
                reason: decoded
                    .reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "refused without a reason".into()),
            }),
            other => Err(ReplyError::Malformed(format!(
                "outcome {other:?} is not FOUND, NOT_FOUND or REJECTED"
            ))),
        };
        Ok(match_items(items, vec![(decoded.request_number, outcome)]))
    }
}

fn money(field: &str, text: &str) -> Result<Fen, ReplyError> {
    Fen::parse_yuan(text).map_err(|e| ReplyError::Malformed(format!("{field}: {e}")))
}

fn account(a: WireAccount) -> Result<BankAccount, ReplyError> {
    let measures = a
        .holds
        .into_iter()
        .map(|h| {
            Ok(StandingMeasure {
                authority: h.authority,
                document_number: h.document_number,
                amount_fen: h
                    .amount
                    .as_deref()
                    .map(|t| money("amount", t))
                    .transpose()?,
                start_date: None,
                end_date: parse_civil_date(h.expires_on.as_deref().unwrap_or_default())
                    .map_err(|e| ReplyError::Malformed(format!("expires_on: {e}")))?,
                waiting: h.queued,
                queue_position: None,
            })
        })
        .collect::<Result<Vec<_>, ReplyError>>()?;
    Ok(BankAccount {
        account_number: a.account_number,
        account_type: a.product,
        currency: a.currency.unwrap_or_else(|| "CNY".into()),
        balance_fen: money("ledger_balance", &a.ledger_balance)?,
        available_fen: money("available_balance", &a.available_balance)?,
        branch: a.branch,
        state: a.status,
        measures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::test_support::{envelope, request};

    fn reply(body: &str) -> WireReply<'_> {
        WireReply {
            status: 200,
            content_type: Some("application/json"),
            body: body.as_bytes(),
        }
    }

    #[test]
    fn the_request_names_the_subject_and_officers() {
        let req = BankJson
            .inquiry_request(&envelope(), &[request("Q1", "360426199101010071")])
            .expect("encodes");
        let v: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
        assert_eq!(v["subject"]["id_type"], "RESIDENT_ID");
        assert_eq!(v["subject"]["id_number"], "360426199101010071");
        assert_eq!(v["officers"][0]["credential_no"], "ZX620503001");
        assert_eq!(v["court"]["code"], "甘0503");
    }

    #[test]
    fn accounts_and_holds_map_into_the_model() {
        let items = [request("Q1", "360426199101010071")];
        let out = BankJson
            .inquiry_reply(&items, reply(r#"{"request_number":"Q1","outcome":"FOUND","accounts":[
                {"account_number":"6217000010001234567","product":"SAVINGS","currency":"CNY",
                 "ledger_balance":"56000.00","available_balance":"55700.00","branch":"中国建设银行天水分行营业部",
                 "holds":[{"authority":"秦州区人民法院","document_number":"(2023)甘0502执88号","amount":"300.00","expires_on":"2027-01-05","queued":true}]}]}"#))
            .expect("decodes");
        let Ok(InquiryOutcome::Answered { assets }) = &out[0].outcome else {
            panic!("{out:?}")
        };
        let Asset::BankAccount(a) = &assets[0] else {
            panic!("account")
        };
        assert_eq!(a.available_fen, Fen(5_570_000));
        assert!(a.measures[0].waiting);
        assert_eq!(a.measures[0].amount_fen, Some(Fen(30_000)));
    }

    #[test]
    fn bad_replies_are_errors() {
        let items = [request("Q1", "360426199101010071")];
        assert!(
            BankJson
                .inquiry_reply(&items, reply("{\"request_number\":"))
                .is_err()
        );
        let out = BankJson
            .inquiry_reply(
                &items,
                reply(r#"{"request_number":"Q1","outcome":"MAYBE"}"#),
            )
            .expect("envelope");
        assert!(out[0].outcome.is_err());
        let out = BankJson
            .inquiry_reply(
                &items,
                reply(r#"{"request_number":"Q9","outcome":"NOT_FOUND"}"#),
            )
            .expect("envelope");
        assert!(out[0].outcome.is_err(), "another request's answer");
        let out = BankJson
            .inquiry_reply(
                &items,
                reply(r#"{"request_number":"Q1","outcome":"REJECTED","reason":"证件不全"}"#),
            )
            .expect("envelope");
        assert_eq!(
            out[0].outcome,
            Ok(InquiryOutcome::Refused {
                reason: "证件不全".into()
            })
        );
    }
}
