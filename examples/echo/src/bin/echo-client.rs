//! A TCP echo client: `echo-client ADDR [MESSAGE...] [--count N]`. Sends each message (default
//! `hello`) `N` times and checks that exactly the same bytes come back. Exits 0 when every
//! echo matched, 1 otherwise, 2 on bad usage.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else { usage() };
    let mut messages = Vec::new();
    let mut count = 1usize;
    while let Some(arg) = args.next() {
        if arg == "--count" {
            count = args
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| usage());
        } else {
            messages.push(arg);
        }
    }
    if messages.is_empty() {
        messages.push("hello".into());
    }
    let mut stream = TcpStream::connect(&addr)
        .unwrap_or_else(|e| fail(&format!("cannot connect to {addr}: {e}")));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout is non-zero");
    for round in 0..count {
        for message in &messages {
            stream
                .write_all(message.as_bytes())
                .unwrap_or_else(|e| fail(&format!("send failed: {e}")));
            let mut back = vec![0u8; message.len()];
            stream
                .read_exact(&mut back)
                .unwrap_or_else(|e| fail(&format!("no echo for {message:?}: {e}")));
            if back != message.as_bytes() {
                fail(&format!(
                    "round {round}: sent {message:?}, got {:?}",
                    String::from_utf8_lossy(&back)
                ));
            }
            println!("echoed {message:?}");
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("echo-client: {message}");
    std::process::exit(1);
}

fn usage() -> ! {
    eprintln!("usage: echo-client ADDR [MESSAGE...] [--count N]");
    std::process::exit(2);
}
