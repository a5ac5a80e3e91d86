//! Processes as `/proc` shows them: to check that a command stopped everything it started,
//! including what its children started.

use std::collections::HashMap;

/// A process, told apart from a later one that reuses its pid by its start time.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// The file name of its executable (`kube-apiserver`; `comm` would cut it to 15 bytes).
    pub program: String,
    started: u64,
}

impl ProcessId {
    /// Whether this very process still runs (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        read_stat(self.pid).is_some_and(|stat| stat.started == self.started && stat.state != 'Z')
    }
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    state: char,
    parent: u32,
    started: u64,
}

/// Parses a `/proc/<pid>/stat` line: `pid (comm) state ppid …`.
fn parse_stat(line: &str) -> Option<Stat> {
    // comm may hold spaces and parentheses; nothing after its closing one can.
    let fields: Vec<&str> = line.get(line.rfind(')')? + 2..)?.split(' ').collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        // Field 22 of proc_pid_stat(5), the 20th after `)`.
        started: fields.get(19)?.parse().ok()?,
    })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every live process below `root` (children, their children …), not `root` itself.
pub fn descendants(root: u32) -> anyhow::Result<Vec<ProcessId>> {
    let mut live = HashMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may exit while it is looked at: it is then no descendant to worry about.
        let Some(stat) = read_stat(pid).filter(|stat| stat.state != 'Z') else {
            continue;
        };
        let program = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        live.insert(
            pid,
            (
                stat.parent,
                ProcessId {
                    pid,
                    program,
                    started: stat.started,
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
    fn a_stat_line_with_spaces_and_parentheses_in_its_name_parses() {
        let line = "4242 (kube (x) y) S 17 4242 4242 0 -1 4194560 1 0 0 0 3 4 0 0 20 0 9 0 \
                    123456 0 0 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                parent: 17,
                started: 123_456
            })
        );
        assert_eq!(parse_stat("4242 (cut"), None);
    }

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
