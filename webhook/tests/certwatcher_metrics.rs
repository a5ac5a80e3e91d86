//! `certwatcher_read_certificate_total` / `_errors_total`: one read per look at the files,
//! counted as controller-runtime's certwatcher counts its `ReadCertificate` calls, including
//! the read that loaded the certificate and every look at files that cannot be served.

mod support;

use podscaler_webhook::metrics::Metrics;
use podscaler_webhook::tls::{self, CertDir, Poll, Reloader};
use prometheus_client::registry::Registry;
use support::*;

fn counts(registry: &Registry) -> (String, String) {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    (
        value("certwatcher_read_certificate_total "),
        value("certwatcher_read_certificate_errors_total "),
    )
}

fn pair(reads: &str, errors: &str) -> (String, String) {
    (reads.to_owned(), errors.to_owned())
}

#[test]
fn every_look_is_a_read_and_unservable_files_are_errors_each_time() {
    let pki = Pki::new();
    let good = pki.leaf();
    let mut volume = SecretVolume::new("certwatcher-metrics", &good);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, &[]);
    let mut reloader = Reloader::load(CertDir::new(volume.path()), tls::provider())
        .expect("the first pair loads")
        .with_metrics(metrics);
    assert_eq!(counts(&registry), pair("1", "0"), "the load is a read");

    assert!(matches!(reloader.poll(), Poll::Unchanged));
    assert_eq!(counts(&registry), pair("2", "0"));

    volume.project(b"not a certificate", b"not a key");
    assert!(matches!(reloader.poll(), Poll::Unsettled));
    assert!(matches!(reloader.poll(), Poll::Failed(_)));
    // Reported once, but still files that cannot be served.
    assert!(matches!(reloader.poll(), Poll::Unchanged));
    assert_eq!(counts(&registry), pair("5", "3"));

    volume.rotate(&pki.leaf());
    assert!(matches!(reloader.poll(), Poll::Reloaded));
    assert!(matches!(reloader.poll(), Poll::Unchanged));
    assert_eq!(counts(&registry), pair("7", "3"));
}
