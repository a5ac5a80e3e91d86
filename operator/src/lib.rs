//! PodScaler: keeps exactly `spec.count` active pods matching `spec.selector`.
//!
//! The library holds everything the operator binary, the webhook binary and `crd-gen` share —
//! the API types and their defaulting, validation, the CRD, the admin (metrics / health)
//! servers, the process metrics — and the operator's own parts: pure decisions (`plan`,
//! `expectations`, `status`, `contention`) with the I/O kept in `reconcile` and `controller`.

pub mod admin;
pub mod api;
pub mod backoff;
pub mod cache;
pub mod cli;
pub mod contention;
pub mod controller;
pub mod crd;
pub mod events;
pub mod expectations;
pub mod exposition;
pub mod leader;
pub mod metrics;
pub mod metrics_auth;
pub mod metrics_tls;
pub mod observed;
pub mod plan;
pub mod process_metrics;
pub mod reconcile;

pub mod rest_client_metrics;
pub mod runtime;
pub mod status;
pub mod telemetry;
pub mod validation;
pub mod workqueue_metrics;
