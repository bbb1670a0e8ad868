//! Measures a network path from inside an experiment.
//!
//! - `udp-probe serve PORT`: echoes every UDP datagram on PORT, and on TCP PORT reads each
//!   connection to its end and answers `received N`. Prints `listening on PORT` once both
//!   sockets are bound.
//! - `udp-probe measure ADDR COUNT [--interval MS] [--size BYTES] [--wait MS]`: sends COUNT
//!   numbered, timestamped datagrams to ADDR, one every `--interval` (default 5 ms), waits
//!   `--wait` (default 1000 ms) after the last for late echoes, and prints one JSON line:
//!   `{"sent":..,"received":..,"lost":..,"loss":..,"rtt_ms":{"min","p50","p90","p99","max","mean"}}`.
//!   Exits 1 when nothing came back.
//! - `udp-probe throughput ADDR BYTES`: sends BYTES over one TCP connection, waits for the
//!   server's count, and prints `{"bytes":..,"seconds":..,"mbit_per_s":..}`. Exits 1 when the
//!   server counted something else.
//!
//! Exits 2 on bad usage.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpListener, TcpStream, UdpSocket},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() == 2 => serve(parse(&args[1])),
        Some("measure") if args.len() >= 3 => {
            let mut interval = 5u64;
            let mut size = 64usize;
            let mut wait = 1000u64;
            let mut rest = args[3..].iter();
            while let Some(flag) = rest.next() {
                let value = rest.next().unwrap_or_else(|| usage());
                match flag.as_str() {
                    "--interval" => interval = parse(value),
                    "--size" => size = parse(value),
                    "--wait" => wait = parse(value),
                    _ => usage(),
                }
            }
            measure(
                &args[1],
                parse(&args[2]),
                Duration::from_millis(interval),
                size.max(16),
                Duration::from_millis(wait),
            )
        }
        Some("throughput") if args.len() == 3 => throughput(&args[1], parse(&args[2])),
        _ => usage(),
    }
}

fn parse<T: std::str::FromStr>(text: &str) -> T {
    text.parse().unwrap_or_else(|_| usage())
}

fn usage() -> ! {
    eprintln!(
        "usage: udp-probe serve PORT\n       udp-probe measure ADDR COUNT [--interval MS] [--size BYTES] [--wait MS]\n       udp-probe throughput ADDR BYTES"
    );
    std::process::exit(2);
}

fn fail(message: &str) -> ! {
    eprintln!("udp-probe: {message}");
    std::process::exit(1);
}

fn serve(port: u16) -> ! {
    let udp = UdpSocket::bind(("0.0.0.0", port))
        .unwrap_or_else(|e| fail(&format!("cannot bind UDP port {port}: {e}")));
    let tcp = TcpListener::bind(("0.0.0.0", port))
        .unwrap_or_else(|e| fail(&format!("cannot bind TCP port {port}: {e}")));
    println!("listening on {port}");
    thread::spawn(move || {
        for stream in tcp.incoming().flatten() {
            thread::spawn(move || count(stream));
        }
    });
    let mut buf = [0u8; 65_536];
    loop {
        if let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    }
}

/// Reads a connection to its end, then answers with the byte count.
fn count(mut stream: TcpStream) {
    let mut buf = vec![0u8; 65_536];
    let mut total = 0u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let _ = writeln!(stream, "received {total}");
}

fn measure(addr: &str, count: u32, interval: Duration, size: usize, wait: Duration) {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    socket
        .connect(addr)
        .unwrap_or_else(|e| fail(&format!("cannot reach {addr}: {e}")));
    let socket = Arc::new(socket);
    let start = Instant::now();
    // Echoes are taken by a thread that blocks in `recv` for as long as the process lives:
    // no receive timeout (which not every network stack offers; Shadow's has none), and the
    // process' exit ends it.
    let received = Arc::new(Mutex::new(vec![None; count as usize]));
    {
        let socket = Arc::clone(&socket);
        let received = Arc::clone(&received);
        thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            loop {
                let n = match socket.recv(&mut buf) {
                    Ok(n) => n,
                    // An ICMP "port unreachable" for a probe sent before the server was up.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => fail(&format!("receive failed: {e}")),
                };
                if n < 12 {
                    continue;
                }
                let now = start.elapsed().as_nanos() as u64;
                let seq = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
                let sent = u64::from_be_bytes(buf[4..12].try_into().expect("8 bytes"));
                let mut slots = received.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(slot) = slots.get_mut(seq) {
                    slot.get_or_insert(now.saturating_sub(sent) as f64 / 1e6);
                }
            }
        });
    }
    let mut payload = vec![0u8; size];
    for seq in 0..count {
        let due = start + interval * seq;
        if let Some(pause) = due.checked_duration_since(Instant::now()) {
            thread::sleep(pause);
        }
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        let sent = start.elapsed().as_nanos() as u64;
        payload[4..12].copy_from_slice(&sent.to_be_bytes());
        // A refused send (no route yet) is a lost probe.
        let _ = socket.send(&payload);
    }
    thread::sleep(wait);
    let rtts = std::mem::take(&mut *received.lock().unwrap_or_else(|e| e.into_inner()));
    let mut got: Vec<f64> = rtts.iter().flatten().copied().collect();
    got.sort_by(f64::total_cmp);
    let received = got.len();
    let lost = count as usize - received;
    let pct = |q: f64| {
        if got.is_empty() {
            return "null".to_string();
        }
        let rank = ((q * received as f64).ceil() as usize).clamp(1, received);
        format!("{:.3}", got[rank - 1])
    };
    let mean = if got.is_empty() {
        "null".to_string()
    } else {
        format!("{:.3}", got.iter().sum::<f64>() / received as f64)
    };
    println!(
        "{{\"sent\":{count},\"received\":{received},\"lost\":{lost},\"loss\":{:.4},\"rtt_ms\":{{\"min\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{},\"mean\":{mean}}}}}",
        lost as f64 / f64::from(count.max(1)),
        pct(0.0),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
    );
    if received == 0 {
        fail("no probe came back");
    }
}

fn throughput(addr: &str, bytes: u64) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .unwrap_or_else(|e| fail(&format!("cannot connect to {addr}: {e}")));
    let chunk = vec![0x5au8; 65_536];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream
            .write_all(&chunk[..n])
            .unwrap_or_else(|e| fail(&format!("send failed: {e}")));
        left -= n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .unwrap_or_else(|e| fail(&format!("shutdown failed: {e}")));
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .unwrap_or_else(|e| fail(&format!("no answer: {e}")));
    let seconds = started.elapsed().as_secs_f64();
    let counted: u64 = answer
        .trim()
        .strip_prefix("received ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| fail(&format!("unexpected answer {answer:?}")));
    println!(
        "{{\"bytes\":{bytes},\"seconds\":{seconds:.4},\"mbit_per_s\":{:.3}}}",
        bytes as f64 * 8.0 / seconds / 1e6
    );
    if counted != bytes {
        fail(&format!("sent {bytes} bytes, the server counted {counted}"));
    }
}
