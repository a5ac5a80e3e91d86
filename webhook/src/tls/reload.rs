//! Following certificate rotation: [`Reloader::poll`] looks at the files, swaps a new key pair
//! in, and is the one place that decides what is worth reporting (logged, and counted in the
//! metrics); the task [`Reloader::spawn`] starts only schedules the looks.
//!
//! The kubelet updates a Secret volume by writing a new directory, re-pointing `..data` and
//! removing the old directory, so a look can catch the certificate of one generation with the
//! key of the next, or a file that was just removed. A failure is therefore reported only when
//! the next look fails too, and a failure that stays is reported once, not at every poll.

use std::sync::Arc;
use std::time::Duration;

use podscaler::runtime::error_chain;
use rustls::crypto::CryptoProvider;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{CertDir, CertError, CertResolver, PemFiles};
use crate::metrics::Metrics;

/// What one [`Reloader::poll`] reported.
#[derive(Debug)]
pub enum Poll {
    /// Nothing new: the same files as at the last look, or again the failure reported last.
    Unchanged,
    /// New contents, now served.
    Reloaded,
    /// The files could not be read or served at this look; looked at again before reporting,
    /// since a Secret volume caught mid-swap looks like this for a moment.
    Unsettled,
    /// Files that cannot be read, or new contents that cannot be served, at two looks in a row;
    /// the previous key pair stays.
    Failed(CertError),
}

/// What one look at the files found, before deciding what to report.
enum Look {
    Same,
    Swapped,
    Unreadable(CertError),
    Unservable(PemFiles, CertError),
}

/// Watches the certificate directory and swaps new key pairs into its [`CertResolver`].
#[derive(Debug)]
pub struct Reloader {
    dir: CertDir,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    /// The contents last looked at, served or not: new contents that cannot be served are
    /// reported once, and then compare equal at the next look.
    seen: PemFiles,
    /// `seen` is what is served; false once files that cannot be served were reported, so
    /// looking at them again counts as a read error again (as controller-runtime's
    /// certwatcher counts each failed read).
    serving_seen: bool,
    /// The previous look failed and was not reported: a failure now is.
    unsettled: bool,
    /// The failure reported last (its error chain), until a look succeeds: files that stay
    /// unreadable are reported once.
    reported: Option<String>,
    metrics: Option<Metrics>,
}

impl Reloader {
    /// Loads the certificate at start. Any error is fatal to the caller and names the file.
    pub fn load(dir: CertDir, provider: Arc<CryptoProvider>) -> Result<Self, CertError> {
        let files = dir.read()?;
        let key = dir.parse(&files, &provider)?;
        Ok(Self {
            dir,
            provider,
            resolver: Arc::new(CertResolver::new(key)),
            seen: files,
            serving_seen: true,
            unsettled: false,
            reported: None,
            metrics: None,
        })
    }

    /// Counts reloads and certificate reads in `metrics`, starting with the read that loaded
    /// the certificate (a `Reloader` exists only after one succeeded).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics.observe_certificate_read(true);
        self.metrics = Some(metrics);
        self
    }

    /// The resolver to hand to rustls.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// Looks at the files once (blocking I/O: two small reads) and reports what changed: a
    /// reload is logged and counted, a failure too when it is confirmed and new (see the module
    /// documentation). Every look is one certificate read in the metrics, an error unless it
    /// found files that can be served.
    pub fn poll(&mut self) -> Poll {
        let look = self.look();
        let served = match look {
            Look::Same => self.serving_seen,
            Look::Swapped => true,
            Look::Unreadable(_) | Look::Unservable(..) => false,
        };
        if let Some(metrics) = &self.metrics {
            metrics.observe_certificate_read(served);
        }
        let (error, unservable) = match look {
            Look::Same => {
                self.settled();
                return Poll::Unchanged;
            }
            Look::Swapped => {
                self.settled();
                tracing::info!(dir = %self.dir.path().display(), "serving certificate reloaded");
                self.count_reload(true);
                return Poll::Reloaded;
            }
            Look::Unreadable(error) => (error, None),
            Look::Unservable(files, error) => (error, Some(files)),
        };
        if !self.unsettled {
            self.unsettled = true;
            tracing::debug!(error = %error_chain(&error), "certificate files unsettled; looking again at the next poll");
            return Poll::Unsettled;
        }
        if let Some(files) = unservable {
            // Remembered as seen, so the next look at the same contents is `Same`. Unreadable
            // files leave nothing to remember: the next failure is reported without a second
            // look, unless it is the one reported already.
            self.seen = files;
            self.serving_seen = false;
            self.unsettled = false;
        }
        let message = error_chain(&error);
        if self.reported.as_deref() == Some(message.as_str()) {
            return Poll::Unchanged;
        }
        tracing::error!(
            error = %message,
            "serving certificate not reloaded; still serving the previous one"
        );
        self.count_reload(false);
        self.reported = Some(message);
        Poll::Failed(error)
    }

    /// Reads the files and swaps them in when they are new and can be served; reports nothing.
    fn look(&mut self) -> Look {
        let files = match self.dir.read() {
            Ok(files) => files,
            Err(error) => return Look::Unreadable(error),
        };
        if files == self.seen {
            return Look::Same;
        }
        match self.dir.parse(&files, &self.provider) {
            Ok(key) => {
                self.resolver.replace(key);
                self.seen = files;
                self.serving_seen = true;
                Look::Swapped
            }
            Err(error) => Look::Unservable(files, error),
        }
    }

    /// A look succeeded: the next failure is looked at twice and reported, even if it is the
    /// same as the last one reported.
    fn settled(&mut self) {
        self.unsettled = false;
        self.reported = None;
    }

    fn count_reload(&self, success: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.observe_certificate_reload(success);
        }
    }

    /// Polls every `interval` until `shutdown`, off the async workers (the reads block).
    pub fn spawn(mut self, interval: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let polled = tokio::task::spawn_blocking(move || {
                    self.poll();
                    self
                });
                self = match polled.await {
                    Ok(reloader) => reloader,
                    Err(error) => {
                        tracing::error!(%error, "certificate reload task failed; reloading stops");
                        return;
                    }
                };
            }
        })
    }
}
