//! The naive-vs-fast dashboard: measures the machine's peak, runs the suite
//! (naive and fast, f32, medians after a warm-up), prints a table and writes
//! `results.json`, `results.md` and a self-contained `index.html`.
//!
//! ```text
//! cargo run --release -p patchwise-benches --bin dashboard -- [--quick] [--threads N] [--filter SUBSTRING] [--out DIR]
//! ```

use patchwise_benches::machine::Machine;
use patchwise_benches::report::{self, Measurement};
use patchwise_benches::{suite, Runner};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Options {
    quick: bool,
    threads: Option<usize>,
    filter: Option<String>,
    out: PathBuf,
}

const USAGE: &str = "usage: dashboard [--quick] [--threads N] [--filter SUBSTRING] [--out DIR]";

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        threads: None,
        filter: None,
        out: PathBuf::from("target/dashboard"),
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name}: expected a value\n{USAGE}"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--threads" => {
                let v = value("--threads")?;
                match v.parse::<usize>() {
                    Ok(n) if n > 0 => o.threads = Some(n),
                    _ => return Err(format!("--threads: expected a positive integer, got {v:?}")),
                }
            }
            "--filter" => o.filter = Some(value("--filter")?),
            "--out" => o.out = PathBuf::from(value("--out")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// Median time of `runner` in ms: one warm-up run, then at least 3 and up to
/// 30 timed runs, stopping after ~1 s (a single run longer than 2 s is timed
/// once, its warm-up counting as the measurement).
fn time(runner: &mut Runner) -> f64 {
    let once = |r: &mut Runner| {
        let start = Instant::now();
        (r.run)();
        start.elapsed()
    };
    let warm = once(runner);
    let mut samples = vec![warm];
    if warm < Duration::from_secs(2) {
        samples.clear();
        let start = Instant::now();
        while samples.len() < 3 || (samples.len() < 30 && start.elapsed() < Duration::from_secs(1)) {
            samples.push(once(runner));
        }
    }
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3 * runner.scale
}

fn run(o: &Options) -> std::io::Result<()> {
    eprintln!("measuring the machine (peak FMA rate, copy bandwidth)...");
    let machine = Machine::measure();
    eprintln!("{}", report::machine_line(&machine));
    let specs: Vec<_> = suite(o.quick)
        .into_iter()
        .filter(|s| {
            o.filter
                .as_ref()
                .is_none_or(|f| format!("{} {}", s.op(), s.shape()).contains(f.as_str()))
        })
        .collect();
    let mut results = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut bench = spec.build();
        let mut line = format!("[{}/{}] {} {}:", i + 1, specs.len(), bench.op, bench.shape);
        for runner in &mut bench.runners {
            let ms = time(runner);
            line.push_str(&format!(" {} {ms:.3} ms", runner.imp));
            results.push(Measurement {
                op: bench.op.to_string(),
                shape: bench.shape.clone(),
                imp: runner.imp.to_string(),
                median_ms: ms,
                gflops: bench.flops.map(|f| f / ms / 1e6),
                gbps: bench.bytes.map(|b| b / ms / 1e6),
                note: runner.note.clone(),
            });
        }
        eprintln!("{line}");
    }
    println!("{}\n", report::machine_line(&machine));
    print!("{}", report::text_table(&results, &machine));
    for note in results.iter().filter_map(|m| m.note.as_ref()) {
        println!("note: {note}");
    }
    let command = format!(
        "dashboard {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    std::fs::create_dir_all(&o.out)?;
    std::fs::write(o.out.join("results.json"), report::json(&results, &machine))?;
    std::fs::write(
        o.out.join("results.md"),
        report::markdown_table(&results, &machine),
    )?;
    std::fs::write(
        o.out.join("index.html"),
        report::html(&results, &machine, command.trim()),
    )?;
    eprintln!("wrote {}/{{results.json,results.md,index.html}}", o.out.display());
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match o.threads {
        Some(n) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(|| run(&o)),
            Err(e) => {
                eprintln!("--threads {n}: cannot build the thread pool: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => run(&o),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error writing the results: {e}");
            ExitCode::FAILURE
        }
    }
}
