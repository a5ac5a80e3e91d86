//! Child processes of the harness: output to a log file, killed with the harness.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A running child process whose stdout and stderr go to `<log_dir>/<name>.log`.
///
/// It is killed when dropped, and — through `PR_SET_PDEATHSIG` — when the thread that started
/// it dies, so a killed or panicking test run leaves no orphan. Start long-lived processes
/// from a thread that outlives them (the test's main thread).
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    /// For a process started by [`Process::spawn_kept`]: the thread its death signal is tied
    /// to, told to end (by dropping this) only after the process was killed.
    _keeper: Option<Keeper>,
}

/// Keeps a thread alive until dropped: the thread waits for this sender to go away.
struct Keeper {
    _release: std::sync::mpsc::Sender<()>,
}

impl Process {
    /// Starts `program` with `args` (and extra `env`).
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let stdout = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let stderr = stdout
            .try_clone()
            .context("duplicating the log file handle")?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            _keeper: None,
        })
    }

    /// As [`Process::spawn`], from a thread of its own that lives as long as the returned
    /// `Process`: for a process started from a scenario's thread (restarting a component),
    /// which `PR_SET_PDEATHSIG` would otherwise kill as soon as that thread ends.
    pub fn spawn_kept(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let (spawned_tx, spawned) = std::sync::mpsc::channel();
        let (keeper, released) = std::sync::mpsc::channel::<()>();
        let (name, program, args, log_dir) = (
            name.to_owned(),
            program.to_owned(),
            args.to_vec(),
            log_dir.to_owned(),
        );
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        std::thread::Builder::new()
            .name(format!("keeper-{name}"))
            .spawn(move || {
                let env: Vec<(&str, String)> = env
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.clone()))
                    .collect();
                let _ = spawned_tx.send(Self::spawn(&name, &program, &args, &env, &log_dir));
                // Returns (and the thread ends) once the `Keeper` is dropped.
                let _ = released.recv();
            })
            .context("starting a keeper thread")?;
        let mut process = spawned
            .recv()
            .context("the keeper thread ended before starting the process")??;
        process._keeper = Some(Keeper { _release: keeper });
        Ok(process)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Ok(())` while running; an error with the exit status and the log's tail once it exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => anyhow::bail!(
                "{} exited ({status}); last lines of its log:\n{}",
                self.name,
                self.log_tail(40)
            ),
            Err(error) => Err(error).with_context(|| format!("checking on {}", self.name)),
        }
    }

    /// Sends `signal` to the process group.
    pub fn signal(&self, signal: libc::c_int) {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: plain syscall on our own child's process group.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it is still running
    /// (it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the process")? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("waiting for the process")? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }

    /// SIGKILL, then reap. Returns the exit status.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGKILL);
        self.child
            .wait()
            .with_context(|| format!("reaping {}", self.name))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Waits up to `within` for the log to contain `marker` (the process saying it is done
    /// with a step), failing at once when the process exits; returns the whole log.
    pub async fn wait_for_log(
        &mut self,
        what: &str,
        marker: &str,
        within: Duration,
    ) -> anyhow::Result<String> {
        crate::wait::until(what, within, || {
            let running = self.check_running();
            let log = self.log.clone();
            async move {
                running?;
                let output = std::fs::read_to_string(&log)
                    .with_context(|| format!("reading {}", log.display()))?;
                anyhow::ensure!(
                    output.contains(marker),
                    "not yet; so far, ending:\n{}",
                    last_lines(&output, 20)
                );
                Ok(output)
            }
        })
        .await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.kill();
        }
    }
}

/// The last `lines` lines of a file (reads at most the last 256 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 256 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("({} is not readable)", path.display());
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(WINDOW)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    last_lines(&String::from_utf8_lossy(&bytes), lines)
}

/// The last `lines` lines of `text`.
pub fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills `processes` last first (each component outlives what talks to it), leaving the list
/// empty.
pub fn kill_in_reverse(processes: &mut Vec<Process>) {
    while let Some(mut process) = processes.pop() {
        let _ = process.kill();
    }
}
