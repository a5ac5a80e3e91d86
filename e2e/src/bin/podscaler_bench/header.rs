//! What the output starts with, for the record: the date, the machine, the command, and the
//! client settings every figure depends on.

use procfs::Current as _;

use crate::plan::Plan;

/// What every system's API client is allowed; printed with the results.
pub const CLIENT_SETTINGS: &str = "Client settings: PodScaler operator (kube-rs) and this \
benchmark's client: no client-side rate limit; kube-controller-manager: \
`--kube-api-qps=200 --kube-api-burst=400`; kube-scheduler: its defaults (`--kube-api-qps=50 \
--kube-api-burst=100`), which bound how fast pods are bound to nodes and so every \"all \
Running\" figure; kwok: its defaults. Times run from the create call to the arrival of the \
watch event at the benchmark's own client, after one untimed warm-up trial per system.";

/// The date, the machine and the command, for the record.
pub fn machine_header(plan: &Plan) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = procfs::Meminfo::current()
        .map(|info| format!("{:.1} GiB", info.mem_total as f64 / f64::from(1u32 << 30)))
        .unwrap_or_else(|_| "unknown memory".to_owned());
    let load = procfs::LoadAverage::current()
        .map(|load| format!("{:.2} {:.2} {:.2}", load.one, load.five, load.fifteen))
        .unwrap_or_else(|_| "unknown".to_owned());
    let command: Vec<String> = std::env::args().skip(1).collect();
    format!(
        "# podscaler-bench{}{}\n\n{} UTC; {cpu}, {cores} cores, {memory}; load average at the \
         start {load}.\nCommand: `podscaler-bench {}` (a {} build of the benchmark itself)\n",
        if plan.quick { " (quick)" } else { "" },
        if plan.debug_product {
            " — debug builds of the operator and webhook: the figures mean nothing"
        } else {
            ""
        },
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M"),
        command.join(" "),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )
}
