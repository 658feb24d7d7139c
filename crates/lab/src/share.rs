//! Specs in URLs: JSON, percent-encoded, after `spec=` in the page's hash
//! (`#/circuits?spec=...`). The hash never reaches a server, so a share link stays private to
//! whoever holds it. Decoding checks everything: a malformed link gives a message, not a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::LabError;

/// Percent-encode a spec's JSON for a URL.
pub fn encode<T: Serialize>(spec: &T) -> String {
    let json = serde_json::to_string(spec).unwrap_or_default();
    let mut out = String::with_capacity(json.len() * 2);
    for b in json.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode [`encode`]'s output (any percent-encoding is accepted) as a `T`.
pub fn decode<T: DeserializeOwned>(s: &str) -> Result<T, LabError> {
    serde_json::from_str(&decode_text(s)?).map_err(|e| {
        LabError::Spec(format!(
            "the share link does not hold a valid experiment: {e}"
        ))
    })
}

/// Undo the percent-encoding (and `+` for space) of a link's `spec=` value.
pub fn decode_text(s: &str) -> Result<String, LabError> {
    let bytes = s.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        LabError::Spec("the share link is damaged (bad % escape)".into())
                    })?;
                raw.push(hex);
                i += 3;
            }
            b'+' => {
                raw.push(b' ');
                i += 1;
            }
            b => {
                raw.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(raw)
        .map_err(|_| LabError::Spec("the share link is damaged (not UTF-8 text)".into()))
}

/// The `spec=` value of a hash such as `#/circuits?spec=...&embed=1`.
pub fn spec_param(hash: &str) -> Option<&str> {
    let query = hash.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix("spec="))
}
