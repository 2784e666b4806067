//! `gateway batch submit FILE` and `gateway batch resume BATCH_ID`: a batch
//! inquiry from a CSV or JSON file, followed to its end on the batch's
//! event stream with a progress bar, and its results downloaded to a file.
//!
//! Submitting is safe to repeat: the `Idempotency-Key` is derived from the
//! file's content, so the same command after an interruption finds the
//! batch it already made (the gateway replays it) instead of making
//! another. A dropped event stream is reopened a bounded number of times;
//! the results are written to a temporary file beside the final one and
//! renamed into place only when the download is whole.
//!
//! Nothing here logs a subject: refused lines are reported by line, field
//! and the gateway's message, which never repeats an identity number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// How often one step (the submission, opening or reopening the event
/// stream, the download) is tried before giving up, and how long to wait
/// between attempts.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    attempts: u32,
    /// The first wait; it doubles up to `max`.
    first: Duration,
    max: Duration,
}

/// 8 attempts, waiting 0.25, 0.5, 1, 2, 4, 8 and 10 s between them.
const BACKOFF: Backoff = Backoff {
    attempts: 8,
    first: Duration::from_millis(250),
    max: Duration::from_secs(10),
};
/// How long a stream may stay silent before it counts as dropped (the
/// gateway sends a keep-alive comment every 15 s).
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest line of an event stream held while waiting for its end.
const MAX_SSE_LINE: usize = 16 * 1024 * 1024;

/// The results' form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON result a line, refused lines included.
    #[default]
    Ndjson,
    /// One row per asset found, per agency part that found none, and per
    /// refused line.
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "results.ndjson",
            Format::Csv => "results.csv",
        }
    }

    fn accept(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv",
        }
    }
}

/// Where the gateway is and who calls it.
#[derive(Debug, Clone)]
pub struct Server {
    pub url: String,
    pub token: String,
}

/// The results file of `file` in `format` when `--out` is not given:
/// `subjects.csv` gives `subjects.results.ndjson`.
pub fn default_out(file: &Path, format: Format) -> PathBuf {
    file.with_extension(format.extension())
}

/// The `Idempotency-Key` of a file's content: the same file gives the same
/// key, and so the same batch.
pub fn content_key(content: &[u8]) -> String {
    format!("file-{}", hex::encode(Sha256::digest(content)))
}

/// `gateway batch submit`: posts `file`, follows the batch, downloads its
/// results to `out` (or [`default_out`]).
pub async fn submit(
    server: &Server,
    file: &Path,
    out: Option<PathBuf>,
    format: Format,
    key: Option<String>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let out = out.unwrap_or_else(|| default_out(file, format));
    let content = tokio::fs::read(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    if content.len() > crate::batch::MAX_BODY_BYTES {
        bail!(
            "{} has {} bytes; a batch request takes at most {} (split the file)",
            file.display(),
            content.len(),
            crate::batch::MAX_BODY_BYTES
        );
    }
    let json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let content_type = if json {
        "application/json"
    } else {
        "text/csv; charset=utf-8"
    };
    let key = key.unwrap_or_else(|| content_key(&content));
    let client = Client::new(server)?;
    let (view, replayed) = client.create(&key, content_type, content).await?;
    let id = checked_id(&view.id)?;
    describe(&view, replayed);
    println!(
        "if interrupted, run the same command again, or: {}",
        resume_command(id, &out, format)
    );
    follow_and_download(&client, &view, &out, format, started).await
}

/// `gateway batch resume`: follows an existing batch and downloads its
/// results to `out`.
pub async fn resume(server: &Server, id: &str, out: &Path, format: Format) -> anyhow::Result<()> {
    let started = Instant::now();
    let id = checked_id(id)?;
    let client = Client::new(server)?;
    let view = client.get(id).await?;
    describe(&view, false);
    follow_and_download(&client, &view, out, format, started).await
}

/// The batch's counts on stdout, its refused lines on stderr.
fn describe(view: &View, replayed: bool) {
    println!(
        "batch {}{}: {} line(s), {} accepted, {} refused",
        view.id,
        if replayed {
            " (submitted before; following it)"
        } else {
            ""
        },
        view.lines,
        view.accepted,
        view.refused
    );
    for line in &view.refused_lines {
        eprintln!(
            "refused: line {}{}: {} ({})",
            line.line,
            line.field
                .as_deref()
                .map(|f| format!(", {f}"))
                .unwrap_or_default(),
            line.message,
            line.code
        );
    }
}

/// The command that picks the batch up again.
fn resume_command(id: &str, out: &Path, format: Format) -> String {
    let format = match format {
        Format::Ndjson => "",
        Format::Csv => " --format csv",
    };
    format!("gateway batch resume {id} --out {}{format}", out.display())
}

async fn follow_and_download(
    client: &Client,
    start: &View,
    out: &Path,
    format: Format,
    started: Instant,
) -> anyhow::Result<()> {
    let id = checked_id(&start.id)?;
    let resume_hint = || format!("resume with: {}", resume_command(id, out, format));
    let work = async {
        let view = client
            .follow(id, start)
            .await
            .with_context(|| format!("following batch {id}"))?;
        // NDJSON has one line per line of the batch: a shorter download
        // is not put in place.
        let expected = (format == Format::Ndjson).then_some(view.lines);
        client
            .download(id, out, format, expected)
            .await
            .with_context(|| format!("downloading the results of batch {id}"))?;
        Ok(view)
    };
    let view = tokio::select! {
        result = work => match result {
            Ok(view) => view,
            // The gateway said no for good: resuming would not help.
            Err(e) if refused_for_good(&e) => return Err(e),
            Err(e) => bail!("{e:#} ({})", resume_hint()),
        },
        _ = tokio::signal::ctrl_c() => bail!("interrupted; {}", resume_hint()),
    };
    println!(
        "batch {id} done: {} subject(s) completed, {} refused; results in {}; {:.1} s",
        view.subjects.completed,
        view.refused,
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A batch id as the gateway makes them, safe in a URL path.
fn checked_id(id: &str) -> anyhow::Result<&str> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(id)
    } else {
        bail!("{id:?} is not a batch id (bat_...)")
    }
}

/// The batch as the API shows it: what the command reads of it.
#[derive(Debug, Clone, Deserialize)]
struct View {
    id: String,
    lines: i64,
    accepted: i64,
    refused: i64,
    subjects: Subjects,
    #[serde(default)]
    agencies: Vec<AgencyCounts>,
    #[serde(default)]
    refused_lines: Vec<RefusedLine>,
}

#[derive(Debug, Clone, Deserialize)]
struct Subjects {
    completed: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct AgencyCounts {
    agency: String,
    #[serde(default)]
    statuses: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Deserialize)]
struct RefusedLine {
    line: i64,
    code: String,
    message: String,
    field: Option<String>,
}

impl View {
    /// What the batch waits for: the agencies with parts pending.
    fn waiting(&self) -> String {
        let pending: Vec<String> = self
            .agencies
            .iter()
            .filter_map(|a| {
                let n = a.statuses.get("pending").copied().unwrap_or(0);
                (n > 0).then(|| format!("{} {n}", a.agency))
            })
            .collect();
        if pending.is_empty() {
            String::new()
        } else {
            format!("pending: {}", pending.join(", "))
        }
    }
}

/// The API's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    message: String,
    field: Option<String>,
}

/// An attempt's failure: worth another attempt, or not.
enum Failure {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

impl Failure {
    /// A failed request: timeouts and connection failures are retried.
    fn request(what: &str, e: reqwest::Error) -> Self {
        let retry =
            e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
        let e = anyhow::Error::new(e).context(what.to_owned());
        if retry {
            Failure::Retry(e)
        } else {
            Failure::Fatal(e)
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or fails
/// `backoff.attempts` times in a row, waiting longer after each failure.
/// `notice` is told of each retry.
async fn with_retries<T, F, Fut>(
    backoff: Backoff,
    mut notice: impl FnMut(&str),
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut wait = backoff.first;
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(e)) if n >= backoff.attempts => {
                return Err(e.context(format!("gave up after {n} attempts")));
            }
            Err(Failure::Retry(e)) => {
                notice(&format!(
                    "{e:#}; retrying in {:.1} s ({n}/{})",
                    wait.as_secs_f64(),
                    backoff.attempts
                ));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(backoff.max);
                n += 1;
            }
        }
    }
}

/// The gateway's answer to a request, when it is not what was asked for.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// Whether `e` is the gateway's refusal of the request itself (4xx).
fn refused_for_good(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<Refused>()
            .is_some_and(|r| r.status.is_client_error())
    })
}

/// A response's failure as one line: the HTTP status and the API's
/// `error.message` (and field). Server errors and throttling are retried.
async fn refusal(what: &str, response: Response) -> Failure {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let detail = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => {
            let mut s = body.error.message;
            if let Some(field) = body.error.field {
                s.push_str(&format!(" (field {field})"));
            }
            if !body.error.code.is_empty() {
                s.push_str(&format!(" [{}]", body.error.code));
            }
            s
        }
        // Not the API's error (a proxy's page, say): its start, on one line.
        Err(_) => {
            let start: String = text.chars().take(200).collect();
            start.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    let message = if detail.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {detail}")
    };
    let e = anyhow::Error::new(Refused { status, message });
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Failure::Retry(e)
    } else {
        Failure::Fatal(e)
    }
}

/// The next chunk of a response, or a failure when it errs or stays
/// silent for [`IDLE_LIMIT`].
async fn next_chunk(what: &str, response: &mut Response) -> Result<Option<bytes::Bytes>, Failure> {
    match tokio::time::timeout(IDLE_LIMIT, response.chunk()).await {
        Err(_) => Err(Failure::Retry(anyhow::anyhow!(
            "{what}: nothing received for {} s",
            IDLE_LIMIT.as_secs()
        ))),
        Ok(Err(e)) => Err(Failure::request(what, e)),
        Ok(Ok(chunk)) => Ok(chunk),
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    backoff: Backoff,
}

impl Client {
    fn new(server: &Server) -> anyhow::Result<Self> {
        Self::with_backoff(server, BACKOFF)
    }

    fn with_backoff(server: &Server, backoff: Backoff) -> anyhow::Result<Self> {
        let base = server.url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).with_context(|| format!("--url {base:?} is not a URL"))?;
        if server.token.trim().is_empty() {
            bail!("no token: give --token or set GATEWAY_TOKEN");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            base,
            token: server.token.clone(),
            backoff,
        })
    }

    /// Posts the batch; the view, and whether the gateway replayed it.
    async fn create(
        &self,
        key: &str,
        content_type: &str,
        content: Vec<u8>,
    ) -> anyhow::Result<(View, bool)> {
        let what = "POST /v1/inquiry-batches";
        let content = bytes::Bytes::from(content);
        with_retries(
            self.backoff,
            |m| eprintln!("{m}"),
            || async {
                let response = self
                    .http
                    .post(format!("{}/v1/inquiry-batches", self.base))
                    .bearer_auth(&self.token)
                    .header("idempotency-key", key)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .timeout(Duration::from_secs(120))
                    .body(content.clone())
                    .send()
                    .await
                    .map_err(|e| Failure::request(what, e))?;
                if response.status() != StatusCode::ACCEPTED {
                    return Err(refusal(what, response).await);
                }
                let replayed = response
                    .headers()
                    .get("idempotent-replayed")
                    .is_some_and(|v| v.as_bytes() == b"true");
                let view = response
                    .json::<View>()
                    .await
                    .map_err(|e| Failure::request(what, e))?;
                Ok((view, replayed))
            },
        )
        .await
    }

    /// The batch as it stands, its refused lines included.
    async fn get(&self, id: &str) -> anyhow::Result<View> {
        let what = format!("GET /v1/inquiry-batches/{id}");
        with_retries(
            self.backoff,
            |m| eprintln!("{m}"),
            || async {
                let response = self
                    .http
                    .get(format!("{}/v1/inquiry-batches/{id}", self.base))
                    .bearer_auth(&self.token)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .map_err(|e| Failure::request(&what, e))?;
                if response.status() != StatusCode::OK {
                    return Err(refusal(&what, response).await);
                }
                response
                    .json::<View>()
                    .await
                    .map_err(|e| Failure::request(&what, e))
            },
        )
        .await
    }

    /// Follows the batch's event stream to its `completed` event, with a
    /// progress bar, reopening it when it drops; the final view. The
    /// reopenings are bounded: `backoff.attempts` in a row without a
    /// subject completing in between.
    async fn follow(&self, id: &str, start: &View) -> anyhow::Result<View> {
        let bar = ProgressBar::new(u64::try_from(start.accepted).unwrap_or(0));
        bar.set_position(u64::try_from(start.subjects.completed).unwrap_or(0));
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} subjects {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        let mut best = bar.position();
        let mut failures = 0;
        let backoff = self.backoff;
        let mut wait = backoff.first;
        let result = loop {
            match self.follow_once(id, &bar).await {
                Ok(view) => break Ok(view),
                Err(Failure::Fatal(e)) => break Err(e),
                Err(Failure::Retry(e)) => {
                    // A stream that moved on before it dropped starts the
                    // count anew: subjects complete once, so this is
                    // bounded too.
                    if bar.position() > best {
                        best = bar.position();
                        failures = 0;
                        wait = backoff.first;
                    }
                    failures += 1;
                    if failures >= backoff.attempts {
                        break Err(e.context(format!("gave up after {failures} attempts in a row")));
                    }
                    bar.suspend(|| {
                        eprintln!(
                            "{e:#}; reconnecting in {:.1} s ({failures}/{})",
                            wait.as_secs_f64(),
                            backoff.attempts
                        )
                    });
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(backoff.max);
                }
            }
        };
        bar.finish_and_clear();
        result
    }

    /// One connection to the event stream, read until `completed` (the
    /// final view) or until it drops.
    async fn follow_once(&self, id: &str, bar: &ProgressBar) -> Result<View, Failure> {
        let what = format!("GET /v1/inquiry-batches/{id}/events");
        let mut response = self
            .http
            .get(format!("{}/v1/inquiry-batches/{id}/events", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| Failure::request(&what, e))?;
        if response.status() != StatusCode::OK {
            return Err(refusal(&what, response).await);
        }
        let mut parser = SseParser::default();
        while let Some(chunk) = next_chunk(&what, &mut response).await? {
            let events = parser
                .feed(&chunk)
                .map_err(|e| Failure::Retry(anyhow::anyhow!("{what}: {e}")))?;
            for event in events {
                match event.name.as_str() {
                    "progress" | "completed" => {
                        let view: View = serde_json::from_str(&event.data).map_err(|e| {
                            Failure::Fatal(anyhow::anyhow!(
                                "{what}: an unreadable `{}` event: {e}",
                                event.name
                            ))
                        })?;
                        bar.set_length(u64::try_from(view.accepted).unwrap_or(0));
                        bar.set_position(u64::try_from(view.subjects.completed).unwrap_or(0));
                        bar.set_message(view.waiting());
                        if event.name == "completed" {
                            return Ok(view);
                        }
                    }
                    "error" => {
                        let message = serde_json::from_str::<ErrorBody>(&event.data)
                            .map(|b| b.error.message)
                            .unwrap_or(event.data);
                        return Err(Failure::Retry(anyhow::anyhow!(
                            "{what}: the gateway reported: {message}"
                        )));
                    }
                    // `result` events: the results are downloaded whole at
                    // the end.
                    _ => {}
                }
            }
        }
        Err(Failure::Retry(anyhow::anyhow!(
            "{what}: the stream ended before the batch completed ({}/{} subjects done)",
            bar.position(),
            bar.length().unwrap_or(0)
        )))
    }

    /// Downloads the results to `out` through a temporary file beside it,
    /// renamed into place once whole (`expected` lines, when known).
    async fn download(
        &self,
        id: &str,
        out: &Path,
        format: Format,
        expected: Option<i64>,
    ) -> anyhow::Result<()> {
        let what = format!("GET /v1/inquiry-batches/{id}/results");
        with_retries(
            self.backoff,
            |m| eprintln!("{m}"),
            || self.download_once(&what, id, out, format, expected),
        )
        .await
    }

    async fn download_once(
        &self,
        what: &str,
        id: &str,
        out: &Path,
        format: Format,
        expected: Option<i64>,
    ) -> Result<(), Failure> {
        let mut response = self
            .http
            .get(format!("{}/v1/inquiry-batches/{id}/results", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, format.accept())
            .send()
            .await
            .map_err(|e| Failure::request(what, e))?;
        if response.status() != StatusCode::OK {
            return Err(refusal(what, response).await);
        }
        let local = |e: std::io::Error, doing: &str| {
            Failure::Fatal(anyhow::Error::new(e).context(format!("{doing} {}", out.display())))
        };
        let temp = TempFile::beside(out);
        let mut file = tokio::fs::File::create(&temp.path)
            .await
            .map_err(|e| local(e, "cannot write a temporary file beside"))?;
        let mut lines = 0i64;
        let mut last_byte = b'\n';
        while let Some(chunk) = next_chunk(what, &mut response).await? {
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as i64;
            if let Some(&b) = chunk.last() {
                last_byte = b;
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| local(e, "cannot write the results of"))?;
        }
        if last_byte != b'\n' {
            return Err(Failure::Retry(anyhow::anyhow!(
                "{what}: the download ended inside a line"
            )));
        }
        if let Some(expected) = expected.filter(|&n| n != lines) {
            return Err(Failure::Retry(anyhow::anyhow!(
                "{what}: {lines} result line(s) for the batch's {expected} line(s)"
            )));
        }
        file.flush()
            .await
            .map_err(|e| local(e, "cannot write the results of"))?;
        file.sync_all()
            .await
            .map_err(|e| local(e, "cannot write the results of"))?;
        drop(file);
        temp.persist(out)
            .await
            .map_err(|e| local(e, "cannot rename the results into"))?;
        Ok(())
    }
}

/// A temporary file beside the results, removed unless persisted: an
/// interrupted or failed download leaves nothing under the final name.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn beside(out: &Path) -> Self {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "results".to_owned());
        let path = out.with_file_name(format!(".{name}.{}.part", std::process::id()));
        Self { path, keep: false }
    }

    async fn persist(mut self, out: &Path) -> std::io::Result<()> {
        tokio::fs::rename(&self.path, out).await?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (`message` when the event names none).
    pub name: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// Reads server-sent events from a stream's chunks, as the HTML standard
/// says: lines end in LF, CRLF or CR; `event:` names the event, each
/// `data:` line adds a line of data; a blank line ends the event; lines
/// starting with `:` are comments (keep-alives). Events without data are
/// dropped.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    name: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// The events completed by `chunk`.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.buffer[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = start + offset;
            let next = match self.buffer[end] {
                b'\r' => match self.buffer.get(end + 1) {
                    Some(b'\n') => end + 2,
                    Some(_) => end + 1,
                    // A CR last: its LF may be in the next chunk.
                    None => break,
                },
                _ => end + 1,
            };
            let line = String::from_utf8_lossy(&self.buffer[start..end]).into_owned();
            start = next;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.buffer.drain(..start);
        if self.buffer.len() > MAX_SSE_LINE {
            return Err(format!(
                "an event stream line longer than {MAX_SSE_LINE} bytes"
            ));
        }
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let name = std::mem::take(&mut self.name);
            let mut data = std::mem::take(&mut self.data);
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            let name = if name.is_empty() {
                "message".to_owned()
            } else {
                name
            };
            return Some(SseEvent { name, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            // `id` and `retry`: the stream is reopened from the start.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<SseEvent> {
        chunks
            .iter()
            .flat_map(|c| parser.feed(c).expect("parses"))
            .collect()
    }

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            name: name.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_split_across_chunks_with_comments_and_several_data_lines() {
        let mut parser = SseParser::default();
        let events = feed_all(
            &mut parser,
            &[
                b": keep-alive\n\nevent: prog",
                b"ress\ndata: {\"a\":\ndata:1}\n",
                b"\nid: 3\nevent:result\ndata: x\r",
                b"\n\r\ndata: plain\r\r: c\n",
                "data: 张".as_bytes(),
                "三\n\nevent: empty\n\n".as_bytes(),
            ],
        );
        assert_eq!(
            events,
            vec![
                event("progress", "{\"a\":\n1}"),
                event("result", "x"),
                event("message", "plain"),
                event("message", "张三"),
            ]
        );
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_dispatched() {
        let mut parser = SseParser::default();
        let events = feed_all(&mut parser, &[b"event: completed\ndata: {}\n"]);
        assert!(events.is_empty());
        assert_eq!(
            feed_all(&mut parser, &[b"\n"]),
            vec![event("completed", "{}")]
        );
    }

    #[test]
    fn keys_and_default_paths_follow_the_file() {
        assert_eq!(content_key(b"a"), content_key(b"a"));
        assert_ne!(content_key(b"a"), content_key(b"b"));
        assert!(content_key(b"a").starts_with("file-"));
        assert_eq!(content_key(b"a").len(), 5 + 64);
        assert_eq!(
            default_out(Path::new("dir/subjects.csv"), Format::Ndjson),
            PathBuf::from("dir/subjects.results.ndjson")
        );
        assert_eq!(
            default_out(Path::new("subjects"), Format::Csv),
            PathBuf::from("subjects.results.csv")
        );
    }

    #[test]
    fn batch_ids_are_checked_before_they_go_into_a_path() {
        assert!(checked_id("bat_0193c8f0d6a47c21").is_ok());
        assert!(checked_id("../admin").is_err());
        assert!(checked_id("").is_err());
        assert!(checked_id("bat_x?y").is_err());
    }

    /// A stand-in gateway whose streams and downloads fail as told, so
    /// that reconnecting and retrying can be watched.
    mod fake {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use axum::Router;
        use axum::body::Body;
        use axum::extract::State;
        use axum::http::{StatusCode, header};
        use axum::response::{IntoResponse, Response};
        use axum::routing::get;

        pub const VIEW_RUNNING: &str = r#"{"id":"bat_x","status":"running","lines":2,"accepted":2,"refused":0,"subjects":{"running":1,"completed":1},"agencies":[{"agency":"bank-a","total":2,"statuses":{"answered":1,"pending":1}}]}"#;
        pub const RESULTS: &str = "{\"line\":1}\n{\"line\":2}\n";

        #[derive(Clone, Copy, PartialEq, Eq)]
        pub enum Mode {
            /// The first stream drops after a `progress`, the second
            /// completes; the first download breaks off inside a line.
            Flaky,
            /// Every stream ends at once, without an event.
            Silent,
            /// The stream completes; every download is a 503.
            Unavailable,
        }

        #[derive(Clone)]
        pub struct Fake {
            pub mode: Mode,
            pub streams: Arc<AtomicUsize>,
            pub downloads: Arc<AtomicUsize>,
        }

        async fn events(State(fake): State<Fake>) -> Response {
            let n = fake.streams.fetch_add(1, Ordering::SeqCst);
            let completed = VIEW_RUNNING
                .replace(r#""status":"running""#, r#""status":"completed""#)
                .replace(
                    r#""running":1,"completed":1"#,
                    r#""running":0,"completed":2"#,
                );
            let body = match (fake.mode, n) {
                (Mode::Silent, _) => String::new(),
                (Mode::Flaky, 0) => format!("event: progress\ndata: {VIEW_RUNNING}\n\n"),
                _ => {
                    // The view over two data lines, after a keep-alive.
                    let at = completed.find(r#""lines""#).unwrap_or(0);
                    let (head, tail) = completed.split_at(at);
                    format!(
                        ": keep-alive\n\nevent: result\nid: 1\ndata: {{\"line\":1}}\n\n\
                         event: completed\r\ndata: {head}\r\ndata: {tail}\r\n\r\n"
                    )
                }
            };
            ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
        }

        async fn results(State(fake): State<Fake>) -> Response {
            let n = fake.downloads.fetch_add(1, Ordering::SeqCst);
            match (fake.mode, n) {
                (Mode::Unavailable, _) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"error":{"code":"unavailable","message":"the store is away"}}"#,
                )
                    .into_response(),
                (Mode::Flaky, 0) => {
                    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                        Ok("{\"line\":1}\n{\"li"),
                        Err(std::io::Error::other("the store went away")),
                    ];
                    Body::from_stream(futures::stream::iter(chunks)).into_response()
                }
                _ => RESULTS.into_response(),
            }
        }

        /// Serves `mode`; its base URL and its counters.
        pub async fn start(mode: Mode) -> anyhow::Result<(String, Fake)> {
            let fake = Fake {
                mode,
                streams: Arc::default(),
                downloads: Arc::default(),
            };
            let app = Router::new()
                .route("/v1/inquiry-batches/{id}/events", get(events))
                .route("/v1/inquiry-batches/{id}/results", get(results))
                .with_state(fake.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Ok((format!("http://{addr}"), fake))
        }
    }

    fn fast_client(base: &str) -> anyhow::Result<Client> {
        let server = Server {
            url: base.to_owned(),
            token: "t".to_owned(),
        };
        Client::with_backoff(
            &server,
            Backoff {
                attempts: 3,
                first: Duration::from_millis(1),
                max: Duration::from_millis(5),
            },
        )
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_dropped_stream_is_reopened_and_a_broken_download_retried() -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        let (base, fake) = fake::start(fake::Mode::Flaky).await?;
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("r.ndjson");
        follow_and_download(
            &fast_client(&base)?,
            &serde_json::from_str(fake::VIEW_RUNNING)?,
            &out,
            Format::Ndjson,
            Instant::now(),
        )
        .await?;
        assert_eq!(fake.streams.load(Ordering::SeqCst), 2);
        assert_eq!(fake.downloads.load(Ordering::SeqCst), 2);
        assert_eq!(std::fs::read_to_string(&out)?, fake::RESULTS);
        assert_eq!(files_in(dir.path()), vec!["r.ndjson".to_owned()]);
        Ok(())
    }

    #[tokio::test]
    async fn a_stream_that_keeps_dropping_is_given_up_with_a_way_to_resume() -> anyhow::Result<()> {
        let (base, _) = fake::start(fake::Mode::Silent).await?;
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("r.ndjson");
        let e = follow_and_download(
            &fast_client(&base)?,
            &serde_json::from_str(fake::VIEW_RUNNING)?,
            &out,
            Format::Ndjson,
            Instant::now(),
        )
        .await
        .expect_err("gives up");
        let message = format!("{e:#}");
        assert!(message.contains("gave up after 3 attempts"), "{message}");
        assert!(
            message.contains("ended before the batch completed"),
            "{message}"
        );
        assert!(message.contains("gateway batch resume bat_x"), "{message}");
        assert!(files_in(dir.path()).is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_download_the_gateway_keeps_refusing_leaves_no_file() -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        let (base, fake) = fake::start(fake::Mode::Unavailable).await?;
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("r.ndjson");
        let e = follow_and_download(
            &fast_client(&base)?,
            &serde_json::from_str(fake::VIEW_RUNNING)?,
            &out,
            Format::Ndjson,
            Instant::now(),
        )
        .await
        .expect_err("gives up");
        let message = format!("{e:#}");
        assert!(
            message.contains("HTTP 503 Service Unavailable: the store is away"),
            "{message}"
        );
        assert_eq!(fake.downloads.load(Ordering::SeqCst), 3);
        assert!(files_in(dir.path()).is_empty());
        Ok(())
    }
}
