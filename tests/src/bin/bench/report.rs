//! What the bench measured, as the results file keeps it, and the tables it
//! prints (the same text goes into `results.md`).

use std::fmt::Write as _;

use std::collections::BTreeMap;

use serde::Serialize;

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
    pub latency: Summary,
    pub gateway_cpu_s: Option<f64>,
    pub cpu_us_per_agency_call: Option<f64>,
    pub mocks_cpu_s: f64,
    pub bench_cpu_s: f64,
    pub proxy_cpu_s: Option<f64>,
    /// CPU time the rest of the machine took meanwhile (other builds on a
    /// shared machine): busy time of all cores less the gateway's, the
    /// mocks', the bench's and nginx's.
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
    /// The audit writer's capacity (`audit.rs`).
    pub audit: Vec<crate::audit::AuditRun>,
    pub targets: Vec<TargetCheck>,
    pub total_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub commit: String,
    pub postgres: Option<String>,
    pub nginx: Option<String>,
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

const PHASE_HEADER: &str = "| run | target | agency latency | load | inquiries/s | agency calls/s | p50 ms | p99 ms | p99.9 ms | failed | gateway CPU µs/agency call | audit rows/s | other processes' CPU |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

fn phase_row(out: &mut String, label: &str, p: &Phase) {
    let _ = writeln!(
        out,
        "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} % |",
        p.target,
        p.latency_mode,
        p.load_label(),
        thousands(p.per_s),
        thousands(p.agency_calls_per_s),
        ms(p.latency.p50_ms),
        ms(p.latency.p99_ms),
        ms(p.latency.p999_ms),
        p.failed,
        opt(p.cpu_us_per_agency_call, |v| format!("{v:.0}")),
        opt(p.audit_rows_per_s, thousands),
        p.other_cpu_pct,
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

pub fn audit_table(runs: &[crate::audit::AuditRun]) -> String {
    let mut out = "### The audit writer's capacity\n\n\
        256 producers, each making the rows of one four-agency inquiry after \
        another (its inbound row, then four outbound rows at once, then four replies \
        at once, each step once the last is committed); a fresh database for each \
        run.\n\n\
        | backend | mode | rows | how many | seconds | rows/s |\n|---|---|---|---|---|---|\n"
        .to_owned();
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {} |",
            r.backend,
            r.mode,
            r.rows_like,
            thousands(r.rows as f64),
            r.secs,
            thousands(r.rows_per_s)
        );
    }
    out
}

/// The best group-commit rate of the audit writer on `backend`.
fn audit_capacity(r: &Results, backend: &str) -> Option<(f64, usize)> {
    let runs: Vec<f64> = r
        .audit
        .iter()
        .filter(|a| {
            a.backend == backend
                && a.mode == "group commit"
                && a.rows_like == crate::audit::Mix::INQUIRIES
        })
        .map(|a| a.rows_per_s)
        .collect();
    (!runs.is_empty()).then(|| (runs.iter().copied().fold(0.0, f64::max), runs.len()))
}

/// The audit target's figure: the writer's capacity, and what the load
/// scenarios made it commit.
fn audit_figure(capacity: Option<(f64, usize)>, load: Option<f64>, scenario: &str) -> String {
    let capacity = match capacity {
        Some((best, runs)) => format!(
            "{} rows/s, the writer's capacity (best of {runs})",
            thousands(best)
        ),
        None => "the writer's capacity not measured".into(),
    };
    match load {
        Some(v) => format!(
            "{capacity}; {} rows/s the most scenario {scenario}'s load made",
            thousands(v)
        ),
        None => capacity,
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

/// The benchmark's targets, each with what this run measured.
pub fn check_targets(r: &Results) -> Vec<TargetCheck> {
    let mut t = Vec::new();
    let a = r.a.as_ref();
    let best = a.and_then(|a| a.best_rate);
    t.push(TargetCheck {
        target: "A: ≥ 5,000 inquiries/s (20,000 agency calls/s), SQLite audit on, p99 < 50 ms, held ≥ 30 s".into(),
        figure: match (best, a.and_then(|a| a.hold.as_ref())) {
            (Some(_), Some(h)) => format!(
                "{} inquiries/s ({} agency calls/s) held {:.0} s, p99 {} ms",
                thousands(h.per_s),
                thousands(h.agency_calls_per_s),
                h.secs,
                ms(h.latency.p99_ms)
            ),
            _ => "no rate passed".into(),
        },
        met: a.map(|a| a.hold.as_ref().is_some_and(|h| h.per_s >= 5000.0 && h.latency.p99_ms < 50.0)),
    });
    let added = a.and_then(|a| match (&a.half, &a.half_direct) {
        (Some(g), Some(d)) => Some(g.latency.p99_ms - d.latency.p99_ms),
        _ => None,
    });
    let added_real = a.and_then(|a| match (&a.realistic, &a.realistic_direct) {
        (Some(g), Some(d)) => Some(g.latency.p99_ms - d.latency.p99_ms),
        _ => None,
    });
    t.push(TargetCheck {
        target: "p99 added latency over the slowest agency at half that load ≤ 1 ms".into(),
        figure: format!(
            "{} ms (zero-latency agencies), {} ms (realistic latency), at half the best rate found",
            opt(added, ms),
            opt(added_real, ms)
        ),
        met: added.map(|v| v <= 1.0 && added_real.is_none_or(|r| r <= 1.0)),
    });
    let cpu = a
        .and_then(|a| a.hold.as_ref().or(a.closed.as_ref()))
        .and_then(|p| p.cpu_us_per_agency_call);
    t.push(TargetCheck {
        target: "gateway CPU per agency call ≤ 30 µs".into(),
        figure: opt(cpu, |v| format!("{v:.0} µs (scenario A, hold)")),
        met: cpu.map(|v| v <= 30.0),
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
    let max_rows = |s: Option<&InquiryScenario>| {
        s.map(|s| {
            s.steps
                .iter()
                .chain(s.hold.iter())
                .chain(s.closed.iter())
                .filter_map(|p| p.audit_rows_per_s)
                .fold(0.0_f64, f64::max)
        })
    };
    // The target is what the log can commit: the writer's capacity (the
    // load scenarios make far fewer rows than that).
    let capacity = |backend: &str, load: Option<f64>, bar: f64| {
        audit_capacity(r, backend)
            .map(|(best, _)| best)
            .or(load)
            .map(|v| v >= bar)
    };
    let sqlite_rows = max_rows(a);
    t.push(TargetCheck {
        target: "audit ≥ 50,000 rows/s committed on SQLite".into(),
        figure: audit_figure(audit_capacity(r, "SQLite"), sqlite_rows, "A"),
        met: capacity("SQLite", sqlite_rows, 50_000.0),
    });
    let pg_rows = max_rows(r.b.as_ref());
    t.push(TargetCheck {
        target: "audit ≥ 20,000 rows/s committed on PostgreSQL".into(),
        figure: match (&r.b_skipped, audit_capacity(r, "PostgreSQL")) {
            (Some(why), None) => format!("skipped: {why}"),
            (_, cap) => audit_figure(cap, pg_rows, "B"),
        },
        met: capacity("PostgreSQL", pg_rows, 20_000.0),
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
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(400_000.0), "400,000");
        assert_eq!(thousands(-1234567.0), "-1,234,567");
    }
}
