//! What the bench measured, as the results file keeps it, and the tables it
//! prints (the same text goes into `results.md`).

use std::fmt::Write as _;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::{AuditIndex, AuditRun, GROUP_COMMIT, Mix, ROW_BY_ROW};
use crate::stats::{Summary, ratio};

/// One measured run of load against one target.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `gateway`, `direct`, `nginx`, `mock`.
    pub target: String,
    /// `zero` or `realistic` agency latency.
    pub latency_mode: String,
    /// `open` (fixed rate) or `closed` (workers back to back).
    pub load: String,
    pub offered_per_s: Option<f64>,
    pub workers: Option<usize>,
    pub agencies_per_request: usize,
    pub secs: f64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Successful requests (inquiries) per second.
    pub per_s: f64,
    pub agency_calls_per_s: f64,
    /// HTTP exchanges (a request and its reply) the system under test
    /// took part in: the bench's requests to it, and its own to the
    /// agencies (the gateway's outbound audit rows: a message that carries
    /// several inquiries' items is one exchange) or nginx's to the mock.
    pub http_exchanges: Option<u64>,
    pub http_exchanges_per_s: Option<f64>,
    pub latency: Summary,
    pub gateway_cpu_s: Option<f64>,
    pub cpu_us_per_agency_call: Option<f64>,
    pub mocks_cpu_s: f64,
    pub bench_cpu_s: f64,
    /// The load generator's own CPU per agency call: for the direct
    /// baseline, what making the calls costs the bench.
    pub bench_cpu_us_per_agency_call: Option<f64>,
    pub proxy_cpu_s: Option<f64>,
    /// The local PostgreSQL server's CPU (all its processes), when one
    /// runs on this machine.
    pub postgres_cpu_s: Option<f64>,
    /// CPU time the rest of the machine took meanwhile (other builds on a
    /// shared machine): busy time of all cores less the gateway's, the
    /// mocks', the bench's, nginx's and PostgreSQL's.
    pub other_cpu_s: f64,
    /// That, as a share of the machine's capacity over the run.
    pub other_cpu_pct: f64,
    pub audit_rows: Option<i64>,
    pub audit_rows_per_s: Option<f64>,
    pub gateway_rss_mib: Option<f64>,
    /// For the steps of a rate search: whether p99 < 50 ms held.
    pub passed: Option<bool>,
    /// A step run again at the same rate because the first run failed.
    pub repeat: bool,
}

impl Phase {
    /// Whether this open-loop run passes the search's bar (p99 < 50 ms,
    /// few failures, keeping up with the offered rate).
    pub fn passes(&self) -> bool {
        crate::stats::step_passes(
            self.offered_per_s.unwrap_or(0.0),
            self.per_s,
            self.sent,
            self.failed,
            self.latency.p99_ms,
            crate::scenarios::P99_LIMIT_MS,
        )
    }

    /// Cores the system under test (the gateway, or nginx) kept busy on
    /// average over the run.
    pub fn target_cores(&self) -> Option<f64> {
        let cpu = self.gateway_cpu_s.or(self.proxy_cpu_s)?;
        (self.secs > 0.0).then(|| cpu / self.secs)
    }

    pub fn load_label(&self) -> String {
        match (self.offered_per_s, self.workers) {
            (Some(r), _) => format!("open {r:.0}/s"),
            (None, Some(w)) => format!("closed {w}"),
            _ => self.load.clone(),
        }
    }
}

/// The gateway's memory while many inquiries wait on slow agencies.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryProbe {
    pub agency_latency_ms: u64,
    pub inquiries: u64,
    pub idle_rss_mib: f64,
    pub peak_rss_mib: f64,
    pub in_flight_at_peak: usize,
    pub most_in_flight: usize,
    pub kib_per_in_flight_inquiry: Option<f64>,
}

/// Scenarios A and B: four agencies an inquiry.
#[derive(Debug, Clone, Serialize)]
pub struct InquiryScenario {
    pub name: String,
    pub backend: String,
    pub steps: Vec<Phase>,
    pub direct_steps: Vec<Phase>,
    /// The rate held for the whole hold (the search's best, or lower
    /// when holds at it failed).
    pub best_rate: Option<f64>,
    /// Holds that failed the bar, each followed by one 15 % lower.
    pub failed_holds: Vec<Phase>,
    pub hold: Option<Phase>,
    pub hold_direct: Option<Phase>,
    pub half: Option<Phase>,
    pub half_direct: Option<Phase>,
    pub realistic: Option<Phase>,
    pub realistic_direct: Option<Phase>,
    pub closed: Option<Phase>,
    pub closed_direct: Option<Phase>,
    /// The gateway at a tenth of its closed-loop rate (open loop): its CPU
    /// per call under light load.
    pub light: Option<Phase>,
    pub memory: Option<MemoryProbe>,
    pub gateway_peak_rss_mib: f64,
    /// CPU the gateway used doing nothing (after the warm-up, 3 s), in %
    /// of one core.
    pub gateway_idle_cpu_pct: f64,
    pub notes: Vec<String>,
}

/// The nginx baseline.
#[derive(Debug, Clone, Serialize)]
pub struct NginxScenario {
    pub skipped: Option<String>,
    pub agency: String,
    pub mock_closed: Option<Phase>,
    pub nginx_closed: Option<Phase>,
    pub gateway_closed: Option<Phase>,
    pub nginx_open: Option<Phase>,
    pub gateway_open: Option<Phase>,
}

/// Scenario C: one inquiry to the whole fleet.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRun {
    pub latency_mode: String,
    pub agencies: usize,
    pub secs_to_all_answers: f64,
    pub completed: bool,
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub gateway_cpu_s: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetScenario {
    pub banks: usize,
    pub gateway_start_secs: f64,
    pub runs: Vec<FleetRun>,
    pub gateway_peak_rss_mib: f64,
}

/// Scenario D: many fleet inquiries at once.
#[derive(Debug, Clone, Serialize)]
pub struct ManyFleetScenario {
    pub inquiries: usize,
    /// Answered 202 (the rest were refused: `refusals`).
    pub accepted: usize,
    pub refusals: BTreeMap<String, usize>,
    pub agency_calls: u64,
    pub agency_calls_done: u64,
    pub completed: usize,
    pub timed_out: bool,
    pub secs: f64,
    pub agency_calls_per_s: f64,
    /// When the time bound stopped it: how long all the calls would take
    /// at the rate reached.
    pub projected_secs: Option<f64>,
    pub completion: Summary,
    pub gateway_cpu_s: f64,
    pub cpu_us_per_agency_call: Option<f64>,
    pub mocks_cpu_s: f64,
    pub audit_rows: i64,
    pub audit_rows_per_s: f64,
    pub idle_rss_mib: f64,
    pub peak_rss_mib: f64,
    pub kib_per_in_flight_inquiry: Option<f64>,
    pub task_states: std::collections::BTreeMap<String, i64>,
}

/// Scenario E: freeze orders through the exactly-once path.
#[derive(Debug, Clone, Serialize)]
pub struct OrderScenario {
    pub backend: String,
    pub orders: usize,
    pub workers: usize,
    pub accept: Summary,
    pub accepted_per_s: f64,
    pub applied: usize,
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub to_applied: Summary,
    pub applied_per_s: f64,
    pub secs: f64,
    /// Accepted orders whose control message the bank received exactly
    /// once (its `received_count` and request log), more than once, or
    /// never.
    pub ledger_received_once: usize,
    pub ledger_received_more: usize,
    pub ledger_never_received: usize,
    pub gateway_cpu_s: f64,
    pub cpu_us_per_order: Option<f64>,
    pub audit_rows: i64,
    pub audit_rows_per_s: f64,
    pub timed_out: bool,
}

/// A target of the benchmark with the figure measured for it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub figure: String,
    pub met: Option<bool>,
}

/// Everything, as written to `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub when: String,
    pub machine: Machine,
    pub command: String,
    pub quick: bool,
    pub a: Option<InquiryScenario>,
    pub nginx: Option<NginxScenario>,
    pub b: Option<InquiryScenario>,
    pub b_skipped: Option<String>,
    pub c: Option<FleetScenario>,
    pub d: Option<ManyFleetScenario>,
    pub e: Vec<OrderScenario>,
    pub e_skipped: Vec<String>,
    /// The audit writer's capacity, durability and index costs
    /// (`audit.rs`).
    pub audit: Vec<crate::audit::AuditRun>,
    /// The indexes of `audit_events` those runs dropped in turn.
    pub audit_indexes: Vec<crate::audit::AuditIndex>,
    pub targets: Vec<TargetCheck>,
    pub total_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// The bench's tree (the direct baseline, the audit scenario).
    pub commit: String,
    pub postgres: Option<String>,
    pub nginx: Option<String>,
    /// `--label`: which side of a before-and-after comparison this is.
    pub label: Option<String>,
    pub gateway: GatewayUnderTest,
    pub databases: Databases,
}

/// The gateway binary the scenarios ran.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayUnderTest {
    pub binary: String,
    /// The commit of the tree the binary lies in, when it lies in a git
    /// tree (`git rev-parse` in its folder).
    pub commit: Option<String>,
    /// Whether that tree had changes not committed.
    pub dirty: Option<bool>,
    /// Where its `gateway.toml` and dialects came from.
    pub config_dir: String,
}

/// How durable the databases' commits are, and what they are written on.
#[derive(Debug, Clone, Serialize)]
pub struct Databases {
    /// `PRAGMA synchronous` as the gateway under test opens its files.
    pub sqlite_synchronous: Option<String>,
    /// How that is known: read back from this tree's `SqliteStore::open`
    /// (a gateway of this tree), from the source of the gateway's tree
    /// (an older commit's), or not at all.
    pub sqlite_synchronous_source: String,
    /// The file system of the folder the SQLite files are made in.
    pub sqlite_filesystem: Option<String>,
    /// The server's `synchronous_commit` (the gateway does not change it).
    pub postgres_synchronous_commit: Option<String>,
    pub postgres_fsync: Option<String>,
    /// The file system of the server's `data_directory`, when it is on
    /// this machine and readable.
    pub postgres_filesystem: Option<String>,
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

const PHASE_HEADER: &str = "| run | target | agency latency | load | inquiries/s | agency calls/s | HTTP exchanges/s | p50 ms | p99 ms | p99.9 ms | failed | gateway CPU µs/agency call | bench CPU µs/agency call | audit rows/s | CPU in cores: target / mocks / bench / PostgreSQL / others |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// CPU seconds over a run's time, in cores.
fn cores(cpu: Option<f64>, secs: f64) -> String {
    opt(cpu.filter(|_| secs > 0.0), |c| format!("{:.2}", c / secs))
}

fn phase_row(out: &mut String, label: &str, p: &Phase) {
    let _ = writeln!(
        out,
        "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} / {} |",
        p.target,
        p.latency_mode,
        p.load_label(),
        thousands(p.per_s),
        thousands(p.agency_calls_per_s),
        opt(p.http_exchanges_per_s, thousands),
        ms(p.latency.p50_ms),
        ms(p.latency.p99_ms),
        ms(p.latency.p999_ms),
        p.failed,
        opt(p.cpu_us_per_agency_call, |v| format!("{v:.0}")),
        opt(p.bench_cpu_us_per_agency_call, |v| format!("{v:.1}")),
        opt(p.audit_rows_per_s, thousands),
        cores(p.gateway_cpu_s.or(p.proxy_cpu_s), p.secs),
        cores(Some(p.mocks_cpu_s), p.secs),
        cores(Some(p.bench_cpu_s), p.secs),
        cores(p.postgres_cpu_s, p.secs),
        cores(Some(p.other_cpu_s), p.secs),
    );
}

pub fn inquiry_table(s: &InquiryScenario) -> String {
    let mut out = format!(
        "### Scenario {}: 4 agencies an inquiry, {} audit\n\n{PHASE_HEADER}",
        s.name, s.backend
    );
    for (i, p) in s.steps.iter().enumerate() {
        let verdict = match p.passed {
            Some(true) => " (p99 < 50 ms)",
            Some(false) => " (fails)",
            None => "",
        };
        let again = if p.repeat { ", run again" } else { "" };
        phase_row(
            &mut out,
            &format!("search run {}{again}{verdict}", i + 1),
            p,
        );
    }
    for (i, p) in s.direct_steps.iter().enumerate() {
        phase_row(&mut out, &format!("search rate {}", i + 1), p);
    }
    for p in &s.failed_holds {
        phase_row(&mut out, "hold (fails)", p);
    }
    let named = [
        ("hold at the best rate", &s.hold),
        ("hold at the best rate", &s.hold_direct),
        ("half the best rate", &s.half),
        ("half the best rate", &s.half_direct),
        ("half, realistic latency", &s.realistic),
        ("half, realistic latency", &s.realistic_direct),
        ("closed loop", &s.closed),
        ("closed loop", &s.closed_direct),
        ("a tenth of the closed loop's rate", &s.light),
    ];
    for (label, p) in named {
        if let Some(p) = p {
            phase_row(&mut out, label, p);
        }
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "Best rate with p99 < 50 ms: {}; gateway peak RSS {:.0} MiB; the idle gateway takes {:.1} % of a core.",
        opt(s.best_rate, |r| format!("{} inquiries/s", thousands(r))),
        s.gateway_peak_rss_mib,
        s.gateway_idle_cpu_pct
    );
    if let Some(m) = &s.memory {
        let _ = writeln!(
            out,
            "Memory probe: {} inquiries against agencies answering in {} ms: RSS {:.1} MiB idle, {:.1} MiB at the peak ({} in flight then, {} at the most): {} per in-flight inquiry (growth ÷ most in flight).",
            m.inquiries,
            m.agency_latency_ms,
            m.idle_rss_mib,
            m.peak_rss_mib,
            m.in_flight_at_peak,
            m.most_in_flight,
            opt(m.kib_per_in_flight_inquiry, |k| format!("{k:.1} KiB"))
        );
    }
    let ratio_line =
        |label: &str, g: &Option<Phase>, d: &Option<Phase>, f: &dyn Fn(&Phase) -> f64| match (g, d)
        {
            (Some(g), Some(d)) => opt(ratio(f(g), f(d)), |r| format!("{label}: {r:.2}")),
            _ => format!("{label}: –"),
        };
    let _ = writeln!(
        out,
        "Ratios gateway ÷ direct: {}; {}; {}; {}.",
        ratio_line(
            "closed-loop throughput",
            &s.closed,
            &s.closed_direct,
            &|p| p.per_s
        ),
        ratio_line("p50 at half load", &s.half, &s.half_direct, &|p| p
            .latency
            .p50_ms),
        ratio_line("p99 at half load", &s.half, &s.half_direct, &|p| p
            .latency
            .p99_ms),
        ratio_line(
            "p99 at half load, realistic latency",
            &s.realistic,
            &s.realistic_direct,
            &|p| p.latency.p99_ms
        ),
    );
    if let (Some(g), Some(d)) = (&s.half, &s.half_direct) {
        let _ = writeln!(
            out,
            "Added p99 latency at half load (gateway p99 − direct p99): {} ms with zero-latency agencies{}.",
            ms(g.latency.p99_ms - d.latency.p99_ms),
            match (&s.realistic, &s.realistic_direct) {
                (Some(g), Some(d)) => format!(
                    ", {} ms with realistic latency",
                    ms(g.latency.p99_ms - d.latency.p99_ms)
                ),
                _ => String::new(),
            }
        );
    }
    if let (Some(g), Some(d)) = (&s.closed, &s.closed_direct) {
        let _ = writeln!(
            out,
            "Closed loop (saturated): gateway ÷ direct {} ({} against {} inquiries/s); the gateway kept {} cores busy at {} µs CPU per agency call, the direct baseline cost the bench {} µs per agency call.",
            opt(ratio(g.per_s, d.per_s), |r| format!("{r:.2}")),
            thousands(g.per_s),
            thousands(d.per_s),
            opt(g.target_cores(), |c| format!("{c:.2}")),
            opt(g.cpu_us_per_agency_call, |v| format!("{v:.0}")),
            opt(d.bench_cpu_us_per_agency_call, |v| format!("{v:.1}")),
        );
    }
    if let Some(l) = &s.light {
        let _ = writeln!(
            out,
            "At a tenth of the closed loop's rate ({}/s, open loop): {} µs gateway CPU per agency call, {} cores, p99 {} ms.",
            opt(l.offered_per_s, thousands),
            opt(l.cpu_us_per_agency_call, |v| format!("{v:.0}")),
            opt(l.target_cores(), |c| format!("{c:.2}")),
            ms(l.latency.p99_ms),
        );
    }
    for n in &s.notes {
        let _ = writeln!(out, "{n}");
    }
    out
}

pub fn nginx_table(s: &NginxScenario) -> String {
    let mut out = "### One-agency pass-through: the gateway against nginx\n\n".to_owned();
    if let Some(why) = &s.skipped {
        let _ = writeln!(out, "Skipped: {why}");
        return out;
    }
    out.push_str(PHASE_HEADER);
    for (label, p) in [
        ("mock alone", &s.mock_closed),
        ("nginx in front", &s.nginx_closed),
        ("gateway, one-agency inquiry", &s.gateway_closed),
        ("nginx in front", &s.nginx_open),
        ("gateway, one-agency inquiry", &s.gateway_open),
    ] {
        if let Some(p) = p {
            phase_row(&mut out, label, p);
        }
    }
    out.push('\n');
    if let (Some(g), Some(n)) = (&s.gateway_closed, &s.nginx_closed) {
        let _ = writeln!(
            out,
            "Throughput gateway ÷ nginx: {} (agency {}).",
            opt(ratio(g.per_s, n.per_s), |r| format!("{r:.3}")),
            s.agency
        );
    }
    if let (Some(g), Some(n)) = (&s.gateway_open, &s.nginx_open) {
        let _ = writeln!(
            out,
            "At the same fixed rate, p50 gateway ÷ nginx {}, p99 {}.",
            opt(ratio(g.latency.p50_ms, n.latency.p50_ms), |r| format!(
                "{r:.1}"
            )),
            opt(ratio(g.latency.p99_ms, n.latency.p99_ms), |r| format!(
                "{r:.1}"
            )),
        );
    }
    out
}

pub fn fleet_table(c: Option<&FleetScenario>, d: Option<&ManyFleetScenario>) -> String {
    let mut out = String::new();
    if let Some(c) = c {
        let _ = writeln!(
            out,
            "### Scenario C: one inquiry to a {}-bank fleet\n\nGateway start with {} agency files: {:.2} s; peak RSS {:.0} MiB.\n\n| run | agencies | time to all answers | completed | statuses | gateway CPU s | RSS before → after MiB |\n|---|---|---|---|---|---|---|",
            thousands(c.banks as f64),
            thousands(c.banks as f64),
            c.gateway_start_secs,
            c.gateway_peak_rss_mib
        );
        for (i, r) in c.runs.iter().enumerate() {
            let statuses: Vec<String> =
                r.statuses.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                out,
                "| {} ({}) | {} | {:.3} s | {} | {} | {:.2} | {:.0} → {:.0} |",
                i + 1,
                r.latency_mode,
                thousands(r.agencies as f64),
                r.secs_to_all_answers,
                r.completed,
                statuses.join(", "),
                r.gateway_cpu_s,
                r.rss_before_mib,
                r.rss_after_mib
            );
        }
        out.push('\n');
    }
    if let Some(d) = d {
        let states: Vec<String> = d
            .task_states
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "### Scenario D: {} fleet inquiries at once ({} agency calls)\n\n\
             | completed | time | agency calls done | agency calls/s | time to complete p50 / p99 | gateway CPU µs/agency call | audit rows/s | RSS idle → peak MiB | per in-flight inquiry |\n|---|---|---|---|---|---|---|---|---|\n\
             | {} of {}{} | {:.1} s | {} | {} | {:.1} s / {:.1} s | {} | {} | {:.0} → {:.0} | {} |\n\nAccepted: {} of {}{}. Task states at the end: {}.{}\n",
            d.inquiries,
            thousands(d.agency_calls as f64),
            d.completed,
            d.inquiries,
            if d.timed_out {
                " (stopped at the time bound)"
            } else {
                ""
            },
            d.secs,
            thousands(d.agency_calls_done as f64),
            thousands(d.agency_calls_per_s),
            d.completion.p50_ms / 1000.0,
            d.completion.p99_ms / 1000.0,
            opt(d.cpu_us_per_agency_call, |v| format!("{v:.0}")),
            thousands(d.audit_rows_per_s),
            d.idle_rss_mib,
            d.peak_rss_mib,
            opt(d.kib_per_in_flight_inquiry, |k| format!("{k:.0} KiB")),
            d.accepted,
            d.inquiries,
            d.refusals
                .iter()
                .map(|(e, n)| format!("; refused {n}×: {e}"))
                .collect::<String>(),
            states.join(", "),
            d.projected_secs
                .map(|p| format!(
                    " At that rate all {} calls would take {p:.0} s.",
                    thousands(d.agency_calls as f64)
                ))
                .unwrap_or_default()
        );
    }
    out
}

pub fn order_table(e: &[OrderScenario], skipped: &[String]) -> String {
    let mut out = "### Scenario E: freeze orders through the exactly-once path\n\n\
        | backend | orders | accepted/s | accept p50 / p99 ms | applied | applied/s | submit → applied p50 / p99 / p99.9 ms | received once by the bank | gateway CPU µs/order | audit rows/s |\n|---|---|---|---|---|---|---|---|---|---|\n"
        .to_owned();
    for s in e {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} / {} | {}{} | {} | {} / {} / {} | {} (more than once: {}, never: {}) | {} | {} |",
            s.backend,
            s.orders,
            thousands(s.accepted_per_s),
            ms(s.accept.p50_ms),
            ms(s.accept.p99_ms),
            s.applied,
            if s.timed_out { " (time bound hit)" } else { "" },
            thousands(s.applied_per_s),
            ms(s.to_applied.p50_ms),
            ms(s.to_applied.p99_ms),
            ms(s.to_applied.p999_ms),
            s.ledger_received_once,
            s.ledger_received_more,
            s.ledger_never_received,
            opt(s.cpu_us_per_order, |v| format!("{v:.0}")),
            thousands(s.audit_rows_per_s),
        );
    }
    for s in skipped {
        let _ = writeln!(out, "\nSkipped: {s}");
    }
    out
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The median time per row of the runs `pick` chooses, and how many.
fn median_us(runs: &[AuditRun], pick: impl Fn(&AuditRun) -> bool) -> Option<(f64, usize)> {
    let chosen: Vec<f64> = runs
        .iter()
        .filter(|r| pick(r))
        .map(|r| r.us_per_row)
        .collect();
    let n = chosen.len();
    median(chosen).map(|m| (m, n))
}

fn backends(runs: &[AuditRun]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in runs {
        if !seen.contains(&r.backend) {
            seen.push(r.backend.clone());
        }
    }
    seen
}

pub fn audit_table(runs: &[AuditRun], indexes: &[AuditIndex]) -> String {
    let mut out = "### The audit writer's capacity, durability and indexes\n\n\
        256 producers, each making the rows of one four-agency inquiry after \
        another (its inbound row, then four outbound rows at once, then four replies \
        at once, each step once the last is committed); a fresh database for each \
        run. Durability as the writing connection reported it after the run. \
        µs/row is the run's time per row committed.\n\n\
        | backend | round | mode | rows | durability | indexes | how many | seconds | rows/s | µs/row | CPU in cores: bench / PostgreSQL |\n\
        |---|---|---|---|---|---|---|---|---|---|---|\n"
        .to_owned();
    for r in runs {
        let all = indexes.iter().filter(|i| i.backend == r.backend).count();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} / {} |",
            r.backend,
            r.round + 1,
            r.mode,
            r.rows_like,
            r.durability,
            r.indexes_label(all),
            thousands(r.rows as f64),
            r.secs,
            thousands(r.rows_per_s),
            r.us_per_row,
            cores(Some(r.bench_cpu_s), r.secs),
            cores(r.postgres_cpu_s, r.secs),
        );
    }
    out.push('\n');
    out.push_str(&durability_table(runs));
    out.push('\n');
    out.push_str(&index_table(runs, indexes));
    out
}

/// The median of what a run of `pick` costs per row against the baseline
/// runs beside it (negative: it took less time), and the median time per
/// row of those runs.
fn paired_cost(runs: &[AuditRun], pick: impl Fn(&AuditRun) -> bool) -> Option<(f64, f64)> {
    let chosen: Vec<&AuditRun> = runs.iter().filter(|r| pick(r)).collect();
    let saved = chosen
        .iter()
        .filter_map(|r| Some(r.baseline_us_per_row? - r.us_per_row))
        .collect();
    Some((
        median(saved)?,
        median(chosen.iter().map(|r| r.us_per_row).collect())?,
    ))
}

/// What waiting for the disk at each commit costs: the gateway's
/// durability against relaxed, for the writer (each relaxed run against
/// the baseline runs beside it) and for one transaction per row.
fn durability_table(runs: &[AuditRun]) -> String {
    let mut out = "#### What durability costs (medians over the rounds)\n\n\
        | backend | mode | durable | rows/s | relaxed | rows/s | durability's cost per row |\n\
        |---|---|---|---|---|---|---|\n"
        .to_owned();
    for backend in backends(runs) {
        let label = |mode: &str, relaxed: bool| {
            runs.iter()
                .find(|r| r.backend == backend && r.mode == mode && r.relaxed == relaxed)
                .map(|r| r.durability.clone())
                .unwrap_or_default()
        };
        let writer = median_us(runs, |r| r.backend == backend && r.is_writer_run(&[]));
        let relaxed = paired_cost(runs, |r| {
            r.backend == backend
                && r.mode == GROUP_COMMIT
                && r.rows_like == Mix::INQUIRIES
                && r.relaxed
                && r.dropped.is_empty()
        });
        if let (Some((durable, _)), Some((saved, relaxed_us))) = (writer, relaxed) {
            let _ = writeln!(
                out,
                "| {backend} | {GROUP_COMMIT} | {} | {} | {} | {} | {saved:.2} µs ({:.0} % of the durable row's time) |",
                label(GROUP_COMMIT, false),
                thousands(1e6 / durable),
                label(GROUP_COMMIT, true),
                thousands(1e6 / relaxed_us),
                100.0 * saved / durable,
            );
        }
        let one = |relaxed: bool| {
            median_us(runs, |r| {
                r.backend == backend && r.mode == ROW_BY_ROW && r.relaxed == relaxed
            })
        };
        if let (Some((durable, _)), Some((relaxed, _))) = (one(false), one(true)) {
            let _ = writeln!(
                out,
                "| {backend} | {ROW_BY_ROW} | {} | {} | {} | {} | {:.2} µs ({:.0} % of the durable row's time) |",
                label(ROW_BY_ROW, false),
                thousands(1e6 / durable),
                label(ROW_BY_ROW, true),
                thousands(1e6 / relaxed),
                durable - relaxed,
                100.0 * (durable - relaxed) / durable,
            );
        }
    }
    out
}

/// Each index's cost: the time per row it saved to drop it, against the
/// baseline runs beside each run without it.
fn index_table(runs: &[AuditRun], indexes: &[AuditIndex]) -> String {
    let mut out = "#### What each index of `audit_events` costs (the writer, durable; medians over the rounds)\n\n\
        Each run without an index lies between two runs with every index; its \
        cost is the time per row those took more than it, the median over the rounds.\n\n\
        | backend | indexes | rows/s | µs/row | the index's cost per row | share of the row's time |\n\
        |---|---|---|---|---|---|\n"
        .to_owned();
    for backend in backends(runs) {
        let Some((base, n)) = median_us(runs, |r| r.backend == backend && r.is_writer_run(&[]))
        else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {backend} | all ({n} runs) | {} | {base:.2} | | |",
            thousands(1e6 / base)
        );
        let mine: Vec<&AuditIndex> = indexes.iter().filter(|i| i.backend == backend).collect();
        let mut rows: Vec<(String, Vec<String>)> = mine
            .iter()
            .map(|i| (format!("without `{}`", i.name), vec![i.name.clone()]))
            .collect();
        if mine.len() > 1 {
            rows.push(("none".into(), mine.iter().map(|i| i.name.clone()).collect()));
        }
        for (label, dropped) in rows {
            let Some((saved, us)) =
                paired_cost(runs, |r| r.backend == backend && r.is_writer_run(&dropped))
            else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {backend} | {label} | {} | {us:.2} | {saved:.2} µs | {:.0} % |",
                thousands(1e6 / us),
                100.0 * saved / base,
            );
        }
    }
    out.push_str("\nThe indexes:\n\n");
    for i in indexes {
        let _ = writeln!(
            out,
            "- {} `{}`: `{}`",
            i.backend,
            i.name,
            i.definition
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    out
}

/// The audit writer's capacity on `backend` with the gateway's durability
/// and every index: the best and the median run, how many, and the
/// durability they reported.
fn audit_capacity(r: &Results, backend: &str) -> Option<(f64, f64, usize, String)> {
    let runs: Vec<&AuditRun> = r
        .audit
        .iter()
        .filter(|a| a.backend == backend && a.is_writer_run(&[]))
        .collect();
    let rates: Vec<f64> = runs.iter().map(|a| a.rows_per_s).collect();
    let best = rates.iter().copied().fold(f64::NAN, f64::max);
    let durability = runs.first()?.durability.clone();
    Some((best, median(rates)?, runs.len(), durability))
}

/// The audit target on `backend`: the writer's capacity with `durable`
/// commits, at least `bar` rows a second.
fn audit_target(r: &Results, backend: &str, durable: &str, bar: f64) -> TargetCheck {
    let target = format!(
        "audit writer capacity, {backend} with {durable}: ≥ {} rows/s",
        thousands(bar)
    );
    match audit_capacity(r, backend) {
        Some((best, median, runs, durability)) => {
            let as_asked = durability == durable;
            TargetCheck {
                target,
                figure: format!(
                    "{} rows/s, best of {runs} (median {}), {durability}{}",
                    thousands(best),
                    thousands(median),
                    if as_asked {
                        ""
                    } else {
                        " (not the durability the target asks for)"
                    }
                ),
                met: as_asked.then_some(best >= bar),
            }
        }
        None => TargetCheck {
            target,
            figure: "not measured (scenario `audit`)".into(),
            met: None,
        },
    }
}

pub fn targets_table(targets: &[TargetCheck]) -> String {
    let mut out = "### The targets\n\n| target | measured | verdict |\n|---|---|---|\n".to_owned();
    for t in targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {verdict} |", t.target, t.figure);
    }
    out
}

/// The closed loops of a scenario: gateway ÷ direct, and both rates.
fn closed_ratio(s: Option<&InquiryScenario>) -> Option<(f64, f64, f64)> {
    let s = s?;
    let (g, d) = (s.closed.as_ref()?, s.closed_direct.as_ref()?);
    ratio(g.per_s, d.per_s).map(|x| (x, g.per_s, d.per_s))
}

/// The direct baseline's rate the held-rate target is set against.
const DIRECT_REFERENCE: f64 = 10_000.0;
/// The held rate the target asks for where direct reaches that.
const HELD_TARGET: f64 = 5_000.0;

/// The benchmark's targets, each with what this run measured.
pub fn check_targets(r: &Results) -> Vec<TargetCheck> {
    let mut t = Vec::new();
    let a = r.a.as_ref();
    let closed = |name: &str, s: Option<&InquiryScenario>, bar: f64, moonshot: Option<f64>| {
        let measured = closed_ratio(s);
        TargetCheck {
            target: format!(
                "{name}, closed loop: gateway ÷ direct ≥ {bar}×{}",
                moonshot
                    .map(|m| format!(" (moonshot {m}×)"))
                    .unwrap_or_default()
            ),
            figure: match measured {
                Some((x, g, d)) => format!(
                    "{x:.2}× ({} against {} inquiries/s){}",
                    thousands(g),
                    thousands(d),
                    moonshot
                        .map(|m| format!(
                            "; moonshot {}",
                            if x >= m { "reached" } else { "not reached" }
                        ))
                        .unwrap_or_default()
                ),
                None => "not measured".into(),
            },
            met: measured.map(|(x, _, _)| x >= bar),
        }
    };
    t.push(closed("A (SQLite)", a, 0.5, Some(0.8)));
    t.push(closed("B (PostgreSQL)", r.b.as_ref(), 0.35, None));
    let saturated = a.and_then(|a| a.closed.as_ref());
    let cpu = saturated.and_then(|p| p.cpu_us_per_agency_call);
    t.push(TargetCheck {
        target: "gateway CPU per agency call, saturated (A's closed loop) ≤ 60 µs".into(),
        figure: opt(cpu, |v| format!("{v:.0} µs")),
        met: cpu.map(|v| v <= 60.0),
    });
    let light = a.and_then(|a| a.light.as_ref());
    let light_cpu = light.and_then(|p| p.cpu_us_per_agency_call);
    t.push(TargetCheck {
        target: "gateway CPU per agency call at a tenth of the saturated rate ≤ 100 µs".into(),
        figure: match light {
            Some(l) => format!(
                "{} µs at {}/s",
                opt(light_cpu, |v| format!("{v:.0}")),
                opt(l.offered_per_s, thousands)
            ),
            None => "not measured".into(),
        },
        met: light_cpu.map(|v| v <= 100.0),
    });
    let busy = saturated.and_then(Phase::target_cores);
    t.push(TargetCheck {
        target: "cores the gateway keeps busy at saturation (A's closed loop) > 1.6".into(),
        figure: opt(busy, |c| format!("{c:.2} of {} cores", r.machine.cores)),
        met: busy.map(|c| c > 1.6),
    });
    let hold = a.and_then(|a| a.hold.as_ref().filter(|h| h.passes()));
    let direct = a.and_then(|a| a.closed_direct.as_ref()).map(|d| d.per_s);
    t.push(TargetCheck {
        target: format!(
            "A: held 30 s at p99 < 50 ms: ≥ {} inquiries/s where direct reaches {}/s (the ratio held ÷ direct ≥ {})",
            thousands(HELD_TARGET),
            thousands(DIRECT_REFERENCE),
            HELD_TARGET / DIRECT_REFERENCE
        ),
        figure: match (hold, direct) {
            (Some(h), Some(d)) => format!(
                "{} inquiries/s held {:.0} s (p99 {} ms); direct reached {}/s in closed loop: {:.2}×{}",
                thousands(h.per_s),
                h.secs,
                ms(h.latency.p99_ms),
                thousands(d),
                h.per_s / d,
                if d < DIRECT_REFERENCE {
                    "; direct is below 10,000/s on this machine, so the ratio decides"
                } else {
                    ""
                }
            ),
            (None, Some(d)) => format!("no rate held; direct reached {}/s", thousands(d)),
            (Some(h), None) => format!(
                "{} inquiries/s held {:.0} s; direct not measured",
                thousands(h.per_s),
                h.secs
            ),
            (None, None) => "not measured".into(),
        },
        met: match (a, hold, direct) {
            (None, ..) => None,
            (Some(_), None, _) => Some(false),
            (Some(_), Some(h), Some(d)) if d < DIRECT_REFERENCE => {
                Some(h.per_s / d >= HELD_TARGET / DIRECT_REFERENCE)
            }
            (Some(_), Some(h), _) => Some(h.per_s >= HELD_TARGET),
        },
    });
    t.push(audit_target(r, "SQLite", "synchronous=FULL", 200_000.0));
    t.push(audit_target(
        r,
        "PostgreSQL",
        "synchronous_commit=on",
        100_000.0,
    ));
    let added = a.and_then(|a| match (&a.half, &a.half_direct) {
        (Some(g), Some(d)) => Some(g.latency.p99_ms - d.latency.p99_ms),
        _ => None,
    });
    let added_real = a.and_then(|a| match (&a.realistic, &a.realistic_direct) {
        (Some(g), Some(d)) => Some(g.latency.p99_ms - d.latency.p99_ms),
        _ => None,
    });
    t.push(TargetCheck {
        target: "p99 added latency over the slowest agency at half the held rate ≤ 1 ms".into(),
        figure: format!(
            "{} ms (zero-latency agencies), {} ms (realistic latency)",
            opt(added, ms),
            opt(added_real, ms)
        ),
        met: added.map(|v| v <= 1.0 && added_real.is_none_or(|r| r <= 1.0)),
    });
    let mem = a
        .and_then(|a| a.memory.as_ref())
        .and_then(|m| m.kib_per_in_flight_inquiry);
    t.push(TargetCheck {
        target: "memory per in-flight inquiry ≤ 64 KiB".into(),
        figure: opt(mem, |v| {
            format!("{v:.1} KiB (4-agency inquiries waiting on slow agencies)")
        }),
        met: mem.map(|v| v <= 64.0),
    });
    let pass = r
        .nginx
        .as_ref()
        .and_then(|n| match (&n.gateway_closed, &n.nginx_closed) {
            (Some(g), Some(x)) => ratio(g.per_s, x.per_s),
            _ => None,
        });
    t.push(TargetCheck {
        target: "one-agency pass-through throughput ≥ 0.8 × nginx's".into(),
        figure: match r.nginx.as_ref().and_then(|n| n.skipped.clone()) {
            Some(why) => format!("skipped: {why}"),
            None => opt(pass, |v| format!("{v:.3} × nginx")),
        },
        met: pass.map(|v| v >= 0.8),
    });
    let c = r.c.as_ref().and_then(|c| {
        c.runs
            .iter()
            .filter(|x| x.latency_mode == "zero" && x.completed)
            .map(|x| x.secs_to_all_answers)
            .reduce(f64::min)
    });
    t.push(TargetCheck {
        target: "C: one inquiry to 4,000 agencies under one second (zero-latency mocks)".into(),
        figure: opt(c, |v| format!("{v:.3} s (best of the zero-latency runs)")),
        met: c.map(|v| v < 1.0),
    });
    t
}

/// `latency.csv`: the latency-versus-load points of the chart.
pub fn latency_csv(r: &Results) -> String {
    let mut out = "scenario,target,latency_mode,load,offered_per_s,workers,achieved_per_s,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,failed\n".to_owned();
    let mut rows = |scenario: &str, p: &Phase| {
        let _ = writeln!(
            out,
            "{scenario},{},{},{},{},{},{:.1},{:.3},{:.3},{:.3},{:.3},{:.3},{}",
            p.target,
            p.latency_mode,
            p.load,
            p.offered_per_s
                .map(|v| format!("{v:.0}"))
                .unwrap_or_default(),
            p.workers.map(|v| v.to_string()).unwrap_or_default(),
            p.per_s,
            p.latency.p50_ms,
            p.latency.p90_ms,
            p.latency.p99_ms,
            p.latency.p999_ms,
            p.latency.max_ms,
            p.failed
        );
    };
    for s in [&r.a, &r.b].into_iter().flatten() {
        for p in s
            .steps
            .iter()
            .chain(&s.direct_steps)
            .chain(&s.failed_holds)
            .chain(
                [
                    &s.hold,
                    &s.hold_direct,
                    &s.half,
                    &s.half_direct,
                    &s.realistic,
                    &s.realistic_direct,
                    &s.closed,
                    &s.closed_direct,
                    &s.light,
                ]
                .into_iter()
                .flatten(),
            )
        {
            rows(&s.name, p);
        }
    }
    if let Some(n) = &r.nginx {
        for p in [
            &n.mock_closed,
            &n.nginx_closed,
            &n.gateway_closed,
            &n.nginx_open,
            &n.gateway_open,
        ]
        .into_iter()
        .flatten()
        {
            rows("nginx", p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
        assert_eq!(median(Vec::new()), None);
    }

    fn run(
        mode: &str,
        relaxed: bool,
        dropped: &[&str],
        us_per_row: f64,
        baseline: Option<f64>,
    ) -> AuditRun {
        AuditRun {
            backend: "SQLite".into(),
            round: 0,
            mode: mode.into(),
            rows_like: Mix::INQUIRIES.into(),
            durability: if relaxed {
                "synchronous=NORMAL"
            } else {
                "synchronous=FULL"
            }
            .into(),
            relaxed,
            dropped: dropped.iter().map(|d| d.to_string()).collect(),
            rows: 1000,
            secs: us_per_row * 1000.0 / 1e6,
            rows_per_s: 1e6 / us_per_row,
            us_per_row,
            baseline_us_per_row: baseline,
            bench_cpu_s: 0.0,
            postgres_cpu_s: None,
        }
    }

    #[test]
    fn an_index_costs_what_dropping_it_saves_against_the_runs_beside() {
        let index = |name: &str| AuditIndex {
            backend: "SQLite".into(),
            name: name.into(),
            definition: format!("CREATE INDEX {name} ON audit_events (x)"),
        };
        let g = GROUP_COMMIT;
        // The machine slows down over the round: the baseline goes from
        // 10 to 12 µs a row, and each variant is judged against its
        // neighbours, not the round's median.
        let runs = vec![
            run(g, false, &[], 10.0, None),
            run(g, false, &["by_case"], 9.0, Some(10.5)),
            run(g, false, &[], 11.0, None),
            run(g, true, &[], 7.0, Some(11.5)),
            run(g, false, &[], 12.0, None),
            run(g, false, &["by_case", "by_time"], 9.0, Some(12.0)),
            run(g, false, &[], 12.0, None),
            run(ROW_BY_ROW, false, &[], 300.0, None),
            run(ROW_BY_ROW, true, &[], 100.0, None),
        ];
        let indexes = [index("by_case"), index("by_time")];
        let text = index_table(&runs, &indexes);
        assert!(
            text.contains("| SQLite | all (4 runs) | 86,957 | 11.50 | | |"),
            "{text}"
        );
        assert!(
            text.contains("| SQLite | without `by_case` | 111,111 | 9.00 | 1.50 µs | 13 % |"),
            "{text}"
        );
        assert!(
            text.contains("| SQLite | none | 111,111 | 9.00 | 3.00 µs | 26 % |"),
            "{text}"
        );
        assert!(
            !text.contains("without `by_time` |"),
            "no run without it alone: {text}"
        );
        let durability = durability_table(&runs);
        assert!(
            durability.contains(
                "| SQLite | group commit | synchronous=FULL | 86,957 | synchronous=NORMAL | 142,857 | 4.50 µs (39 %"
            ),
            "{durability}"
        );
        assert!(
            durability.contains("| one transaction per row | synchronous=FULL | 3,333 | synchronous=NORMAL | 10,000 | 200.00 µs (67 %"),
            "{durability}"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(400_000.0), "400,000");
        assert_eq!(thousands(-1234567.0), "-1,234,567");
    }
}
