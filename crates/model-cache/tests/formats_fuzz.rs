//! Property tests: random and mutated GGUF and safetensors headers never panic and never make the
//! parser allocate much more than the input it was given.
//!
//! A counting global allocator measures the peak bytes allocated on the parsing thread. The
//! bounded run (`cargo test`) uses 2000 cases per property; a longer run:
//! `PROPTEST_CASES=200000 cargo test -p model-cache --test formats_fuzz`.

// The counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to the system one.
#![allow(unsafe_code)]

mod formats_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use formats_support::{V, Writer};
use model_cache::formats::{gguf, safetensors};
use proptest::prelude::*;

struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to `System` unchanged; the thread-local counters are const-
// initialised `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = CURRENT.try_with(|c| {
            let n = c.get() + layout.size() as isize;
            c.set(n);
            let _ = PEAK.try_with(|p| p.set(p.get().max(n)));
        });
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = CURRENT.try_with(|c| c.set(c.get() - layout.size() as isize));
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated (above the starting point) while running `f` on this thread.
fn peak_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = CURRENT.with(|c| c.get());
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(|p| p.get()) - start;
    (out, peak.max(0) as usize)
}

/// What parsing `n` input bytes may allocate: values are a few times their encoding, plus a
/// fixed allowance for error messages and the first vector growth.
fn budget(n: usize) -> usize {
    64 * n + (1 << 20)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

fn valid_gguf() -> Vec<u8> {
    Writer::new()
        .kv("general.architecture", V::s("llama"))
        .kv("general.file_type", V::U32(15))
        .kv("general.alignment", V::U32(32))
        .kv("llama.block_count", V::U64(2))
        .kv("flag", V::Bool(1))
        .kv("f", V::F64(1.0))
        .kv(
            "tokenizer.ggml.tokens",
            V::Arr(8, (0..40).map(|i| V::Str(format!("tok{i}"))).collect()),
        )
        .kv(
            "nested",
            V::Arr(
                9,
                vec![
                    V::Arr(4, vec![V::U32(1), V::U32(2)]),
                    V::Arr(8, vec![V::s("x")]),
                ],
            ),
        )
        .kv(
            "scores",
            V::Arr(6, (0..40).map(|i| V::F32(i as f32)).collect()),
        )
        .tensor("token_embd.weight", &[256, 4], 12)
        .tensor("output_norm.weight", &[256], 0)
        .tensor("blk.0.attn_q.weight", &[64, 8], 8)
        .build()
}

fn check_gguf(bytes: &[u8]) -> Result<(), TestCaseError> {
    for file_len in [
        Some(bytes.len() as u64),
        None,
        Some(1u64 << 40),
        Some(u64::MAX),
    ] {
        let (result, peak) =
            peak_alloc(|| gguf::parse_header(bytes, file_len).map(|h| h.summary()));
        prop_assert!(
            peak <= budget(bytes.len()),
            "allocated {peak} bytes for {} input bytes ({result:?})",
            bytes.len()
        );
        if let Err(e) = result {
            // Every error renders (names its field) without panicking.
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

/// Overwrites `at` with one of the values that break parsers: huge lengths, counts, types.
fn poison(bytes: &mut [u8], at: usize, kind: u8) {
    let values: [u64; 6] = [u64::MAX, 1 << 62, 0xFFFF_FFFF, 1 << 32, 13, 0];
    let v = values[kind as usize % values.len()];
    let le = v.to_le_bytes();
    let width = if kind.is_multiple_of(2) { 8 } else { 4 };
    for (i, b) in le.iter().take(width).enumerate() {
        if let Some(slot) = bytes.get_mut(at + i) {
            *slot = *b;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048), magic in any::<bool>()) {
        let mut bytes = if magic { b"GGUF\x03\0\0\0".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        check_gguf(&bytes)?;
    }

    #[test]
    fn mutated_headers_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        poisons in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        big_endian in any::<bool>(),
    ) {
        let mut bytes = valid_gguf();
        if big_endian {
            bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        }
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        for (i, kind) in poisons {
            let at = i.index(bytes.len());
            poison(&mut bytes, at, kind);
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(bytes.len() * 3 / 4).min(bytes.len()));
        check_gguf(&bytes)?;
        check_gguf(&bytes[..keep])?;
    }

    #[test]
    fn mutated_safetensors_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        len_delta in -64i64..64,
    ) {
        let json = r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]},"__metadata__":{"format":"pt"}}"#;
        let mut bytes = ((json.len() as i64 + len_delta).max(0) as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        bytes.resize(bytes.len() + 24, 0);
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let (result, peak) = peak_alloc(|| safetensors::parse_bytes("fuzz", &bytes, bytes.len() as u64));
        prop_assert!(peak <= budget(bytes.len()), "allocated {peak}");
        if let Ok(h) = result {
            let s = h.summary();
            prop_assert!(s.data_bytes + 8 + s.header_len == bytes.len() as u64);
        }
    }
}

#[test]
fn the_allocation_meter_sees_allocations() {
    // Guards the guard: a meter that always read 0 would pass every property above.
    let (_, peak) = peak_alloc(|| vec![0u8; 5 << 20]);
    assert!(peak >= 5 << 20);
    let (_, peak) = peak_alloc(|| gguf::parse_header(&valid_gguf(), None).unwrap());
    assert!(peak > 0);
}
