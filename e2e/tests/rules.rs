//! The rule table of `podscaler::validation::agreement` applied to the real API server: once
//! with the CRD's schema and CEL rules alone (no webhook: not installed, or down with
//! `failurePolicy: Ignore`), once with the webhook in the path, and the scale subresource
//! against the CRD's hard maximum. The same table is checked against the webhook's rules by
//! the library's unit tests, so the two checkers are held to one set of answers.

use std::process::ExitCode;
use std::sync::Arc;

use e2e::observe;
use e2e::product;
use e2e::suite::{self, Env, Scenario};
use e2e::webhook::Webhook;
use e2e::{Cluster, Options};
use podscaler::crd::MAX_COUNT;
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
