//! The user-space impairment engine: carries IPv4 packets between the TUN devices of the
//! hosts' namespaces, applying each link's loss, rate limit, latency and jitter.
//!
//! - One reader thread per host waits (`poll`) on its TUN descriptor, reads every packet,
//!   and looks up the destination host from the address (`10.213.0.(i+1)` is host `i`).
//!   When every edge of the path is transparent (0 latency, no jitter, no loss, no rate
//!   limit) it writes the packet straight to the destination's TUN descriptor.
//! - Otherwise the packet goes to the scheduler thread, which walks it along its path, one
//!   directed edge at a time, in virtual time: on entering an edge it is dropped with the
//!   link's loss probability; a token bucket (FIFO, drop-tail queue) gives its departure
//!   time; latency plus a uniform jitter sample gives its arrival at the next hop (never
//!   before the packet ahead of it on that edge: no reordering). Packets wait in a heap
//!   ordered by arrival time; at the last hop they are written to the destination's TUN.
//!
//! Virtual times are carried from hop to hop, so the scheduler's own wake-up delays do not
//! accumulate along a path; they only delay the final write (by tens of microseconds).

use std::{
    cmp::Ordering as CmpOrdering,
    collections::BinaryHeap,
    fs::File,
    io::{ErrorKind, Read, Write},
    os::fd::{AsFd, OwnedFd},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;

use crate::{
    config::{EdgeProps, Topology, SUBNET},
    netns,
};

/// Largest packet read from a TUN device.
const MAX_PACKET: usize = 65_536;
/// An Ethernet frame's worth, for the token bucket's minimum burst.
const FRAME: f64 = 1514.0;

/// Counters of one direction of a link.
#[derive(Default)]
struct EdgeCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    queue_drops: AtomicU64,
}

#[derive(Default)]
struct Counters {
    edges: Vec<EdgeCounters>,
    delivered: AtomicU64,
    not_ipv4: AtomicU64,
    unroutable: AtomicU64,
    write_errors: AtomicU64,
}

/// What the engine did, per link direction and in total.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Per directed edge.
    pub links: Vec<LinkStats>,
    /// Packets written to their destination.
    pub delivered: u64,
    /// Packets that were not IPv4 (e.g. IPv6 router solicitations), dropped.
    pub not_ipv4: u64,
    /// Packets to an address no host has, or to a host with no path to it, dropped.
    pub unroutable: u64,
    /// Packets the destination's TUN device refused.
    pub write_errors: u64,
}

/// One direction of a link.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LinkStats {
    /// Source host.
    pub from: String,
    /// Destination host.
    pub to: String,
    /// Packets that entered it.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Dropped by the loss probability.
    pub lost: u64,
    /// Dropped because the rate limit's queue was full.
    pub queue_drops: u64,
}

/// A token bucket with a FIFO queue in front of it.
#[derive(Clone, Debug)]
pub struct Shaper {
    /// Bytes per second.
    rate: f64,
    /// Bucket size in bytes.
    burst: f64,
    /// Queue limit in bytes.
    limit: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
    /// Departure time of the last admitted packet.
    busy_until: Instant,
}

impl Shaper {
    /// A shaper for `bits_per_second` starting with a full bucket at `now`. The bucket holds
    /// 1 ms of traffic (at least two frames); the queue 50 ms (at least 64 KiB).
    pub fn new(bits_per_second: u64, now: Instant) -> Shaper {
        let rate = bits_per_second as f64 / 8.0;
        let burst = (rate * 0.001).max(2.0 * FRAME);
        Shaper {
            rate,
            burst,
            limit: (rate * 0.05).max(65_536.0),
            tokens: burst,
            last: now,
            busy_until: now,
        }
    }

    /// When a packet of `len` bytes arriving at `t` leaves, or `None` when the queue is full.
    pub fn admit(&mut self, t: Instant, len: usize) -> Option<Instant> {
        let len = len as f64;
        let start = t.max(self.busy_until);
        let backlog = (start - t).as_secs_f64() * self.rate;
        if backlog > 0.0 && backlog + len > self.limit {
            return None;
        }
        if start > self.last {
            let refill = (start - self.last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = start;
        }
        let depart = if self.tokens >= len {
            self.tokens -= len;
            start
        } else {
            let wait = Duration::from_secs_f64((len - self.tokens) / self.rate);
            self.tokens = 0.0;
            self.last = start + wait;
            self.last
        };
        self.busy_until = depart;
        Some(depart)
    }
}

/// The state of one directed edge in the scheduler.
struct EdgeState {
    props: EdgeProps,
    shaper: Option<Shaper>,
    /// Arrival time of the last packet at the far end (packets are never reordered).
    last_arrival: Instant,
}

struct Packet {
    data: Vec<u8>,
    from: usize,
    to: usize,
    /// Index of the next edge to enter along the route.
    hop: usize,
}

struct Scheduled {
    at: Instant,
    seq: u64,
    packet: Packet,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // A min-heap on (time, sequence).
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

enum Message {
    Packet(Packet, Instant),
    Stop,
}

/// What the threads share.
struct Shared {
    /// Host `i`'s TUN device.
    tuns: Vec<File>,
    /// `routes[a][b]`: edge indices.
    routes: Vec<Vec<Option<Vec<usize>>>>,
    /// Whether every edge of `routes[a][b]` is transparent.
    direct: Vec<Vec<bool>>,
    counters: Counters,
}

/// A running engine. Stopped when dropped.
pub struct Engine {
    shared: Arc<Shared>,
    hosts: Vec<String>,
    edges: Vec<(usize, usize)>,
    stop_write: Option<OwnedFd>,
    tx: mpsc::Sender<Message>,
    threads: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Starts carrying packets between `tuns` (host `i`'s TUN descriptor at index `i`) along
    /// the topology's routes.
    pub fn start(
        topology: &Topology,
        tuns: &[OwnedFd],
        seed: Option<u64>,
    ) -> anyhow::Result<Engine> {
        anyhow::ensure!(
            tuns.len() == topology.hosts.len(),
            "{} TUN devices for {} hosts",
            tuns.len(),
            topology.hosts.len()
        );
        let files = tuns
            .iter()
            .map(netns::as_file)
            .collect::<anyhow::Result<Vec<File>>>()?;
        let direct = topology
            .routes
            .iter()
            .map(|row| {
                row.iter()
                    .map(|r| {
                        r.as_ref().is_some_and(|edges| {
                            edges.iter().all(|&e| topology.edges[e].props.transparent())
                        })
                    })
                    .collect()
            })
            .collect();
        let counters = Counters {
            edges: topology
                .edges
                .iter()
                .map(|_| EdgeCounters::default())
                .collect(),
            ..Counters::default()
        };
        let shared = Arc::new(Shared {
            tuns: files,
            routes: topology.routes.clone(),
            direct,
            counters,
        });
        let (stop_read, stop_write) = nix::unistd::pipe().context("creating a pipe")?;
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        let edges: Vec<EdgeState> = topology
            .edges
            .iter()
            .map(|e| EdgeState {
                props: e.props.clone(),
                shaper: e.props.bandwidth.map(|b| Shaper::new(b, now)),
                last_arrival: now,
            })
            .collect();
        let rng = fastrand::Rng::with_seed(seed.unwrap_or_else(|| fastrand::u64(..)));
        let mut threads = Vec::new();
        let scheduler = Scheduler {
            shared: Arc::clone(&shared),
            edges,
            rng,
            heap: BinaryHeap::new(),
            seq: 0,
        };
        threads.push(
            thread::Builder::new()
                .name("psns-scheduler".into())
                .spawn(move || scheduler.run(rx))
                .context("starting the scheduler thread")?,
        );
        for host in 0..topology.hosts.len() {
            let shared = Arc::clone(&shared);
            let stop = stop_read.try_clone().context("duplicating a pipe")?;
            let tx = tx.clone();
            threads.push(
                thread::Builder::new()
                    .name(format!("psns-read-{host}"))
                    .spawn(move || read_loop(host, &shared, &stop, &tx))
                    .context("starting a reader thread")?,
            );
        }
        Ok(Engine {
            shared,
            hosts: topology.hosts.clone(),
            edges: topology.edges.iter().map(|e| (e.from, e.to)).collect(),
            stop_write: Some(stop_write),
            tx,
            threads,
        })
    }

    /// What the engine has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            links: self
                .edges
                .iter()
                .zip(&c.edges)
                .map(|(&(from, to), e)| LinkStats {
                    from: self.hosts[from].clone(),
                    to: self.hosts[to].clone(),
                    packets: e.packets.load(Ordering::Relaxed),
                    bytes: e.bytes.load(Ordering::Relaxed),
                    lost: e.lost.load(Ordering::Relaxed),
                    queue_drops: e.queue_drops.load(Ordering::Relaxed),
                })
                .collect(),
            delivered: c.delivered.load(Ordering::Relaxed),
            not_ipv4: c.not_ipv4.load(Ordering::Relaxed),
            unroutable: c.unroutable.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops every thread (packets in flight are dropped) and returns the final counters.
    pub fn stop(&mut self) -> Stats {
        // Closing the pipe wakes every reader; the scheduler gets a message.
        self.stop_write.take();
        let _ = self.tx.send(Message::Stop);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stats()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The destination host of an IPv4 packet, when it is one of ours.
fn destination(packet: &[u8], hosts: usize) -> Result<usize, bool> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return Err(false);
    }
    let dst = &packet[16..20];
    if dst[..3] != SUBNET || dst[3] == 0 || usize::from(dst[3]) > hosts {
        return Err(true);
    }
    Ok(usize::from(dst[3]) - 1)
}

fn read_loop(host: usize, shared: &Shared, stop: &OwnedFd, tx: &mpsc::Sender<Message>) {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut tun = &shared.tuns[host];
    let c = &shared.counters;
    loop {
        let mut fds = [
            PollFd::new(tun.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!(host, "polling a TUN device failed: {e}");
                return;
            }
        }
        if fds[1].any().unwrap_or(true) {
            return;
        }
        loop {
            let n = match tun.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!(host, "reading a TUN device failed: {e}");
                    return;
                }
            };
            let packet = &buf[..n];
            let to = match destination(packet, shared.tuns.len()) {
                Ok(to) if to != host && shared.routes[host][to].is_some() => to,
                Ok(_) | Err(true) => {
                    c.unroutable.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(false) => {
                    c.not_ipv4.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            if shared.direct[host][to] {
                for &e in shared.routes[host][to].as_deref().unwrap_or_default() {
                    c.edges[e].packets.fetch_add(1, Ordering::Relaxed);
                    c.edges[e].bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                deliver(shared, to, packet);
                continue;
            }
            let message = Message::Packet(
                Packet {
                    data: packet.to_vec(),
                    from: host,
                    to,
                    hop: 0,
                },
                Instant::now(),
            );
            if tx.send(message).is_err() {
                return;
            }
        }
    }
}

fn deliver(shared: &Shared, to: usize, packet: &[u8]) {
    let c = &shared.counters;
    // A TUN device takes a packet whole or not at all.
    match (&shared.tuns[to]).write(packet) {
        Ok(n) if n == packet.len() => c.delivered.fetch_add(1, Ordering::Relaxed),
        _ => c.write_errors.fetch_add(1, Ordering::Relaxed),
    };
}

struct Scheduler {
    shared: Arc<Shared>,
    edges: Vec<EdgeState>,
    rng: fastrand::Rng,
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Scheduler {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        loop {
            let now = Instant::now();
            while self.heap.peek().is_some_and(|s| s.at <= now) {
                let s = self.heap.pop().expect("peeked");
                self.step(s.packet, s.at);
            }
            let message = match self.heap.peek() {
                None => rx.recv().ok(),
                Some(next) => match rx.recv_timeout(next.at.saturating_duration_since(now)) {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                },
            };
            match message {
                Some(Message::Packet(packet, at)) => self.step(packet, at),
                Some(Message::Stop) | None => return,
            }
        }
    }

    /// Moves a packet that reached hop `packet.hop` at virtual time `at` on: onto its next
    /// edge, or out to its destination.
    fn step(&mut self, mut packet: Packet, at: Instant) {
        let shared = Arc::clone(&self.shared);
        let route = shared.routes[packet.from][packet.to]
            .as_deref()
            .unwrap_or_default();
        let Some(&e) = route.get(packet.hop) else {
            deliver(&shared, packet.to, &packet.data);
            return;
        };
        let counters = &shared.counters.edges[e];
        counters.packets.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(packet.data.len() as u64, Ordering::Relaxed);
        let edge = &mut self.edges[e];
        if edge.props.loss > 0.0 && self.rng.f64() < edge.props.loss {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let depart = match &mut edge.shaper {
            Some(shaper) => match shaper.admit(at, packet.data.len()) {
                Some(t) => t,
                None => {
                    counters.queue_drops.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            None => at,
        };
        let mut delay = edge.props.latency.as_secs_f64();
        if !edge.props.jitter.is_zero() {
            delay += (self.rng.f64() * 2.0 - 1.0) * edge.props.jitter.as_secs_f64();
        }
        let arrival = (depart + Duration::from_secs_f64(delay.max(0.0))).max(edge.last_arrival);
        edge.last_arrival = arrival;
        packet.hop += 1;
        if arrival <= Instant::now() && packet.hop == route.len() {
            deliver(&shared, packet.to, &packet.data);
            return;
        }
        self.seq += 1;
        self.heap.push(Scheduled {
            at: arrival,
            seq: self.seq,
            packet,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shaper_holds_its_rate_after_the_burst() {
        let t0 = Instant::now();
        // 8 Mbit/s: 1 MB/s, bucket of 3028 bytes.
        let mut shaper = Shaper::new(8_000_000, t0);
        let mut last = t0;
        let mut sent = 0;
        // 40 packets of 1000 bytes offered at once: the queue (64 KiB) takes them all.
        for _ in 0..40 {
            last = shaper.admit(t0, 1000).expect("fits the queue");
            sent += 1000;
        }
        // The bucket lets 3028 bytes go at once; the rest leaves at 1 MB/s.
        let took = (last - t0).as_secs_f64();
        assert!(
            (took - (40_000.0 - 3028.0) / 1e6).abs() < 1e-6,
            "took {took}"
        );
        assert_eq!(sent, 40_000);
    }

    #[test]
    fn the_shaper_drops_when_its_queue_is_full() {
        let t0 = Instant::now();
        let mut shaper = Shaper::new(8_000_000, t0);
        let admitted = (0..200)
            .filter(|_| shaper.admit(t0, 1000).is_some())
            .count();
        // 64 KiB of queue plus the 3 packets the bucket lets through.
        assert!((66..=69).contains(&admitted), "{admitted}");
        // Later, the queue has drained and packets pass again.
        assert!(shaper.admit(t0 + Duration::from_secs(1), 1000).is_some());
    }

    #[test]
    fn the_shaper_refills_while_idle() {
        let t0 = Instant::now();
        let mut shaper = Shaper::new(8_000_000, t0);
        for _ in 0..3 {
            assert_eq!(shaper.admit(t0, 1000), Some(t0));
        }
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(shaper.admit(t1, 1000), Some(t1), "the bucket refilled");
    }

    #[test]
    fn destinations_are_read_from_the_header() {
        let mut p = [0u8; 20];
        p[0] = 0x45;
        p[16..20].copy_from_slice(&[10, 213, 0, 2]);
        assert_eq!(destination(&p, 2), Ok(1));
        assert_eq!(destination(&p, 1), Err(true), "no host 2");
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(destination(&p, 2), Err(true), "outside the range");
        p[0] = 0x60;
        assert_eq!(destination(&p, 2), Err(false), "IPv6");
    }
}
