//! The measures as the tables the benchmark prints: P1–P3 with the trials of the two systems
//! interleaved (so a change in the machine's load hits both), and the webhook runs.

use std::time::Duration;

use anyhow::Context;
use e2e::Cluster;
use e2e::binaries::Product;
use e2e::product::Operator;
use e2e::stats::{self, Spread};
use e2e::webhook::{MUTATE_PATH, VALIDATE_PATH, Webhook};

use crate::footprint;
use crate::plan::Plan;
use crate::report;
use crate::safety;
use crate::scaling::{self, ApiCalls, ApiMeter, Milestones};
use crate::webhook_load::{self, LoadResult, Pace};
use crate::workload::System;

/// One untimed scale-up to a pod per system: the first PodScaler after the operator started
/// took 2 s in a quick run (caches and connections warming), which is not what P1 is about.
pub async fn warm_up(client: &kube::Client, timeout: Duration) -> anyhow::Result<()> {
    for system in System::BOTH {
        tracing::info!("warm-up: {system:?}");
        scaling::scale_up(client, system, "warm-up", 1, timeout, None).await?;
    }
    Ok(())
}

/// P1 for count 1 and 10, trials of the two systems interleaved.
pub async fn p1(client: &kube::Client, plan: &Plan) -> anyhow::Result<String> {
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
pub async fn p2(client: &kube::Client, operator: &Operator, plan: &Plan) -> anyhow::Result<String> {
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
        let ours = Spread::of_durations(&created[0]);
        let theirs = Spread::of_durations(&raw_created);
        raw.row(vec![
            format!("{in_flight} in flight"),
            report::seconds(theirs),
            report::seconds(Spread::of_durations(&raw_running)),
            stats::ratio(ours, theirs),
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
pub async fn p3(client: &kube::Client, plan: &Plan) -> anyhow::Result<String> {
    let mut results = Vec::new();
    for system in System::BOTH {
        tracing::info!("P3: {system:?}");
        results.push(safety::overshoot(client, system, plan.p3, plan.timeout).await?);
    }
    Ok(report::overshoot(&results[0], &results[1], &plan.p3))
}

/// P4 for each shape, the operator started afresh for each.
pub async fn p4(cluster: &Cluster, product: &Product, plan: &Plan) -> anyhow::Result<String> {
    let mut footprints = Vec::new();
    for shape in &plan.p4_shapes {
        tracing::info!("P4: {} PodScalers × {} pods", shape.scalers, shape.pods);
        footprints.push(
            footprint::measure(
                cluster,
                &product.operator,
                *shape,
                plan.idle_window,
                plan.timeout,
            )
            .await?,
        );
    }
    Ok(report::footprints(&footprints))
}

/// The webhook at a fixed rate and at max rate, on both admission paths.
pub async fn webhook_runs(
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
