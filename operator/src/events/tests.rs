//! Tests of event correlation and the recorder's series bookkeeping.

use super::*;

fn occurrence(reason: &str, message: &str) -> Occurrence {
    Occurrence {
        type_: "Normal",
        reason: reason.to_owned(),
        action: "CreatePods".to_owned(),
        message: message.to_owned(),
    }
}

fn wall(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).expect("valid timestamp")
}

fn series(write: &Write) -> &Series {
    match write {
        Write::Create(series) | Write::Update(series) => series,
        Write::Skip => panic!("skipped"),
    }
}

#[test]
fn a_repeated_message_counts_on_its_own_event_and_a_new_one_gets_another() {
    let start = Instant::now();
    let mut correlator = Correlator::default();
    let created = occurrence("SuccessfulCreate", "Created 3 pod(s): a, b, c");
    let first = correlator.observe("ns/web", "web", &created, start, wall(0));
    assert!(matches!(first, Write::Create(_)));
    let again = correlator.observe("ns/web", "web", &created, start, wall(5));
    let Write::Update(repeat) = &again else {
        panic!("expected an update, got {again:?}");
    };
    assert_eq!(
        (repeat.name.as_str(), repeat.count),
        (series(&first).name.as_str(), 2)
    );
    assert_eq!((repeat.first, repeat.last), (wall(0), wall(5)));

    let other = occurrence("SuccessfulCreate", "Created 1 pod(s): d");
    let next = correlator.observe("ns/web", "web", &other, start, wall(6));
    let Write::Create(fresh) = &next else {
        panic!("a new message is a new event, got {next:?}");
    };
    assert_ne!(fresh.name, series(&first).name);
    assert_eq!(
        (fresh.message.as_str(), fresh.count),
        ("Created 1 pod(s): d", 1)
    );
}

#[test]
fn the_tenth_similar_message_is_combined_with_those_after_it() {
    let start = Instant::now();
    let mut correlator = Correlator::default();
    let mut writes = Vec::new();
    for n in 0..14 {
        let message = format!("Error creating: pods \"web-{n}\" is forbidden");
        writes.push(correlator.observe(
            "ns/web",
            "web",
            &occurrence("FailedCreate", &message),
            start,
            wall(n),
        ));
    }
    assert!(writes[..9].iter().all(
        |w| matches!(w, Write::Create(s) if s.count == 1 && !s.message.starts_with(COMBINED_PREFIX))
    ));
    let Write::Create(combined) = &writes[9] else {
        panic!("the 10th starts the combined series: {:?}", writes[9]);
    };
    assert_eq!(
        combined.message,
        format!("{COMBINED_PREFIX}Error creating: pods \"web-9\" is forbidden")
    );
    let Write::Update(last) = &writes[13] else {
        panic!("later ones update it: {:?}", writes[13]);
    };
    assert_eq!(
        (last.name.as_str(), last.count),
        (combined.name.as_str(), 5)
    );
    assert!(
        last.message.ends_with("\"web-13\" is forbidden"),
        "{}",
        last.message
    );

    // Another reason, or another object, is not similar.
    let other = correlator.observe(
        "ns/web",
        "web",
        &occurrence("SuccessfulCreate", "Created 1 pod(s): x"),
        start,
        wall(20),
    );
    assert!(matches!(&other, Write::Create(s) if !s.message.starts_with(COMBINED_PREFIX)));

    // After the similar window, messages are no longer combined.
    let later = start + Duration::from_secs(601);
    let fresh = correlator.observe(
        "ns/web",
        "web",
        &occurrence(
            "FailedCreate",
            "Error creating: pods \"web-99\" is forbidden",
        ),
        later,
        wall(700),
    );
    assert!(matches!(&fresh, Write::Create(s) if !s.message.starts_with(COMBINED_PREFIX)));
}

#[test]
fn each_object_has_a_budget_and_skipped_occurrences_still_count() {
    let start = Instant::now();
    let config = CorrelatorConfig::default();
    let mut correlator = Correlator::new(config);
    let same = occurrence("FailedCreate", "Error creating: quota");
    let writes: Vec<Write> = (0..30)
        .map(|n| correlator.observe("ns/web", "web", &same, start, wall(n)))
        .collect();
    let written = writes.iter().filter(|w| !matches!(w, Write::Skip)).count();
    assert_eq!(written, 25, "the burst");
    assert!(
        matches!(
            correlator.observe("ns/other", "other", &same, start, wall(0)),
            Write::Create(_)
        ),
        "another object has its own budget"
    );
    // One refill later, the next write carries every occurrence so far.
    let refilled = correlator.observe(
        "ns/web",
        "web",
        &same,
        start + config.refill_every,
        wall(400),
    );
    let Write::Update(series) = refilled else {
        panic!("expected an update, got {refilled:?}");
    };
    assert_eq!(series.count, 31);
    correlator.forget("ns/web\u{0}");
    assert!(matches!(
        correlator.observe(
            "ns/web",
            "web",
            &same,
            start + config.refill_every,
            wall(401)
        ),
        Write::Create(_)
    ));
}
