//! Logging setup. Log lines never carry a full identity number: code logs
//! `Subject::masked_identifier()`, and request spans log paths without query
//! strings.

use tracing_subscriber::EnvFilter;

/// Human-readable logs to stderr, or JSON lines with `json = true`. The
/// `RUST_LOG` variable overrides the default level.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
