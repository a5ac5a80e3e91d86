//! A process's memory and CPU time as `/proc/<pid>/status` and `/proc/<pid>/stat` report them,
//! read with the `procfs` crate (as the binaries' own `process_*` metrics are), to compare
//! what PodScaler and kube-controller-manager cost over the same window.

use std::io::BufReader;
use std::time::Duration;

use anyhow::Context;
use procfs::process::{Stat, Status};
use procfs::{FromBufRead, FromRead};

/// One reading of a process's resource usage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// `VmRSS`: resident memory now, in bytes.
    pub rss_bytes: u64,
    /// `VmHWM`: the most resident memory since the process started, in bytes.
    pub peak_rss_bytes: u64,
    /// User plus system CPU time since the process started.
    pub cpu: Duration,
}

impl Usage {
    /// Reads the usage of process `pid`.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let stat = std::fs::read(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        Self::parse(&status, &stat, procfs::ticks_per_second())
    }

    /// The usage in the texts of `/proc/<pid>/status` and `/proc/<pid>/stat`, with CPU times
    /// in clock ticks of `ticks_per_second`.
    pub fn parse(status: &[u8], stat: &[u8], ticks_per_second: u64) -> anyhow::Result<Self> {
        let status =
            Status::from_buf_read(BufReader::new(status)).context("parsing /proc/<pid>/status")?;
        let stat = Stat::from_read(stat).context("parsing /proc/<pid>/stat")?;
        // Kernel threads have no memory lines; a process the benchmark watches always does.
        let kib = |value: Option<u64>, name: &str| {
            value
                .map(|kib| kib * 1024)
                .with_context(|| format!("/proc/<pid>/status has no {name}"))
        };
        anyhow::ensure!(ticks_per_second > 0, "zero clock ticks per second");
        let ticks = stat.utime + stat.stime;
        Ok(Self {
            rss_bytes: kib(status.vmrss, "VmRSS")?,
            peak_rss_bytes: kib(status.vmhwm, "VmHWM")?,
            cpu: Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64),
        })
    }

    /// The CPU time spent between `earlier` and this reading.
    pub fn cpu_since(&self, earlier: &Usage) -> Duration {
        self.cpu.saturating_sub(earlier.cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole `/proc/<pid>/status` (procfs wants every line a kernel writes).
    const STATUS: &str = "Name:\tpodscaler-opera
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
Ngid:\t0
Pid:\t4242
PPid:\t1
TracerPid:\t0
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
FDSize:\t64
Groups:\t
NStgid:\t4242
NSpid:\t4242
NSpgid:\t4242
NSsid:\t4242
VmPeak:\t  123456 kB
VmSize:\t  120000 kB
VmLck:\t       0 kB
VmPin:\t       0 kB
VmHWM:\t   29696 kB
VmRSS:\t   24576 kB
RssAnon:\t   16384 kB
RssFile:\t    8192 kB
RssShmem:\t       0 kB
VmData:\t   40000 kB
VmStk:\t     132 kB
VmExe:\t    9000 kB
VmLib:\t    1528 kB
VmPTE:\t      96 kB
VmSwap:\t       0 kB
HugetlbPages:\t       0 kB
CoreDumping:\t0
THP_enabled:\t1
Threads:\t5
SigQ:\t0/96363
SigPnd:\t0000000000000000
ShdPnd:\t0000000000000000
SigBlk:\t0000000000000000
SigIgn:\t0000000000001000
SigCgt:\t0000000100004440
CapInh:\t0000000000000000
CapPrm:\t000001fffeffffff
CapEff:\t000001fffeffffff
CapBnd:\t000001fffeffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t0
Seccomp:\t0
Speculation_Store_Bypass:\tthread vulnerable
Cpus_allowed:\t3
Cpus_allowed_list:\t0-1
Mems_allowed:\t00000001
Mems_allowed_list:\t0
voluntary_ctxt_switches:\t120
nonvoluntary_ctxt_switches:\t7
";

    /// utime 150 ticks, stime 50 ticks (fields 14 and 15); the command contains a space and a
    /// parenthesis, which the parser must not split on.
    const STAT: &str = "4242 (podscaler (op) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 \
        0 0 20 0 5 0 12345 120000000 6144 18446744073709551615 1 1 0 0 0 0 0 4096 17638 0 0 0 \
        17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn memory_comes_from_vmrss_and_vmhwm_in_bytes() {
        let usage = Usage::parse(STATUS.as_bytes(), STAT.as_bytes(), 100).expect("parses");
        assert_eq!(usage.rss_bytes, 24576 * 1024);
        assert_eq!(usage.peak_rss_bytes, 29696 * 1024);
    }

    #[test]
    fn cpu_time_is_user_plus_system_ticks() {
        let usage = Usage::parse(STATUS.as_bytes(), STAT.as_bytes(), 100).expect("parses");
        assert_eq!(usage.cpu, Duration::from_secs(2));
        let earlier = Usage {
            cpu: Duration::from_millis(500),
            ..usage
        };
        assert_eq!(usage.cpu_since(&earlier), Duration::from_millis(1500));
        assert_eq!(earlier.cpu_since(&usage), Duration::ZERO);
    }

    #[test]
    fn a_status_without_memory_lines_is_an_error() {
        // As a kernel thread's: no Vm* or Rss* lines.
        let kernel_thread: String = STATUS
            .lines()
            .filter(|line| !line.starts_with("Vm") && !line.starts_with("Rss"))
            .map(|line| format!("{line}\n"))
            .collect();
        let error =
            Usage::parse(kernel_thread.as_bytes(), STAT.as_bytes(), 100).expect_err("no VmRSS");
        assert!(format!("{error:#}").contains("VmRSS"), "{error:#}");
    }

    #[test]
    fn this_process_can_be_read() {
        let usage = Usage::read(std::process::id()).expect("reads /proc/self");
        assert!(usage.rss_bytes > 0 && usage.peak_rss_bytes >= usage.rss_bytes);
    }
}
