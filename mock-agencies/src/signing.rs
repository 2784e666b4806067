//! Signed JSON messages as a payment platform signs them (the
//! `payment-json` dialect's `[signing]`): the lower-case hex HMAC-SHA256,
//! under the shared key, of the canonical string of the message's
//! top-level fields but the signature (`sign`): sorted by name, each
//! `name=value`, joined by `&`; a string as it is, a number or yes/no as
//! JSON writes it, an array or object as compact JSON with its keys sorted
//! at every level; null and empty-text fields left out. Written here from
//! the description in docs/dialects.md, never with the gateway's code, so
//! that the two check each other.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The field the signature travels in.
pub(crate) const SIGN: &str = "sign";

/// The canonical string of `object`'s fields but the signature.
pub(crate) fn canonical(object: &Map<String, Value>) -> String {
    let mut fields: Vec<(&String, &Value)> = object
        .iter()
        .filter(|(name, value)| {
            name.as_str() != SIGN && !value.is_null() && value.as_str() != Some("")
        })
        .collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = fields
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => format!("{name}={text}"),
            other => format!("{name}={}", sorted_json(other)),
        })
        .collect();
    parts.join("&")
}

/// Compact JSON with every object's keys sorted (whatever order the map
/// keeps them in).
fn sorted_json(value: &Value) -> String {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), sorted_json(&object[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(sorted_json).collect();
            format!("[{}]", items.join(","))
        }
        scalar => scalar.to_string(),
    }
}

fn mac(key: &[u8], object: &Map<String, Value>) -> HmacSha256 {
    // HMAC takes a key of any length: this never fails.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(canonical(object).as_bytes());
    mac
}

/// The signature of `object` under `key`.
pub(crate) fn signature(key: &[u8], object: &Map<String, Value>) -> String {
    hex::encode(mac(key, object).finalize().into_bytes())
}

/// Why a request's signature is not accepted, if it is not: missing, not
/// hex, or not the one `key` gives (compared in constant time).
pub(crate) fn check(key: &[u8], object: &Map<String, Value>) -> Result<(), &'static str> {
    let given = match object.get(SIGN) {
        Some(Value::String(text)) if !text.is_empty() => text,
        _ => return Err("缺少签名"),
    };
    let given = hex::decode(given.trim()).map_err(|_| "签名格式错误")?;
    mac(key, object)
        .verify_slice(&given)
        .map_err(|_| "签名验证失败")
}

/// Signs a reply: adds its timestamp (unix seconds) and a fresh nonce,
/// then the signature over everything.
pub(crate) fn sign_reply(key: &[u8], mut object: Map<String, Value>) -> Value {
    object.remove(SIGN);
    object.insert("timestamp".into(), chrono::Utc::now().timestamp().into());
    object.insert(
        "nonce".into(),
        hex::encode(rand::random::<[u8; 16]>()).into(),
    );
    let sign = signature(key, &object);
    object.insert(SIGN.into(), sign.into());
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payment-json conformance pack's key and messages, signed there by
    /// an independent computation.
    const PACK_KEY: &[u8] = b"conformance-test-key-payment";

    fn pack(file: &str) -> Map<String, Value> {
        let path = format!(
            "{}/../config/conformance/payment-json/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("the pack is there");
        match serde_json::from_str(&text).expect("JSON") {
            Value::Object(object) => object,
            _ => panic!("{file} is not an object"),
        }
    }

    #[test]
    fn the_packs_signed_messages_verify_and_the_altered_ones_do_not() {
        for file in ["found.request.json", "found.reply.json", "none.reply.json"] {
            let message = pack(file);
            assert_eq!(check(PACK_KEY, &message), Ok(()), "{file}");
            assert_eq!(
                signature(PACK_KEY, &message),
                message[SIGN].as_str().unwrap_or_default(),
                "{file}"
            );
        }
        assert_eq!(
            check(PACK_KEY, &pack("tampered.reply.json")),
            Err("签名验证失败")
        );
        assert_eq!(
            check(PACK_KEY, &pack("unsigned.reply.json")),
            Err("缺少签名")
        );
        assert_eq!(
            check(b"another key", &pack("found.request.json")),
            Err("签名验证失败")
        );
    }

    #[test]
    fn the_canonical_string_sorts_and_leaves_out_null_and_empty_text() {
        let object = match serde_json::json!({
            "req_no": "Q1", "id_no": "3604", "timestamp": 1_764_230_400, "nonce": "9f2c",
            "sign": "x", "empty": "", "none": null, "list": [{"b": 1, "a": true}], "zero": []
        }) {
            Value::Object(object) => object,
            _ => unreachable!(),
        };
        assert_eq!(
            canonical(&object),
            r#"id_no=3604&list=[{"a":true,"b":1}]&nonce=9f2c&req_no=Q1&timestamp=1764230400&zero=[]"#
        );
    }

    #[test]
    fn a_signed_reply_verifies() {
        let mut reply = Map::new();
        reply.insert("req_no".into(), "Q1".into());
        let signed = sign_reply(b"k", reply);
        let object = signed.as_object().cloned().unwrap_or_default();
        assert_eq!(check(b"k", &object), Ok(()));
        assert_eq!(object["nonce"].as_str().map(str::len), Some(32));
    }
}
