//! `gateway agencies test <agency|dialect> [--live]`: runs a dialect's
//! conformance pack and prints each normalised result beside the expected
//! one; with `--live`, also sends one inquiry for a test subject to the
//! agency's real endpoint and prints what came back.

use std::time::Duration;

use adapters::conformance::{CaseResult, load_cases};
use adapters::dialect::{Envelope, InquiryRequest, Interaction, WireReply};
use adapters::ids::{CaseNumber, IdNumber};
use adapters::model::{Court, InquiryOutcome, Officer, Subject};
use anyhow::{Context, bail};
use serde_json::Value;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::config::GatewayConfig;
use crate::transport::Transport;

/// The subject of a live test: someone the agency agreed to be asked about.
#[derive(Debug, Clone)]
pub struct LiveSubject {
    pub name: String,
    pub id_number: String,
    pub case_number: String,
}

/// Runs the pack (and the live inquiry); true when everything passed.
pub async fn run(
    config: &GatewayConfig,
    target: &str,
    live: Option<LiveSubject>,
) -> anyhow::Result<bool> {
    let catalog = config.load_catalog()?;
    let agency = catalog.agencies.iter().find(|a| a.config.id == target);
    let dialect = match agency {
        Some(a) => a.config.dialect.clone(),
        None if catalog.dialects.get(target).is_some() => target.to_owned(),
        None => bail!(
            "{target:?} is neither an agency nor a dialect (dialects: {})",
            catalog.dialects.names().join(", ")
        ),
    };
    let pack = config.dialects_dir.with_file_name("conformance");
    let cases = load_cases(&pack, Some(&dialect))?;
    if cases.is_empty() {
        println!(
            "dialect {dialect} has no conformance pack in {}",
            pack.join(&dialect).display()
        );
    }
    let mut passed = 0;
    for case in &cases {
        let result = case.run(&catalog.dialects);
        print_case(&result);
        passed += usize::from(result.passed());
    }
    println!(
        "\n{passed} passed, {} failed ({dialect} pack)",
        cases.len() - passed
    );
    let mut ok = passed == cases.len() && !cases.is_empty();
    if let Some(subject) = live {
        let Some(agency) = agency else {
            bail!("--live needs an agency id, not a dialect");
        };
        ok &= live_inquiry(config, agency, &subject).await?;
    }
    Ok(ok)
}

fn print_case(result: &CaseResult) {
    let verdict = if result.passed() { "PASS" } else { "FAIL" };
    println!(
        "\n{verdict} {}/{}: {}",
        result.dialect, result.name, result.description
    );
    for problem in &result.problems {
        println!("     {problem}");
    }
    side_by_side(&result.expected, &result.actual);
}

/// Prints two JSON values in two columns, marking lines that differ.
fn side_by_side(expected: &Value, actual: &Value) {
    let lines = |v: &Value| -> Vec<String> {
        serde_json::to_string_pretty(v)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let (left, right) = (lines(expected), lines(actual));
    const WIDTH: usize = 58;
    println!("     {:<WIDTH$}   actual", "expected");
    for i in 0..left.len().max(right.len()) {
        let l = left.get(i).map(String::as_str).unwrap_or("");
        let r = right.get(i).map(String::as_str).unwrap_or("");
        let mark = if l == r { ' ' } else { '≠' };
        // Chinese text takes two columns a character: pad by display width.
        let mut shown = String::new();
        for c in l.chars() {
            if shown.width() + c.width().unwrap_or(0) > WIDTH {
                break;
            }
            shown.push(c);
        }
        let l = shown;
        let pad = WIDTH.saturating_sub(l.width());
        println!("   {mark} {l}{}   {r}", " ".repeat(pad));
    }
}

async fn live_inquiry(
    config: &GatewayConfig,
    agency: &adapters::agency::Agency,
    subject: &LiveSubject,
) -> anyhow::Result<bool> {
    let id_number = IdNumber::parse(&subject.id_number).context("--id-number")?;
    println!(
        "\nLIVE {}: one inquiry for {} ({}) at {}",
        agency.config.id,
        subject.name,
        id_number.masked(),
        agency.config.base_url
    );
    let court = config
        .callers
        .iter()
        .find_map(|c| c.court.clone())
        .unwrap_or(Court {
            code: "甘0503".into(),
            name: "天水市麦积区人民法院".into(),
        });
    let request_number = format!("T{}-{}", uuid::Uuid::now_v7().simple(), agency.config.id);
    let item = InquiryRequest {
        request_number: request_number.clone(),
        case_number: CaseNumber::parse(&subject.case_number).context("--case-number")?,
        subject: Subject::Person {
            name: subject.name.clone(),
            id_number,
        },
        officers: vec![Officer {
            name: "接入测试".into(),
            work_card_no: "TEST".into(),
            credential_no: "TEST".into(),
        }],
    };
    let transport = Transport::new(config.limits.max_reply_bytes)?;
    let channel = transport
        .channel_for(&agency.connection)
        .map_err(|e| anyhow::anyhow!(e))?;
    let timeout = Duration::from_millis(agency.config.limits.timeout_ms);
    let envelope = Envelope {
        court,
        batch_number: format!("P{}", uuid::Uuid::now_v7().simple()),
        // A live test cannot take a pushed result: callback agencies answer
        // the pack only.
        callback_url: None,
    };
    let wire = agency
        .dialect
        .inquiry_request(&envelope, std::slice::from_ref(&item))?;
    let reply = transport
        .send(
            &channel,
            &agency.config.base_url,
            &wire,
            timeout,
            &envelope.batch_number,
        )
        .await?;

    let mut outcome = agency
        .dialect
        .inquiry_reply(std::slice::from_ref(&item), wire_reply(&reply))?
        .into_iter()
        .next()
        .map(|o| o.outcome)
        .context("the reply has no outcome")?;
    if agency.dialect.interaction() == Interaction::SubmitThenPoll {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while let Ok(InquiryOutcome::Pending { ticket }) = &outcome {
            if tokio::time::Instant::now() >= deadline {
                println!("     still pending after 60 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(agency.config.poll_interval_ms)).await;
            let poll = agency
                .dialect
                .poll_request(&request_number, ticket.as_deref())?;
            let reply = transport
                .send(
                    &channel,
                    &agency.config.base_url,
                    &poll,
                    timeout,
                    &request_number,
                )
                .await?;
            outcome = agency
                .dialect
                .poll_reply(&request_number, wire_reply(&reply));
        }
    }
    match outcome {
        Ok(outcome) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&adapters::conformance::outcome_json(&outcome))?
            );
            Ok(true)
        }
        Err(e) => {
            println!("     {e}");
            Ok(false)
        }
    }
}

fn wire_reply(reply: &crate::transport::HttpReply) -> WireReply<'_> {
    WireReply {
        status: reply.status,
        content_type: reply.content_type.as_deref(),
        body: &reply.body,
    }
}
