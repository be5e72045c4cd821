//! The dashboard's outputs: the terminal table, Markdown, `results.json`
//! and a self-contained `index.html` with SVG charts.

use crate::machine::Machine;
use std::fmt::Write;

/// One measured implementation of one benchmark.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Op group.
    pub op: String,
    /// Shape label.
    pub shape: String,
    /// `naive`, `fast` or `matrixmultiply`.
    pub imp: String,
    /// Median time of a full run, ms (scaled when the runner did a slice).
    pub median_ms: f64,
    /// GFLOP/s (compute-bound ops).
    pub gflops: Option<f64>,
    /// GB/s (memory-bound ops).
    pub gbps: Option<f64>,
    /// How the time was obtained, if scaled.
    pub note: Option<String>,
}

/// One row of the table: a benchmark's implementations side by side.
struct Row<'a> {
    op: &'a str,
    shape: &'a str,
    naive: Option<&'a Measurement>,
    fast: Option<&'a Measurement>,
    mm: Option<&'a Measurement>,
}

fn rows(results: &[Measurement]) -> Vec<Row<'_>> {
    let mut rows: Vec<Row<'_>> = Vec::new();
    for m in results {
        let idx = match rows.iter().position(|r| r.op == m.op && r.shape == m.shape) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    op: &m.op,
                    shape: &m.shape,
                    naive: None,
                    fast: None,
                    mm: None,
                });
                rows.len() - 1
            }
        };
        match m.imp.as_str() {
            "naive" => rows[idx].naive = Some(m),
            "fast" => rows[idx].fast = Some(m),
            _ => rows[idx].mm = Some(m),
        }
    }
    rows
}

fn ms(m: Option<&Measurement>) -> String {
    m.map_or("-".into(), |m| format!("{:.3}", m.median_ms))
}

/// (speed-up, rate with unit, % of the machine limit) of a row.
fn figures(r: &Row<'_>, machine: &Machine) -> (String, String, String) {
    let speedup = match (r.naive, r.fast) {
        (Some(n), Some(f)) => format!("{:.1}x", n.median_ms / f.median_ms),
        _ => "-".into(),
    };
    let Some(f) = r.fast else {
        return (speedup, "-".into(), "-".into());
    };
    if let Some(g) = f.gflops {
        (
            speedup,
            format!("{g:.1} GFLOP/s"),
            format!("{:.1}%", 100.0 * g / machine.peak_gflops),
        )
    } else if let Some(b) = f.gbps {
        (
            speedup,
            format!("{b:.1} GB/s"),
            format!("{:.1}%", 100.0 * b / machine.copy_gbps),
        )
    } else {
        (speedup, "-".into(), "-".into())
    }
}

const HEADERS: [&str; 8] = [
    "op",
    "shape",
    "naive ms",
    "fast ms",
    "matrixmultiply ms",
    "speed-up",
    "fast rate",
    "% of peak",
];

fn table_cells(results: &[Measurement], machine: &Machine) -> Vec<[String; 8]> {
    rows(results)
        .iter()
        .map(|r| {
            let (speedup, rate, pct) = figures(r, machine);
            [
                r.op.to_string(),
                r.shape.to_string(),
                ms(r.naive),
                ms(r.fast),
                ms(r.mm),
                speedup,
                rate,
                pct,
            ]
        })
        .collect()
}

/// A header line describing the machine.
pub fn machine_line(m: &Machine) -> String {
    let avx2 = m
        .avx2_peak_gflops
        .map_or(String::new(), |g| format!(" (AVX2 FMA: {g:.1})"));
    // A forced narrower kernel set (PATCHWISE_FORCE_ISA) binds patchwise
    // only: matrixmultiply detects the CPU's widest kernels itself.
    let kernels = patchwise_kernels::selected_isa();
    let forced = if kernels < m.isa {
        format!(
            " patchwise's kernels forced to {kernels:?}; matrixmultiply picks its own for this CPU (up to {:?}).",
            m.isa
        )
    } else {
        String::new()
    };
    format!(
        "CPU: {}, {} threads, widest FMA {:?}; peak f32 {:.1} GFLOP/s (best probe of the run){avx2}; copy bandwidth {:.1} GB/s. \
         % of peak: GFLOP/s over the {:?} peak, GB/s (bytes read + written) over the copy bandwidth.{forced}",
        m.cpu, m.threads, m.isa, m.peak_gflops, m.copy_gbps, m.isa
    )
}

/// The table as aligned text.
pub fn text_table(results: &[Measurement], machine: &Machine) -> String {
    let cells = table_cells(results, machine);
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(out, "{}", line(&HEADERS.map(String::from)));
    for row in &cells {
        let _ = writeln!(out, "{}", line(row));
    }
    out
}

/// The table as Markdown.
pub fn markdown_table(results: &[Measurement], machine: &Machine) -> String {
    let mut out = format!(
        "{}\n\n| {} |\n|{}\n",
        machine_line(machine),
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    );
    for row in table_cells(results, machine) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let notes: Vec<&String> = results.iter().filter_map(|m| m.note.as_ref()).collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\nScaled naive timings: {}.", notes.len());
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

/// `results.json`.
pub fn json(results: &[Measurement], m: &Machine) -> String {
    let mut out = String::from("{\n  \"machine\": {");
    let _ = write!(
        out,
        "\"cpu\": {}, \"threads\": {}, \"peak_gflops\": {}, \"copy_gbps\": {}, \"isa\": {}, \"avx2_peak_gflops\": {}",
        json_string(&m.cpu),
        m.threads,
        json_number(Some(m.peak_gflops)),
        json_number(Some(m.copy_gbps)),
        json_string(&format!("{:?}", m.isa)),
        json_number(m.avx2_peak_gflops),
    );
    out.push_str("},\n  \"results\": [\n");
    let items: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "    {{\"op\": {}, \"shape\": {}, \"impl\": {}, \"median_ms\": {}, \"gflops\": {}, \"gbps\": {}, \"note\": {}}}",
                json_string(&r.op),
                json_string(&r.shape),
                json_string(&r.imp),
                json_number(Some(r.median_ms)),
                json_number(r.gflops),
                json_number(r.gbps),
                r.note.as_deref().map_or("null".into(), json_string),
            )
        })
        .collect();
    out.push_str(&items.join(",\n"));
    out.push_str("\n  ]\n}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A horizontal bar chart as inline SVG: one bar per (label, value), an
/// optional reference line (value, caption), log scale when `log`.
fn bar_chart(
    title: &str,
    unit: &str,
    bars: &[(String, f64)],
    line: Option<(f64, String)>,
    log: bool,
) -> String {
    if bars.is_empty() {
        return String::new();
    }
    let (label_w, plot_w, bar_h, top) = (430.0, 520.0, 18.0, 40.0);
    let height = top + bars.len() as f64 * (bar_h + 4.0) + 30.0;
    let max = bars
        .iter()
        .map(|b| b.1)
        .chain(line.as_ref().map(|l| l.0))
        .fold(1e-9, f64::max)
        * 1.05;
    let x = |v: f64| -> f64 {
        if log {
            let lo = 1.0f64.log10().min(0.0);
            plot_w * ((v.max(1.0).log10() - lo) / (max.max(10.0).log10() - lo))
        } else {
            plot_w * v / max
        }
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"4\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        label_w + plot_w + 90.0,
        escape(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = top + i as f64 * (bar_h + 4.0);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"{bar_h}\" fill=\"#3b7dd8\"/><text x=\"{:.1}\" y=\"{}\">{v:.1}{unit}</text>",
            label_w - 6.0,
            y + 13.0,
            escape(label),
            x(*v).max(1.0),
            label_w + x(*v) + 4.0,
            y + 13.0,
        );
    }
    if let Some((v, caption)) = line {
        let lx = label_w + x(v);
        let _ = writeln!(
            svg,
            "<line x1=\"{lx:.1}\" y1=\"{}\" x2=\"{lx:.1}\" y2=\"{}\" stroke=\"#d33\" stroke-width=\"2\" stroke-dasharray=\"5,3\"/><text x=\"{:.1}\" y=\"{}\" fill=\"#d33\">{}</text>",
            top - 8.0,
            height - 20.0,
            lx - 4.0,
            height - 6.0,
            escape(&caption)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The self-contained HTML page (inline CSS and SVG; no scripts or fonts).
pub fn html(results: &[Measurement], m: &Machine, command: &str) -> String {
    let rows = rows(results);
    let speedups: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                format!("{} {}", r.op, r.shape),
                r.naive?.median_ms / r.fast?.median_ms,
            ))
        })
        .collect();
    let flops: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| Some((format!("{} {}", r.op, r.shape), r.fast?.gflops?)))
        .collect();
    let mm: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| Some((format!("{} {} (matrixmultiply)", r.op, r.shape), r.mm?.gflops?)))
        .collect();
    let bytes: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| Some((format!("{} {}", r.op, r.shape), r.fast?.gbps?)))
        .collect();
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>patchwise dashboard</title>\n\
         <style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:nth-child(-n+2),th{text-align:left}\
         svg{display:block;margin:1.5em 0}</style></head><body>\n<h1>patchwise: naive vs fast</h1>\n",
    );
    let _ = writeln!(
        page,
        "<p>{}</p>\n<p>Command: <code>{}</code></p>",
        escape(&machine_line(m)),
        escape(command)
    );
    page.push_str(&bar_chart(
        "Speed-up of fast over naive (log scale)",
        "x",
        &speedups,
        None,
        true,
    ));
    let mut gflop_bars = flops;
    gflop_bars.extend(mm);
    page.push_str(&bar_chart(
        "Fast GFLOP/s against the measured peak",
        "",
        &gflop_bars,
        Some((m.peak_gflops, format!("peak {:.0} GFLOP/s", m.peak_gflops))),
        false,
    ));
    page.push_str(&bar_chart(
        "Memory-bound ops: GB/s (read + written) against the copy bandwidth",
        "",
        &bytes,
        Some((m.copy_gbps, format!("copy {:.0} GB/s", m.copy_gbps))),
        false,
    ));
    page.push_str("<table>\n<tr>");
    for h in HEADERS {
        let _ = write!(page, "<th>{h}</th>");
    }
    page.push_str("</tr>\n");
    for row in table_cells(results, m) {
        page.push_str("<tr>");
        for c in row {
            let _ = write!(page, "<td>{}</td>", escape(&c));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n");
    let notes: Vec<String> = results
        .iter()
        .filter_map(|r| r.note.as_ref().map(|n| format!("{} {}: {n}", r.op, r.shape)))
        .collect();
    if !notes.is_empty() {
        page.push_str("<h3>Scaled naive timings</h3><ul>\n");
        for n in notes {
            let _ = writeln!(page, "<li>{}</li>", escape(&n));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</body></html>\n");
    page
}
