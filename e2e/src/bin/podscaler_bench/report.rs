//! The benchmark's output: Markdown tables, so a run pastes into BENCHMARKS.md as it is.

use std::fmt::Write as _;
use std::time::Duration;

use e2e::request_counts::RequestCounts;
use e2e::stats::{Spread, Unit, ratio};

use crate::footprint::Footprint;
use crate::safety::Overshoot;
use crate::webhook_load::{LoadResult, Pace};

/// A Markdown table built row by row.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|cell| (*cell).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table, one line per row, cells separated by ` | `.
    pub fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        out.push_str(&line(&vec!["---".to_owned(); self.header.len()]));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// A spread of seconds, or `–` when nothing was measured.
pub fn seconds(spread: Option<Spread>) -> String {
    spread.map_or_else(|| "–".to_owned(), |s| s.display(Unit::Seconds).to_string())
}

/// One row comparing PodScaler's spread to the ReplicaSet's.
pub fn compared(measure: String, ours: &[Duration], theirs: &[Duration]) -> Vec<String> {
    let (ours, theirs) = (Spread::of_durations(ours), Spread::of_durations(theirs));
    vec![measure, seconds(ours), seconds(theirs), ratio(ours, theirs)]
}

/// The P3 table.
pub fn overshoot(
    podscaler: &Overshoot,
    replica_set: &Overshoot,
    sizes: &crate::safety::Sizes,
) -> String {
    let mut table = Table::new(&[
        "P3: most active pods above `count`",
        "PodScaler",
        "ReplicaSet",
    ]);
    let rows = [
        (
            format!("0 → {}", sizes.count),
            podscaler.scale_up,
            replica_set.scale_up,
        ),
        (
            format!(
                "churn: {} pods deleted at once, {} rounds",
                sizes.churn_pods, sizes.churn_rounds
            ),
            podscaler.churn,
            replica_set.churn,
        ),
        (
            format!(
                "0 → {} with the template edited 3 times on the way",
                sizes.count
            ),
            podscaler.edited,
            replica_set.edited,
        ),
    ];
    for (scenario, ours, theirs) in rows {
        table.row(vec![scenario, ours.to_string(), theirs.to_string()]);
    }
    table.render()
}

/// The P4 table.
pub fn footprints(footprints: &[Footprint]) -> String {
    let mut table = Table::new(&[
        "P4: PodScalers × pods",
        "converged in",
        "idle window",
        "operator VmRSS",
        "operator VmHWM",
        "operator CPU (of a core)",
        "kube-controller-manager VmRSS",
        "kube-controller-manager CPU",
    ]);
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    let percent = |cores: f64| format!("{:.2} %", cores * 100.0);
    for f in footprints {
        table.row(vec![
            format!(
                "{} × {} ({} pods)",
                f.shape.scalers,
                f.shape.pods,
                f.shape.total()
            ),
            format!("{:.1} s", f.converged.as_secs_f64()),
            format!("{} s", f.window.as_secs()),
            mib(f.operator.rss_bytes),
            mib(f.operator.peak_rss_bytes),
            percent(f.operator_cores),
            mib(f.controller_manager.rss_bytes),
            percent(f.controller_manager_cores),
        ]);
    }
    table.render()
}

/// The API-call tables: the API server's counts side by side, then the operator's own.
pub fn api_calls(
    count: usize,
    podscaler: &RequestCounts,
    replica_set: &RequestCounts,
    operator: Option<&RequestCounts>,
) -> String {
    let mut out = String::new();
    let mut table = Table::new(&[
        &format!("API server requests per 0 → {count} (verb resource subresource)"),
        "PodScaler run",
        "ReplicaSet run",
    ]);
    let mut keys: Vec<Vec<String>> = podscaler
        .largest_first()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for (key, _) in replica_set.largest_first() {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for key in keys {
        let parts: Vec<&str> = key.iter().map(String::as_str).collect();
        table.row(vec![
            parts.join(" ").trim_end().to_owned(),
            format!("{:.0}", podscaler.get(&parts)),
            format!("{:.0}", replica_set.get(&parts)),
        ]);
    }
    table.row(vec![
        "**total**".to_owned(),
        format!("{:.0}", podscaler.total()),
        format!("{:.0}", replica_set.total()),
    ]);
    out.push_str(&table.render());
    if let Some(operator) = operator {
        let mut table = Table::new(&[
            "operator rest_client_requests_total (method code)",
            "requests",
        ]);
        for (key, value) in operator.largest_first() {
            table.row(vec![key.join(" "), format!("{value:.0}")]);
        }
        table.row(vec![
            "**total**".to_owned(),
            format!("{:.0}", operator.total()),
        ]);
        let _ = write!(out, "\n{}", table.render());
    }
    out
}

/// The webhook runs, a row per admission path and pace: throughput, latency, and the
/// webhook's CPU time and memory.
pub fn webhook(results: &[LoadResult]) -> String {
    let mut table = Table::new(&[
        "webhook path",
        "pace",
        "requests",
        "req/s",
        "p50",
        "p99",
        "CPU-s per 10k requests",
        "VmRSS",
        "VmHWM",
    ]);
    let millis = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    for r in results {
        let pace = match r.pace {
            Pace::Fixed { per_second } => format!("fixed {per_second}/s, 1 connection"),
            Pace::Max { connections } => format!("max, {connections} connections"),
        };
        table.row(vec![
            r.path.to_owned(),
            pace,
            r.requests.to_string(),
            format!("{:.0}", r.per_second),
            millis(r.p50),
            millis(r.p99),
            format!("{:.2}", r.cpu_per_10k.as_secs_f64()),
            format!("{:.1} MiB", r.usage.rss_bytes as f64 / (1024.0 * 1024.0)),
            format!(
                "{:.1} MiB",
                r.usage.peak_rss_bytes as f64 / (1024.0 * 1024.0)
            ),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_as_markdown() {
        let mut table = Table::new(&["measure", "value"]);
        table.row(vec!["a".into(), "1".into()]);
        assert_eq!(
            table.render(),
            "| measure | value |\n| --- | --- |\n| a | 1 |\n"
        );
    }

    #[test]
    fn a_compared_row_has_both_spreads_and_the_ratio_of_medians() {
        let ms = Duration::from_millis;
        let row = compared("P1".into(), &[ms(30), ms(20), ms(40)], &[ms(20)]);
        assert_eq!(
            row,
            ["P1", "30 ms (20 ms–40 ms, n=3)", "20 ms (n=1)", "1.50×"]
        );
        let missing = compared("P1".into(), &[], &[ms(20)]);
        assert_eq!(missing[1], "–");
        assert_eq!(missing[3], "–");
    }
}
