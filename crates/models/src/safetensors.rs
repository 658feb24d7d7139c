//! Hugging Face safetensors: an 8-byte little-endian header length, a JSON header naming each
//! tensor's dtype, shape and byte range, then the data. Read from bytes (the page has a file or a
//! fetch), checked against every way a file can be truncated or lie.

use crate::error::{ModelError, Result};
use crate::weights::{HostTensor, Weights};

const MAX_HEADER: u64 = 100 * 1024 * 1024;

fn bad(reason: impl Into<String>) -> ModelError {
    ModelError::Format {
        format: "safetensors",
        reason: reason.into(),
    }
}

/// Parse every float tensor of a safetensors file into host f32.
pub fn read_safetensors(bytes: &[u8]) -> Result<Weights> {
    if bytes.len() < 8 {
        return Err(ModelError::Truncated(
            "a safetensors file starts with an 8-byte header length".into(),
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| bad("header length"))?);
    if n > MAX_HEADER {
        return Err(bad(format!("header of {n} bytes is implausibly large")));
    }
    let end = 8usize
        .checked_add(n as usize)
        .ok_or_else(|| bad("header length overflows"))?;
    if end > bytes.len() {
        return Err(ModelError::Truncated(format!(
            "the header says {n} bytes but the file has {}",
            bytes.len()
        )));
    }
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| bad(format!("header JSON: {e}")))?;
    let data = &bytes[end..];
    let mut out = Weights::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(format!("{name}: no dtype")))?;
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad(format!("{name}: no shape")))?
            .iter()
            .map(|x| x.as_u64().map(|v| v as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("{name}: bad shape")))?;
        let offs: Vec<usize> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad(format!("{name}: no data_offsets")))?
            .iter()
            .map(|x| x.as_u64().map(|v| v as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("{name}: bad data_offsets")))?;
        let [a, b] = offs[..] else {
            return Err(bad(format!("{name}: data_offsets must have two entries")));
        };
        if a > b || b > data.len() {
            return Err(ModelError::Truncated(format!(
                "tensor {name:?} needs bytes {a}..{b} but the data section has {}",
                data.len()
            )));
        }
        let raw = &data[a..b];
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("{name}: shape overflows")))?;
        let width = match dtype {
            "F32" => 4,
            "F16" | "BF16" => 2,
            "F64" => 8,
            // Integer buffers (e.g. GPT-2's attention-mask "bias") are not weights.
            "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL" => continue,
            other => {
                return Err(ModelError::UnsupportedDtype(format!(
                    "{other} (tensor {name})"
                )));
            }
        };
        if raw.len() != numel * width {
            return Err(bad(format!(
                "{name}: {} bytes for {numel} {dtype} values",
                raw.len()
            )));
        }
        let values: Vec<f32> = match dtype {
            "F32" => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F16" => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            "BF16" => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => raw
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        };
        out.insert(
            name,
            HostTensor {
                shape,
                data: values,
            },
        );
    }
    Ok(out)
}

/// Write tensors as a safetensors file (F32, keys in the given order, 8-byte aligned header).
pub fn write_safetensors(tensors: &[(String, &HostTensor)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, t) in tensors {
        let len = t.data.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + len] }),
        );
        offset += len;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    // The format asks for the data to start 8-byte aligned; pad the header with spaces.
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, t) in tensors {
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}
