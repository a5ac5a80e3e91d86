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
//! field ([`decode`]).

use std::collections::BTreeMap;

use http::StatusCode;
use kube::api::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, META_API_VERSION_V1, META_KIND, Operation,
};
use kube::core::response::{StatusCause, StatusDetails};
use kube::core::{Status, TypeMeta};
use podscaler::api::{GROUP, PodScaler, apply_defaults};
use podscaler::validation::{self, FieldError, Peer, SpecLimits, Verdict};
use serde::Deserialize;
use serde_json::Value;

use self::decode::decode;

mod decode;
mod envelope;
pub mod scale;

use self::envelope::{envelope, object_key, operation_label};
pub use self::envelope::{reject, truncate};

/// Path of the mutating (defaulting) webhook, as kubebuilder names it.
pub const MUTATE_PATH: &str = "/mutate-scaling-example-com-v1-podscaler";
/// Path of the validating webhook, as kubebuilder names it.
pub const VALIDATE_PATH: &str = "/validate-scaling-example-com-v1-podscaler";

/// The version of the PodScaler API this webhook admits.
const VERSION: &str = "v1";
/// The kind this webhook admits.
const KIND: &str = "PodScaler";

/// The two webhooks served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Webhook {
    /// Fills in defaults with a JSON patch.
    Mutate,
    /// Refuses PodScalers the operator could not run correctly.
    Validate,
}

impl Webhook {
    /// Both webhooks.
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
    /// HTTP status.
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
    /// Whether the request was allowed.
    pub allowed: bool,
}

/// Answers one request body sent to `webhook`.
#[tracing::instrument(
    name = "admission",
    skip_all,
    fields(webhook = webhook.path(), podscaler = tracing::field::Empty, operation = tracing::field::Empty)
)]
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
    let span = tracing::Span::current();
    span.record("podscaler", tracing::field::display(object_key(&request)));
    span.record("operation", operation);
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

/// A request that cannot be admitted for reasons other than the object's content.
#[derive(Debug)]
struct ReviewError {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl ReviewError {
    fn bad_request(message: String) -> Self {
        Self {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message,
        }
    }

    fn into_response(self, uid: String) -> AdmissionResponse {
        let mut response = AdmissionResponse::invalid(&self.message);
        response.uid = uid;
        response.result = Status::failure(&self.message, self.reason).with_code(self.code.as_u16());
        response
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
    let allowed = AdmissionResponse::from(&request);
    let writes_object = matches!(request.operation, Operation::Create | Operation::Update);
    match (subject(&request)?, webhook) {
        // A Scale has nothing to default.
        (Subject::Scale, Webhook::Mutate) => Ok(allowed),
        (Subject::Scale, Webhook::Validate) => scale::validate(allowed, &request, raw, limits),
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
            validate_review(allowed, &request, raw, index, limits)
        }
    }
}

/// The validating webhook on a PodScaler CREATE or UPDATE: decodes both objects, then
/// [`validate`]s.
fn validate_review(
    allowed: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    raw: &Value,
    index: &dyn PodScalerIndex,
    limits: &SpecLimits,
) -> Result<AdmissionResponse, ReviewError> {
    let object = match podscaler(raw, "object") {
        Ok(object) => object,
        Err(ObjectError::Undecodable(error)) => return Ok(undecodable(allowed, request, error)),
        Err(error) => return Err(error.into_review_error("object")),
    };
    let old = match request.operation {
        Operation::Update => match podscaler(raw, "oldObject") {
            Ok(old) => Some(old),
            // The stored object, written before a rule or a type changed: the user cannot fix
            // it in this request, and refusing would lock the object (every update, the
            // removal of a finalizer too, would fail). The new object is judged alone; the
            // CRD's own rules still compare it with the stored one (the selector's
            // immutability).
            Err(ObjectError::Undecodable(error)) => {
                tracing::warn!(
                    error = %error,
                    "the stored PodScaler does not decode; judging the update on its new object alone"
                );
                None
            }
            Err(error) => return Err(error.into_review_error("oldObject")),
        },
        _ => None,
    };
    validate(allowed, request, &object, old.as_ref(), index, limits)
}

/// What a review is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    /// A PodScaler object.
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

/// The validating webhook's answer to a PodScaler it cannot decode: denied as invalid, naming
/// the field, like a violation of a rule.
fn undecodable(
    allowed: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    error: decode::DecodeError,
) -> AdmissionResponse {
    let name = request.name.clone();
    let field = if error.field.is_empty() {
        "(root)".to_owned()
    } else {
        error.field
    };
    let verdict = Verdict {
        errors: vec![FieldError {
            field,
            message: truncate(&error.message),
        }],
        warnings: Vec::new(),
    };
    decide(allowed, &Denied::podscaler(&name), verdict)
}

/// The object a denial is about, named as the API server names an invalid object
/// (`PodScaler.scaling.example.com "web" is invalid: …`; kubectl prints `The PodScaler "web"
/// is invalid:` and then every cause).
struct Denied<'a> {
    group: &'static str,
    kind: &'static str,
    name: &'a str,
}

impl<'a> Denied<'a> {
    fn podscaler(name: &'a str) -> Self {
        Self {
            group: GROUP,
            kind: KIND,
            name,
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

/// Defaulting as a JSON patch: the library's [`apply_defaults`], diffed. Both sides of the
/// diff are serialized from the typed spec, so the patch holds exactly what defaulting
/// changed (never a re-formatting of the request), and it is empty when nothing needed
/// defaulting.
fn mutate(
    allowed: AdmissionResponse,
    object: &PodScaler,
) -> Result<AdmissionResponse, ReviewError> {
    let patch = defaulting_patch(object).map_err(|error| ReviewError {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "InternalError",
        message: format!("computing the defaulting patch failed: {error}"),
    })?;
    if patch.0.is_empty() {
        return Ok(allowed);
    }
    allowed.with_patch(patch).map_err(|error| ReviewError {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "InternalError",
        message: format!("encoding the defaulting patch failed: {error}"),
    })
}

/// The JSON patch (paths from the object's root) that applies [`apply_defaults`] to `object`.
pub fn defaulting_patch(object: &PodScaler) -> Result<json_patch::Patch, serde_json::Error> {
    let mut defaulted = object.spec.clone();
    apply_defaults(&mut defaulted);
    let before = serde_json::json!({ "spec": serde_json::to_value(&object.spec)? });
    let after = serde_json::json!({ "spec": serde_json::to_value(&defaulted)? });
    Ok(json_patch::diff(&before, &after))
}

fn validate(
    allowed: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    object: &PodScaler,
    old: Option<&PodScaler>,
    index: &dyn PodScalerIndex,
    limits: &SpecLimits,
) -> Result<AdmissionResponse, ReviewError> {
    let name = if request.name.is_empty() {
        object.metadata.name.clone().unwrap_or_default()
    } else {
        request.name.clone()
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| object.metadata.namespace.clone())
        .unwrap_or_default();
    let others = index.selectors_in(&namespace).ok_or_else(|| ReviewError {
        code: StatusCode::SERVICE_UNAVAILABLE,
        reason: "ServiceUnavailable",
        message: "the webhook has not finished loading the cluster's PodScalers, so it cannot \
                  check for overlapping selectors yet; retry in a few seconds"
            .to_owned(),
    })?;
    let peers: Vec<Peer<'_>> = others
        .iter()
        .map(|(name, selector)| Peer { name, selector })
        .collect();
    let verdict = match old {
        None => validation::validate_create(&name, &object.spec, peers.iter().copied(), limits),
        Some(old) => validation::validate_update(
            &name,
            &old.spec,
            &object.spec,
            peers.iter().copied(),
            limits,
        ),
    };
    Ok(decide(allowed, &Denied::podscaler(&name), verdict))
}

/// The response for `verdict` on `denied`: allowed (with any warnings), or denied as
/// `Invalid` with one cause per error.
fn decide(
    mut response: AdmissionResponse,
    denied: &Denied<'_>,
    verdict: Verdict,
) -> AdmissionResponse {
    if !verdict.warnings.is_empty() {
        response.warnings = Some(
            verdict
                .warnings
                .iter()
                .map(|warning| format!("{warning} (allowed because this update did not change it)"))
                .collect(),
        );
    }
    if verdict.errors.is_empty() {
        return response;
    }
    let message = format!(
        "{}.{} {:?} is invalid: {}",
        denied.kind,
        denied.group,
        denied.name,
        verdict
            .errors
            .iter()
            .map(FieldError::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let causes = verdict
        .errors
        .into_iter()
        .map(|error| StatusCause {
            reason: "FieldValueInvalid".to_owned(),
            message: error.message,
            field: error.field,
        })
        .collect();
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, "Invalid")
        .with_code(StatusCode::UNPROCESSABLE_ENTITY.as_u16())
        .with_details(StatusDetails {
            name: denied.name.to_owned(),
            group: denied.group.to_owned(),
            kind: denied.kind.to_owned(),
            uid: String::new(),
            causes,
            retry_after_seconds: 0,
        });
    response
}

#[cfg(test)]
mod tests;
