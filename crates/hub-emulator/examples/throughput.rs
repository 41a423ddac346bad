//! Prints how fast the emulator generates and serves bytes (no caps, loopback).
//!
//! `cargo run --release -p hub-emulator --example throughput [SIZE_GIB] [STREAMS]`
//! The figures are printed, never asserted.

use std::time::Instant;

use hub_emulator::generate::VirtualFile;
use hub_emulator::{Emulator, EmulatorConfig, FileChange, Repo, RepoKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let gib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let streams: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let size = gib << 30;

    let file = VirtualFile::random(size, 1);
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut off = 0;
    while off < size.min(2 << 30) {
        off += file.read_at(off, &mut buf) as u64;
    }
    println!(
        "generator: {:.2} GB/s",
        off as f64 / t.elapsed().as_secs_f64() / 1e9
    );

    let mut repo = Repo::new(RepoKind::Model, "bench/big");
    repo.commit("main", "big", vec![FileChange::put("big.bin", file)]);
    let config = EmulatorConfig {
        repos: vec![repo],
        ..EmulatorConfig::default()
    };
    let emu = Emulator::start(config).await?;
    let t = Instant::now();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let r = client
        .head(format!("{}/bench/big/resolve/main/big.bin", emu.url()))
        .send()
        .await?;
    let location = r.headers()["location"].to_str()?.to_string();
    println!(
        "first HEAD (hashing or hash cache): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let path = reqwest::Url::parse(&location)?.path().to_string();

    // A raw HTTP/1.1 reader, so the client costs as little as possible.
    let t = Instant::now();
    let per = size / streams;
    let mut tasks = Vec::new();
    for i in 0..streams {
        let addr = emu.cdn_addr();
        let path = path.clone();
        let (start, end) = (
            i * per,
            if i + 1 == streams {
                size - 1
            } else {
                (i + 1) * per - 1
            },
        );
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nRange: bytes={start}-{end}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await?;
            let mut buf = vec![0u8; 1 << 20];
            let mut n = 0u64;
            loop {
                let k = s.read(&mut buf).await?;
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "CDN: {streams} streams, {:.2} GB in {secs:.2} s = {:.2} GB/s (served {} bytes)",
        total as f64 / 1e9,
        total as f64 / secs / 1e9,
        emu.bytes_served()
    );
    emu.shutdown().await;
    Ok(())
}
