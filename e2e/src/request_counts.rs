//! Request counters from a Prometheus text page, grouped by some of their labels: the API
//! server's `apiserver_request_total` by verb and resource, a client's
//! `rest_client_requests_total` by method and code. Two readings subtract to the requests one
//! run cost.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// Counter values summed per combination of the chosen labels' values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestCounts(BTreeMap<Vec<String>, f64>);

/// One `name="value"` pair of a label set (values are Go-quoted: `\"` and `\\` inside).
static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).expect("a valid pattern")
});

impl RequestCounts {
    /// Sums every sample of `metric` in `page` by the values of `labels` (a label a sample
    /// lacks counts as empty). Comment lines and other metrics are skipped.
    pub fn parse(page: &str, metric: &str, labels: &[&str]) -> Self {
        let mut counts = BTreeMap::new();
        for line in page.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.trim_end().rsplit_once(' ') else {
                continue;
            };
            let (name, label_set) = series.split_once('{').unwrap_or((series, ""));
            if name != metric {
                continue;
            }
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let found: BTreeMap<&str, &str> = LABEL
                .captures_iter(label_set)
                .filter_map(|c| Some((c.get(1)?.as_str(), c.get(2)?.as_str())))
                .collect();
            let key = labels
                .iter()
                .map(|label| found.get(label).copied().unwrap_or_default().to_owned())
                .collect();
            *counts.entry(key).or_insert(0.0) += value;
        }
        Self(counts)
    }

    /// What was counted after `earlier` was read, without the combinations that did not grow.
    pub fn since(&self, earlier: &RequestCounts) -> Self {
        let grown = self
            .0
            .iter()
            .filter_map(|(key, value)| {
                let delta = value - earlier.0.get(key).copied().unwrap_or(0.0);
                (delta > 0.0).then(|| (key.clone(), delta))
            })
            .collect();
        Self(grown)
    }

    /// The count for one combination of label values (0 when never seen).
    pub fn get(&self, key: &[&str]) -> f64 {
        self.0
            .iter()
            .find(|(k, _)| k.iter().map(String::as_str).eq(key.iter().copied()))
            .map_or(0.0, |(_, value)| *value)
    }

    /// Every combination, largest count first.
    pub fn largest_first(&self) -> Vec<(Vec<String>, f64)> {
        let mut rows: Vec<_> = self.0.iter().map(|(k, v)| (k.clone(), *v)).collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }

    /// The sum over every combination.
    pub fn total(&self) -> f64 {
        self.0.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 500
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 500
apiserver_request_total{code="200",component="apiserver",dry_run="",group="scaling.example.com",resource="podscalers",scope="resource",subresource="status",verb="PATCH",version="v1"} 1.2e+01
apiserver_request_total{code="0",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_duration_seconds_count{resource="pods",verb="POST"} 9999
"#;

    #[test]
    fn samples_are_summed_by_the_chosen_labels() {
        let counts = RequestCounts::parse(PAGE, "apiserver_request_total", &["verb", "resource"]);
        assert_eq!(
            counts.get(&["POST", "pods"]),
            1003.0,
            "both codes, both subresources"
        );
        assert_eq!(
            counts.get(&["PATCH", "podscalers"]),
            12.0,
            "exponent notation"
        );
        assert_eq!(counts.get(&["WATCH", "pods"]), 2.0);
        assert_eq!(counts.get(&["GET", "pods"]), 0.0);
        assert_eq!(
            counts.total(),
            1017.0,
            "another metric's samples are not counted"
        );
    }

    #[test]
    fn a_missing_label_counts_as_empty() {
        let counts = RequestCounts::parse(PAGE, "apiserver_request_total", &["verb", "missing"]);
        assert_eq!(counts.get(&["POST", ""]), 1003.0);
    }

    #[test]
    fn quoted_values_with_escapes_and_commas_stay_whole() {
        let page =
            "rest_client_requests_total{code=\"<error>\",host=\"a,b\\\"c\",method=\"GET\"} 4\n";
        let counts = RequestCounts::parse(page, "rest_client_requests_total", &["host", "code"]);
        assert_eq!(counts.get(&["a,b\\\"c", "<error>"]), 4.0);
    }

    #[test]
    fn a_later_reading_minus_an_earlier_one_keeps_what_grew() {
        let labels = ["verb", "resource"];
        let before = RequestCounts::parse(PAGE, "apiserver_request_total", &labels);
        let later = PAGE.replace("\"v1\"} 500\n", "\"v1\"} 700\n");
        let after = RequestCounts::parse(&later, "apiserver_request_total", &labels);
        let run = after.since(&before);
        assert_eq!(run.get(&["POST", "pods"]), 400.0, "two series grew by 200");
        assert_eq!(
            run.largest_first().len(),
            1,
            "unchanged combinations are left out"
        );
    }

    #[test]
    fn rows_come_largest_first() {
        let counts = RequestCounts::parse(PAGE, "apiserver_request_total", &["verb"]);
        let verbs: Vec<String> = counts
            .largest_first()
            .into_iter()
            .map(|(key, _)| key.join("/"))
            .collect();
        assert_eq!(verbs, ["POST", "PATCH", "WATCH"]);
    }
}
