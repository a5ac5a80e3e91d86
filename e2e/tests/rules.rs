//! The rule table of `podscaler::validation::agreement` applied to the real API server: once
//! with the CRD's schema and CEL rules alone (no webhook: not installed, or down with
//! `failurePolicy: Ignore`), once with the webhook in the path, and the scale subresource
//! against the CRD's hard maximum; and what `kubectl get` and `kubectl explain` show a user.
//! The same table is checked against the webhook's rules by
//! the library's unit tests, so the two checkers are held to one set of answers.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use e2e::kubectl_output::{early_breaks, explain_description, explain_fields, table};
use e2e::merge_markers;
use e2e::observe;
use e2e::product::{self, Operator};
use e2e::suite::{self, Env, Scenario};
use e2e::wait;
use e2e::webhook::Webhook;
use e2e::{Cluster, Options};
use podscaler::crd::{MAX_COUNT, TEMPLATE_METADATA_FIELDS};
use podscaler::status::CONTENDED;
use podscaler::validation::agreement::{self, Case};

fn main() -> ExitCode {
    let scenarios: &[(&str, Scenario)] = &[
        ("r01_rules_without_webhook", |env| {
            Box::pin(rules_without_webhook(env))
        }),
        ("r02_rules_with_webhook", |env| {
            Box::pin(rules_with_webhook(env))
        }),
        ("r03_scale_subresource_capped_by_schema", |env| {
            Box::pin(scale_subresource_capped_by_schema(env))
        }),
        ("r04_kubectl_shows_what_a_user_needs", |env| {
            Box::pin(kubectl_shows_what_a_user_needs(env))
        }),
        ("r05_template_merge_markers_match_the_api_servers", |env| {
            Box::pin(template_merge_markers_match_the_api_servers(env))
        }),
    ];
    // The test webhook is registered for its scenario's namespace only, so the scenarios can
    // run side by side.
    suite::main(scenarios, Options::default(), |cluster| {
        Box::pin(setup(cluster))
    })
}

async fn setup(cluster: Arc<Cluster>) -> anyhow::Result<()> {
    product::install_crd_or_override(&cluster).await
}

/// Every row answered by the schema and CEL rules alone as the table says.
async fn rules_without_webhook(env: Env) -> anyhow::Result<()> {
    apply_table(&env).await
}

/// Every row answered as the table says with the mutating and validating webhook in the path
/// too. Mutation runs first and may add fields (template labels from the selector) that draw
/// more refusals; each expected field must still be named, and accepted rows stay accepted.
async fn rules_with_webhook(env: Env) -> anyhow::Result<()> {
    let _webhook = {
        let webhook = Webhook::start(&env.cluster, &env.namespace, &[]).await?;
        webhook
            .admit_namespace(&env.cluster, &env.namespace)
            .await?;
        webhook
    };
    apply_table(&env).await
}

/// `kubectl scale` goes through the scale subresource, which the webhook did not review; the
/// CRD's `maximum` on spec.count must refuse it there too, and leave the stored count alone.
async fn scale_subresource_capped_by_schema(env: Env) -> anyhow::Result<()> {
    env.apply(
        "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: capped\nspec:\n  count: 2\n  selector:\n    app: capped\n",
    )
    .await?;
    let above = (i64::from(MAX_COUNT) + 1).to_string();
    for replicas in ["100000000", above.as_str()] {
        let refusal = env
            .kubectl
            .run_failing(
                &[
                    "-n",
                    &env.namespace,
                    "scale",
                    "podscaler/capped",
                    &format!("--replicas={replicas}"),
                ],
                None,
            )
            .await?;
        anyhow::ensure!(
            refusal.contains("spec.count") && refusal.contains(&MAX_COUNT.to_string()),
            "scaling to {replicas} was refused without naming spec.count and its maximum: \
             {refusal}"
        );
        let stored = observe::scaler(&env.client(), &env.namespace, "capped").await?;
        anyhow::ensure!(
            stored.spec.count == 2,
            "after the refused scale to {replicas} the stored count is {}",
            stored.spec.count
        );
    }
    // The subresource itself still works below the limit.
    env.kubectl(&["scale", "podscaler/capped", "--replicas=3"])
        .await?;
    let stored = observe::scaler(&env.client(), &env.namespace, "capped").await?;
    anyhow::ensure!(
        stored.spec.count == 3,
        "scaling to 3 stored {}",
        stored.spec.count
    );
    Ok(())
}

/// What the user runs, against a PodScaler the real operator has converged:
/// `kubectl get -o wide` shows the wide columns with the status the operator wrote, `kubectl
/// get all` lists the PodScaler, and `kubectl explain` offers only the template metadata a
/// pod gets and prints a multi-line doc comment as one paragraph.
async fn kubectl_shows_what_a_user_needs(env: Env) -> anyhow::Result<()> {
    let _operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(
        "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: shown\nspec:\n  \
         count: 2\n  selector:\n    app: shown\n  template:\n    spec:\n      containers:\n      \
         - name: main\n        image: busybox:1.36\n",
    )
    .await?;
    wait::until(
        "the operator to report 2 available pods, uncontended",
        Duration::from_secs(60),
        || async {
            let status = observe::scaler(&env.client(), &env.namespace, "shown")
                .await?
                .status
                .unwrap_or_default();
            let contended = status.conditions.iter().find(|c| c.type_ == CONTENDED);
            anyhow::ensure!(
                status.available_replicas == 2 && contended.is_some_and(|c| c.status == "False"),
                "status so far: {status:?}"
            );
            Ok(())
        },
    )
    .await?;

    // Every check is run and every failure reported, so one run against an older CRD
    // (PODSCALER_E2E_CRD) shows each of them fail.
    let mut failures = Vec::new();
    failures.extend(wide_columns(&env).await?);
    let all = env.kubectl(&["get", "all"]).await?;
    if !all.contains("podscaler.scaling.example.com/shown") {
        failures.push(format!(
            "`kubectl get all` does not list the PodScaler:\n{all}"
        ));
    }
    let metadata = env
        .kubectl(&["explain", "podscaler.spec.template.metadata"])
        .await?;
    if explain_fields(&metadata) != TEMPLATE_METADATA_FIELDS {
        failures.push(format!(
            "`kubectl explain podscaler.spec.template.metadata` offers {:?}, not only \
             {TEMPLATE_METADATA_FIELDS:?}:\n{metadata}",
            explain_fields(&metadata)
        ));
    }
    // spec.count's doc comment spans three source lines.
    failures.extend(one_paragraph(&env, "podscaler.spec.count").await?);
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

/// `kubectl get psc -o wide` shows the status the operator wrote (and plain `get` does not).
async fn wide_columns(env: &Env) -> anyhow::Result<Vec<String>> {
    let wide = env.kubectl(&["get", "psc", "shown", "-o", "wide"]).await?;
    let rows = table(&wide);
    let row = rows
        .first()
        .ok_or_else(|| anyhow::anyhow!("no row in:\n{wide}"))?;
    let mut failures = Vec::new();
    for (column, want) in [
        ("AVAILABLE", "2"),
        ("CONTENDED", "False"),
        ("IMAGE", "busybox:1.36"),
        ("SELECTOR", "app=shown"),
    ] {
        if row.get(column).map(String::as_str) != Some(want) {
            failures.push(format!(
                "`kubectl get psc -o wide` shows {column} {:?}, not {want:?}:\n{wide}",
                row.get(column)
            ));
        }
    }
    let narrow = env.kubectl(&["get", "psc", "shown"]).await?;
    if table(&narrow)
        .first()
        .is_none_or(|row| row.contains_key("IMAGE"))
    {
        failures.push(format!(
            "plain `kubectl get psc` shows the wide columns:\n{narrow}"
        ));
    }
    Ok(failures)
}

/// `kubectl explain <field>` prints its multi-line doc comment as one paragraph, wrapped by
/// kubectl alone.
async fn one_paragraph(env: &Env, field: &str) -> anyhow::Result<Vec<String>> {
    let explained = env.kubectl(&["explain", field]).await?;
    let description = explain_description(&explained);
    if description.len() < 2 || description.iter().any(String::is_empty) {
        return Ok(vec![format!(
            "{field}'s description is not one paragraph of several lines:\n{explained}"
        )]);
    }
    let early = early_breaks(&description);
    Ok(if early.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{field}'s description breaks lines early, after {early:?}:\n{explained}"
        )]
    })
}

/// The installed CRD's pod template carries the list and map markers the API server itself
/// publishes for `PodTemplateSpec`, so server-side apply merges a PodScaler's template as it
/// merges a Deployment's (by container name, by port and protocol, ...).
async fn template_merge_markers_match_the_api_servers(env: Env) -> anyhow::Result<()> {
    let openapi = env
        .kubectl
        .run(&["get", "--raw", "/openapi/v3/api/v1"])
        .await?;
    let openapi: serde_json::Value =
        serde_json::from_str(&openapi).context("decoding /openapi/v3/api/v1")?;
    let components = &openapi["components"]["schemas"];
    let theirs = &components["io.k8s.api.core.v1.PodTemplateSpec"];
    anyhow::ensure!(
        theirs.is_object(),
        "no PodTemplateSpec in /openapi/v3/api/v1"
    );
    // The CRD as installed, so PODSCALER_E2E_CRD checks an older one.
    let crd = env
        .kubectl
        .run(&["get", "crd", "podscalers.scaling.example.com", "-o", "json"])
        .await?;
    let crd: serde_json::Value = serde_json::from_str(&crd).context("decoding the CRD")?;
    let ours = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["template"];
    anyhow::ensure!(ours.is_object(), "no spec.template in the installed CRD");
    let found = merge_markers::disagreements(ours, theirs, components);
    anyhow::ensure!(
        found.is_empty(),
        "{} lists and maps of spec.template disagree with the API server's PodTemplateSpec:\n{}",
        found.len(),
        found.join("\n")
    );
    Ok(())
}

/// Applies every row with a server-side dry run (admission and validation run in full, nothing
/// is stored, so rows cannot overlap one another) and reports every row that disagrees.
async fn apply_table(env: &Env) -> anyhow::Result<()> {
    let cases = agreement::cases();
    let mut disagreements = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        if let Err(error) = check_row(env, &format!("row-{index:02}"), case).await {
            disagreements.push(format!("row {index:02} ({}): {error:#}", case.name));
        }
    }
    anyhow::ensure!(
        disagreements.is_empty(),
        "{} of {} rows disagree with the table:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
    Ok(())
}

async fn check_row(env: &Env, name: &str, case: &Case) -> anyhow::Result<()> {
    let manifest = serde_json::to_string(&case.object(name))?;
    let args = [
        "-n",
        env.namespace.as_str(),
        "apply",
        "--dry-run=server",
        "-f",
        "-",
    ];
    if case.is_accepted() {
        env.kubectl.run_with_input(&args, Some(&manifest)).await?;
        return Ok(());
    }
    let refusal = env.kubectl.run_failing(&args, Some(&manifest)).await?;
    let unnamed: Vec<&str> = case
        .refused
        .iter()
        .map(String::as_str)
        .filter(|field| !names_field(&refusal, field))
        .collect();
    anyhow::ensure!(
        unnamed.is_empty(),
        "refused without naming {unnamed:?}: {}",
        refusal.trim()
    );
    Ok(())
}

/// Whether the API server's answer names `field` as a field (followed by `:`, a space or a
/// comma, so `spec.template.spec` is not found inside `spec.template.spec.containers`).
/// A map entry the table writes as the webhook does, `spec.selector["app"]`, may also appear
/// as the API server's OpenAPI validator spells it, `spec.selector.app` (a value over
/// `maxLength` is reported that way, and CEL rules are then skipped).
fn names_field(answer: &str, field: &str) -> bool {
    spellings(field).iter().any(|spelling| {
        [":", " ", ","]
            .iter()
            .any(|end| answer.contains(&format!("{spelling}{end}")))
    })
}

fn spellings(field: &str) -> Vec<String> {
    let mut out = vec![field.to_owned()];
    if let Some((parent, key)) = field
        .strip_suffix("\"]")
        .and_then(|rest| rest.split_once("[\""))
    {
        out.push(format!("{parent}.{key}"));
    }
    out
}
