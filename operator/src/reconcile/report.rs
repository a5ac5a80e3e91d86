//! The events a pass publishes about its calls, and how they name the pods.

use super::context::Context;
use crate::api::PodScaler;
use crate::events::Occurrence;
use crate::status::FailedAction;
use kube::Resource;

/// Pod names listed in one event before the rest is summarised.
const NAMES_PER_EVENT: usize = 10;

/// Event types (core/v1 `type`).
pub(super) const NORMAL: &str = "Normal";
pub(super) const WARNING: &str = "Warning";

/// The events of one round of creates or deletes: one naming the pods the calls succeeded for,
/// one with the first refusal. The refusal keeps the API's whole message (the refused pod's
/// name too), as the ReplicaSet controller's does; the correlator combines a run of them.
pub(super) async fn report_calls(
    ctx: &Context,
    scaler: &PodScaler,
    operation: FailedAction,
    done: &[&str],
    first_error: Option<String>,
) {
    let (done_reason, failed_reason, action, past, verb) = match operation {
        FailedAction::Create => (
            "SuccessfulCreate",
            "FailedCreate",
            "CreatePods",
            "Created",
            "creating",
        ),
        FailedAction::Delete => (
            "SuccessfulDelete",
            "FailedDelete",
            "DeletePods",
            "Deleted",
            "deleting",
        ),
    };
    if !done.is_empty() {
        let note = format!("{past} {} pod(s): {}", done.len(), list_names(done));
        publish(ctx, scaler, NORMAL, done_reason, action, note).await;
    }
    if let Some(error) = first_error {
        let note = format!("Error {verb}: {error}");
        publish(ctx, scaler, WARNING, failed_reason, action, note).await;
    }
}

pub(super) async fn publish(
    ctx: &Context,
    scaler: &PodScaler,
    type_: &'static str,
    reason: &str,
    action: &str,
    message: String,
) {
    let occurrence = Occurrence {
        type_,
        reason: reason.to_owned(),
        action: action.to_owned(),
        message,
    };
    if let Err(error) = ctx
        .recorder
        .publish(&scaler.object_ref(&()), &occurrence)
        .await
    {
        tracing::warn!(reason, error = %error, "publishing an event failed");
    }
}

pub(super) fn list_names(names: &[&str]) -> String {
    let shown = names
        .iter()
        .take(NAMES_PER_EVENT)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(NAMES_PER_EVENT) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}
