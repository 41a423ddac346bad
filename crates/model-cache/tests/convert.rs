//! Conversions end to end: tiny random llama-family checkpoints with real tokenizers are put on
//! the hub emulator, pulled into the cache and converted to GGUF; llama.cpp's own `gguf`
//! package (PyPI) reads each output and checks its tensors, shapes, types, metadata and token
//! count, and compares every tensor with the source converted by numpy (F16 exactly; Q8_0 byte
//! for byte with gguf-py's quantizer, and dequantized within half a step).

mod convert_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use convert_support::{Dtype, ModelSpec};
use hub_emulator::{Emulator, EmulatorConfig};
use model_cache::convert::{Backend, ConvertRequest, Format, GgufType};
use model_cache::download::{JobControl, Reporter};
use model_cache::engine::{Engine, EngineOptions, PullRequest};
use model_cache::error::{ErrorKind, Hint};
use model_cache::hub::retry::RetryPolicy;
use model_cache::index::queue::QueueState;
use model_cache::{RepoId, Settings};
use serde_json::{Value, json};

const GIB: u64 = 1 << 30;

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

fn python() -> PathBuf {
    hub_emulator::python::python_with_gguf(&target_dir()).unwrap_or_else(|e| panic!("{e}"))
}

struct Rig {
    emulator: Emulator,
    engine: Engine,
    dir: tempfile::TempDir,
}

impl Rig {
    /// An emulator serving the checkpoints written by `fill` (under `<repos>/<org>/<name>/`), and
    /// an engine running its queue.
    async fn new(fill: impl FnOnce(&Path)) -> Rig {
        Rig::with_llama_cpp(fill, None).await
    }

    async fn with_llama_cpp(fill: impl FnOnce(&Path), llama_cpp: Option<PathBuf>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos).unwrap();
        fill(&repos);
        let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
        for repo in hub_emulator::catalog::repos_from_dir(&repos).unwrap() {
            emulator.add_repo(repo);
        }
        let mut settings = Settings::new(dir.path().join("hub"), dir.path().join("data"));
        settings.endpoint = emulator.url();
        settings.retry = RetryPolicy::immediate();
        settings.llama_cpp_converter = llama_cpp;
        let engine = Engine::open(settings, EngineOptions::fake(64 * GIB)).unwrap();
        Rig {
            emulator,
            engine,
            dir,
        }
    }

    async fn pull(&self, repo: &RepoId) {
        let request = PullRequest {
            include: vec!["*".into()],
            ..PullRequest::repo(repo.clone())
        };
        let plan = self.engine.plan_pull(&request).await.unwrap();
        let reporter: Arc<dyn Reporter> = Arc::new(model_cache::download::NoReporter);
        self.engine.download(&plan, reporter).wait().await.unwrap();
    }

    async fn convert(&self, repo: &RepoId, kind: GgufType) -> model_cache::convert::Provenance {
        let request = request(kind);
        let plan = self.engine.plan_convert(repo, None, &request).unwrap();
        let planned = plan.estimated_bytes;
        let native = plan.backend == Backend::Native;
        let reporter: Arc<dyn Reporter> = Arc::new(model_cache::download::NoReporter);
        let provenance = self
            .engine
            .convert(plan, request, reporter, JobControl::new())
            .await
            .unwrap();
        if native {
            // The native converter knows the file's exact size before writing it.
            assert_eq!(planned, provenance.bytes);
        }
        provenance
    }

    fn snapshot(&self, repo: &RepoId, commit: &str) -> PathBuf {
        self.engine.cache().repo(repo).snapshot_dir(commit)
    }
}

fn request(kind: GgufType) -> ConvertRequest {
    ConvertRequest {
        to: Format::Gguf,
        gguf_type: kind,
        out: None,
        backend: Backend::Auto,
    }
}

/// Runs `convert_check.py` on an output; returns its report.
fn check(output: &Path, snapshot: &Path, expect: &Value) -> Value {
    let expect_path = output.with_extension("expect.json");
    std::fs::write(&expect_path, serde_json::to_vec(expect).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/convert_check.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(output)
        .arg(snapshot)
        .arg(&expect_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the check failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

fn tensor_count(spec: &ModelSpec) -> usize {
    spec.tensors().len()
}

fn llama_spec(vocab: u64, dtype: Dtype, architecture: &'static str) -> ModelSpec {
    ModelSpec {
        architecture,
        hidden: 64,
        intermediate: 128,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        vocab,
        dtype,
        attention_bias: false,
        tied: false,
    }
}

fn common_metadata(arch: &str, spec: &ModelSpec, file_type: u32) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("general.architecture".into(), json!(arch));
    m.insert("general.file_type".into(), json!(file_type));
    m.insert(format!("{arch}.block_count"), json!(spec.layers));
    m.insert(format!("{arch}.context_length"), json!(512));
    m.insert(format!("{arch}.embedding_length"), json!(spec.hidden));
    m.insert(
        format!("{arch}.feed_forward_length"),
        json!(spec.intermediate),
    );
    m.insert(format!("{arch}.attention.head_count"), json!(spec.heads));
    m.insert(
        format!("{arch}.attention.head_count_kv"),
        json!(spec.kv_heads),
    );
    m.insert(format!("{arch}.rope.freq_base"), json!(10000.0));
    m.insert(
        format!("{arch}.attention.layer_norm_rms_epsilon"),
        json!(1e-5),
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_with_a_byte_level_bpe_tokenizer_converts_to_f16_and_q8_0() {
    let (tokenizer, tokens) =
        convert_support::byte_level_tokenizer(convert_support::LLAMA3_SPLIT, 160);
    // config.json's vocabulary is larger than the tokenizer's (padded, as real models are).
    let vocab = tokens.div_ceil(64) as u64 * 64;
    let spec = llama_spec(vocab, Dtype::BF16, "LlamaForCausalLM");
    let rig = Rig::new(|repos| {
        convert_support::write_checkpoint(&repos.join("test/tiny-llama"), &spec, &tokenizer, 1)
    })
    .await;
    let repo: RepoId = "test/tiny-llama".parse().unwrap();
    rig.pull(&repo).await;

    let merges = tokenizer["model"]["merges"].as_array().unwrap().len();
    for (kind, file_type) in [(GgufType::F16, 1), (GgufType::Q8_0, 7)] {
        let provenance = rig.convert(&repo, kind).await;
        assert!(provenance.output.is_file());
        assert!(
            provenance
                .output
                .starts_with(rig.dir.path().join("data/converted")),
            "outputs live in our own area: {}",
            provenance.output.display()
        );
        assert_eq!(provenance.commit.len(), 40);
        assert_eq!(provenance.architecture.as_deref(), Some("LlamaForCausalLM"));
        assert_eq!(provenance.backend, Backend::Native);
        let mut metadata = common_metadata("llama", &spec, file_type);
        metadata.insert("llama.vocab_size".into(), json!(vocab));
        metadata.insert("llama.rope.dimension_count".into(), json!(16));
        metadata.insert("tokenizer.ggml.model".into(), json!("gpt2"));
        metadata.insert("tokenizer.ggml.pre".into(), json!("llama-bpe"));
        metadata.insert("tokenizer.ggml.bos_token_id".into(), json!(tokens - 2));
        metadata.insert("tokenizer.ggml.eos_token_id".into(), json!(tokens - 1));
        metadata.insert("tokenizer.ggml.add_bos_token".into(), json!(true));
        metadata.insert("model_cache.source.commit".into(), json!(provenance.commit));
        metadata.insert(
            "general.source.huggingface.repository".into(),
            json!("test/tiny-llama"),
        );
        let report = check(
            &provenance.output,
            &rig.snapshot(&repo, &provenance.commit),
            &json!({
                "metadata": metadata,
                "tokens": vocab,
                "merges": merges,
                "token_types": {"<|begin_of_text|>": 3, "<|end_of_text|>": 3, "Ġthe": 1,
                                format!("[PAD{}]", vocab - 1): 5},
                "weights": ["model.safetensors"],
                "heads": spec.heads,
                "kv_heads": spec.kv_heads,
                "tensor_count": tensor_count(&spec),
            }),
        );
        assert_eq!(
            report["checked"]["tensors"],
            json!(tensor_count(&spec)),
            "{report}"
        );
        // The provenance record sits beside the output.
        let record = model_cache::convert::job::provenance_path(&provenance.output);
        let saved: model_cache::convert::Provenance =
            serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
        assert_eq!(saved, provenance);
    }
    let listed = rig.engine.converted();
    assert_eq!(listed.len(), 2, "{listed:#?}");
    // The hub cache holds only what the Hub published: no output, no temp file in it.
    let foreign: Vec<_> = walk(&rig.dir.path().join("hub"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("gguf") || p.to_string_lossy().contains("convert"))
        .collect();
    assert!(foreign.is_empty(), "{foreign:?}");
    drop(rig.emulator);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistral_with_a_sentencepiece_tokenizer_converts_with_scores_and_byte_tokens() {
    let (tokenizer, tokens) = convert_support::sentencepiece_tokenizer(120);
    let spec = llama_spec(tokens as u64, Dtype::F16, "MistralForCausalLM");
    let rig = Rig::new(|repos| {
        convert_support::write_checkpoint(&repos.join("test/tiny-mistral"), &spec, &tokenizer, 2)
    })
    .await;
    let repo: RepoId = "test/tiny-mistral".parse().unwrap();
    rig.pull(&repo).await;
    let provenance = rig.convert(&repo, GgufType::F16).await;
    let mut metadata = common_metadata("llama", &spec, 1);
    metadata.insert("tokenizer.ggml.model".into(), json!("llama"));
    metadata.insert("tokenizer.ggml.pre".into(), json!("default"));
    metadata.insert("tokenizer.ggml.bos_token_id".into(), json!(1));
    metadata.insert("tokenizer.ggml.eos_token_id".into(), json!(2));
    check(
        &provenance.output,
        &rig.snapshot(&repo, &provenance.commit),
        &json!({
            "metadata": metadata,
            "tokens": tokens,
            "token_types": {"<unk>": 2, "<s>": 3, "</s>": 3, "<0x0A>": 6, "\u{2581}the": 1},
            "weights": ["model.safetensors"],
            "heads": spec.heads,
            "kv_heads": spec.kv_heads,
            "tensor_count": tensor_count(&spec),
        }),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen2_with_biases_and_tied_embeddings_converts_to_q8_0() {
    let (tokenizer, tokens) =
        convert_support::byte_level_tokenizer(convert_support::QWEN2_SPLIT, 100);
    let spec = ModelSpec {
        attention_bias: true,
        tied: true,
        ..llama_spec(tokens as u64, Dtype::F32, "Qwen2ForCausalLM")
    };
    let rig = Rig::new(|repos| {
        convert_support::write_checkpoint(&repos.join("test/tiny-qwen2"), &spec, &tokenizer, 3)
    })
    .await;
    let repo: RepoId = "test/tiny-qwen2".parse().unwrap();
    rig.pull(&repo).await;
    let provenance = rig.convert(&repo, GgufType::Q8_0).await;
    let mut metadata = common_metadata("qwen2", &spec, 7);
    metadata.insert("tokenizer.ggml.model".into(), json!("gpt2"));
    metadata.insert("tokenizer.ggml.pre".into(), json!("qwen2"));
    check(
        &provenance.output,
        &rig.snapshot(&repo, &provenance.commit),
        &json!({
            "metadata": metadata,
            "tokens": tokens,
            "weights": ["model.safetensors"],
            "heads": spec.heads,
            "kv_heads": spec.kv_heads,
            "tensor_count": tensor_count(&spec),
        }),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_conversion_runs_like_a_download_and_a_cancel_leaves_nothing() {
    let (tokenizer, tokens) =
        convert_support::byte_level_tokenizer(convert_support::LLAMA3_SPLIT, 50);
    let spec = llama_spec(tokens as u64, Dtype::BF16, "LlamaForCausalLM");
    let rig = Rig::new(|repos| {
        convert_support::write_checkpoint(&repos.join("test/queued"), &spec, &tokenizer, 4)
    })
    .await;
    let repo: RepoId = "test/queued".parse().unwrap();

    // Not in the cache yet: refused at once, with what to do.
    let error = rig
        .engine
        .enqueue_convert(&repo, None, &request(GgufType::F16))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotCached);
    assert_eq!(
        error.hints(),
        [Hint::PullFirst {
            repo: repo.to_string()
        }]
    );

    rig.pull(&repo).await;
    let mut events = rig.engine.subscribe();
    // Deferred by the same rules as a download ("Paused by you"), run when they clear.
    rig.engine.pause_all().unwrap();
    let job = rig
        .engine
        .enqueue_convert(&repo, None, &request(GgufType::Q8_0))
        .unwrap();
    assert!(job.convert.is_some());
    let deferred = rig
        .engine
        .wait_for_job(job.id, |j| j.state == QueueState::Deferred)
        .await;
    assert_eq!(
        deferred.defer_reason,
        Some(model_cache::policy::DeferReason::PausedByUser)
    );
    assert!(rig.engine.converted().is_empty());
    rig.engine.resume_all().unwrap();
    let done = rig
        .engine
        .wait_for_job(job.id, |j| j.state.is_terminal())
        .await;
    assert_eq!(done.state, QueueState::Done, "{done:?}");
    assert_eq!(Some(done.bytes_done), done.bytes_total, "{done:?}");
    let mut progress = 0;
    while let Ok(event) = events.try_recv() {
        if let model_cache::scheduler::SchedulerEvent::Download { job_id, .. } = event {
            assert_eq!(job_id, job.id);
            progress += 1;
        }
    }
    assert!(progress > 0, "progress events were sent");
    let converted = rig.engine.converted();
    assert_eq!(converted.len(), 1);
    assert_eq!(converted[0].gguf_type, GgufType::Q8_0);
    assert!(converted[0].output.is_file());

    // A conversion cancelled halfway removes its temporary file and writes no output.
    let plan = rig
        .engine
        .plan_convert(&repo, None, &request(GgufType::F16))
        .unwrap();
    let control = JobControl::new();
    let canceller = control.clone();
    let mut report = move |done: u64, total: u64| {
        if done > total / 3 {
            canceller.cancel();
        }
    };
    let context = model_cache::convert::job::ConvertContext {
        hub_cache: rig.dir.path().join("hub"),
        data_dir: rig.dir.path().join("data"),
        llama_cpp: None,
    };
    let error = model_cache::convert::job::run(
        &context,
        &plan,
        &request(GgufType::F16),
        &mut report,
        Some(&control),
    )
    .unwrap_err();
    assert!(
        matches!(error, model_cache::convert::ConvertError::Cancelled),
        "{error}"
    );
    assert!(!plan.output.exists());
    let leftovers: Vec<_> = walk(plan.output.parent().unwrap())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("F16"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_models_are_refused_plainly() {
    let (tokenizer, tokens) =
        convert_support::byte_level_tokenizer(convert_support::LLAMA3_SPLIT, 20);
    let spec = llama_spec(tokens as u64, Dtype::F32, "GPT2LMHeadModel");
    let rig = Rig::new(|repos| {
        convert_support::write_checkpoint(&repos.join("test/gpt2ish"), &spec, &tokenizer, 5);
        let onnx = repos.join("test/onnx-only");
        std::fs::create_dir_all(onnx.join("onnx")).unwrap();
        std::fs::write(
            onnx.join("config.json"),
            b"{\"architectures\": [\"LlamaForCausalLM\"]}",
        )
        .unwrap();
        std::fs::write(onnx.join("onnx/model.onnx"), vec![8u8; 4096]).unwrap();
    })
    .await;
    for name in ["test/gpt2ish", "test/onnx-only"] {
        rig.pull(&name.parse().unwrap()).await;
    }
    let error = rig
        .engine
        .plan_convert(
            &"test/gpt2ish".parse().unwrap(),
            None,
            &request(GgufType::F16),
        )
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert_eq!(error.hints(), [Hint::InstallLlamaCppConverter]);
    assert!(error.to_string().contains("GPT2LMHeadModel"), "{error}");
    assert!(error.to_string().contains("LlamaForCausalLM"), "{error}");

    let error = rig
        .engine
        .plan_convert(
            &"test/onnx-only".parse().unwrap(),
            None,
            &request(GgufType::F16),
        )
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert!(
        error
            .to_string()
            .starts_with("There is no standard converter from ONNX to GGUF"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_cpp_s_converter_is_offered_for_other_architectures_when_found() {
    // A stand-in for convert_hf_to_gguf.py: checks its arguments, writes a file.
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("convert_hf_to_gguf.py");
    std::fs::write(
        &script,
        r#"import sys, os
args = sys.argv[1:]
model, outfile, outtype = args[0], args[args.index("--outfile") + 1], args[args.index("--outtype") + 1]
assert os.path.isfile(os.path.join(model, "config.json")), model
assert outtype == "q8_0", outtype
with open(outfile, "wb") as f:
    f.write(b"GGUF" + b"\0" * 60)
print("converted", model)
"#,
    )
    .unwrap();
    let (tokenizer, tokens) =
        convert_support::byte_level_tokenizer(convert_support::LLAMA3_SPLIT, 20);
    let spec = llama_spec(tokens as u64, Dtype::F32, "GPT2LMHeadModel");
    let rig = Rig::with_llama_cpp(
        |repos| {
            convert_support::write_checkpoint(&repos.join("test/gpt2ish"), &spec, &tokenizer, 6)
        },
        Some(script.clone()),
    )
    .await;
    let repo: RepoId = "test/gpt2ish".parse().unwrap();
    rig.pull(&repo).await;
    let plan = rig
        .engine
        .plan_convert(&repo, None, &request(GgufType::Q8_0))
        .unwrap();
    assert_eq!(plan.backend, Backend::LlamaCpp);
    let provenance = rig.convert(&repo, GgufType::Q8_0).await;
    assert_eq!(provenance.backend, Backend::LlamaCpp);
    assert!(provenance.converter.contains("convert_hf_to_gguf.py"));
    assert_eq!(std::fs::read(&provenance.output).unwrap().len(), 64);
    // A supported architecture still uses the native converter unless asked.
    let native = rig
        .engine
        .plan_convert(
            &repo,
            None,
            &ConvertRequest {
                backend: Backend::Native,
                ..request(GgufType::F16)
            },
        )
        .unwrap_err();
    assert_eq!(native.kind(), ErrorKind::Unsupported);
    // A failing script fails the conversion with its output, and leaves nothing.
    std::fs::write(&script, "import sys\nprint('no torch here')\nsys.exit(3)\n").unwrap();
    let request = request(GgufType::F16);
    let plan = rig.engine.plan_convert(&repo, None, &request).unwrap();
    let error = rig
        .engine
        .convert(
            plan.clone(),
            request,
            Arc::new(model_cache::download::NoReporter),
            JobControl::new(),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no torch here"), "{error}");
    assert!(!plan.output.exists());
}
