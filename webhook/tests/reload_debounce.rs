//! `Reloader::poll`, the one place that decides what is reported: a look that catches an
//! update half-way (a directory removed under it, files written one after the other) is looked
//! at again, not reported; a broken certificate or a missing file that stays is reported once
//! (logged, and counted as one reload error) while the previous certificate stays in service.

mod support;

use podscaler::runtime::error_chain;
use podscaler_webhook::metrics::Metrics;
use podscaler_webhook::tls::{self, CertDir, Poll, Reloader};
use prometheus_client::registry::Registry;
use support::*;

fn reloader(volume: &SecretVolume) -> Reloader {
    Reloader::load(CertDir::new(volume.path()), tls::provider()).expect("the first pair loads")
}

#[test]
fn a_half_swapped_pair_is_looked_at_again_not_reported() {
    let pki = Pki::new();
    let (first, second) = (pki.leaf(), pki.leaf());
    let mut volume = SecretVolume::new("debounce-half-swap", &first);
    let mut reloader = reloader(&volume);
    assert!(matches!(reloader.poll(), Poll::Unchanged));

    // What a look can see in a plain directory whose files are replaced one after the other:
    // the old certificate with the new key.
    volume.project(first.cert_pem.as_bytes(), second.key_pem.as_bytes());
    assert!(matches!(reloader.poll(), Poll::Unsettled));
    volume.rotate(&second);
    assert!(matches!(reloader.poll(), Poll::Reloaded));
    assert!(matches!(reloader.poll(), Poll::Unchanged));
    assert_eq!(reloader.resolver().current().cert[0], second.der);
}

#[test]
fn a_broken_pair_that_stays_is_reported_once_and_the_old_one_served() {
    let pki = Pki::new();
    let good = pki.leaf();
    let mut volume = SecretVolume::new("debounce-broken", &good);
    let mut reloader = reloader(&volume);

    volume.project(b"not a certificate", b"not a key");
    assert!(matches!(reloader.poll(), Poll::Unsettled));
    assert!(matches!(reloader.poll(), Poll::Failed(_)));
    assert!(matches!(reloader.poll(), Poll::Unchanged));
    assert_eq!(reloader.resolver().current().cert[0], good.der);

    let next = pki.leaf();
    volume.rotate(&next);
    assert!(matches!(reloader.poll(), Poll::Reloaded));
    assert_eq!(reloader.resolver().current().cert[0], next.der);
}

#[test]
fn unreadable_files_are_reported_at_the_second_look() {
    let pki = Pki::new();
    let good = pki.leaf();
    let volume = SecretVolume::new("debounce-unreadable", &good);
    let mut reloader = reloader(&volume);

    std::fs::remove_file(volume.path().join("..data/tls.key")).expect("remove tls.key");
    assert!(matches!(reloader.poll(), Poll::Unsettled));
    match reloader.poll() {
        Poll::Failed(error) => assert!(
            error_chain(&error).contains("tls.key"),
            "the error does not name the file: {}",
            error_chain(&error)
        ),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(reloader.resolver().current().cert[0], good.der);
}

fn reload_errors(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find_map(|line| {
            line.strip_prefix("podscaler_webhook_certificate_reloads_total{result=\"error\"} ")
        })
        .unwrap_or("0")
        .to_owned()
}

#[test]
fn files_that_stay_unreadable_are_reported_once_and_a_new_failure_again() {
    let pki = Pki::new();
    let good = pki.leaf();
    let mut volume = SecretVolume::new("debounce-stays-unreadable", &good);
    let mut registry = Registry::default();
    let mut reloader = reloader(&volume).with_metrics(Metrics::register(&mut registry, &[]));
    let data = volume.path().join("..data");

    std::fs::remove_file(data.join("tls.key")).expect("remove tls.key");
    assert!(matches!(reloader.poll(), Poll::Unsettled));
    assert!(matches!(reloader.poll(), Poll::Failed(_)));
    assert!(
        matches!(reloader.poll(), Poll::Unchanged),
        "reported already"
    );
    assert!(
        matches!(reloader.poll(), Poll::Unchanged),
        "reported already"
    );
    assert_eq!(reload_errors(&registry), "1");

    // Another failure is reported at once: the files have been failing for a look already.
    std::fs::remove_file(data.join("tls.crt")).expect("remove tls.crt");
    match reloader.poll() {
        Poll::Failed(error) => assert!(error_chain(&error).contains("tls.crt"), "{error:?}"),
        other => panic!("expected Failed naming tls.crt, got {other:?}"),
    }
    assert_eq!(reload_errors(&registry), "2");

    // The same pair back: nothing to reload, and the next failure is news again.
    volume.rotate(&good);
    assert!(matches!(reloader.poll(), Poll::Unchanged));
    std::fs::remove_file(volume.path().join("..data/tls.key")).expect("remove tls.key");
    assert!(matches!(reloader.poll(), Poll::Unsettled));
    assert!(matches!(reloader.poll(), Poll::Failed(_)));
    assert_eq!(reload_errors(&registry), "3");
    assert_eq!(reloader.resolver().current().cert[0], good.der);
}
