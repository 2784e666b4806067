//! The benchmark's scenarios and their baselines.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::direct::{CASE, Direct, Subjects, inquiry_body, officer_json};
use crate::http::{Endpoint, Lean};
use crate::load::{InFlight, Op, Run, closed_loop, open_loop};
use crate::nginx::Nginx;
use crate::procs::{CpuMark, Proc};
use crate::report::{
    FleetRun, FleetScenario, InquiryScenario, ManyFleetScenario, MemoryProbe, NginxScenario,
    OrderScenario, Phase,
};
use crate::stats::{RateSearch, new_histogram, summarize};
use crate::system::{Backend, Gateway, GatewayBinary, GatewaySpec, Mocks};

pub const ENFORCEMENT: &str = "demo-enforcement-token";
/// The four banks of scenarios A and B: one of each bank dialect
/// (court-bank-xml in GB18030 and in UTF-8, iso-bank-xml, bank-json).
pub const FOUR_BANKS: [usize; 4] = [1, 2, 3, 4];
/// The bank of the nginx comparison: fleet-0004 speaks bank-json.
pub const PASS_THROUGH_BANK: usize = 4;
/// The bank where 张三 holds his fleet account (scenario E's freezes).
pub const ORDER_BANK: usize = 42;
/// p99 the rate search keeps under.
pub const P99_LIMIT_MS: f64 = 50.0;
/// The realistic mode: a log-normal agency delay.
pub const REAL_P50_MS: u64 = 20;
pub const REAL_P99_MS: u64 = 80;

/// How long each part runs.
#[derive(Debug, Clone)]
pub struct Timing {
    pub step: Duration,
    pub hold: Duration,
    pub hold_direct: Duration,
    pub phase: Duration,
    pub drain: Duration,
    pub start_rate: f64,
    pub max_steps: usize,
    pub probe_inquiries: u64,
    pub fleet_inquiries: usize,
    pub fleet_bound: Duration,
    pub orders: usize,
    pub order_bound: Duration,
}

impl Timing {
    pub fn full() -> Self {
        Self {
            step: Duration::from_secs(5),
            hold: Duration::from_secs(30),
            hold_direct: Duration::from_secs(10),
            phase: Duration::from_secs(10),
            drain: Duration::from_secs(10),
            start_rate: 100.0,
            max_steps: 9,
            probe_inquiries: 1000,
            fleet_inquiries: 100,
            fleet_bound: Duration::from_secs(180),
            orders: 2000,
            order_bound: Duration::from_secs(120),
        }
    }

    pub fn quick() -> Self {
        Self {
            step: Duration::from_secs(2),
            hold: Duration::from_secs(5),
            hold_direct: Duration::from_secs(3),
            phase: Duration::from_secs(3),
            drain: Duration::from_secs(5),
            start_rate: 100.0,
            max_steps: 5,
            probe_inquiries: 300,
            fleet_inquiries: 10,
            fleet_bound: Duration::from_secs(60),
            orders: 200,
            order_bound: Duration::from_secs(60),
        }
    }
}

/// What every scenario needs.
pub struct Ctx {
    /// For everything but the load: metrics, faults, fleet inquiries.
    pub client: reqwest::Client,
    /// For the load (`http.rs`).
    pub http: Lean,
    pub mocks: Mocks,
    pub gateway_bin: GatewayBinary,
    pub dir: PathBuf,
    pub subjects: Arc<Subjects>,
    pub timing: Timing,
    /// `perf record` the gateway during scenario A's hold into this file.
    pub perf: Option<PathBuf>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `POST /v1/inquiries?wait=30` about the population's subjects in turn
/// (bodies made before the run, sent with the lean client); success is a
/// 200 (every agency answered within the wait), its body read.
pub fn gateway_op(ctx: &Ctx, gateway: &Gateway, agencies: &[String]) -> anyhow::Result<Op> {
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        ctx.subjects
            .bodies
            .iter()
            .map(|s| Bytes::from(inquiry_body(s, agencies)))
            .collect(),
    );
    let bearer = format!("Bearer {ENFORCEMENT}");
    let endpoint = Arc::new(Endpoint::new(
        Method::POST,
        &format!("{}/v1/inquiries?wait=30", gateway.base),
        &[
            ("authorization", bearer.as_bytes()),
            ("content-type", b"application/json"),
        ],
    )?);
    let http = ctx.http.clone();
    Ok(Arc::new(move |n| {
        let body = bodies[(n as usize) % bodies.len()].clone();
        let http = http.clone();
        let endpoint = endpoint.clone();
        Box::pin(async move {
            let sent = tokio::time::timeout(Duration::from_secs(40), http.send(&endpoint, body));
            matches!(sent.await, Ok(Ok(reply)) if reply.status == hyper::StatusCode::OK)
        })
    }))
}

pub fn direct_op(direct: Arc<Direct>) -> Op {
    Arc::new(move |n| {
        let direct = direct.clone();
        Box::pin(async move { direct.inquiry(n).await })
    })
}

/// How to load a target.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    Open { rate: f64, secs: Duration },
    Closed { workers: usize, secs: Duration },
}

/// Who is watched during a run.
pub struct Watch<'a> {
    pub gateway: Option<&'a Gateway>,
    pub nginx: Option<&'a Nginx>,
}

/// Runs `op` under `load` and measures it with everything around it.
pub async fn measure(
    ctx: &Ctx,
    watch: &Watch<'_>,
    op: Op,
    load: Load,
    target: &str,
    latency_mode: &str,
    agencies: usize,
) -> anyhow::Result<Phase> {
    let gw_proc: Option<&Proc> = watch.gateway.map(|g| &g.proc);
    let pg = watch.gateway.and_then(|g| g.postgres_database.as_deref());
    let cpu0 = CpuMark::take(gw_proc, Some(&ctx.mocks.proc), pg);
    let proxy0 = watch.nginx.map(Nginx::cpu_seconds);
    let t0 = now_ms();
    let (run, offered, workers, kind): (Run, Option<f64>, Option<usize>, &str) = match load {
        Load::Open { rate, secs } => (
            open_loop(op, rate, secs, ctx.timing.drain, 20_000, None).await,
            Some(rate),
            None,
            "open",
        ),
        Load::Closed { workers, secs } => (
            closed_loop(op, workers, secs).await,
            None,
            Some(workers),
            "closed",
        ),
    };
    let t1 = now_ms();
    let cpu = CpuMark::take(gw_proc, Some(&ctx.mocks.proc), pg).since(&cpu0);
    let secs = run.elapsed.as_secs_f64();
    let proxy = watch
        .nginx
        .zip(proxy0)
        .map(|(n, before)| n.cpu_seconds() - before);
    let other = cpu.others();
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let per_s = run.ok_per_s();
    let calls = run.ok as f64 * agencies as f64;
    // The gateway's exchanges are its audit rows of both directions: each
    // call to its API, and each message it sent an agency (one, whatever
    // it carries). Without the gateway, each request the bench made is
    // one, and nginx makes one more to the mock for each.
    let (gateway_cpu_s, cpu_us_per_agency_call, audit_rows, rss, exchanges) = match watch.gateway {
        Some(g) => {
            let counts = g.db.audit_counts(t0, t1 + 1).await?;
            (
                Some(cpu.gateway),
                (calls > 0.0).then(|| cpu.gateway * 1e6 / calls),
                Some(counts.rows),
                Some(mib(g.proc.rss_kib())),
                (counts.inbound + counts.outbound).max(0) as u64,
            )
        }
        None => {
            let per_request = if watch.nginx.is_some() { 2 } else { 1 };
            let exchanges = run.sent * (agencies as u64) * per_request;
            (None, None, None, None, exchanges)
        }
    };
    let phase = Phase {
        target: target.to_owned(),
        latency_mode: latency_mode.to_owned(),
        load: kind.to_owned(),
        offered_per_s: offered,
        workers,
        agencies_per_request: agencies,
        secs,
        sent: run.sent,
        ok: run.ok,
        failed: run.failed,
        per_s,
        agency_calls_per_s: per_s * agencies as f64,
        http_exchanges: Some(exchanges),
        http_exchanges_per_s: (secs > 0.0).then(|| exchanges as f64 / secs),
        latency: summarize(&run.hist),
        gateway_cpu_s,
        cpu_us_per_agency_call,
        mocks_cpu_s: cpu.mocks,
        bench_cpu_s: cpu.bench,
        bench_cpu_us_per_agency_call: (calls > 0.0).then(|| cpu.bench * 1e6 / calls),
        proxy_cpu_s: proxy,
        postgres_cpu_s: cpu.postgres,
        other_cpu_s: other,
        other_cpu_pct: 100.0 * other / (secs.max(0.001) * cores),
        audit_rows,
        audit_rows_per_s: audit_rows.map(|r| r as f64 / ((t1 - t0).max(1) as f64 / 1000.0)),
        gateway_rss_mib: rss,
        passed: None,
        repeat: false,
    };
    println!(
        "  {:<8} {:<9} {:<12} ok {:>7} failed {:>5}  {:>8.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  others {:>3.0} %  bench {:.1} µs/agency call{}{}",
        phase.target,
        phase.latency_mode,
        phase.load_label(),
        phase.ok,
        phase.failed,
        phase.per_s,
        phase.latency.p50_ms,
        phase.latency.p99_ms,
        phase.latency.p999_ms,
        phase.other_cpu_pct,
        phase.bench_cpu_us_per_agency_call.unwrap_or(0.0),
        phase
            .cpu_us_per_agency_call
            .map(|c| format!("  {c:.0} µs CPU/agency call"))
            .unwrap_or_default(),
        phase
            .target_cores()
            .map(|c| format!(" ({c:.2} cores)"))
            .unwrap_or_default()
    );
    Ok(phase)
}

/// The gateway and, when wanted, the direct baseline under the same load.
struct Pair<'a> {
    ctx: &'a Ctx,
    gateway: &'a Gateway,
    gw: Op,
    direct: Option<Op>,
}

impl Pair<'_> {
    /// The gateway alone under `load`, left to finish its work.
    async fn gateway_only(&self, load: Load, mode: &str) -> anyhow::Result<Phase> {
        let watch = Watch {
            gateway: Some(self.gateway),
            nginx: None,
        };
        let phase = measure(self.ctx, &watch, self.gw.clone(), load, "gateway", mode, 4).await?;
        self.gateway.settle(Duration::from_secs(60)).await?;
        Ok(phase)
    }

    /// The gateway under `load` (recorded by perf into `perf` when given),
    /// left to finish its work, then the direct baseline under the same
    /// load for `direct_secs`.
    async fn run(
        &self,
        load: Load,
        direct_secs: Duration,
        mode: &str,
        perf: Option<&Path>,
    ) -> anyhow::Result<(Phase, Option<Phase>)> {
        let watch = Watch {
            gateway: Some(self.gateway),
            nginx: None,
        };
        let recorder = perf.and_then(|path| start_perf(path, self.gateway.proc.pid));
        let gateway = measure(self.ctx, &watch, self.gw.clone(), load, "gateway", mode, 4).await?;
        if let Some(recorder) = recorder {
            recorder.stop(Duration::from_secs(60)).await;
        }
        self.gateway.settle(Duration::from_secs(60)).await?;
        let Some(direct) = &self.direct else {
            return Ok((gateway, None));
        };
        let load = match load {
            Load::Open { rate, .. } => Load::Open {
                rate,
                secs: direct_secs,
            },
            Load::Closed { workers, .. } => Load::Closed {
                workers,
                secs: direct_secs,
            },
        };
        let direct = measure(
            self.ctx,
            &watch_none(),
            direct.clone(),
            load,
            "direct",
            mode,
            4,
        )
        .await?;
        Ok((gateway, Some(direct)))
    }
}

/// A profiling run, not for the record: scenario A's gateway (on
/// `backend`) under a closed loop of 64 workers for `secs` (recorded by
/// perf when asked), then an open loop at `rate` for as long, each followed
/// by the gateway's group-commit figures. For trying a change quickly.
pub async fn probe(
    ctx: &Ctx,
    backend: Backend,
    secs: u64,
    rate: f64,
) -> anyhow::Result<Vec<Phase>> {
    println!(
        "\n== Probe: scenario A's gateway on {}, closed loop then open loop ==",
        backend.label()
    );
    let gateway = warm_gateway(ctx, "probe", backend).await?;
    let pair = Pair {
        ctx,
        gateway: &gateway,
        gw: gateway_op(ctx, &gateway, &[])?,
        direct: None,
    };
    let secs = Duration::from_secs(secs);
    println!("closed loop (64 workers):");
    let (closed, _) = pair
        .run(
            Load::Closed { workers: 64, secs },
            secs,
            "zero",
            ctx.perf.as_deref(),
        )
        .await?;
    print_group_commits(&gateway).await;
    println!("open loop ({rate:.0}/s):");
    let (open, _) = pair
        .run(Load::Open { rate, secs }, secs, "zero", None)
        .await?;
    print_group_commits(&gateway).await;
    gateway.stop().await;
    Ok(vec![closed, open])
}

/// Scenario A's memory probe by itself, on SQLite: what carrying many
/// inquiries in flight costs, without the rest of the scenario's runs.
pub async fn memory_alone(ctx: &Ctx) -> anyhow::Result<()> {
    println!("\n== Memory: scenario A's gateway on SQLite, inquiries waiting on slow agencies ==");
    let gateway = warm_gateway(ctx, "memory", Backend::Sqlite).await?;
    let probe = memory_probe(ctx, &gateway).await;
    gateway.stop().await;
    let probe = probe?;
    if let Some(kib) = probe.kib_per_in_flight_inquiry {
        println!("  {kib:.1} KiB per in-flight inquiry (growth ÷ most in flight)");
    }
    Ok(())
}

/// The audit writer's batches so far, from the gateway's `/metrics`: how
/// many, their mean size and mean commit time.
async fn print_group_commits(gateway: &Gateway) {
    let text = match gateway.metrics().await {
        Ok(text) => text,
        Err(e) => {
            println!("  (no metrics: {e})");
            return;
        }
    };
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let batches = value("gateway_audit_batch_rows_count ");
    if batches > 0.0 {
        println!(
            "  audit so far: {batches:.0} batches, {:.1} rows each, {:.2} ms to commit on average",
            value("gateway_audit_batch_rows_sum ") / batches,
            value("gateway_audit_commit_seconds_sum ") * 1000.0 / batches,
        );
    }
}

/// Scenario A's gateway on `backend`, started with its agencies answering
/// at once, warmed up (connections, caches, the database) and settled.
async fn warm_gateway(ctx: &Ctx, name: &str, backend: Backend) -> anyhow::Result<Gateway> {
    let gateway = Gateway::start(
        &ctx.gateway_bin,
        &ctx.mocks,
        GatewaySpec {
            name,
            banks: &FOUR_BANKS,
            backend,
            max_in_flight: None,
            agencies_dir: None,
        },
        &ctx.dir,
        &ctx.client,
    )
    .await?;
    ctx.mocks.zero_latency().await?;
    let _ = closed_loop(gateway_op(ctx, &gateway, &[])?, 8, Duration::from_secs(2)).await;
    gateway.settle(Duration::from_secs(30)).await?;
    Ok(gateway)
}

/// Holds run again, each 15 % lower, when a hold fails the bar.
const HOLD_RETRIES: usize = 3;

/// Scenarios A (`full`: with the direct baseline, the memory probe and the
/// realistic mode) and B (the same load on another database).
pub async fn inquiry_scenario(
    ctx: &Ctx,
    name: &str,
    backend: Backend,
    full: bool,
    direct: Arc<Direct>,
    keep_gateway: bool,
) -> anyhow::Result<(InquiryScenario, Option<Gateway>)> {
    let t = ctx.timing.clone();
    println!(
        "\n== Scenario {name}: 4 agencies an inquiry, {} audit ==",
        backend.label()
    );
    let gateway = warm_gateway(
        ctx,
        &format!("scenario-{}", name.to_lowercase()),
        backend.clone(),
    )
    .await?;
    let pair = Pair {
        ctx,
        gateway: &gateway,
        gw: gateway_op(ctx, &gateway, &[])?,
        direct: full.then(|| direct_op(direct.clone())),
    };
    // What the gateway burns with nothing to do.
    let idle0 = gateway.proc.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cpu_pct = (gateway.proc.cpu_seconds() - idle0) * 100.0 / 3.0;
    println!("gateway idle: {idle_cpu_pct:.1} % of a core");

    let memory = if full {
        Some(memory_probe(ctx, &gateway).await?)
    } else {
        None
    };

    let mut steps = Vec::new();
    let mut direct_steps = Vec::new();
    let mut search = RateSearch::new(t.start_rate, 10.0, 1.15, t.max_steps);
    println!(
        "rate search (open loop, {:?} a step, p99 < {P99_LIMIT_MS} ms):",
        t.step
    );
    while let Some(rate) = search.next_rate() {
        let load = Load::Open { rate, secs: t.step };
        let (mut p, d) = pair.run(load, t.step, "zero", None).await?;
        let mut passed = p.passes();
        p.passed = Some(passed);
        steps.push(p);
        direct_steps.extend(d);
        if !passed {
            // On a shared machine one stall (another build taking the
            // cores) can decide a short step: a failure counts only when
            // a second run at the same rate fails too.
            let mut again = pair.gateway_only(load, "zero").await?;
            passed = again.passes();
            again.passed = Some(passed);
            again.repeat = true;
            steps.push(again);
        }
        search.record(rate, passed);
    }
    let mut best = search.best();
    let mut notes = Vec::new();
    let (mut hold, mut hold_direct, mut half, mut half_direct) = (None, None, None, None);
    let (mut realistic, mut realistic_direct) = (None, None);
    let mut failed_holds = Vec::new();
    if let Some(found) = best {
        // The rate must hold for the whole run: a hold that fails the bar
        // is run again 15 % lower, a few times at most.
        let mut rate = found;
        for attempt in 0..=HOLD_RETRIES {
            println!("hold at {rate:.0} inquiries/s for {:?}:", t.hold);
            let perf = ctx.perf.as_deref().filter(|_| full);
            let (h, d) = pair
                .run(
                    Load::Open { rate, secs: t.hold },
                    t.hold_direct,
                    "zero",
                    perf,
                )
                .await?;
            let passed = h.passes();
            if passed || attempt == HOLD_RETRIES {
                if !passed {
                    notes.push(format!(
                        "The {:.0} s hold at {rate:.0}/s ended with p99 {:.1} ms, the last of {} holds: no rate held.",
                        h.secs,
                        h.latency.p99_ms,
                        HOLD_RETRIES + 1
                    ));
                }
                (hold, hold_direct) = (Some(h), d);
                break;
            }
            let lower = (rate * 0.85).round().max(1.0);
            notes.push(format!(
                "The {:.0} s hold at {rate:.0}/s (found by the search: {found:.0}/s) ended with p99 {:.1} ms; held again at {lower:.0}/s.",
                h.secs, h.latency.p99_ms
            ));
            failed_holds.push(h);
            rate = lower;
        }
        best = Some(rate);
        let rate = (rate / 2.0).round().max(1.0);
        let at_half = Load::Open {
            rate,
            secs: t.phase,
        };
        println!("half the best rate ({rate:.0}/s):");
        let (h, d) = pair.run(at_half, t.phase, "zero", None).await?;
        (half, half_direct) = (Some(h), d);
        if full {
            println!(
                "half the best rate with realistic agency latency (log-normal, p50 {REAL_P50_MS} ms, p99 {REAL_P99_MS} ms):"
            );
            ctx.mocks
                .realistic_latency(REAL_P50_MS, REAL_P99_MS)
                .await?;
            let (h, d) = pair.run(at_half, t.phase, "realistic", None).await?;
            (realistic, realistic_direct) = (Some(h), d);
            ctx.mocks.zero_latency().await?;
        }
    } else {
        notes.push("No rate passed: the hold and half-load runs were skipped.".into());
    }
    println!("closed loop (64 workers):");
    let closed_load = Load::Closed {
        workers: 64,
        secs: t.phase,
    };
    // The direct baseline's closed loop runs for B too: the saturated
    // ratio is a target on both backends.
    let saturated = Pair {
        direct: Some(direct_op(direct.clone())),
        ..pair
    };
    let (closed, closed_direct) = saturated.run(closed_load, t.phase, "zero", None).await?;
    // The gateway's CPU per call under light load: a tenth of what it
    // took back to back.
    let light_rate = (closed.per_s / 10.0).round().max(1.0);
    println!("a tenth of the closed loop's rate ({light_rate:.0}/s):");
    let light = saturated
        .gateway_only(
            Load::Open {
                rate: light_rate,
                secs: t.phase,
            },
            "zero",
        )
        .await?;
    let closed = Some(closed);
    let scenario = InquiryScenario {
        name: name.to_owned(),
        backend: backend.label().to_owned(),
        steps,
        direct_steps,
        best_rate: best,
        failed_holds,
        hold,
        hold_direct,
        half,
        half_direct,
        realistic,
        realistic_direct,
        closed,
        closed_direct,
        light: Some(light),
        memory,
        gateway_peak_rss_mib: mib(gateway.proc.hwm_kib()),
        gateway_idle_cpu_pct: idle_cpu_pct,
        notes,
    };
    if keep_gateway {
        Ok((scenario, Some(gateway)))
    } else {
        gateway.stop().await;
        Ok((scenario, None))
    }
}

fn watch_none() -> Watch<'static> {
    Watch {
        gateway: None,
        nginx: None,
    }
}

/// `perf record` of the gateway's process (DWARF call graphs, 199 Hz),
/// stopped by [`Proc::stop`]'s SIGTERM, on which perf writes its file.
fn start_perf(path: &Path, pid: u32) -> Option<Proc> {
    let pid_arg = pid.to_string();
    let out = path.display().to_string();
    let log = path.with_extension("log");
    match Proc::spawn(
        "perf",
        Path::new("perf"),
        &[
            "record",
            "-F",
            "199",
            "--call-graph",
            "dwarf,16384",
            "-p",
            &pid_arg,
            "-o",
            &out,
        ],
        &[],
        log,
    ) {
        Ok(p) => {
            println!("  perf recording the gateway (pid {pid}) into {out}");
            Some(p)
        }
        Err(e) => {
            println!("  perf could not start: {e}");
            None
        }
    }
}

/// Memory per in-flight inquiry: agencies answering after a fixed delay,
/// `probe_inquiries` inquiries started at once (open loop at 500/s), and
/// the gateway's RSS sampled every 50 ms beside the number in flight. The
/// figure is the peak RSS above idle divided by the most inquiries that
/// were in flight at once: what carrying that many costs.
async fn memory_probe(ctx: &Ctx, gateway: &Gateway) -> anyhow::Result<MemoryProbe> {
    const DELAY_MS: u64 = 3000;
    let n = ctx.timing.probe_inquiries;
    println!("memory probe: {n} inquiries against agencies answering after {DELAY_MS} ms");
    ctx.mocks
        .set_faults(json!({"latency_ms": DELAY_MS, "latency": null}))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = gateway.proc.rss_kib();
    let gauge = InFlight::default();
    let op = gateway_op(ctx, gateway, &[])?;
    let rate = 500.0;
    let secs = Duration::from_secs_f64(n as f64 / rate);
    let run = {
        let gauge = gauge.clone();
        tokio::spawn(open_loop(
            op,
            rate,
            secs,
            Duration::from_secs(60),
            100_000,
            Some(gauge),
        ))
    };
    let mut peak = (idle, 0usize);
    let mut most_in_flight = 0usize;
    while !run.is_finished() {
        let in_flight = gauge.get();
        let rss = gateway.proc.rss_kib();
        most_in_flight = most_in_flight.max(in_flight);
        if rss > peak.0 {
            peak = (rss, in_flight);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = run.await?;
    ctx.mocks.zero_latency().await?;
    gateway.settle(Duration::from_secs(60)).await?;
    let grown = peak.0.saturating_sub(idle) as f64;
    let probe = MemoryProbe {
        agency_latency_ms: DELAY_MS,
        inquiries: run.sent,
        idle_rss_mib: mib(idle),
        peak_rss_mib: mib(peak.0),
        in_flight_at_peak: peak.1,
        most_in_flight,
        kib_per_in_flight_inquiry: (most_in_flight > 0).then(|| grown / most_in_flight as f64),
    };
    println!(
        "  RSS {:.1} MiB idle, {:.1} MiB at the peak ({} in flight then, {} at the most; {} ok, {} failed)",
        probe.idle_rss_mib,
        probe.peak_rss_mib,
        probe.in_flight_at_peak,
        probe.most_in_flight,
        run.ok,
        run.failed
    );
    Ok(probe)
}

/// The nginx baseline against the gateway's one-agency inquiries.
pub async fn nginx_scenario(
    ctx: &Ctx,
    gateway: &Gateway,
    nginx_bin: Result<PathBuf, String>,
) -> anyhow::Result<NginxScenario> {
    println!("\n== One-agency pass-through: gateway against nginx ==");
    let agency = mock_agencies::fleet_plan::fleet_bank_id(PASS_THROUGH_BANK, ctx.mocks.banks);
    let mut s = NginxScenario {
        skipped: None,
        agency: agency.clone(),
        mock_closed: None,
        nginx_closed: None,
        gateway_closed: None,
        nginx_open: None,
        gateway_open: None,
    };
    let bin = match nginx_bin {
        Ok(b) => b,
        Err(why) => {
            println!("the nginx baseline is skipped: {why}");
            s.skipped = Some(why);
            return Ok(s);
        }
    };
    let one = ctx.dir.join("agencies-one");
    ctx.mocks.write_agency_files(&one, &[PASS_THROUGH_BANK])?;
    let dialects = crate::procs::config_dir().join("dialects");
    let upstream = ctx.mocks.base.trim_start_matches("http://").to_owned();
    let nginx = match Nginx::start(&bin, &ctx.dir, &upstream, &ctx.client).await {
        Ok(n) => n,
        Err(e) => {
            let why = format!("nginx did not start: {e}");
            println!("the nginx baseline is skipped: {why}");
            s.skipped = Some(why);
            return Ok(s);
        }
    };
    let mock_base = ctx.mocks.base.clone();
    let nginx_base = nginx.base.clone();
    let via_nginx = move |url: &str| url.replacen(&mock_base, &nginx_base, 1);
    let mock = Arc::new(Direct::load(&one, &dialects, ctx.subjects.clone(), None).await?);
    let proxied =
        Arc::new(Direct::load(&one, &dialects, ctx.subjects.clone(), Some(&via_nginx)).await?);
    let gw = gateway_op(ctx, gateway, std::slice::from_ref(&agency))?;
    let workers = 32;
    let secs = ctx.timing.phase;
    let result = async {
        println!("closed loop ({workers} workers) through each:");
        s.mock_closed = Some(
            measure(
                ctx,
                &watch_none(),
                direct_op(mock),
                Load::Closed { workers, secs },
                "mock",
                "zero",
                1,
            )
            .await?,
        );
        let with_nginx = Watch {
            gateway: None,
            nginx: Some(&nginx),
        };
        let nginx_closed = measure(
            ctx,
            &with_nginx,
            direct_op(proxied.clone()),
            Load::Closed { workers, secs },
            "nginx",
            "zero",
            1,
        )
        .await?;
        let with_gateway = Watch {
            gateway: Some(gateway),
            nginx: None,
        };
        let gateway_closed = measure(
            ctx,
            &with_gateway,
            gw.clone(),
            Load::Closed { workers, secs },
            "gateway",
            "zero",
            1,
        )
        .await?;
        gateway.settle(Duration::from_secs(60)).await?;
        let rate = (gateway_closed.per_s.min(nginx_closed.per_s) / 2.0)
            .round()
            .max(10.0);
        println!("open loop at {rate:.0}/s through each:");
        s.nginx_open = Some(
            measure(
                ctx,
                &with_nginx,
                direct_op(proxied),
                Load::Open { rate, secs },
                "nginx",
                "zero",
                1,
            )
            .await?,
        );
        s.gateway_open = Some(
            measure(
                ctx,
                &with_gateway,
                gw,
                Load::Open { rate, secs },
                "gateway",
                "zero",
                1,
            )
            .await?,
        );
        s.nginx_closed = Some(nginx_closed);
        s.gateway_closed = Some(gateway_closed);
        gateway.settle(Duration::from_secs(60)).await?;
        anyhow::Ok(())
    }
    .await;
    nginx.stop().await;
    result?;
    Ok(s)
}

/// Scenarios C and D on one gateway that knows the whole fleet.
pub async fn fleet_scenarios(
    ctx: &Ctx,
    run_c: bool,
    run_d: bool,
) -> anyhow::Result<(Option<FleetScenario>, Option<ManyFleetScenario>)> {
    let banks = ctx.mocks.banks;
    println!("\n== Scenarios C and D: inquiries to the {banks}-bank fleet ==");
    let all: Vec<usize> = (1..=banks).collect();
    let started = Instant::now();
    let gateway = Gateway::start(
        &ctx.gateway_bin,
        &ctx.mocks,
        GatewaySpec {
            name: "fleet",
            banks: &all,
            backend: Backend::Sqlite,
            max_in_flight: Some(512),
            agencies_dir: None,
        },
        &ctx.dir,
        &ctx.client,
    )
    .await?;
    let start_secs = started.elapsed().as_secs_f64();
    println!("gateway with {banks} agency files ready in {start_secs:.2} s");
    let result = async {
        let c = if run_c {
            Some(scenario_c(ctx, &gateway, start_secs).await?)
        } else {
            None
        };
        let d = if run_d {
            Some(scenario_d(ctx, &gateway).await?)
        } else {
            None
        };
        anyhow::Ok((c, d))
    }
    .await;
    gateway.stop().await;
    result
}

async fn scenario_c(
    ctx: &Ctx,
    gateway: &Gateway,
    start_secs: f64,
) -> anyhow::Result<FleetScenario> {
    let body = Bytes::from(inquiry_body(
        &json!({"kind": "person", "name": mock_agencies::fixtures::ZHANG_SAN_NAME, "id_number": mock_agencies::fixtures::ZHANG_SAN_ID}),
        &[],
    ));
    let mut runs = Vec::new();
    for mode in ["zero", "zero", "zero", "realistic"] {
        if mode == "realistic" {
            ctx.mocks
                .realistic_latency(REAL_P50_MS, REAL_P99_MS)
                .await?;
        }
        let rss_before = gateway.proc.rss_kib();
        let cpu0 = gateway.proc.cpu_seconds();
        let started = Instant::now();
        let reply = ctx
            .client
            .post(format!("{}/v1/inquiries?wait=30", gateway.base))
            .bearer_auth(ENFORCEMENT)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
            .timeout(Duration::from_secs(40))
            .send()
            .await?;
        let status = reply.status().as_u16();
        let view: Value = reply.json().await?;
        let secs = started.elapsed().as_secs_f64();
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        for a in view["agencies"].as_array().into_iter().flatten() {
            *statuses
                .entry(a["status"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        let run = FleetRun {
            latency_mode: mode.to_owned(),
            agencies: view["progress"]["total"].as_u64().unwrap_or(0) as usize,
            secs_to_all_answers: secs,
            completed: status == 200,
            statuses,
            gateway_cpu_s: gateway.proc.cpu_seconds() - cpu0,
            rss_before_mib: mib(rss_before),
            rss_after_mib: mib(gateway.proc.rss_kib()),
        };
        println!(
            "  C run ({mode}): {} agencies, HTTP {status} after {secs:.3} s, {:?}, CPU {:.2} s",
            run.agencies, run.statuses, run.gateway_cpu_s
        );
        runs.push(run);
        gateway.settle(Duration::from_secs(60)).await?;
    }
    ctx.mocks.zero_latency().await?;
    Ok(FleetScenario {
        banks: ctx.mocks.banks,
        gateway_start_secs: start_secs,
        runs,
        gateway_peak_rss_mib: mib(gateway.proc.hwm_kib()),
    })
}

async fn scenario_d(ctx: &Ctx, gateway: &Gateway) -> anyhow::Result<ManyFleetScenario> {
    let n = ctx.timing.fleet_inquiries;
    let banks = ctx.mocks.banks;
    println!(
        "scenario D: {n} fleet inquiries at once ({} agency calls)",
        n * banks
    );
    gateway.settle(Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = gateway.proc.rss_kib();
    let (_, completed_before) = gateway.inquiry_counts().await?;
    let cpu0 = CpuMark::take(Some(&gateway.proc), Some(&ctx.mocks.proc), None);
    let t0 = now_ms();
    let started = Instant::now();
    let posts = (0..n).map(|i| {
        let body = Bytes::from(inquiry_body(
            &ctx.subjects.bodies[i % ctx.subjects.len()],
            &[],
        ));
        let request = ctx
            .client
            .post(format!("{}/v1/inquiries", gateway.base))
            .bearer_auth(ENFORCEMENT)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(Duration::from_secs(60));
        async move {
            match request.send().await {
                Ok(r) if r.status().as_u16() == 202 => Ok(()),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    Err(format!(
                        "HTTP {status}: {}",
                        body.chars().take(300).collect::<String>()
                    ))
                }
                Err(e) => Err(e.to_string()),
            }
        }
    });
    let answers = futures::future::join_all(posts).await;
    let accepted = answers.iter().filter(|a| a.is_ok()).count();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    for e in answers.into_iter().filter_map(Result::err) {
        *refusals.entry(e).or_default() += 1;
    }
    for (e, count) in &refusals {
        println!("  refused {count} time(s): {e}");
    }
    println!(
        "  {accepted} of {n} accepted in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let bound = ctx.timing.fleet_bound;
    let mut peak = idle;
    let mut completed = 0usize;
    let mut last_poll = Instant::now() - Duration::from_secs(1);
    let mut last_print = Instant::now();
    while started.elapsed() < bound {
        peak = peak.max(gateway.proc.rss_kib());
        if last_poll.elapsed() >= Duration::from_millis(500) {
            last_poll = Instant::now();
            let (_, done) = gateway.inquiry_counts().await?;
            completed = (done - completed_before).max(0.0) as usize;
            if completed >= accepted {
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(10) {
                last_print = Instant::now();
                println!(
                    "  {completed} of {accepted} completed after {:.0} s, RSS {:.0} MiB",
                    started.elapsed().as_secs_f64(),
                    mib(gateway.proc.rss_kib())
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let timed_out = completed < accepted;
    let t1 = now_ms();
    let cpu = CpuMark::take(Some(&gateway.proc), Some(&ctx.mocks.proc), None).since(&cpu0);
    let states: BTreeMap<String, i64> = gateway
        .db
        .task_states_since(t0)
        .await?
        .into_iter()
        .collect();
    let done: i64 = states
        .iter()
        .filter(|(s, _)| !matches!(s.as_str(), "queued" | "polling" | "awaiting"))
        .map(|(_, v)| *v)
        .sum();
    let mut h = new_histogram();
    for (created, completed_at) in gateway.db.inquiries_since(t0).await? {
        if let Some(c) = completed_at {
            h.saturating_record(((c - created).max(1) as u64) * 1000);
        }
    }
    let audit_rows = gateway.db.audit_rows(t0, t1 + 1).await?;
    let done = done.max(0) as u64;
    let d = ManyFleetScenario {
        inquiries: n,
        agency_calls: (n * banks) as u64,
        agency_calls_done: done,
        completed,
        timed_out,
        secs,
        agency_calls_per_s: done as f64 / secs.max(0.001),
        projected_secs: (timed_out && done > 0)
            .then(|| (n * banks) as f64 / (done as f64 / secs.max(0.001))),
        completion: summarize(&h),
        gateway_cpu_s: cpu.gateway,
        cpu_us_per_agency_call: (done > 0).then(|| cpu.gateway * 1e6 / done as f64),
        mocks_cpu_s: cpu.mocks,
        audit_rows,
        audit_rows_per_s: audit_rows as f64 / secs.max(0.001),
        idle_rss_mib: mib(idle),
        peak_rss_mib: mib(peak),
        accepted,
        refusals,
        kib_per_in_flight_inquiry: (accepted > 0)
            .then(|| peak.saturating_sub(idle) as f64 / accepted as f64),
        task_states: states,
    };
    println!(
        "  {completed} of {n} completed in {secs:.1} s: {} of {} agency calls done, {:.0}/s, CPU {:.1} s",
        d.agency_calls_done, d.agency_calls, d.agency_calls_per_s, d.gateway_cpu_s
    );
    Ok(d)
}

/// Scenario E on `backend`: freezes of 0.01 yuan on 张三's fleet account,
/// sent by 16 workers back to back, each order followed until the gateway
/// stored the bank's answer; then the bank's own ledger is asked how many
/// times it applied each request number.
pub async fn scenario_e(ctx: &Ctx, backend: Backend) -> anyhow::Result<OrderScenario> {
    let n = ctx.timing.orders;
    let workers = 16;
    println!("\n== Scenario E: {n} freeze orders, {} ==", backend.label());
    let gateway = Gateway::start(
        &ctx.gateway_bin,
        &ctx.mocks,
        GatewaySpec {
            name: &format!("orders-{}", backend.label().to_lowercase()),
            banks: &[ORDER_BANK],
            backend: backend.clone(),
            max_in_flight: None,
            agencies_dir: None,
        },
        &ctx.dir,
        &ctx.client,
    )
    .await?;
    let result = run_orders(ctx, &gateway, n, workers).await;
    gateway.stop().await;
    let mut s = result?;
    s.backend = backend.label().to_owned();
    Ok(s)
}

async fn run_orders(
    ctx: &Ctx,
    gateway: &Gateway,
    n: usize,
    workers: usize,
) -> anyhow::Result<OrderScenario> {
    let today = chrono::Utc::now()
        .with_timezone(
            &chrono::FixedOffset::east_opt(8 * 3600).ok_or_else(|| anyhow::anyhow!("UTC+8"))?,
        )
        .date_naive();
    let end = (today + chrono::Days::new(90)).to_string();
    let bank = mock_agencies::fleet_plan::fleet_bank_id(ORDER_BANK, ctx.mocks.banks);
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let request_numbers = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let url = format!("{}/v1/orders", gateway.base);
    let op: Op = {
        let client = ctx.client.clone();
        let request_numbers = request_numbers.clone();
        let bank = bank.clone();
        Arc::new(move |i| {
            let body = json!({
                "case_number": CASE,
                "subject": {"kind": "person", "name": mock_agencies::fixtures::ZHANG_SAN_NAME,
                            "id_number": mock_agencies::fixtures::ZHANG_SAN_ID},
                "officers": [officer_json(),
                    {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"}],
                "action": "freeze", "agency": bank,
                "asset": {"account_number": mock_agencies::fixtures::FLEET_ZHANG_SAN_ACCOUNT},
                "amount_fen": 1, "end_date": end,
                "documents": [
                    {"kind": "ruling", "number": "(2024)甘0503执1234号之一",
                     "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
                    {"kind": "assist_notice", "number": "协冻-1",
                     "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"}],
            });
            let request = client
                .post(&url)
                .bearer_auth(ENFORCEMENT)
                .header("idempotency-key", format!("bench-{run_id}-{i}"))
                .json(&body)
                .timeout(Duration::from_secs(30));
            let request_numbers = request_numbers.clone();
            Box::pin(async move {
                let Ok(reply) = request.send().await else {
                    return false;
                };
                if reply.status().as_u16() != 202 {
                    return false;
                }
                let Ok(order) = reply.json::<Value>().await else {
                    return false;
                };
                if let (Some(rn), Ok(mut set)) =
                    (order["request_number"].as_str(), request_numbers.lock())
                {
                    set.insert(rn.to_owned());
                }
                true
            })
        })
    };
    let cpu0 = gateway.proc.cpu_seconds();
    let t0 = now_ms();
    let started = Instant::now();
    // A closed loop that stops after n orders: each worker takes the next
    // number until n are taken.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accept = Arc::new(std::sync::Mutex::new(new_histogram()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let op = op.clone();
        let next = next.clone();
        let accept = accept.clone();
        tasks.spawn(async move {
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return failed;
                }
                let began = Instant::now();
                if !op(i as u64).await {
                    failed += 1;
                }
                if let Ok(mut h) = accept.lock() {
                    h.saturating_record(began.elapsed().as_micros().max(1) as u64);
                }
            }
        });
    }
    let mut failed = 0;
    while let Some(f) = tasks.join_next().await {
        failed += f.unwrap_or(0);
    }
    let submit_secs = started.elapsed().as_secs_f64();
    let accepted = n - failed;
    println!("  {accepted} of {n} accepted in {submit_secs:.2} s");
    let mut timed_out = true;
    while started.elapsed() < ctx.timing.order_bound {
        if gateway.db.orders_decided_since(t0).await? >= accepted as i64 {
            timed_out = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t1 = now_ms();
    let cpu = gateway.proc.cpu_seconds() - cpu0;
    let orders = gateway.db.orders_since(t0).await?;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut h = new_histogram();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for (status, created, decided) in &orders {
        *statuses.entry(status.clone()).or_default() += 1;
        first = first.min(*created);
        if let Some(d) = decided
            && status == "applied"
        {
            last = last.max(*d);
            h.saturating_record(((d - created).max(0) as u64).max(1) * 1000);
        }
    }
    let applied = statuses.get("applied").copied().unwrap_or(0) as usize;
    let secs = if last > first {
        (last - first) as f64 / 1000.0
    } else {
        started.elapsed().as_secs_f64()
    };
    // The bank's own word.
    let ledger: Value = ctx
        .client
        .get(format!(
            "{}/banks/{bank}/_mock/ledger?holder={}",
            ctx.mocks.base,
            mock_agencies::fixtures::ZHANG_SAN_ID
        ))
        .send()
        .await?
        .json()
        .await?;
    let ours = request_numbers
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    // Exactly once is in the bank's receipts: how often each control
    // message arrived (`received_count`, and the request log's `control`
    // entry). Its `applied_count` would say nothing: the mock applies a
    // request number once however often it arrives.
    let mut logged: HashMap<&str, i64> = HashMap::new();
    for r in ledger["requests"].as_array().into_iter().flatten() {
        if r["kind"] == "control"
            && let Some(rn) = r["request_number"].as_str()
        {
            *logged.entry(rn).or_default() += r["count"].as_i64().unwrap_or(0);
        }
    }
    let (mut once, mut more, mut received) = (0, 0, 0);
    for c in ledger["controls"].as_array().into_iter().flatten() {
        let Some(rn) = c["request_number"].as_str().filter(|rn| ours.contains(*rn)) else {
            continue;
        };
        received += 1;
        let arrived = c["received_count"]
            .as_i64()
            .unwrap_or(0)
            .max(logged.get(rn).copied().unwrap_or(0));
        match arrived {
            1 => once += 1,
            x if x > 1 => more += 1,
            _ => {}
        }
    }
    let never = ours.len().saturating_sub(received);
    let audit_rows = gateway.db.audit_rows(t0, t1 + 1).await?;
    let wall = (t1 - t0).max(1) as f64 / 1000.0;
    let accept_summary = accept.lock().map(|h| summarize(&h)).unwrap_or_default();
    let s = OrderScenario {
        backend: String::new(),
        orders: n,
        workers,
        accept: accept_summary,
        accepted_per_s: accepted as f64 / submit_secs.max(0.001),
        applied,
        statuses,
        to_applied: summarize(&h),
        applied_per_s: applied as f64 / secs.max(0.001),
        secs,
        ledger_received_once: once,
        ledger_received_more: more,
        ledger_never_received: never,
        gateway_cpu_s: cpu,
        cpu_us_per_order: (applied > 0).then(|| cpu * 1e6 / applied as f64),
        audit_rows,
        audit_rows_per_s: audit_rows as f64 / wall,
        timed_out,
    };
    println!(
        "  {} applied in {:.2} s ({:.0}/s); submit → applied p50 {:.1} ms p99 {:.1} ms; control messages the bank received once: {once}, more than once: {more}, never: {never}",
        s.applied, s.secs, s.applied_per_s, s.to_applied.p50_ms, s.to_applied.p99_ms
    );
    if more > 0 || never > 0 {
        println!(
            "  NOT EXACTLY ONCE: {more} orders reached the bank more than once, {never} never"
        );
    }
    Ok(s)
}
