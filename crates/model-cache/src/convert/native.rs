//! The native converter's write loop: one pass over the planned tensors, each mapped, converted
//! row by row into a bounded buffer, written, and unmapped.

use std::io::Write;
use std::path::Path;

use super::checkpoint::{Checkpoint, Dtype, SourceTensor, TensorData};
use super::gguf::{self, GgmlType};
use super::llama::{DataSource, Plan};
use super::numeric::{bf16_to_f32, f16_to_f32, f32_to_f16, quantize_q8_0};
use super::{ConvertError, Monitor};

/// Output bytes gathered before they are written and progress is reported.
const FLUSH_BYTES: usize = 4 << 20;

fn element(bytes: &[u8], dtype: Dtype, i: usize) -> f32 {
    match dtype {
        Dtype::F32 => f32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes")),
        Dtype::F16 => f16_to_f32(u16::from_le_bytes([bytes[i * 2], bytes[i * 2 + 1]])),
        Dtype::BF16 => bf16_to_f32(u16::from_le_bytes([bytes[i * 2], bytes[i * 2 + 1]])),
    }
}

/// Converts one source row into `out`.
fn convert_row(
    row: &[u8],
    dtype: Dtype,
    kind: GgmlType,
    scratch: &mut Vec<f32>,
    out: &mut Vec<u8>,
) {
    let n = row.len() / dtype.size();
    match (kind, dtype) {
        (GgmlType::F16, Dtype::F16) => out.extend_from_slice(row),
        (GgmlType::F32, Dtype::F32) => out.extend_from_slice(row),
        (GgmlType::F16, _) => {
            for i in 0..n {
                out.extend_from_slice(&f32_to_f16(element(row, dtype, i)).to_le_bytes());
            }
        }
        (GgmlType::F32, _) => {
            for i in 0..n {
                out.extend_from_slice(&element(row, dtype, i).to_le_bytes());
            }
        }
        (GgmlType::Q8_0, _) => {
            scratch.clear();
            scratch.extend((0..n).map(|i| element(row, dtype, i)));
            quantize_q8_0(scratch, out);
        }
    }
}

/// The source row read for output row `r` of a tensor whose rows are permuted for `heads` heads
/// (`LlamaModel.permute`: `reshape(heads, 2, rows/heads/2, …).swapaxes(1, 2)`).
fn permuted_row(r: u64, rows: u64, heads: u64) -> u64 {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let (h, within) = (r / head_dim, r % head_dim);
    let (i, j) = (within / 2, within % 2);
    h * head_dim + j * half + i
}

fn write_tensor(
    tensor: &SourceTensor,
    permute: Option<u64>,
    kind: GgmlType,
    out: &mut impl Write,
    path: &Path,
    monitor: &mut Monitor<'_>,
) -> Result<u64, ConvertError> {
    let data = TensorData::map(tensor)?;
    let bytes = data.bytes();
    let (rows, row_len) = match tensor.shape.as_slice() {
        [] => (1, 1),
        [n] if permute.is_some() => (*n, 1),
        [n] => (1, *n),
        shape => (
            shape[..shape.len() - 1].iter().product(),
            *shape.last().expect("a dimension"),
        ),
    };
    let row_bytes = row_len as usize * tensor.dtype.size();
    let mut buffer = Vec::with_capacity(FLUSH_BYTES + row_bytes * 2);
    let mut scratch = Vec::new();
    let mut written = 0u64;
    for r in 0..rows {
        let src = match permute {
            Some(heads) => permuted_row(r, rows, heads),
            None => r,
        } as usize;
        let row = &bytes[src * row_bytes..(src + 1) * row_bytes];
        convert_row(row, tensor.dtype, kind, &mut scratch, &mut buffer);
        if buffer.len() >= FLUSH_BYTES {
            out.write_all(&buffer)
                .map_err(|e| ConvertError::io("write", path, e))?;
            written += buffer.len() as u64;
            monitor.advance(buffer.len() as u64)?;
            buffer.clear();
        }
    }
    out.write_all(&buffer)
        .map_err(|e| ConvertError::io("write", path, e))?;
    written += buffer.len() as u64;
    monitor.advance(buffer.len() as u64)?;
    Ok(written)
}

/// Writes the GGUF file for `plan` to `out`: header, then every tensor padded to the alignment.
pub fn write(
    checkpoint: &Checkpoint,
    plan: &Plan,
    out: &mut impl Write,
    path: &Path,
    monitor: &mut Monitor<'_>,
) -> Result<(), ConvertError> {
    let infos: Vec<gguf::TensorInfo> = plan.tensors.iter().map(|t| t.info.clone()).collect();
    let header = gguf::header(&plan.metadata, &infos);
    out.write_all(&header)
        .map_err(|e| ConvertError::io("write", path, e))?;
    monitor.advance(header.len() as u64)?;
    for planned in &plan.tensors {
        let expected = planned.info.bytes();
        let written = match &planned.source {
            DataSource::Values(values) => {
                let mut buffer = Vec::with_capacity(values.len() * 4);
                for v in values {
                    buffer.extend_from_slice(&v.to_le_bytes());
                }
                out.write_all(&buffer)
                    .map_err(|e| ConvertError::io("write", path, e))?;
                monitor.advance(buffer.len() as u64)?;
                buffer.len() as u64
            }
            DataSource::Tensor { index, permute } => write_tensor(
                &checkpoint.tensors[*index],
                *permute,
                planned.info.kind,
                out,
                path,
                monitor,
            )?,
        };
        debug_assert_eq!(written, expected, "{}", planned.info.name);
        gguf::write_tensor_padding(out, written).map_err(|e| ConvertError::io("write", path, e))?;
        monitor.advance((gguf::ALIGNMENT - written % gguf::ALIGNMENT) % gguf::ALIGNMENT)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_permuted_as_llama_cpp_expects() {
        // 2 heads of 4 rows: each head's rows [0 1 2 3] become [0 2 1 3].
        let order: Vec<u64> = (0..8).map(|r| permuted_row(r, 8, 2)).collect();
        assert_eq!(order, [0, 2, 1, 3, 4, 6, 5, 7]);
    }
}
