//! The converter's benchmark, and the llama.cpp check's model maker.
//!
//! `convert_bench big [SIZE_MIB]` generates a Llama checkpoint of about SIZE_MIB (default 480)
//! in BF16, converts it to F16 and to Q8_0 in this process, and prints the time, the throughput
//! and the peak resident memory (`VmHWM`) next to the bound the converter keeps (256 MiB plus
//! the largest tensor).
//!
//! `convert_bench tiny OUT_DIR` writes small converted models (Llama with a byte-level BPE
//! tokenizer in F16 and Q8_0, Mistral with a SentencePiece-style tokenizer, Qwen2 with biases)
//! into OUT_DIR and prints their paths, for `scripts/llama-cpp-check.sh` to load in llama.cpp;
//! with `--keep-sources`, the source checkpoints stay in `OUT_DIR/sources/` (for
//! `scripts/compare-with-llama-cpp.sh`).

#[path = "../tests/convert_support/mod.rs"]
mod convert_support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use convert_support::{Dtype, ModelSpec};
use model_cache::RepoId;
use model_cache::convert::job::{self, ConvertContext};
use model_cache::convert::{Backend, ConvertRequest, Format, GgufType};

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn convert(hub: &Path, data: &Path, repo: &str, kind: GgufType, out: Option<PathBuf>) -> PathBuf {
    let context = ConvertContext {
        hub_cache: hub.to_path_buf(),
        data_dir: data.to_path_buf(),
        llama_cpp: None,
    };
    let request = ConvertRequest {
        to: Format::Gguf,
        gguf_type: kind,
        out,
        backend: Backend::Native,
    };
    let repo: RepoId = repo.parse().unwrap();
    let plan = job::plan(&context, &repo, "main", &request).unwrap();
    let provenance = job::run(&context, &plan, &request, &mut |_, _| {}, None).unwrap();
    for warning in &provenance.warnings {
        eprintln!("warning: {warning}");
    }
    provenance.output
}

fn big(size_mib: u64) {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    let source = dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let (tokenizer, tokens) =
        convert_support::byte_level_tokenizer(convert_support::LLAMA3_SPLIT, 200);
    let vocab = 8192u64.max(tokens as u64);
    let per_layer = (1024 * 1024 * 2 + 256 * 1024 * 2 + 3 * 2816 * 1024) * 2u64;
    let layers = ((size_mib << 20).saturating_sub(2 * vocab * 1024 * 2) / per_layer).max(1);
    let spec = ModelSpec {
        architecture: "LlamaForCausalLM",
        hidden: 1024,
        intermediate: 2816,
        layers,
        heads: 16,
        kv_heads: 4,
        vocab,
        dtype: Dtype::BF16,
        attention_bias: false,
        tied: false,
    };
    std::fs::write(
        source.join("config.json"),
        serde_json::to_vec(&spec.config()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        source.join("tokenizer.json"),
        serde_json::to_vec(&tokenizer).unwrap(),
    )
    .unwrap();
    let started = Instant::now();
    convert_support::write_big_bf16_safetensors(&source, &spec, 7);
    let bytes = std::fs::metadata(source.join("model.safetensors"))
        .unwrap()
        .len();
    println!(
        "checkpoint: {} layers, {:.0} MiB in BF16 (written in {:.1} s); largest tensor {:.0} MiB",
        layers,
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        (vocab * 1024 * 2) as f64 / 1048576.0
    );
    convert_support::place_in_cache(&hub, "bench/llama", &source);
    println!(
        "peak RSS before converting: {} MiB",
        vm_hwm_kib().unwrap_or(0) / 1024
    );
    for kind in [GgufType::F16, GgufType::Q8_0] {
        let started = Instant::now();
        let out = convert(&hub, &dir.path().join("data"), "bench/llama", kind, None);
        let seconds = started.elapsed().as_secs_f64();
        let size = std::fs::metadata(&out).unwrap().len();
        println!(
            "{}: {:.0} MiB written in {:.2} s ({:.0} MiB/s of source), peak RSS so far {} MiB (bound: 256 + {:.0} MiB)",
            kind.label(),
            size as f64 / 1048576.0,
            seconds,
            bytes as f64 / 1048576.0 / seconds,
            vm_hwm_kib().unwrap_or(0) / 1024,
            (vocab * 1024 * 2) as f64 / 1048576.0
        );
        std::fs::remove_file(out).unwrap();
    }
}

fn tiny(out: &Path, keep_sources: bool) {
    std::fs::create_dir_all(out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    let data = dir.path().join("data");
    let llama = || {
        let (tokenizer, tokens) =
            convert_support::byte_level_tokenizer(convert_support::LLAMA3_SPLIT, 200);
        let spec = ModelSpec {
            architecture: "LlamaForCausalLM",
            hidden: 64,
            intermediate: 128,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            vocab: tokens as u64,
            dtype: Dtype::BF16,
            attention_bias: false,
            tied: false,
        };
        (spec, tokenizer)
    };
    let mistral = || {
        let (tokenizer, tokens) = convert_support::sentencepiece_tokenizer(150);
        let (mut spec, _) = llama();
        spec.architecture = "MistralForCausalLM";
        spec.vocab = tokens as u64;
        spec.dtype = Dtype::F16;
        (spec, tokenizer)
    };
    let qwen2 = || {
        let (tokenizer, tokens) =
            convert_support::byte_level_tokenizer(convert_support::QWEN2_SPLIT, 200);
        let (mut spec, _) = llama();
        spec.architecture = "Qwen2ForCausalLM";
        spec.vocab = tokens as u64;
        spec.dtype = Dtype::F32;
        spec.attention_bias = true;
        spec.tied = true;
        (spec, tokenizer)
    };
    let models: [(&str, (ModelSpec, serde_json::Value), &[GgufType]); 3] = [
        ("tiny/llama", llama(), &[GgufType::F16, GgufType::Q8_0]),
        ("tiny/mistral", mistral(), &[GgufType::F16]),
        ("tiny/qwen2", qwen2(), &[GgufType::Q8_0]),
    ];
    for (i, (repo, (spec, tokenizer), kinds)) in models.iter().enumerate() {
        let source = dir.path().join(format!("source-{i}"));
        convert_support::write_checkpoint(&source, spec, tokenizer, i as u64 + 11);
        convert_support::place_in_cache(&hub, repo, &source);
        for kind in *kinds {
            let name = format!("{}-{}.gguf", repo.replace('/', "-"), kind.label());
            let path = convert(&hub, &data, repo, *kind, Some(out.join(name)));
            println!("{}", path.display());
        }
        if keep_sources {
            let kept = out.join("sources").join(repo.replace('/', "-"));
            std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
            let snapshot = hub
                .join(format!("models--{}", repo.replace('/', "--")))
                .join("snapshots");
            let commit = std::fs::read_dir(&snapshot)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            std::fs::rename(commit, kept).unwrap();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("big") => big(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(480)),
        Some("tiny") => tiny(
            Path::new(args.get(1).expect("an output folder")),
            args.iter().any(|a| a == "--keep-sources"),
        ),
        _ => {
            eprintln!(
                "usage: convert_bench big [SIZE_MIB] | convert_bench tiny OUT_DIR [--keep-sources]"
            );
            std::process::exit(2);
        }
    }
}
