//! `court-bank-xml`: the court-bank XML format with pinyin-abbreviation tags
//! (docs/wire-formats.md), synchronous, several subjects per batch, in the
//! agency's configured encoding (GBK/GB18030 at many banks).

use encoding_rs::Encoding;
use quick_xml::Writer;

use crate::dialect::{
    Dialect, EncodeError, Envelope, HttpMethod, InquiryRequest, Interaction, ItemOutcome,
    ReplyError, WireReply, WireRequest, agency_error, match_items,
};
use crate::model::{Asset, BankAccount, Fen, InquiryOutcome, StandingMeasure, parse_civil_date};
use crate::xml::{
    Element, XmlMessage, decode_document, encoding_for_label, parse_tree, text_element,
};

use super::wire_id_type;

const NAME: &str = "court-bank-xml";

#[derive(Debug)]
pub struct CourtBankXml {
    encoding: &'static Encoding,
    label: String,
    max_batch: usize,
}

impl CourtBankXml {
    /// `label` is the encoding the bank speaks, as its declaration writes it
    /// (`GB18030`, `GBK`, `UTF-8`).
    pub fn new(label: &str, max_batch: usize) -> Result<Self, String> {
        let encoding =
            encoding_for_label(label).ok_or_else(|| format!("unknown encoding {label:?}"))?;
        Ok(Self {
            encoding,
            label: label.to_owned(),
            max_batch: max_batch.max(1),
        })
    }

    fn write_batch(
        &self,
        w: &mut Writer<Vec<u8>>,
        envelope: &Envelope,
        items: &[InquiryRequest],
    ) -> std::io::Result<()> {
        w.create_element("CXQQ").write_inner_content(|w| {
            text_element(w, "PCH", &envelope.batch_number)?;
            text_element(w, "FYDM", &envelope.court.code)?;
            text_element(w, "FYMC", &envelope.court.name)?;
            w.create_element("CXQQLIST").write_inner_content(|w| {
                for item in items {
                    w.create_element("CXQQXX").write_inner_content(|w| {
                        text_element(w, "CXQQDH", &item.request_number)?;
                        text_element(w, "AH", item.case_number.as_str())?;
                        text_element(w, "XM", item.subject.name())?;
                        text_element(w, "ZJZL", wire_id_type(&item.subject))?;
                        text_element(w, "ZJH", item.subject.identifier())?;
                        for officer in &item.officers {
                            w.create_element("ZFRY").write_inner_content(|w| {
                                text_element(w, "XM", &officer.name)?;
                                text_element(w, "GZZBH", &officer.work_card_no)?;
                                text_element(w, "GWZBH", &officer.credential_no)
                            })?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    }
}

impl Dialect for CourtBankXml {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interaction(&self) -> Interaction {
        Interaction::Synchronous
    }

    fn max_batch(&self) -> usize {
        self.max_batch
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
        if items.is_empty() || items.len() > self.max_batch {
            return Err(err(format!(
                "a batch holds 1 to {} subjects, got {}",
                self.max_batch,
                items.len()
            )));
        }
        let mut message = XmlMessage::new();
        self.write_batch(message.writer(), envelope, items)
            .map_err(|e| err(e.to_string()))?;
        let body = message
            .finish(self.encoding, &self.label)
            .map_err(|e| err(e.to_string()))?;
        Ok(WireRequest {
            method: HttpMethod::Post,
            path: "/ckxt/cxqq".into(),
            content_type: Some(format!("application/xml; charset={}", self.label)),
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
        let text = decode_document(reply.body).map_err(ReplyError::malformed)?;
        let root = parse_tree(&text).map_err(ReplyError::malformed)?;
        let feedbacks: Vec<&Element> = match root.name.as_str() {
            "CXFKPC" => root
                .child("CXFKLIST")
                .map(|list| list.children("CXFK").collect())
                .unwrap_or_default(),
            // A bank answering a one-subject batch with a bare feedback.
            "CXFK" => vec![&root],
            other => {
                return Err(ReplyError::Malformed(format!(
                    "expected CXFKPC, got <{other}>"
                )));
            }
        };
        let mut decoded = Vec::with_capacity(feedbacks.len());
        for fk in feedbacks {
            let Some(rn) = fk.text_of("CXQQDH") else {
                return Err(ReplyError::Malformed("a CXFK without CXQQDH".into()));
            };
            decoded.push((rn.to_owned(), feedback(fk)));
        }
        Ok(match_items(items, decoded))
    }
}

fn feedback(fk: &Element) -> Result<InquiryOutcome, ReplyError> {
    match fk.text_of("CXJG") {
        Some("1") => {
            let accounts = fk
                .child("ZHXXLIST")
                .map(|l| {
                    l.children("ZHXX")
                        .map(account)
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            Ok(InquiryOutcome::Answered {
                assets: accounts.into_iter().map(Asset::BankAccount).collect(),
            })
        }
        Some("0") => Ok(InquiryOutcome::NoRecord),
        Some("9") => Ok(InquiryOutcome::Refused {
            reason: fk
                .text_of("JJYY")
                .unwrap_or("refused without a reason")
                .to_owned(),
        }),
        other => Err(ReplyError::Malformed(format!(
            "CXJG {other:?} is not 0, 1 or 9"
        ))),
    }
}

fn required<'a>(el: &'a Element, tag: &str) -> Result<&'a str, ReplyError> {
    el.text_of(tag)
        .ok_or_else(|| ReplyError::Malformed(format!("<{}> lacks <{tag}>", el.name)))
}

fn money(el: &Element, tag: &str) -> Result<Fen, ReplyError> {
    Fen::parse_yuan(required(el, tag)?).map_err(|e| ReplyError::Malformed(format!("{tag}: {e}")))
}

fn account(z: &Element) -> Result<BankAccount, ReplyError> {
    let measures = z
        .child("DJXXLIST")
        .map(|l| {
            l.children("DJXX")
                .map(measure)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(BankAccount {
        account_number: required(z, "KHZH")?.to_owned(),
        account_type: z.text_of("CCLB").unwrap_or_default().to_owned(),
        currency: z.text_of("BZ").unwrap_or("CNY").to_owned(),
        balance_fen: money(z, "YE")?,
        available_fen: money(z, "KYYE")?,
        branch: z.text_of("KHWD").unwrap_or_default().to_owned(),
        state: z.text_of("ZHZT").map(str::to_owned),
        measures,
    })
}

fn measure(d: &Element) -> Result<StandingMeasure, ReplyError> {
    let amount = d
        .text_of("DJJE")
        .map(Fen::parse_yuan)
        .transpose()
        .map_err(|e| ReplyError::Malformed(format!("DJJE: {e}")))?;
    let end_date = parse_civil_date(d.text_of("DJJSRQ").unwrap_or_default())
        .map_err(|e| ReplyError::Malformed(format!("DJJSRQ: {e}")))?;
    Ok(StandingMeasure {
        authority: d.text_of("DJJG").unwrap_or_default().to_owned(),
        document_number: d.text_of("DJWH").unwrap_or_default().to_owned(),
        amount_fen: amount,
        start_date: None,
        end_date,
        waiting: d.text_of("LHBZ") == Some("1"),
        queue_position: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialects::test_support::{envelope, request};

    fn bank() -> CourtBankXml {
        CourtBankXml::new("GB18030", 50).expect("GB18030 is known")
    }

    #[test]
    fn a_batch_request_is_gb18030_xml_listing_every_subject() {
        let items = [
            request("Q1", "360426199101010071"),
            request("Q2", "620503198812120015"),
        ];
        let req = bank()
            .inquiry_request(&envelope(), &items)
            .expect("encodes");
        assert_eq!(req.path, "/ckxt/cxqq");
        assert!(
            std::str::from_utf8(&req.body).is_err(),
            "GB18030, not UTF-8"
        );
        let tree = parse_tree(&decode_document(&req.body).expect("decode")).expect("parse");
        let list: Vec<_> = tree
            .child("CXQQLIST")
            .expect("list")
            .children("CXQQXX")
            .collect();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].text_of("XM"), Some("张三"));
        assert_eq!(list[1].text_of("CXQQDH"), Some("Q2"));
        assert_eq!(
            list[0].at(&["ZFRY", "GWZBH"]).map(|e| e.text.as_str()),
            Some("ZX620503001")
        );
    }

    #[test]
    fn a_gb18030_reply_maps_accounts_and_standing_measures() {
        let xml = r#"<?xml version="1.0" encoding="GB18030"?>
<CXFKPC><PCH>P1</PCH><CXFKLIST>
 <CXFK><CXQQDH>Q2</CXQQDH><CXJG>0</CXJG></CXFK>
 <CXFK><CXQQDH>Q1</CXQQDH><CXJG>1</CXJG><ZHXXLIST><ZHXX>
   <KHZH>6222020200112233445</KHZH><CCLB>借记卡</CCLB><ZHZT>正常</ZHZT>
   <KHWD>中国工商银行天水麦积支行</KHWD><BZ>CNY</BZ><YE>125000.00</YE><KYYE>95000.00</KYYE>
   <DJXXLIST><DJXX><DJJG>秦州区人民法院</DJJG><DJWH>(2023)甘0502执88号</DJWH>
     <DJJE>30000.00</DJJE><DJJSRQ>20270105</DJJSRQ><LHBZ>0</LHBZ></DJXX></DJXXLIST>
 </ZHXX></ZHXXLIST></CXFK>
</CXFKLIST></CXFKPC>"#;
        let body = encoding_rs::GB18030.encode(xml).0.into_owned();
        let items = [
            request("Q1", "360426199101010071"),
            request("Q2", "620503198812120015"),
        ];
        let out = bank()
            .inquiry_reply(
                &items,
                WireReply {
                    status: 200,
                    content_type: None,
                    body: &body,
                },
            )
            .expect("decodes");
        assert_eq!(out[1].outcome, Ok(InquiryOutcome::NoRecord));
        let Ok(InquiryOutcome::Answered { assets }) = &out[0].outcome else {
            panic!("expected an answer: {:?}", out[0]);
        };
        let Asset::BankAccount(a) = &assets[0] else {
            panic!("a bank account")
        };
        assert_eq!(a.branch, "中国工商银行天水麦积支行");
        assert_eq!(a.balance_fen, Fen(12_500_000));
        assert_eq!(a.available_fen, Fen(9_500_000));
        assert_eq!(a.measures[0].amount_fen, Some(Fen(3_000_000)));
        assert_eq!(
            a.measures[0].end_date,
            chrono::NaiveDate::from_ymd_opt(2027, 1, 5)
        );
        assert!(!a.measures[0].waiting);
    }

    #[test]
    fn unmappable_replies_are_errors_never_panics() {
        let items = [request("Q1", "360426199101010071")];
        let reply = |body: &'static [u8]| WireReply {
            status: 200,
            content_type: None,
            body,
        };
        let b = bank();
        assert!(
            b.inquiry_reply(&items, reply(b"<CXFKPC><CXFKLIST><CXFK>"))
                .is_err()
        );
        assert!(b.inquiry_reply(&items, reply(b"<OTHER/>")).is_err());
        let out = b
            .inquiry_reply(&items, reply(b"<CXFKPC><CXFKLIST><CXFK><CXQQDH>Q1</CXQQDH><CXJG>1</CXJG><ZHXXLIST><ZHXX><KHZH>1</KHZH><YE>abc</YE><KYYE>1</KYYE></ZHXX></ZHXXLIST></CXFK></CXFKLIST></CXFKPC>"))
            .expect("the envelope decodes");
        assert!(matches!(out[0].outcome, Err(ReplyError::Malformed(_))));
        let out = b
            .inquiry_reply(&items, reply(b"<CXFKPC><CXFKLIST/></CXFKPC>"))
            .expect("empty list decodes");
        assert!(
            matches!(out[0].outcome, Err(ReplyError::Malformed(_))),
            "missing item"
        );
        let err = b
            .inquiry_reply(
                &items,
                WireReply {
                    status: 503,
                    content_type: None,
                    body: b"busy",
                },
            )
            .expect_err("agency error");
        assert!(matches!(err, ReplyError::Agency { status: 503, .. }));
    }

    #[test]
    fn a_refusal_carries_its_reason() {
        let items = [request("Q1", "360426199101010071")];
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CXFKPC><CXFKLIST><CXFK><CXQQDH>Q1</CXQQDH><CXJG>9</CXJG><JJYY>文书不全</JJYY></CXFK></CXFKLIST></CXFKPC>";
        let out = bank()
            .inquiry_reply(
                &items,
                WireReply {
                    status: 200,
                    content_type: None,
                    body: body.as_bytes(),
                },
            )
            .expect("decodes");
        assert_eq!(
            out[0].outcome,
            Ok(InquiryOutcome::Refused {
                reason: "文书不全".into()
            })
        );
    }
}
