//! What a mock agency can be told to do wrong: the settings of
//! `GET/POST /_mock/faults` and of an agency's `faults` table in the
//! configuration (docs/wire-formats.md, "Mock agencies' inspection API").
//!
//! [`FaultConfig`] holds every fault except the two delays that predate it
//! (`latency_ms` and `result_delay_ms`, plain keys of [`crate::AgencySpec`]).
//! Every field is off by default. Probabilities ([`Rate`]) apply to each
//! dialect request independently, drawn from the agency's own seeded
//! generator, so a run with the same seed and the same sequence of requests
//! misbehaves the same way. The inspection API itself is never faulted.

use serde::{Deserialize, Serialize};

/// How the agency misbehaves for every dialect request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    #[default]
    Normal,
    /// HTTP `error_status` (503 unless set) with the dialect's error body;
    /// nothing is processed.
    Error,
    /// Processed as usual, but the reply is cut off in the middle.
    Malformed,
    /// A well-formed refusal for every request; nothing is remembered.
    Refuse,
    /// Processed as usual, but the reply is HTTP 200 with bytes that are
    /// neither XML nor JSON.
    Garbage,
}

/// A probability from 0 (never) to 1 (every request). Only
/// [`FaultConfig::problems`] checks the range, so that a configuration
/// file reports every mistake at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(pub f64);

// A rate is never NaN once checked: NaN is out of range, and JSON has none.
impl Eq for Rate {}

impl Rate {
    pub const NEVER: Rate = Rate(0.0);

    pub fn get(self) -> f64 {
        self.0
    }

    pub fn is_never(&self) -> bool {
        self.0 == 0.0
    }

    /// True when a uniform draw from `[0, 1)` falls within the rate.
    pub fn hits(self, draw: f64) -> bool {
        draw < self.0
    }

    fn problem(self, name: &str) -> Option<String> {
        (!(0.0..=1.0).contains(&self.0))
            .then(|| format!("{name} must be from 0 to 1, not {}", self.0))
    }
}

/// The 99th percentile of the standard normal distribution: a log-normal
/// delay with median `p50` reaches `p50 · exp(σ · Z99)` at its 99th
/// percentile.
const Z99: f64 = 2.326_347_874_040_840_8;

/// The longest delay a distribution may be told to reach (ten minutes).
const MAX_LATENCY_MS: u64 = 600_000;

/// A latency with a tail: log-normal, fitted so that half of the requests
/// wait less than `p50_ms` and 99 % less than `p99_ms`
/// (μ = ln p50, σ = ln(p99 / p50) / 2.326), never more than `max_ms`
/// (ten times `p99_ms` unless set). `p50_ms == p99_ms` is a fixed delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyDistribution {
    pub p50_ms: u64,
    pub p99_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
}

impl LatencyDistribution {
    /// The cap on one delay.
    pub fn cap_ms(&self) -> u64 {
        self.max_ms
            .unwrap_or_else(|| self.p99_ms.saturating_mul(10))
            .min(MAX_LATENCY_MS)
    }

    /// The delay for two independent uniform draws from `[0, 1)`, in
    /// milliseconds (Box–Muller gives the standard normal deviate).
    pub fn sample_ms(&self, u1: f64, u2: f64) -> f64 {
        let p50 = self.p50_ms.max(1) as f64;
        let p99 = (self.p99_ms as f64).max(p50);
        let sigma = (p99 / p50).ln() / Z99;
        // 1 - u1 is in (0, 1]: its logarithm is finite.
        let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (p50.ln() + sigma * z).exp().min(self.cap_ms() as f64)
    }

    fn problems(&self, out: &mut Vec<String>) {
        if self.p50_ms == 0 {
            out.push("latency.p50_ms must be at least 1".into());
        }
        if self.p99_ms < self.p50_ms {
            out.push(format!(
                "latency.p99_ms ({}) must not be below latency.p50_ms ({})",
                self.p99_ms, self.p50_ms
            ));
        }
        if self.p99_ms > MAX_LATENCY_MS {
            out.push(format!(
                "latency.p99_ms must be at most {MAX_LATENCY_MS}, not {}",
                self.p99_ms
            ));
        }
        if let Some(max) = self.max_ms
            && max < self.p50_ms
        {
            out.push(format!(
                "latency.max_ms ({max}) must not be below latency.p50_ms ({})",
                self.p50_ms
            ));
        }
    }
}

/// The HTTP status of injected errors unless told otherwise.
pub const DEFAULT_ERROR_STATUS: u16 = 503;
/// The largest reply `oversize_bytes` may ask for (64 MiB).
pub const MAX_OVERSIZE_BYTES: u64 = 64 << 20;
/// The slowest trickle (`trickle_ms_per_byte`) one may ask for.
pub const MAX_TRICKLE_MS_PER_BYTE: u64 = 10_000;

/// Faults beyond the fixed latency and a registry's result delay; all off
/// by default. See the module documentation and docs/wire-formats.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// What every request gets.
    #[serde(skip_serializing_if = "is_normal")]
    pub mode: FaultMode,
    /// Seed of the agency's fault generator; derived from the agency's id
    /// when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A random delay added to `latency_ms` for every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyDistribution>,
    /// Share of requests answered with the dialect's error body.
    #[serde(skip_serializing_if = "Rate::is_never")]
    pub error_rate: Rate,
    /// The HTTP status of errors (`error_rate` and `mode: error`), 400–599.
    #[serde(skip_serializing_if = "is_default_status")]
    pub error_status: u16,
    /// Share of requests whose connection is closed without an answer.
    #[serde(skip_serializing_if = "Rate::is_never")]
    pub reset_rate: Rate,
    /// Share of replies cut off in the middle.
    #[serde(skip_serializing_if = "Rate::is_never")]
    pub malformed_rate: Rate,
    /// Share of replies replaced by bytes that are neither XML nor JSON.
    #[serde(skip_serializing_if = "Rate::is_never")]
    pub garbage_rate: Rate,
    /// Replies claim UTF-8 but their bytes are GB18030.
    #[serde(skip_serializing_if = "is_false")]
    pub wrong_encoding: bool,
    /// Replies are padded to at least this many bytes (0: off).
    #[serde(skip_serializing_if = "is_zero")]
    pub oversize_bytes: u64,
    /// Replies are sent one byte at a time, this long before each (0: off).
    #[serde(skip_serializing_if = "is_zero")]
    pub trickle_ms_per_byte: u64,
    /// Requests beyond this many in a rolling second get HTTP 429 (0: off).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub rate_limit_per_second: u32,
    /// Share of requests answered HTTP 429 regardless of the rate.
    #[serde(skip_serializing_if = "Rate::is_never")]
    pub throttle_rate: Rate,
}

fn is_normal(mode: &FaultMode) -> bool {
    *mode == FaultMode::Normal
}

fn is_default_status(status: &u16) -> bool {
    *status == DEFAULT_ERROR_STATUS
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            mode: FaultMode::Normal,
            seed: None,
            latency: None,
            error_rate: Rate::NEVER,
            error_status: DEFAULT_ERROR_STATUS,
            reset_rate: Rate::NEVER,
            malformed_rate: Rate::NEVER,
            garbage_rate: Rate::NEVER,
            wrong_encoding: false,
            oversize_bytes: 0,
            trickle_ms_per_byte: 0,
            rate_limit_per_second: 0,
            throttle_rate: Rate::NEVER,
        }
    }
}

impl FaultConfig {
    /// Nothing injected (a seed alone injects nothing either, but is kept).
    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// Every value out of range, as sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let rates = [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
            ("malformed_rate", self.malformed_rate),
            ("garbage_rate", self.garbage_rate),
            ("throttle_rate", self.throttle_rate),
        ];
        out.extend(rates.iter().filter_map(|(name, rate)| rate.problem(name)));
        if !(400..=599).contains(&self.error_status) {
            out.push(format!(
                "error_status must be an HTTP status from 400 to 599, not {}",
                self.error_status
            ));
        }
        if let Some(latency) = &self.latency {
            latency.problems(&mut out);
        }
        if self.oversize_bytes > MAX_OVERSIZE_BYTES {
            out.push(format!(
                "oversize_bytes must be at most {MAX_OVERSIZE_BYTES}, not {}",
                self.oversize_bytes
            ));
        }
        if self.trickle_ms_per_byte > MAX_TRICKLE_MS_PER_BYTE {
            out.push(format!(
                "trickle_ms_per_byte must be at most {MAX_TRICKLE_MS_PER_BYTE}, not {}",
                self.trickle_ms_per_byte
            ));
        }
        out
    }
}

/// The seed of an agency's fault generator when none is configured: the
/// FNV-1a hash of its id, the same on every run and platform.
pub fn default_seed(agency_id: &str) -> u64 {
    agency_id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fitted_log_normal_has_the_asked_percentiles() {
        let latency = LatencyDistribution {
            p50_ms: 20,
            p99_ms: 400,
            max_ms: None,
        };
        // u2 = 0 makes cos 1: z = sqrt(-2 ln(1 - u1)).
        let at = |z: f64| latency.sample_ms(1.0 - (-z * z / 2.0).exp(), 0.0);
        assert!((at(0.0) - 20.0).abs() < 1e-9);
        assert!((at(Z99) - 400.0).abs() < 1e-6);
        assert_eq!(at(40.0), 4000.0, "capped at ten times p99");
        let fixed = LatencyDistribution {
            p50_ms: 7,
            p99_ms: 7,
            max_ms: None,
        };
        assert!((fixed.sample_ms(0.9, 0.3) - 7.0).abs() < 1e-9);
    }

    #[test]
    fn out_of_range_settings_are_all_reported() {
        let config = FaultConfig {
            error_rate: Rate(1.5),
            throttle_rate: Rate(f64::NAN),
            error_status: 200,
            latency: Some(LatencyDistribution {
                p50_ms: 0,
                p99_ms: 0,
                max_ms: None,
            }),
            oversize_bytes: MAX_OVERSIZE_BYTES + 1,
            ..FaultConfig::default()
        };
        let problems = config.problems();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(FaultConfig::default().problems().is_empty());
        assert!(FaultConfig::default().is_off());
    }

    #[test]
    fn default_seeds_are_stable_and_differ_by_agency() {
        assert_eq!(default_seed("bank-a"), default_seed("bank-a"));
        assert_ne!(default_seed("bank-a"), default_seed("bank-b"));
        assert_eq!(default_seed(""), 0xcbf2_9ce4_8422_2325);
    }
}
