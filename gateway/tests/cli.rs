//! The `gateway` binary as an onboarding engineer and an operator use it:
//! `config check` on a folder of agency files, and SIGHUP to a running
//! `gateway serve`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "demo-admin-token";

fn repo_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// A gateway.toml in `dir` (with the repository's callers and dialects), an
/// `agencies/` folder holding the repository's bank-a file, and its path.
fn config_folder(dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(repo_config().join("gateway.toml"))?;
    let mut table: toml::Table = toml::from_str(&text)?;
    let db = format!("sqlite://{}", dir.join("gateway.db").display());
    table.insert("database_url".into(), db.into());
    let agencies = dir.join("agencies");
    std::fs::create_dir_all(&agencies)?;
    std::fs::copy(
        repo_config().join("agencies/bank-a.toml"),
        agencies.join("bank-a.toml"),
    )?;
    table.insert("agencies_dir".into(), agencies.display().to_string().into());
    table.insert(
        "dialects_dir".into(),
        repo_config().join("dialects").display().to_string().into(),
    );
    if let Some(toml::Value::Table(audit)) = table.get_mut("audit") {
        let key = repo_config().join("demo-audit-signing-key.hex");
        audit.insert("signing_key_file".into(), key.display().to_string().into());
    }
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml::to_string(&table)?)?;
    Ok(path)
}

const THREE_MISTAKES: &str = r#"id = "bank-c"
name = "Bank C"
kind = "bank"
dialect = "bank-json"
base_url = "htp//bank-c.example"
colour = "red"

[[auth.headers]]
name = "X-Api-Key"
value = "pasted-secret"
"#;

fn gateway() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command
        .env_remove("GATEWAY_LOG_JSON")
        .env_remove("RUST_LOG");
    command
}

#[test]
fn config_check_reports_all_three_mistakes_of_a_file_with_their_lines() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_folder(dir.path())?;
    std::fs::write(dir.path().join("agencies/bank-c.toml"), THREE_MISTAKES)?;
    let out = gateway()
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("3 configuration error(s)"), "{stderr}");
    for (line, what) in [(6, "colour"), (5, "base_url"), (10, "secrets never inline")] {
        let found = stderr
            .lines()
            .any(|l| l.contains(&format!("bank-c.toml: line {line}: ")) && l.contains(what));
        assert!(found, "line {line} ({what}) missing from:\n{stderr}");
    }
    assert!(!stderr.contains("pasted-secret"), "{stderr}");
    Ok(())
}

#[test]
fn config_check_passes_the_repository_configuration() -> anyhow::Result<()> {
    let out = gateway()
        .current_dir(repo_config().join(".."))
        .args(["config", "check", "--config", "config/gateway.toml"])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
    Ok(())
}

/// Stops the child when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn agencies(client: &reqwest::Client, base: &str) -> anyhow::Result<serde_json::Value> {
    Ok(client
        .get(format!("{base}/v1/agencies"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?)
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_makes_a_running_gateway_reload_its_agency_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_folder(dir.path())?;
    let mut child = gateway()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("stderr");
    let pid = child.id().to_string();
    let _running = Running(child);

    // The log line "gateway listening addr=..." says where it listens; the
    // rest of the log is drained so the child never blocks on it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line
                .contains("gateway listening")
                .then(|| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                })
                .flatten()
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30))).await??;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let before = agencies(&client, &base).await?;
    assert_eq!(
        before["agencies"].as_array().map(Vec::len),
        Some(1),
        "{before}"
    );

    let mut bank_d = std::fs::read_to_string(dir.path().join("agencies/bank-a.toml"))?;
    bank_d = bank_d.replace("id = \"bank-a\"", "id = \"bank-d\"");
    std::fs::write(dir.path().join("agencies/bank-d.toml"), bank_d)?;
    let status = Command::new("kill").args(["-HUP", &pid]).status()?;
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = agencies(&client, &base).await?;
        if now["agencies"].as_array().map(Vec::len) == Some(2) {
            assert_ne!(now["version"], before["version"]);
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no reload after SIGHUP: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file and another SIGHUP: refused, the set stays.
    std::fs::write(dir.path().join("agencies/bank-c.toml"), THREE_MISTAKES)?;
    let version = agencies(&client, &base).await?["version"].clone();
    let status = Command::new("kill").args(["-HUP", &pid]).status()?;
    assert!(status.success());
    let audit_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events: serde_json::Value = client
            .get(format!("{base}/v1/audit/events?action=config.reload"))
            .bearer_auth("demo-auditor-token")
            .send()
            .await?
            .json()
            .await?;
        let refused = events["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["status"] == "invalid_configuration"));
        if refused {
            break;
        }
        anyhow::ensure!(
            Instant::now() < audit_deadline,
            "no refused reload: {events}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = agencies(&client, &base).await?;
    assert_eq!(after["version"], version);
    assert_eq!(after["agencies"].as_array().map(Vec::len), Some(2));
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[test]
fn agencies_test_runs_a_dialect_pack_and_fails_on_a_wrong_expectation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_folder(dir.path())?;
    let ok = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["agencies", "test", "bank-a", "--config"])
        .arg(&config)
        .output()?;
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("PASS court-bank-xml/batch-gb18030") && out.contains("0 failed"),
        "{out}"
    );

    // The same pack with one expectation changed: the difference is shown.
    let dialects = dir.path().join("dialects");
    copy_dir(&repo_config().join("dialects"), &dialects)?;
    let pack = dir.path().join("conformance/court-bank-xml");
    copy_dir(&repo_config().join("conformance/court-bank-xml"), &pack)?;
    let expected = std::fs::read_to_string(pack.join("refusal.expected.json"))?;
    std::fs::write(
        pack.join("refusal.expected.json"),
        expected.replace("未加盖", "已加盖"),
    )?;
    let text = std::fs::read_to_string(&config)?;
    let mut table: toml::Table = toml::from_str(&text)?;
    table.insert("dialects_dir".into(), dialects.display().to_string().into());
    std::fs::write(&config, toml::to_string(&table)?)?;
    let failed = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["agencies", "test", "court-bank-xml", "--config"])
        .arg(&config)
        .output()?;
    let out = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{out}");
    assert!(
        out.contains("FAIL court-bank-xml/refusal") && out.contains('≠'),
        "{out}"
    );
    assert!(out.contains("1 failed"), "{out}");

    let unknown = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["agencies", "test", "telex", "--config"])
        .arg(&config)
        .output()?;
    assert!(!unknown.status.success());
    Ok(())
}

/// Writes `rows` audit records (signing a checkpoint every 5) into the
/// database a `sqlite://` URL names.
fn write_audit_rows(url: &str, rows: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = std::sync::Arc::new(gateway::store::SqliteStore::open(url).await?);
        let key_hex = std::fs::read_to_string(repo_config().join("demo-audit-signing-key.hex"))?;
        let seed: [u8; 32] = hex::decode(key_hex.trim())?
            .try_into()
            .map_err(|_| anyhow::anyhow!("seed"))?;
        let policy = gateway::audit::CheckpointPolicy {
            key: std::sync::Arc::new(ed25519_dalek::SigningKey::from_bytes(&seed)),
            every_rows: 5,
            every_ms: 3_600_000,
        };
        let log = gateway::audit::AuditLog::start_signing(store, 16, Some(policy), None).await?;
        for i in 0..rows {
            log.record(gateway::audit::AuditRecord {
                direction: Some(gateway::audit::Direction::Outbound),
                action: "inquiry.send".into(),
                agency: Some("bank-a".into()),
                body: Some(format!("<CXQQ>{i}</CXQQ>").into()),
                ..Default::default()
            })
            .await?;
        }
        Ok::<_, anyhow::Error>(())
    })
}

#[test]
fn audit_verify_passes_a_sound_log_and_names_the_first_bad_row() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_folder(dir.path())?;
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    write_audit_rows(&url, 12)?;

    let out = gateway()
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok: 12 rows, 2 signed checkpoint(s) verified"),
        "{stdout}"
    );

    // Someone edits row 7 behind the gateway's back.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
        let pool = sqlx::SqlitePool::connect_with(options).await?;
        sqlx::query("UPDATE audit_events SET agency = 'bank-z' WHERE seq = 7")
            .execute(&pool)
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let out = gateway()
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .arg("--database-url")
        .arg(&url)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not verify at row 7") && stderr.contains("does not match its hash"),
        "{stderr}"
    );
    Ok(())
}
