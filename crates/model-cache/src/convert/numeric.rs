//! Number formats: IEEE half precision and bfloat16 to and from `f32`, and llama.cpp's Q8_0
//! blocks.
//!
//! Every conversion here gives the same bits as the reference tools: `f32 → f16` rounds to the
//! nearest even value as numpy's `astype(float16)` does (overflow to infinity, gradual
//! underflow), and [`quantize_q8_0`] computes scales and rounds exactly as gguf-py's
//! `quants.Q8_0` does, so a converted file can be compared with numpy byte for byte.

/// Elements per Q8_0 block.
pub const Q8_0_BLOCK: usize = 32;
/// Bytes per Q8_0 block: an f16 scale and 32 signed bytes.
pub const Q8_0_BLOCK_BYTES: usize = 2 + Q8_0_BLOCK;

/// `f32` to IEEE 754 binary16, round to nearest, ties to even.
pub fn f32_to_f16(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let man = x & 0x007f_ffff;
    if exp == 0xff {
        // Infinity or NaN (a NaN stays a quiet NaN).
        let nan = if man != 0 { 0x0200 } else { 0 };
        return sign | 0x7c00 | nan | (man >> 13) as u16;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal in half precision (or zero).
        if e < -10 {
            return sign;
        }
        let man = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = man >> shift;
        let rest = man & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round = rest > halfway || (rest == halfway && (half & 1) == 1);
        return sign | (half + round as u32) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    let round = rest > 0x1000 || (rest == 0x1000 && (half & 1) == 1);
    // A carry out of the mantissa moves into the exponent, up to infinity: still correct.
    sign | (half + round as u32) as u16
}

/// IEEE 754 binary16 to `f32` (exact).
pub fn f16_to_f32(half: u16) -> f32 {
    let sign = ((half & 0x8000) as u32) << 16;
    let exp = ((half >> 10) & 0x1f) as u32;
    let man = (half & 0x03ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // Subnormal: normalise it.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x0400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x03ff) << 13)
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// bfloat16 to `f32` (exact).
pub fn bf16_to_f32(value: u16) -> f32 {
    f32::from_bits((value as u32) << 16)
}

/// gguf-py's `np_roundf` (round half away from zero), step for step so the results match.
fn round_away(value: f32) -> f32 {
    let a = value.abs();
    let floored = a.floor();
    let b = floored + (2.0 * (a - floored)).floor();
    if value == 0.0 { 0.0 } else { b.copysign(value) }
}

/// Quantizes `values` (a whole number of 32-element blocks) to Q8_0, appending to `out`.
pub fn quantize_q8_0(values: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(values.len() % Q8_0_BLOCK, 0);
    for block in values.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        for v in block {
            out.push(round_away(v * id) as i8 as u8);
        }
    }
}

/// Q8_0 back to `f32` (for checks).
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / Q8_0_BLOCK_BYTES * Q8_0_BLOCK);
    for block in bytes.chunks_exact(Q8_0_BLOCK_BYTES) {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        out.extend(block[2..].iter().map(|&q| q as i8 as f32 * d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_rounds_to_nearest_even() {
        assert_eq!(f32_to_f16(0.0), 0);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00, "rounds up to infinity");
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7c00);
        assert_eq!(f32_to_f16(f32::NAN) & 0x7e00, 0x7e00);
        // Smallest subnormal, and half of it (a tie, to even: zero).
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001);
        assert_eq!(f32_to_f16(2.980_232_2e-8), 0x0000);
        // 1 + 2^-11 is halfway between 1 and the next half: ties to even (1).
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02);
        for bits in (0u16..0x7c00).step_by(7) {
            assert_eq!(
                f32_to_f16(f16_to_f32(bits)),
                bits,
                "round trip of {bits:#x}"
            );
        }
    }

    #[test]
    fn bfloat16_widens_exactly() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc000), -2.0);
    }

    #[test]
    fn q8_0_blocks_round_trip_within_a_step() {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 7.0).collect();
        let mut out = Vec::new();
        quantize_q8_0(&values, &mut out);
        assert_eq!(out.len(), 2 * Q8_0_BLOCK_BYTES);
        let back = dequantize_q8_0(&out);
        for (a, b) in values.iter().zip(&back) {
            // Half a step (the block maximum over 127), plus the scale's own F16 rounding.
            assert!(
                (a - b).abs() <= 4.5 / 127.0 / 2.0 + a.abs() * 1e-3,
                "{a} vs {b}"
            );
        }
        let zeros = vec![0f32; 32];
        let mut out = Vec::new();
        quantize_q8_0(&zeros, &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }
}
