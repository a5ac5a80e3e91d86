//! The admission webhook, run as its real binary, called by the real API server over TLS: each
//! scenario starts its own webhook, registers it for its own namespace only, and asserts on
//! what the API server stores or refuses, on the certificate the webhook presents and on its
//! /metrics.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use e2e::observe;
use e2e::product::{self, Operator, SEED_SAMPLE};
use e2e::suite::{self, Env, Scenario};
use e2e::wait;
use e2e::webhook::{MUTATE_PATH, VALIDATE_PATH, Webhook};
use e2e::{Cluster, Options};

/// Generous bound for convergence on a loaded 2-core machine; not a performance assertion.
const CONVERGE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let scenarios: &[(&str, Scenario)] = &[
        ("w01_sample_is_defaulted_and_runs", |env| {
            Box::pin(sample_is_defaulted_and_runs(env))
        }),
        ("w02_every_violation_is_reported", |env| {
            Box::pin(every_violation_is_reported(env))
        }),
        ("w03_overlap_names_the_other_podscaler", |env| {
            Box::pin(overlap_names_the_other_podscaler(env))
        }),
        ("w04_rotated_certificate_is_served", |env| {
            Box::pin(rotated_certificate_is_served(env))
        }),
        ("w05_scale_subresource_gets_the_count_limit", |env| {
            Box::pin(scale_subresource_gets_the_count_limit(env))
        }),
        ("w06_type_errors_name_the_field", |env| {
            Box::pin(type_errors_name_the_field(env))
        }),
        ("w07_invalid_selector_reports_only_its_syntax", |env| {
            Box::pin(invalid_selector_reports_only_its_syntax(env))
        }),
    ];
    suite::main(scenarios, Options::default(), |cluster| {
        Box::pin(setup(cluster))
    })
}

async fn setup(cluster: Arc<Cluster>) -> anyhow::Result<()> {
    product::install_crd_or_override(&cluster).await
}

/// Starts a webhook for this scenario and has the API server send the namespace's
/// PodScalers to it.
async fn webhook_for(env: &Env) -> anyhow::Result<Webhook> {
    let webhook = Webhook::start(&env.cluster, &env.namespace, &[]).await?;
    webhook
        .admit_namespace(&env.cluster, &env.namespace)
        .await?;
    Ok(webhook)
}

fn scaler_manifest(name: &str, count: i32, selector: &[(&str, &str)]) -> String {
    let mut manifest = format!(
        "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: {name}\nspec:\n  count: {count}\n  selector:\n"
    );
    for (key, value) in selector {
        manifest.push_str(&format!("    {key:?}: {value:?}\n"));
    }
    manifest
}

/// A counter's value in the series carrying `labels`; 0 when that series is absent.
fn counter(page: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    observe::sample(page, metric, labels).unwrap_or(0.0)
}

async fn sample_is_defaulted_and_runs(env: Env) -> anyhow::Result<()> {
    let webhook = webhook_for(&env).await?;
    let _operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(SEED_SAMPLE).await?;
    let scaler = observe::scaler(&env.client(), &env.namespace, "example-podscaler").await?;
    let template = scaler
        .spec
        .template
        .as_ref()
        .context("the stored PodScaler has no template: the mutating webhook did not run")?;
    let labels = template
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.labels.clone())
        .unwrap_or_default();
    anyhow::ensure!(
        labels.get("app").map(String::as_str) == Some("nginx"),
        "template labels {labels:?} do not contain the selector"
    );
    let images: Vec<_> = template
        .spec
        .as_ref()
        .map(|spec| {
            spec.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(images == ["nginx:latest"], "template images {images:?}");

    // The operator runs the defaulted object: four pods from that template.
    wait::until("4 running app=nginx pods", CONVERGE, || async {
        let pods = observe::active_pods(&env.client(), &env.namespace, "app=nginx").await?;
        let running = pods.iter().filter(|pod| observe::is_running(pod)).count();
        anyhow::ensure!(
            pods.len() == 4 && running == 4,
            "{} active, {running} running",
            pods.len()
        );
        Ok(())
    })
    .await?;

    // Sending the stored (already defaulted) object back through admission needs no patch:
    // the mutation is idempotent, so the generation does not move.
    let mutations_before = counter(
        &webhook.metrics().await?,
        "controller_runtime_webhook_requests_total",
        &[("webhook", MUTATE_PATH), ("code", "200")],
    );
    let mut stored: serde_json::Value = serde_json::from_str(
        &env.kubectl(&["get", "podscaler", "example-podscaler", "-o", "json"])
            .await?,
    )?;
    // Unconditional: the operator's status writes move the resourceVersion meanwhile.
    if let Some(metadata) = stored["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
    }
    env.kubectl
        .run_with_input(
            &["-n", &env.namespace, "replace", "-f", "-"],
            Some(&stored.to_string()),
        )
        .await?;
    let again = observe::scaler(&env.client(), &env.namespace, "example-podscaler").await?;
    anyhow::ensure!(
        again.metadata.generation == scaler.metadata.generation,
        "replacing the object with itself changed the generation from {:?} to {:?}",
        scaler.metadata.generation,
        again.metadata.generation
    );
    let mutations_after = counter(
        &webhook.metrics().await?,
        "controller_runtime_webhook_requests_total",
        &[("webhook", MUTATE_PATH), ("code", "200")],
    );
    anyhow::ensure!(
        mutations_after > mutations_before,
        "the replace did not go through the mutating webhook"
    );

    let metrics = webhook.metrics().await?;
    observe::ensure_process_metrics(&metrics)?;
    for path in [MUTATE_PATH, VALIDATE_PATH] {
        let served = counter(
            &metrics,
            "controller_runtime_webhook_requests_total",
            &[("webhook", path), ("code", "200")],
        );
        anyhow::ensure!(
            served >= 2.0,
            "{path}: {served} requests answered 200, want ≥ 2"
        );
    }
    Ok(())
}

async fn every_violation_is_reported(env: Env) -> anyhow::Result<()> {
    let webhook = webhook_for(&env).await?;
    env.apply(&scaler_manifest("web", 1, &[("app", "web")]))
        .await?;
    // Breaks both rules only the webhook has: a count over --max-count (under the CRD's hard
    // maximum) and a selector overlapping another PodScaler. Violations of the CRD's schema
    // and CEL rules never reach the webhook (the API server checks them first); they are the
    // CRD suite's (e2e/tests/rules.rs).
    let manifest = scaler_manifest("broken", 5000, &[("app", "web"), ("track", "canary")]);
    let manifest = manifest.as_str();
    // The webhook reads PodScalers from a watched cache: dry runs until it has seen `web`.
    wait::until("the overlap to be refused", CONVERGE, || async {
        let message = env
            .kubectl
            .run_failing(
                &["-n", &env.namespace, "apply", "--dry-run=server", "-f", "-"],
                Some(manifest),
            )
            .await?;
        anyhow::ensure!(message.contains("overlaps"), "not yet: {message}");
        Ok(())
    })
    .await?;
    let refused = env.apply_refused(manifest).await?;
    for expected in [
        "The PodScaler \"broken\" is invalid",
        "spec.count",
        "must be at most 1000",
        "spec.selector",
        "overlaps PodScaler \"web\"",
    ] {
        anyhow::ensure!(
            refused.contains(expected),
            "the refusal does not mention {expected:?}: {refused}"
        );
    }
    // A server-side dry run gets the same answer (the webhook has no side effects).
    let dry_run = env
        .kubectl
        .run_failing(
            &["-n", &env.namespace, "apply", "--dry-run=server", "-f", "-"],
            Some(manifest),
        )
        .await?;
    anyhow::ensure!(
        dry_run.contains("must be at most 1000"),
        "the dry run was not refused the same way: {dry_run}"
    );
    anyhow::ensure!(
        env.kubectl(&["get", "podscaler", "broken"]).await.is_err(),
        "a refused PodScaler was stored"
    );

    let metrics = webhook.metrics().await?;
    let denied = counter(
        &metrics,
        "podscaler_admission_decisions_total",
        &[
            ("webhook", VALIDATE_PATH),
            ("operation", "CREATE"),
            ("allowed", "false"),
        ],
    );
    anyhow::ensure!(denied >= 2.0, "{denied} denied CREATEs counted, want ≥ 2");
    Ok(())
}

async fn overlap_names_the_other_podscaler(env: Env) -> anyhow::Result<()> {
    let _webhook = webhook_for(&env).await?;
    env.apply(&scaler_manifest("frontend", 1, &[("app", "web")]))
        .await?;
    let overlapping = scaler_manifest("frontend-canary", 1, &[("app", "web"), ("track", "canary")]);
    // The webhook reads PodScalers from a watched cache: dry runs (which store nothing) until
    // it has seen `frontend`.
    let refusal = wait::until("the overlap to be refused", CONVERGE, || async {
        env.kubectl
            .run_failing(
                &["-n", &env.namespace, "apply", "--dry-run=server", "-f", "-"],
                Some(&overlapping),
            )
            .await
    })
    .await?;
    anyhow::ensure!(
        refusal.contains("overlaps PodScaler \"frontend\""),
        "the refusal does not name the other PodScaler: {refusal}"
    );
    let refused = env.apply_refused(&overlapping).await?;
    anyhow::ensure!(
        refused.contains("overlaps PodScaler \"frontend\""),
        "the refusal does not name the other PodScaler: {refused}"
    );
    // Disjoint selectors are fine.
    env.apply(&scaler_manifest("backend", 1, &[("app", "api")]))
        .await?;
    // Changing a stored selector is refused (by the CRD's CEL rule, which runs before the
    // validating webhook is called).
    let changed = env
        .kubectl
        .run_failing(
            &[
                "-n",
                &env.namespace,
                "patch",
                "podscaler",
                "backend",
                "--type=merge",
                "-p",
                r#"{"spec":{"selector":{"app":"api-v2"}}}"#,
            ],
            None,
        )
        .await?;
    anyhow::ensure!(
        changed.contains("spec.selector") && changed.contains("immutable"),
        "the selector change was not refused as immutable: {changed}"
    );
    Ok(())
}

async fn rotated_certificate_is_served(env: Env) -> anyhow::Result<()> {
    let mut webhook = webhook_for(&env).await?;
    let first = webhook.served_certificate(&env.cluster).await?;

    let rotated = webhook.rotate(&env.cluster)?;
    anyhow::ensure!(
        rotated.cert_der != first,
        "the new certificate equals the old one"
    );
    wait::until("the rotated certificate to be served", CONVERGE, || async {
        let served = webhook.served_certificate(&env.cluster).await?;
        anyhow::ensure!(
            served == rotated.cert_der,
            "still serving the old certificate"
        );
        Ok(())
    })
    .await?;
    // Admission keeps working across the rotation (the API server trusts the CA; its open
    // connections may still be the ones from before).
    env.apply(&scaler_manifest("after-rotation", 1, &[("app", "rotated")]))
        .await?;

    // A botched rotation: the old certificate stays in service and the error is counted.
    webhook.break_certificate()?;
    wait::until("the failed reload to be counted", CONVERGE, || async {
        let metrics = webhook.metrics().await?;
        let failed = counter(
            &metrics,
            "podscaler_webhook_certificate_reloads_total",
            &[("result", "error")],
        );
        anyhow::ensure!(failed >= 1.0, "{failed} failed reloads counted");
        Ok(())
    })
    .await?;
    webhook.check_running()?;
    let served = webhook.served_certificate(&env.cluster).await?;
    anyhow::ensure!(
        served == rotated.cert_der,
        "a broken certificate file replaced the served certificate"
    );
    env.apply(&scaler_manifest(
        "after-bad-files",
        1,
        &[("app", "still-served")],
    ))
    .await
    .with_context(|| format!("webhook log:\n{}", webhook.log_tail(20)))?;

    let metrics = webhook.metrics().await?;
    let reloaded = counter(
        &metrics,
        "podscaler_webhook_certificate_reloads_total",
        &[("result", "success")],
    );
    anyhow::ensure!(reloaded >= 1.0, "{reloaded} successful reloads counted");
    Ok(())
}

/// `spec.count` of the stored PodScaler `name`.
async fn stored_count(env: &Env, name: &str) -> anyhow::Result<i32> {
    Ok(observe::scaler(&env.client(), &env.namespace, name)
        .await?
        .spec
        .count)
}

/// Runs kubectl in the scenario's namespace, expecting a refusal; returns its message.
async fn refused(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["-n", env.namespace.as_str()];
    all.extend_from_slice(args);
    env.kubectl.run_failing(&all, None).await
}

fn ensure_mentions(text: &str, fragments: &[&str]) -> anyhow::Result<()> {
    for fragment in fragments {
        anyhow::ensure!(
            text.contains(fragment),
            "{fragment:?} is not mentioned: {text}"
        );
    }
    Ok(())
}

/// Issue 10 item 3: the count limit holds however the count is changed — `kubectl apply`,
/// `kubectl scale`, a patch of the scale subresource and a HorizontalPodAutoscaler (the last
/// three write an autoscaling/v1 Scale, which the validating webhook reviews on
/// `podscalers/scale`).
async fn scale_subresource_gets_the_count_limit(env: Env) -> anyhow::Result<()> {
    // A limit far below any schema maximum the CRD may have, so the webhook is what refuses.
    let webhook = Webhook::start(&env.cluster, &env.namespace, &["--max-count=10"]).await?;
    webhook
        .admit_namespace(&env.cluster, &env.namespace)
        .await?;
    env.apply(&scaler_manifest("scaled", 1, &[("app", "scaled")]))
        .await?;

    let message = refused(&env, &["scale", "podscaler/scaled", "--replicas=11"]).await?;
    ensure_mentions(
        &message,
        &[
            "spec.replicas",
            "must be at most 10 (got 11)",
            "PodScaler spec.count",
            "--max-count",
        ],
    )?;
    anyhow::ensure!(stored_count(&env, "scaled").await? == 1, "scaled to 11");
    // The absurd count of the report: refused (by the webhook, or a schema maximum below it).
    refused(&env, &["scale", "podscaler/scaled", "--replicas=100000000"]).await?;
    anyhow::ensure!(stored_count(&env, "scaled").await? == 1, "scaled to 10⁸");
    let message = refused(
        &env,
        &[
            "patch",
            "podscaler",
            "scaled",
            "--subresource=scale",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":11}}"#,
        ],
    )
    .await?;
    ensure_mentions(&message, &["spec.replicas", "must be at most 10"])?;
    // The same limit on the object itself.
    let message = env
        .apply_refused(&scaler_manifest("scaled", 11, &[("app", "scaled")]))
        .await?;
    ensure_mentions(&message, &["spec.count", "must be at most 10 (got 11)"])?;

    // Within the limit: allowed, both ends. A Scale to 0 arrives as `spec: {}` (omitempty).
    env.kubectl(&["scale", "podscaler/scaled", "--replicas=10"])
        .await?;
    anyhow::ensure!(
        stored_count(&env, "scaled").await? == 10,
        "not scaled to 10"
    );
    env.kubectl(&["scale", "podscaler/scaled", "--replicas=0"])
        .await?;
    anyhow::ensure!(stored_count(&env, "scaled").await? == 0, "not scaled to 0");
    env.kubectl(&["scale", "podscaler/scaled", "--replicas=1"])
        .await?;

    // An HPA whose minimum is over the limit: the controller-manager's HPA controller scales
    // up to minReplicas without metrics, through the scale subresource, and is refused.
    env.kubectl
        .run_with_input(
            &["-n", &env.namespace, "apply", "-f", "-"],
            Some(
                "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: scaled\nspec:\n  scaleTargetRef:\n    apiVersion: scaling.example.com/v1\n    kind: PodScaler\n    name: scaled\n  minReplicas: 20\n  maxReplicas: 30\n",
            ),
        )
        .await?;
    let condition = wait::until("the HPA to report the refusal", CONVERGE, || async {
        let message = env
            .kubectl(&[
                "get",
                "hpa",
                "scaled",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="AbleToScale")].message}"#,
            ])
            .await?;
        anyhow::ensure!(
            message.contains("spec.replicas"),
            "AbleToScale says {message:?}"
        );
        Ok(message)
    })
    .await?;
    ensure_mentions(&condition, &["must be at most 10 (got 20)"])?;
    anyhow::ensure!(
        stored_count(&env, "scaled").await? == 1,
        "the HPA scaled past the limit"
    );

    let denied = counter(
        &webhook.metrics().await?,
        "podscaler_admission_decisions_total",
        &[
            ("webhook", VALIDATE_PATH),
            ("operation", "UPDATE"),
            ("allowed", "false"),
        ],
    );
    anyhow::ensure!(denied >= 3.0, "{denied} denied UPDATEs counted, want ≥ 3");
    Ok(())
}

/// Issue 10 item 5: a type error or a missing required field is reported with the field's
/// path. Mutating admission runs before the schema: the mutating webhook lets an object it
/// cannot decode pass unpatched, and the API server's schema validation names the field.
async fn type_errors_name_the_field(env: Env) -> anyhow::Result<()> {
    let webhook = webhook_for(&env).await?;
    let mutations_allowed = || async {
        Ok::<_, anyhow::Error>(counter(
            &webhook.metrics().await?,
            "podscaler_admission_decisions_total",
            &[
                ("webhook", MUTATE_PATH),
                ("operation", "CREATE"),
                ("allowed", "true"),
            ],
        ))
    };
    let before = mutations_allowed().await?;
    let cases = [
        (
            "string-count",
            "  count: \"four\"\n  selector:\n    app: a\n",
            "spec.count",
        ),
        (
            "fractional-count",
            "  count: 1.5\n  selector:\n    app: a\n",
            "spec.count",
        ),
        ("no-count", "  selector:\n    app: a\n", "spec.count"),
        ("no-selector", "  count: 1\n", "spec.selector"),
    ];
    for (name, spec, field) in cases {
        let manifest = format!(
            "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: {name}\nspec:\n{spec}"
        );
        let message = env.apply_refused(&manifest).await?;
        anyhow::ensure!(
            message.contains(field),
            "{name}: the refusal does not name {field}: {message}"
        );
        // serde's wording, which names no field, is what users saw before.
        anyhow::ensure!(
            !message.contains("expected i32") && !message.contains("missing field"),
            "{name}: the refusal is serde's: {message}"
        );
        anyhow::ensure!(
            env.kubectl(&["get", "podscaler", name]).await.is_err(),
            "{name}: a refused PodScaler was stored"
        );
    }
    let passed = mutations_allowed().await? - before;
    anyhow::ensure!(
        passed >= 4.0,
        "the mutating webhook let {passed} of the 4 objects through to the schema"
    );
    Ok(())
}

/// Issue 10 item 8: a selector that is not valid syntax is refused for its syntax alone, not
/// also as "overlapping" every other PodScaler in the namespace.
async fn invalid_selector_reports_only_its_syntax(env: Env) -> anyhow::Result<()> {
    let _webhook = webhook_for(&env).await?;
    env.apply(&scaler_manifest("web", 1, &[("app", "web")]))
        .await?;
    env.apply(&scaler_manifest("db", 1, &[("app", "db")]))
        .await?;
    // The webhook's cache has both once a valid selector overlapping both is refused so.
    let both = scaler_manifest("both", 1, &[("tier", "front")]);
    wait::until("the webhook to see both PodScalers", CONVERGE, || async {
        let message = env
            .kubectl
            .run_failing(
                &["-n", &env.namespace, "apply", "--dry-run=server", "-f", "-"],
                Some(&both),
            )
            .await?;
        ensure_mentions(
            &message,
            &["overlaps PodScaler \"web\"", "overlaps PodScaler \"db\""],
        )
    })
    .await?;
    for (name, selector, bad) in [
        // No key in common with either, so both "overlapped" it before.
        ("bad-key", [("bad key", "x")], "bad key"),
        ("bad-value", [("tier", "front!")], "front!"),
    ] {
        let message = env
            .apply_refused(&scaler_manifest(name, 1, &selector))
            .await?;
        ensure_mentions(&message, &["spec.selector", bad])?;
        anyhow::ensure!(
            !message.contains("overlaps"),
            "{name}: an invalid selector was also reported as overlapping: {message}"
        );
    }
    Ok(())
}
