//! Certificate rotation over real TLS while admission requests keep flowing: the Secret volume
//! is swapped as the kubelet swaps it (`..data` renamed over), new full handshakes switch to
//! the new certificate, and no request fails, including on connections opened before the swap
//! and kept alive across it, and on clients that resume sessions (after the swap their attempts
//! fall back to full handshakes). A botched rotation (files
//! that cannot be served) keeps the previous certificate, is counted as a reload error, and a
//! later good rotation is still picked up.
//!
//! Under load, "a new connection presents B" is checked on full handshakes only: a resumed
//! session presents no certificate and the client reports the one of the session it resumes.
//! The server forgets its sessions when the certificate is replaced, but handshakes still in
//! flight at the swap may store a few more A sessions, so which certificate a resumed connection
//! reports during the swap is not fixed. `a_session_from_before_a_rotation_is_not_resumed`
//! checks, without concurrent handshakes, that sessions do not outlive the certificate.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::StatusCode;
use podscaler_webhook::Options;
use rustls::HandshakeKind;
use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use support::*;
use tokio_util::sync::CancellationToken;

const RELOAD_ERRORS: &str = "podscaler_webhook_certificate_reloads_total{result=\"error\"}";
const RELOAD_SUCCESSES: &str = "podscaler_webhook_certificate_reloads_total{result=\"success\"}";

/// Requests every client must complete before the swap, and again after the new certificate
/// is served, before the clients are stopped.
const PER_PHASE: usize = 10;

/// Which certificate a connection's handshake presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presented {
    A,
    B,
    Other,
}

/// How a client task uses connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// One connection for every request, kept alive across the rotation.
    KeptAlive,
    /// A new connection (and TLS handshake) per request.
    Fresh,
}

/// What one client task does.
#[derive(Clone, Copy, Debug)]
struct Spec {
    style: Style,
    /// Offer only `h2` in ALPN (else only `http/1.1`).
    http2: bool,
    /// Let the client resume TLS sessions (else every handshake is a full one).
    resuming: bool,
}

const CLIENTS: [Spec; 6] = [
    Spec {
        style: Style::KeptAlive,
        http2: false,
        resuming: false,
    },
    Spec {
        style: Style::KeptAlive,
        http2: false,
        resuming: false,
    },
    Spec {
        style: Style::KeptAlive,
        http2: true,
        resuming: false,
    },
    Spec {
        style: Style::Fresh,
        http2: false,
        resuming: false,
    },
    Spec {
        style: Style::Fresh,
        http2: true,
        resuming: false,
    },
    Spec {
        style: Style::Fresh,
        http2: false,
        resuming: true,
    },
];

/// One request attempt by a client task.
#[derive(Debug)]
struct Outcome {
    task: usize,
    /// Connection id (unique in the test); `None` when connecting failed.
    connection: Option<u64>,
    http2: bool,
    /// Whether the connection's handshake resumed an earlier TLS session.
    resumed: bool,
    presented: Option<Presented>,
    /// When the connection's TCP connect and handshake started.
    connected_at: Instant,
    /// When the answer (or the failure) arrived.
    finished_at: Instant,
    uid: String,
    result: Result<(), String>,
}

struct Certs {
    a: CertificateDer<'static>,
    b: CertificateDer<'static>,
}

impl Certs {
    fn classify(&self, der: &CertificateDer<'_>) -> Presented {
        if *der == self.a {
            Presented::A
        } else if *der == self.b {
            Presented::B
        } else {
            Presented::Other
        }
    }
}

/// The client configuration of a task: ALPN and resumption as `spec` says.
fn client_config(pki: &Pki, http2: bool, resuming: bool) -> Arc<rustls::ClientConfig> {
    let alpn: &[u8] = if http2 { b"h2" } else { b"http/1.1" };
    let config = pki.client_config(&[alpn]);
    if resuming {
        return config;
    }
    let mut config = Arc::unwrap_or_clone(config);
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// Like `Client::connect`, also telling whether the TLS handshake resumed a session.
async fn open(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(Client, CertificateDer<'static>, bool)> {
    let stream = connect(addr, config).await?;
    let der = peer_certificate(&stream);
    let resumed = stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok((Client::over(stream).await?, der, resumed))
}

/// Sends a valid CREATE review to the validating webhook and checks the answer: HTTP 200, an
/// AdmissionReview echoing `uid`, allowed.
async fn exchange(client: &mut Client, uid: &str) -> Result<(), String> {
    let reply = tokio::time::timeout(PATIENCE, client.post_json(VALIDATE, &sample_review(uid)))
        .await
        .map_err(|_| format!("no answer within {PATIENCE:?}"))?
        .map_err(|error| format!("request failed: {error}"))?;
    if reply.status != StatusCode::OK {
        return Err(format!(
            "HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ));
    }
    let body: Value = serde_json::from_slice(&reply.body)
        .map_err(|error| format!("body is not JSON ({error}): {:?}", reply.body))?;
    if body["apiVersion"] == "admission.k8s.io/v1"
        && body["kind"] == "AdmissionReview"
        && body["response"]["uid"] == uid
        && body["response"]["allowed"] == true
    {
        Ok(())
    } else {
        Err(format!("unexpected answer for {uid}: {body}"))
    }
}

/// Keeps sending reviews until `stop`, logging every attempt. A failed request drops its
/// connection, so a kept-alive client only ever reconnects after a logged failure.
async fn client_task(
    task: usize,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    certs: Arc<Certs>,
    log: Arc<Mutex<Vec<Outcome>>>,
    stop: CancellationToken,
) {
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(0);
    let mut connection: Option<(Client, u64, Presented, bool, Instant)> = None;
    let mut sent = 0u64;
    while !stop.is_cancelled() {
        sent += 1;
        let uid = format!("rotation-{task}-{sent}");
        if connection.is_none() {
            let started = Instant::now();
            let error = match tokio::time::timeout(PATIENCE, open(addr, config.clone())).await {
                Ok(Ok((client, der, resumed))) => {
                    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
                    connection = Some((client, id, certs.classify(&der), resumed, started));
                    None
                }
                Ok(Err(error)) => Some(format!("connect: {error}")),
                Err(_) => Some(format!("connect: no handshake within {PATIENCE:?}")),
            };
            if let Some(error) = error {
                log.lock().expect("log").push(Outcome {
                    task,
                    connection: None,
                    http2: false,
                    resumed: false,
                    presented: None,
                    connected_at: started,
                    finished_at: Instant::now(),
                    uid,
                    result: Err(error),
                });
                continue;
            }
        }
        let (client, id, presented, resumed, connected_at) =
            connection.as_mut().expect("connected");
        let result = exchange(client, &uid).await;
        let failed = result.is_err();
        log.lock().expect("log").push(Outcome {
            task,
            connection: Some(*id),
            http2: client.is_http2(),
            resumed: *resumed,
            presented: Some(*presented),
            connected_at: *connected_at,
            finished_at: Instant::now(),
            uid,
            result,
        });
        if failed || CLIENTS[task].style == Style::Fresh {
            connection = None;
        }
    }
}

/// Whether every client completed `PER_PHASE` requests after `since`. Fails at the first
/// failed request, rather than waiting for the deadline.
fn all_progressed_since(log: &Mutex<Vec<Outcome>>, since: Instant) -> bool {
    let log = log.lock().expect("log");
    if let Some(failed) = log.iter().find(|o| o.result.is_err()) {
        panic!("a request failed: {failed:?}");
    }
    (0..CLIENTS.len()).all(|task| {
        log.iter()
            .filter(|o| o.task == task && o.finished_at > since)
            .count()
            >= PER_PHASE
    })
}

/// Waits until a new connection (full handshake) presents `want`; every connection made
/// meanwhile must succeed and present either `want` or `previous`.
async fn wait_until_served(
    server: &Server,
    config: &Arc<rustls::ClientConfig>,
    previous: &Leaf,
    want: &Leaf,
    what: &str,
) {
    eventually(
        &format!("a new TLS connection to present {what}"),
        || async {
            let (_, der, resumed) = open(server.addr, config.clone())
                .await
                .unwrap_or_else(|error| panic!("a handshake failed during the rotation: {error}"));
            assert!(!resumed, "probes make full handshakes");
            assert!(
                der == previous.der || der == want.der,
                "presented neither the previous certificate nor {what}"
            );
            der == want.der
        },
    )
    .await;
}

/// Connects with a full handshake, checks the certificate presented, and sends one review on
/// the connection.
async fn check_serves(
    server: &Server,
    config: &Arc<rustls::ClientConfig>,
    want: &Leaf,
    what: &str,
) {
    let (mut client, der, resumed) = open(server.addr, config.clone())
        .await
        .unwrap_or_else(|error| panic!("{what}: a new connection fails: {error}"));
    assert!(!resumed, "{what}: the check needs a full handshake");
    assert!(
        der == want.der,
        "{what}: a new connection presents another certificate"
    );
    exchange(&mut client, &format!("check-{what}"))
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_breaks_nothing() {
    let pki = Pki::new();
    let a = pki.leaf();
    let b = pki.leaf();
    assert!(a.der != b.der && a.key_pem != b.key_pem, "A and B differ");
    let mut volume = SecretVolume::new("rotation", &a);
    let (store, _writer) = synced_store(&[]);
    // HTTP/2 on, so kept-alive HTTP/2 connections are covered too. Default limits: the
    // kept-alive connections must not be closed as idle during the test. The support module
    // polls the certificate files every 25 ms.
    let config = Options {
        http2: true,
        ..Options::default()
    };
    let server = Server::start(volume.path(), store, config).await;
    let h1 = client_config(&pki, false, false);
    let h2 = client_config(&pki, true, false);
    let certs = Arc::new(Certs {
        a: a.der.clone(),
        b: b.der.clone(),
    });
    check_serves(&server, &h1, &a, "A before the rotation").await;

    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let tasks: Vec<_> = CLIENTS
        .iter()
        .enumerate()
        .map(|(task, spec)| {
            tokio::spawn(client_task(
                task,
                server.addr,
                client_config(&pki, spec.http2, spec.resuming),
                certs.clone(),
                log.clone(),
                stop.clone(),
            ))
        })
        .collect();
    eventually(
        "every client to complete requests before the swap",
        || async { all_progressed_since(&log, started) },
    )
    .await;

    // The kubelet's swap: a new timestamped directory, `..data` renamed over the old link.
    let swap_started = Instant::now();
    volume.rotate(&b);
    wait_until_served(&server, &h1, &a, &b, "certificate B").await;
    let b_seen = Instant::now();
    eventually(
        "every client to complete requests after the swap",
        || async { all_progressed_since(&log, b_seen) },
    )
    .await;

    stop.cancel();
    for task in tasks {
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("client task stops")
            .expect("client task does not panic");
    }
    let log = std::mem::take(&mut *log.lock().expect("log"));

    // Zero failures, over every kind of connection.
    let failures: Vec<String> = log
        .iter()
        .filter_map(|o| {
            o.result.as_ref().err().map(|error| {
                format!(
                    "task {} ({:?}) {}: {error} ({:?} after the swap started)",
                    o.task,
                    CLIENTS[o.task],
                    o.uid,
                    o.finished_at.checked_duration_since(swap_started)
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rotation, e.g.:\n{}",
        failures.len(),
        log.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    assert!(
        log.iter()
            .all(|o| matches!(o.presented, Some(Presented::A | Presented::B))),
        "every connection presented A or B"
    );
    // Once B has been served, a full handshake never goes back to A.
    let stale: Vec<&str> = log
        .iter()
        .filter(|o| o.connected_at > b_seen && !o.resumed && o.presented != Some(Presented::B))
        .map(|o| o.uid.as_str())
        .collect();
    assert!(stale.is_empty(), "A presented after B was: {stale:?}");

    for (task, spec) in CLIENTS.iter().enumerate() {
        let mine: Vec<&Outcome> = log.iter().filter(|o| o.task == task).collect();
        let before = mine.iter().filter(|o| o.finished_at < swap_started).count();
        let after = mine.iter().filter(|o| o.finished_at > b_seen).count();
        assert!(
            before >= PER_PHASE && after >= PER_PHASE,
            "task {task} ({spec:?}): {before} requests before the swap, {after} after"
        );
        assert!(
            mine.iter().all(|o| o.http2 == spec.http2),
            "task {task} ({spec:?}): HTTP/2 negotiated exactly when offered"
        );
        if spec.resuming {
            assert!(
                mine.iter().any(|o| o.resumed),
                "task {task} ({spec:?}): sessions were resumed, so resumption is covered"
            );
        } else {
            assert!(
                mine.iter().all(|o| !o.resumed),
                "task {task} ({spec:?}): full handshakes only"
            );
        }
        match spec.style {
            Style::KeptAlive => {
                // One connection, opened before the swap with certificate A, still answering
                // after B is served to new connections.
                let first = mine[0];
                assert!(
                    mine.iter().all(|o| o.connection == first.connection),
                    "task {task} ({spec:?}): the kept-alive connection was replaced"
                );
                assert!(first.connected_at < swap_started, "task {task} ({spec:?})");
                assert_eq!(
                    first.presented,
                    Some(Presented::A),
                    "task {task} ({spec:?})"
                );
                assert!(
                    mine.last().expect("requests").finished_at > b_seen,
                    "task {task} ({spec:?}): the pre-swap connection answered after the swap"
                );
            }
            Style::Fresh => {
                let connections: std::collections::BTreeSet<_> =
                    mine.iter().filter_map(|o| o.connection).collect();
                assert_eq!(
                    connections.len(),
                    mine.len(),
                    "task {task} ({spec:?}): one request per connection"
                );
                assert!(
                    mine.iter()
                        .any(|o| o.presented == Some(Presented::A) && o.finished_at < swap_started),
                    "task {task} ({spec:?}): fresh connections presented A before the swap"
                );
                if !spec.resuming {
                    assert!(
                        mine.iter().any(|o| o.presented == Some(Presented::B)),
                        "task {task} ({spec:?}): fresh connections presented B after the swap"
                    );
                }
            }
        }
    }
    // Every request was answered and counted as a 200: the clients' and the one check_serves
    // sent (the probes sent none).
    assert_eq!(server.requests(VALIDATE, 200), (log.len() + 1) as f64);
    assert_eq!(server.metric(RELOAD_SUCCESSES), 1.0, "one reload: A to B");

    // Botched rotations: Secrets whose certificate cannot be served. Each is reported as a
    // reload error; new connections keep getting B and requests keep succeeding. Consecutive
    // cases fail for different reasons (no certificate, unparsable DER, broken PEM, key
    // mismatch): the reloader reports an error once, not again while it repeats.
    let c = pki.leaf();
    let garbage_der = "-----BEGIN CERTIFICATE-----\n\
                       bm90IGEgREVSIGNlcnRpZmljYXRlIGF0IGFsbA==\n\
                       -----END CERTIFICATE-----\n";
    let truncated = &b.cert_pem[..b.cert_pem.len() / 2];
    let botched: [(&str, &[u8]); 4] = [
        ("not PEM at all", b"this is not a certificate\n"),
        ("a PEM block holding no certificate", garbage_der.as_bytes()),
        ("a truncated PEM block", truncated.as_bytes()),
        ("a certificate for another key", c.cert_pem.as_bytes()),
    ];
    for (what, cert) in botched {
        let errors = server.metric(RELOAD_ERRORS);
        volume.project(cert, b.key_pem.as_bytes());
        eventually(&format!("a reload error for {what}"), || async {
            server.metric(RELOAD_ERRORS) > errors
        })
        .await;
        check_serves(&server, &h1, &b, what).await;
        check_serves(&server, &h2, &b, what).await;
        assert_eq!(
            server.metric(RELOAD_SUCCESSES),
            1.0,
            "{what}: counted as a successful reload"
        );
    }

    // The reloader keeps working after errors: a good rotation is still picked up.
    volume.rotate(&c);
    wait_until_served(&server, &h1, &b, &c, "certificate C").await;
    check_serves(&server, &h2, &c, "C after the botched rotations").await;
    assert_eq!(server.metric(RELOAD_SUCCESSES), 2.0, "A to B, then B to C");
    server.stop().await;
}

/// A client that resumed sessions with certificate A makes a full handshake, and is shown B,
/// once B has replaced A: the server's session cache goes with the certificate.
#[tokio::test]
async fn a_session_from_before_a_rotation_is_not_resumed() {
    let pki = Pki::new();
    let a = pki.leaf();
    let b = pki.leaf();
    let mut volume = SecretVolume::new("resumption", &a);
    let (store, _writer) = synced_store(&[]);
    let server = Server::start(volume.path(), store, Options::default()).await;
    // One configuration, so one client-side session store, for every connection.
    let resuming = client_config(&pki, false, true);

    // Each connection carries a review: the client takes in the session tickets the server
    // sends after the handshake when it reads the answer.
    let (mut client, first, resumed) = open(server.addr, resuming.clone())
        .await
        .expect("first connection");
    assert!(
        !resumed && first == a.der,
        "the first handshake is a full one, with A"
    );
    exchange(&mut client, "first").await.expect("a review");
    let (mut client, again, resumed) = open(server.addr, resuming.clone())
        .await
        .expect("second connection");
    assert!(
        resumed && again == a.der,
        "the second connection resumes the A session"
    );
    exchange(&mut client, "resumed-before")
        .await
        .expect("a review over a resumed session");

    volume.rotate(&b);
    // Counted once the reloader has swapped the certificate and forgotten the sessions.
    eventually("the reload to B", || async {
        server.metric(RELOAD_SUCCESSES) == 1.0
    })
    .await;
    let (mut client, after, resumed) = open(server.addr, resuming.clone())
        .await
        .expect("connection after the rotation");
    assert!(!resumed, "the A session was resumed after the rotation");
    assert!(
        after == b.der,
        "the connection after the rotation is shown B"
    );
    exchange(&mut client, "after-rotation")
        .await
        .expect("a review after the rotation");

    // Sessions made with B resume as before.
    let (_, again, resumed) = open(server.addr, resuming)
        .await
        .expect("connection with B");
    assert!(resumed && again == b.der, "the B session is resumed");
    server.stop().await;
}
