//! Prints the PodScaler CustomResourceDefinition as YAML. `charts/podscaler/crds/` holds its
//! output; CI fails when the two differ.

use std::io::Write;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let yaml = serde_saphyr::to_string(&podscaler::crd::custom_resource_definition())
        .context("serializing the CRD")?;
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .context("writing the CRD to stdout")
}
