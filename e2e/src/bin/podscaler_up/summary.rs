//! What `podscaler-up` prints once the sample runs: how to reach the cluster and the binaries.
//! Pure text from addresses and paths, so it is tested without a cluster.

use std::fmt::Write as _;
use std::path::Path;

/// Where one of PodScaler's binaries answers, and where it logs.
pub struct Endpoints<'a> {
    /// The port of `/metrics` on 127.0.0.1.
    pub metrics_port: u16,
    /// The port of `/healthz` and `/readyz` on 127.0.0.1.
    pub health_port: u16,
    pub log: &'a Path,
}

/// Everything the summary names.
pub struct Summary<'a> {
    /// Where the sample runs.
    pub namespace: &'a str,
    /// The kubeconfig of a control plane `podscaler-up` started; `None` on the user's own
    /// cluster, which their kubeconfig already reaches.
    pub local_kubeconfig: Option<&'a Path>,
    pub operator: Endpoints<'a>,
    /// The webhook, when it runs (only on a local control plane).
    pub webhook: Option<Endpoints<'a>>,
}

impl Summary<'_> {
    /// The text, ending in a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let scale = format!(
            "kubectl -n {} scale podscaler example-podscaler --replicas=6",
            self.namespace
        );
        match self.local_kubeconfig {
            Some(kubeconfig) => {
                let _ = writeln!(out, "In another shell, to use the local control plane:");
                let _ = writeln!(
                    out,
                    "  export KUBECONFIG={}",
                    shell_quote(&kubeconfig.display().to_string())
                );
                let _ = writeln!(out, "  {scale}");
            }
            None => {
                let _ = writeln!(out, "try:  {scale}");
            }
        }
        let _ = writeln!(out);
        endpoints(&mut out, "operator", &self.operator);
        if let Some(webhook) = &self.webhook {
            endpoints(&mut out, "webhook", webhook);
        }
        let _ = writeln!(out);
        match self.local_kubeconfig {
            Some(_) => {
                let _ = writeln!(
                    out,
                    "Ctrl-C stops the operator, the webhook and the local control plane."
                );
            }
            None => {
                let _ = writeln!(out, "Ctrl-C stops the operator.");
                let _ = writeln!(
                    out,
                    "The sample stays: `kubectl delete namespace {}` removes it.",
                    self.namespace
                );
            }
        }
        out
    }
}

fn endpoints(out: &mut String, name: &str, endpoints: &Endpoints<'_>) {
    let _ = writeln!(
        out,
        "{name}:\n  metrics  http://127.0.0.1:{}/metrics\n  health   \
         http://127.0.0.1:{}/healthz  http://127.0.0.1:{}/readyz\n  log      {}",
        endpoints.metrics_port,
        endpoints.health_port,
        endpoints.health_port,
        endpoints.log.display()
    );
}

/// `text` as one word for a POSIX shell: as it is when it holds nothing the shell would
/// interpret, in single quotes otherwise (a temporary directory under a `$TMPDIR` with spaces).
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator() -> Endpoints<'static> {
        Endpoints {
            metrics_port: 4001,
            health_port: 4002,
            log: Path::new("/tmp/c/podscaler-operator-4001.log"),
        }
    }

    #[test]
    fn a_local_control_plane_gets_an_export_line_and_every_address() {
        let text = Summary {
            namespace: "podscaler-demo",
            local_kubeconfig: Some(Path::new("/tmp/c/admin.kubeconfig")),
            operator: operator(),
            webhook: Some(Endpoints {
                metrics_port: 5001,
                health_port: 5002,
                log: Path::new("/tmp/c/webhook.log"),
            }),
        }
        .render();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert!(
            lines.contains(&"export KUBECONFIG=/tmp/c/admin.kubeconfig"),
            "{text}"
        );
        for address in [
            "http://127.0.0.1:4001/metrics",
            "http://127.0.0.1:4002/readyz",
            "http://127.0.0.1:5001/metrics",
            "http://127.0.0.1:5002/healthz",
            "/tmp/c/webhook.log",
        ] {
            assert!(text.contains(address), "{address} missing:\n{text}");
        }
        assert!(text.contains("the local control plane"), "{text}");
    }

    #[test]
    fn the_users_own_cluster_gets_no_export_line() {
        let text = Summary {
            namespace: "podscaler-demo",
            local_kubeconfig: None,
            operator: operator(),
            webhook: None,
        }
        .render();
        assert!(!text.contains("KUBECONFIG"), "{text}");
        assert!(!text.contains("webhook"), "{text}");
        assert!(
            text.lines()
                .any(|line| line == "Ctrl-C stops the operator."),
            "{text}"
        );
        assert!(text.contains("http://127.0.0.1:4001/metrics"), "{text}");
    }

    #[test]
    fn paths_a_shell_would_split_are_quoted() {
        assert_eq!(
            shell_quote("/tmp/x/admin.kubeconfig"),
            "/tmp/x/admin.kubeconfig"
        );
        assert_eq!(shell_quote("/tmp/my dir/k"), "'/tmp/my dir/k'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
        assert_eq!(shell_quote("/tmp/$HOME"), "'/tmp/$HOME'");
    }
}
