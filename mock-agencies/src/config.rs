//! The mock fleet's configuration: which agencies to run, in which dialect,
//! where, how slow and how faulty, plus the seed and size of the shared population.
//! Loaded from TOML (`config/mock-agencies.toml`) or built in code by
//! [`MockConfig::standard`] (plus bank-d with [`MockConfig::with_iso_bank`],
//! and the further kinds' agencies with [`MockConfig::with_further_kinds`]).
//! Validation collects every problem before
//! refusing, so one run shows all mistakes of a file.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::faults::FaultConfig;
use crate::fixtures;

/// The largest population we agree to generate: beyond it start-up time and
/// memory stop being "a mock".
pub const MAX_POPULATION: usize = 1_000_000;

/// The message format an agency speaks (docs/wire-formats.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MockDialect {
    /// Court-bank XML with pinyin tags, synchronous batches.
    CourtBankXml,
    /// A modern bank JSON API, one subject per call.
    BankJson,
    /// A real-estate registry: submit, then poll for the result.
    RegistryJson,
    /// An ISO 20022-flavoured XML bank: UTF-8, a default namespace, amounts
    /// in fen, synchronous batches.
    IsoBankXml,
    /// A vehicle register: SOAP 1.1, faults as `soap:Fault`.
    VehicleSoap,
    /// The securities depository: XML, submit then poll.
    SecuritiesXml,
    /// A payment platform: JSON, every request and reply signed.
    PaymentJson,
    /// A housing provident fund centre: JSON, results pushed back.
    FundCallback,
    /// The market-regulation registry (equity): GBK XML, batches of up to 50.
    MarketGbkXml,
}

impl MockDialect {
    /// The name used in configuration files and in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CourtBankXml => "court-bank-xml",
            Self::BankJson => "bank-json",
            Self::RegistryJson => "registry-json",
            Self::IsoBankXml => "iso-bank-xml",
            Self::VehicleSoap => "vehicle-soap",
            Self::SecuritiesXml => "securities-xml",
            Self::PaymentJson => "payment-json",
            Self::FundCallback => "fund-callback",
            Self::MarketGbkXml => "market-gbk-xml",
        }
    }

    /// Banks hold accounts; the others hold real-estate units or assets of
    /// the further kinds.
    pub fn is_bank(self) -> bool {
        matches!(self, Self::CourtBankXml | Self::BankJson | Self::IsoBankXml)
    }

    /// The dialects of the further kinds of asset (vehicles, securities,
    /// payment and provident fund accounts, equity).
    pub fn is_further_kind(self) -> bool {
        matches!(
            self,
            Self::VehicleSoap
                | Self::SecuritiesXml
                | Self::PaymentJson
                | Self::FundCallback
                | Self::MarketGbkXml
        )
    }

    /// Whether the dialect answers an inquiry with a ticket, its result
    /// coming later (by polling or pushed to a callback address).
    pub fn answers_later(self) -> bool {
        matches!(
            self,
            Self::RegistryJson | Self::SecuritiesXml | Self::FundCallback
        )
    }

    /// Whether the dialect answers a control order with a ticket, its
    /// result revealed later to a poll (the registry, the depository).
    pub fn answers_control_later(self) -> bool {
        matches!(self, Self::RegistryJson | Self::SecuritiesXml)
    }

    /// Whether the dialect pushes results to a callback address.
    pub fn pushes_results(self) -> bool {
        matches!(self, Self::RegistryJson | Self::FundCallback)
    }

    /// Whether its messages are XML in an encoding of the agency's choice
    /// (UTF-8 when none is configured, GBK for the market registry).
    fn takes_encoding(self) -> bool {
        matches!(self, Self::CourtBankXml | Self::MarketGbkXml)
    }
}

/// The whole fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockConfig {
    /// Seed of the generated population; the same seed gives the same people,
    /// accounts and units on every run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number of generated subjects (the named fixtures come on top).
    #[serde(default = "default_population")]
    pub population: usize,
    /// The agencies to run, one listener each.
    pub agencies: Vec<AgencySpec>,
}

/// One mock agency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencySpec {
    /// The agency's id, as the gateway's agency files name it (`bank-a`).
    /// Fixture holdings are attached by this id.
    pub id: String,
    /// The message format it speaks.
    pub dialect: MockDialect,
    /// Where it listens when the fleet is not started on ephemeral ports.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Character encoding of requests and replies (`court-bank-xml` and
    /// `market-gbk-xml` only: the other XML dialects are always UTF-8);
    /// UTF-8 when absent (GBK for `market-gbk-xml`).
    #[serde(default)]
    pub encoding: Option<String>,
    /// Delay added before answering every dialect request.
    #[serde(default)]
    pub latency_ms: u64,
    /// How long a registry takes to produce a result after a submission.
    #[serde(default = "default_result_delay_ms")]
    pub result_delay_ms: u64,
    /// Display name: also picks the bank's brand (branch names, account
    /// number prefixes) when it names a known bank.
    #[serde(default)]
    pub name: String,
    /// `registry-json` and `fund-callback` only: the bearer token sent in
    /// the `Authorization` header when the agency pushes a result to a
    /// callback address (`HDDZ`, `notify_url`); no `Authorization` header
    /// when absent.
    #[serde(default)]
    pub callback_token: Option<String>,
    /// `payment-json` only, and required there: the file holding the
    /// HMAC-SHA256 key the platform checks requests and signs replies with
    /// (surrounding whitespace trimmed), the very file the gateway's agency
    /// file names as `[auth.signing_key]`. A relative path is relative to
    /// the configuration file's folder when loaded from a file.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Faults injected from the start (error and reset rates, latency
    /// tails, throttling, ...), as `POST /_mock/faults` takes them; none
    /// when absent.
    #[serde(default, skip_serializing_if = "FaultConfig::is_off")]
    pub faults: FaultConfig,
}

fn default_seed() -> u64 {
    20_241_127
}

fn default_population() -> usize {
    2000
}

/// The bearer token registry-x sends with its pushed results in the standard
/// fleet and the shipped configuration. A demo-only value: the gateway's
/// agency file for a callback registry stores only its SHA-256.
pub const DEMO_CALLBACK_TOKEN: &str = "demo-registry-callback-token";

/// The bearer token fund-f sends with its pushed results in the shipped
/// configuration. A demo-only value: the gateway's agency file stores only
/// its SHA-256.
pub const DEMO_FUND_CALLBACK_TOKEN: &str = "demo-fund-callback-token";

pub(crate) fn default_result_delay_ms() -> u64 {
    300
}

/// Everything wrong with a configuration, all at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid mock agency configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl MockConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: Self =
            toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
        let folder = path.parent().unwrap_or_else(|| Path::new("."));
        for spec in &mut config.agencies {
            if let Some(file) = spec.signing_key_file.as_mut()
                && file.is_relative()
            {
                *file = folder.join(&*file);
            }
        }
        config
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    /// The three agencies of the first release (bank-a, bank-b, registry-x)
    /// without listen addresses: what tests and the demo start on port 0.
    pub fn standard() -> Self {
        Self {
            seed: default_seed(),
            population: default_population(),
            agencies: vec![
                AgencySpec {
                    id: fixtures::BANK_A.into(),
                    dialect: MockDialect::CourtBankXml,
                    listen: None,
                    encoding: Some("GB18030".into()),
                    latency_ms: 0,
                    result_delay_ms: default_result_delay_ms(),
                    name: "中国工商银行（模拟）".into(),
                    callback_token: None,
                    signing_key_file: None,
                    faults: FaultConfig::default(),
                },
                AgencySpec {
                    id: fixtures::BANK_B.into(),
                    dialect: MockDialect::BankJson,
                    listen: None,
                    encoding: None,
                    latency_ms: 0,
                    result_delay_ms: default_result_delay_ms(),
                    name: "中国建设银行（模拟）".into(),
                    callback_token: None,
                    signing_key_file: None,
                    faults: FaultConfig::default(),
                },
                AgencySpec {
                    id: fixtures::REGISTRY_X.into(),
                    dialect: MockDialect::RegistryJson,
                    listen: None,
                    encoding: None,
                    latency_ms: 0,
                    result_delay_ms: default_result_delay_ms(),
                    name: "天水市不动产登记中心（模拟）".into(),
                    callback_token: Some(DEMO_CALLBACK_TOKEN.into()),
                    signing_key_file: None,
                    faults: FaultConfig::default(),
                },
            ],
        }
    }

    /// Adds bank-d, the `iso-bank-xml` bank (中国农业银行（模拟）, no listen
    /// address), after the agencies already there: the standard fleet plus
    /// the fourth dialect is `MockConfig::standard().with_iso_bank()`.
    /// [`MockConfig::standard`] itself stays the three agencies of the first
    /// release.
    #[must_use]
    pub fn with_iso_bank(mut self) -> Self {
        self.agencies.push(AgencySpec {
            id: fixtures::BANK_D.into(),
            dialect: MockDialect::IsoBankXml,
            listen: None,
            encoding: None,
            latency_ms: 0,
            result_delay_ms: default_result_delay_ms(),
            name: "中国农业银行（模拟）".into(),
            callback_token: None,
            signing_key_file: None,
            faults: FaultConfig::default(),
        });
        self
    }

    /// Adds the five agencies of the further kinds of asset, as the shipped
    /// file has them (no listen addresses), after the agencies already
    /// there: vehicle-v, securities-s, payment-p (its key read from
    /// `payment_signing_key_file`), fund-f (pushing with
    /// [`DEMO_FUND_CALLBACK_TOKEN`]) and market-m (GBK).
    #[must_use]
    pub fn with_further_kinds(mut self, payment_signing_key_file: PathBuf) -> Self {
        let spec = |id: &str, dialect: MockDialect, name: &str| AgencySpec {
            id: id.into(),
            dialect,
            listen: None,
            encoding: None,
            latency_ms: 0,
            result_delay_ms: default_result_delay_ms(),
            name: name.into(),
            callback_token: None,
            signing_key_file: None,
            faults: FaultConfig::default(),
        };
        self.agencies.extend([
            spec(
                fixtures::VEHICLE_V,
                MockDialect::VehicleSoap,
                "天水市公安局交通警察支队车辆管理所（模拟）",
            ),
            spec(
                fixtures::SECURITIES_S,
                MockDialect::SecuritiesXml,
                "中国证券登记结算有限责任公司（模拟）",
            ),
            AgencySpec {
                signing_key_file: Some(payment_signing_key_file),
                ..spec(
                    fixtures::PAYMENT_P,
                    MockDialect::PaymentJson,
                    "某支付机构（模拟）",
                )
            },
            AgencySpec {
                callback_token: Some(DEMO_FUND_CALLBACK_TOKEN.into()),
                ..spec(
                    fixtures::FUND_F,
                    MockDialect::FundCallback,
                    "天水市住房公积金管理中心（模拟）",
                )
            },
            AgencySpec {
                encoding: Some("GBK".into()),
                ..spec(
                    fixtures::MARKET_M,
                    MockDialect::MarketGbkXml,
                    "天水市市场监督管理局（模拟）",
                )
            },
        ]);
        self
    }

    /// Checks the whole configuration and reports every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.population > MAX_POPULATION {
            problems.push(format!(
                "population {} exceeds the maximum of {MAX_POPULATION}",
                self.population
            ));
        }
        if self.agencies.is_empty() {
            problems.push("no agencies configured".into());
        }
        let mut ids = HashSet::new();
        for spec in &self.agencies {
            let id = &spec.id;
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                problems.push(format!(
                    "agency id {id:?} must be non-empty ASCII letters, digits and '-'"
                ));
            }
            if !ids.insert(id.as_str()) {
                problems.push(format!("agency id {id:?} appears twice"));
            }
            if let Some(label) = &spec.encoding {
                if !spec.dialect.takes_encoding() {
                    problems.push(format!(
                        "agency {id}: encoding is only for court-bank-xml and market-gbk-xml, not {}",
                        spec.dialect.as_str()
                    ));
                }
                match encoding_rs::Encoding::for_label(label.as_bytes()) {
                    // The declaration is sniffed as ASCII, so only encodings
                    // that keep ASCII as ASCII can work.
                    Some(enc) if enc.is_ascii_compatible() => {}
                    _ => problems.push(format!(
                        "agency {id}: encoding {label:?} is unknown or not ASCII-compatible"
                    )),
                }
            }
            if let Some(token) = &spec.callback_token {
                if !spec.dialect.pushes_results() {
                    problems.push(format!(
                        "agency {id}: callback_token is only for registry-json and fund-callback, not {}",
                        spec.dialect.as_str()
                    ));
                }
                // It goes into an HTTP header as `Bearer <token>`.
                if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    problems.push(format!(
                        "agency {id}: callback_token must be non-empty printable ASCII without blanks"
                    ));
                }
            }
            match (&spec.signing_key_file, spec.dialect) {
                (None, MockDialect::PaymentJson) => problems.push(format!(
                    "agency {id}: payment-json signs its messages: signing_key_file is required"
                )),
                (Some(_), dialect) if dialect != MockDialect::PaymentJson => {
                    problems.push(format!(
                        "agency {id}: signing_key_file is only for payment-json, not {}",
                        dialect.as_str()
                    ));
                }
                _ => {}
            }
            for problem in spec.faults.problems() {
                problems.push(format!("agency {id}: faults: {problem}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

impl AgencySpec {
    /// The signing key, read from `signing_key_file` (whitespace around it
    /// trimmed); `None` when none is configured.
    pub fn signing_key(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(file) = &self.signing_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file).with_context(|| {
            format!(
                "agency {}: cannot read its signing key file {}",
                self.id,
                file.display()
            )
        })?;
        let key = text.trim();
        anyhow::ensure!(
            !key.is_empty(),
            "agency {}: the signing key file {} is empty",
            self.id,
            file.display()
        );
        Ok(Some(key.as_bytes().to_vec()))
    }

    /// The display name, or the id when none was configured.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}
