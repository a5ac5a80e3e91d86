//! The process plumbing both binaries share, so they cannot drift apart: duration flags, the
//! stop signals, accepting connections under pressure, errors written as one line, and the exit
//! code. (The
//! admin servers are [`crate::admin`], the log set-up [`crate::telemetry`]; both are shared too.)

use std::process::ExitCode;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Parses a Go-style duration flag (`15s`, `1m30s`, `500ms`). Zero and negative durations are
/// refused: no flag of either binary means anything sensible with them (a zero resync, poll
/// interval or timeout would spin or give up at once).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let parsed: k8s_openapi::jiff::SignedDuration = value
        .parse()
        .map_err(|_| format!("{value:?} is not a duration: write it like 15s, 1m30s or 500ms"))?;
    match Duration::try_from(parsed) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("{value:?} must be longer than zero")),
    }
}

/// Waits for SIGTERM (the kubelet stopping the pod) or SIGINT (Ctrl-C); returns its name.
/// Fails only when the handlers cannot be installed.
pub async fn stop_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

/// `error` and its sources on one line, `outer: inner: innermost`, for a log field or a message
/// carried on (a `Display` of the outer error alone would drop the cause that says what to fix).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The exit code of a binary whose work ended with `outcome`. A failure is logged (for the log
/// collector; a no-op when logging could not be set up) and printed to stderr with its causes,
/// for whoever ran the command.
pub fn exit_code(binary: &str, outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{binary} cannot run");
            eprintln!("{binary}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// How long to pause after a failed `accept`, as Go's `net/http` server does: 5 ms, doubling
/// to 1 s, back to the start after a success. A failed accept is nearly always the process'
/// file-descriptor limit; retrying at once would spin a core while nothing can improve.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    last: Option<Duration>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// The pause after one more failure in a row.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self
            .last
            .map_or(Self::FIRST, |last| (last * 2).min(Self::MAX));
        self.last = Some(delay);
        delay
    }

    /// An accept succeeded: the next failure starts over.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// The next connection on `listener`, or `None` once `shutdown` is cancelled. Failed accepts
/// are logged (naming `server`) and retried after [`AcceptBackoff`]'s pause.
pub async fn accept(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
    shutdown: &CancellationToken,
    server: &str,
) -> Option<TcpStream> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return None,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff.reset();
                return Some(stream);
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "{server}: accepting a connection failed");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_parsing_table() {
        let cases: [(&str, Option<Duration>); 9] = [
            ("15s", Some(Duration::from_secs(15))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("500ms", Some(Duration::from_millis(500))),
            ("5m", Some(Duration::from_secs(300))),
            ("0s", None),
            ("0", None),
            ("15", None),
            ("-1s", None),
            ("soon", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok(), want, "{input}");
        }
        assert!(
            parse_duration("0s")
                .expect_err("zero")
                .contains("longer than zero")
        );
    }

    #[test]
    fn error_chain_names_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("loading the certificate")]
        struct Outer(#[source] std::io::Error);
        let chained = Outer(std::io::Error::other("tls.key: no such file"));
        assert_eq!(
            error_chain(&chained),
            "loading the certificate: tls.key: no such file"
        );
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let delays: Vec<u64> = (0..10)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(5));
    }

    #[tokio::test]
    async fn accept_returns_connections_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let mut backoff = AcceptBackoff::default();
        let client = tokio::spawn(TcpStream::connect(address));
        let accepted = accept(&listener, &mut backoff, &shutdown, "test").await;
        assert!(accepted.is_some());
        drop(client.await);
        shutdown.cancel();
        assert!(
            accept(&listener, &mut backoff, &shutdown, "test")
                .await
                .is_none()
        );
    }
}
