//! safetensors headers: the emulator's writer, hand-written broken headers, the two-step remote
//! read, and the shard index.

use hub_emulator::generate::{SafetensorsSpec, SafetensorsTensor, safetensors_index};
use hub_emulator::{Emulator, EmulatorConfig, FileChange, Repo, RepoKind};
use model_cache::RepoId;
use model_cache::formats::safetensors::{self, SafetensorsError};
use model_cache::formats::{ByteSource, HubSource, MemorySource};
use model_cache::hub::HubClient;
use model_cache::settings::{RetryPolicy, Settings};

fn file(json: &str, data: usize) -> Vec<u8> {
    let mut v = (json.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v.resize(v.len() + data, 0);
    v
}

#[tokio::test]
async fn generated_files_parse_with_dtypes_and_parameters() {
    let spec = SafetensorsSpec::transformer(0, 2, 400_000, 1);
    let vf = spec.build();
    let bytes = vf.to_vec();
    let src = MemorySource::new("model.safetensors", bytes.clone());
    let h = safetensors::read_header(&src).await.unwrap();
    let s = h.summary();
    let params: u64 = spec
        .tensors
        .iter()
        .map(|t| t.shape.iter().product::<u64>())
        .sum();
    assert_eq!(s.parameter_count, params);
    assert_eq!(s.tensor_count, spec.tensors.len() as u64);
    assert_eq!(s.data_bytes, spec.data_size());
    assert_eq!(s.dtype.as_deref(), Some("BF16"));
    assert_eq!(8 + s.header_len + s.data_bytes, bytes.len() as u64);
}

#[test]
fn offsets_must_be_contiguous_sorted_and_in_bounds() {
    let ok = r#"{"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}"#;
    let h = safetensors::parse_bytes("ok", &file(ok, 12), file(ok, 12).len() as u64).unwrap();
    assert_eq!(h.tensors[0].name, "a");
    assert_eq!(h.metadata["format"], "pt");

    let cases = [
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            "contiguous",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            "contiguous",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8,
            "needs 12 bytes",
        ),
        (
            r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
            8,
            "unknown dtype",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            20,
            "file holds 20",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            8,
            "end before",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
            8,
            "overflows",
        ),
        (r#"{"__metadata__":{"a":1}}"#, 0, "not a string"),
    ];
    for (json, data, needle) in cases {
        let f = file(json, data);
        let e = safetensors::parse_bytes("bad", &f, f.len() as u64).unwrap_err();
        assert!(e.to_string().contains(needle), "{json}: {e}");
    }
    let not_json = file("{nope", 0);
    assert!(matches!(
        safetensors::parse_bytes("x", &not_json, not_json.len() as u64),
        Err(SafetensorsError::Json { .. })
    ));
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.push(b'{');
    assert!(matches!(
        safetensors::parse_bytes("x", &huge, huge.len() as u64),
        Err(SafetensorsError::HeaderTooLarge { .. })
    ));
    let mut short = 1000u64.to_le_bytes().to_vec();
    short.extend_from_slice(b"{}");
    assert!(matches!(
        safetensors::parse_bytes("x", &short, short.len() as u64),
        Err(SafetensorsError::Truncated { .. })
    ));
}

#[test]
fn the_shard_index_gives_the_shard_set() {
    let s1 = SafetensorsSpec::transformer(0, 1, 100_000, 1);
    let s2 = SafetensorsSpec::transformer(1, 1, 100_000, 2);
    let json = safetensors_index(&[
        ("a-00001-of-00002.safetensors".into(), &s1),
        ("a-00002-of-00002.safetensors".into(), &s2),
    ]);
    let ix = safetensors::parse_index("a.safetensors.index.json", json.as_bytes()).unwrap();
    assert_eq!(ix.shards.len(), 2);
    assert_eq!(ix.total_size, Some(s1.data_size() + s2.data_size()));
    assert_eq!(ix.weight_map.len(), s1.tensors.len() + s2.tensors.len());
    let evil = r#"{"weight_map":{"x":"../../etc/passwd"}}"#;
    assert!(safetensors::parse_index("i", evil.as_bytes()).is_err());
}

#[tokio::test]
async fn remote_header_reads_100k_then_exactly_the_rest() {
    // A header of about 300 kB: many tensors with long names.
    let mut spec = SafetensorsSpec::transformer(0, 1, 10_000, 3);
    for i in 0..3000 {
        spec.tensors.push(SafetensorsTensor::new(
            format!("model.layers.{i}.some_rather_long_tensor_name_for_a_big_header.weight"),
            "F16",
            &[4, 4],
        ));
    }
    let (header, _) = spec.header();
    assert!(header.len() > 200_000);
    let small = SafetensorsSpec::transformer(0, 1, 50_000, 4);
    let mut repo = Repo::new(RepoKind::Model, "test/st");
    repo.commit(
        "main",
        "add",
        vec![
            FileChange::put("big-header.safetensors", spec.build()),
            FileChange::put("small.safetensors", small.build()),
        ],
    );
    let emu = Emulator::start(EmulatorConfig {
        repos: vec![repo],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut settings = Settings::new("/nonexistent-cache".into(), "/nonexistent-data".into());
    settings.endpoint = emu.url();
    settings.retry = RetryPolicy::immediate();
    let client = HubClient::new(&settings).unwrap();
    let repo_id = RepoId::model("test/st").unwrap();
    for (name, expected_read) in [
        ("big-header.safetensors", header.len() as u64),
        ("small.safetensors", 100_001),
    ] {
        let meta = client.file_metadata(&repo_id, "main", name).await.unwrap();
        emu.log().clear();
        let src = HubSource::new(
            client.clone(),
            meta.download_url,
            meta.size,
            name,
            Some(meta.etag),
        );
        let h = safetensors::read_header(&src).await.unwrap();
        assert!(h.summary().tensor_count > 0);
        assert_eq!(
            src.bytes_read(),
            expected_read.max(100_001).min(src.len()),
            "{name}"
        );
        assert_eq!(emu.bytes_served(), src.bytes_read(), "{name}");
        let expected_requests = if expected_read > 100_001 { 2 } else { 1 };
        assert_eq!(src.requests(), expected_requests, "{name}");
    }
    emu.shutdown().await;
}
