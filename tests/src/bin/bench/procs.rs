//! The processes the bench runs and watches: the mock agencies, the gateway
//! (each the real release binary, in its own process) and nginx. CPU time
//! and memory are read from `/proc/<pid>/`, so each figure is that process's
//! own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `config/` of the repository.
pub fn config_dir() -> PathBuf {
    repo_root().join("config")
}

/// The gateway and mock-agencies binaries: those given, and this tree's
/// release builds of the others (`cargo build --release`, a no-op when
/// they are up to date).
pub fn binaries(
    gateway: Option<PathBuf>,
    mocks: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    for given in gateway.iter().chain(mocks.iter()) {
        anyhow::ensure!(given.is_file(), "{} is not a file", given.display());
    }
    let mut wanted = Vec::new();
    if gateway.is_none() {
        wanted.push("gateway");
    }
    if mocks.is_none() {
        wanted.push("mock-agencies");
    }
    if !wanted.is_empty() {
        build_release(&wanted)?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let release = target.join("release");
    let gateway = gateway.unwrap_or_else(|| release.join("gateway"));
    let mocks = mocks.unwrap_or_else(|| release.join("mock-agencies"));
    for bin in [&gateway, &mocks] {
        anyhow::ensure!(bin.is_file(), "{} was not built", bin.display());
    }
    Ok((gateway, mocks))
}

/// Builds the release binaries of `packages` (each package's binary of the
/// same name).
fn build_release(packages: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!(
        "building the {} release binaries (cargo build --release) ...",
        packages.join(" and ")
    );
    // With the bench itself, so that features unify as they did for the
    // bench's own build: built apart, a package's dependencies can unify
    // to other features, and the two builds would rebuild each other's.
    let mut args = vec![
        "build",
        "--release",
        "--quiet",
        "-p",
        "e2e-tests",
        "--bin",
        "bench",
    ];
    for p in packages {
        args.extend(["-p", p, "--bin", p]);
    }
    let status = std::process::Command::new(&cargo)
        .current_dir(repo_root())
        .args(&args)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    anyhow::ensure!(status.success(), "cargo build --release failed: {status}");
    Ok(())
}

/// The `config/` of the git tree a binary was built in (it lies in that
/// tree's `target/release/`), when there is one.
pub fn config_beside(binary: &Path) -> Option<PathBuf> {
    let folder = binary.canonicalize().ok()?.parent()?.to_path_buf();
    let config = git_toplevel(&folder)?.join("config");
    config.join("gateway.toml").is_file().then_some(config)
}

/// `git` in `dir`, its output trimmed; `None` when it fails (no git, not
/// a git tree).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The root of the git tree `dir` lies in.
pub fn git_toplevel(dir: &Path) -> Option<PathBuf> {
    let root = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    root.canonicalize().ok()
}

/// The short commit of the git tree `dir` lies in.
pub fn git_commit(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "--short", "HEAD"]).filter(|c| !c.is_empty())
}

/// Whether that tree has changes to tracked files not committed.
pub fn git_dirty(dir: &Path) -> Option<bool> {
    git(dir, &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty())
}

/// A free port on 127.0.0.1 (bound and released: another process could
/// take it in between, which on this machine does not happen).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`,
/// 100 on every Linux this runs on).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User plus system CPU time of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks())
}

/// utime + stime from a `/proc/<pid>/stat` line: fields 14 and 15, counted
/// after the command name, which may hold blanks and parentheses.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds the PostgreSQL server running on this machine spent for
/// `database`: the backends serving it, and the server's own processes
/// (postmaster, checkpointer, WAL writer, background writer, launchers),
/// which work for every database. Backends of other databases (other
/// tests on a shared server) are left out, and so is the time of backends
/// that have exited (the gateway's and the bench's connections stay
/// open). `None` when no `postgres` process runs here (the server is
/// elsewhere).
pub fn postgres_cpu_seconds(database: &str) -> Option<f64> {
    let mut ticks = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() != "postgres" {
            continue;
        }
        found = true;
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !postgres_process_counts(&String::from_utf8_lossy(&title), database) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        ticks += parse_cpu_ticks(&stat).unwrap_or(0);
    }
    found.then(|| ticks as f64 / clock_ticks())
}

/// Whether a `postgres` process with this title (its command line, which
/// a backend sets to `postgres: [cluster: ]user database host activity`)
/// works for `database`: a client backend only when it serves that
/// database, every other process of the server always.
fn postgres_process_counts(title: &str, database: &str) -> bool {
    let words: Vec<&str> = title.split(['\0', ' ']).filter(|w| !w.is_empty()).collect();
    // A client backend's host is `[local]` or an address with its port.
    let is_host = |w: &&str| {
        *w == "[local]"
            || w.strip_suffix(')')
                .and_then(|w| w.split_once('('))
                .is_some_and(|(_, port)| {
                    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                })
    };
    match words.iter().position(is_host) {
        Some(at) if at >= 1 => words[at - 1] == database,
        _ => true,
    }
}

/// The mount a path lies on: its file system type (ext4, xfs, tmpfs,
/// overlay ...), device and mount point, from `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    pub fstype: String,
    pub source: String,
    pub target: String,
}

impl std::fmt::Display for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} on {})", self.fstype, self.source, self.target)
    }
}

/// The mount `path` (made absolute, links resolved) lies on.
pub fn mount_of(path: &Path) -> Option<Mount> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    parse_mount_of(&mounts, &path)
}

/// The last-mounted of the longest mount points that hold `path`.
pub fn parse_mount_of(mounts: &str, path: &Path) -> Option<Mount> {
    // Blanks and a few other bytes of a mount point are written as octal
    // escapes (`\040` for a space).
    fn unescape(field: &str) -> String {
        let bytes = field.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let octal = bytes
                .get(i + 1..i + 4)
                .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
            match octal {
                Some(d) => {
                    out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                    i += 4;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    let mut best: Option<Mount> = None;
    for line in mounts.lines() {
        let mut fields = line.split(' ');
        let (Some(source), Some(target), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let target = unescape(target);
        if !path.starts_with(&target) {
            continue;
        }
        if best.as_ref().is_none_or(|b| {
            Path::new(&target).components().count() >= Path::new(&b.target).components().count()
        }) {
            best = Some(Mount {
                fstype: fstype.to_owned(),
                source: unescape(source),
                target,
            });
        }
    }
    best
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// CPU time the whole machine spent busy (every core: user, nice,
/// system, irq, softirq, steal), in seconds, from `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks())
}

/// The busy ticks of the `cpu` line of `/proc/stat` (guest time is
/// already inside user time; idle and iowait are not busy).
pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// This process and every process it started, children's children
/// included (nginx's workers), by `/proc/<pid>/task/<tid>/children`.
pub fn own_pids() -> Vec<u32> {
    let mut pids = vec![std::process::id()];
    let mut i = 0;
    while let Some(&pid) = pids.get(i) {
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for child in text
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                if !pids.contains(&child) {
                    pids.push(child);
                }
            }
        }
    }
    pids
}

/// Whether this process runs as root (`Uid:` of `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A child process the bench started; killed when dropped.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`, its stdout and stderr going to `log`.
    pub fn spawn(
        name: &str,
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
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once"))?;
        Ok(Self {
            name: name.to_owned(),
            pid,
            child,
            log,
        })
    }

    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid).unwrap_or(0.0)
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS").unwrap_or(0)
    }

    /// The highest resident memory so far, in KiB.
    pub fn hwm_kib(&self) -> u64 {
        status_kib(self.pid, "VmHWM").unwrap_or(0)
    }

    /// Fails with the end of its log when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of its log ({}):\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// SIGTERM (through `kill`, by pid), then SIGKILL after `grace`.
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
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `url` answers 200, the process staying alive.
pub async fn wait_http_ok(
    client: &reqwest::Client,
    url: &str,
    proc: &mut Proc,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        proc.check_alive()?;
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not answer {url} within {within:?}; its log:\n{}",
            proc.name,
            tail(&proc.log, 20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU seconds of the gateway, the mocks, the bench itself, everything the
/// bench started, the local PostgreSQL server and the whole machine at one
/// moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuMark {
    pub gateway: f64,
    pub mocks: f64,
    pub bench: f64,
    pub ours: f64,
    pub postgres: Option<f64>,
    pub machine: f64,
}

impl CpuMark {
    /// `postgres`: the database whose server's CPU is counted (the
    /// gateway's, when it runs on PostgreSQL).
    pub fn take(gateway: Option<&Proc>, mocks: Option<&Proc>, postgres: Option<&str>) -> Self {
        Self {
            gateway: gateway.map_or(0.0, Proc::cpu_seconds),
            mocks: mocks.map_or(0.0, Proc::cpu_seconds),
            bench: cpu_seconds(std::process::id()).unwrap_or(0.0),
            ours: own_pids().into_iter().filter_map(cpu_seconds).sum(),
            postgres: postgres.and_then(postgres_cpu_seconds),
            machine: machine_busy_seconds().unwrap_or(0.0),
        }
    }

    /// CPU seconds used since `earlier`, per process.
    pub fn since(&self, earlier: &CpuMark) -> CpuMark {
        CpuMark {
            gateway: self.gateway - earlier.gateway,
            mocks: self.mocks - earlier.mocks,
            bench: self.bench - earlier.bench,
            ours: self.ours - earlier.ours,
            postgres: self
                .postgres
                .zip(earlier.postgres)
                .map(|(now, then)| (now - then).max(0.0)),
            machine: self.machine - earlier.machine,
        }
    }

    /// What the rest of the machine took: busy time less everything the
    /// bench started and the PostgreSQL server.
    pub fn others(&self) -> f64 {
        (self.machine - self.ours - self.postgres.unwrap_or(0.0)).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_blanks() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 3 0 123 456789 1234 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn machine_busy_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 40 3 2 1 7 0\ncpu0 50 2 25 4500 20 1 1 0 3 0\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(161));
        assert_eq!(parse_machine_busy_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn postgres_counts_its_own_processes_and_the_backends_of_one_database() {
        let ours = |title: &str| postgres_process_counts(title, "bench_b_1");
        assert!(ours(
            "/usr/lib/postgresql/15/bin/postgres\0-D\0/var/lib/postgresql/15/main\0"
        ));
        assert!(ours("postgres: 15/main: checkpointer                    "));
        assert!(ours("postgres: walwriter   "));
        assert!(ours(
            "postgres: 15/main: postgres bench_b_1 127.0.0.1(51234) idle"
        ));
        assert!(ours("postgres: postgres bench_b_1 [local] INSERT"));
        assert!(ours(
            "postgres: 15/main: postgres bench_b_1 ::1(40000) COMMIT"
        ));
        assert!(!ours(
            "postgres: 15/main: postgres test_orders_7 127.0.0.1(51240) idle"
        ));
        assert!(!ours(
            "postgres: postgres other [local] idle in transaction"
        ));
    }

    #[test]
    fn a_path_lies_on_the_longest_mount_point_that_holds_it() {
        let mounts = "/dev/vda / ext4 rw,relatime 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n\
                      /dev/vdb /var/lib/my\\040data xfs rw 0 0\n\
                      overlay /var overlay rw 0 0\n";
        let on = |p: &str| parse_mount_of(mounts, Path::new(p)).map(|m| m.fstype);
        assert_eq!(on("/tmp/gateway-bench-x/a.db").as_deref(), Some("tmpfs"));
        assert_eq!(on("/tmpx/a.db").as_deref(), Some("ext4"));
        assert_eq!(on("/var/lib/my data/pg").as_deref(), Some("xfs"));
        assert_eq!(on("/var/lib/postgresql").as_deref(), Some("overlay"));
        assert_eq!(on("/home").as_deref(), Some("ext4"));
    }

    #[test]
    fn status_fields_in_kib() {
        let status = "Name:\tgateway\nVmHWM:\t  123456 kB\nVmRSS:\t   98765 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(98_765));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }
}
