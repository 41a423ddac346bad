//! GGUF header parsing: cross-checked against the emulator's independent writer for every quant,
//! and against hand-written bytes for the cases the emulator does not produce (big-endian,
//! version 2, nested arrays, broken headers).

mod formats_support;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use formats_support::{V, Writer};
use hub_emulator::generate::{GgufSpec, LlamaFileType, VirtualFile};
use model_cache::formats::ggml::{FileType, GgmlType};
use model_cache::formats::gguf::{self, Endian, ParseError, ReadLimits, Value};
use model_cache::formats::{ByteSource, MemorySource, SourceError, inspect_path};

/// A generated file read at offsets, counting what the parser asked for.
struct Virtual {
    file: VirtualFile,
    read: AtomicU64,
}

impl ByteSource for Virtual {
    fn len(&self) -> u64 {
        self.file.size()
    }
    fn name(&self) -> &str {
        "virtual.gguf"
    }
    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes, SourceError> {
        assert!(offset + len <= self.file.size(), "read past the end");
        let mut buf = vec![0u8; len as usize];
        self.file.read_at(offset, &mut buf);
        self.read.fetch_add(len, Ordering::Relaxed);
        Ok(Bytes::from(buf))
    }
    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

fn virtual_source(file: VirtualFile) -> Virtual {
    Virtual {
        file,
        read: AtomicU64::new(0),
    }
}

#[tokio::test]
async fn every_generated_quant_parses_with_its_name_and_exact_data_size() {
    let mut checked = 0;
    for ft in LlamaFileType::all() {
        let name = ft.name().unwrap();
        let spec = GgufSpec::llama("Tiny", ft, 400_000);
        let (header_bytes, _) = spec.header();
        let expected_data: u64 = spec.tensors.iter().map(|t| t.data_bytes()).sum();
        let expected_params: u64 = spec.tensors.iter().map(|t| t.elements()).sum();
        let src = virtual_source(spec.build());
        let (header, s) = gguf::inspect(&src).await.unwrap();
        assert_eq!(s.quant.as_deref(), Some(name), "quant of {name}");
        assert_eq!(s.file_type, Some(ft.0));
        assert_eq!(
            s.tensor_data_bytes,
            Some(expected_data),
            "data bytes of {name}"
        );
        assert_eq!(s.parameter_count, expected_params, "params of {name}");
        assert_eq!(
            header.data_offset,
            header_bytes.len() as u64,
            "data offset of {name}"
        );
        assert!(header.data_end().unwrap() <= src.len());
        assert_eq!(s.architecture.as_deref(), Some("llama"));
        assert!(s.context_length.is_some() && s.block_count.is_some());
        assert!(s.kv_cache_bytes_per_token.unwrap() > 0);
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} file types generated");
}

#[test]
fn every_ggml_type_in_the_table_gets_its_exact_size() {
    // One tensor per type, two blocks by three rows; types the emulator's generator lacks
    // (NVFP4, Q1_0) are covered too.
    let mut w = Writer::new();
    fn block(t: u32) -> (u64, u64) {
        GgmlType(t).block_size().unwrap()
    }
    w.block = block;
    let mut expected = Vec::new();
    for t in GgmlType::all() {
        let (e, b) = t.block_size().unwrap();
        w = w.tensor(&format!("t{}", t.0), &[e * 2, 3], t.0);
        expected.push((t, 2 * 3 * b));
    }
    let bytes = w.build();
    let h = gguf::parse_header(&bytes, Some(bytes.len() as u64)).unwrap();
    for (info, (t, size)) in h.tensors.iter().zip(&expected) {
        assert_eq!(info.ggml_type, *t);
        assert_eq!(info.n_bytes, Some(*size), "{}", t.display_name());
    }
    let s = h.summary();
    assert_eq!(
        s.tensor_data_bytes,
        Some(expected.iter().map(|e| e.1).sum())
    );
    // Table spot checks from formats.md §3.
    assert_eq!(
        GgmlType::from_name("Q4_K").unwrap().block_size(),
        Some((256, 144))
    );
    assert_eq!(
        GgmlType::from_name("NVFP4").unwrap().block_size(),
        Some((64, 36))
    );
    assert_eq!(
        GgmlType::from_name("Q1_0").unwrap().block_size(),
        Some((128, 18))
    );
}

#[test]
fn every_file_type_in_the_table_is_named() {
    for (id, name) in [
        (0, "F32"),
        (1, "F16"),
        (7, "Q8_0"),
        (15, "Q4_K_M"),
        (30, "IQ4_XS"),
        (32, "BF16"),
        (38, "MXFP4_MOE"),
        (39, "NVFP4"),
        (40, "Q1_0"),
    ] {
        let bytes = Writer::new()
            .kv("general.file_type", V::U32(id))
            .tensor("w", &[32, 2], 0)
            .build();
        let s = gguf::parse_header(&bytes, None).unwrap().summary();
        assert_eq!(s.quant.as_deref(), Some(name));
        assert_eq!(FileType(id).name(), Some(name));
    }
}

fn llama_writer() -> Writer {
    Writer::new()
        .kv("general.architecture", V::s("llama"))
        .kv("general.name", V::s("Hand Made"))
        .kv("general.size_label", V::s("1B"))
        .kv("general.file_type", V::U32(7))
        .kv("general.quantization_version", V::U32(2))
        .kv("llama.context_length", V::U32(8192))
        .kv("llama.block_count", V::U32(16))
        .kv("llama.embedding_length", V::U32(2048))
        .kv("llama.attention.head_count", V::U32(32))
        .kv("llama.attention.head_count_kv", V::U32(8))
        .kv(
            "tokenizer.ggml.tokens",
            V::Arr(8, vec![V::s("<s>"), V::s("</s>"), V::s("hi")]),
        )
        .tensor("token_embd.weight", &[2048, 4], 8)
        .tensor("blk.0.attn_norm.weight", &[2048], 0)
}

#[test]
fn big_endian_and_little_endian_files_give_the_same_summary() {
    let le = llama_writer();
    let mut be = le.clone();
    be.big_endian = true;
    let le_bytes = le.build();
    let be_bytes = be.build();
    assert_ne!(le_bytes, be_bytes);
    let hl = gguf::parse_header(&le_bytes, Some(le_bytes.len() as u64)).unwrap();
    let hb = gguf::parse_header(&be_bytes, Some(be_bytes.len() as u64)).unwrap();
    assert_eq!(hl.endian, Endian::Little);
    assert_eq!(hb.endian, Endian::Big);
    let (mut sl, sb) = (hl.summary(), hb.summary());
    assert_eq!(sb.endian, Endian::Big);
    sl.endian = Endian::Big;
    assert_eq!(sl, sb);
    assert_eq!(sb.quant.as_deref(), Some("Q8_0"));
    assert_eq!(sb.context_length, Some(8192));
    assert_eq!(sb.head_count_kv, Some(8));
    // key/value length default to embedding / heads = 64: 16 layers × 8 × 128 × 2 bytes.
    assert_eq!(sb.key_length, Some(64));
    assert_eq!(sb.kv_cache_bytes_per_token, Some(16 * 8 * 128 * 2));
    assert_eq!(sb.parameter_count, 2048 * 4 + 2048);
    assert_eq!(sb.vocab_size, Some(3));
}

#[test]
fn version_2_parses_and_version_1_is_refused() {
    let mut w = llama_writer();
    w.version = 2;
    let bytes = w.build();
    assert_eq!(gguf::parse_header(&bytes, None).unwrap().version, 2);
    w.version = 1;
    let bytes = w.build();
    assert_eq!(
        gguf::parse_header(&bytes, None).unwrap_err(),
        ParseError::UnsupportedVersion { version: 1 }
    );
}

#[test]
fn all_value_types_and_nested_arrays_parse() {
    let nested = V::Arr(
        9,
        vec![
            V::Arr(4, vec![V::U32(1), V::U32(2)]),
            V::Arr(8, vec![V::s("a"), V::s("b"), V::s("c")]),
            V::Arr(9, vec![V::Arr(12, vec![V::F64(0.5)])]),
        ],
    );
    let bytes = Writer::new()
        .kv("u8", V::U8(200))
        .kv("i8", V::I8(-5))
        .kv("u16", V::U16(60000))
        .kv("i16", V::I16(-300))
        .kv("u32", V::U32(4_000_000_000))
        .kv("i32", V::I32(-70000))
        .kv("f32", V::F32(1.5))
        .kv("bool", V::Bool(1))
        .kv("str", V::s("héllo"))
        .kv("u64", V::U64(1 << 40))
        .kv("i64", V::I64(-(1 << 40)))
        .kv("f64", V::F64(-2.25))
        .kv("nested", nested)
        .kv("empty", V::Arr(0, vec![]))
        .build();
    let h = gguf::parse_header(&bytes, Some(bytes.len() as u64)).unwrap();
    assert_eq!(h.get("u8"), Some(&Value::U8(200)));
    assert_eq!(h.get("i8"), Some(&Value::I8(-5)));
    assert_eq!(h.get("u16"), Some(&Value::U16(60000)));
    assert_eq!(h.get("i16"), Some(&Value::I16(-300)));
    assert_eq!(h.get("u32"), Some(&Value::U32(4_000_000_000)));
    assert_eq!(h.get("i32"), Some(&Value::I32(-70000)));
    assert_eq!(h.get("f32"), Some(&Value::F32(1.5)));
    assert_eq!(h.get("bool"), Some(&Value::Bool(true)));
    assert_eq!(h.get("str"), Some(&Value::String("héllo".into())));
    assert_eq!(h.get("u64"), Some(&Value::U64(1 << 40)));
    assert_eq!(h.get("i64"), Some(&Value::I64(-(1 << 40))));
    assert_eq!(h.get("f64"), Some(&Value::F64(-2.25)));
    let json = h.metadata_json(16);
    assert_eq!(
        json["nested"],
        serde_json::json!([[1, 2], ["a", "b", "c"], [[0.5]]])
    );
    assert_eq!(json["empty"], serde_json::json!([]));
    assert!(h.tensors.is_empty());
    assert_eq!(h.data_offset, bytes.len() as u64);
}

#[test]
fn alignment_is_honoured_and_checked() {
    let mut w = llama_writer().kv("general.alignment", V::U32(64));
    w.alignment = 64;
    let bytes = w.build();
    let h = gguf::parse_header(&bytes, Some(bytes.len() as u64)).unwrap();
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    assert!(h.header_end <= h.data_offset && h.data_offset - h.header_end < 64);

    let bad = llama_writer().kv("general.alignment", V::U32(48)).build();
    match gguf::parse_header(&bad, None).unwrap_err() {
        ParseError::Invalid { field, .. } => assert!(field.contains("general.alignment")),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn missing_file_type_falls_back_to_the_majority_tensor_type() {
    let bytes = Writer::new()
        .kv("general.architecture", V::s("llama"))
        .tensor("a", &[256, 8], 12)
        .tensor("b", &[256, 2], 14)
        .tensor("norm", &[4096], 0)
        .build();
    let s = gguf::parse_header(&bytes, None).unwrap().summary();
    assert_eq!(s.quant.as_deref(), Some("Q4_K"));
    assert_eq!(s.quant_source, Some(gguf::QuantSource::TensorTypes));
    assert_eq!(s.file_type, None);
}

#[test]
fn split_keys_are_reported() {
    let bytes = llama_writer()
        .kv("split.no", V::U16(1))
        .kv("split.count", V::U16(3))
        .kv("split.tensors.count", V::I32(30))
        .build();
    let s = gguf::parse_header(&bytes, None).unwrap().summary();
    assert_eq!(
        (s.split_no, s.split_count, s.split_tensors_count),
        (Some(1), Some(3), Some(30))
    );
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let bytes = llama_writer().build();
    let (header, _) = llama_writer().header();
    for cut in 0..header.len() {
        let prefix = &bytes[..cut];
        // As a prefix of a longer file: more bytes are needed.
        match gguf::parse_header(prefix, Some(bytes.len() as u64)) {
            Err(ParseError::NeedMore { needed, .. }) => assert!(needed > cut as u64),
            Err(ParseError::BadMagic { .. }) => unreachable!("the magic is valid"),
            r => {
                // The padding after the last tensor info is not needed to parse.
                let h = r.unwrap();
                assert!(h.header_end <= cut as u64, "parsed at {cut}");
            }
        }
        // As the whole file: truncated, with the offset and field named.
        match gguf::parse_header(prefix, Some(cut as u64)) {
            Err(ParseError::Truncated { offset, field, .. }) => {
                // A cut inside the padding leaves the infos whole: the tensor data is missing.
                assert!(
                    offset <= cut as u64 || field == "tensor data",
                    "{field} at {offset}"
                );
                assert!(!field.is_empty());
            }
            // Counts that cannot fit in the rest of so short a file are refused up front.
            Err(ParseError::Invalid {
                offset,
                field,
                reason,
            }) => {
                assert!(offset <= cut as u64);
                assert!(!field.is_empty());
                assert!(reason.contains("cannot fit"), "{reason}");
            }
            Ok(_) => panic!("a file cut at {cut} parsed"),
            Err(e) => panic!("unexpected {e:?} at {cut}"),
        }
    }
}

#[test]
fn malformed_headers_name_the_offset_and_field() {
    let bad_magic = b"GGML\x03\0\0\0";
    assert!(matches!(
        gguf::parse_header(bad_magic, None),
        Err(ParseError::BadMagic { .. })
    ));
    let html = b"<!DOCTYPE html><html>";
    assert!(matches!(
        gguf::parse_header(html, None),
        Err(ParseError::BadMagic { .. })
    ));

    let five_dims = Writer::new().tensor("x", &[1, 1, 1, 1, 1], 0).build();
    match gguf::parse_header(&five_dims, None).unwrap_err() {
        ParseError::Invalid {
            offset,
            field,
            reason,
        } => {
            assert_eq!(offset, 24 + 8 + 1);
            assert!(field.contains("tensor info #0 `x`"), "{field}");
            assert!(reason.contains("n_dims"));
        }
        e => panic!("{e:?}"),
    }

    let bad_bool = Writer::new().kv("flag", V::Bool(2)).build();
    let e = gguf::parse_header(&bad_bool, None).unwrap_err();
    assert!(e.to_string().contains("`value of `flag``"), "{e}");

    let partial_block = Writer::new().tensor("q", &[100, 2], 12).build();
    assert!(matches!(
        gguf::parse_header(&partial_block, None),
        Err(ParseError::Invalid { .. })
    ));

    // A string that claims 2^60 bytes in a small file: refused without allocating.
    let mut huge = Writer::new().kv("k", V::s("v")).build();
    let len_at = 24 + 8 + 1 + 4;
    huge[len_at..len_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    match gguf::parse_header(&huge, Some(huge.len() as u64)).unwrap_err() {
        ParseError::Truncated { offset, needed, .. } => {
            assert_eq!(offset, len_at as u64 + 8);
            assert!(needed > 1 << 59);
        }
        e => panic!("{e:?}"),
    }

    // A tensor count no file could hold.
    let mut many = Writer::new().build();
    many[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        gguf::parse_header(&many, Some(many.len() as u64)),
        Err(ParseError::Invalid { offset: 8, .. })
    ));

    // Tensor data running past the end of the file.
    let file = llama_writer().build();
    let cut = &file[..file.len() - 1];
    match gguf::parse_header(cut, Some(cut.len() as u64)).unwrap_err() {
        ParseError::Truncated { field, .. } => assert_eq!(field, "tensor data"),
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn a_large_vocabulary_is_read_in_growing_steps_within_the_cap() {
    let mut spec = GgufSpec::llama("Vocab", LlamaFileType::Q4_K_M, 8 << 20);
    spec.set_vocab(150_000);
    let (header, _) = spec.header();
    let src = virtual_source(spec.build());
    let limits = ReadLimits::default();
    let h = gguf::read_header(&src, limits).await.unwrap();
    assert_eq!(h.data_offset, header.len() as u64);
    assert_eq!(h.summary().vocab_size, Some(150_000));
    let read = src.bytes_read();
    assert!(read >= h.header_end);
    assert!(
        read < 2 * h.header_end + limits.initial_bytes,
        "read {read}"
    );

    // A cap below the header size refuses it.
    let small = ReadLimits {
        initial_bytes: 64 << 10,
        max_header_bytes: 1 << 20,
    };
    let src = virtual_source(spec.build());
    let e = gguf::read_header(&src, small).await.unwrap_err();
    assert!(matches!(e, gguf::GgufError::HeaderTooLarge { .. }), "{e}");
    assert!(src.bytes_read() <= 1 << 20);
}

#[tokio::test]
async fn inspect_path_reads_a_local_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model-Q4_K_M.gguf");
    std::fs::write(
        &path,
        GgufSpec::llama("Local", LlamaFileType::Q4_K_M, 300_000)
            .build()
            .to_vec(),
    )
    .unwrap();
    let i = inspect_path(&path).await.unwrap();
    assert_eq!(i.format, model_cache::formats::Format::Gguf);
    let g = i.gguf.as_ref().unwrap();
    assert_eq!(g.quant.as_deref(), Some("Q4_K_M"));
    assert_eq!(i.metadata["general.architecture"], "llama");
    // Serialises for `--json`.
    let json = serde_json::to_value(&i).unwrap();
    assert_eq!(json["gguf"]["quant"], "Q4_K_M");

    let html = dir.path().join("error.gguf");
    std::fs::write(&html, "<!DOCTYPE html><html><body>Not found</body></html>").unwrap();
    let e = inspect_path(&html).await.unwrap_err();
    assert!(
        e.to_string().contains("neither a GGUF nor a safetensors"),
        "{e}"
    );
}

#[tokio::test]
async fn memory_source_counts_bytes() {
    let bytes = llama_writer().build();
    let src = MemorySource::new("m.gguf", bytes.clone());
    let h = gguf::read_header(&src, ReadLimits::default())
        .await
        .unwrap();
    assert_eq!(h.summary().name.as_deref(), Some("Hand Made"));
    assert_eq!(src.bytes_read(), bytes.len() as u64);
}
