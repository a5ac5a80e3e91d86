//! Table tests of the status computation: counts, conditions and their transition times,
//! refusal messages and contention news.

use super::*;
use crate::plan::Phase;
use crate::plan::Unobserved;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("valid timestamp")
}

fn spec(count: i32) -> PodScalerSpec {
    PodScalerSpec {
        count,
        selector: BTreeMap::from([("app".to_owned(), "nginx".to_owned())]),
        template: None,
    }
}

fn pod(name: &str, ready: bool, controller: PodOwner) -> PodFacts {
    PodFacts {
        name: name.to_owned(),
        uid: name.to_owned(),
        controller,
        scheduled: true,
        phase: Phase::Running,
        ready,
        ready_since: None,
        deletion_cost: 0,
        restarts: 0,
        created: None,
    }
}

fn rs(name: &str) -> PodOwner {
    PodOwner::Other(OwnerName {
        kind: "ReplicaSet".into(),
        name: name.into(),
    })
}

fn condition<'a>(status: &'a PodScalerStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

fn observe<'a>(
    spec: &'a PodScalerSpec,
    pods: &'a [PodFacts],
    progress: Progress,
    fights: &'a [Fight],
) -> Observation<'a> {
    Observation {
        generation: Some(3),
        spec,
        pods,
        progress,
        fights,
    }
}

#[test]
fn counts_selector_and_generation() {
    let spec = spec(4);
    let pods = [
        pod("a", true, PodOwner::This),
        pod("b", false, PodOwner::This),
        pod("c", true, rs("web")),
    ];
    let none: [Fight; 0] = [];
    let status = compute(None, &observe(&spec, &pods, Progress::Idle, &none), at(0));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.replicas, 3);
    assert_eq!(status.ready_replicas, 2);
    assert_eq!(status.available_replicas, 2);
    assert_eq!(status.foreign_replicas, 1);
    assert_eq!(status.selector, "app=nginx");
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [READY, REPLICA_FAILURE, CONTENDED]);
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );
}

#[test]
fn ready_condition_table() {
    let none: [Fight; 0] = [];
    type Case = (
        &'static str,
        i32,
        usize,
        usize,
        Progress,
        bool,
        &'static str,
        &'static str,
    );
    let cases: [Case; 6] = [
        (
            "converged",
            2,
            2,
            2,
            Progress::Idle,
            true,
            reason::CONVERGED,
            "2 of 2 pods are ready",
        ),
        (
            "zero of zero",
            0,
            0,
            0,
            Progress::Idle,
            true,
            reason::CONVERGED,
            "0 of 0 pods are ready",
        ),
        (
            "missing pods",
            4,
            1,
            1,
            Progress::Acted { failure: None },
            false,
            reason::SCALING_UP,
            "1 of 4 pods exist",
        ),
        (
            "surplus",
            1,
            3,
            3,
            Progress::Acted { failure: None },
            false,
            reason::SCALING_DOWN,
            "3 pods exist, 1 wanted",
        ),
        (
            "not ready",
            2,
            2,
            1,
            Progress::Idle,
            false,
            reason::PODS_NOT_READY,
            "1 of 2 pods are ready",
        ),
        (
            "waiting for the cache",
            4,
            2,
            2,
            Progress::AwaitingCache(Unobserved {
                creations: 2,
                deletions: 0,
            }),
            false,
            reason::SCALING_UP,
            "2 of 4 pods exist; waiting to observe its earlier pod creations and deletions before acting again",
        ),
    ];
    for (name, count, existing, ready, progress, want_true, want_reason, want_message) in cases {
        let spec = spec(count);
        let pods: Vec<PodFacts> = (0..existing)
            .map(|i| pod(&format!("p{i}"), i < ready, PodOwner::This))
            .collect();
        let status = compute(None, &observe(&spec, &pods, progress, &none), at(0));
        let ready_condition = condition(&status, READY);
        assert_eq!(
            ready_condition.status,
            if want_true { "True" } else { "False" },
            "{name}"
        );
        assert_eq!(ready_condition.reason, want_reason, "{name}");
        assert_eq!(ready_condition.message, want_message, "{name}");
    }
}

#[test]
fn failure_condition_carries_the_api_message_and_survives_a_held_pass() {
    let spec = spec(5);
    let pods = [
        pod("a", true, PodOwner::This),
        pod("b", true, PodOwner::This),
    ];
    let none: [Fight; 0] = [];
    let quota = "pods \"web-x\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2";
    let failed = compute(
        None,
        &observe(
            &spec,
            &pods,
            Progress::Acted {
                failure: Some(Failure {
                    action: FailedAction::Create,
                    message: quota.to_owned(),
                }),
            },
            &none,
        ),
        at(0),
    );
    let failure = condition(&failed, REPLICA_FAILURE);
    assert_eq!(
        (failure.status.as_str(), failure.reason.as_str()),
        ("True", reason::FAILED_CREATE)
    );
    assert_eq!(
        failure.message,
        format!("creating pods failed: {quota}; retrying with backoff")
    );

    let held = compute(
        Some(&failed),
        &observe(
            &spec,
            &pods,
            Progress::AwaitingCache(Unobserved {
                creations: 1,
                deletions: 0,
            }),
            &none,
        ),
        at(10),
    );
    assert_eq!(
        condition(&held, REPLICA_FAILURE),
        failure,
        "held pass keeps the failure unchanged"
    );

    let recovered = compute(
        Some(&held),
        &observe(&spec, &pods, Progress::Acted { failure: None }, &none),
        at(20),
    );
    let cleared = condition(&recovered, REPLICA_FAILURE);
    assert_eq!(
        (cleared.status.as_str(), cleared.reason.as_str()),
        ("False", reason::NO_FAILURE)
    );
    assert_eq!(cleared.last_transition_time, Time(at(20)));

    let delete_failed = compute(
        None,
        &observe(
            &spec,
            &pods,
            Progress::Acted {
                failure: Some(Failure {
                    action: FailedAction::Delete,
                    message: "denied".into(),
                }),
            },
            &none,
        ),
        at(0),
    );
    assert_eq!(
        condition(&delete_failed, REPLICA_FAILURE).reason,
        reason::FAILED_DELETE
    );
}

#[test]
fn transition_time_holds_while_the_status_holds() {
    let spec = spec(1);
    let pods = [pod("a", true, PodOwner::This)];
    let none: [Fight; 0] = [];
    let first = compute(None, &observe(&spec, &pods, Progress::Idle, &none), at(0));
    let second = compute(
        Some(&first),
        &observe(&spec, &pods, Progress::Idle, &none),
        at(60),
    );
    assert_eq!(
        first, second,
        "nothing changed, so the status is identical (no write needed)"
    );
    let unready = [pod("a", false, PodOwner::This)];
    let third = compute(
        Some(&second),
        &observe(&spec, &unready, Progress::Idle, &none),
        at(90),
    );
    assert_eq!(condition(&third, READY).last_transition_time, Time(at(90)));
    assert_eq!(
        condition(&third, CONTENDED).last_transition_time,
        Time(at(0))
    );
}

#[test]
fn contention_condition_table() {
    let spec = spec(4);
    let own = [
        pod("a", true, PodOwner::This),
        pod("b", true, PodOwner::Nobody),
    ];
    let shared = [
        pod("a", true, PodOwner::This),
        pod("r1", true, rs("nginx-1")),
        pod("r2", true, rs("nginx-1")),
        pod("r3", true, rs("nginx-1")),
    ];
    let none: [Fight; 0] = [];
    let owner = OwnerName {
        kind: "ReplicaSet".into(),
        name: "nginx-1".into(),
    };
    let fighting = [Fight {
        owner: owner.clone(),
        holding_until: None,
    }];
    let holding = [Fight {
        owner,
        holding_until: Some(at(75)),
    }];
    type Case<'a> = (
        &'a str,
        &'a [PodFacts],
        &'a [Fight],
        &'a str,
        &'a str,
        &'a str,
    );
    let cases: [Case<'_>; 4] = [
        (
            "own and bare pods only",
            &own,
            &none,
            "False",
            reason::NO_CONTENTION,
            "no other controller manages pods matching app=nginx",
        ),
        (
            "another controller's pods are counted",
            &shared,
            &none,
            "True",
            reason::SHARED_SELECTOR,
            "3 of 4 pods matching app=nginx are controlled by ReplicaSet/nginx-1 (3)",
        ),
        (
            "this PodScaler deleted another controller's pods",
            &shared,
            &fighting,
            "True",
            reason::FIGHTING_CONTROLLER,
            "this PodScaler deleted pods controlled by ReplicaSet/nginx-1 to hold app=nginx at 4, and they were recreated",
        ),
        (
            "holding off",
            &shared,
            &holding,
            "True",
            reason::FIGHTING_CONTROLLER,
            "ReplicaSet/nginx-1 recreates the pods this PodScaler deletes: holding off deleting its pods until 2023-11-14T22:14:35Z",
        ),
    ];
    for (name, pods, deletions, want_status, want_reason, want_prefix) in cases {
        let status = compute(
            None,
            &observe(&spec, pods, Progress::Idle, deletions),
            at(0),
        );
        let contended = condition(&status, CONTENDED);
        assert_eq!(contended.status, want_status, "{name}");
        assert_eq!(contended.reason, want_reason, "{name}");
        assert!(
            contended.message.starts_with(want_prefix),
            "{name}: {}",
            contended.message
        );
    }
}

#[test]
fn refusal_messages_leave_out_the_refused_pod() {
    let quota = "exceeded quota: two-pods, requested: pods=1, used: pods=2, limited: pods=2";
    let cases = [
            (
                format!("pods \"web-x7k2p\" is forbidden: {quota}"),
                Some("web-x7k2p"),
                quota.to_owned(),
            ),
            (
                format!("pods \"web-abcde\" is forbidden: {quota}"),
                None,
                quota.to_owned(),
            ),
            (
                "admission webhook \"deny.example.com\" denied the request: pod web-q1w2e is not allowed".to_owned(),
                Some("web-q1w2e"),
                "admission webhook \"deny.example.com\" denied the request: pod <generated> is not allowed".to_owned(),
            ),
            ("etcdserver: request timed out".to_owned(), Some(""), "etcdserver: request timed out".to_owned()),
        ];
    for (message, name, want) in cases {
        assert_eq!(refusal_message(&message, name), want, "{message}");
    }
    // Two attempts refused for the same reason read the same: no status write between them.
    assert_eq!(
        refusal_message(&format!("pods \"a-1\" is forbidden: {quota}"), Some("a-1")),
        refusal_message(&format!("pods \"a-2\" is forbidden: {quota}"), Some("a-2"))
    );
}

#[test]
fn contention_news_only_on_transitions_to_true() {
    let spec = spec(2);
    let none: [Fight; 0] = [];
    let calm = compute(
        None,
        &observe(
            &spec,
            &[pod("a", true, PodOwner::This)],
            Progress::Idle,
            &none,
        ),
        at(0),
    );
    let shared_pods = [pod("a", true, PodOwner::This), pod("r", true, rs("x"))];
    let shared = compute(
        Some(&calm),
        &observe(&spec, &shared_pods, Progress::Idle, &none),
        at(1),
    );
    assert_eq!(contention_news(Some(&calm), &calm), None, "no change");
    assert_eq!(
        contention_news(Some(&calm), &shared).map(|(reason, _)| reason),
        Some(reason::SHARED_SELECTOR.to_owned())
    );
    assert_eq!(
        contention_news(Some(&shared), &shared),
        None,
        "already reported"
    );
    assert_eq!(
        contention_news(Some(&shared), &calm),
        None,
        "contention ending is not news"
    );
    let fought = [Fight {
        owner: OwnerName {
            kind: "ReplicaSet".into(),
            name: "x".into(),
        },
        holding_until: None,
    }];
    let fighting = compute(
        Some(&shared),
        &observe(&spec, &shared_pods, Progress::Idle, &fought),
        at(2),
    );
    assert_eq!(
        contention_news(Some(&shared), &fighting).map(|(reason, _)| reason),
        Some(reason::FIGHTING_CONTROLLER.to_owned())
    );
}
