//! `mcache peers` between two `mcache serve` on loopback (discovery on the loopback interface):
//! sharing off refuses pairing and leaves nothing listening; on, the two see each other, pair
//! with the code one shows and the other types, and a pull on one is served by the other; unpair
//! and sharing off undo it. Each machine has its own emulator (the demo catalog is the same).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{World, interrupt};

const SERVE: &[&str] = &[
    "serve",
    "--no-mirror",
    "--port",
    "0",
    "--peers-port",
    "0",
    "--peers-bind",
    "127.0.0.1",
    "--peers-discovery",
    "loopback",
];

fn serve(world: &World) -> Child {
    let mut server = world
        .command()
        .args(SERVE)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("http://127.0.0.1:"), "{line}");
    server
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "waited 20 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_machines_pair_with_a_code_and_one_serves_the_other() {
    let a = World::new();
    let b = World::new();
    let view = a.run(&["--json", "peers"]).json();
    assert_eq!(view["sharing"], false, "{view}");
    assert_eq!(
        view["compress"], false,
        "compression is off by default: {view}"
    );
    let on = a.run(&["peers", "compress", "on"]);
    on.ok();
    assert!(on.stderr.contains("Compression is on"), "{}", on.stderr);
    assert_eq!(a.run(&["--json", "peers"]).json()["compress"], true);
    assert!(a.run(&["peers"]).stderr.contains("compression on"));
    a.run(&["peers", "compress", "off"]).ok();
    assert_eq!(a.run(&["--json", "peers"]).json()["compress"], false);
    assert_ne!(a.run(&["peers", "compress", "maybe"]).code, 0);
    let refused = a.run(&["peers", "pair"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("peers share on"),
        "{}",
        refused.stderr
    );

    a.run(&["peers", "share", "on"]).ok();
    b.run(&["peers", "share", "on"]).ok();
    let mut servers = [serve(&a), serve(&b)];
    let a_id = a.run(&["--json", "peers"]).json()["this"]["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("B to see A", || {
        let view = b.run(&["--json", "peers"]).json();
        view["unpaired"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == a_id.as_str())
    });

    // A shows a code and waits; B types it (a wrong one first).
    let mut shown = a
        .command()
        .args(["peers", "pair"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut code = String::new();
    BufReader::new(shown.stdout.as_mut().unwrap())
        .read_line(&mut code)
        .unwrap();
    let code = code.trim().to_string();
    assert_eq!(code.len(), 9, "{code}");
    let wrong = b.run(&["peers", "pair", &a_id, "2222-2222"]);
    assert_ne!(wrong.code, 0);
    assert!(
        wrong.stderr.contains("Wrong pairing code"),
        "{}",
        wrong.stderr
    );
    let paired = b.run(&["--json", "peers", "pair", &a_id, &code]).json();
    assert_eq!(paired["peer_id"], a_id.as_str(), "{paired}");
    let output = shown.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Paired with"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A pulls from its Hub; B's pull comes from A.
    a.run(&["pull", "demo/tiny-gguf"]).ok();
    b.run(&["pull", "demo/tiny-gguf"]).ok();
    let view = b.run(&["--json", "peers"]).json();
    let received = view["paired"][0]["bytes_received"].as_u64().unwrap();
    assert!(received > 0, "{view}");
    assert!(
        b.cdn_bytes() < a.cdn_bytes(),
        "B's Hub served less than A's"
    );
    let listed = b.run(&["peers"]);
    assert!(listed.ok().contains(&a_id), "{}", listed.stdout);
    let address = view["paired"][0]["address"].as_str().unwrap().to_string();

    // Unpaired: gone from B's list. Sharing off: A's listener closes.
    b.run(&["peers", "unpair", &a_id]).ok();
    let view = b.run(&["--json", "peers"]).json();
    assert_eq!(view["paired"].as_array().unwrap().len(), 0, "{view}");
    a.run(&["peers", "share", "off"]).ok();
    wait_until("A's peer listener to close", || {
        std::net::TcpStream::connect(&address).is_err()
    });

    for server in &mut servers {
        interrupt(server.id());
        assert_eq!(server.wait().unwrap().code(), Some(0));
    }
}
