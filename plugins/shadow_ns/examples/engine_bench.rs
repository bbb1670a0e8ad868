//! What the impairment engine costs when it impairs nothing: TCP throughput and UDP
//! round-trip time between two namespaces joined by a 0 ms link, against the same two
//! namespaces joined by a veth pair (the kernel alone). Prints a table of the medians over
//! several rounds (default: 3 s of TCP, 20 000 round trips, 3 rounds).
//!
//! ```text
//! sudo cargo run --release -p panther-plugin-shadow-ns --example engine_bench [SECONDS] [ROUND_TRIPS] [ROUNDS]
//! ```
//!
//! Rows:
//! - `veth pair`: no engine; the kernel forwards between the namespaces.
//! - `engine, direct`: a 0 ms link with no loss and no limit: reader threads write each
//!   packet straight to the other TUN device.
//! - `engine, scheduled`: the same link with a 100 Gbit/s limit, which never binds but sends
//!   every packet through the scheduler thread (the path every impaired link takes).
//!
//! Creates namespaces named like the plugin's (`psns-<pid>...`) and removes them at the end;
//! `panther-host clean` removes them if the benchmark is killed. Needs root.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    os::fd::AsFd,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use panther_plugin_shadow_ns::{config::Config, engine::Engine, netns, Topology};

/// Two namespaces, removed when dropped.
struct Pair {
    names: [String; 2],
}

impl Pair {
    fn new(label: &str) -> Pair {
        let prefix = netns::run_prefix();
        let names = [format!("{prefix}{label}-a"), format!("{prefix}{label}-b")];
        for n in &names {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        Pair { names }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for n in &self.names {
            netns::kill_all_in(n);
            let _ = netns::delete(n);
        }
    }
}

fn ip(args: &[&str]) {
    let ip = netns::find_program("ip").expect("iproute2 is installed");
    let status = Command::new(ip).args(args).status().expect("ip runs");
    assert!(status.success(), "ip {} failed", args.join(" "));
}

fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let file = std::fs::File::open(netns::path(ns)).expect("namespace exists");
    thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

struct Row {
    name: &'static str,
    mbit: f64,
    rtt: [f64; 3],
}

/// TCP for `seconds` from a to b, then `round_trips` UDP ping-pongs.
fn measure(pair: &Pair, name: &'static str, seconds: f64, round_trips: usize) -> Row {
    let [a, b] = pair.names.clone();
    let listener = spawn_in(&b, || TcpListener::bind("10.213.0.2:7000").expect("bind"))
        .join()
        .unwrap();
    let udp = spawn_in(&b, || UdpSocket::bind("10.213.0.2:7001").expect("bind"))
        .join()
        .unwrap();
    let sink = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 17];
        let mut total = 0u64;
        let started = Instant::now();
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e6
    });
    let echo = thread::spawn(move || {
        // Idle while the TCP phase runs; gives up 2 s after the last round trip.
        udp.set_read_timeout(Some(Duration::from_secs_f64(seconds + 2.0)))
            .unwrap();
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    let rtts = spawn_in(&a, move || {
        let mut stream = TcpStream::connect("10.213.0.2:7000").expect("connect");
        let chunk = vec![7u8; 1 << 17];
        let end = Instant::now() + Duration::from_secs_f64(seconds);
        while Instant::now() < end {
            stream.write_all(&chunk).expect("write");
        }
        drop(stream);
        let socket = UdpSocket::bind("10.213.0.1:0").expect("bind");
        socket.connect("10.213.0.2:7001").expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut rtts = Vec::with_capacity(round_trips);
        let mut buf = [0u8; 64];
        let mut lost = 0;
        for seq in 0..round_trips as u64 {
            let t = Instant::now();
            socket.send(&seq.to_be_bytes()).expect("send");
            // A lost datagram (or a late echo of an earlier one) is counted, not measured.
            match socket.recv(&mut buf) {
                Ok(8) if buf[..8] == seq.to_be_bytes() => {
                    rtts.push(t.elapsed().as_secs_f64() * 1e6)
                }
                _ => lost += 1,
            }
            assert!(lost < 100, "the echo server does not answer");
        }
        if lost > 0 {
            eprintln!("  {lost} of {round_trips} UDP round trips lost");
        }
        rtts
    })
    .join()
    .unwrap();
    let mbit = sink.join().unwrap();
    echo.join().unwrap();
    let mut sorted = rtts;
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)];
    Row {
        name,
        mbit,
        rtt: [at(0.5), at(0.9), at(0.99)],
    }
}

fn engine_row(name: &'static str, bandwidth: Option<&str>, seconds: f64, n: usize) -> Row {
    let pair = Pair::new(if bandwidth.is_some() {
        "sched"
    } else {
        "direct"
    });
    let mut text =
        String::from("hosts = { a = [], b = [] }\n[[links]]\nbetween = [\"a\", \"b\"]\n");
    if let Some(bw) = bandwidth {
        text.push_str(&format!("bandwidth = \"{bw}\"\n"));
    }
    let table: toml::Table = toml::from_str(&text).unwrap();
    let config: Config = serde_json::from_value(serde_json::to_value(table).unwrap()).unwrap();
    let topology = Topology::new(&config).unwrap();
    let mut tuns = Vec::new();
    for (i, ns) in pair.names.iter().enumerate() {
        tuns.push(netns::open_tun(ns, netns::TUN_NAME).expect("TUN device"));
        let addr = format!("{}/24", topology.addr(i));
        ip(&["-n", ns, "addr", "add", &addr, "dev", netns::TUN_NAME]);
        ip(&["-n", ns, "link", "set", netns::TUN_NAME, "up"]);
    }
    let mut engine = Engine::start(&topology, &tuns, Some(1)).expect("engine starts");
    let row = measure(&pair, name, seconds, n);
    let stats = engine.stop();
    eprintln!(
        "  {name}: {} packets delivered, {} queue drops, {} unroutable, {} not IPv4, {} write errors",
        stats.delivered,
        stats.links.iter().map(|l| l.queue_drops).sum::<u64>(),
        stats.unroutable,
        stats.not_ipv4,
        stats.write_errors,
    );
    row
}

fn veth_row(seconds: f64, n: usize) -> Row {
    let pair = Pair::new("veth");
    let [a, b] = &pair.names;
    ip(&[
        "link",
        "add",
        "psnsbench0",
        "netns",
        a,
        "type",
        "veth",
        "peer",
        "name",
        "psnsbench1",
        "netns",
        b,
    ]);
    for (ns, dev, addr) in [
        (a, "psnsbench0", "10.213.0.1/24"),
        (b, "psnsbench1", "10.213.0.2/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    measure(&pair, "veth pair (kernel only)", seconds, n)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    if let Some(why) = netns::emulation_unavailable() {
        eprintln!("engine_bench needs {why}");
        std::process::exit(2);
    }
    eprintln!(
        "{rounds} rounds; per row and round: TCP for {seconds} s, then {n} UDP round trips \
         of 8 bytes. Medians over the rounds:"
    );
    // Rows alternate within each round, so that a busy moment of the machine does not land
    // on one row only.
    let mut all: Vec<Vec<Row>> = Vec::new();
    for round in 0..rounds {
        eprintln!("round {}", round + 1);
        all.push(vec![
            veth_row(seconds, n),
            engine_row("engine, direct (0 ms link)", None, seconds, n),
            engine_row(
                "engine, scheduled (0 ms, 100 Gbit)",
                Some("100Gbit"),
                seconds,
                n,
            ),
        ]);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rows: Vec<Row> = (0..3)
        .map(|i| Row {
            name: all[0][i].name,
            mbit: median(all.iter().map(|r| r[i].mbit).collect()),
            rtt: [0, 1, 2].map(|k| median(all.iter().map(|r| r[i].rtt[k]).collect())),
        })
        .collect();
    let base = rows[0].rtt[0];
    println!(
        "| {:<36} | {:>10} | {:>10} | {:>10} | {:>10} | {:>16} |",
        "path", "TCP Mbit/s", "RTT p50 µs", "RTT p90 µs", "RTT p99 µs", "added one-way µs"
    );
    println!(
        "|{:-<38}|{:->12}|{:->12}|{:->12}|{:->12}|{:->18}|",
        "", "", "", "", "", ""
    );
    for r in &rows {
        println!(
            "| {:<36} | {:>10.0} | {:>10.1} | {:>10.1} | {:>10.1} | {:>16.1} |",
            r.name,
            r.mbit,
            r.rtt[0],
            r.rtt[1],
            r.rtt[2],
            (r.rtt[0] - base) / 2.0
        );
    }
}
