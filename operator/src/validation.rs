//! Validation of PodScaler specs (owned by the webhook work; placeholder until it lands).
