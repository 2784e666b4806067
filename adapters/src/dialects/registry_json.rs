//! `registry-json`: a real-estate registry that takes a request, answers with
//! a ticket, and produces the result later; the gateway polls with the
//! request number (docs/wire-formats.md).

use serde::{Deserialize, Serialize};

use crate::dialect::{
    Dialect, EncodeError, Envelope, HttpMethod, InquiryRequest, Interaction, ItemOutcome,
    ReplyError, WireReply, WireRequest, agency_error, match_items,
};
use crate::model::{
    Asset, InquiryOutcome, Owner, RealEstateUnit, StandingMeasure, parse_civil_date,
};

use super::wire_id_type;

const NAME: &str = "registry-json";

#[derive(Debug, Default)]
pub struct RegistryJson;

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct Submit<'a> {
    cxqqdh: &'a str,
    ah: &'a str,
    fydm: &'a str,
    fymc: &'a str,
    xm: &'a str,
    zjzl: &'a str,
    zjh: &'a str,
    cbr: &'a str,
    gzzbh: &'a str,
    gwzbh: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Answer {
    result: String,
    #[serde(default)]
    cxqqdh: Option<String>,
    #[serde(default)]
    slbh: Option<String>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    cxjg: Option<String>,
    #[serde(default)]
    jjyy: Option<String>,
    #[serde(default)]
    bdclist: Vec<Unit>,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Unit {
    bdcdyh: String,
    #[serde(default)]
    bdcqzh: String,
    #[serde(default)]
    zl: String,
    #[serde(default)]
    mj: Option<String>,
    #[serde(default)]
    yt: String,
    #[serde(default)]
    qlrlist: Vec<RightHolder>,
    #[serde(default)]
    dyzt: Option<String>,
    #[serde(default)]
    cflist: Vec<Seal>,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct RightHolder {
    qlrmc: String,
    #[serde(default)]
    gyfe: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct Seal {
    #[serde(default)]
    cfjg: String,
    #[serde(default)]
    cfwh: String,
    #[serde(default)]
    cfksrq: Option<String>,
    #[serde(default)]
    cfjsrq: Option<String>,
    #[serde(default)]
    lhsx: u32,
}

/// Request numbers go into the poll URL's path; ours are made of these only,
/// so no escaping is needed and anything else is a bug upstream.
fn path_safe(request_number: &str) -> bool {
    !request_number.is_empty()
        && request_number
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Dialect for RegistryJson {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interaction(&self) -> Interaction {
        Interaction::SubmitThenPoll
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
            return Err(err(format!("one subject per request, got {}", items.len())));
        };
        let first = item
            .officers
            .first()
            .ok_or_else(|| err("an officer is required".into()))?;
        let body = serde_json::to_vec(&Submit {
            cxqqdh: &item.request_number,
            ah: item.case_number.as_str(),
            fydm: &envelope.court.code,
            fymc: &envelope.court.name,
            xm: item.subject.name(),
            zjzl: wire_id_type(&item.subject),
            zjh: item.subject.identifier(),
            cbr: &first.name,
            gzzbh: &first.work_card_no,
            gwzbh: &first.credential_no,
        })
        .map_err(|e| err(e.to_string()))?;
        Ok(WireRequest {
            method: HttpMethod::Post,
            path: "/bdc/api/cxqq".into(),
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
        let a: Answer = serde_json::from_slice(reply.body).map_err(ReplyError::malformed)?;
        let rn = a
            .cxqqdh
            .clone()
            .ok_or_else(|| ReplyError::Malformed("the answer lacks CXQQDH".into()))?;
        let outcome = match a.result.as_str() {
            "0000" => Ok(InquiryOutcome::Pending { ticket: a.slbh }),
            // Refused at intake (bad documents, unknown court ...): a normal answer.
            _ => Ok(InquiryOutcome::Refused {
                reason: format!("{} {}", a.result, a.msg.unwrap_or_default())
                    .trim()
                    .to_owned(),
            }),
        };
        Ok(match_items(items, vec![(rn, outcome)]))
    }

    fn poll_request(
        &self,
        request_number: &str,
        _ticket: Option<&str>,
    ) -> Result<WireRequest, EncodeError> {
        if !path_safe(request_number) {
            return Err(EncodeError {
                dialect: NAME,
                reason: format!("request number {request_number:?} cannot go into a URL path"),
            });
        }
        Ok(WireRequest {
            method: HttpMethod::Get,
            path: format!("/bdc/api/cxjg/{request_number}"),
            content_type: None,
            body: Vec::new(),
        })
    }

    fn poll_reply(
        &self,
        request_number: &str,
        reply: WireReply<'_>,
    ) -> Result<InquiryOutcome, ReplyError> {
        if reply.status != 200 {
            return Err(agency_error(reply));
        }
        let a: Answer = serde_json::from_slice(reply.body).map_err(ReplyError::malformed)?;
        if a.cxqqdh.as_deref() != Some(request_number) {
            return Err(ReplyError::Malformed(format!(
                "the answer is for {:?}, not this request",
                a.cxqqdh
            )));
        }
        match a.result.as_str() {
            "0001" => return Ok(InquiryOutcome::Pending { ticket: a.slbh }),
            "0000" => {}
            other => {
                return Err(ReplyError::Agency {
                    status: reply.status,
                    detail: format!("{other} {}", a.msg.unwrap_or_default()),
                });
            }
        }
        match a.cxjg.as_deref() {
            Some("1") => {
                let units = a
                    .bdclist
                    .into_iter()
                    .map(unit)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(InquiryOutcome::Answered {
                    assets: units.into_iter().map(Asset::RealEstate).collect(),
                })
            }
            Some("0") => Ok(InquiryOutcome::NoRecord),
            Some("9") => Ok(InquiryOutcome::Refused {
                reason: a
                    .jjyy
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "refused without a reason".into()),
            }),
            other => Err(ReplyError::Malformed(format!(
                "CXJG {other:?} is not 0, 1 or 9"
            ))),
        }
    }
}

fn date(field: &str, text: Option<&str>) -> Result<Option<chrono::NaiveDate>, ReplyError> {
    parse_civil_date(text.unwrap_or_default())
        .map_err(|e| ReplyError::Malformed(format!("{field}: {e}")))
}

fn unit(u: Unit) -> Result<RealEstateUnit, ReplyError> {
    let area_m2 = match u.mj.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => 0.0,
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|a| a.is_finite() && *a >= 0.0)
            .ok_or_else(|| ReplyError::Malformed(format!("MJ {t:?} is not an area")))?,
    };
    let measures = u
        .cflist
        .into_iter()
        .map(|s| {
            Ok(StandingMeasure {
                authority: s.cfjg,
                document_number: s.cfwh,
                amount_fen: None,
                start_date: date("CFKSRQ", s.cfksrq.as_deref())?,
                end_date: date("CFJSRQ", s.cfjsrq.as_deref())?,
                waiting: s.lhsx > 0,
                queue_position: (s.lhsx > 0).then_some(s.lhsx),
            })
        })
        .collect::<Result<Vec<_>, ReplyError>>()?;
    Ok(RealEstateUnit {
        unit_number: u.bdcdyh,
        certificate_number: u.bdcqzh,
        location: u.zl,
        area_m2,
        use_: u.yt,
        owners: u
            .qlrlist
            .into_iter()
            .map(|o| Owner {
                name: o.qlrmc,
                share: o.gyfe.filter(|s| !s.is_empty()),
            })
            .collect(),
        mortgaged: u.dyzt.as_deref() == Some("1"),
        measures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::test_support::{envelope, request};

    fn ok(body: &str) -> WireReply<'_> {
        WireReply {
            status: 200,
            content_type: None,
            body: body.as_bytes(),
        }
    }

    #[test]
    fn submit_gives_a_ticket_and_polling_gives_the_units() {
        let items = [request("Q1", "360426199101010071")];
        let req = RegistryJson
            .inquiry_request(&envelope(), &items)
            .expect("encodes");
        let v: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
        assert_eq!(v["ZJZL"], "01");
        assert_eq!(v["CBR"], "李明");
        let out = RegistryJson
            .inquiry_reply(
                &items,
                ok(r#"{"RESULT":"0000","CXQQDH":"Q1","SLBH":"T9","MSG":"已受理"}"#),
            )
            .expect("decodes");
        assert_eq!(
            out[0].outcome,
            Ok(InquiryOutcome::Pending {
                ticket: Some("T9".into())
            })
        );

        let poll = RegistryJson.poll_request("Q1", Some("T9")).expect("poll");
        assert_eq!(poll.path, "/bdc/api/cxjg/Q1");
        assert_eq!(
            RegistryJson.poll_reply(
                "Q1",
                ok(r#"{"RESULT":"0001","CXQQDH":"Q1","MSG":"处理中"}"#)
            ),
            Ok(InquiryOutcome::Pending { ticket: None })
        );
        let done = RegistryJson
            .poll_reply("Q1", ok(r#"{"RESULT":"0000","CXQQDH":"Q1","CXJG":"1","BDCLIST":[{"BDCDYH":"620503001001GB00001F00010001",
                "BDCQZH":"甘(2019)麦积区不动产权第0001234号","ZL":"麦积区桥南伯阳路88号3单元501室","MJ":"89.50","YT":"住宅",
                "QLRLIST":[{"QLRMC":"张三","GYFE":"1/1"}],"DYZT":"1",
                "CFLIST":[{"CFJG":"秦州区人民法院","CFWH":"(2023)甘0502执88号","CFKSRQ":"2024/03/01","CFJSRQ":"2027/02/28","LHSX":0},
                          {"CFJG":"麦积区人民法院","CFWH":"x","LHSX":1}]}]}"#))
            .expect("decodes");
        let InquiryOutcome::Answered { assets } = done else {
            panic!("answered")
        };
        let Asset::RealEstate(u) = &assets[0] else {
            panic!("unit")
        };
        assert!((u.area_m2 - 89.5).abs() < 1e-9);
        assert!(u.mortgaged);
        assert_eq!(
            u.measures[0].end_date,
            chrono::NaiveDate::from_ymd_opt(2027, 2, 28)
        );
        assert!(!u.measures[0].waiting);
        assert_eq!(u.measures[1].queue_position, Some(1));
    }

    #[test]
    fn registry_errors_and_garbage_are_errors() {
        assert!(matches!(
            RegistryJson.poll_reply(
                "Q1",
                WireReply {
                    status: 404,
                    content_type: None,
                    body: br#"{"RESULT":"0404"}"#
                }
            ),
            Err(ReplyError::Agency { status: 404, .. })
        ));
        assert!(RegistryJson.poll_reply("Q1", ok("not json")).is_err());
        assert!(
            RegistryJson
                .poll_reply("Q1", ok(r#"{"RESULT":"0000","CXQQDH":"Q2","CXJG":"0"}"#))
                .is_err()
        );
        assert!(RegistryJson.poll_reply("Q1", ok(r#"{"RESULT":"0000","CXQQDH":"Q1","CXJG":"1","BDCLIST":[{"BDCDYH":"x","MJ":"big"}]}"#)).is_err());
        assert!(RegistryJson.poll_request("../admin", None).is_err());
    }
}
