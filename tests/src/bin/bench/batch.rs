//! The batch scenario (`--only batch`): one batch inquiry of `--batch-subjects`
//! subjects (10,000 by default, drawn from the mock population) across
//! every agency of the demo (`config/mock-agencies.toml`, zero latency,
//! `config/agencies/`), on a fresh database. Measures the time from the
//! POST to the batch's completion, the subject-lookups a second (subjects
//! times agencies asked), the gateway's CPU per lookup, its peak memory
//! while the batch runs and after its results were downloaded, and the
//! download itself. Writes `batch-<backend>.md` and `.json` into `--out`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use crate::direct::officer_json;
use crate::procs::repo_root;
use crate::system::{Backend, Gateway, GatewayBinary, GatewaySpec, Mocks};

#[derive(Debug, Serialize)]
pub struct BatchFigures {
    pub backend: String,
    pub subjects: usize,
    pub agencies: usize,
    pub lookups: i64,
    pub answered: i64,
    pub failed: i64,
    /// From the POST to its 202.
    pub accept_secs: f64,
    /// From the POST to the batch's completion.
    pub complete_secs: f64,
    pub lookups_per_sec: f64,
    pub gateway_cpu_secs: f64,
    pub cpu_us_per_lookup: f64,
    /// The mock agencies' CPU over the same time (the other process on
    /// this machine's two cores).
    pub mocks_cpu_secs: f64,
    /// The whole machine's busy CPU over the same time.
    pub machine_cpu_secs: f64,
    /// The gateway's resident memory before the batch, and its peak
    /// (VmHWM) once the batch completed and once its results were read.
    pub rss_before_mib: f64,
    pub peak_mib_completed: f64,
    pub peak_mib_after_results: f64,
    pub results_lines: usize,
    pub results_bytes: u64,
    pub results_secs: f64,
}

/// Runs the scenario and writes its figures into `out`.
pub async fn run(
    gateway_bin: &GatewayBinary,
    mocks_bin: &Path,
    dir: &Path,
    client: &reqwest::Client,
    backend: Backend,
    subjects: usize,
    out: &Path,
) -> anyhow::Result<BatchFigures> {
    let config = repo_root().join("config/mock-agencies.toml");
    let mock_config = mock_agencies::MockConfig::load(&config)?;
    let population = subjects.max(mock_config.population);
    println!("starting the demo's mock agencies (population {population}) ...");
    let mocks = Mocks::start_configured(mocks_bin, &config, population, dir, client).await?;
    let outcome = measure(
        gateway_bin,
        &mocks,
        dir,
        client,
        backend,
        subjects,
        &mock_config,
        population,
    )
    .await;
    mocks.proc.stop(Duration::from_secs(10)).await;
    let figures = outcome?;
    let name = format!("batch-{}", figures.backend.to_lowercase());
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(&figures)?,
    )?;
    std::fs::write(out.join(format!("{name}.md")), table(&figures))?;
    println!("\n{}", table(&figures));
    Ok(figures)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    gateway_bin: &GatewayBinary,
    mocks: &Mocks,
    dir: &Path,
    client: &reqwest::Client,
    backend: Backend,
    subjects: usize,
    mock_config: &mock_agencies::MockConfig,
    population: usize,
) -> anyhow::Result<BatchFigures> {
    let label = backend.label().to_owned();
    let gateway = Gateway::start(
        gateway_bin,
        mocks,
        GatewaySpec {
            name: "batch",
            banks: &[],
            backend,
            max_in_flight: None,
            agencies_dir: Some(repo_root().join("config/agencies")),
        },
        dir,
        client,
    )
    .await?;
    let people = mock_agencies::population::Population::generate(mock_config.seed, population);
    let lines: Vec<Value> = people
        .subjects()
        .iter()
        .take(subjects)
        .enumerate()
        .map(|(i, s)| {
            let subject = match s.kind {
                mock_agencies::population::SubjectKind::Person => {
                    json!({"kind": "person", "name": s.name, "id_number": s.id_number})
                }
                mock_agencies::population::SubjectKind::Organisation => {
                    json!({"kind": "organization", "name": s.name, "credit_code": s.id_number})
                }
            };
            json!({"case_number": format!("(2024)甘0503执{}号", 10_000 + i), "subject": subject})
        })
        .collect();
    anyhow::ensure!(
        lines.len() == subjects,
        "the population holds {} subjects, not {subjects}",
        lines.len()
    );
    let body = serde_json::to_vec(&json!({"officers": [officer_json()], "subjects": lines}))?;
    let rss_before = gateway.proc.rss_kib();
    let cpu_before = gateway.proc.cpu_seconds();
    let mocks_before = mocks.proc.cpu_seconds();
    let machine_before = crate::procs::machine_busy_seconds().unwrap_or(0.0);
    println!("posting a batch of {subjects} subjects ...");
    let started = Instant::now();
    let reply = client
        .post(format!("{}/v1/inquiry-batches", gateway.base))
        .bearer_auth("demo-enforcement-token")
        .header("idempotency-key", "bench-batch")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = reply.status();
    let batch: Value = reply.json().await?;
    let accept_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.as_u16() == 202, "the batch was refused: {batch}");
    let id = batch["id"]
        .as_str()
        .context("the batch has no id")?
        .to_owned();
    anyhow::ensure!(
        batch["refused"] == 0,
        "the batch refused lines: {}",
        batch["refused_lines"]
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    let view = loop {
        let view: Value = client
            .get(format!("{}/v1/inquiry-batches/{id}", gateway.base))
            .bearer_auth("demo-enforcement-token")
            .send()
            .await?
            .json()
            .await?;
        if view["status"] == "completed" {
            break view;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the batch did not complete in 15 minutes: {}",
            view["progress"]
        );
        // As often as the event stream looks (each look counts every
        // agency part of the batch).
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let complete_secs = started.elapsed().as_secs_f64();
    let cpu = gateway.proc.cpu_seconds() - cpu_before;
    let mocks_cpu = mocks.proc.cpu_seconds() - mocks_before;
    let machine_cpu = crate::procs::machine_busy_seconds().unwrap_or(0.0) - machine_before;
    let peak_completed = gateway.proc.hwm_kib();
    let lookups = view["progress"]["total"].as_i64().unwrap_or_default();
    let agencies = view["agencies"].as_array().map_or(0, Vec::len);
    // The results, read as a client would, chunk by chunk.
    let results_started = Instant::now();
    let mut response = client
        .get(format!("{}/v1/inquiry-batches/{id}/results", gateway.base))
        .bearer_auth("demo-enforcement-token")
        .send()
        .await?;
    let mut results_bytes = 0u64;
    let mut results_lines = 0usize;
    while let Some(chunk) = response.chunk().await? {
        results_bytes += chunk.len() as u64;
        results_lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let results_secs = results_started.elapsed().as_secs_f64();
    let peak_after = gateway.proc.hwm_kib();
    gateway.stop().await;
    anyhow::ensure!(
        results_lines == subjects,
        "the results hold {results_lines} lines for {subjects} subjects"
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(BatchFigures {
        backend: label,
        subjects,
        agencies,
        lookups,
        answered: view["progress"]["answered"].as_i64().unwrap_or_default(),
        failed: view["progress"]["failed"].as_i64().unwrap_or_default(),
        accept_secs,
        complete_secs,
        lookups_per_sec: lookups as f64 / complete_secs.max(f64::EPSILON),
        gateway_cpu_secs: cpu,
        cpu_us_per_lookup: cpu * 1e6 / (lookups.max(1) as f64),
        mocks_cpu_secs: mocks_cpu,
        machine_cpu_secs: machine_cpu,
        rss_before_mib: mib(rss_before),
        peak_mib_completed: mib(peak_completed),
        peak_mib_after_results: mib(peak_after),
        results_lines,
        results_bytes,
        results_secs,
    })
}

fn table(f: &BatchFigures) -> String {
    format!(
        "## Batch inquiry ({backend})\n\n\
         | figure | value |\n|---|---|\n\
         | subjects | {subjects} |\n\
         | agencies | {agencies} |\n\
         | subject-lookups (subjects × agencies) | {lookups} ({answered} answered, {failed} failed) |\n\
         | accepted (POST to 202) | {accept:.2} s |\n\
         | completed (POST to the last result) | {complete:.2} s |\n\
         | **lookups a second** | **{rate:.0}** |\n\
         | gateway CPU | {cpu:.1} s, {per:.0} µs per lookup |\n\
         | mock agencies' CPU / the machine's busy CPU | {mocks:.1} s / {machine:.1} s (of {cores:.1} s on two cores) |\n\
         | gateway memory before / peak at completion / peak after the results | {before:.0} / {peak:.0} / {after:.0} MiB |\n\
         | results (NDJSON) | {lines} lines, {bytes:.1} MiB in {rsecs:.2} s |\n",
        backend = f.backend,
        subjects = f.subjects,
        agencies = f.agencies,
        lookups = f.lookups,
        answered = f.answered,
        failed = f.failed,
        accept = f.accept_secs,
        complete = f.complete_secs,
        rate = f.lookups_per_sec,
        cpu = f.gateway_cpu_secs,
        per = f.cpu_us_per_lookup,
        mocks = f.mocks_cpu_secs,
        machine = f.machine_cpu_secs,
        cores = 2.0 * f.complete_secs,
        before = f.rss_before_mib,
        peak = f.peak_mib_completed,
        after = f.peak_mib_after_results,
        lines = f.results_lines,
        bytes = f.results_bytes as f64 / 1_048_576.0,
        rsecs = f.results_secs,
    )
}
