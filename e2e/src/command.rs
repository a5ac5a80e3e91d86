//! What the crate's commands, `podscaler-up` and `podscaler-bench`, share around their work:
//! logging to stderr, a runtime on the main thread, and an error turned into the exit code.

use std::future::Future;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Instant;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// What each log line starts with.
#[derive(Clone, Copy, Debug)]
pub enum LogStyle {
    /// A timestamp and the module path: a record to read later (the benchmark's).
    Record,
    /// Seconds since the start and no module path: progress for a person watching, who looks
    /// for how long each step took.
    Progress,
}

/// Logs to stderr, filtered by `RUST_LOG` or else `default_filter`, with colour codes only for
/// a terminal (not in a file or a pipe, where CI keeps the output).
pub fn init_logging(default_filter: &str, style: LogStyle) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match style {
        LogStyle::Record => builder.init(),
        LogStyle::Progress => builder
            .with_timer(SinceStart(Instant::now()))
            .with_target(false)
            .init(),
    }
}

/// Seconds since the start, to a tenth.
struct SinceStart(Instant);

impl FormatTime for SinceStart {
    fn format_time(&self, out: &mut Writer<'_>) -> std::fmt::Result {
        write!(out, "{:6.1}s", self.0.elapsed().as_secs_f32())
    }
}

/// Runs `work` to its end on a current-thread runtime on the calling (main) thread, and turns
/// its outcome into the exit code.
///
/// On the main thread because the child processes' parent-death signal is tied to the thread
/// that started them, which must live as long as they do.
pub fn run_on_main_thread(work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// Prints `error` with its causes and returns the failure exit code.
pub fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}
