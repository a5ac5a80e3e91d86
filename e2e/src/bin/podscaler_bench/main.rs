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
mod header;
mod plan;
mod report;
mod safety;
mod scaling;
mod sections;
mod timeline;
mod webhook_load;
mod workload;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use e2e::binaries::Product;
use e2e::cluster::ensure_namespace;
use e2e::command::{self, LogStyle};
use e2e::product::{self, Operator};
use e2e::{Cluster, Options};

use plan::{Cli, Plan};
use workload::System;

fn main() -> ExitCode {
    command::init_logging("info,kube_client=off,kube_runtime=off", LogStyle::Record);
    let plan = Plan::from_cli(Cli::parse());
    command::run_on_main_thread(run(&plan))
}

async fn run(plan: &Plan) -> anyhow::Result<()> {
    let started = Instant::now();
    let header = header::machine_header(plan);
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
        header::CLIENT_SETTINGS
    ));
    print_section(&out);

    sections::warm_up(&client, plan.timeout).await?;
    let latency = sections::p1(&client, plan).await?;
    print_section(&latency);
    let throughput = sections::p2(&client, &operator, plan).await?;
    print_section(&throughput);
    let safety = sections::p3(&client, plan).await?;
    print_section(&safety);
    drop(operator);

    print_section(&sections::p4(&cluster, &product, plan).await?);

    let webhook = sections::webhook_runs(&cluster, &product, plan).await?;
    print_section(&report::webhook(&webhook));
    print_section(&format!(
        "Finished in {:.0} s.\n",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn print_section(text: &str) {
    println!("{text}");
}
