//! The nginx baseline: Debian's nginx as a plain reverse proxy (one worker,
//! keep-alive to the upstream) in front of the mock bank fleet, run with a
//! configuration of its own in a temporary folder: no path outside it is
//! written, and it is stopped at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procs::{Proc, free_port, is_root, tail, wait_http_ok};

/// nginx on the PATH or in /usr/sbin; otherwise, with `install`, Debian's
/// package through `apt-get install -y nginx` (its service is not
/// started). `Err` says why there is no nginx.
pub fn find_or_install(install: bool) -> Result<PathBuf, String> {
    if let Some(found) = find() {
        println!("nginx: using {}", found.display());
        return Ok(found);
    }
    if !install {
        return Err("nginx is not installed and --no-install was given".into());
    }
    if !is_root() {
        return Err("nginx is not installed, and installing it needs root".into());
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err("nginx is not installed and there is no apt-get to install it".into());
    }
    for update_first in [false, true] {
        if update_first {
            println!("nginx: running `apt-get update` first ...");
            let _ = apt(&["update"]);
        }
        println!(
            "nginx: not found; running `apt-get install -y nginx` (its service is not started) ..."
        );
        match apt(&["install", "-y", "--no-install-recommends", "nginx"]) {
            Ok(()) => {
                if let Some(found) = find() {
                    println!("nginx: installed {}", found.display());
                    return Ok(found);
                }
            }
            Err(e) => println!("nginx: apt-get failed: {e}"),
        }
    }
    Err("nginx is not installed and `apt-get install -y nginx` did not install it".into())
}

fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

/// `apt-get` non-interactively; services are kept from starting
/// (`RUNLEVEL=1` makes Debian's invoke-rc.d start nothing).
fn apt(args: &[&str]) -> Result<(), String> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("RUNLEVEL", "1")
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("apt-get {} exited with {status}", args.join(" ")))
    }
}

/// A running nginx.
pub struct Nginx {
    pub proc: Proc,
    pub base: String,
}

/// The configuration: one worker, no daemon, every file under `prefix`,
/// an upstream with keep-alive connections, access log buffered in the
/// folder (a plain production-like proxy).
pub fn config_text(prefix: &Path, listen_port: u16, upstream: &str, as_root: bool) -> String {
    let p = prefix.display();
    let user = if as_root { "user root;\n" } else { "" };
    format!(
        "{user}worker_processes 1;\n\
         daemon off;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20   access_log {p}/access.log combined buffer=64k flush=1s;\n\
         \x20   client_body_temp_path {p}/client_body;\n\
         \x20   proxy_temp_path {p}/proxy;\n\
         \x20   fastcgi_temp_path {p}/fastcgi;\n\
         \x20   uwsgi_temp_path {p}/uwsgi;\n\
         \x20   scgi_temp_path {p}/scgi;\n\
         \x20   keepalive_requests 100000;\n\
         \x20   upstream agency {{ server {upstream}; keepalive 256; keepalive_requests 100000; }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{listen_port};\n\
         \x20       location / {{\n\
         \x20           proxy_pass http://agency;\n\
         \x20           proxy_http_version 1.1;\n\
         \x20           proxy_set_header Connection \"\";\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n"
    )
}

impl Nginx {
    /// Starts nginx in front of `upstream` (`127.0.0.1:PORT`).
    pub async fn start(
        bin: &Path,
        dir: &Path,
        upstream: &str,
        client: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(&prefix)?;
        let port = free_port()?;
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config_text(&prefix, port, upstream, is_root()))?;
        let prefix_arg = format!("{}/", prefix.display());
        let conf_arg = conf.display().to_string();
        let error_arg = prefix.join("error.log").display().to_string();
        let mut proc = Proc::spawn(
            "nginx",
            bin,
            &["-p", &prefix_arg, "-c", &conf_arg, "-e", &error_arg],
            &[],
            prefix.join("stderr.log"),
        )?;
        let base = format!("http://127.0.0.1:{port}");
        if let Err(e) = wait_http_ok(
            client,
            &format!("{base}/banks"),
            &mut proc,
            Duration::from_secs(20),
        )
        .await
        {
            anyhow::bail!(
                "{e}\nnginx error log:\n{}",
                tail(&prefix.join("error.log"), 20)
            );
        }
        Ok(Self { proc, base })
    }

    /// The worker's CPU time is its own process: the master's pid is ours,
    /// the worker is its child. Sums both.
    pub fn cpu_seconds(&self) -> f64 {
        let mut total = self.proc.cpu_seconds();
        if let Ok(children) =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.proc.pid))
        {
            for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
                total += crate::procs::cpu_seconds(pid).unwrap_or(0.0);
            }
        }
        total
    }

    pub async fn stop(self) {
        self.proc.stop(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_writes_only_under_its_prefix() {
        let text = config_text(Path::new("/tmp/x"), 8081, "127.0.0.1:9000", false);
        assert!(text.contains("listen 127.0.0.1:8081;"));
        assert!(text.contains("server 127.0.0.1:9000; keepalive 256;"));
        assert!(text.contains("daemon off;") && text.contains("worker_processes 1;"));
        assert!(!text.contains("user root"));
        for line in text
            .lines()
            .filter(|l| l.contains("_path ") || l.contains("log "))
        {
            assert!(line.contains("/tmp/x/"), "{line}");
        }
        assert!(config_text(Path::new("/tmp/x"), 1, "a:1", true).starts_with("user root;"));
    }
}
