//! Whether zstd pays on model bytes between LAN peers: prints figures, asserts nothing.
//!
//! ```text
//! cargo run --release -p model-cache --example zstd_measure -- [--size 64MiB] [--levels 1,3]
//! ```
//!
//! Needs the `zstd` command (Debian's `zstd` package): its benchmark mode (`zstd -b`) measures
//! the ratio and the single-core compression and decompression speeds of each sample, here, in
//! one run. The samples, `--size` bytes each, and where they come from:
//!
//! - `emulator-gguf-q4_k_m`, `emulator-gguf-q8_0`: files of the hub emulator's generator
//!   (a real GGUF header, tensor data from its pseudo-random generator). They say what the
//!   tests' data compress to, not what a real model's do.
//! - `normal-f16`, `normal-bf16`: synthetic tensors, N(0, 0.02) as initialised transformer
//!   weights are, in F16 and BF16 (this engine's own `convert::numeric`).
//! - `…-planes`: the same bytes split into byte planes (every high byte, then every low byte),
//!   the transform that lets a compressor see the exponent bytes together.
//! - `normal-q8_0`: the normal F32 values quantized to Q8_0 by the engine's own quantizer.
//!
//! For each sample and level it prints the ratio, the speeds, and the time to move 1 GiB over a
//! 100 Mbit/s, 1 Gbit/s and 10 Gbit/s link, compressed (compression, transfer and decompression
//! pipelined: the slowest of the three) as a fraction of the time uncompressed.

use std::path::{Path, PathBuf};
use std::process::Command;

use hub_emulator::generate::{GgufSpec, LlamaFileType};
use model_cache::convert::numeric::{f32_to_f16, quantize_q8_0};

/// Links, in bytes per second.
const LINKS: [(&str, f64); 3] = [
    ("100 Mbit/s", 12.5e6),
    ("1 Gbit/s", 125e6),
    ("10 Gbit/s", 1250e6),
];

fn main() {
    let mut size: usize = 64 << 20;
    let mut levels = vec![1, 3];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--size" => {
                size = hub_emulator::faults::parse_size(&value).expect("a size like 64MiB") as usize
            }
            "--levels" => {
                levels = value
                    .split(',')
                    .map(|l| l.parse().expect("a level"))
                    .collect()
            }
            other => panic!("unknown argument `{other}`"),
        }
        i += 2;
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let samples = samples(dir.path(), size);
    println!(
        "{:<24} {:>5} {:>7} {:>10} {:>10}   {}",
        "sample",
        "level",
        "ratio",
        "comp MB/s",
        "dec MB/s",
        LINKS
            .iter()
            .map(|(name, _)| format!("{name:>11}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (name, path) in &samples {
        for &level in &levels {
            let Some((ratio, compress, decompress)) = bench(path, level) else {
                eprintln!("`zstd -b{level}` gave no figures for {name}");
                continue;
            };
            let times: Vec<String> = LINKS
                .iter()
                .map(|(_, link)| {
                    let raw = 1.0 / link;
                    let zstd = (1.0 / (compress * 1e6))
                        .max(1.0 / (ratio * link))
                        .max(1.0 / (decompress * 1e6));
                    format!("{:>10.2}x", zstd / raw)
                })
                .collect();
            println!(
                "{name:<24} {level:>5} {ratio:>7.3} {compress:>10.0} {decompress:>10.0}   {}",
                times.join(" ")
            );
        }
    }
    println!(
        "(time with zstd / time without, per link: below 1.00x zstd saves time; one core each side)"
    );
}

/// Writes the samples into `dir`.
fn samples(dir: &Path, size: usize) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, &bytes[..bytes.len().min(size)]).expect("write a sample");
        out.push((name.to_string(), path));
    };
    for (name, kind) in [
        ("emulator-gguf-q4_k_m", LlamaFileType::Q4_K_M),
        ("emulator-gguf-q8_0", LlamaFileType::Q8_0),
    ] {
        let file = GgufSpec::llama("Sample", kind, size as u64).build();
        write(name, &file.to_vec());
    }
    let values = normal_values(size / 2, 0.02, 7);
    let f16: Vec<u8> = values
        .iter()
        .flat_map(|v| f32_to_f16(*v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = values
        .iter()
        .flat_map(|v| f32_to_bf16(*v).to_le_bytes())
        .collect();
    write("normal-f16", &f16);
    write("normal-f16-planes", &planes(&f16));
    write("normal-bf16", &bf16);
    write("normal-bf16-planes", &planes(&bf16));
    let mut q8 = Vec::new();
    let values = normal_values(size, 0.02, 11);
    for block in values.chunks(32) {
        if block.len() == 32 {
            quantize_q8_0(block, &mut q8);
        }
    }
    write("normal-q8_0", &q8);
    out
}

/// `count` values from N(0, `sigma`²) (Box–Muller over a splitmix64 stream).
fn normal_values(count: usize, sigma: f32, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let (u, v) = (next().max(1e-300), next());
        let radius = (-2.0 * u.ln()).sqrt();
        let angle = std::f64::consts::TAU * v;
        out.push((radius * angle.cos()) as f32 * sigma);
        out.push((radius * angle.sin()) as f32 * sigma);
    }
    out.truncate(count);
    out
}

/// BF16 of an F32, rounded to nearest even.
fn f32_to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// Two-byte values split into two planes: every high byte, then every low byte.
fn planes(bytes: &[u8]) -> Vec<u8> {
    let high = bytes.chunks_exact(2).map(|p| p[1]);
    let low = bytes.chunks_exact(2).map(|p| p[0]);
    high.chain(low).collect()
}

/// `zstd -b<level>` on one file: the ratio and the compression and decompression MB/s.
fn bench(path: &Path, level: i32) -> Option<(f64, f64, f64)> {
    let output = Command::new("zstd")
        .arg(format!("-b{level}"))
        .arg("-i2")
        .arg(path)
        .output()
        .expect("the `zstd` command (apt-get install zstd)");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    // The last progress line of the run: `name : 67108864 -> 67110000 (x1.000), 2100.3 MB/s, 9000.5 MB/s`.
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.contains("(x") && l.matches("MB/s").count() == 2)?;
    let ratio: f64 = line.split("(x").nth(1)?.split(')').next()?.parse().ok()?;
    let speeds: Vec<f64> = line
        .split(',')
        .skip(1)
        .filter_map(|part| part.trim().strip_suffix("MB/s")?.trim().parse().ok())
        .collect();
    Some((ratio, *speeds.first()?, *speeds.get(1)?))
}
