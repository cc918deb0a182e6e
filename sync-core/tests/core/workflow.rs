//! The case workflow: every (state, action, role) against the documented table, the
//! preconditions people rely on, deadlines, and deterministic folding of concurrent offline
//! transitions.

use std::collections::BTreeMap;

use gridsync_core::Document;
use gridsync_core::records::{Case, CaseSource, PhotoRef, PhotoStage};
use gridsync_core::workflow::{
    ACTIONS, Action, Actor, ROLES, Reference, Role, STATUSES, Status, TimeLimit, act,
    available_actions, derive, new_event, plan_dispatch, plan_extension, plan_resume,
};
use gridsync_proto::DocId;
use proptest::prelude::*;

use crate::helpers::{case, device, grid, rid};

const T0: i64 = 1_794_794_400_000; // Mon 2026-11-16 10:00 CST
const HOUR: i64 = 3_600_000;

fn actor(role: Role) -> Actor {
    Actor {
        name: format!("{role}"),
        role,
        dept: (role == Role::Department).then(|| "D01".to_owned()),
    }
}

/// The data an action needs, so the table test checks roles and states, not missing fields.
fn data_for(action: Action) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    match action {
        Action::Dispatch => {
            d.insert("lead".into(), "D01".into());
            d.insert("co".into(), "D16".into());
            d.insert("deadline".into(), (T0 + 72 * HOUR).to_string());
            d.insert("amber_at".into(), (T0 + 54 * HOUR).to_string());
            d.insert("return_until".into(), (T0 + 10_000 * HOUR).to_string());
        }
        Action::ApproveExtension | Action::Resume => {
            d.insert("deadline".into(), (T0 + 200 * HOUR).to_string());
        }
        Action::FollowUp => {
            d.insert("satisfaction".into(), "dissatisfied".into());
        }
        Action::Merge => {
            d.insert("into".into(), DocId::new().to_string());
        }
        _ => {}
    }
    d
}

fn with_after_photo(mut c: Case) -> Case {
    c.photos.insert(
        rid(900),
        PhotoRef::new("b".repeat(64), PhotoStage::After, T0, 1000, "image/jpeg"),
    );
    c
}

/// A case brought to `status` along the canonical path, and its source.
fn case_in(status: Status) -> Case {
    use Action::*;
    use Role::*;
    let verified = matches!(
        status,
        Status::Verifying | Status::Rejected | Status::Merged
    );
    let mut c = with_after_photo(case());
    c.source = if verified {
        CaseSource::Resident
    } else {
        CaseSource::Inspection
    };
    let tail: &[(Action, Role)] = match status {
        Status::Draft => &[],
        Status::Reported => &[(Report, Worker)],
        Status::SelfHandling => &[(Report, Worker), (SelfHandle, Worker)],
        Status::Verifying => &[(Report, Worker), (Verify, Worker)],
        Status::Rejected => &[(Report, Worker), (Verify, Worker), (Reject, Dispatcher)],
        Status::Merged => &[(Report, Worker), (Verify, Worker), (Merge, Dispatcher)],
        Status::Registered => &[(Report, Worker), (Register, Dispatcher)],
        Status::Dispatched => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
        ],
        Status::Returned => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
            (Return, Department),
        ],
        Status::InProgress => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
            (Sign, Department),
        ],
        Status::Suspended => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
            (Sign, Department),
            (Suspend, Dispatcher),
        ],
        Status::Handled => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
            (Sign, Department),
            (Handle, Department),
        ],
        Status::Checking => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
            (Sign, Department),
            (Handle, Department),
            (StartCheck, Worker),
        ],
        Status::Closed => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
            (Sign, Department),
            (Handle, Department),
            (PassCheck, Worker),
        ],
        Status::FollowedUp => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
            (Sign, Department),
            (Handle, Department),
            (PassCheck, Worker),
            (FollowUp, Worker),
        ],
        Status::Archived => &[
            (Report, Worker),
            (Register, Dispatcher),
            (Dispatch, Dispatcher),
            (Sign, Department),
            (Handle, Department),
            (PassCheck, Worker),
            (FollowUp, Worker),
            (Archive, Dispatcher),
        ],
    };
    for (i, (a, r)) in tail.iter().enumerate() {
        act(
            &mut c,
            *a,
            &actor(*r),
            T0 + i as i64 * HOUR,
            "原因",
            data_for(*a),
        )
        .unwrap_or_else(|e| panic!("path to {status:?}: {e}"));
    }
    assert_eq!(derive(&c).status, status, "canonical path");
    c
}

/// The documented table (ARCHITECTURE / case_workflow.rs), written out independently:
/// where `action` by `role` leads from `from` for a case from `source`, or `None`.
fn documented(action: Action, from: Status, role: Role, source: CaseSource) -> Option<Status> {
    use Role::*;
    use Status::*;
    let verified_source = matches!(source, CaseSource::Resident | CaseSource::Hotline12345);
    let (ok_from, to, roles): (bool, Status, &[Role]) = match action {
        Action::Report => (from == Draft, Reported, &[Worker, Dispatcher, Intake]),
        Action::SelfHandle => (
            from == Reported && !matches!(source, CaseSource::Hotline12345 | CaseSource::Assigned),
            SelfHandling,
            &[Worker],
        ),
        Action::CloseSelf => (from == SelfHandling, Closed, &[Worker]),
        Action::Verify => (
            from == Reported && verified_source,
            Verifying,
            &[Worker, Dispatcher],
        ),
        Action::Register => (
            from == Verifying || (from == Reported && !verified_source),
            Registered,
            &[Dispatcher],
        ),
        Action::Reject => (from == Verifying, Rejected, &[Dispatcher]),
        Action::Merge => (from == Verifying, Merged, &[Dispatcher]),
        Action::Dispatch => (
            matches!(from, Registered | Returned),
            Dispatched,
            &[Dispatcher],
        ),
        Action::Return => (from == Dispatched, Returned, &[Department]),
        Action::Sign => (from == Dispatched, InProgress, &[Department]),
        Action::RequestExtension => (from == InProgress, InProgress, &[Department]),
        // The table case for these has a request waiting (see below); first extension.
        Action::ApproveExtension => (from == InProgress, InProgress, &[Dispatcher, Leader]),
        Action::DenyExtension => (from == InProgress, InProgress, &[Dispatcher, Leader]),
        Action::Suspend => (from == InProgress, Suspended, &[Dispatcher, Leader]),
        Action::Resume => (from == Suspended, InProgress, &[Dispatcher, Leader]),
        Action::Handle => (from == InProgress, Handled, &[Department]),
        Action::StartCheck => (from == Handled, Checking, &[Worker, Dispatcher]),
        Action::PassCheck => (
            matches!(from, Handled | Checking),
            Closed,
            &[Worker, Dispatcher],
        ),
        Action::FailCheck => (
            matches!(from, Handled | Checking),
            InProgress,
            &[Worker, Dispatcher],
        ),
        Action::FollowUp => (from == Closed, FollowedUp, &[Worker, Dispatcher]),
        Action::Archive => (from == FollowedUp, Archived, &[Dispatcher]),
        Action::Reopen => (from == FollowedUp, InProgress, &[Dispatcher]),
        Action::Supervise => (
            !matches!(
                from,
                Draft | Rejected | Merged | Closed | FollowedUp | Archived
            ),
            from,
            &[Leader],
        ),
    };
    (ok_from && roles.contains(&role)).then_some(to)
}

#[test]
fn every_state_action_and_role_gives_the_documented_result() {
    let mut checked = 0;
    for status in STATUSES {
        for action in ACTIONS {
            for role in ROLES {
                let mut c = case_in(status);
                if matches!(action, Action::ApproveExtension | Action::DenyExtension)
                    && status == Status::InProgress
                {
                    act(
                        &mut c,
                        Action::RequestExtension,
                        &actor(Role::Department),
                        T0 + 50 * HOUR,
                        "",
                        BTreeMap::new(),
                    )
                    .expect("request");
                }
                let source = c.source;
                let result = act(
                    &mut c,
                    action,
                    &actor(role),
                    T0 + 60 * HOUR,
                    "原因",
                    data_for(action),
                );
                let expected = documented(action, status, role, source);
                match (expected, result) {
                    (Some(to), Ok(_)) => {
                        assert_eq!(derive(&c).status, to, "{status:?} + {action:?} by {role:?}")
                    }
                    (None, Err(_)) => {}
                    (e, r) => {
                        panic!("{status:?} + {action:?} by {role:?}: documented {e:?}, got {r:?}")
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 16 * 23 * 5);
}

#[test]
fn preconditions_people_rely_on() {
    // Self-closing needs an after-photo.
    let mut c = case();
    c.source = CaseSource::Inspection;
    act(
        &mut c,
        Action::Report,
        &actor(Role::Worker),
        T0,
        "",
        BTreeMap::new(),
    )
    .expect("report");
    act(
        &mut c,
        Action::SelfHandle,
        &actor(Role::Worker),
        T0 + 1,
        "",
        BTreeMap::new(),
    )
    .expect("self");
    let e = act(
        &mut c,
        Action::CloseSelf,
        &actor(Role::Worker),
        T0 + 2,
        "修好了",
        BTreeMap::new(),
    )
    .expect_err("no photo");
    assert!(e.to_string().contains("after-photo"), "{e}");
    let mut c = with_after_photo(c);
    act(
        &mut c,
        Action::CloseSelf,
        &actor(Role::Worker),
        T0 + 2,
        "修好了",
        BTreeMap::new(),
    )
    .expect("closed");
    let s = derive(&c);
    assert_eq!(s.status, Status::Closed);
    assert!(s.self_closed);

    // A return needs a reason and must come within the window; only the lead may return.
    let mut c = case_in(Status::Dispatched);
    let e = act(
        &mut c,
        Action::Return,
        &actor(Role::Department),
        T0 + 5 * HOUR,
        "",
        BTreeMap::new(),
    )
    .expect_err("no reason");
    assert!(e.to_string().contains("reason"), "{e}");
    let other = Actor {
        dept: Some("D05".into()),
        ..actor(Role::Department)
    };
    let e = act(
        &mut c,
        Action::Return,
        &other,
        T0 + 5 * HOUR,
        "不归我们管",
        BTreeMap::new(),
    )
    .expect_err("not lead");
    assert!(e.to_string().contains("lead department"), "{e}");
    let mut late = case_in(Status::Registered);
    let mut d = data_for(Action::Dispatch);
    d.insert("return_until".into(), (T0 + 10 * HOUR).to_string());
    act(
        &mut late,
        Action::Dispatch,
        &actor(Role::Dispatcher),
        T0 + 3 * HOUR,
        "",
        d,
    )
    .expect("dispatch");
    let e = act(
        &mut late,
        Action::Return,
        &actor(Role::Department),
        T0 + 11 * HOUR,
        "派错了",
        BTreeMap::new(),
    )
    .expect_err("late");
    assert!(e.to_string().contains("window"), "{e}");

    // A second extension needs a leader.
    let mut c = case_in(Status::InProgress);
    act(
        &mut c,
        Action::RequestExtension,
        &actor(Role::Department),
        T0 + 10 * HOUR,
        "",
        BTreeMap::new(),
    )
    .expect("req");
    act(
        &mut c,
        Action::ApproveExtension,
        &actor(Role::Dispatcher),
        T0 + 11 * HOUR,
        "",
        data_for(Action::ApproveExtension),
    )
    .expect("first");
    act(
        &mut c,
        Action::RequestExtension,
        &actor(Role::Department),
        T0 + 12 * HOUR,
        "",
        BTreeMap::new(),
    )
    .expect("req 2");
    let e = act(
        &mut c,
        Action::ApproveExtension,
        &actor(Role::Dispatcher),
        T0 + 13 * HOUR,
        "",
        data_for(Action::ApproveExtension),
    )
    .expect_err("dispatcher");
    assert!(e.to_string().contains("dispatcher may not"), "{e}");
    act(
        &mut c,
        Action::ApproveExtension,
        &actor(Role::Leader),
        T0 + 13 * HOUR,
        "",
        data_for(Action::ApproveExtension),
    )
    .expect("leader");
    assert_eq!(derive(&c).extensions, 2);

    // A failed check sends it back with the rework count raised; a dissatisfied follow-up reopens.
    let mut c = case_in(Status::Handled);
    act(
        &mut c,
        Action::FailCheck,
        &actor(Role::Worker),
        T0 + 20 * HOUR,
        "灯还是不亮",
        BTreeMap::new(),
    )
    .expect("fail");
    let s = derive(&c);
    assert_eq!((s.status, s.reworks), (Status::InProgress, 1));
    let mut c = case_in(Status::FollowedUp);
    act(
        &mut c,
        Action::Reopen,
        &actor(Role::Dispatcher),
        T0 + 30 * HOUR,
        "群众不满意",
        BTreeMap::new(),
    )
    .expect("reopen");
    assert_eq!(derive(&c).status, Status::InProgress);
    // Resident and 12345 cases are verified before registration.
    let mut c = case();
    c.source = CaseSource::Hotline12345;
    act(
        &mut c,
        Action::Report,
        &actor(Role::Intake),
        T0,
        "",
        BTreeMap::new(),
    )
    .expect("intake");
    let e = act(
        &mut c,
        Action::Register,
        &actor(Role::Dispatcher),
        T0 + 1,
        "",
        BTreeMap::new(),
    )
    .expect_err("verify first");
    assert!(e.to_string().contains("verified"), "{e}");
    // Supervision notices are kept and leave the state alone.
    let mut c = case_in(Status::InProgress);
    act(
        &mut c,
        Action::Supervise,
        &actor(Role::Leader),
        T0 + 40 * HOUR,
        "请加快办理",
        BTreeMap::new(),
    )
    .expect("督办");
    let s = derive(&c);
    assert_eq!((s.status, s.supervisions.len()), (Status::InProgress, 1));
}

#[test]
fn deadlines_follow_the_calendar_and_flags_follow_the_clock() {
    let reference = Reference::builtin();
    let mut c = case_in(Status::Registered); // 0102 楼道灯: 3 working days, urgent 8 h
    // Dispatched Friday 2026-11-20 10:00 CST: 3 working days end Wednesday 10:00.
    let fri = T0 + 4 * 24 * HOUR;
    let data = plan_dispatch(&c, &reference, fri, None, None).expect("plan");
    assert_eq!(data["lead"], "D01");
    assert_eq!(data["co"], "D16");
    act(
        &mut c,
        Action::Dispatch,
        &actor(Role::Dispatcher),
        fri,
        "",
        data,
    )
    .expect("dispatch");
    let s = derive(&c);
    let wed = fri + 5 * 24 * HOUR;
    assert_eq!(s.deadline, Some(wed));
    // Flags: nothing early, amber in the last quarter, red after, 催办 from the next day.
    assert!(!s.flags(fri + HOUR).amber);
    let f = s.flags(wed - 10 * HOUR);
    assert!(f.amber && !f.overdue);
    let f = s.flags(wed + HOUR);
    assert!(f.overdue && !f.urged);
    assert!(
        s.flags(wed + 15 * HOUR).urged,
        "the calendar day after the deadline"
    );
    // An extension of 2 working days from Wednesday 10:00 -> Friday 10:00.
    act(
        &mut c,
        Action::Sign,
        &actor(Role::Department),
        fri + HOUR,
        "",
        BTreeMap::new(),
    )
    .expect("sign");
    act(
        &mut c,
        Action::RequestExtension,
        &actor(Role::Department),
        fri + 2 * HOUR,
        "",
        BTreeMap::new(),
    )
    .expect("req");
    let s = derive(&c);
    let data = plan_extension(&s, &reference, TimeLimit::WorkingDays(2));
    act(
        &mut c,
        Action::ApproveExtension,
        &actor(Role::Dispatcher),
        fri + 3 * HOUR,
        "",
        data,
    )
    .expect("approve");
    let s = derive(&c);
    assert_eq!(s.deadline, Some(wed + 2 * 24 * HOUR));
    // Suspended Monday 10:00 to Tuesday 10:00 (one working day): the deadline moves a day.
    let mon = fri + 3 * 24 * HOUR;
    act(
        &mut c,
        Action::Suspend,
        &actor(Role::Dispatcher),
        mon,
        "等待产权单位答复",
        BTreeMap::new(),
    )
    .expect("suspend");
    let s = derive(&c);
    assert_eq!(
        s.flags(wed + 3 * 24 * HOUR),
        Default::default(),
        "a suspended clock raises nothing"
    );
    let data = plan_resume(&s, &reference, mon + 24 * HOUR);
    act(
        &mut c,
        Action::Resume,
        &actor(Role::Dispatcher),
        mon + 24 * HOUR,
        "",
        data,
    )
    .expect("resume");
    let s = derive(&c);
    // Friday + 1 working day = the following Monday 10:00.
    assert_eq!(s.deadline, Some(wed + 2 * 24 * HOUR + 3 * 24 * HOUR));
    // Urgent cases use the urgent limit: 8 working hours.
    let mut u = case_in(Status::Registered);
    u.urgency = gridsync_core::records::Urgency::Urgent;
    let data = plan_dispatch(&u, &reference, fri, None, None).expect("plan");
    assert_eq!(data["deadline"], (fri + 8 * HOUR).to_string());
    let mut bad = case_in(Status::Registered);
    bad.subcategory = "0199".into();
    assert!(plan_dispatch(&bad, &reference, fri, None, None).is_err());
}

#[test]
fn a_worker_closing_alone_while_the_dispatcher_dispatches_folds_the_same_everywhere() {
    let mut base = with_after_photo(case());
    base.source = CaseSource::Inspection;
    act(
        &mut base,
        Action::Report,
        &actor(Role::Worker),
        T0,
        "",
        BTreeMap::new(),
    )
    .expect("report");
    let mut worker = Document::create(DocId::new(), grid(), device(1), &base).expect("create");
    let mut dispatcher = Document::load(&worker.save()).expect("load");
    dispatcher.set_device(device(2));
    worker
        .update::<Case>(|c| {
            act(
                c,
                Action::SelfHandle,
                &actor(Role::Worker),
                T0 + HOUR,
                "",
                BTreeMap::new(),
            )
            .expect("self");
            act(
                c,
                Action::CloseSelf,
                &actor(Role::Worker),
                T0 + 2 * HOUR,
                "已修复",
                BTreeMap::new(),
            )
            .expect("close");
        })
        .expect("worker offline");
    dispatcher
        .update::<Case>(|c| {
            act(
                c,
                Action::Register,
                &actor(Role::Dispatcher),
                T0 + 90 * 60_000,
                "",
                BTreeMap::new(),
            )
            .expect("register");
            act(
                c,
                Action::Dispatch,
                &actor(Role::Dispatcher),
                T0 + 100 * 60_000,
                "",
                data_for(Action::Dispatch),
            )
            .expect("dispatch");
        })
        .expect("dispatcher offline");
    worker.merge(&mut dispatcher).expect("merge");
    dispatcher.merge(&mut worker).expect("merge back");
    let a = derive(&worker.read::<Case>().expect("read"));
    let b = derive(&dispatcher.read::<Case>().expect("read"));
    assert_eq!(a, b, "every replica derives the same state");
    assert_eq!(
        a.status,
        Status::Closed,
        "the worker's self_handle came first in time"
    );
    assert_eq!(
        a.conflicts.len(),
        2,
        "register and dispatch are kept and flagged: {:?}",
        a.conflicts
    );
    assert_eq!(
        worker.read::<Case>().expect("read").events.len(),
        5,
        "no event lost"
    );
}

fn random_event(
    case: &Case,
    action: usize,
    role: usize,
    at: i64,
) -> (gridsync_proto::RecordId, gridsync_core::records::CaseEvent) {
    let action = ACTIONS[action % ACTIONS.len()];
    new_event(
        case,
        action,
        &actor(ROLES[role % ROLES.len()]),
        at,
        "原因",
        data_for(action),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random valid and invalid events on three offline replicas, merged in random orders:
    /// same derived state and the same conflicts everywhere, and no event lost.
    #[test]
    fn replicas_derive_the_same_state(
        steps in proptest::collection::vec((0usize..3, 0usize..23, 0usize..5, 0i64..100, any::<bool>(), 0usize..3, 0usize..3), 1..40)
    ) {
        let mut base = with_after_photo(case());
        base.source = CaseSource::Inspection;
        let origin = Document::create(DocId::new(), grid(), device(1), &base).expect("create");
        let bytes = origin.clone().save();
        let mut replicas: Vec<Document> = (0..3).map(|i| {
            let mut d = Document::load(&bytes).expect("load");
            d.set_device(device(10 + i));
            d
        }).collect();
        let mut written = Vec::new();
        for (r, action, role, minutes, sync, from, to) in steps {
            let at = T0 + minutes * 60_000;
            replicas[r].update::<Case>(|c| {
                let (id, e) = random_event(c, action, role, at);
                written.push(id);
                c.events.insert(id, e);
            }).expect("append");
            if sync && from != to {
                let b = replicas[from].save();
                replicas[to].load_incremental(&b).expect("merge");
            }
        }
        for _ in 0..2 {
            for i in 0..3 {
                let b = replicas[i].save();
                replicas[(i + 1) % 3].load_incremental(&b).expect("merge");
            }
        }
        let states: Vec<_> = replicas.iter().map(|d| derive(&d.read::<Case>().expect("read"))).collect();
        prop_assert_eq!(&states[0], &states[1]);
        prop_assert_eq!(&states[1], &states[2]);
        let events = replicas[0].read::<Case>().expect("read").events;
        for id in &written {
            prop_assert!(events.contains_key(id), "event {} lost", id);
        }
        prop_assert_eq!(states[0].applied.len() + states[0].conflicts.len(), written.len());
    }

    /// What the app offers a device (`available_actions`) is exactly what the fold would
    /// apply from it, for every role, all along random histories that take offered actions
    /// (so they go deep: dispatch, extensions, suspension, checks, follow-ups, reopening).
    #[test]
    fn the_actions_offered_are_exactly_those_the_fold_applies(
        steps in proptest::collection::vec((0usize..64, 0usize..5, 0i64..600), 1..40),
        source in 0usize..5,
    ) {
        let mut c = with_after_photo(case());
        c.source = [
            CaseSource::Inspection,
            CaseSource::Visit,
            CaseSource::Resident,
            CaseSource::Hotline12345,
            CaseSource::Assigned,
        ][source];
        let mut at = T0;
        for (pick, role, minutes) in steps {
            at += minutes * 60_000;
            let state = derive(&c);
            for r in ROLES {
                let who = actor(r);
                let offered = available_actions(&c, &state, r, who.dept.as_deref(), at);
                let applies: Vec<Action> = ACTIONS
                    .into_iter()
                    .filter(|a| {
                        let mut probe = c.clone();
                        act(&mut probe, *a, &who, at, "原因", data_for(*a)).is_ok()
                    })
                    .collect();
                prop_assert_eq!(&offered, &applies, "{} in {:?}", r, state.status);
            }
            let r = ROLES[role];
            let offered = available_actions(&c, &state, r, actor(r).dept.as_deref(), at);
            if let Some(a) = offered.get(pick % offered.len().max(1)) {
                prop_assert!(act(&mut c, *a, &actor(r), at, "原因", data_for(*a)).is_ok());
            }
        }
    }
}
