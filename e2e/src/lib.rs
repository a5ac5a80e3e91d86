//! The e2e harness: a real Kubernetes control plane on 127.0.0.1 and helpers to run
//! PodScaler's binaries against it the way a user would.
//!
//! Nothing here sends traffic anywhere but 127.0.0.0/8.

pub mod binaries;
pub mod certs;
pub mod chart;
pub mod cluster;
pub mod command;
pub mod kubectl;
pub mod kubectl_output;
pub mod ledger;
pub mod local_http;
pub mod merge_markers;
pub mod node;
pub mod observe;
pub mod process;
pub mod procs;
pub mod product;
pub mod request_counts;
pub mod stats;
pub mod suite;
pub mod usage;
pub mod wait;
pub mod webhook;

pub use cluster::{Cluster, Options};
