//! `mcache convert` on a checkpoint of a few hundred MiB: the output is complete, and the
//! process's peak resident memory (its `ru_maxrss`, which is `VmHWM`) stays within 256 MiB plus
//! the largest tensor — well under the checkpoint's size, so a converter that read the whole
//! model into memory would fail here. Also: the refusals and hints the CLI prints.

#[path = "../../../model-cache/tests/convert_support/mod.rs"]
mod convert_support;

use std::process::Stdio;

use convert_support::{Dtype, ModelSpec};

use crate::common::World;

const MIB: u64 = 1 << 20;

#[expect(
    clippy::zombie_processes,
    reason = "the child is waited for with wait4(2), which std's wait cannot replace"
)]
/// Runs `command`, waits with wait4(2) and returns (exit code, stdout, stderr, peak RSS bytes).
fn run_measured(mut command: std::process::Command) -> (i32, String, String, u64) {
    use std::io::Read;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe_zeroed_rusage();
    let pid = child.id() as libc::pid_t;
    let waited = wait4(pid, &mut status, &mut usage);
    assert_eq!(waited, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // Linux reports ru_maxrss in KiB.
    (code, stdout, stderr, usage.ru_maxrss as u64 * 1024)
}

#[expect(unsafe_code, reason = "libc::rusage has no safe constructor")]
fn unsafe_zeroed_rusage() -> libc::rusage {
    // SAFETY: rusage is plain integers; all zeros is a valid value.
    unsafe { std::mem::zeroed() }
}

#[expect(
    unsafe_code,
    reason = "std has no wait4(2), which reports the child's peak memory"
)]
fn wait4(pid: libc::pid_t, status: &mut i32, usage: &mut libc::rusage) -> libc::pid_t {
    // SAFETY: pid is our own child, not waited for yet; the pointers are valid for the call.
    unsafe { libc::wait4(pid, status, 0, usage) }
}

#[test]
fn converting_a_few_hundred_mib_keeps_memory_bounded() {
    let world = World::new();
    let source = world.dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let (tokenizer, tokens) =
        convert_support::byte_level_tokenizer(convert_support::LLAMA3_SPLIT, 100);
    let spec = ModelSpec {
        architecture: "LlamaForCausalLM",
        hidden: 1024,
        intermediate: 2816,
        layers: 18,
        heads: 16,
        kv_heads: 4,
        vocab: 8192u64.max(tokens as u64),
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
    convert_support::write_big_bf16_safetensors(&source, &spec, 9);
    let checkpoint = std::fs::metadata(source.join("model.safetensors"))
        .unwrap()
        .len();
    let largest = spec.vocab * spec.hidden * 2;
    assert!(checkpoint > 400 * MIB, "{checkpoint}");
    convert_support::place_in_cache(&world.hub_cache(), "test/big-llama", &source);

    let out = world.dir.path().join("big.gguf");
    let mut command = world.command();
    command
        .args([
            "--json",
            "convert",
            "test/big-llama",
            "--type",
            "q8_0",
            "--out",
        ])
        .arg(&out);
    let (code, stdout, stderr, peak) = run_measured(command);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let record: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(record["output"], serde_json::json!(out));
    assert_eq!(record["type"], "q8_0");
    assert_eq!(record["commit"], "c0ffee0000000000000000000000000000000001");
    let size = std::fs::metadata(&out).unwrap().len();
    assert_eq!(record["bytes"], size);
    // Q8_0 is 34 bytes per 32 weights: a little over half the BF16 source.
    assert!(
        size > checkpoint / 2 && size < checkpoint * 6 / 10,
        "{size} of {checkpoint}"
    );
    let bound = 256 * MIB + largest;
    eprintln!(
        "peak RSS {} MiB converting {} MiB (bound {} MiB)",
        peak / MIB,
        checkpoint / MIB,
        bound / MIB
    );
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
}

#[test]
fn convert_refuses_what_it_cannot_do_and_says_what_to_do() {
    let world = World::new();
    // Not in the cache.
    let run = world.run(&["convert", "demo/tiny-gguf", "--type", "f16"]);
    run.code(3);
    assert!(
        run.stderr.contains("mcache pull demo/tiny-gguf"),
        "{}",
        run.stderr
    );
    // An ONNX model.
    let source = world.dir.path().join("onnx");
    std::fs::create_dir_all(source.join("onnx")).unwrap();
    std::fs::write(source.join("config.json"), b"{}").unwrap();
    std::fs::write(source.join("onnx/model.onnx"), b"onnx").unwrap();
    convert_support::place_in_cache(&world.hub_cache(), "test/onnx", &source);
    let run = world.run(&["convert", "test/onnx"]);
    run.code(1);
    assert!(
        run.stderr
            .contains("There is no standard converter from ONNX to GGUF"),
        "{}",
        run.stderr
    );
    // A bad type is a usage error.
    world
        .run(&["convert", "test/onnx", "--type", "q4_k_m"])
        .code(2);
}
