//! PodScaler: keeps exactly `spec.count` active pods matching `spec.selector`.
//!
//! The library holds everything the operator binary, the webhook binary and `crd-gen` share:
//! the API types and their defaulting, the CRD, and the admin (metrics / health) servers.

pub mod admin;
pub mod api;
pub mod crd;
pub mod telemetry;
pub mod validation;
