//! `podscaler-bench`: PodScaler side by side with the ReplicaSet controller on one local
//! control plane (the e2e suite's: etcd, kube-apiserver, kube-controller-manager at
//! `--kube-api-qps=200 --kube-api-burst=400`, kube-scheduler, kwok nodes), with the release
//! builds of the operator and the webhook. Prints Markdown tables (for BENCHMARKS.md) of:
//!
//! - P1: create call → first pod created, → `count` pods Running (count 1 and 10);
//! - P2: 0 → N all created / all Running, and the raw limit of the benchmark's own parallel
//!   creates; the API calls of one 0 → N run;
//! - P3: the most active pods above `count` during a scale-up, churn and edits;
//! - P4: operator and kube-controller-manager memory and CPU over an idle window;
//! - the webhook under keep-alive HTTPS load.
//!
//! Trials of the two systems interleave, so a change in the machine's load hits both. Every
//! time is from the create call to the arrival of the watch event at the benchmark's own
//! client. It asserts nothing about times; it fails only when something never converges.

mod footprint;
mod report;
mod safety;
mod scaling;
mod timeline;
mod webhook_load;
mod workload;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use e2e::binaries::Product;
use e2e::cluster::ensure_namespace;
use e2e::product::{self, Operator};
use e2e::webhook::{MUTATE_PATH, VALIDATE_PATH, Webhook};
use e2e::{Cluster, Options};
use podscaler::runtime::parse_duration;

use footprint::{Footprint, Shape};
use scaling::{ApiCalls, ApiMeter, Milestones};
use webhook_load::{LoadResult, Pace};
use workload::System;

/// Measures PodScaler against the ReplicaSet controller on a local control plane.
#[derive(Parser, Debug)]
#[command(name = "podscaler-bench")]
struct Cli {
    /// Every measure once, with small counts (under 3 minutes): what CI runs so the benchmark
    /// keeps working. Flags given explicitly still apply.
    #[arg(long)]
    quick: bool,
    /// Trials per system and count for P1 [default: 15; quick: 1].
    #[arg(long)]
    p1_trials: Option<usize>,
    /// Pods of the P2 scale-up [default: 500; quick: 50].
    #[arg(long)]
    p2_count: Option<usize>,
    /// Trials per system for P2, and per parallelism for the raw limit [default: 3; quick: 1].
    #[arg(long)]
    p2_trials: Option<usize>,
    /// Creates in flight for the raw limit, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 32, 128])]
    raw_in_flight: Vec<usize>,
    /// Pods of the P3 scenarios [default: 200; quick: 20].
    #[arg(long)]
    p3_count: Option<usize>,
    /// Pods deleted at once per P3 churn round [default: 20; quick: 5].
    #[arg(long)]
    churn_pods: Option<usize>,
    /// P3 churn rounds [default: 10; quick: 2].
    #[arg(long)]
    churn_rounds: Option<usize>,
    /// P4 shapes, <PodScalers>x<pods each>, comma-separated [default: 1x500,200x5,1000x10;
    /// quick: 1x20,4x5].
    #[arg(long, value_delimiter = ',', value_parser = Shape::parse)]
    p4_shapes: Option<Vec<Shape>>,
    /// The P4 idle window [default: 2m; quick: 5s].
    #[arg(long, value_parser = parse_duration)]
    idle_window: Option<Duration>,
    /// How long each webhook load run lasts [default: 20s; quick: 2s].
    #[arg(long, value_parser = parse_duration)]
    webhook_duration: Option<Duration>,
    /// Requests per second of the fixed-rate webhook runs.
    #[arg(long, default_value_t = 200)]
    webhook_rate: u32,
    /// Connections (one client thread each) of the max-rate webhook runs [default: cores].
    #[arg(long)]
    webhook_connections: Option<usize>,
    /// kwok nodes [default: enough for the largest run at 200 pods a node].
    #[arg(long)]
    nodes: Option<usize>,
    /// How long one run may take to converge before the benchmark fails.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    /// Runs the debug builds of the operator and the webhook instead of release builds: what
    /// `.ci/run` does, where the quick run only proves the benchmark works (a cold release
    /// build costs more than the rest of CI's build). Figures of debug builds mean nothing.
    #[arg(long)]
    debug_product: bool,
}

/// Pods per kwok node the default node count allows for (each node takes 250).
const PODS_PER_NODE: usize = 200;

/// What one invocation measures, with `--quick`'s defaults resolved.
#[derive(Clone, Debug)]
struct Plan {
    quick: bool,
    p1_trials: usize,
    p2_count: usize,
    p2_trials: usize,
    raw_in_flight: Vec<usize>,
    p3: safety::Sizes,
    p4_shapes: Vec<Shape>,
    idle_window: Duration,
    webhook_duration: Duration,
    webhook_rate: u32,
    webhook_connections: usize,
    nodes: usize,
    timeout: Duration,
    debug_product: bool,
}

impl Plan {
    fn from_cli(cli: Cli) -> Self {
        let pick = |quick: usize, full: usize| if cli.quick { quick } else { full };
        let p2_count = cli.p2_count.unwrap_or(pick(50, 500));
        let p3 = safety::Sizes {
            count: cli.p3_count.unwrap_or(pick(20, 200)),
            churn_pods: cli.churn_pods.unwrap_or(pick(5, 20)),
            churn_rounds: cli.churn_rounds.unwrap_or(pick(2, 10)),
        };
        let p4_shapes = cli.p4_shapes.unwrap_or_else(|| {
            let shapes: &[(usize, usize)] = if cli.quick {
                &[(1, 20), (4, 5)]
            } else {
                &[(1, 500), (200, 5), (1000, 10)]
            };
            shapes
                .iter()
                .map(|&(scalers, pods)| Shape { scalers, pods })
                .collect()
        });
        let largest = p4_shapes
            .iter()
            .map(|shape| shape.total())
            .chain([p2_count, p3.count])
            .max()
            .unwrap_or(0);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            quick: cli.quick,
            p1_trials: cli.p1_trials.unwrap_or(pick(1, 15)),
            p2_count,
            p2_trials: cli.p2_trials.unwrap_or(pick(1, 3)),
            raw_in_flight: cli.raw_in_flight,
            p3,
            idle_window: cli.idle_window.unwrap_or(if cli.quick {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(120)
            }),
            webhook_duration: cli.webhook_duration.unwrap_or(if cli.quick {
                Duration::from_secs(2)
            } else {
                Duration::from_secs(20)
            }),
            webhook_rate: cli.webhook_rate,
            webhook_connections: cli.webhook_connections.unwrap_or(cores),
            nodes: cli.nodes.unwrap_or(largest.div_ceil(PODS_PER_NODE) + 1),
            p4_shapes,
            timeout: cli.timeout,
            debug_product: cli.debug_product,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=off,kube_runtime=off".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: CI keeps this output in a file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let plan = Plan::from_cli(Cli::parse());
    // Current-thread runtime on the main thread: the child processes' parent-death signal is
    // tied to the thread that started them, which must live as long as they do.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(plan: &Plan) -> anyhow::Result<()> {
    let started = Instant::now();
    let header = machine_header(plan);
    let build = async {
        if plan.debug_product {
            Product::build().await
        } else {
            Product::build_release().await
        }
    };
    let (product, cluster) =
        tokio::try_join!(build, Cluster::start(Options { nodes: plan.nodes }))?;
    let client = cluster.client();
    product::install_crd(&client).await?;
    for system in System::BOTH {
        ensure_namespace(&client, system.namespace()).await?;
    }
    let operator = Operator::launch_binary(
        &product.operator,
        "operator-bench",
        cluster.kubeconfig(),
        cluster.dir(),
        &[
            format!("--namespace={}", System::PodScaler.namespace()),
            "--log-level=info".to_owned(),
        ],
    )
    .await?;

    let mut out = header;
    out.push_str(&format!(
        "Kubernetes {}, {} kwok nodes.\n\n{}\n",
        cluster.version(),
        plan.nodes,
        CLIENT_SETTINGS
    ));
    print_section(&out);

    warm_up(&client, plan.timeout).await?;
    let latency = p1(&client, plan).await?;
    print_section(&latency);
    let throughput = p2(&client, &operator, plan).await?;
    print_section(&throughput);
    let safety = p3(&client, plan).await?;
    print_section(&safety);
    drop(operator);

    let mut footprints: Vec<Footprint> = Vec::new();
    for shape in &plan.p4_shapes {
        tracing::info!("P4: {} PodScalers × {} pods", shape.scalers, shape.pods);
        footprints.push(
            footprint::measure(
                &cluster,
                &product.operator,
                *shape,
                plan.idle_window,
                plan.timeout,
            )
            .await?,
        );
    }
    print_section(&report::footprints(&footprints));

    let webhook = webhook_runs(&cluster, &product, plan).await?;
    print_section(&report::webhook(&webhook));
    print_section(&format!(
        "Finished in {:.0} s.\n",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// What every system's API client is allowed; printed with the results.
const CLIENT_SETTINGS: &str = "Client settings: PodScaler operator (kube-rs) and this \
benchmark's client: no client-side rate limit; kube-controller-manager: \
`--kube-api-qps=200 --kube-api-burst=400`; kube-scheduler: its defaults (`--kube-api-qps=50 \
--kube-api-burst=100`), which bound how fast pods are bound to nodes and so every \"all \
Running\" figure; kwok: its defaults. Times run from the create call to the arrival of the \
watch event at the benchmark's own client, after one untimed warm-up trial per system.";

fn print_section(text: &str) {
    println!("{text}");
}

/// The date, the machine and the command, for the record.
fn machine_header(plan: &Plan) -> String {
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

use procfs::Current as _;

/// One untimed scale-up to a pod per system: the first PodScaler after the operator started
/// took 2 s in a quick run (caches and connections warming), which is not what P1 is about.
async fn warm_up(client: &kube::Client, timeout: Duration) -> anyhow::Result<()> {
    for system in System::BOTH {
        tracing::info!("warm-up: {system:?}");
        scaling::scale_up(client, system, "warm-up", 1, timeout, None).await?;
    }
    Ok(())
}

/// P1 for count 1 and 10, trials of the two systems interleaved.
async fn p1(client: &kube::Client, plan: &Plan) -> anyhow::Result<String> {
    let mut table =
        report::Table::new(&["P1", "PodScaler", "ReplicaSet", "PodScaler / ReplicaSet"]);
    for count in [1, 10] {
        let mut stored = [Vec::new(), Vec::new()];
        let mut first = [Vec::new(), Vec::new()];
        let mut controller_share = [Vec::new(), Vec::new()];
        let mut running = [Vec::new(), Vec::new()];
        for trial in 0..plan.p1_trials {
            for (index, system) in System::BOTH.into_iter().enumerate() {
                let name = format!("p1-c{count}-{trial}");
                tracing::info!("P1: {system:?} {name}");
                let (milestones, _) =
                    scaling::scale_up(client, system, &name, count, plan.timeout, None).await?;
                let answered = milestones.owner_stored.unwrap_or_default();
                stored[index].push(answered);
                first[index].push(milestones.first_created);
                controller_share[index].push(milestones.first_created.saturating_sub(answered));
                running[index].push(milestones.all_running);
            }
        }
        table.row(report::compared(
            format!("count {count}: create → first pod created"),
            &first[0],
            &first[1],
        ));
        table.row(report::compared(
            format!("count {count}: create → {count} Running"),
            &running[0],
            &running[1],
        ));
        // The two parts of the first: the API server storing the owner (a custom resource
        // with its schema and CEL rules, against a built-in ReplicaSet), then the controller.
        table.row(report::compared(
            format!("count {count}: create → create answered (the API server)"),
            &stored[0],
            &stored[1],
        ));
        table.row(report::compared(
            format!("count {count}: create answered → first pod created (the controller)"),
            &controller_share[0],
            &controller_share[1],
        ));
    }
    Ok(table.render())
}

/// P2 and its API calls, then the raw limit.
async fn p2(client: &kube::Client, operator: &Operator, plan: &Plan) -> anyhow::Result<String> {
    let count = plan.p2_count;
    let mut created = [Vec::new(), Vec::new()];
    let mut running = [Vec::new(), Vec::new()];
    let mut calls: [Option<ApiCalls>; 2] = [None, None];
    for trial in 0..plan.p2_trials {
        for (index, system) in System::BOTH.into_iter().enumerate() {
            let name = format!("p2-{trial}");
            tracing::info!("P2: {system:?} {name}, 0 → {count}");
            // The first trial of each system counts its API calls.
            let meter = (trial == 0)
                .then(|| ApiMeter::new(client, (system == System::PodScaler).then_some(operator)));
            let (milestones, measured) =
                scaling::scale_up(client, system, &name, count, plan.timeout, meter.as_ref())
                    .await?;
            tracing::info!(
                all_created = ?milestones.all_created,
                all_running = ?milestones.all_running,
                "P2: {system:?} {name}"
            );
            created[index].push(milestones.all_created);
            running[index].push(milestones.all_running);
            if let Some(measured) = measured {
                calls[index] = Some(measured);
            }
        }
    }
    let mut table =
        report::Table::new(&["P2", "PodScaler", "ReplicaSet", "PodScaler / ReplicaSet"]);
    table.row(report::compared(
        format!("0 → {count}: all created"),
        &created[0],
        &created[1],
    ));
    table.row(report::compared(
        format!("0 → {count}: all Running"),
        &running[0],
        &running[1],
    ));
    let mut out = table.render();

    let mut raw = report::Table::new(&[
        &format!("raw limit: {count} bare pods created by the benchmark"),
        "all created",
        "all Running",
        "PodScaler all created / raw",
    ]);
    for in_flight in &plan.raw_in_flight {
        let mut raw_created: Vec<Duration> = Vec::new();
        let mut raw_running: Vec<Duration> = Vec::new();
        for trial in 0..plan.p2_trials {
            let name = format!("raw-{in_flight}-{trial}");
            tracing::info!("P2 raw: {name}, {in_flight} in flight");
            let Milestones {
                all_created,
                all_running,
                ..
            } = scaling::raw_creates(client, &name, count, *in_flight, plan.timeout).await?;
            raw_created.push(all_created);
            raw_running.push(all_running);
        }
        let ours = e2e::stats::Spread::of_durations(&created[0]);
        let theirs = e2e::stats::Spread::of_durations(&raw_created);
        raw.row(vec![
            format!("{in_flight} in flight"),
            report::seconds(theirs),
            report::seconds(e2e::stats::Spread::of_durations(&raw_running)),
            e2e::stats::ratio(ours, theirs),
        ]);
    }
    out.push('\n');
    out.push_str(&raw.render());
    if let [Some(podscaler), Some(replica_set)] = &calls {
        out.push('\n');
        out.push_str(&report::api_calls(
            count,
            &podscaler.apiserver,
            &replica_set.apiserver,
            podscaler.operator.as_ref(),
        ));
    }
    Ok(out)
}

/// P3 for both systems.
async fn p3(client: &kube::Client, plan: &Plan) -> anyhow::Result<String> {
    let mut results = Vec::new();
    for system in System::BOTH {
        tracing::info!("P3: {system:?}");
        results.push(safety::overshoot(client, system, plan.p3, plan.timeout).await?);
    }
    Ok(report::overshoot(&results[0], &results[1], &plan.p3))
}

/// The webhook at a fixed rate and at max rate, on both admission paths.
async fn webhook_runs(
    cluster: &Cluster,
    product: &Product,
    plan: &Plan,
) -> anyhow::Result<Vec<LoadResult>> {
    let webhook = Webhook::start_binary(
        cluster,
        "webhook-bench",
        &product.webhook,
        cluster.kubeconfig(),
        &[],
    )
    .await?;
    let target = webhook_load::Target::new(
        webhook.port(),
        webhook.pid(),
        cluster.authority().cert_pem(),
    )?;
    let mut results = Vec::new();
    for path in [VALIDATE_PATH, MUTATE_PATH] {
        for pace in [
            Pace::Fixed {
                per_second: plan.webhook_rate,
            },
            Pace::Max {
                connections: plan.webhook_connections,
            },
        ] {
            tracing::info!("webhook: {path} at {pace:?}");
            let result = webhook_load::run(&target, path, pace, plan.webhook_duration)
                .await
                .with_context(|| format!("webhook load on {path}"))?;
            results.push(result);
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Plan {
        let cli =
            Cli::try_parse_from(std::iter::once("podscaler-bench").chain(args.iter().copied()))
                .expect("the flags parse");
        Plan::from_cli(cli)
    }

    #[test]
    fn quick_mode_shrinks_every_measure() {
        let quick = plan(&["--quick"]);
        assert_eq!(quick.p1_trials, 1);
        assert_eq!(quick.p2_count, 50);
        assert_eq!(quick.p3.count, 20);
        assert_eq!(quick.idle_window, Duration::from_secs(5));
        assert!(quick.p4_shapes.iter().all(|shape| shape.total() <= 20));
        let full = plan(&[]);
        assert_eq!(full.p1_trials, 15);
        assert_eq!(full.p2_count, 500);
        assert_eq!(full.p4_shapes.last().map(|s| s.total()), Some(10_000));
    }

    #[test]
    fn explicit_flags_win_over_quick_defaults() {
        let plan = plan(&["--quick", "--p2-count", "100", "--p4-shapes", "2x3,5x5"]);
        assert_eq!(plan.p2_count, 100);
        assert_eq!(
            plan.p4_shapes,
            [
                Shape {
                    scalers: 2,
                    pods: 3
                },
                Shape {
                    scalers: 5,
                    pods: 5
                }
            ]
        );
    }

    #[test]
    fn the_default_node_count_fits_the_largest_run() {
        assert_eq!(plan(&[]).nodes, 10_000 / PODS_PER_NODE + 1);
        assert_eq!(plan(&["--quick"]).nodes, 2);
        assert_eq!(plan(&["--nodes", "3"]).nodes, 3);
    }
}
