//! Times parsing and symbolization of a large CPU profile.
//!
//! Usage: `cargo run --release --example bench [RECORDS] [PROFILE]`
//!
//! Without `PROFILE`, a synthetic profile is written first (and removed
//! afterwards): `RECORDS` distinct stacks (default 50 000), each sampled
//! 1–20 times, 4–32 addresses deep, drawn from real function
//! addresses of this very executable and of the C library it links, with
//! the current process' memory map appended, so symbolization does the same
//! DWARF and symbol-table work as for a real profile.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use object::{Object, ObjectSymbol, SymbolKind};
use panther_gperftools::maps::parse_maps;
use panther_gperftools::report::{cpu_report, flamegraph_svg, folded_stacks};
use panther_gperftools::{symbolize_cpu, CpuProfile, Symbolizer};

const DEFAULT_RECORDS: usize = 50_000;
const MAX_DEPTH: usize = 32;
const MAX_POOL: usize = 4_000;

/// Address whose runtime and file addresses give this executable's load bias.
#[no_mangle]
#[inline(never)]
pub extern "C" fn gperf_bench_anchor() -> u64 {
    std::hint::black_box(7)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let records = args.next().map(|s| s.parse()).transpose()?;
    let (path, synthetic) = match args.next() {
        Some(path) => (PathBuf::from(path), false),
        None => (write_synthetic(records.unwrap_or(DEFAULT_RECORDS))?, true),
    };
    let outcome = run(&path);
    if synthetic {
        std::fs::remove_file(&path)?;
    }
    outcome
}

/// Parses, symbolizes and reports `path`, printing the timings.
fn run(path: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let bytes = std::fs::metadata(path)?.len();

    let (profile, parse) = timed(|| CpuProfile::from_file(path));
    let profile = profile?;
    let mut symbolizer = Symbolizer::new();
    let (symbolized, cold) = timed(|| symbolize_cpu(&profile, &mut symbolizer));
    let (_, warm) = timed(|| symbolize_cpu(&profile, &mut symbolizer));
    let (report, report_time) = timed(|| cpu_report(&symbolized, Some(20)));
    let (folded, folded_time) = timed(|| folded_stacks(&symbolized));
    let (svg, svg_time) = timed(|| flamegraph_svg(&folded, "bench"));
    let addresses: usize = profile.samples.iter().map(|(_, s)| s.len()).sum();
    let frames: usize = symbolized.samples.iter().map(|s| s.stack.len()).sum();

    println!("profile           {}", path.display());
    println!("file size         {:.1} MiB", bytes as f64 / 1048576.0);
    println!("records           {}", profile.samples.len());
    println!("samples           {}", profile.total_samples());
    println!("addresses         {addresses}");
    println!("frames (inlined)  {frames}");
    println!("distinct frames   {}", symbolized.frames.len());
    println!("folded stacks     {}", folded.len());
    println!("parse             {}", per_second(parse, addresses));
    println!("symbolize (cold)  {}", per_second(cold, addresses));
    println!("symbolize (warm)  {}", per_second(warm, addresses));
    println!("report            {:>9.1} ms", ms(report_time));
    println!("folded stacks     {:>9.1} ms", ms(folded_time));
    println!("flame graph       {:>9.1} ms", ms(svg_time));
    println!("svg size          {:.1} KiB", svg?.len() as f64 / 1024.0);
    if let Some(top) = report.by_flat.first() {
        println!(
            "top flat          {} ({:.2}%)",
            top.function, top.flat_percent
        );
    }
    Ok(())
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_second(d: Duration, addresses: usize) -> String {
    let rate = addresses as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    format!("{:>9.1} ms  ({rate:.1} M addresses/s)", ms(d))
}

/// Writes a synthetic profile to the temp directory and returns its path.
fn write_synthetic(records: usize) -> Result<PathBuf, Box<dyn Error>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut pool = own_function_addresses()?;
    pool.extend(libc_addresses());
    if pool.is_empty() {
        return Err("no function addresses found".into());
    }
    let mut rng = Lcg(0x9e37_79b9_7f4a_7c15);
    let samples = (0..records)
        .map(|_| {
            let depth = 4 + rng.below(MAX_DEPTH - 4);
            let stack = (0..depth).map(|_| pool[rng.below(pool.len())]).collect();
            (1 + rng.below(20) as u64, stack)
        })
        .collect();
    let profile = CpuProfile {
        period_us: 1000,
        samples,
        mappings: parse_maps(&maps),
    };
    let path = std::env::temp_dir().join(format!("gperf-bench-{}.prof", std::process::id()));
    std::fs::write(&path, profile.encode())?;
    Ok(path)
}

/// Runtime addresses inside functions of this executable: file addresses
/// from its symbol table shifted by the load bias measured on the anchor.
fn own_function_addresses() -> Result<Vec<u64>, Box<dyn Error>> {
    let exe = std::fs::read(std::env::current_exe()?)?;
    let file = object::File::parse(exe.as_slice())?;
    let functions: Vec<(String, u64, u64)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.size() >= 16)
        .filter_map(|s| Some((s.name().ok()?.to_string(), s.address(), s.size())))
        .collect();
    let anchor = functions
        .iter()
        .find(|(name, _, _)| name == "gperf_bench_anchor")
        .ok_or("anchor symbol missing: build without stripping")?;
    let bias = (gperf_bench_anchor as *const () as usize as u64).wrapping_sub(anchor.1);
    Ok(functions
        .iter()
        .take(MAX_POOL)
        .map(|(_, start, size)| start.wrapping_add(bias) + size / 2)
        .collect())
}

/// A few addresses inside C library functions, to exercise a second object.
fn libc_addresses() -> Vec<u64> {
    let functions: [usize; 4] = [
        libc::malloc as *const () as usize,
        libc::free as *const () as usize,
        libc::memcpy as *const () as usize,
        libc::strlen as *const () as usize,
    ];
    functions.iter().map(|&f| f as u64 + 4).collect()
}

/// Small deterministic generator so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}
