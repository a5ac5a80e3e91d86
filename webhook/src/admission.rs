//! Admission, pure: the bytes of a request body in, the status and bytes of the answer out.
//!
//! Nothing here does I/O. Other PodScalers are looked up through [`PodScalerIndex`] (a watched
//! cache in production, anything in tests). Dry-run requests take exactly the same path: the
//! webhook has no side effects.
//!
//! Answers follow what the API server can act on:
//! - a body that is not an `admission.k8s.io/v1` AdmissionReview with a `request.uid` gets an
//!   HTTP 4xx with a `metav1.Status` body (there is no UID to answer);
//! - anything else gets HTTP 200 with an AdmissionReview whose `response.uid` echoes the
//!   request: allowed (possibly with a JSON patch and warnings), denied with a 422 `Invalid`
//!   status listing every violation (and a `details.causes` entry per field, which `kubectl`
//!   prints one per line), or a 4xx/5xx error status when the request itself is unusable.
//!
//! What is reviewed: PodScaler CREATE and UPDATE, and (validation only) UPDATE of the
//! `podscalers/scale` subresource, whose object is an `autoscaling/v1` Scale ([`scale`]).
//! Other subresources (status) change nothing the webhooks check and are allowed.
//!
//! An object the mutating webhook cannot decode (`count: "four"`, no `selector`) is let
//! through unpatched: mutating admission runs before the API server's schema validation, which
//! then refuses it with the field path and every other schema error, as for any CRD. Should
//! the schema ever let such an object through, the validating webhook refuses it naming the
//! field (`decode.rs`).
//!
//! This file routes a request to what reviews it; the envelope checks are in `envelope.rs`,
//! defaulting in `mutate.rs`, the PodScaler rules in `validate.rs`, the scale subresource in
//! [`scale`], and the building of answers in `response.rs`. Each review runs in an `admission`
//! span with `podscaler = "namespace/name"`, the key the operator's reconcile span uses.

use std::collections::BTreeMap;

use http::StatusCode;
use kube::api::DynamicObject;
use kube::core::TypeMeta;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, META_API_VERSION_V1, META_KIND, Operation,
};
use podscaler::api::{GROUP, PodScaler};
use podscaler::validation::SpecLimits;
use serde::Deserialize;
use serde_json::Value;

use self::decode::decode;
use self::envelope::envelope;
pub use self::mutate::defaulting_patch;
use self::mutate::mutate;
use self::response::ReviewError;
pub use self::response::reject;
use self::validate::validate_review;

mod decode;
mod envelope;
mod mutate;
mod response;
pub mod scale;
mod validate;

/// Path of the mutating (defaulting) webhook, as kubebuilder names it.
pub const MUTATE_PATH: &str = "/mutate-scaling-example-com-v1-podscaler";
/// Path of the validating webhook, as kubebuilder names it.
pub const VALIDATE_PATH: &str = "/validate-scaling-example-com-v1-podscaler";

/// The version of the PodScaler API this webhook admits.
const VERSION: &str = "v1";
const KIND: &str = "PodScaler";
/// Longest excerpt of client-supplied text echoed in an error message.
const ECHO_LIMIT: usize = 100;

/// The two webhooks served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Webhook {
    /// Fills in defaults with a JSON patch.
    Mutate,
    /// Refuses PodScalers the operator could not run correctly.
    Validate,
}

impl Webhook {
    pub const ALL: [Self; 2] = [Self::Mutate, Self::Validate];

    /// The webhook served at `path`, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            MUTATE_PATH => Some(Self::Mutate),
            VALIDATE_PATH => Some(Self::Validate),
            _ => None,
        }
    }

    /// The path it is served at (also its `webhook` metric label).
    pub fn path(self) -> &'static str {
        match self {
            Self::Mutate => MUTATE_PATH,
            Self::Validate => VALIDATE_PATH,
        }
    }
}

/// Read access to the PodScalers of the cluster, for the overlap check.
pub trait PodScalerIndex: Send + Sync {
    /// Name and selector of every PodScaler in `namespace`, or `None` while the cache has not
    /// synced yet (an empty answer would let overlapping selectors through).
    fn selectors_in(&self, namespace: &str) -> Option<Vec<(String, BTreeMap<String, String>)>>;
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    /// JSON body: an AdmissionReview (status 200) or a `metav1.Status` (4xx/5xx).
    pub body: Vec<u8>,
    /// Set when an AdmissionReview was answered.
    pub decision: Option<Decision>,
}

/// An answered AdmissionReview, for the decisions metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `UNKNOWN`.
    pub operation: &'static str,
    pub allowed: bool,
}

/// Answers one request body sent to `webhook`.
pub fn answer(
    webhook: Webhook,
    body: &[u8],
    index: &dyn PodScalerIndex,
    limits: &SpecLimits,
) -> Answer {
    let (request, uid) = match envelope(body) {
        Ok(parsed) => parsed,
        Err(message) => return reject(StatusCode::BAD_REQUEST, &message),
    };
    let operation = operation_label(&request);
    let response = match review(webhook, &request, index, limits) {
        Ok(response) => response,
        Err(error) => error.into_response(uid),
    };
    let allowed = response.allowed;
    match serde_json::to_vec(&response.into_review()) {
        Ok(body) => Answer {
            status: StatusCode::OK,
            body,
            decision: Some(Decision { operation, allowed }),
        },
        Err(error) => reject(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the AdmissionReview response failed: {error}"),
        ),
    }
}

fn review(
    webhook: Webhook,
    raw: &Value,
    index: &dyn PodScalerIndex,
    limits: &SpecLimits,
) -> Result<AdmissionResponse, ReviewError> {
    let mut request = AdmissionRequest::<DynamicObject>::deserialize(raw).map_err(|error| {
        ReviewError::bad_request(format!(
            "AdmissionReview.request is not an {META_API_VERSION_V1} AdmissionRequest: {error}"
        ))
    })?;
    // The response echoes the review's type; the request does not carry it by itself.
    request.types = TypeMeta {
        api_version: META_API_VERSION_V1.to_owned(),
        kind: META_KIND.to_owned(),
    };
    review_request(webhook, &request, raw, index, limits)
}

/// Reviews one decoded request, in a span naming the PodScaler (`podscaler = "ns/name"`, the
/// key the operator's reconcile span uses too) so every log line of the review carries it.
#[tracing::instrument(
    name = "admission",
    skip_all,
    fields(
        podscaler = %podscaler_key(request),
        webhook = webhook.path(),
        operation = ?request.operation,
        kind = %request.kind.kind,
        subresource = request.sub_resource.as_deref().unwrap_or_default(),
        uid = %request.uid,
    )
)]
fn review_request(
    webhook: Webhook,
    request: &AdmissionRequest<DynamicObject>,
    raw: &Value,
    index: &dyn PodScalerIndex,
    limits: &SpecLimits,
) -> Result<AdmissionResponse, ReviewError> {
    let reviewed = decide_request(webhook, request, raw, index, limits);
    match &reviewed {
        Ok(response) => tracing::debug!(allowed = response.allowed, "reviewed"),
        Err(error) => {
            tracing::debug!(code = error.code.as_u16(), message = %error.message, "request refused")
        }
    }
    reviewed
}

/// `namespace/name` of the PodScaler under review (`name` alone for a cluster-scoped request,
/// which the webhook configuration never sends).
fn podscaler_key(request: &AdmissionRequest<DynamicObject>) -> String {
    match request.namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{}", request.name),
        _ => request.name.clone(),
    }
}

fn decide_request(
    webhook: Webhook,
    request: &AdmissionRequest<DynamicObject>,
    raw: &Value,
    index: &dyn PodScalerIndex,
    limits: &SpecLimits,
) -> Result<AdmissionResponse, ReviewError> {
    let allowed = AdmissionResponse::from(request);
    let writes_object = matches!(request.operation, Operation::Create | Operation::Update);
    match (subject(request)?, webhook) {
        // A Scale has nothing to default.
        (Subject::Scale, Webhook::Mutate) => Ok(allowed),
        (Subject::Scale, Webhook::Validate) => scale::validate(allowed, request, raw, limits),
        // Status updates do not change what the webhooks check.
        (Subject::OtherSubresource, _) => Ok(allowed),
        (Subject::PodScaler, _) if !writes_object => Ok(allowed),
        (Subject::PodScaler, Webhook::Mutate) => match podscaler(raw, "object") {
            Ok(object) => mutate(allowed, &object),
            // Let the schema name the field (see the module documentation).
            Err(ObjectError::Undecodable(_)) => Ok(allowed),
            Err(error) => Err(error.into_review_error("object")),
        },
        (Subject::PodScaler, Webhook::Validate) => {
            validate_review(allowed, request, raw, index, limits)
        }
    }
}

/// What a review is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    PodScaler,
    /// The scale subresource: an `autoscaling/v1` Scale.
    Scale,
    /// Another subresource of a PodScaler (status).
    OtherSubresource,
}

/// What the review is about, from its subresource and kind; a kind that does not belong there
/// is a configuration error, answered 400.
fn subject(request: &AdmissionRequest<DynamicObject>) -> Result<Subject, ReviewError> {
    let kind = &request.kind;
    let kind = (
        kind.group.as_str(),
        kind.version.as_str(),
        kind.kind.as_str(),
    );
    let described = || format!("{}/{} {}", kind.0, kind.1, kind.2);
    match request
        .sub_resource
        .as_deref()
        .filter(|sub| !sub.is_empty())
    {
        Some(scale::SUBRESOURCE) if kind == (scale::GROUP, scale::VERSION, scale::KIND) => {
            Ok(Subject::Scale)
        }
        Some(scale::SUBRESOURCE) => Err(scale::wrong_kind(&described())),
        _ if kind != (GROUP, VERSION, KIND) => Err(ReviewError::bad_request(format!(
            "this webhook admits {GROUP}/{VERSION} {KIND} objects, not {}: the webhook \
             configuration's rules must select only podscalers.{GROUP}",
            truncate(&described())
        ))),
        Some(_) => Ok(Subject::OtherSubresource),
        None => Ok(Subject::PodScaler),
    }
}

/// Why `AdmissionReview.request.<field>` gave no PodScaler.
#[derive(Debug)]
enum ObjectError {
    /// The field is absent or null.
    Missing,
    /// It is there but is not a PodScaler: which field of it, and why.
    Undecodable(decode::DecodeError),
}

impl ObjectError {
    fn into_review_error(self, field: &str) -> ReviewError {
        match self {
            Self::Missing => ReviewError::bad_request(format!(
                "AdmissionReview.request.{field} is missing: CREATE and UPDATE reviews must carry it"
            )),
            Self::Undecodable(error) => ReviewError::bad_request(format!(
                "AdmissionReview.request.{field} is not a valid {KIND}: {}",
                truncate(&error.to_string())
            )),
        }
    }
}

/// The PodScaler in `AdmissionReview.request.<field>`.
fn podscaler(raw: &Value, field: &str) -> Result<PodScaler, ObjectError> {
    match raw.get(field) {
        None | Some(Value::Null) => Err(ObjectError::Missing),
        Some(value) => decode(value).map_err(ObjectError::Undecodable),
    }
}

/// The operation as a metric label, from a bounded set.
fn operation_label(request: &Value) -> &'static str {
    match request.get("operation").and_then(Value::as_str) {
        Some("CREATE") => "CREATE",
        Some("UPDATE") => "UPDATE",
        Some("DELETE") => "DELETE",
        Some("CONNECT") => "CONNECT",
        _ => "UNKNOWN",
    }
}

/// `text` cut to `ECHO_LIMIT` (100) characters, so a client cannot make answers (or logs) large.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(ECHO_LIMIT) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests;
