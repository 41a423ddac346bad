//! safetensors builder: `u64` LE header length, JSON header, generated tensor bytes.

use std::collections::BTreeMap;

use super::VirtualFile;

/// One tensor of a safetensors file.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetensorsTensor {
    /// Tensor name.
    pub name: String,
    /// dtype as written in the header (`F32`, `BF16`, `F16`, `I64`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
}

impl SafetensorsTensor {
    /// A tensor.
    pub fn new(name: impl Into<String>, dtype: &str, shape: &[u64]) -> Self {
        Self {
            name: name.into(),
            dtype: dtype.to_string(),
            shape: shape.to_vec(),
        }
    }

    /// Bytes per element of the dtype (sub-byte float types round up to one byte each).
    pub fn dtype_bytes(dtype: &str) -> u64 {
        match dtype {
            "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ"
            | "F8_E5M2FNUZ" | "F4" | "F6_E2M3" | "F6_E3M2" => 1,
            "I16" | "U16" | "F16" | "BF16" => 2,
            "I32" | "U32" | "F32" => 4,
            "I64" | "U64" | "F64" | "C64" => 8,
            _ => 4,
        }
    }

    /// Data size in bytes.
    pub fn data_bytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * Self::dtype_bytes(&self.dtype)
    }
}

/// A safetensors file to generate.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SafetensorsSpec {
    /// Tensors in data order.
    pub tensors: Vec<SafetensorsTensor>,
    /// `__metadata__` (string to string).
    pub metadata: BTreeMap<String, String>,
    /// Seed of the generated tensor data.
    pub seed: u64,
}

impl SafetensorsSpec {
    /// A small transformer checkpoint with about `approx_size` bytes of BF16 weights in
    /// `layers` layers starting at layer `first_layer` (so shards can continue each other).
    pub fn transformer(first_layer: u32, layers: u32, approx_size: u64, seed: u64) -> Self {
        let hidden: u64 = 256;
        let per_layer = approx_size / u64::from(layers.max(1));
        let rows = (per_layer / (4 * hidden * 2)).max(1);
        let mut spec = Self {
            seed,
            ..Self::default()
        };
        spec.metadata.insert("format".into(), "pt".into());
        for l in first_layer..first_layer + layers {
            for part in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                spec.tensors.push(SafetensorsTensor::new(
                    format!("model.layers.{l}.self_attn.{part}.weight"),
                    "BF16",
                    &[rows, hidden],
                ));
            }
            spec.tensors.push(SafetensorsTensor::new(
                format!("model.layers.{l}.input_layernorm.weight"),
                "F32",
                &[hidden],
            ));
        }
        spec
    }

    /// The header bytes (length prefix, JSON padded with spaces to 8 bytes) and the data size.
    pub fn header(&self) -> (Vec<u8>, u64) {
        let mut map = serde_json::Map::new();
        if !self.metadata.is_empty() {
            map.insert(
                "__metadata__".into(),
                serde_json::to_value(&self.metadata).unwrap_or_default(),
            );
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            let end = offset + t.data_bytes();
            map.insert(
                t.name.clone(),
                serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        let mut json = serde_json::to_vec(&serde_json::Value::Object(map)).unwrap_or_default();
        let padded = (8 + json.len()).next_multiple_of(8) - 8;
        json.resize(padded, b' ');
        let mut out = Vec::with_capacity(8 + json.len());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        (out, offset)
    }

    /// Total bytes of tensor data (what an index's `total_size` counts).
    pub fn data_size(&self) -> u64 {
        self.tensors.iter().map(SafetensorsTensor::data_bytes).sum()
    }

    /// Builds the file.
    pub fn build(&self) -> VirtualFile {
        let (header, data) = self.header();
        let size = header.len() as u64 + data;
        VirtualFile::new(header, size, self.seed)
    }
}

/// `model.safetensors.index.json` for shards given as `(file name, spec)`.
pub fn safetensors_index(shards: &[(String, &SafetensorsSpec)]) -> String {
    let mut weight_map = BTreeMap::new();
    let mut total = 0u64;
    for (file, spec) in shards {
        total += spec.data_size();
        for t in &spec.tensors {
            weight_map.insert(t.name.clone(), file.clone());
        }
    }
    let v = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_parses() {
        let spec = SafetensorsSpec::transformer(0, 2, 100_000, 7);
        let f = spec.build();
        let bytes = f.to_vec();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + n) % 8, 0);
        let v: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let t = &v["model.layers.0.self_attn.q_proj.weight"];
        assert_eq!(t["dtype"], "BF16");
        assert_eq!(v["__metadata__"]["format"], "pt");
        assert_eq!(f.size(), (8 + n) as u64 + spec.data_size());
    }
}
