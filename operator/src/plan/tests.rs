//! Table tests of the pure decisions: activity, deletion ranking, the expectations gate,
//! planning and slow start.

use super::*;
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("valid timestamp")
}

fn facts(name: &str) -> PodFacts {
    PodFacts {
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        controller: PodOwner::This,
        scheduled: true,
        phase: Phase::Running,
        ready: true,
        ready_since: Some(at(100)),
        deletion_cost: 0,
        restarts: 0,
        created: Some(at(0)),
    }
}

fn other(kind: &str, name: &str) -> PodOwner {
    PodOwner::Other(OwnerName {
        kind: kind.to_owned(),
        name: name.to_owned(),
    })
}

#[test]
fn active_filter_table() {
    fn pod(phase: Option<&str>, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                deletion_timestamp: deleting.then(|| Time(at(5))),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: phase.map(str::to_owned),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }
    let cases = [
        ("no phase yet", pod(None, false), true),
        ("pending", pod(Some("Pending"), false), true),
        ("running", pod(Some("Running"), false), true),
        ("unknown", pod(Some("Unknown"), false), true),
        ("succeeded", pod(Some("Succeeded"), false), false),
        ("failed", pod(Some("Failed"), false), false),
        ("running but terminating", pod(Some("Running"), true), false),
        ("no status at all", Pod::default(), true),
    ];
    for (name, pod, want) in cases {
        assert_eq!(is_active(&pod), want, "{name}");
    }
}

/// Each rule on its own: `first` must be deleted before `second`, whatever order they are
/// given in, and every earlier rule is a tie.
#[test]
fn deletion_ranking_rules_table() {
    let base = facts("base");
    let cases: Vec<(&str, PodFacts, PodFacts)> = vec![
        (
            "own pods before bare pods",
            PodFacts {
                controller: PodOwner::This,
                ..facts("a")
            },
            PodFacts {
                controller: PodOwner::Nobody,
                ..facts("b")
            },
        ),
        (
            "bare pods before another controller's",
            PodFacts {
                controller: PodOwner::Nobody,
                ..facts("a")
            },
            PodFacts {
                controller: other("ReplicaSet", "rs"),
                ..facts("b")
            },
        ),
        (
            "unscheduled before scheduled",
            PodFacts {
                scheduled: false,
                ..base.clone()
            },
            PodFacts {
                scheduled: true,
                ..base.clone()
            },
        ),
        (
            "pending before unknown",
            PodFacts {
                phase: Phase::Pending,
                ..base.clone()
            },
            PodFacts {
                phase: Phase::Unknown,
                ..base.clone()
            },
        ),
        (
            "unknown before running",
            PodFacts {
                phase: Phase::Unknown,
                ..base.clone()
            },
            PodFacts {
                phase: Phase::Running,
                ..base.clone()
            },
        ),
        (
            "not ready before ready",
            PodFacts {
                ready: false,
                ready_since: None,
                ..base.clone()
            },
            PodFacts {
                ready: true,
                ..base.clone()
            },
        ),
        (
            "lower deletion cost first",
            PodFacts {
                deletion_cost: -5,
                ..base.clone()
            },
            PodFacts {
                deletion_cost: 10,
                ..base.clone()
            },
        ),
        (
            "ready for a shorter time first",
            PodFacts {
                ready_since: Some(at(500)),
                ..base.clone()
            },
            PodFacts {
                ready_since: Some(at(100)),
                ..base.clone()
            },
        ),
        (
            "more restarts first",
            PodFacts {
                restarts: 4,
                ..base.clone()
            },
            PodFacts {
                restarts: 1,
                ..base.clone()
            },
        ),
        (
            "newer first",
            PodFacts {
                created: Some(at(50)),
                ..base.clone()
            },
            PodFacts {
                created: Some(at(10)),
                ..base.clone()
            },
        ),
        (
            "no creation time before any",
            PodFacts {
                created: None,
                ..base.clone()
            },
            PodFacts {
                created: Some(at(50)),
                ..base.clone()
            },
        ),
        (
            "ready with no ready time before ready for a while",
            PodFacts {
                ready_since: None,
                ..base.clone()
            },
            PodFacts {
                ready_since: Some(at(100)),
                ..base.clone()
            },
        ),
        ("name breaks the last tie", facts("a"), facts("b")),
        (
            "controller outranks readiness",
            PodFacts {
                controller: PodOwner::This,
                ready: true,
                ..facts("a")
            },
            PodFacts {
                controller: other("ReplicaSet", "rs"),
                ready: false,
                ready_since: None,
                ..facts("b")
            },
        ),
        (
            "scheduling outranks deletion cost",
            PodFacts {
                scheduled: false,
                deletion_cost: 100,
                ..base.clone()
            },
            PodFacts {
                scheduled: true,
                deletion_cost: -100,
                ..base.clone()
            },
        ),
    ];
    for (name, first, second) in cases {
        assert_eq!(deletion_order(&first, &second), Ordering::Less, "{name}");
        assert_eq!(
            deletion_order(&second, &first),
            Ordering::Greater,
            "{name} (reversed)"
        );
    }
}

#[test]
fn planning_table() {
    let pods = |n: usize| -> Vec<PodFacts> { (0..n).map(|i| facts(&format!("p{i:03}"))).collect() };
    let cases: [(&str, i32, usize, Plan); 7] = [
        ("converged", 3, 3, Plan::Nothing),
        ("zero and none", 0, 0, Plan::Nothing),
        ("create the missing", 4, 1, Plan::Create(3)),
        ("create from nothing", 5, 0, Plan::Create(5)),
        (
            "creation is capped per pass",
            2000,
            10,
            Plan::Create(MAX_PODS_PER_PASS),
        ),
        ("negative count is treated as zero", -3, 0, Plan::Nothing),
        ("scale to zero deletes all", 0, 2, Plan::Delete(pods(2))),
    ];
    for (name, desired, existing, want) in cases {
        assert_eq!(
            plan(desired, &pods(existing), &BTreeSet::new()),
            want,
            "{name}"
        );
    }
    match plan(10, &pods(800), &BTreeSet::new()) {
        Plan::Delete(victims) => assert_eq!(victims.len(), MAX_PODS_PER_PASS),
        other => panic!("expected a capped delete, got {other:?}"),
    }
}

#[test]
fn surplus_deletes_own_pods_before_a_deployments() {
    let mut pods: Vec<PodFacts> = (0..4).map(|i| facts(&format!("own-{i}"))).collect();
    for i in 0..3 {
        pods.push(PodFacts {
            controller: other("ReplicaSet", "nginx-abc"),
            // Another controller's pods are fresher and not ready yet: ownership still wins.
            ready: false,
            ready_since: None,
            created: Some(at(900)),
            ..facts(&format!("rs-{i}"))
        });
    }
    let Plan::Delete(victims) = plan(4, &pods, &BTreeSet::new()) else {
        panic!("expected deletions");
    };
    let names: Vec<&str> = victims.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 3);
    assert!(
        names.iter().all(|name| name.starts_with("own-")),
        "{names:?}"
    );
}

#[test]
fn a_spared_controllers_pods_count_but_are_not_deleted() {
    let rs = OwnerName {
        kind: "ReplicaSet".into(),
        name: "web-1".into(),
    };
    let spared = BTreeSet::from([rs.clone()]);
    let foreign = |name: &str| PodFacts {
        controller: PodOwner::Other(rs.clone()),
        ..facts(name)
    };
    let bare = PodFacts {
        controller: PodOwner::Nobody,
        ..facts("bare")
    };
    let held: Vec<PodFacts> = (0..5).map(|i| foreign(&format!("rs-{i}"))).collect();
    assert_eq!(
        plan(4, &held, &spared),
        Plan::Nothing,
        "nothing else to delete"
    );
    assert_eq!(plan(6, &held, &spared), Plan::Create(1), "they still count");
    let mut mixed = held.clone();
    mixed.push(bare.clone());
    assert_eq!(plan(4, &mixed, &spared), Plan::Delete(vec![bare]));
    let Plan::Delete(victims) = plan(4, &held, &BTreeSet::new()) else {
        panic!("without a hold the surplus is deleted");
    };
    assert_eq!(victims.len(), 1);
}

#[test]
fn slow_start_batches_table() {
    let cases: [(usize, &[usize]); 6] = [
        (0, &[]),
        (1, &[1]),
        (2, &[1, 1]),
        (3, &[1, 2]),
        (10, &[1, 2, 4, 3]),
        (100, &[1, 2, 4, 8, 16, 32, 37]),
    ];
    for (total, want) in cases {
        let got = slow_start_batches(total);
        assert_eq!(got, want, "total {total}");
        assert_eq!(got.iter().sum::<usize>(), total);
    }
}

#[test]
fn foreign_controllers_are_counted_per_owner() {
    let pods = vec![
        facts("own"),
        PodFacts {
            controller: PodOwner::Nobody,
            ..facts("bare")
        },
        PodFacts {
            controller: other("ReplicaSet", "a"),
            ..facts("a1")
        },
        PodFacts {
            controller: other("ReplicaSet", "a"),
            ..facts("a2")
        },
        PodFacts {
            controller: other("StatefulSet", "b"),
            ..facts("b1")
        },
    ];
    let owners = foreign_controllers(&pods);
    assert_eq!(
        owners
            .into_iter()
            .map(|(o, n)| (o.to_string(), n))
            .collect::<Vec<_>>(),
        [
            ("ReplicaSet/a".to_owned(), 2),
            ("StatefulSet/b".to_owned(), 1)
        ]
    );
}

/// The expectations gate: pending changes hold every plan back, whatever the pods; a
/// satisfied or timed-out check plans on the pods as they are, and a timeout is reported.
#[test]
fn expectations_gate_table() {
    let pods = |n: usize| -> Vec<PodFacts> { (0..n).map(|i| facts(&format!("p{i}"))).collect() };
    let pending = |creations, deletions| Check::Pending {
        creations,
        deletions,
    };
    let waiting = |creations, deletions| {
        Decision::AwaitCache(Unobserved {
            creations,
            deletions,
        })
    };
    let act = |plan| Decision::Act {
        plan,
        timed_out: None,
    };
    let timed_out = |plan, creations, deletions| Decision::Act {
        plan,
        timed_out: Some(Unobserved {
            creations,
            deletions,
        }),
    };
    let cases: [(&str, Check, i32, usize, Decision); 9] = [
        // The overshoot this prevents: 2 of 3 created, the cache shows 1, another pass would make 2 more.
        (
            "pending creations, short in the cache",
            pending(2, 0),
            3,
            1,
            waiting(2, 0),
        ),
        (
            "pending deletions, surplus in the cache",
            pending(0, 2),
            1,
            3,
            waiting(0, 2),
        ),
        (
            "pending, count already right",
            pending(1, 0),
            2,
            2,
            waiting(1, 0),
        ),
        ("pending both ways", pending(1, 1), 0, 5, waiting(1, 1)),
        (
            "satisfied and short",
            Check::Satisfied,
            3,
            1,
            act(Plan::Create(2)),
        ),
        (
            "satisfied and right",
            Check::Satisfied,
            2,
            2,
            act(Plan::Nothing),
        ),
        (
            "satisfied with a surplus",
            Check::Satisfied,
            1,
            2,
            act(Plan::Delete(vec![facts("p0")])),
        ),
        (
            "timed out creations: act on the cache as it is",
            Check::TimedOut {
                creations: 2,
                deletions: 0,
            },
            3,
            1,
            timed_out(Plan::Create(2), 2, 0),
        ),
        (
            "timed out deletions, count right",
            Check::TimedOut {
                creations: 0,
                deletions: 1,
            },
            2,
            2,
            timed_out(Plan::Nothing, 0, 1),
        ),
    ];
    for (name, check, desired, existing, want) in cases {
        assert_eq!(
            decide(check, desired, &pods(existing), &BTreeSet::new()),
            want,
            "{name}"
        );
    }
}

/// A spared controller (a fight on hold) keeps its pods through the gate as through `plan`.
#[test]
fn the_gate_passes_the_fight_hold_to_the_plan() {
    let rs = OwnerName {
        kind: "ReplicaSet".to_owned(),
        name: "web".to_owned(),
    };
    let foreign = PodFacts {
        controller: PodOwner::Other(rs.clone()),
        ..facts("r0")
    };
    let pods = [facts("p0"), foreign.clone()];
    assert_eq!(
        decide(Check::Satisfied, 0, &pods, &BTreeSet::from([rs])),
        Decision::Act {
            plan: Plan::Delete(vec![facts("p0")]),
            timed_out: None,
        }
    );
    assert_eq!(
        decide(Check::Satisfied, 0, &pods, &BTreeSet::new()),
        Decision::Act {
            plan: Plan::Delete(vec![facts("p0"), foreign]),
            timed_out: None,
        }
    );
}
