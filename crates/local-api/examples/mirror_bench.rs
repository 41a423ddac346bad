//! The mirror's benchmark: prints figures, asserts nothing.
//!
//! ```text
//! cargo run --release -p local-api --example mirror_bench -- [--size 4GiB] [--clients 8] [--runs 2]
//! ```
//!
//! Pulls one generated file (`demo/big`, about `--size`) from the hub emulator into a fresh cache,
//! then serves it to `--clients` `curl`s at once, alternately from Debian's `nginx` (`sendfile`,
//! a worker per core, the same blob file on disk) and from the mirror, each in processes of its
//! own. Prints the
//! aggregate MB/s and the serving process's peak RSS (`VmHWM`), and the mirror's figures as
//! ratios of nginx's from the same command. The file is read once before the first run, so both
//! serve from the page cache.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use hub_emulator::faults::parse_size;
use hub_emulator::{Emulator, EmulatorConfig};
use model_cache::Settings;
use model_cache::download::NoReporter;
use model_cache::engine::{Engine, EngineOptions, PullRequest};

const REPO: &str = "demo/big";
const FILE: &str = "big-model-Q4_K_M.gguf";

struct Options {
    size: u64,
    clients: usize,
    runs: usize,
}

fn options() -> Options {
    let mut options = Options {
        size: 4 << 30,
        clients: 8,
        runs: 2,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_else(|| {
            eprintln!("`{}` needs a value", args[i]);
            std::process::exit(2)
        });
        match args[i].as_str() {
            "--size" => {
                options.size = parse_size(&value).unwrap_or_else(|| {
                    eprintln!("Invalid size `{value}`");
                    std::process::exit(2)
                })
            }
            "--clients" => options.clients = value.parse().expect("a number of clients"),
            "--runs" => options.runs = value.parse().expect("a number of runs"),
            "--serve-child" => {
                serve_child(Path::new(&value));
                return options;
            }
            other => {
                eprintln!("Unknown option `{other}`");
                std::process::exit(2)
            }
        }
        i += 2;
    }
    options
}

fn main() {
    let options = options();
    let nginx = which("nginx").unwrap_or_else(|| {
        eprintln!(
            "nginx is not installed; hint: apt-get install nginx (the baseline of this benchmark)"
        );
        std::process::exit(2)
    });
    which("curl").unwrap_or_else(|| {
        eprintln!("curl is not installed; hint: apt-get install curl");
        std::process::exit(2)
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (blob, commit) = runtime.block_on(fill_cache(dir.path(), options.size));
    let size = std::fs::metadata(&blob).expect("blob").len();
    // Both servers read from the page cache.
    let mut file = std::fs::File::open(&blob).expect("blob");
    std::io::copy(&mut file, &mut std::io::sink()).expect("read the blob");
    println!(
        "mirror benchmark: one {:.2} GiB file to {} clients at once, {} runs each, alternating",
        size as f64 / (1u64 << 30) as f64,
        options.clients,
        options.runs
    );
    let mut figures: Vec<(&str, f64, u64)> = Vec::new();
    for run in 0..options.runs {
        let (rate, rss) = run_nginx(&nginx, dir.path(), &blob, size, options.clients);
        println!(
            "  run {}: nginx  {:7.0} MB/s, peak RSS {:4} MiB",
            run + 1,
            rate / 1e6,
            rss >> 20
        );
        figures.push(("nginx", rate, rss));
        let (rate, rss) = run_mirror(dir.path(), &commit, size, options.clients);
        println!(
            "  run {}: mirror {:7.0} MB/s, peak RSS {:4} MiB",
            run + 1,
            rate / 1e6,
            rss >> 20
        );
        figures.push(("mirror", rate, rss));
    }
    let best = |name: &str| {
        figures
            .iter()
            .filter(|f| f.0 == name)
            .map(|f| (f.1, f.2))
            .fold((0.0f64, 0u64), |a, b| (a.0.max(b.0), a.1.max(b.1)))
    };
    let (nginx_rate, nginx_rss) = best("nginx");
    let (mirror_rate, mirror_rss) = best("mirror");
    println!(
        "best: nginx {:.0} MB/s, mirror {:.0} MB/s = {:.2}x nginx; peak RSS nginx {} MiB, mirror {} MiB",
        nginx_rate / 1e6,
        mirror_rate / 1e6,
        mirror_rate / nginx_rate,
        nginx_rss >> 20,
        mirror_rss >> 20
    );
}

fn which(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Pulls the generated file into `<dir>/hub` (the engine's downloader, verified); returns the
/// blob's path and the commit.
async fn fill_cache(dir: &Path, size: u64) -> (PathBuf, String) {
    let emulator = Emulator::start(EmulatorConfig::demo_with_big_size(size))
        .await
        .expect("emulator");
    let engine =
        Engine::open(settings(dir, Some(emulator.url())), EngineOptions::system()).expect("engine");
    let request = PullRequest {
        files: vec![FILE.into()],
        ..PullRequest::repo(REPO.parse().expect("repo"))
    };
    let plan = engine.plan_pull(&request).await.expect("plan");
    let started = Instant::now();
    engine
        .download(&plan, Arc::new(NoReporter))
        .wait()
        .await
        .expect("download");
    eprintln!(
        "  (pulled the file in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let repo = REPO.parse().expect("repo");
    let commit = engine.cached_commit(&repo, "main").expect("cached");
    let file = engine.served_file(&repo, &commit, FILE).expect("served");
    engine.shutdown();
    emulator.shutdown().await;
    (std::fs::canonicalize(&file.local).expect("blob"), commit)
}

fn settings(dir: &Path, endpoint: Option<String>) -> Settings {
    let mut settings = Settings::new(dir.join("hub"), dir.join("data"));
    if let Some(endpoint) = endpoint {
        settings.endpoint = endpoint;
    } else {
        settings.offline = true;
    }
    settings
}

/// The child process: the mirror alone over the cache in `dir`, offline; prints its URL and
/// token, serves until stdin closes.
fn serve_child(dir: &Path) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let engine = Engine::open(settings(dir, None), EngineOptions::system()).expect("engine");
        let mut config = local_api::MirrorConfig::new(dir.join("data"));
        config.bind = "127.0.0.1:0".parse().expect("addr");
        let mirror = local_api::serve_mirror(engine, config)
            .await
            .expect("mirror");
        println!("{} {}", mirror.url(), mirror.token().expose());
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await
        .expect("stdin");
        mirror.shutdown().await;
    });
    std::process::exit(0);
}

/// `clients` curls fetching `url` at once; the aggregate bytes per second.
fn fetch_all(url: &str, token: Option<&str>, size: u64, clients: usize) -> f64 {
    let started = Instant::now();
    let children: Vec<Child> = (0..clients)
        .map(|_| {
            let mut cmd = Command::new("curl");
            cmd.args(["-s", "-f", "-o", "/dev/null", "-w", "%{size_download}", url]);
            if let Some(token) = token {
                cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
            }
            cmd.stdout(Stdio::piped()).spawn().expect("curl")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("curl");
        let got: u64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(
            output.status.success() && got == size,
            "a client got {got} of {size} bytes"
        );
    }
    (size * clients as u64) as f64 / started.elapsed().as_secs_f64()
}

/// Peak resident set of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run_nginx(nginx: &Path, dir: &Path, blob: &Path, size: u64, clients: usize) -> (f64, u64) {
    let port = free_port();
    let conf_dir = dir.join("nginx");
    std::fs::create_dir_all(&conf_dir).expect("nginx dir");
    let conf = conf_dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes auto;\nerror_log {log} warn;\npid {pid};\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
               client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n\
               fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port} reuseport;\n    location = /file {{ alias {blob}; }}\n  }}\n}}\n",
            log = conf_dir.join("error.log").display(),
            pid = conf_dir.join("nginx.pid").display(),
            tmp = conf_dir.display(),
            blob = blob.display(),
        ),
    )
    .expect("nginx.conf");
    let mut server = Command::new(nginx)
        .args(["-c"])
        .arg(&conf)
        .args(["-p"])
        .arg(&conf_dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx");
    let url = format!("http://127.0.0.1:{port}/file");
    wait_ready(&url, None);
    let rate = fetch_all(&url, None, size, clients);
    // The master and its workers (one per core), together.
    let children = std::fs::read_to_string(format!(
        "/proc/{pid}/task/{pid}/children",
        pid = server.id()
    ))
    .unwrap_or_default();
    let rss = peak_rss(server.id())
        + children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(peak_rss)
            .sum::<u64>();
    // A graceful stop, so the workers go with the master.
    let _ = Command::new("kill")
        .args(["-QUIT", &server.id().to_string()])
        .status();
    let _ = server.wait();
    (rate, rss)
}

fn run_mirror(dir: &Path, commit: &str, size: u64, clients: usize) -> (f64, u64) {
    let exe = std::env::current_exe().expect("own path");
    let mut server = Command::new(exe)
        .arg("--serve-child")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mirror");
    let mut line = String::new();
    {
        use std::io::BufRead;
        let stdout = server.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the mirror's URL");
    }
    let (url, token) = line.trim().split_once(' ').expect("url and token");
    let url = format!("{url}/{REPO}/resolve/{commit}/{FILE}");
    wait_ready(&url, Some(token));
    let idle = peak_rss(server.id());
    let rate = fetch_all(&url, Some(token), size, clients);
    let rss = peak_rss(server.id());
    eprintln!(
        "    (the mirror's process peaked at {} MiB before the clients: the engine and index)",
        idle >> 20
    );
    drop(server.stdin.take());
    let _ = server.wait();
    (rate, rss)
}

fn wait_ready(url: &str, token: Option<&str>) {
    for _ in 0..100 {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-f", "-I", "-o", "/dev/null", url]);
        if let Some(token) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if cmd.status().is_ok_and(|s| s.success()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{url} did not answer");
}
