//! Hundreds of slow clients at once: connections stalled in the middle of
//! their headers, and signed requests whose bodies arrive but whose
//! signatures never will. Ordinary requests go on being answered, and the
//! memory the server holds for them stays within a stated bound.
//!
//! The server runs in this test's process, so the process's resident
//! memory is the server's plus the test's own (which holds one body). This
//! file has this one test, so that no other test's memory is counted.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, TOKEN, wait_for};
use serde_json::json;

const P: &str = "/v2/demo/graphs";
const MIB: u64 = 1 << 20;

/// The process's resident memory, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// How many files this process may open.
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

/// Stalled connections, and signed requests with bodies, at once: the
/// memory bound is the body budget (16 MiB here), plus at most a head's
/// worth for each stalled connection, plus slack for the connections'
/// tasks and the allocator.
#[test]
fn stalled_connections_and_pre_auth_bodies_leave_ordinary_requests_answered() {
    // Both sides of every connection are in this process: keep within its
    // descriptor limit.
    let room = open_files_limit().saturating_sub(200) / 2;
    let stalled_n = room.min(400) * 3 / 5;
    let bodies_n = room.min(400) * 2 / 5;
    assert!(stalled_n >= 100, "too few file descriptors ({room})");

    let budget = 16 * MIB;
    let head_room = 16 << 10;
    let mut cfg = common::config(
        "[[auth.access_keys]]\nak = \"KNOWNKEY\"\nsk = \"secret\"\nprojects = [\"demo\"]\n",
    );
    cfg.server.header_timeout_ms = 60_000;
    cfg.server.body_timeout_ms = 60_000;
    cfg.server.max_connections = 2_048;
    cfg.server.max_unverified_body_bytes = usize::try_from(budget).unwrap();
    let server = ges_server::Server::new(cfg)
        .bind()
        .unwrap()
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    let c = Client::new(&server, TOKEN);
    c.running_graph("demo", "warm");
    let before = resident();

    // Headers sent up to 16 KiB, never finished.
    let pad = "a".repeat(head_room - 100);
    let mut stalled = Vec::with_capacity(stalled_n);
    for _ in 0..stalled_n {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(format!("POST {P} HTTP/1.1\r\nHost: ges\r\nX-Pad: {pad}").as_bytes())
            .unwrap();
        stalled.push(s);
    }
    // Signed requests by a known access key declaring 1 MiB, all but the
    // last byte of it sent.
    let body = vec![b' '; (MIB - 1) as usize];
    let head = format!(
        "POST {P} HTTP/1.1\r\nHost: ges\r\nX-Sdk-Date: 20240501T120000Z\r\n\
         Authorization: SDK-HMAC-SHA256 Access=KNOWNKEY, SignedHeaders=host;x-sdk-date, \
         Signature={}\r\nContent-Length: {MIB}\r\n\r\n",
        "0".repeat(64)
    );
    let mut bodies = Vec::with_capacity(bodies_n);
    for _ in 0..bodies_n {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = s.write_all(head.as_bytes());
        // A request refused for the budget is not read: the write may fail
        // or stop; either is fine.
        let _ = s.write_all(&body);
        bodies.push(s);
    }
    drop(body);

    // Ordinary requests are answered while all of that is held.
    for i in 0..20 {
        let name = format!("g{i}");
        c.post(P, json!({"graph": {"name": name}})).ok();
        c.get(&format!("{P}/{name}")).ok();
    }
    c.running_graph("demo", "during");

    // The memory held settles once the bodies within the budget are read.
    std::thread::sleep(Duration::from_millis(500));
    let during = resident();
    let grown = during.saturating_sub(before);
    let bound = budget + (stalled_n as u64) * 2 * head_room as u64 + 48 * MIB;
    eprintln!(
        "{stalled_n} stalled connections, {bodies_n} signed bodies: resident grew by {:.1} MiB (bound {:.1} MiB)",
        grown as f64 / MIB as f64,
        bound as f64 / MIB as f64
    );
    assert!(
        grown < bound,
        "resident memory grew by {grown} bytes, over the bound of {bound}"
    );

    // The signed requests over the budget were refused, in GES's format.
    let mut busy = 0;
    for s in &mut bodies {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = s.read(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).contains("GES.9015")
        {
            busy += 1;
        }
    }
    let fit = usize::try_from(budget / MIB).unwrap();
    assert!(
        busy + fit >= bodies_n * 9 / 10,
        "{busy} of {bodies_n} signed bodies refused for the budget"
    );

    // The slow clients leave; the server serves on.
    drop(stalled);
    drop(bodies);
    wait_for(|| (c.get(P).status == 200).then_some(()));
    server.shutdown().unwrap();
}
