//! Variants from repo listings: grouping rules on synthetic listings, and the whole path (list,
//! group, read headers remotely) against the hub emulator's demo repos and hand-made ones.

use hub_emulator::generate::{GgufSpec, LlamaFileType, SafetensorsSpec, VirtualFile};
use hub_emulator::{Emulator, EmulatorConfig, FileChange, Repo, RepoKind};
use model_cache::RepoId;
use model_cache::fit::{self, FitOptions, FitTier, MachineMemory};
use model_cache::formats::gguf;
use model_cache::formats::{ByteSource, HubSource};
use model_cache::hub::{EntryKind, HubClient};
use model_cache::settings::{RetryPolicy, Settings};
use model_cache::variants::{
    self, HubRepoFiles, ListedFile, Variant, VariantFormat, WarningKind, parse_quant_label,
};

fn listed(files: &[(&str, u64)]) -> Vec<ListedFile> {
    files
        .iter()
        .map(|(p, s)| ListedFile {
            path: p.to_string(),
            size: *s,
        })
        .collect()
}

fn by_name<'a>(vs: &'a [Variant], name: &str) -> &'a Variant {
    vs.iter().find(|v| v.name == name).unwrap_or_else(|| {
        panic!(
            "no variant {name} in {:?}",
            vs.iter().map(|v| &v.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn quant_labels_follow_the_huggingface_js_rules() {
    let cases = [
        ("Llama-3-8B-Instruct-Q4_K_M.gguf", Some("Q4_K_M")),
        ("llama-3-8b-instruct.q4_k_m.gguf", Some("Q4_K_M")),
        ("model-UD-Q4_K_XL.gguf", Some("UD-Q4_K_XL")),
        ("model-Q4_K_XL.gguf", Some("Q4_K_XL")),
        ("Qwen-Q4_K_L.gguf", Some("Q4_K_L")),
        ("Qwen-Q6_K_L.gguf", Some("Q6_K_L")),
        ("Model-IQ2_XXS.gguf", Some("IQ2_XXS")),
        ("Model-IQ3_XS.gguf", Some("IQ3_XS")),
        ("Model-BF16.gguf", Some("BF16")),
        // The last match wins: the base model's F16 in the name loses to the quant.
        ("Model-F16-finetune-Q8_0.gguf", Some("Q8_0")),
        (
            "DeepSeek-V3-Q2_K_L/DeepSeek-V3-Q2_K_L-00001-of-00005",
            Some("Q2_K_L"),
        ),
        ("gpt-oss-20b-MXFP4.gguf", Some("MXFP4")),
        ("model.gguf", None),
        ("modèle-é-Q5_K_S.gguf", Some("Q5_K_S")),
    ];
    for (name, want) in cases {
        assert_eq!(parse_quant_label(name).as_deref(), want, "{name}");
    }
}

#[test]
fn scan_groups_splits_subfolders_projectors_and_companions() {
    let files = listed(&[
        ("README.md", 100),
        ("config.json", 50),
        ("tokenizer.json", 1000),
        ("m-Q4_K_M.gguf", 4000),
        ("m-Q8_0-00001-of-00003.gguf", 3000),
        ("m-Q8_0-00002-of-00003.gguf", 3000),
        ("m-Q8_0-00003-of-00003.gguf", 1000),
        ("m-Q6_K-00001-of-00003.gguf", 3000),
        ("m-Q6_K-00003-of-00003.gguf", 100),
        ("UD-Q4_K_XL/m-UD-Q4_K_XL.gguf", 4100),
        ("m-Q4_K_L.gguf", 4050),
        ("mmproj-m-F16.gguf", 600),
        ("model-00001-of-00002.safetensors", 10_000),
        ("model-00002-of-00002.safetensors", 5_000),
        ("model.safetensors.index.json", 300),
        ("onnx/model.onnx", 900),
        ("onnx/model_fp16.onnx", 500),
        ("onnx/model_fp16.onnx_data", 5000),
        ("pytorch_model.bin", 20_000),
        ("training_args.bin", 10),
    ]);
    let vs = variants::scan(&files);
    let q8 = by_name(&vs, "Q8_0");
    assert_eq!(q8.files.len(), 3);
    assert_eq!(q8.weights_size, 7000);
    assert!(q8.complete);
    assert_eq!(q8.split.as_ref().unwrap().count, 3);
    // GGUF variants need no config; they are offered the projector, not charged for it.
    assert!(q8.companions.is_empty());
    assert_eq!(q8.projectors.len(), 1);
    assert_eq!(q8.total_size, 7000);

    let q6 = by_name(&vs, "Q6_K");
    assert!(!q6.complete);
    assert_eq!(q6.split.as_ref().unwrap().missing, vec![2]);
    assert_eq!(q6.warnings[0].kind, WarningKind::IncompleteSplit);
    assert!(
        q6.warnings[0].message.contains("00002"),
        "{}",
        q6.warnings[0].message
    );

    let ud = by_name(&vs, "UD-Q4_K_XL");
    assert_eq!(ud.quant.as_deref(), Some("Q4_K_XL"));
    assert_eq!(ud.files[0].path, "UD-Q4_K_XL/m-UD-Q4_K_XL.gguf");
    assert_ne!(by_name(&vs, "Q4_K_L").id, by_name(&vs, "Q4_K_M").id);

    let st = vs
        .iter()
        .find(|v| v.format == VariantFormat::Safetensors)
        .unwrap();
    assert_eq!(st.files.len(), 2);
    let comp: Vec<_> = st.companions.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        comp,
        [
            "config.json",
            "model.safetensors.index.json",
            "tokenizer.json"
        ]
    );
    assert_eq!(st.total_size, 15_000 + 50 + 1000 + 300);
    assert_eq!(st.extras[0].path, "README.md");

    let onnx: Vec<_> = vs
        .iter()
        .filter(|v| v.format == VariantFormat::Onnx)
        .collect();
    assert_eq!(onnx.len(), 2);
    let fp16 = onnx
        .iter()
        .find(|v| v.quant.as_deref() == Some("fp16"))
        .unwrap();
    assert_eq!(fp16.weights_size, 5500);
    assert_eq!(fp16.companions.len(), 2, "root config and tokenizer");

    let pt: Vec<_> = vs
        .iter()
        .filter(|v| v.format == VariantFormat::Pytorch)
        .collect();
    assert_eq!(pt.len(), 1, "training_args.bin is not weights");
    // mmproj is never a variant of its own.
    assert!(
        vs.iter()
            .all(|v| !v.files.iter().any(|f| f.path.contains("mmproj")))
    );
}

#[test]
fn pickle_weights_are_marked_unsafe_with_the_safetensors_alternative() {
    let files = listed(&[
        ("config.json", 50),
        ("model.safetensors", 10_000),
        ("pytorch_model-00001-of-00002.bin", 6_000),
        ("pytorch_model-00002-of-00002.bin", 4_000),
        ("original/consolidated.00.pth", 10_000),
        ("checkpoint/optimizer.pt", 30_000),
        ("m-Q4_K_M.gguf", 4000),
    ]);
    let vs = variants::scan(&files);
    let pickles: Vec<&Variant> = vs
        .iter()
        .filter(|v| v.format == VariantFormat::Pytorch)
        .collect();
    assert_eq!(
        pickles.len(),
        2,
        "the .bin set and the .pth; optimizer.pt is not weights"
    );
    let safetensors = vs
        .iter()
        .find(|v| v.format == VariantFormat::Safetensors)
        .unwrap();
    for variant in &pickles {
        let warning = variant
            .warnings
            .iter()
            .find(|w| w.kind == WarningKind::UnsafePickle)
            .unwrap_or_else(|| panic!("{} is marked", variant.name));
        assert!(
            warning.message.contains("can run any code"),
            "{}",
            warning.message
        );
        assert!(
            warning
                .message
                .contains(&format!("safetensors variant `{}`", safetensors.name)),
            "{}",
            warning.message
        );
    }
    for variant in vs.iter().filter(|v| v.format != VariantFormat::Pytorch) {
        assert!(
            variant
                .warnings
                .iter()
                .all(|w| w.kind != WarningKind::UnsafePickle),
            "{} carries no pickle",
            variant.name
        );
    }
    insta::assert_json_snapshot!(WarningKind::UnsafePickle, @r#""unsafe_pickle""#);

    // Without safetensors weights nothing is suggested.
    let only_pickle = variants::scan(&listed(&[("config.json", 5), ("model.pt", 100)]));
    assert_eq!(only_pickle.len(), 1);
    let message = &only_pickle[0].warnings[0].message;
    assert_eq!(only_pickle[0].warnings[0].kind, WarningKind::UnsafePickle);
    assert!(!message.contains("safetensors"), "{message}");
}

#[test]
fn config_json_marks_gptq_awq_exl2_and_mlx() {
    let files = listed(&[("config.json", 10), ("model.safetensors", 1000)]);
    for (config, format, name) in [
        (
            r#"{"quantization_config":{"quant_method":"gptq","bits":4,"group_size":128}}"#,
            VariantFormat::Gptq,
            "GPTQ-4bit-g128",
        ),
        (
            r#"{"quantization_config":{"quant_method":"awq","bits":4,"group_size":128}}"#,
            VariantFormat::Awq,
            "AWQ-4bit-g128",
        ),
        (
            r#"{"quantization_config":{"quant_method":"exl2","bits":4.65}}"#,
            VariantFormat::Exl2,
            "EXL2-4.65bpw",
        ),
        (
            r#"{"quantization":{"group_size":64,"bits":4}}"#,
            VariantFormat::Mlx,
            "MLX-4bit-g64",
        ),
    ] {
        let mut vs = variants::scan(&files);
        let info = variants::parse_config(config.as_bytes()).unwrap();
        variants::apply_config(&mut vs, &info);
        assert_eq!(vs[0].format, format);
        assert_eq!(vs[0].name, name);
    }
}

fn machine(total_gib: u64, avail_gib: u64, vram_gib: Option<u64>) -> MachineMemory {
    MachineMemory {
        total_ram: total_gib << 30,
        available_ram: avail_gib << 30,
        vram_total: vram_gib.map(|v| v << 30),
    }
}

#[test]
fn fit_tiers_and_recommendation_follow_the_quality_order() {
    let gib = 1u64 << 30;
    let files = listed(&[
        ("m-F16.gguf", 16 * gib),
        ("m-Q8_0.gguf", 8 * gib),
        ("m-Q6_K.gguf", 6 * gib),
        ("m-Q4_K_M.gguf", 4 * gib + gib / 2),
        ("m-Q2_K.gguf", 3 * gib),
        ("m-Q5_K_M-00001-of-00002.gguf", 3 * gib),
    ]);
    let mut vs = variants::scan(&files);
    for v in &mut vs {
        v.shape = Some(variants::ModelShape {
            context_length: Some(8192),
            kv_cache_bytes_per_token: Some(32 * 8 * 256 * 2),
            ..Default::default()
        });
    }
    let opts = FitOptions::default();
    let m = machine(16, 10, None);
    let q8 = by_name(&vs, "Q8_0");
    let e = fit::estimate(q8, &m, &opts);
    // 8 GiB + 4096 × 131072 B (512 MiB) + 512 MiB + 5 % of 8 GiB.
    assert_eq!(e.kv_cache_bytes, 4096 * 32 * 8 * 256 * 2);
    assert_eq!(e.needed_bytes, 8 * gib + gib / 2 + gib / 2 + (8 * gib) / 20);
    assert_eq!(e.tier, FitTier::Fits);
    assert_eq!(
        fit::estimate(by_name(&vs, "F16"), &m, &opts).tier,
        FitTier::TooBig
    );
    // The default is the mid quant, not the largest that fits.
    let rec = fit::recommend(&vs, &m, &opts).unwrap();
    assert_eq!(rec.variant_id, by_name(&vs, "Q4_K_M").id);

    // Less memory: the incomplete Q5_K_M is never offered; Q4_K_M fits; Q6_K is only tight.
    let small = machine(10, 6, None);
    assert_eq!(
        fit::estimate(by_name(&vs, "Q6_K"), &small, &opts).tier,
        FitTier::Tight
    );
    let rec = fit::recommend(&vs, &small, &opts).unwrap();
    assert_eq!(rec.variant_id, by_name(&vs, "Q4_K_M").id);
    // A GPU with room for F16 makes F16 fit, and the mid quant is still the default.
    let gpu = machine(8, 2, Some(24));
    assert_eq!(
        fit::estimate(by_name(&vs, "F16"), &gpu, &opts).tier,
        FitTier::Fits
    );
    assert_eq!(
        fit::recommend(&vs, &gpu, &opts).unwrap().variant_id,
        by_name(&vs, "Q4_K_M").id
    );
    // Without the mid quant, the nearest better one comes before the smaller ones.
    let no_mid: Vec<_> = vs.iter().filter(|v| v.name != "Q4_K_M").cloned().collect();
    assert_eq!(
        fit::recommend(&no_mid, &m, &opts).unwrap().variant_id,
        by_name(&vs, "Q6_K").id
    );
    // When only a smaller one fits, that one is taken.
    let tiny = machine(6, 5, None);
    assert_eq!(
        fit::recommend(&no_mid, &tiny, &opts).unwrap().variant_id,
        by_name(&vs, "Q2_K").id
    );
    // Nothing fits a tiny machine; unknown memory recommends nothing either.
    assert!(fit::recommend(&vs, &machine(2, 1, None), &opts).is_none());
    assert_eq!(
        fit::estimate(q8, &machine(0, 0, None), &opts).tier,
        FitTier::Unknown
    );
    // The context is capped at the model's own.
    let long = FitOptions {
        context: 1 << 20,
        ..opts
    };
    assert_eq!(fit::estimate(q8, &m, &long).context, 8192);
}

#[test]
fn vram_is_read_from_amdgpu_sysfs_files() {
    let dir = tempfile::tempdir().unwrap();
    for (card, vram) in [("card0", "8589934592\n"), ("card1", "17179869184\n")] {
        let d = dir.path().join(card).join("device");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("mem_info_vram_total"), vram).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("card1-DP-1")).unwrap();
    assert_eq!(fit::read_vram(dir.path()), Some(16 << 30));
    assert_eq!(fit::read_vram(&dir.path().join("none")), None);
    let real = fit::Machine::memory(&fit::SystemMachine);
    assert!(real.total_ram > 0 && real.available_ram <= real.total_ram);
}

fn gguf_file(ft: LlamaFileType, size: u64) -> VirtualFile {
    GgufSpec::llama("Test-Model", ft, size).build()
}

/// A repo with every naming trouble at once.
fn mixed_repo() -> Repo {
    let mut r = Repo::new(RepoKind::Model, "test/mixed");
    let q5 = GgufSpec::llama("Test-Model", LlamaFileType::Q5_K_M, 900_000).split(3);
    let st = SafetensorsSpec::transformer(0, 2, 300_000, 9);
    r.commit(
        "main",
        "upload",
        vec![
            FileChange::put("README.md", "# mixed\n"),
            FileChange::put("config.json", r#"{"architectures":["LlamaForCausalLM"],"num_hidden_layers":4,"num_attention_heads":8,"num_key_value_heads":2,"hidden_size":512,"max_position_embeddings":4096}"#),
            FileChange::put("tokenizer.json", "{}"),
            // Named Q4_K_M, actually Q8_0.
            FileChange::put("model-Q4_K_M.gguf", gguf_file(LlamaFileType::Q8_0, 500_000)),
            FileChange::put("model-Q2_K.gguf", gguf_file(LlamaFileType::Q2_K, 300_000)),
            FileChange::put("UD-Q4_K_XL/model-UD-Q4_K_XL.gguf", gguf_file(LlamaFileType::Q4_K_M, 400_000)),
            FileChange::put("model-Q5_K_M-00001-of-00003.gguf", q5[0].build()),
            FileChange::put("model-Q5_K_M-00003-of-00003.gguf", q5[2].build()),
            FileChange::put("mmproj-model-f16.gguf", GgufSpec::mmproj("Test-Model", 200_000).build()),
            // Named F16, header says BF16: the dtype comes from the header.
            FileChange::put("model.safetensors", st.build()),
            FileChange::put("onnx/model_q4.onnx", VirtualFile::random(50_000, 5)),
        ],
    );
    r
}

async fn client_for(emu: &Emulator) -> HubClient {
    let mut settings = Settings::new("/nonexistent-cache".into(), "/nonexistent-data".into());
    settings.endpoint = emu.url();
    settings.retry = RetryPolicy::immediate();
    HubClient::new(&settings).unwrap()
}

async fn variants_of(client: &HubClient, id: &str) -> Vec<Variant> {
    let repo = RepoId::model(id).unwrap();
    let tree = client.list_tree(&repo, "main", None, true).await.unwrap();
    let listing: Vec<ListedFile> = tree
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(ListedFile::from)
        .collect();
    let mut vs = variants::scan(&listing);
    let files = HubRepoFiles {
        client: client.clone(),
        repo,
        revision: "main".into(),
    };
    variants::inspect(&mut vs, &listing, &files).await;
    vs
}

#[tokio::test]
async fn demo_repos_give_the_expected_variants() {
    let emu = Emulator::start(EmulatorConfig::demo_with_big_size(64 << 20))
        .await
        .unwrap();
    let client = client_for(&emu).await;

    let vs = variants_of(&client, "demo/tiny-gguf").await;
    let names: Vec<&str> = vs.iter().map(|v| v.name.as_str()).collect();
    for q in [
        "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "Q2_K",
    ] {
        assert!(names.contains(&q), "{q} missing from {names:?}");
    }
    assert_eq!(vs.len(), 8, "{names:?}");
    for v in &vs {
        assert!(v.complete, "{}", v.name);
        assert!(v.warnings.is_empty(), "{}: {:?}", v.name, v.warnings);
        assert_eq!(v.quant.as_deref(), Some(v.name.as_str()));
        let shape = v.shape.as_ref().unwrap();
        assert_eq!(shape.architecture.as_deref(), Some("llama"));
        assert!(shape.parameter_count.unwrap() > 0);
        assert!(shape.tensor_data_bytes.unwrap() <= v.weights_size);
        assert_eq!(v.projectors.len(), 1);
        assert_eq!(v.weights_size, v.files.iter().map(|f| f.size).sum::<u64>());
    }
    let q8 = by_name(&vs, "Q8_0");
    assert_eq!(q8.files.len(), 3);
    // Parameters summed over the three split headers equal a single-file quant's.
    assert_eq!(
        q8.shape.as_ref().unwrap().parameter_count,
        by_name(&vs, "Q4_K_M")
            .shape
            .as_ref()
            .unwrap()
            .parameter_count
    );
    assert_eq!(
        by_name(&vs, "IQ4_XS").files[0].path,
        "IQ4_XS/tiny-model-IQ4_XS.gguf"
    );

    let vs = variants_of(&client, "demo/tiny-safetensors").await;
    assert_eq!(vs.len(), 1);
    let st = &vs[0];
    assert_eq!(st.format, VariantFormat::Safetensors);
    assert_eq!(st.name, "BF16");
    assert_eq!(st.files.len(), 2);
    let comp: Vec<&str> = st.companions.iter().map(|c| c.path.as_str()).collect();
    for c in [
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(comp.contains(&c), "{c} missing from {comp:?}");
    }
    assert!(st.complete && st.warnings.is_empty(), "{:?}", st.warnings);
    assert_eq!(
        st.total_size,
        st.files
            .iter()
            .chain(&st.companions)
            .map(|f| f.size)
            .sum::<u64>()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn mismatched_names_missing_shards_and_mixed_formats() {
    let emu = Emulator::start(EmulatorConfig {
        repos: vec![mixed_repo()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client_for(&emu).await;
    let vs = variants_of(&client, "test/mixed").await;

    // The header wins over the name, and says so.
    let wrong = vs
        .iter()
        .find(|v| v.files[0].path == "model-Q4_K_M.gguf")
        .unwrap();
    assert_eq!(wrong.name, "Q8_0");
    assert_eq!(wrong.quant.as_deref(), Some("Q8_0"));
    assert_eq!(wrong.name_quant.as_deref(), Some("Q4_K_M"));
    assert_eq!(wrong.warnings.len(), 1);
    assert_eq!(wrong.warnings[0].kind, WarningKind::QuantMismatch);

    // unsloth's dynamic quant keeps its name; a Q4_K_M header is its family, no warning.
    let ud = by_name(&vs, "UD-Q4_K_XL");
    assert_eq!(ud.quant.as_deref(), Some("Q4_K_M"));
    assert_eq!(ud.name_quant.as_deref(), Some("UD-Q4_K_XL"));
    assert!(ud.warnings.is_empty(), "{:?}", ud.warnings);
    // Sizes are exact sums of the listed files.
    for v in &vs {
        let listed: u64 = v.files.iter().chain(&v.companions).map(|f| f.size).sum();
        assert_eq!(v.total_size, listed, "{}", v.name);
    }
    // Best first within a format: the Q8_0 (named Q4_K_M) leads the GGUF variants.
    assert_eq!(vs[0].name, "Q8_0");

    let q5 = by_name(&vs, "Q5_K_M");
    assert!(!q5.complete);
    assert_eq!(q5.split.as_ref().unwrap().missing, vec![2]);
    assert!(
        q5.warnings
            .iter()
            .any(|w| w.kind == WarningKind::IncompleteSplit)
    );

    let st = vs
        .iter()
        .find(|v| v.format == VariantFormat::Safetensors)
        .unwrap();
    assert_eq!(st.quant.as_deref(), Some("BF16"));
    let shape = st.shape.as_ref().unwrap();
    assert_eq!(shape.block_count, Some(4));
    assert_eq!(shape.kv_cache_bytes_per_token, Some(4 * 2 * 2 * 64 * 2));
    assert!(
        vs.iter()
            .any(|v| v.format == VariantFormat::Onnx && v.quant.as_deref() == Some("q4"))
    );
    assert!(
        vs.iter()
            .all(|v| !v.files.iter().any(|f| f.path.contains("mmproj")))
    );

    // Stable serialised form.
    let summary: Vec<_> = vs
        .iter()
        .map(|v| {
            serde_json::json!({
                "id": v.id, "name": v.name, "format": v.format, "quant": v.quant,
                "name_quant": v.name_quant,
                "files": v.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
                "complete": v.complete, "split": v.split,
                "companions": v.companions.iter().map(|c| &c.path).collect::<Vec<_>>(),
                "projectors": v.projectors.iter().map(|c| &c.path).collect::<Vec<_>>(),
                "warnings": v.warnings,
            })
        })
        .collect();
    insta::assert_json_snapshot!("mixed_repo_variants", summary);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_multi_gigabyte_gguf_header_costs_only_its_own_bytes() {
    let size = 2_300_000_000u64;
    let mut spec = GgufSpec::llama("Huge-Model", LlamaFileType::Q4_K_M, size);
    spec.set_vocab(150_000);
    let (header, _) = spec.header();
    let header_len = header.len() as u64;
    let mut repo = Repo::new(RepoKind::Model, "test/huge");
    repo.commit(
        "main",
        "add",
        vec![FileChange::put("huge-Q4_K_M.gguf", spec.build())],
    );
    let emu = Emulator::start(EmulatorConfig {
        repos: vec![repo],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client_for(&emu).await;
    let repo_id = RepoId::model("test/huge").unwrap();
    let meta = client
        .file_metadata(&repo_id, "main", "huge-Q4_K_M.gguf")
        .await
        .unwrap();
    assert!(meta.size > 2 << 30);
    emu.log().clear();
    let src = HubSource::new(
        client.clone(),
        meta.download_url,
        meta.size,
        "huge",
        Some(meta.etag),
    );
    let limits = gguf::ReadLimits::default();
    let h = gguf::read_header(&src, limits).await.unwrap();
    let s = h.summary();
    assert_eq!(h.data_offset, header_len);
    assert_eq!(s.vocab_size, Some(150_000));
    assert_eq!(s.quant.as_deref(), Some("Q4_K_M"));
    assert!(h.data_end().unwrap() <= meta.size);
    let read = src.bytes_read();
    let served = emu.bytes_served();
    // Each step at most doubles the prefix, so the last step is at most half of what was read:
    // read < header + one growth step.
    let last_step = read / 2;
    assert!(read >= h.header_end);
    assert!(
        read < header_len + last_step.max(limits.initial_bytes),
        "read {read}, header {header_len}"
    );
    assert_eq!(
        served, read,
        "the emulator served exactly what the reader counted"
    );
    eprintln!(
        "header {header_len} bytes of a {} byte file: read {read} bytes in {} requests",
        meta.size,
        src.requests()
    );
    emu.shutdown().await;
}
