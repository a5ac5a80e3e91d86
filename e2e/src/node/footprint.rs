//! Everything the real-node tier leaves on the host while it runs — its directory, the mounts
//! below it (the kubelet's root, pod volumes, container root filesystems, sandbox network
//! namespaces), its cgroups, its network namespace and every process in any of them — found and
//! removed by name, and checked to be gone.
//!
//! All names carry the owning test process's PID, so a later run can tell a killed run's
//! leftovers (owner dead) from a concurrent run's (owner alive) and sweep only the former.

use std::fmt;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::netns;

/// The prefix of every name the tier gives (directory, network namespace, cgroup).
pub const PREFIX: &str = "podscaler-node-";

/// Where cgroup v1 hierarchies (and the v2 "unified" one) are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The names of one run of the tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// `podscaler-node-<pid>`: the network namespace and the cgroup.
    pub name: String,
    /// The run's directory, `<tmp>/podscaler-node-<pid>`.
    pub dir: PathBuf,
    owner: u32,
}

/// What is still there.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub processes: Vec<String>,
    pub mounts: Vec<PathBuf>,
    pub cgroups: Vec<PathBuf>,
    pub netns: bool,
    pub dir: bool,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "processes {:?}, mounts {:?}, cgroups {:?}, network namespace {}, directory {}",
            self.processes,
            self.mounts,
            self.cgroups,
            if self.netns { "present" } else { "gone" },
            if self.dir { "present" } else { "gone" },
        )
    }
}

impl Footprint {
    /// The names of this process's run.
    pub fn of_this_process() -> Self {
        Self::of(std::process::id())
    }

    /// The names of the run owned by process `owner`.
    pub fn of(owner: u32) -> Self {
        let name = format!("{PREFIX}{owner}");
        Self {
            dir: std::env::temp_dir().join(&name),
            name,
            owner,
        }
    }

    /// Runs whose owner has exited but whose names are still there: a run killed before its
    /// teardown.
    pub fn stale() -> Vec<Self> {
        let mut names = netns::named_with_prefix(PREFIX);
        names.extend(names_in(&std::env::temp_dir()));
        for hierarchy in cgroup_hierarchies() {
            names.extend(names_in(&hierarchy));
        }
        let mut owners: Vec<u32> = names
            .iter()
            .filter_map(|name| name.strip_prefix(PREFIX)?.parse().ok())
            .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners.into_iter().map(Self::of).collect()
    }

    /// The cgroup's path in every hierarchy (the kubelet's `cgroupRoot` is `/<name>`).
    pub fn cgroups(&self) -> Vec<PathBuf> {
        cgroup_hierarchies()
            .into_iter()
            .map(|hierarchy| hierarchy.join(&self.name))
            .collect()
    }

    /// Creates the cgroup in every v1 hierarchy: the kubelet refuses a `cgroupRoot` missing from
    /// any of them.
    pub fn create_cgroups(&self) -> anyhow::Result<()> {
        for path in self.cgroups() {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating cgroup {}", path.display()))?;
        }
        Ok(())
    }

    /// Kills every process of the run (but this one), unmounts everything below the directory,
    /// removes the cgroups, the network namespace and the directory. Best effort for each part,
    /// then reports what is still there.
    pub fn remove(&self) -> Leftovers {
        for _ in 0..3 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            for (pid, _) in &pids {
                // SAFETY: kill(2) with a PID read from /proc; at worst it names an exited one.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            wait_until_gone(&pids, Duration::from_secs(10));
        }
        for mount in self.mounts() {
            if let Ok(path) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) {
                // SAFETY: a NUL-terminated path; MNT_DETACH cannot block on a busy mount.
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            }
        }
        for cgroup in self.cgroups() {
            remove_cgroup_tree(&cgroup);
        }
        if Path::new(netns::NETNS_DIR).join(&self.name).exists() {
            let _ = netns::delete(&self.name);
        }
        if self.mounts().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        self.leftovers()
    }

    /// What of the run is still on the host.
    pub fn leftovers(&self) -> Leftovers {
        Leftovers {
            processes: self
                .processes()
                .into_iter()
                .map(|(pid, command)| format!("{pid} {command}"))
                .collect(),
            mounts: self.mounts(),
            cgroups: self
                .cgroups()
                .into_iter()
                .filter(|path| path.exists())
                .collect(),
            netns: Path::new(netns::NETNS_DIR).join(&self.name).exists(),
            dir: self.dir.exists(),
        }
    }

    /// Processes (PID, command line) of the run other than the owner: in its cgroups (the pods'
    /// containers), in its network namespace (components, shims), or naming its directory.
    fn processes(&self) -> Vec<(i32, String)> {
        let netns_inode = std::fs::metadata(Path::new(netns::NETNS_DIR).join(&self.name))
            .map(|meta| meta.ino())
            .ok();
        let in_cgroups: Vec<i32> = self
            .cgroups()
            .iter()
            .flat_map(|cgroup| pids_in_cgroup_tree(cgroup))
            .collect();
        // With the separator: podscaler-node-7 must not match podscaler-node-70's paths.
        let dir = format!("{}/", self.dir.display());
        let mut found = Vec::new();
        for pid in all_pids() {
            if pid as u32 == self.owner {
                continue;
            }
            let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .unwrap_or_default();
            let in_netns = netns_inode.is_some_and(|inode| {
                std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|meta| meta.ino() == inode)
            });
            if in_netns || in_cgroups.contains(&pid) || command.contains(&dir) {
                found.push((pid, command.trim().to_owned()));
            }
        }
        found
    }

    /// Mount points at or below the directory, deepest first.
    fn mounts(&self) -> Vec<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        mounts_below(&mountinfo, &self.dir)
    }
}

/// The mount points in `mountinfo` (`/proc/self/mountinfo`) at or below `dir`, deepest first
/// (the order to unmount them in).
pub fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|path| path.starts_with(dir))
        .collect();
    mounts.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    mounts.dedup();
    mounts
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
        });
        match (bytes[index], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut hierarchies: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        // cpu,cpuacct-style names are often symlinks to the real hierarchy: skip them.
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect();
    hierarchies.sort();
    hierarchies
}

fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn pids_in_cgroup_tree(cgroup: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![cgroup.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(
                procs
                    .lines()
                    .filter_map(|line| line.trim().parse::<i32>().ok()),
            );
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(
                entries
                    .filter_map(|entry| entry.ok())
                    .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                    .map(|entry| entry.path()),
            );
        }
    }
    pids
}

/// Removes a cgroup and its children, deepest first (a cgroup directory is removed with
/// rmdir, and only once it has no children and no tasks).
fn remove_cgroup_tree(cgroup: &Path) {
    let Ok(entries) = std::fs::read_dir(cgroup) else {
        return;
    };
    for entry in entries.filter_map(|entry| entry.ok()) {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(cgroup);
}

fn wait_until_gone(pids: &[(i32, String)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline
        && pids
            .iter()
            .any(|(pid, _)| Path::new(&format!("/proc/{pid}")).exists())
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_below_the_directory_come_deepest_first_and_unescaped() {
        let mountinfo = "\
22 1 0:21 / /tmp rw - tmpfs tmpfs rw
30 22 0:40 / /tmp/podscaler-node-7/kubelet/root rw shared:1 - tmpfs tmpfs rw
31 30 0:41 / /tmp/podscaler-node-7/kubelet/root/pods/u/volumes/kube-api-access rw - tmpfs tmpfs rw
32 22 0:42 / /tmp/podscaler-node-7/containerd/state/with\\040space rw - overlay overlay rw
33 22 0:43 / /tmp/podscaler-node-70/other rw - tmpfs tmpfs rw
";
        assert_eq!(
            mounts_below(mountinfo, Path::new("/tmp/podscaler-node-7")),
            [
                "/tmp/podscaler-node-7/kubelet/root/pods/u/volumes/kube-api-access",
                "/tmp/podscaler-node-7/containerd/state/with space",
                "/tmp/podscaler-node-7/kubelet/root",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_run_is_named_after_its_owner() {
        let footprint = Footprint::of(42);
        assert_eq!(footprint.name, "podscaler-node-42");
        assert!(footprint.dir.ends_with("podscaler-node-42"));
    }

    #[test]
    fn nothing_left_is_empty_and_anything_left_is_not() {
        assert!(Leftovers::default().is_empty());
        let left = Leftovers {
            netns: true,
            ..Leftovers::default()
        };
        assert!(!left.is_empty());
        assert!(left.to_string().contains("network namespace present"));
    }
}
