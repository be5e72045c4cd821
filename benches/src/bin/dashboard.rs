//! The naive-vs-fast dashboard: measures the machine's peak, runs the suite
//! (naive and fast, f32, medians after a warm-up), prints a table and writes
//! `results.json`, `results.md` and a self-contained `index.html`.
//!
//! ```text
//! cargo run --release -p patchwise-benches --bin dashboard -- [--quick] [--threads N] [--rounds R] [--filter SUBSTRING] [--out DIR]
//! ```
//!
//! `--rounds R` times every fast runner (and the matrixmultiply baseline) in
//! R rounds over the whole suite and reports the median of the rounds'
//! medians: on a shared machine whose speed drifts for tens of seconds at a
//! time, one slow phase then moves a row by one round, not by all of it.
//! The naive runners are timed once.

use patchwise_benches::machine::Machine;
use patchwise_benches::report::{self, Measurement};
use patchwise_benches::{suite, Runner};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Options {
    quick: bool,
    threads: Option<usize>,
    rounds: usize,
    filter: Option<String>,
    out: PathBuf,
}

const USAGE: &str = "usage: dashboard [--quick] [--threads N] [--rounds R] [--filter SUBSTRING] [--out DIR]";

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        threads: None,
        rounds: 1,
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
            "--rounds" => {
                let v = value("--rounds")?;
                match v.parse::<usize>() {
                    Ok(n) if n > 0 => o.rounds = n,
                    _ => return Err(format!("--rounds: expected a positive integer, got {v:?}")),
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

/// Shortest span a runner is timed over. The shared machine has slow phases
/// of tens of milliseconds (a 2-thread GEMM then runs at 1-thread speed):
/// 30 runs of a 1 ms kernel could all fall in one, so short kernels run
/// until this much time has passed.
const MIN_SPAN: Duration = Duration::from_millis(300);

/// Median time of `runner` in ms: one warm-up run, then timed runs — at
/// least 3, and at least 30 or [`MIN_SPAN`]'s worth, whichever takes
/// longer, stopping after ~1 s (a single run longer than 2 s is timed once,
/// its warm-up counting as the measurement).
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
        while samples.len() < 3
            || ((samples.len() < 30 || start.elapsed() < MIN_SPAN)
                && start.elapsed() < Duration::from_secs(1))
        {
            samples.push(once(runner));
        }
    }
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3 * runner.scale
}

fn run(o: &Options) -> std::io::Result<()> {
    eprintln!("measuring the machine (peak FMA rate, copy bandwidth)...");
    let mut machine = Machine::measure();
    eprintln!("{}", report::machine_line(&machine));
    let specs: Vec<_> = suite(o.quick)
        .into_iter()
        .filter(|s| {
            o.filter
                .as_ref()
                .is_none_or(|f| format!("{} {}", s.op(), s.shape()).contains(f.as_str()))
        })
        .collect();
    let mut benches: Vec<_> = specs.iter().map(|spec| spec.build()).collect();
    // Per bench and runner, one median per round it was timed in.
    let mut samples: Vec<Vec<Vec<f64>>> = benches
        .iter()
        .map(|b| vec![Vec::new(); b.runners.len()])
        .collect();
    for round in 0..o.rounds {
        for (i, bench) in benches.iter_mut().enumerate() {
            let mut line = format!("[{}/{}] {} {}:", i + 1, specs.len(), bench.op, bench.shape);
            if o.rounds > 1 {
                line = format!("round {}/{} {line}", round + 1, o.rounds);
            }
            for (r, runner) in bench.runners.iter_mut().enumerate() {
                if round > 0 && runner.imp == "naive" {
                    continue;
                }
                let ms = time(runner);
                line.push_str(&format!(" {} {ms:.3} ms", runner.imp));
                samples[i][r].push(ms);
            }
            eprintln!("{line}");
        }
        if round + 1 < o.rounds {
            let reading = machine.probe_peak_again();
            eprintln!(
                "peak probed again: {reading:.1} GFLOP/s (best so far {:.1})",
                machine.peak_gflops
            );
        }
    }
    let mut results = Vec::new();
    for (bench, samples) in benches.iter().zip(&samples) {
        for (runner, ms) in bench.runners.iter().zip(samples) {
            let mut ms = ms.clone();
            ms.sort_by(f64::total_cmp);
            let ms = ms[ms.len() / 2];
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
