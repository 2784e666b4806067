//! The gateway's agency files for a bank fleet: one `fleet-NNNN.toml` per
//! bank, in the format of `config/agencies/*.toml` (the gateway refuses
//! unknown keys, so only these are written: `id`, `name`, `kind`, `dialect`,
//! `base_url`, `enabled`, `encoding` for the XML dialects, and `[limits]`
//! `timeout_ms` and `max_batch`). Built from [`crate::fleet_plan`], so the files and a fleet
//! of the same size agree on every bank's id and dialect.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::config::MockDialect;
use crate::fleet_plan::{self, MAX_FLEET_BANKS};

/// How long the gateway may wait for one exchange with a fleet bank.
const TIMEOUT_MS: u64 = 5000;
/// Subjects per message for the dialects that batch.
const XML_MAX_BATCH: usize = 20;

/// One agency file, keys in the order they are written.
#[derive(Serialize)]
struct AgencyFile<'a> {
    id: &'a str,
    name: &'a str,
    kind: &'static str,
    dialect: &'static str,
    base_url: String,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'a str>,
    limits: Limits,
}

/// The `[limits]` table.
#[derive(Serialize)]
struct Limits {
    timeout_ms: u64,
    max_batch: usize,
}

/// Per bank of a fleet of `banks` served at `fleet_base_url`
/// (`http://127.0.0.1:18200`): the file name (`fleet-0001.toml`) and its
/// TOML text, `base_url` being `{fleet_base_url}/banks/{id}`. XML banks
/// name their encoding (`iso-bank-xml` ones `UTF-8`) and take batches of
/// 20; `bank-json` ones one subject a call.
pub fn fleet_agency_files(fleet_base_url: &str, banks: usize) -> Vec<(String, String)> {
    let base = fleet_base_url.trim_end_matches('/');
    (1..=banks)
        .map(|number| {
            let spec = fleet_plan::fleet_bank_spec(number, banks);
            let (encoding, max_batch) = match spec.dialect {
                MockDialect::CourtBankXml => (spec.encoding.as_deref(), XML_MAX_BATCH),
                MockDialect::IsoBankXml => (Some("UTF-8"), XML_MAX_BATCH),
                // A fleet is made of banks: the other dialects never occur.
                _ => (None, 1),
            };
            let file = AgencyFile {
                id: &spec.id,
                name: &spec.name,
                kind: "bank",
                dialect: spec.dialect.as_str(),
                base_url: format!("{base}/banks/{}", spec.id),
                enabled: true,
                encoding,
                limits: Limits {
                    timeout_ms: TIMEOUT_MS,
                    max_batch,
                },
            };
            let body = toml::to_string(&file).unwrap_or_default();
            let text = format!(
                "# Bank {number} of {banks} of the mock bank fleet (`mock-agencies --banks {banks}`),\n\
                 # written by `mock-agencies write-agencies`.\n{body}"
            );
            (format!("{}.toml", spec.id), text)
        })
        .collect()
}

/// Writes [`fleet_agency_files`] into `dir` (created when missing) and
/// returns how many files were written.
pub fn write_fleet_agency_files(
    dir: &Path,
    fleet_base_url: &str,
    banks: usize,
) -> anyhow::Result<usize> {
    anyhow::ensure!(
        (1..=MAX_FLEET_BANKS).contains(&banks),
        "a fleet has 1 to {MAX_FLEET_BANKS} banks, not {banks}"
    );
    let url = url_ok(fleet_base_url)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = fleet_agency_files(url, banks);
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(files.len())
}

/// An http(s) URL without a query or fragment, or an error saying why not.
fn url_ok(url: &str) -> anyhow::Result<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .with_context(|| format!("base URL {url:?} must start with http:// or https://"))?;
    anyhow::ensure!(
        !rest.is_empty() && !rest.contains(['?', '#', ' ']),
        "base URL {url:?} must name a host and carry no query, fragment or blank"
    );
    Ok(url)
}
