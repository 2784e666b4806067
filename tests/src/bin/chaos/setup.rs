//! What the harness runs: the real `mock-agencies` and `gateway` binaries as
//! processes of their own, their configuration written into the run's
//! folder, and (SQLite) the small filesystem the database lives on, so that
//! the disk can be filled on purpose.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// The caller's callback secret, handed to the gateways by environment.
pub const CALLBACK_SECRET: &str = "chaos-callback-secret";
pub const CALLBACK_SECRET_ENV: &str = "CHAOS_CALLBACK_SECRET";
/// The token registry-x presents when it pushes a result (the demo's, in
/// config/mock-agencies.toml), and its SHA-256 for registry-y's file.
const REGISTRY_TOKEN_SHA256: &str =
    "4907ecbd212438d41b3f2857079dd0186ef963d760100daef74cde8ed8123657";

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn config_dir() -> PathBuf {
    repo_root().join("config")
}

/// A free port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `gateway` and `mock-agencies` from the folder the harness itself runs
/// from: as they are with `prebuilt` (CI, where the test run has just built
/// all three), else built first in the harness's own profile, with the
/// harness among the packages so that features unify as they did for it
/// and nothing is built twice.
pub fn build_binaries(prebuilt: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
    let here = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("the harness's executable has no folder")?;
    let (gateway, mocks) = (here.join("gateway"), here.join("mock-agencies"));
    if prebuilt {
        for bin in [&gateway, &mocks] {
            anyhow::ensure!(bin.is_file(), "{} is not built", bin.display());
        }
        return Ok((gateway, mocks));
    }
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--quiet", "--locked"];
    if release {
        args.push("--release");
    }
    args.extend(["-p", "gateway", "--bin", "gateway"]);
    args.extend(["-p", "mock-agencies", "--bin", "mock-agencies"]);
    args.extend(["-p", "e2e-tests", "--bin", "chaos"]);
    println!(
        "building the gateway and mock-agencies binaries (cargo {}) ...",
        args.join(" ")
    );
    let status = std::process::Command::new(&cargo)
        .current_dir(repo_root())
        .args(&args)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    anyhow::ensure!(status.success(), "cargo build failed: {status}");
    for bin in [&gateway, &mocks] {
        anyhow::ensure!(bin.is_file(), "{} was not built", bin.display());
    }
    Ok((gateway, mocks))
}

/// The highest resident memory of a process so far, in KiB (`VmHWM`).
pub fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// One process the harness started, its output in a log file. Killed when
/// dropped.
pub struct Proc {
    pub pid: u32,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("GATEWAY_LOG_JSON")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().context("the process exited at once")?;
        Ok(Self { pid, child, log })
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

/// Waits until `url` answers 2xx, `proc` staying alive.
pub async fn wait_ok(
    http: &reqwest::Client,
    url: &str,
    proc: &mut Proc,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if proc.exited() {
            bail!(
                "the process behind {url} exited; see {}",
                proc.log.display()
            );
        }
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{url} did not answer within {within:?}; see {}",
                proc.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The mock agencies: one process, every agency on a port of its own.
pub struct Mocks {
    pub proc: Proc,
    /// Agency id → base URL.
    pub urls: Vec<(String, String)>,
}

impl Mocks {
    pub async fn start(bin: &Path, dir: &Path, http: &reqwest::Client) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(config_dir().join("mock-agencies.toml"))?;
        let mut table: toml::Table = toml::from_str(&text)?;
        let mut urls = Vec::new();
        if let Some(toml::Value::Array(agencies)) = table.get_mut("agencies") {
            for agency in agencies.iter_mut() {
                let Some(agency) = agency.as_table_mut() else {
                    continue;
                };
                let port = free_port()?;
                agency.insert("listen".into(), format!("127.0.0.1:{port}").into());
                // The copy lives elsewhere: a key file named relative to
                // config/ must still be found.
                if let Some(file) = agency.get("signing_key_file").and_then(|v| v.as_str())
                    && Path::new(file).is_relative()
                {
                    let anchored = config_dir().join(file).display().to_string();
                    agency.insert("signing_key_file".into(), anchored.into());
                }
                let id = agency
                    .get("id")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned();
                urls.push((id, format!("http://127.0.0.1:{port}")));
            }
        }
        let path = dir.join("mock-agencies.toml");
        std::fs::write(&path, toml::to_string(&table)?)?;
        let config = path.display().to_string();
        let mut proc = Proc::spawn(
            bin,
            &["--config", &config],
            &[],
            dir.join("mock-agencies.log"),
        )?;
        for (_, url) in &urls {
            wait_ok(
                http,
                &format!("{url}/_mock/faults"),
                &mut proc,
                Duration::from_secs(60),
            )
            .await?;
        }
        Ok(Self { proc, urls })
    }

    pub fn url(&self, id: &str) -> anyhow::Result<&str> {
        self.urls
            .iter()
            .find(|(a, _)| a == id)
            .map(|(_, u)| u.as_str())
            .with_context(|| format!("no mock agency {id}"))
    }
}

/// Where the gateways keep their data.
#[derive(Debug, Clone)]
pub enum Database {
    /// An SQLite file on a small filesystem of the harness's own.
    Sqlite {
        file: PathBuf,
        mount: Option<PathBuf>,
    },
    Postgres {
        url: String,
        name: String,
        server_url: String,
    },
}

impl Database {
    pub fn url(&self) -> String {
        match self {
            Database::Sqlite { file, .. } => format!("sqlite://{}", file.display()),
            Database::Postgres { url, .. } => url.clone(),
        }
    }
}

/// The size of the SQLite file's tmpfs; memory is taken only as it is used.
pub const DISK_MIB: u64 = 8192;

/// A tmpfs of `size_mib` mounted at `at` (root only): the SQLite file's
/// home, which the harness can fill to the last byte by shrinking it to
/// what is in use. Unmounted on drop.
pub struct SmallDisk {
    pub at: PathBuf,
}

impl SmallDisk {
    pub fn mount(at: &Path, size_mib: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(at)?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .context("cannot run mount")?;
        if !out.status.success() {
            bail!(
                "cannot mount a {size_mib} MiB tmpfs at {} for the disk-full fault (needs root): {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self { at: at.to_owned() })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

/// Bytes in use on the filesystem holding `path`, in whole pages.
pub fn used_bytes(path: &Path) -> anyhow::Result<u64> {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=used"])
        .arg(path)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let used: u64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .context("cannot read df's answer")?;
    Ok(used.div_ceil(4096).max(1) * 4096)
}

/// One gateway instance: its configuration and, while it runs, its process.
pub struct GatewaySlot {
    pub index: usize,
    pub base: String,
    config: PathBuf,
    dir: PathBuf,
    bin: PathBuf,
    pub proc: Option<Proc>,
    pub starts: u32,
    /// The highest `VmHWM` of any of its processes, in KiB.
    pub peak_kib: u64,
}

impl GatewaySlot {
    /// Writes the configuration of instance `index` (one per instance: each
    /// has its own address, given to the registry as where to push).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        index: usize,
        dir: &Path,
        bin: &Path,
        database: &Database,
        mocks: &Mocks,
        callback_url: &str,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let agencies = write_agencies(dir, mocks)?;
        let text = std::fs::read_to_string(config_dir().join("gateway.toml"))?;
        let mut t: toml::Table = toml::from_str(&text)?;
        t.insert("listen".into(), format!("127.0.0.1:{port}").into());
        t.insert("public_url".into(), base.clone().into());
        t.insert("database_url".into(), database.url().into());
        t.insert("agencies_dir".into(), agencies.display().to_string().into());
        t.insert(
            "dialects_dir".into(),
            config_dir().join("dialects").display().to_string().into(),
        );
        set(&mut t, "inquiries", &[("deadline_secs", 60.into())]);
        set(
            &mut t,
            "dispatcher",
            &[
                ("lease_grace_secs", 2.into()),
                ("retry_base_ms", 100.into()),
            ],
        );
        set(
            &mut t,
            "orders",
            &[
                ("retry_ms", 100.into()),
                ("max_retry_ms", 1000.into()),
                ("poll_interval_ms", 200.into()),
                ("waiting_poll_ms", 1000.into()),
                ("expiry_sweep_ms", 5000.into()),
            ],
        );
        set(
            &mut t,
            "callbacks",
            &[
                ("max_attempts", 60.into()),
                ("retry_ms", 100.into()),
                ("max_retry_ms", 2000.into()),
                ("timeout_ms", 5000.into()),
            ],
        );
        let key = config_dir().join("demo-audit-signing-key.hex");
        set(
            &mut t,
            "audit",
            &[
                ("signing_key_file", key.display().to_string().into()),
                ("checkpoint_every_rows", 500.into()),
                ("checkpoint_every_secs", 10.into()),
            ],
        );
        if let Some(toml::Value::Array(callers)) = t.get_mut("callers") {
            for caller in callers.iter_mut().filter_map(|c| c.as_table_mut()) {
                if caller.get("role").and_then(|r| r.as_str()) == Some("enforcement") {
                    caller.insert("callback_url".into(), callback_url.into());
                    caller.insert("callback_secret_env".into(), CALLBACK_SECRET_ENV.into());
                }
            }
        }
        let config = dir.join(format!("gateway-{index}.toml"));
        std::fs::write(&config, toml::to_string(&t)?)?;
        Ok(Self {
            index,
            base,
            config,
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            proc: None,
            starts: 0,
            peak_kib: 0,
        })
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Starts the instance and waits until it is ready.
    pub async fn start(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        self.starts += 1;
        let log = self
            .dir
            .join(format!("gateway-{}-{:03}.log", self.index, self.starts));
        let config = self.config.display().to_string();
        let mut proc = Proc::spawn(
            &self.bin,
            &["serve", "--config", &config],
            &[(CALLBACK_SECRET_ENV, CALLBACK_SECRET), ("RUST_LOG", "info")],
            log,
        )?;
        let ready = wait_ok(
            http,
            &format!("{}/readyz", self.base),
            &mut proc,
            Duration::from_secs(120),
        )
        .await;
        self.proc = Some(proc);
        ready
    }

    pub fn sample_memory(&mut self) {
        if let Some(p) = &self.proc
            && let Some(kib) = peak_kib(p.pid)
        {
            self.peak_kib = self.peak_kib.max(kib);
        }
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        self.sample_memory();
        if let Some(p) = self.proc.take() {
            p.kill().await;
        }
    }

    pub async fn stop(&mut self) {
        self.sample_memory();
        if let Some(p) = self.proc.take() {
            p.stop(Duration::from_secs(20)).await;
        }
    }

    /// Every log file this instance wrote.
    pub fn logs(&self) -> Vec<PathBuf> {
        (1..=self.starts)
            .map(|n| self.dir.join(format!("gateway-{}-{n:03}.log", self.index)))
            .collect()
    }
}

fn set(t: &mut toml::Table, section: &str, values: &[(&str, toml::Value)]) {
    let entry = t
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(table) = entry.as_table_mut() {
        for (k, v) in values {
            table.insert((*k).to_owned(), v.clone());
        }
    }
}

/// The agency files of the run: bank-a, bank-b and registry-x at the mocks
/// (registry-x polled), and registry-y, the same mock registry spoken to in
/// the dialect whose results are pushed. Short timeouts, so that a paused
/// agency leaves orders in doubt.
fn write_agencies(dir: &Path, mocks: &Mocks) -> anyhow::Result<PathBuf> {
    let out = dir.join("agencies");
    if out.is_dir() {
        return Ok(out);
    }
    std::fs::create_dir_all(out.join("secrets"))?;
    for entry in std::fs::read_dir(config_dir().join("agencies/secrets"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), out.join("secrets").join(entry.file_name()))?;
    }
    for id in ["bank-a", "bank-b", "registry-x"] {
        let text = std::fs::read_to_string(config_dir().join(format!("agencies/{id}.toml")))?;
        let mut agency: toml::Table = toml::from_str(&text)?;
        agency.insert("base_url".into(), mocks.url(id)?.into());
        set(&mut agency, "limits", &[("timeout_ms", 2000.into())]);
        std::fs::write(out.join(format!("{id}.toml")), toml::to_string(&agency)?)?;
        if id == "registry-x" {
            agency.insert("id".into(), "registry-y".into());
            agency.insert("name".into(), "Registry Y (pushes its results)".into());
            agency.insert("dialect".into(), "registry-callback".into());
            agency.insert("callback_token_sha256".into(), REGISTRY_TOKEN_SHA256.into());
            std::fs::write(out.join("registry-y.toml"), toml::to_string(&agency)?)?;
        }
    }
    Ok(out)
}
