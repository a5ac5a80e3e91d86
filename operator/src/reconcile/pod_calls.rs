//! The pod API calls a pass makes: creates in slow-start batches, UID-preconditioned deletes,
//! and what each round records (expectations, fight rounds) and reports (events).

use std::collections::BTreeSet;
use std::time::Instant;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};

use super::context::{Context, lock};
use super::report::{WARNING, publish, report_calls};
use crate::api::{PodScaler, effective_template};
use crate::expectations::PodRef;
use crate::plan::{self, OwnerName, PodFacts, PodOwner};
use crate::status::{self, FailedAction, Failure, Progress};

/// Concurrent delete calls in one round of deletions. Deletes have no slow start, so this
/// is what bounds a round that fails throughout, and the connections it opens (kube's client
/// speaks HTTP/1.1: one pooled connection per call in flight). Creates have no such cap: each
/// slow-start batch is issued whole (see [`create_batch`]).
const MAX_DELETES_IN_FLIGHT: usize = 32;

/// Creates `count` pods in slow-start batches, stopping after the first batch with a failure.
pub(super) async fn create_pods(
    scaler: &PodScaler,
    namespace: &str,
    key: &str,
    count: usize,
    ctx: &Context,
) -> Progress {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let pod = new_pod(scaler, namespace);
    let params = PostParams::default();
    let mut created = Vec::new();
    let mut failure = None;
    let mut first_error = None;
    for batch in plan::slow_start_batches(count) {
        let mut batch_created = Vec::new();
        for result in create_batch(&api, &params, &pod, batch).await {
            match result {
                Ok(pod) => batch_created.push(PodRef {
                    name: pod.name_any(),
                    uid: pod.uid().unwrap_or_default(),
                }),
                Err(error) => {
                    if first_error.is_none() {
                        failure = Some(Failure {
                            action: FailedAction::Create,
                            message: stable_api_message(&error),
                        });
                        first_error = Some(api_message(&error));
                    }
                }
            }
        }
        lock(&ctx.expectations).expect_creations(
            key,
            batch_created.iter().cloned(),
            Instant::now(),
        );
        created.extend(batch_created);
        if failure.is_some() {
            break;
        }
    }
    let names: Vec<&str> = created.iter().map(|pod| pod.name.as_str()).collect();
    report_calls(ctx, scaler, FailedAction::Create, &names, first_error).await;
    Progress::Acted { failure }
}

/// Issues all `size` creates of one slow-start batch at once and waits for every answer, as
/// the ReplicaSet controller's `slowStartBatch` does (one goroutine per call). Slow start
/// already bounds what a failing batch costs; a cap on calls in flight within a batch would
/// only serialise the large batches of a big scale-up (500 pods end in batches of 128 and
/// 245). Over kube's HTTP/1.1 client each call in flight takes a pooled connection of its own,
/// opened on first use and kept for 90 s idle (hyper-util's pool has no upper bound).
async fn create_batch(
    api: &Api<Pod>,
    params: &PostParams,
    pod: &Pod,
    size: usize,
) -> Vec<Result<Pod, kube::Error>> {
    futures::future::join_all((0..size).map(|_| api.create(params, pod))).await
}

/// Deletes `victims`, preconditioned on their UIDs; a pod already gone counts as deleted.
pub(super) async fn delete_pods(
    scaler: &PodScaler,
    namespace: &str,
    key: &str,
    victims: Vec<PodFacts>,
    ctx: &Context,
) -> Progress {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let results: Vec<(PodFacts, Result<(), kube::Error>)> = stream::iter(victims)
        .map(|victim| {
            let api = api.clone();
            async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(victim.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let result = match api.delete(&victim.name, &params).await {
                    Ok(_) => Ok(()),
                    // Gone already, or replaced by a namesake (UID precondition failed).
                    Err(kube::Error::Api(status))
                        if status.is_not_found() || status.is_conflict() =>
                    {
                        Ok(())
                    }
                    Err(error) => Err(error),
                };
                (victim, result)
            }
        })
        .buffer_unordered(MAX_DELETES_IN_FLIGHT)
        .collect()
        .await;

    let mut deleted = Vec::new();
    let mut failure = None;
    let mut first_error = None;
    for (victim, result) in results {
        match result {
            Ok(()) => deleted.push(victim),
            Err(error) => {
                if first_error.is_none() {
                    failure = Some(Failure {
                        action: FailedAction::Delete,
                        message: stable_api_message(&error),
                    });
                    first_error = Some(api_message(&error));
                }
            }
        }
    }
    let now = Instant::now();
    lock(&ctx.expectations).expect_deletions(
        key,
        deleted.iter().map(|pod| PodRef {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }),
        now,
    );
    let name = scaler.name_any();
    let mut foreign_owners: BTreeSet<&OwnerName> = BTreeSet::new();
    let mut foreign = 0_u64;
    for pod in &deleted {
        if let PodOwner::Other(owner) = &pod.controller {
            foreign_owners.insert(owner);
            foreign += 1;
        }
    }
    if foreign > 0 {
        ctx.metrics.foreign_pods_deleted(namespace, &name, foreign);
    }
    // One round of a fight per controller per pass: a pass deletes every surplus pod at once.
    let holds: Vec<_> = {
        let mut fights = lock(&ctx.fights);
        foreign_owners
            .into_iter()
            .filter_map(|owner| fights.round(key, owner, now, Timestamp::now()))
            .collect()
    };
    for hold in holds {
        let note = format!(
            "{} recreated the pods this PodScaler deleted: not deleting its pods for {}s, until {}",
            hold.owner,
            hold.duration.as_secs(),
            hold.until
        );
        publish(
            ctx,
            scaler,
            WARNING,
            status::reason::FIGHTING_CONTROLLER,
            "DeletePods",
            note,
        )
        .await;
    }
    let names: Vec<&str> = deleted.iter().map(|pod| pod.name.as_str()).collect();
    report_calls(ctx, scaler, FailedAction::Delete, &names, first_error).await;
    Progress::Acted { failure }
}

/// The pod created for `scaler`: its template (defaulted), a `<name>-` generated name and a
/// controller owner reference so garbage collection removes it with the PodScaler.
pub fn new_pod(scaler: &PodScaler, namespace: &str) -> Pod {
    let template = effective_template(&scaler.spec);
    let template_meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", scaler.name_any())),
            namespace: Some(namespace.to_owned()),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            owner_references: scaler.controller_owner_ref(&()).map(|mut owner| {
                owner.block_owner_deletion = Some(true);
                vec![owner]
            }),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The API server's own message for an API error, the error's text otherwise.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// [`api_message`] without the name of the refused pod, for the `ReplicaFailure` condition.
fn stable_api_message(error: &kube::Error) -> String {
    let refused = match error {
        kube::Error::Api(status) => status.details.as_ref().map(|d| d.name.as_str()),
        _ => None,
    };
    status::refusal_message(&api_message(error), refused)
}
