//! Signed JSON messages: an agency that signs every request and reply
//! (HMAC-SHA256 over a canonical string of the message's fields, with a
//! timestamp and a nonce) declares `[signing]` in its dialect file; the key
//! comes from the agency file (`auth.signing_key`), never from the dialect.
//!
//! The canonical string of a JSON object: its top-level fields but the
//! signature, sorted by name, each written `name=value` and joined by `&`.
//! A string is written as it is; a number or a yes/no as JSON writes it; an
//! array or object as compact JSON with its keys sorted at every level.
//! Fields that are null or empty text are left out. The signature is the
//! lower-case hex of the HMAC-SHA256 of that string under the key.
//!
//! A request gets its timestamp (unix seconds) and a fresh nonce before it
//! is signed; a reply whose signature is missing or does not verify is
//! refused (a bad reply), so an answer altered on the way is never used.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `[signing]` in a dialect file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSpec {
    /// Only `hmac-sha256`.
    pub algorithm: String,
    /// The field that carries the signature, in requests and replies.
    #[serde(default = "sign")]
    pub field: String,
    /// The field a request's timestamp (unix seconds) goes in.
    #[serde(default = "timestamp")]
    pub timestamp_field: String,
    /// The field a request's nonce (32 hex digits, random) goes in.
    #[serde(default = "nonce")]
    pub nonce_field: String,
}

fn sign() -> String {
    "sign".into()
}
fn timestamp() -> String {
    "timestamp".into()
}
fn nonce() -> String {
    "nonce".into()
}

/// A dialect's signing rule, checked.
#[derive(Debug, Clone)]
pub struct Signing {
    field: String,
    timestamp_field: String,
    nonce_field: String,
}

impl Signing {
    pub fn compile(spec: &SigningSpec, json: bool, errors: &mut Vec<String>) -> Option<Self> {
        let before = errors.len();
        if spec.algorithm != "hmac-sha256" {
            errors.push(format!(
                "signing.algorithm {:?} is not supported (hmac-sha256)",
                spec.algorithm
            ));
        }
        if !json {
            errors.push("signing applies to JSON dialects only".into());
        }
        let fields = [&spec.field, &spec.timestamp_field, &spec.nonce_field];
        if fields.iter().any(|f| f.is_empty()) {
            errors.push("signing: the field names must not be empty".into());
        }
        if fields[0] == fields[1] || fields[0] == fields[2] || fields[1] == fields[2] {
            errors.push(
                "signing: the signature, timestamp and nonce need fields of their own".into(),
            );
        }
        (errors.len() == before).then(|| Self {
            field: spec.field.clone(),
            timestamp_field: spec.timestamp_field.clone(),
            nonce_field: spec.nonce_field.clone(),
        })
    }

    /// Adds the timestamp and nonce to a rendered JSON object and signs it.
    pub fn sign_body(
        &self,
        key: &[u8],
        body: &[u8],
        unix_seconds: i64,
        nonce: &str,
    ) -> Result<Vec<u8>, String> {
        let mut object = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err("a signed message must be a JSON object".into()),
            Err(e) => return Err(format!("the message is not JSON: {e}")),
        };
        object.insert(self.timestamp_field.clone(), unix_seconds.into());
        object.insert(self.nonce_field.clone(), nonce.into());
        object.remove(&self.field);
        let signature = signature(key, &canonical(&object, &self.field))?;
        object.insert(self.field.clone(), signature.into());
        serde_json::to_vec(&Value::Object(object)).map_err(|e| e.to_string())
    }

    /// Checks a reply's signature: Err says why it cannot be trusted.
    pub fn verify(&self, key: &[u8], reply: &Value) -> Result<(), String> {
        let Value::Object(object) = reply else {
            return Err("a signed reply must be a JSON object".into());
        };
        let given = match object.get(&self.field) {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => return Err(format!("the reply is not signed (no {:?})", self.field)),
        };
        let given = hex::decode(given.trim())
            .map_err(|_| format!("the reply's {:?} is not hex", self.field))?;
        let mut mac = HmacSha256::new_from_slice(key).map_err(|e| e.to_string())?;
        mac.update(canonical(object, &self.field).as_bytes());
        // Compared in constant time.
        mac.verify_slice(&given)
            .map_err(|_| "the reply's signature does not verify".to_owned())
    }
}

/// The lower-case hex HMAC-SHA256 of `text` under `key`.
pub fn signature(key: &[u8], text: &str) -> Result<String, String> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(text.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// The canonical string of an object's fields but `skip` (module docs).
pub fn canonical(object: &Map<String, Value>, skip: &str) -> String {
    let mut fields: Vec<(&String, &Value)> = object
        .iter()
        .filter(|(name, value)| {
            name.as_str() != skip && !value.is_null() && value.as_str() != Some("")
        })
        .collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        match value {
            Value::String(s) => out.push_str(s),
            other => write_sorted(other, &mut out),
        }
    }
    out
}

/// Compact JSON with object keys sorted at every level.
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(&object[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signing() -> Signing {
        let spec: SigningSpec = toml::from_str("algorithm = \"hmac-sha256\"").expect("spec");
        Signing::compile(&spec, true, &mut Vec::new()).expect("compiles")
    }

    #[test]
    fn the_canonical_string_sorts_fields_and_leaves_out_the_signature_and_empty_ones() {
        let object: Value = serde_json::json!({
            "timestamp": 1764230400, "req_no": "Q1", "nonce": "9f2c", "sign": "x",
            "memo": "", "gone": null, "id_no": "360426199101010071",
            "list": [{"b": 1, "a": "甲"}], "ok": true
        });
        let Value::Object(object) = object else {
            panic!("object")
        };
        assert_eq!(
            canonical(&object, "sign"),
            "id_no=360426199101010071&list=[{\"a\":\"甲\",\"b\":1}]&nonce=9f2c&ok=true&req_no=Q1&timestamp=1764230400"
        );
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let s = signing();
        let key = b"platform-test-key";
        let body = s
            .sign_body(
                key,
                br#"{"req_no": "Q1", "id_no": "360426199101010071"}"#,
                1764230400,
                "9f2c",
            )
            .expect("signed");
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["timestamp"], 1764230400);
        assert_eq!(value["nonce"], "9f2c");
        // The signature is HMAC-SHA256 over the canonical string.
        assert_eq!(
            value["sign"],
            signature(
                key,
                "id_no=360426199101010071&nonce=9f2c&req_no=Q1&timestamp=1764230400"
            )
            .expect("mac")
        );
        s.verify(key, &value).expect("verifies");
        let mut altered = value.clone();
        altered["id_no"] = "360426199101010072".into();
        assert!(s.verify(key, &altered).is_err());
        assert!(s.verify(b"another key", &value).is_err());
        let mut unsigned = value;
        unsigned.as_object_mut().expect("object").remove("sign");
        let why = s.verify(key, &unsigned).expect_err("unsigned");
        assert!(why.contains("not signed"), "{why}");
    }

    #[test]
    fn a_signing_rule_is_checked() {
        let mut errors = Vec::new();
        let spec: SigningSpec =
            toml::from_str("algorithm = \"md5\"\nfield = \"nonce\"").expect("spec");
        assert!(Signing::compile(&spec, false, &mut errors).is_none());
        let all = errors.join("\n");
        assert!(all.contains("md5"), "{all}");
        assert!(all.contains("JSON dialects only"), "{all}");
        assert!(all.contains("fields of their own"), "{all}");
    }
}
