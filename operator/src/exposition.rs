//! What `/metrics` answers: the registry in the format the scraper asks for.
//!
//! `prometheus-client` writes OpenMetrics only. Prometheus itself prefers OpenMetrics, but
//! `promtool check metrics`, many agents and `curl` read the Prometheus text format 0.0.4, and a
//! Go operator (client_golang's `promhttp`) answers 0.0.4 unless OpenMetrics is asked for. So the
//! `Accept` header decides, as in `expfmt.NegotiateIncludingOpenMetrics`: the most preferred of
//! the two formats, and 0.0.4 when the scraper names neither. The 0.0.4 page is translated
//! from the OpenMetrics one, so both always carry the same samples.

use std::fmt;

use prometheus_client::registry::Registry;

/// An exposition format both binaries can answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The Prometheus text format, version 0.0.4.
    PrometheusText,
}

impl Format {
    /// The format to answer a request whose `Accept` header is `accept` in.
    ///
    /// Media ranges are tried from the highest `q` down (ties in the order given); a range with
    /// `q=0` is refused by the scraper and skipped. `text/plain` counts when it names version
    /// 0.0.4 or none, `application/openmetrics-text` when it names 1.0.0, 0.0.1 or none.
    /// Anything else (protobuf, `*/*`, no header) falls back to 0.0.4, as `promhttp` does.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let mut ranges: Vec<(f32, mime::Mime)> = accept
            .unwrap_or_default()
            .split(',')
            .filter_map(|range| range.trim().parse::<mime::Mime>().ok())
            .map(|range| (quality(&range), range))
            .filter(|(q, _)| *q > 0.0)
            .collect();
        // Stable: equal weights keep the header's order.
        ranges.sort_by(|(a, _), (b, _)| b.total_cmp(a));
        ranges
            .iter()
            .find_map(|(_, range)| Self::named_by(range))
            .unwrap_or(Self::PrometheusText)
    }

    fn named_by(range: &mime::Mime) -> Option<Self> {
        let version = range.get_param("version").map(|v| v.as_str().to_owned());
        let version = version.as_deref();
        match (range.type_().as_str(), range.subtype().as_str()) {
            ("text", "plain") if matches!(version, None | Some("0.0.4")) => {
                Some(Self::PrometheusText)
            }
            ("application", "openmetrics-text")
                if matches!(version, None | Some("1.0.0") | Some("0.0.1")) =>
            {
                Some(Self::OpenMetrics)
            }
            _ => None,
        }
    }

    /// The `Content-Type` of a page in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The `q` parameter of a media range (1 when absent or unreadable, as RFC 9110 defaults it).
fn quality(range: &mime::Mime) -> f32 {
    range
        .get_param("q")
        .and_then(|q| q.as_str().parse::<f32>().ok())
        .filter(|q| (0.0..=1.0).contains(q))
        .unwrap_or(1.0)
}

/// The registry's metrics as a page in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<String, fmt::Error> {
    let mut page = String::new();
    prometheus_client::encoding::text::encode(&mut page, registry)?;
    Ok(match format {
        Format::OpenMetrics => page,
        Format::PrometheusText => to_prometheus_text(&page),
    })
}

/// Translates an OpenMetrics page as `prometheus-client` writes it into the text format 0.0.4.
///
/// The two differ in their metadata, not their samples: OpenMetrics names a counter family
/// without `_total` (and an info family without `_info`) where 0.0.4 names it after its
/// samples; 0.0.4 has no `info` or `unknown` type (`gauge`, `untyped`), no `# UNIT` lines, no
/// exemplars and no `# EOF`.
fn to_prometheus_text(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Written once the TYPE line that follows says what the family is called in 0.0.4.
            pending_help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (with_suffix(name, "_total"), "counter"),
                "info" => (with_suffix(name, "_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((_, help)) = pending_help.take() {
                out.push_str(&format!("# HELP {name} {help}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some((name, help)) = pending_help.take() {
            // A HELP without a TYPE: keep it as it was.
            out.push_str(&format!("# HELP {name} {help}\n"));
        }
        if line.starts_with('#') {
            // `# UNIT`, `# EOF` and comments have no 0.0.4 form.
            continue;
        }
        out.push_str(without_exemplar(line));
        out.push('\n');
    }
    out
}

fn with_suffix(name: &str, suffix: &str) -> String {
    if name.ends_with(suffix) {
        name.to_owned()
    } else {
        format!("{name}{suffix}")
    }
}

/// A sample line without its ` # {…} value` exemplar; label values (quoted, with `\"`
/// escapes) may themselves contain ` # `, so the search starts after the label set.
fn without_exemplar(line: &str) -> &str {
    let mut in_quotes = false;
    let mut escaped = false;
    let mut labels_end = 0;
    for (at, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => {
                labels_end = at;
                break;
            }
            _ => {}
        }
    }
    match line[labels_end..].find(" # ") {
        Some(at) => &line[..labels_end + at],
        None => line,
    }
}

/// `# HELP` lines ending in two periods: prometheus-client ends every registered help text
/// with a period of its own, so a help text written with one shows two. Each registry's tests
/// assert there are none.
#[cfg(test)]
pub(crate) fn doubled_help_periods(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| line.starts_with("# HELP ") && line.ends_with(".."))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_table() {
        use Format::{OpenMetrics, PrometheusText};
        let cases = [
            (None, PrometheusText),
            (Some(""), PrometheusText),
            (Some("*/*"), PrometheusText),
            (Some("text/plain"), PrometheusText),
            (Some("text/plain;version=0.0.4"), PrometheusText),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                OpenMetrics,
            ),
            // Prometheus 2.x's scrape header.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // Prometheus 3.x's default, protobuf first: not served, so the next best.
            (
                Some(
                    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                     encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,\
                     text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                ),
                OpenMetrics,
            ),
            // The scraper prefers 0.0.4 by weight, whatever the order.
            (
                Some("application/openmetrics-text;q=0.2, text/plain;version=0.0.4;q=0.9"),
                PrometheusText,
            ),
            // Refused (q=0) and unknown versions do not count.
            (Some("application/openmetrics-text;q=0"), PrometheusText),
            (
                Some("application/openmetrics-text;version=2.0.0"),
                PrometheusText,
            ),
            (
                Some("text/plain;version=1.0.0, application/openmetrics-text;q=0.1"),
                OpenMetrics,
            ),
            (Some("not a media type, ;;;"), PrometheusText),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn openmetrics_metadata_becomes_text_0_0_4() {
        let openmetrics = "\
# HELP requests Requests handled.
# TYPE requests counter
requests_total{code=\"200\"} 3
# HELP latency_seconds Time taken.
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
latency_seconds_sum 0.5
latency_seconds_count 2
latency_seconds_bucket{le=\"+Inf\"} 2
# HELP build Build facts.
# TYPE build info
build_info{version=\"1\"} 1
# HELP mystery Unknown.
# TYPE mystery unknown
mystery 7
# HELP depth Queue depth.
# TYPE depth gauge
depth 0
# EOF
";
        let want = "\
# HELP requests_total Requests handled.
# TYPE requests_total counter
requests_total{code=\"200\"} 3
# HELP latency_seconds Time taken.
# TYPE latency_seconds histogram
latency_seconds_sum 0.5
latency_seconds_count 2
latency_seconds_bucket{le=\"+Inf\"} 2
# HELP build_info Build facts.
# TYPE build_info gauge
build_info{version=\"1\"} 1
# HELP mystery Unknown.
# TYPE mystery untyped
mystery 7
# HELP depth Queue depth.
# TYPE depth gauge
depth 0
";
        assert_eq!(to_prometheus_text(openmetrics), want);
    }

    #[test]
    fn exemplars_are_dropped_but_label_values_kept() {
        let cases = [
            ("a_total 1", "a_total 1"),
            (
                "a_total{x=\"1\"} 1 # {trace=\"t\"} 1.0",
                "a_total{x=\"1\"} 1",
            ),
            ("a_total{x=\"a # b\"} 1", "a_total{x=\"a # b\"} 1"),
            (
                "a_total{x=\"q\\\"} # \"} 1 # {t=\"1\"} 2",
                "a_total{x=\"q\\\"} # \"} 1",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(without_exemplar(line), want, "{line}");
        }
    }

    #[test]
    fn a_real_registry_encodes_in_both_formats() {
        use prometheus_client::metrics::counter::Counter;
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        counter.inc();
        registry.register("reconciles", "Reconciles run", counter);
        let openmetrics = encode(&registry, Format::OpenMetrics).expect("encodes");
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
        let text = encode(&registry, Format::PrometheusText).expect("encodes");
        assert_eq!(
            text,
            "# HELP reconciles_total Reconciles run.\n# TYPE reconciles_total counter\nreconciles_total 1\n"
        );
    }
}
