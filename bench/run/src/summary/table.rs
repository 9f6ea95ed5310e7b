//! The summary as an aligned text table, for stdout and `summary.txt`.

use super::Row;

/// The rows as an aligned text table (skipped/failed suites below it).
pub fn table(rows: &[Row]) -> String {
    let measured: Vec<&Row> = rows.iter().filter(|r| !r.figure.is_empty()).collect();
    let head = ["channel", "what", "figure", "floor", "ratio"];
    let cells = |r: &Row| {
        let chan = if r.environment.starts_with("nested") {
            format!("{} (nested, TCG)", r.channel)
        } else if r.environment.starts_with("emulated") {
            format!("{} (TCG)", r.channel)
        } else if r.environment.contains("PVM") {
            format!("{} (PVM)", r.channel)
        } else {
            r.channel.clone()
        };
        [
            chan,
            r.what.clone(),
            r.figure.clone(),
            r.floor.clone(),
            r.ratio.clone(),
        ]
    };
    let mut width = head.map(str::len);
    for r in &measured {
        for (w, c) in width.iter_mut().zip(cells(r)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |c: [String; 5]| {
        let mut s = String::new();
        for (i, (w, c)) in width.iter().zip(c).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            // Figures and ratios right-aligned, text left-aligned.
            if i == 2 || i == 4 {
                s.push_str(&" ".repeat(pad));
                s.push_str(&c);
            } else {
                s.push_str(&c);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head.map(String::from));
    out.push_str(&line(width.map(|w| "-".repeat(w))));
    for r in &measured {
        out.push_str(&line(cells(r)));
    }
    let not_run: Vec<&Row> = rows.iter().filter(|r| r.figure.is_empty()).collect();
    if !not_run.is_empty() {
        out.push('\n');
        for r in not_run {
            out.push_str(&format!("{} {}: {}\n", r.what, r.channel, r.ratio));
        }
    }
    out
}
