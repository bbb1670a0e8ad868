//! A TCP echo server: `echo-server [--port N] [--host ADDR]`. Echoes every byte back on every
//! connection until it is terminated. Prints `listening on ADDR` once it accepts connections.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    thread,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut host, mut port) = ("127.0.0.1".to_string(), 4443u16);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--host" => host = args.next().unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    let listener = TcpListener::bind((host.as_str(), port)).unwrap_or_else(|e| {
        eprintln!("echo-server: cannot listen on {host}:{port}: {e}");
        std::process::exit(1);
    });
    println!("listening on {}", listener.local_addr().expect("bound"));
    for stream in listener.incoming().flatten() {
        thread::spawn(move || echo(stream));
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: echo-server [--port N] [--host ADDR]");
    std::process::exit(2);
}
