//! The command line and what it resolves to: `--quick`'s smaller defaults, flags given
//! explicitly over them, and a node count that fits the largest run.

use std::time::Duration;

use clap::Parser;
use podscaler::runtime::parse_duration;

use crate::footprint::Shape;
use crate::safety;

/// Measures PodScaler against the ReplicaSet controller on a local control plane.
#[derive(Parser, Debug)]
#[command(name = "podscaler-bench")]
pub struct Cli {
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
pub struct Plan {
    pub quick: bool,
    pub p1_trials: usize,
    pub p2_count: usize,
    pub p2_trials: usize,
    pub raw_in_flight: Vec<usize>,
    pub p3: safety::Sizes,
    pub p4_shapes: Vec<Shape>,
    pub idle_window: Duration,
    pub webhook_duration: Duration,
    pub webhook_rate: u32,
    pub webhook_connections: usize,
    pub nodes: usize,
    pub timeout: Duration,
    pub debug_product: bool,
}

impl Plan {
    pub fn from_cli(cli: Cli) -> Self {
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
