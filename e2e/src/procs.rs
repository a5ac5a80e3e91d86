//! Processes as `/proc` shows them: to check that a command stopped everything it started,
//! including what its children started. Read with the `procfs` crate, as the binaries' own
//! process metrics are.

use std::collections::HashMap;

use anyhow::Context;
use procfs::process::Process;

/// A process, told apart from a later one that reuses its pid by its start time.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessId {
    pub pid: u32,
    /// The file name of its executable (`kube-apiserver`; `comm` would cut it to 15 bytes).
    pub program: String,
    started: u64,
}

impl ProcessId {
    /// Whether this very process still runs (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        i32::try_from(self.pid)
            .ok()
            .and_then(|pid| Process::new(pid).ok()?.stat().ok())
            .is_some_and(|stat| stat.starttime == self.started && stat.state != 'Z')
    }
}

/// Every live process below `root` (children, their children …), not `root` itself.
pub fn descendants(root: u32) -> anyhow::Result<Vec<ProcessId>> {
    let mut live = HashMap::new();
    for process in procfs::process::all_processes().context("listing /proc")? {
        // A process may exit while it is looked at: it is then no descendant to worry about.
        let Some((process, stat)) = process
            .ok()
            .and_then(|process| process.stat().ok().map(|stat| (process, stat)))
            .filter(|(_, stat)| stat.state != 'Z')
        else {
            continue;
        };
        let (Ok(pid), Ok(parent)) = (u32::try_from(stat.pid), u32::try_from(stat.ppid)) else {
            continue;
        };
        let program = process
            .exe()
            .ok()
            .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        live.insert(
            pid,
            (
                parent,
                ProcessId {
                    pid,
                    program,
                    started: stat.starttime,
                },
            ),
        );
    }
    let parents: HashMap<u32, u32> = live
        .iter()
        .map(|(pid, (parent, _))| (*pid, *parent))
        .collect();
    let mut found: Vec<ProcessId> = below(&parents, root)
        .into_iter()
        .filter_map(|pid| live.remove(&pid).map(|(_, id)| id))
        .collect();
    found.sort_by_key(|id| id.pid);
    Ok(found)
}

/// The pids whose chain of parents in `parents` (pid → parent pid) reaches `root`.
fn below(parents: &HashMap<u32, u32>, root: u32) -> Vec<u32> {
    parents
        .keys()
        .copied()
        .filter(|&pid| {
            let mut current = pid;
            // At most as many steps as there are processes: a cycle (pid reuse mid-read)
            // cannot loop forever.
            for _ in 0..parents.len() {
                match parents.get(&current) {
                    Some(&parent) if parent == root => return true,
                    Some(&parent) if parent != current => current = parent,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grandchildren_are_descendants_and_siblings_are_not() {
        // 1 → 10 → 11 → 12; 1 → 20.
        let parents = HashMap::from([(10, 1), (11, 10), (12, 11), (20, 1), (1, 0)]);
        let mut found = below(&parents, 10);
        found.sort_unstable();
        assert_eq!(found, [11, 12]);
    }

    #[test]
    fn a_child_is_found_until_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("starting sleep");
        let found = descendants(std::process::id()).expect("reading /proc");
        let sleep = found
            .iter()
            .find(|id| id.pid == child.id())
            .cloned()
            .unwrap_or_else(|| panic!("the child is not among {found:?}"));
        assert_eq!(sleep.program, "sleep");
        assert!(sleep.is_alive());
        child.kill().expect("killing sleep");
        child.wait().expect("reaping sleep");
        assert!(!sleep.is_alive());
    }
}
