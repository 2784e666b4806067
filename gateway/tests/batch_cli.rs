//! `gateway batch submit` and `gateway batch resume` as a bureau uses them:
//! the real binary against a gateway and mock agencies running in the test
//! process.

use std::path::{Path, PathBuf};
use std::process::Output;

use gateway::config::GatewayConfig;
use mock_agencies::{MockConfig, MockFleet};
use serde_json::Value;

const ENFORCEMENT: &str = "demo-enforcement-token";
const ZHANG_SAN_ID: &str = "360426199101010071";
const BAD_ID: &str = "360426199101010072";

fn repo_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// Three subjects: 张三 and 示例有限公司 (mock fixtures), and a line whose
/// identity number has a wrong check character (line 6 of the file).
fn subjects_csv() -> String {
    format!(
        "# officer: 李明, G620503001, ZX620503001\n\
         # asset_kinds: bank_account, real_estate\n\
         case_number,kind,name,id_number,credit_code\n\
         (2024)甘0503执1234号,person,张三,{ZHANG_SAN_ID},\n\
         (2024)甘0503执1235号,organization,示例有限公司,,91110000600037341L\n\
         (2024)甘0503执1236号,person,错号,{BAD_ID},\n"
    )
}

/// The mock agencies and a gateway in this process, on a database in `dir`.
async fn start(dir: &Path) -> anyhow::Result<(MockFleet, gateway::Gateway)> {
    gateway::install_crypto_provider();
    let mocks = MockConfig::load(&repo_config().join("mock-agencies.toml"))?;
    let fleet = MockFleet::start(&mocks, true).await?;
    let mut config = GatewayConfig::load(&repo_config().join("gateway.toml"))?;
    config.database_url = format!("sqlite://{}", dir.join("gateway.db").display());
    config.agencies_dir = repo_config().join("agencies");
    config.dialects_dir = repo_config().join("dialects");
    config.audit.signing_key_file = Some(repo_config().join("demo-audit-signing-key.hex"));
    for (id, _) in fleet.agencies() {
        if let Some(url) = fleet.base_url(&id) {
            config.agency_base_urls.insert(id, url);
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway = gateway::Gateway::start(config, listener).await?;
    Ok((fleet, gateway))
}

/// Runs the binary with `args`; stderr is not a terminal, so no progress
/// bar is drawn.
async fn run(args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_remove("GATEWAY_LOG_JSON")
        .env_remove("RUST_LOG")
        .env_remove("GATEWAY_URL")
        .env_remove("GATEWAY_TOKEN")
        .kill_on_drop(true)
        .output()
        .await?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The batch id of a `submit` run's output.
fn batch_id(stdout: &str) -> Option<String> {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("bat_"))
        .map(|w| w.trim_end_matches(':').to_owned())
}

/// The results file: one JSON value a line.
fn results(path: &Path) -> anyhow::Result<Vec<Value>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// Files in `dir` other than the ones named: nothing temporary is left.
fn others(dir: &Path, known: &[&Path]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_db = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("gateway.db"));
        if !is_db && !known.contains(&path.as_path()) {
            found.push(path);
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_file_is_submitted_followed_resumed_and_its_results_downloaded() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let (fleet, gateway) = start(dir.path()).await?;
    let base = gateway.base_url();
    let file = dir.path().join("subjects.csv");
    std::fs::write(&file, subjects_csv())?;
    let file_arg = file.to_string_lossy().into_owned();
    let out = dir.path().join("subjects.results.ndjson");

    // Submitted, followed to the end, downloaded to the default path.
    let first = run(&[
        "batch",
        "submit",
        &file_arg,
        "--url",
        &base,
        "--token",
        ENFORCEMENT,
    ])
    .await?;
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert!(first.status.success(), "{stdout}\n{stderr}");
    let id = batch_id(&stdout).expect("the batch id is printed");
    assert!(
        stdout.contains(&format!("gateway batch resume {id}")),
        "{stdout}"
    );
    assert!(
        stderr.contains("refused: line 6, subject.id_number"),
        "{stderr}"
    );
    assert!(
        stdout.contains("2 subject(s) completed, 1 refused"),
        "{stdout}"
    );
    for output in [&stdout, &stderr] {
        assert!(!output.contains(ZHANG_SAN_ID), "{output}");
        assert!(!output.contains(BAD_ID), "{output}");
    }
    let lines = results(&out)?;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let numbers: Vec<i64> = lines.iter().filter_map(|l| l["line"].as_i64()).collect();
    assert_eq!(numbers, vec![4, 5, 6]);
    for line in &lines[..2] {
        assert_eq!(line["inquiry"]["status"], "completed", "{line}");
    }
    assert_eq!(lines[0]["inquiry"]["subject"]["id_number"], ZHANG_SAN_ID);
    assert_eq!(
        lines[2]["error"]["field"], "subject.id_number",
        "{}",
        lines[2]
    );
    let downloaded = std::fs::read(&out)?;
    assert_eq!(others(dir.path(), &[&file, &out])?, Vec::<PathBuf>::new());

    // The same command again finds the same batch and writes the same
    // results.
    std::fs::remove_file(&out)?;
    let again = run(&[
        "batch",
        "submit",
        &file_arg,
        "--url",
        &base,
        "--token",
        ENFORCEMENT,
    ])
    .await?;
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}\n{}", text(&again.stderr));
    assert_eq!(batch_id(&stdout).as_deref(), Some(id.as_str()), "{stdout}");
    assert!(stdout.contains("submitted before"), "{stdout}");
    assert_eq!(std::fs::read(&out)?, downloaded);

    // Resumed by its id, as CSV, the token from the environment.
    let csv_out = dir.path().join("resumed.csv");
    let resumed = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["batch", "resume", &id, "--url", &base, "--format", "csv"])
        .arg("--out")
        .arg(&csv_out)
        .env_remove("GATEWAY_LOG_JSON")
        .env_remove("RUST_LOG")
        .env_remove("GATEWAY_URL")
        .env("GATEWAY_TOKEN", ENFORCEMENT)
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = text(&resumed.stdout);
    assert!(
        resumed.status.success(),
        "{stdout}\n{}",
        text(&resumed.stderr)
    );
    assert!(stdout.contains(&format!("batch {id} done")), "{stdout}");
    let stderr = text(&resumed.stderr);
    assert!(
        stderr.contains("refused: line 6, subject.id_number"),
        "{stderr}"
    );
    let csv = std::fs::read_to_string(&csv_out)?;
    assert!(csv.starts_with("line,case_number,"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("6,")), "{csv}");
    assert_eq!(
        others(dir.path(), &[&file, &out, &csv_out])?,
        Vec::<PathBuf>::new()
    );

    // A wrong token: a non-zero exit, the status and the API's message, and
    // no results file.
    let refused_out = dir.path().join("refused.ndjson");
    let refused_arg = refused_out.to_string_lossy().into_owned();
    let wrong = run(&[
        "batch",
        "submit",
        &file_arg,
        "--url",
        &base,
        "--token",
        "wrong-token",
        "--out",
        &refused_arg,
    ])
    .await?;
    let stderr = text(&wrong.stderr);
    assert!(!wrong.status.success(), "{stderr}");
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("the token is not known"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .trim()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(!refused_out.exists());

    // An unknown batch: the gateway's 404 and its message.
    let unknown = run(&[
        "batch",
        "resume",
        "bat_00000000000000000000000000000000",
        "--url",
        &base,
        "--token",
        ENFORCEMENT,
        "--out",
        &refused_arg,
    ])
    .await?;
    let stderr = text(&unknown.stderr);
    assert!(!unknown.status.success(), "{stderr}");
    assert!(
        stderr.contains("HTTP 404") && stderr.contains("no inquiry batch"),
        "{stderr}"
    );
    assert!(!refused_out.exists());

    gateway.shutdown().await;
    fleet.shutdown().await;
    Ok(())
}
