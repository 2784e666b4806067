//! The auditor's pages over a large log (`--only console`): a fresh
//! database filled with `--console-rows` audit rows (1,000,000 by default)
//! shaped as traffic makes them, a real gateway (`gateway serve`, release
//! build) started on it, an auditor signed in over HTTP as a script would
//! (the sign-in form, then the session cookie), and each page of the
//! console asked for many times, one request after another: the search
//! with no filter and with each filter, a page deep in a filtered search
//! (following its links), the CSV export of a filtered set, one row, an
//! inquiry's timeline, and the chain page (its quick visit, and the whole
//! pass behind its button). On SQLite, and on PostgreSQL when the server
//! can be reached. Writes `console.json` into `--out`; the table it prints
//! is the one `docs/benchmarks/console.md` shows.
//!
//! The rows are made here, with the gateway's own chaining and hashing
//! (`AuditRow::chain` through the store's `append_audit`, in batches of
//! `BATCH` rows a transaction), and signed checkpoints are added every
//! `checkpoint_every_rows` rows with the demo's key, the key the gateway
//! verifies with: the chain page's whole pass must find the log good, and
//! the bench fails if it does not.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use gateway::audit::{AuditRecord, Direction, sign_checkpoint};
use gateway::config::AuditSettings;
use gateway::store::{NewAuditRow, PgStore, SqliteStore, Store};
use reqwest::StatusCode;
use serde::Serialize;

use crate::procs::repo_root;
use crate::stats::{Summary, new_histogram, summarize};
use crate::system::{Backend, Gateway, GatewayBinary, GatewaySpec};

/// Rows appended a transaction while seeding.
const BATCH: usize = 20_000;
/// A signed checkpoint every this many rows, as `config/gateway.toml` says.
const CHECKPOINT_EVERY: i64 = 1_000;
/// The demo auditor's token (`config/gateway.toml`).
const AUDITOR_TOKEN: &str = "demo-auditor-token";
const COOKIE: &str = "gw_console";
/// The seeded log's time span: ninety days up to the seeding.
const SPAN_MS: i64 = 90 * 24 * 3_600_000;

/// The agencies of the demo (`config/agencies/`).
const AGENCIES: [&str; 8] = [
    "bank-a",
    "bank-b",
    "fund-f",
    "market-m",
    "payment-p",
    "registry-x",
    "securities-s",
    "vehicle-v",
];
const COURTS: [(&str, &str); 4] = [
    ("demo-court", "甘0503"),
    ("court-beijing", "京0105"),
    ("court-tianshui", "甘0502"),
    ("court-shanghai", "沪0115"),
];
const SURNAMES: [&str; 12] = [
    "李", "王", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙",
];
const GIVEN: [&str; 20] = [
    "明", "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
    "超", "秀英", "建华", "志强",
];
/// Officers in all.
const OFFICERS: usize = 240;
/// Cases in all: each about one subject mostly.
const CASES: u64 = 60_000;

/// One page's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PageFigures {
    pub page: String,
    /// What was asked, as an example.
    pub example: String,
    pub latency: Summary,
    /// Rows the page listed (or the export wrote), on average.
    pub rows_mean: f64,
    /// For the export: rows written a second.
    pub rows_per_s: Option<f64>,
}

/// One backend's run.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleRun {
    pub backend: String,
    pub rows: i64,
    pub checkpoints: i64,
    pub seed_secs: f64,
    pub seed_rows_per_s: f64,
    /// The database's size once seeded.
    pub database_mib: Option<f64>,
    pub pages: Vec<PageFigures>,
}

#[derive(Debug, Serialize)]
pub struct ConsoleResults {
    pub when: String,
    pub command: String,
    pub machine: String,
    pub commit: String,
    pub runs: Vec<ConsoleRun>,
    pub total_secs: f64,
}

/// A small deterministic generator (SplitMix64): the same log every run.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn officer(n: usize) -> String {
    let surname = SURNAMES[n % SURNAMES.len()];
    let given = GIVEN[(n / SURNAMES.len()) % GIVEN.len()];
    format!("{surname}{given} (ZX620503{n:03})")
}

/// Case `n`'s number at its court, and its subject's identity number.
fn case(n: u64) -> (String, String, &'static (&'static str, &'static str)) {
    let court = &COURTS[(n % COURTS.len() as u64) as usize];
    let year = 2023 + n % 3;
    let number = format!("({year}){}执{}号", court.1, 1_000 + n);
    // Seventeen digits and a check character, as identity numbers are
    // (the filter takes any text; the shape keeps the index realistic).
    let base = format!("3604261{:02}{:08}", 70 + n % 30, n * 7 % 100_000_000);
    let check = b"10X98765432"[(n % 11) as usize] as char;
    (number, format!("{base}{check}"), court)
}

fn inquiry_id(n: u64) -> String {
    format!(
        "inq_{:08x}{:024x}",
        0x0190_0000 + n / 1_000,
        n * 2_654_435_761
    )
}

/// A message body of `size` bytes or so, as the dialects write them.
fn body(kind: &str, id: &str, subject: &str, size: usize) -> Vec<u8> {
    let mut text = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{kind}><CXQQDH>{id}</CXQQDH>\
         <ZJHM>{subject}</ZJHM><XM>张三</XM>"
    );
    let mut i = 0;
    while text.len() < size {
        text.push_str(&format!(
            "<ZH><KHH>6222{i:012}</KHH><YE>{}.{:02}</YE><BZ>CNY</BZ></ZH>",
            i * 1_731 % 100_000,
            i % 100
        ));
        i += 1;
    }
    text.push_str(&format!("</{kind}>"));
    text.into_bytes()
}

/// What the log holds, for the requests to ask about.
#[derive(Debug, Default)]
struct Seeded {
    rows: i64,
    checkpoints: i64,
    /// Inquiries, cases, subjects, officers and agencies in it.
    inquiries: Vec<String>,
    cases: Vec<String>,
    subjects: Vec<String>,
    officers: Vec<String>,
    first_ms: i64,
    last_ms: i64,
}

/// The records of one piece of traffic: an inquiry (its request, one
/// message to each agency asked, their replies, its completion), a
/// freeze order, an auditor's reads, or a refused call.
fn traffic(mix: &mut Mix, n: u64, seen: &mut Seeded) -> Vec<AuditRecord> {
    let kind = mix.below(100);
    let case_n = mix.below(CASES);
    let (case_number, subject, court) = case(case_n);
    let officers: Vec<String> = (0..1 + mix.below(2))
        .map(|_| officer(mix.below(OFFICERS as u64) as usize))
        .collect();
    let caller = Some(court.0.to_owned());
    let id = inquiry_id(n);
    let base = AuditRecord {
        caller: caller.clone(),
        officers: officers.clone(),
        case_number: Some(case_number.clone()),
        subject: Some(subject.clone()),
        ..AuditRecord::default()
    };
    if n.is_multiple_of(997) {
        seen.cases.push(case_number.clone());
        seen.subjects.push(subject.clone());
        if kind < 75 {
            seen.inquiries.push(id.clone());
        }
    }
    match kind {
        0..=74 => {
            let asked = 2 + mix.below(7) as usize;
            let first = mix.below(AGENCIES.len() as u64) as usize;
            let agencies: Vec<&str> = (0..asked)
                .map(|i| AGENCIES[(first + i) % AGENCIES.len()])
                .collect();
            let mut rows = vec![AuditRecord {
                direction: Some(Direction::Inbound),
                action: "inquiry.create".into(),
                inquiry_id: Some(id.clone()),
                status: Some("accepted".into()),
                body: Some(
                    format!(
                        "{{\"case_number\":\"{case_number}\",\"subject\":{{\"kind\":\"person\",\
                         \"name\":\"张三\",\"id_number\":\"{subject}\"}},\"asset_kinds\":\
                         [\"bank_account\",\"securities\",\"vehicle\"]}}"
                    )
                    .into(),
                ),
                ..base.clone()
            }];
            for agency in &agencies {
                let request = format!("Q{n:016}-{agency}");
                rows.push(AuditRecord {
                    direction: Some(Direction::Outbound),
                    action: "inquiry.send".into(),
                    agency: Some((*agency).into()),
                    inquiry_id: Some(id.clone()),
                    request_number: Some(request.clone()),
                    body: Some(body("CXQQ", &request, &subject, 600).into()),
                    ..base.clone()
                });
            }
            for agency in &agencies {
                let request = format!("Q{n:016}-{agency}");
                let status = match mix.below(50) {
                    0 => "timeout",
                    1 => "http_503",
                    _ => "http_200",
                };
                let size = 300 + mix.below(2_400) as usize;
                rows.push(AuditRecord {
                    direction: Some(Direction::Reply),
                    action: "inquiry.reply".into(),
                    agency: Some((*agency).into()),
                    inquiry_id: Some(id.clone()),
                    request_number: Some(request.clone()),
                    status: Some(status.into()),
                    latency_ms: Some(20 + mix.below(900) as i64),
                    body: Some(body("CXJG", &request, &subject, size).into()),
                    ..base.clone()
                });
            }
            rows.push(AuditRecord {
                direction: Some(Direction::Internal),
                action: "inquiry.completed".into(),
                inquiry_id: Some(id),
                status: Some("completed".into()),
                ..base
            });
            rows
        }
        75..=84 => {
            let agency = AGENCIES[mix.below(2) as usize];
            let order = format!("ord_{n:028x}");
            vec![
                AuditRecord {
                    direction: Some(Direction::Inbound),
                    action: "order.create".into(),
                    agency: Some(agency.into()),
                    status: Some("accepted".into()),
                    body: Some(body("KZQQ", &order, &subject, 900).into()),
                    ..base.clone()
                },
                AuditRecord {
                    direction: Some(Direction::Outbound),
                    action: "order.send".into(),
                    agency: Some(agency.into()),
                    request_number: Some(order.clone()),
                    body: Some(body("KZQQ", &order, &subject, 900).into()),
                    ..base.clone()
                },
                AuditRecord {
                    direction: Some(Direction::Reply),
                    action: "order.reply".into(),
                    agency: Some(agency.into()),
                    request_number: Some(order.clone()),
                    status: Some("http_200".into()),
                    latency_ms: Some(40 + mix.below(600) as i64),
                    body: Some(body("KZJG", &order, &subject, 500).into()),
                    ..base
                },
            ]
        }
        85..=96 => (0..1 + mix.below(4))
            .map(|_| AuditRecord {
                direction: Some(Direction::Inbound),
                caller: Some("demo-auditor".into()),
                action: "console.audit.query".into(),
                status: Some("ok".into()),
                body: Some(
                    format!(
                        "{{\"path\":\"/console/audit\",\"session\":\"{:08x}\",\"details\":\
                         {{\"filter\":\"case_number: {case_number}\"}}}}",
                        mix.next() as u32
                    )
                    .into(),
                ),
                ..AuditRecord::default()
            })
            .collect(),
        _ => vec![AuditRecord {
            direction: Some(Direction::Inbound),
            action: "auth.refused".into(),
            status: Some("unauthorized".into()),
            body: Some("{\"route\":\"/v1/inquiries\",\"status\":401}".into()),
            ..AuditRecord::default()
        }],
    }
}

/// Fills the database at `url` (made by the store as the gateway makes
/// it) with about `rows` rows and their checkpoints.
async fn seed(url: &str, rows: usize) -> anyhow::Result<Seeded> {
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::open(url).await?)
    } else {
        Arc::new(PgStore::open(url).await?)
    };
    let key = AuditSettings {
        signing_key_file: Some(repo_root().join("config/demo-audit-signing-key.hex")),
        ..AuditSettings::default()
    }
    .signing_key()
    .map_err(anyhow::Error::msg)?
    .context("the demo's audit key")?;
    let mut seen = Seeded {
        officers: (0..OFFICERS).step_by(37).map(officer).collect(),
        ..Seeded::default()
    };
    let mut mix = Mix(20_240_501);
    let now = chrono::Utc::now().timestamp_millis();
    let first_ms = now - SPAN_MS;
    // Each piece of traffic a few seconds after the last, its rows some
    // milliseconds apart: about as many rows a day as the span allows.
    // (About ten rows a piece, each piece half a step after the last on
    // average.)
    let step_ms = (SPAN_MS * 19 / rows.max(1) as i64).max(2);
    let mut at = first_ms;
    let mut n = 0u64;
    let mut made = 0usize;
    let mut pending: Vec<NewAuditRow> = Vec::with_capacity(BATCH + 16);
    while made < rows {
        n += 1;
        at += 1 + mix.below(step_ms as u64) as i64;
        for record in traffic(&mut mix, n, &mut seen) {
            if made == rows {
                break;
            }
            at += mix.below(40) as i64;
            pending.push(NewAuditRow { at_ms: at, record });
            made += 1;
        }
        if pending.len() >= BATCH || made == rows {
            let batch = std::mem::take(&mut pending);
            for row in store.append_audit(batch).await? {
                if row.seq % CHECKPOINT_EVERY == 0 {
                    let c = sign_checkpoint(&key, row.seq, &row.hash, row.at_ms);
                    store.add_checkpoint(&c).await?;
                    seen.checkpoints += 1;
                }
                seen.rows = row.seq;
            }
            if made % 200_000 < BATCH {
                println!("    {made} rows");
            }
        }
    }
    seen.first_ms = first_ms;
    seen.last_ms = at;
    Ok(seen)
}

/// An auditor's session over plain HTTP.
struct Session {
    client: reqwest::Client,
    base: String,
    cookie: String,
}

impl Session {
    async fn sign_in(base: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(600))
            .build()?;
        let response = client
            .post(format!("{base}/console/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={AUDITOR_TOKEN}"))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == StatusCode::SEE_OTHER,
            "sign-in answered {}",
            response.status()
        );
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(&format!("{COOKIE}=")))
            .and_then(|rest| rest.split(';').next())
            .context("the session cookie")?
            .to_owned();
        Ok(Self {
            client,
            base: base.to_owned(),
            cookie,
        })
    }

    /// A page's body, and how long it took to have all of it.
    async fn get(&self, path: &str) -> anyhow::Result<(String, Duration)> {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("{COOKIE}={}", self.cookie))
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        let took = started.elapsed();
        anyhow::ensure!(status == StatusCode::OK, "{path} answered {status}");
        Ok((text, took))
    }

    /// The chain page's button.
    async fn verify_all(&self, csrf: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let response = self
            .client
            .post(format!("{}/console/audit/chain", self.base))
            .header("cookie", format!("{COOKIE}={}", self.cookie))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
            .await?;
        let status = response.status();
        let _ = response.bytes().await?;
        let took = started.elapsed();
        anyhow::ensure!(
            status == StatusCode::SEE_OTHER,
            "the whole pass answered {status}"
        );
        Ok(took)
    }
}

/// Rows a search page lists: each is a link to its row in a numbered
/// cell.
fn listed(html: &str) -> usize {
    html.matches("<td class=\"num\"><a href=\"/console/audit/")
        .count()
}

/// The page's next-page link.
fn next_link(html: &str) -> Option<String> {
    let at = html.find("rel=\"next\"")?;
    let before = &html[..at];
    let start = before.rfind("href=\"")? + 6;
    let end = start + before[start..].find('"')?;
    Some(before[start..end].replace("&amp;", "&"))
}

fn hidden_csrf(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = at + html[at..].find('"')?;
    Some(html[at..end].to_owned())
}

fn query(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A time as the search form's `datetime-local` field sends it (UTC+8).
fn form_time(ms: i64) -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("UTC")));
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&china)
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// Measures `paths` (asked one after another) as one page's figures.
async fn measure(
    session: &Session,
    page: &str,
    paths: &[String],
    count_rows: fn(&str) -> usize,
) -> anyhow::Result<PageFigures> {
    let mut h = new_histogram();
    let mut rows = 0usize;
    for path in paths {
        let (text, took) = session.get(path).await?;
        rows += count_rows(&text);
        h.record(took.as_micros().max(1) as u64)?;
    }
    let figures = PageFigures {
        page: page.into(),
        example: paths.first().cloned().unwrap_or_default(),
        latency: summarize(&h),
        rows_mean: rows as f64 / paths.len().max(1) as f64,
        rows_per_s: None,
    };
    print_page(&figures);
    Ok(figures)
}

fn print_page(f: &PageFigures) {
    println!(
        "    {:<34} n={:<4} p50 {:>9.1} ms  p99 {:>9.1} ms  max {:>9.1} ms  rows {:>8.0}{}",
        f.page,
        f.latency.count,
        f.latency.p50_ms,
        f.latency.p99_ms,
        f.latency.max_ms,
        f.rows_mean,
        f.rows_per_s
            .map(|r| format!("  {r:.0} rows/s"))
            .unwrap_or_default()
    );
}

fn search_rows(html: &str) -> usize {
    listed(html)
}

fn no_rows(_: &str) -> usize {
    0
}

/// Every page, many times.
async fn pages(
    session: &Session,
    seen: &Seeded,
    requests: usize,
) -> anyhow::Result<Vec<PageFigures>> {
    let mut figures = Vec::new();
    let pick = |list: &[String], i: usize| list[(i * 7 + 3) % list.len().max(1)].clone();
    let n = requests;

    // The first visit after the gateway started: the whole pass.
    let started = Instant::now();
    let (first, _) = session.get("/console/audit/chain").await?;
    let first_took = started.elapsed();
    anyhow::ensure!(
        first.contains("status ok"),
        "the seeded chain does not verify: {}",
        first
            .split("class=\"problem\">")
            .nth(1)
            .and_then(|p| p.split('<').next())
            .unwrap_or("(no problem named)")
    );
    let mut h = new_histogram();
    h.record(first_took.as_micros().max(1) as u64)?;
    let whole_first = PageFigures {
        page: "chain, first visit (whole pass)".into(),
        example: "/console/audit/chain".into(),
        latency: summarize(&h),
        rows_mean: seen.rows as f64,
        rows_per_s: Some(seen.rows as f64 / first_took.as_secs_f64()),
    };
    print_page(&whole_first);
    figures.push(whole_first);
    let csrf = hidden_csrf(&first).context("the chain page's form token")?;

    let same = |path: &str| vec![path.to_owned(); n];
    figures.push(
        measure(
            session,
            "search, no filter",
            &same("/console/audit"),
            search_rows,
        )
        .await?,
    );
    let by = |name: &str, list: &[String], count: usize| -> Vec<String> {
        (0..count)
            .map(|i| format!("/console/audit?{}", query(&[(name, &pick(list, i))])))
            .collect()
    };
    figures.push(
        measure(
            session,
            "search by subject",
            &by("subject", &seen.subjects, n),
            search_rows,
        )
        .await?,
    );
    figures.push(
        measure(
            session,
            "search by case number",
            &by("case_number", &seen.cases, n),
            search_rows,
        )
        .await?,
    );
    figures.push(
        measure(
            session,
            "search by officer",
            &by("officer", &seen.officers, n / 2),
            search_rows,
        )
        .await?,
    );
    // An agency over one day, days spread over the log.
    let day = 24 * 3_600_000;
    let ranged: Vec<String> = (0..n)
        .map(|i| {
            let from = seen.first_ms + (i as i64 * 7_919 % 88) * day;
            format!(
                "/console/audit?{}",
                query(&[
                    ("agency", AGENCIES[i % AGENCIES.len()]),
                    ("from", &form_time(from)),
                    ("to", &form_time(from + day)),
                ])
            )
        })
        .collect();
    figures.push(measure(session, "search by agency + one day", &ranged, search_rows).await?);

    // Deep pages: an agency's rows, 100 a page, following "next" links.
    let mut h = new_histogram();
    let mut path = format!(
        "/console/audit?{}",
        query(&[("agency", "bank-b"), ("limit", "100")])
    );
    let mut deepest = path.clone();
    let mut followed = 0usize;
    let mut listed_rows = 0usize;
    for _ in 0..n {
        let (text, took) = session.get(&path).await?;
        h.record(took.as_micros().max(1) as u64)?;
        listed_rows += listed(&text);
        followed += 1;
        deepest = path.clone();
        match next_link(&text) {
            Some(next) => path = next,
            None => break,
        }
    }
    // Then far in: a cursor near the log's end.
    let far = format!(
        "/console/audit?{}",
        query(&[
            ("agency", "bank-b"),
            ("limit", "100"),
            ("cursor", &(seen.rows * 9 / 10).to_string()),
        ])
    );
    for _ in 0..n / 2 {
        let (text, took) = session.get(&far).await?;
        h.record(took.as_micros().max(1) as u64)?;
        listed_rows += listed(&text);
        followed += 1;
    }
    let deep = PageFigures {
        page: "search, page after page (links)".into(),
        example: format!("{deepest} … {far}"),
        latency: summarize(&h),
        rows_mean: listed_rows as f64 / followed.max(1) as f64,
        rows_per_s: None,
    };
    print_page(&deep);
    figures.push(deep);

    // The export of one agency's rows over a week.
    let mut h = new_histogram();
    let mut exported = 0usize;
    let mut secs = 0.0;
    let exports = (n / 10).max(3);
    let mut example = String::new();
    for i in 0..exports {
        let from = seen.first_ms + (i as i64 * 13 % 82) * day;
        let path = format!(
            "/console/audit/export.csv?{}",
            query(&[
                ("agency", AGENCIES[i % AGENCIES.len()]),
                ("from", &form_time(from)),
                ("to", &form_time(from + 7 * day)),
            ])
        );
        let (text, took) = session.get(&path).await?;
        h.record(took.as_micros().max(1) as u64)?;
        exported += text.lines().count().saturating_sub(1);
        secs += took.as_secs_f64();
        example = path;
    }
    let export = PageFigures {
        page: "CSV export (agency, one week)".into(),
        example,
        latency: summarize(&h),
        rows_mean: exported as f64 / exports as f64,
        rows_per_s: Some(exported as f64 / secs.max(1e-9)),
    };
    print_page(&export);
    figures.push(export);

    let rows: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "/console/audit/{}",
                1 + (i as i64 * 104_729) % seen.rows.max(1)
            )
        })
        .collect();
    figures.push(measure(session, "one row", &rows, no_rows).await?);
    let timelines: Vec<String> = (0..n)
        .map(|i| format!("/console/audit/timeline/{}", pick(&seen.inquiries, i)))
        .collect();
    figures.push(
        measure(session, "an inquiry's timeline", &timelines, |html| {
            html.matches("<li class=\"step ").count()
        })
        .await?,
    );
    figures.push(
        measure(
            session,
            "chain, quick visit",
            &same("/console/audit/chain"),
            no_rows,
        )
        .await?,
    );

    // The button: the whole pass again.
    let mut h = new_histogram();
    for _ in 0..3 {
        let took = session.verify_all(&csrf).await?;
        h.record(took.as_micros().max(1) as u64)?;
    }
    let (after, _) = session.get("/console/audit/chain").await?;
    anyhow::ensure!(after.contains("status ok"), "the chain broke meanwhile");
    let latency = summarize(&h);
    let whole = PageFigures {
        page: "chain, whole pass (button)".into(),
        example: "POST /console/audit/chain".into(),
        rows_mean: seen.rows as f64,
        rows_per_s: Some(seen.rows as f64 / (latency.mean_ms / 1000.0).max(1e-9)),
        latency,
    };
    print_page(&whole);
    figures.push(whole);
    Ok(figures)
}

/// Seeds a database on `backend`, starts a gateway on it, and measures.
async fn one_backend(
    gateway_bin: &GatewayBinary,
    dir: &Path,
    client: &reqwest::Client,
    backend: Backend,
    rows: usize,
    requests: usize,
) -> anyhow::Result<ConsoleRun> {
    let label = backend.label().to_owned();
    let on_sqlite = matches!(backend, Backend::Sqlite);
    println!("\n== The console over {rows} rows on {label} ==");
    let name = "console";
    let (url, database) = backend.database(dir, name).await?;
    println!("  seeding ...");
    let started = Instant::now();
    let seen = seed(&url, rows).await?;
    let seed_secs = started.elapsed().as_secs_f64();
    println!(
        "  seeded {} rows and {} checkpoints in {seed_secs:.0} s",
        seen.rows, seen.checkpoints
    );
    let database_mib = database_mib(&url, dir, name).await;
    let gateway = Gateway::start_on(
        gateway_bin,
        None,
        GatewaySpec {
            name,
            banks: &[],
            backend,
            max_in_flight: None,
            agencies_dir: Some(repo_root().join("config/agencies")),
        },
        (url, database),
        dir,
        client,
    )
    .await?;
    let measured = async {
        let session = Session::sign_in(&gateway.base).await?;
        pages(&session, &seen, requests).await
    }
    .await;
    gateway.stop().await;
    if on_sqlite {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}.db{suffix}")));
        }
    }
    Ok(ConsoleRun {
        backend: label,
        rows: seen.rows,
        checkpoints: seen.checkpoints,
        seed_secs,
        seed_rows_per_s: seen.rows as f64 / seed_secs,
        database_mib,
        pages: measured?,
    })
}

async fn database_mib(url: &str, dir: &Path, name: &str) -> Option<f64> {
    if url.starts_with("sqlite:") {
        let bytes: u64 = ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(dir.join(format!("{name}.db{s}"))).ok())
            .map(|m| m.len())
            .sum();
        return Some(bytes as f64 / 1_048_576.0);
    }
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.ok()?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut c)
        .await
        .ok()?;
    let _ = c.close().await;
    Some(bytes as f64 / 1_048_576.0)
}

/// The scenario on SQLite, and on PostgreSQL at `postgres` when given;
/// writes `console.json` into `out`.
pub async fn run(
    gateway_bin: &GatewayBinary,
    dir: &Path,
    client: &reqwest::Client,
    postgres: Option<String>,
    rows: usize,
    requests: usize,
    out: &Path,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut backends = vec![Backend::Sqlite];
    if let Some(server_url) = postgres {
        backends.push(Backend::Postgres { server_url });
    }
    let mut runs = Vec::new();
    for backend in backends {
        runs.push(one_backend(gateway_bin, dir, client, backend, rows, requests).await?);
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let results = ConsoleResults {
        when: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: format!(
            "{cpu}, {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        commit: crate::procs::git_commit(&repo_root()).unwrap_or_default(),
        runs,
        total_secs: started.elapsed().as_secs_f64(),
    };
    let text = table(&results);
    println!("\n{text}");
    std::fs::write(
        out.join("console.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!(
        "results: {} (the whole run took {:.0} s)",
        out.join("console.json").display(),
        results.total_secs
    );
    Ok(())
}

/// The results as the markdown tables `docs/benchmarks/console.md` shows.
pub fn table(r: &ConsoleResults) -> String {
    let mut text = format!(
        "Run of {} on {} (commit {}), {:.0} s in all.\n",
        r.when, r.machine, r.commit, r.total_secs
    );
    for run in &r.runs {
        text.push_str(&format!(
            "\n### {}: {} rows, {} checkpoints, {} seeded in {:.0} s ({:.0} rows/s)\n\n\
             | Page | Requests | p50 ms | p99 ms | max ms | Rows (mean) |\n\
             |---|---:|---:|---:|---:|---:|\n",
            run.backend,
            run.rows,
            run.checkpoints,
            run.database_mib
                .map(|m| format!("{m:.0} MiB"))
                .unwrap_or_else(|| "size unknown,".into()),
            run.seed_secs,
            run.seed_rows_per_s
        ));
        for p in &run.pages {
            text.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0}{} |\n",
                p.page,
                p.latency.count,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.max_ms,
                p.rows_mean,
                p.rows_per_s
                    .map(|r| format!(" ({r:.0} rows/s)"))
                    .unwrap_or_default()
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_link_is_read_from_the_page() {
        let html = "<a href=\"/console/audit?agency=bank-b&amp;limit=100&amp;cursor=41\" \
                    rel=\"next\" hx-get=\"x\">";
        assert_eq!(
            next_link(html).as_deref(),
            Some("/console/audit?agency=bank-b&limit=100&cursor=41")
        );
        assert_eq!(next_link("<p>no more</p>"), None);
        assert_eq!(
            hidden_csrf("<input type=\"hidden\" name=\"csrf\" value=\"abc\">").as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn the_same_traffic_every_run() {
        let mut a = Seeded::default();
        let mut b = Seeded::default();
        let one: Vec<String> = (1..50)
            .flat_map(|n| traffic(&mut Mix(7), n, &mut a))
            .map(|r| format!("{r:?}"))
            .collect();
        let two: Vec<String> = (1..50)
            .flat_map(|n| traffic(&mut Mix(7), n, &mut b))
            .map(|r| format!("{r:?}"))
            .collect();
        assert_eq!(one, two);
        let (number, subject, _) = case(12);
        assert!(number.contains("执1012号"), "{number}");
        assert_eq!(subject.len(), 18);
    }
}
