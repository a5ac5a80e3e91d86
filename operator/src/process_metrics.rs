//! Process metrics under the names every Prometheus client library uses (and Go operators
//! expose by default): `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
//! `process_max_fds`. Read from `/proc` at each scrape; a value that cannot be read is left out
//! rather than failing the scrape.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (the kernel's `USER_HZ`, 100 on
/// every architecture Kubernetes runs on; Prometheus' Go `procfs` hard-codes it too).
const USER_HZ: f64 = 100.0;

/// Adds the process metrics of this process to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector));
}

/// Reads `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let sample = ProcessSample::read();
        if let Some(seconds) = sample.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                sample.resident_bytes.map(as_f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                sample.virtual_bytes.map(as_f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                sample.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                sample.open_fds.map(as_f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                sample.max_fds.map(as_f64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

/// Byte and descriptor counts are far below 2^53: exact as `f64`.
fn as_f64(value: u64) -> f64 {
    value as f64
}

/// One look at the process; `None` for what could not be read.
#[derive(Debug, Default, PartialEq)]
struct ProcessSample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl ProcessSample {
    fn read() -> Self {
        let text = |path: &str| std::fs::read_to_string(path).ok();
        let stat = text("/proc/self/stat").and_then(|stat| parse_stat(&stat));
        let status = text("/proc/self/status");
        let boot_time = text("/proc/stat").and_then(|stat| parse_boot_time(&stat));
        Self {
            cpu_seconds: stat.as_ref().map(|stat| stat.cpu_ticks as f64 / USER_HZ),
            resident_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS")),
            virtual_bytes: status.as_deref().and_then(|s| status_kib(s, "VmSize")),
            start_time_seconds: stat
                .zip(boot_time)
                .map(|(stat, boot)| boot as f64 + stat.start_ticks as f64 / USER_HZ),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as u64),
            max_fds: text("/proc/self/limits").and_then(|limits| parse_max_open_files(&limits)),
        }
    }
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, PartialEq)]
struct Stat {
    /// utime + stime, in `USER_HZ` ticks.
    cpu_ticks: u64,
    /// Start time after boot, in `USER_HZ` ticks.
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat` (proc(5)): `pid (comm) state ...`, where comm may contain spaces and
/// parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let after_comm = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 (utime), 15 (stime) and 22 (starttime); `state` (field 3) is fields[0].
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
    })
}

/// `btime` of `/proc/stat`: boot time, in seconds since the epoch.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS:   15764 kB`), in bytes.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft limit on open files from `/proc/<pid>/limits` (None when unlimited).
fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let cases = [
            (
                "1234 (podscaler-oper) S 1 1234 1234 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 3 0 \
                 4242 123456 3941 18446744073709551615",
                Some(Stat {
                    cpu_ticks: 175,
                    start_ticks: 4242,
                }),
            ),
            // A command name with spaces and parentheses.
            (
                "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 99 0 0",
                Some(Stat {
                    cpu_ticks: 7,
                    start_ticks: 99,
                }),
            ),
            ("7 (truncated) R 1 7", None),
            ("no parenthesis at all", None),
            ("7 (x) R 1 7 7 0 -1 0 0 0 0 0 abc 4 0 0 20 0 1 0 99", None),
        ];
        for (stat, want) in cases {
            assert_eq!(parse_stat(stat), want, "{stat}");
        }
    }

    #[test]
    fn boot_time_status_lines_and_limits_are_read() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1763884800\nprocesses 9\n"),
            Some(1_763_884_800)
        );
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);

        let status = "Name:\tpodscaler\nVmSize:\t  694304 kB\nVmRSS:\t   15764 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(15764 * 1024));
        assert_eq!(status_kib(status, "VmSize"), Some(694_304 * 1024));
        assert_eq!(status_kib(status, "VmSwap"), None);

        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(parse_max_open_files(limits), Some(1_048_576));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);
    }

    #[test]
    fn a_scrape_exposes_this_process() {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        };
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert!(
            value("process_open_fds") >= 3.0,
            "stdin, stdout, stderr at least"
        );
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let started = value("process_start_time_seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 365.0,
            "start time {started} vs now {now}"
        );
        assert!(
            text.contains("# TYPE process_cpu_seconds counter"),
            "{text}"
        );
    }
}
