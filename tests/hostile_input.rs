//! Malformed and hostile input: every case is a typed error, never a panic,
//! and leaves the engine exactly as it was.

use std::collections::BTreeSet;
use std::time::Duration;

use graph_lifecycle::*;

mod common;
use common::*;

/// Checks that the message names what the error is about.
#[track_caller]
fn names(err: &Error, key: Option<&GraphKey>, job: Option<JobId>, words: &[&str]) {
    let msg = err.to_string();
    if let Some(k) = key {
        assert!(
            msg.contains(&k.to_string()),
            "{msg:?} should name graph {k}"
        );
        assert_eq!(err.graph(), Some(k));
    }
    if let Some(j) = job {
        assert!(msg.contains(&j.to_string()), "{msg:?} should name job {j}");
    }
    for w in words {
        assert!(msg.contains(w), "{msg:?} should mention {w:?}");
    }
}

/// Inputs no id may accept.
fn hostile_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "a b",
        " a",
        "a ",
        "../x",
        "..",
        ".",
        "a/b",
        "/",
        "a\\b",
        "a\0b",
        "\0",
        "a\nb",
        "a\rb",
        "a\tb",
        "é",
        "graph-ü",
        "日本語",
        "🚀",
        "g🚀",
        "%2e%2e",
        "%2F",
        "a.b",
        "a:b",
        "a;b",
        "'; DROP TABLE graphs; --",
        "<script>",
        "\u{202e}gnp.exe",
        "\u{feff}a",
        "ａ",
        "a\u{301}",
        "~",
        "*",
        "$HOME",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("a".repeat(MAX_ID_LEN + 1));
    v.push("x".repeat(10 * 1024));
    v.push("é".repeat(40)); // 80 bytes, 40 characters
    v.push("\0".repeat(10 * 1024));
    v
}

#[test]
fn malformed_project_graph_and_task_kind_names_are_invalid_id_errors() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let before = rig.engine.snapshot();
    for s in hostile_names() {
        let cases: [(IdKind, Result<(), Error>); 6] = [
            (IdKind::Project, ProjectId::new(&s).map(drop)),
            (IdKind::Graph, GraphId::new(&s).map(drop)),
            (IdKind::Project, GraphKey::parse(&s, "g").map(drop)),
            (IdKind::Graph, GraphKey::parse("p", &s).map(drop)),
            (IdKind::Graph, s.parse::<GraphId>().map(drop)),
            (IdKind::TaskKind, HostKind::new(&s).map(drop)),
        ];
        for (kind, res) in cases {
            let err = res.expect_err(&format!("{s:?} must be refused"));
            let Error::InvalidId { kind: k2, .. } = &err else {
                panic!("{s:?}: {err:?}");
            };
            assert_eq!(*k2, kind, "{s:?}");
            assert_eq!(err.code(), "INVALID_ID");
            assert_eq!(err.http_status(), 400);
            assert_eq!(err.graph(), None);
            let msg = err.to_string();
            assert!(msg.contains(&kind.to_string()), "{msg}");
            // The message quotes the input safely: bounded, no raw control
            // characters, so it can go to a log line as it is.
            assert!(msg.len() < 300, "{} bytes: {msg:?}", msg.len());
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
        }
    }
    assert_eq!(rig.engine.snapshot(), before);
}

#[test]
fn ids_at_the_edges_of_the_rules_are_accepted_and_kept_apart() {
    let rig = Rig::new();
    let longest = "a".repeat(MAX_ID_LEN);
    for s in [longest.as_str(), "-", "_", "A-z_09", "G", "g"] {
        let k = key(s, s);
        assert_eq!(k.project.as_str(), s);
        rig.engine.create_graph(&k).unwrap();
        HostKind::new(s).unwrap();
    }
    // Case matters: "G" and "g" are two graphs.
    assert_eq!(rig.engine.graph_count(), 6);
    assert!(rig.engine.state(&key("G", "g")).is_err());
}

#[test]
fn malformed_job_ids_are_invalid_id_errors() {
    let good = "0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d";
    let mut bad: Vec<String> = [
        "",
        " ",
        "not-a-uuid",
        "0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0",
        "0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d0",
        "0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0g",
        "0190b6d-84f1e-7c3a-9d2b-5e6f7a8b9c0d",
        "0190b6d8_4f1e_7c3a_9d2b_5e6f7a8b9c0d",
        "{0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d",
        " 0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d",
        "0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d\n",
        "urn:uuid:zzzz",
        "０１９０b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d",
        "🚀🚀🚀🚀🚀🚀🚀🚀🚀",
        "\0\0\0\0\0\0\0\0-\0\0\0\0-\0\0\0\0-\0\0\0\0-\0\0\0\0\0\0\0\0\0\0\0\0",
        "../x",
        "%2e%2e",
        "-1",
        "0x0190b6d84f1e7c3a9d2b5e6f7a8b9c0d",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    bad.push("f".repeat(10 * 1024));
    bad.push(format!("{good}{good}"));
    for s in &bad {
        let err = JobId::parse(s).expect_err(s);
        assert!(
            matches!(
                err,
                Error::InvalidId {
                    kind: IdKind::Job,
                    ..
                }
            ),
            "{s:?}: {err:?}"
        );
        assert_eq!(s.parse::<JobId>(), Err(err.clone()));
        assert_eq!((err.code(), err.http_status()), ("INVALID_ID", 400));
        let msg = err.to_string();
        assert!(
            msg.len() < 300 && !msg.chars().any(char::is_control),
            "{msg:?}"
        );
    }
    // Well-formed ids parse, and show in their hyphenated form.
    let id = JobId::parse(good).unwrap();
    assert_eq!(id.to_string(), good);
    for form in [
        good.to_uppercase(),
        good.replace('-', ""),
        format!("{{{good}}}"),
        format!("urn:uuid:{good}"),
    ] {
        assert_eq!(JobId::parse(&form), Ok(id), "{form}");
    }
}

#[test]
fn unknown_job_ids_are_task_not_found_and_change_nothing() {
    let rig = Rig::new();
    let k = key("proj", "g");
    let sibling = key("proj", "sibling");
    rig.running(&k);
    rig.running(&sibling);
    let live = rig.host_task(&sibling, "algo");
    let strangers = [
        JobId::from_uuid(uuid_nil()),
        JobId::from_uuid(uuid_max()),
        JobId::parse("0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d").unwrap(),
        live.id(), // a real job, of another graph
    ];
    for id in strangers {
        let nf = Error::TaskNotFound {
            key: k.clone(),
            job: id,
        };
        let r = TaskRef::new(k.clone(), id, Epoch::ZERO);
        for report in [
            Report::Started,
            Report::Progress(5),
            Report::Succeeded,
            Report::Failed("x".into()),
        ] {
            let err = rig.refused(|e| e.report(&r, report.clone()));
            assert_eq!(err, nf);
        }
        assert_eq!(rig.refused(|e| e.cancel(&k, id)), nf);
        assert_eq!(rig.refused(|e| e.task(&k, id)), nf);
        assert_eq!((nf.code(), nf.http_status()), ("TASK_NOT_FOUND", 404));
        names(&nf, Some(&k), Some(id), &[]);
    }
    assert_eq!(
        rig.engine.task(&sibling, live.id()).unwrap().status,
        TaskStatus::Pending
    );
}

fn uuid_nil() -> uuid::Uuid {
    uuid::Uuid::nil()
}

fn uuid_max() -> uuid::Uuid {
    uuid::Uuid::max()
}

#[test]
fn progress_past_100_or_backwards_is_bad_progress_and_changes_nothing() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let t = rig.host_task(&k, "algo");
    for p in [101, 200, 255] {
        let err = rig.refused(|e| e.report(&t.task, Report::Progress(p)));
        assert_eq!(
            err,
            Error::BadProgress {
                key: k.clone(),
                job: t.id(),
                current: 0,
                reported: p
            }
        );
        assert_eq!((err.code(), err.http_status()), ("BAD_PROGRESS", 400));
        names(&err, Some(&k), Some(t.id()), &[&p.to_string()]);
    }
    // A refused progress report on a Pending task does not start it.
    assert_eq!(
        rig.engine.task(&k, t.id()).unwrap().status,
        TaskStatus::Pending
    );
    rig.engine.report(&t.task, Report::Progress(50)).unwrap();
    rig.engine.report(&t.task, Report::Progress(50)).unwrap();
    for p in [49, 0, 101] {
        let err = rig.refused(|e| e.report(&t.task, Report::Progress(p)));
        assert_eq!(
            err,
            Error::BadProgress {
                key: k.clone(),
                job: t.id(),
                current: 50,
                reported: p
            }
        );
    }
    rig.engine.report(&t.task, Report::Progress(100)).unwrap();
    let info = rig.engine.task(&k, t.id()).unwrap();
    assert_eq!((info.status, info.progress), (TaskStatus::Running, 100));
}

#[test]
fn reports_carrying_an_old_or_forged_epoch_are_refused_and_change_nothing() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let old_import = {
        rig.engine.import(&k, "a").unwrap();
        rig.job()
    };
    let old_host = rig.host_task(&k, "algo");
    let r = rig.engine.force_restart(&k).unwrap();
    let restart = rig.job();
    rig.engine.report(&restart.task, Report::Succeeded).unwrap();
    rig.engine.import(&k, "b").unwrap();
    let import = rig.job();
    assert_eq!(import.epoch(), Epoch(1));

    for old in [&old_import, &old_host] {
        for report in [Report::Started, Report::Progress(1), Report::Succeeded] {
            let err = rig.refused(|e| e.report(&old.task, report.clone()));
            assert_eq!(
                err,
                Error::StaleEpoch {
                    key: k.clone(),
                    job: old.id(),
                    reported: Epoch(0),
                    current: r.epoch
                }
            );
            assert_eq!((err.code(), err.http_status()), ("STALE_EPOCH", 409));
            names(&err, Some(&k), Some(old.id()), &[]);
        }
        let err = rig.refused(|e| e.cancel(&k, old.id()));
        assert_eq!(err.code(), "STALE_EPOCH");
    }
    // The live import's id with a forged epoch, older or newer.
    for epoch in [Epoch(0), Epoch(2), Epoch(u64::MAX)] {
        let forged = TaskRef::new(k.clone(), import.id(), epoch);
        let err = rig.refused(|e| e.report(&forged, Report::Succeeded));
        assert_eq!(err.code(), "STALE_EPOCH", "{epoch}: {err}");
        assert_eq!(err.http_status(), 409);
        names(&err, Some(&k), Some(import.id()), &[]);
    }
    assert!(!import.token.is_void());
    rig.engine.report(&import.task, Report::Succeeded).unwrap();
}

#[test]
fn double_completion_and_double_start_are_refused_and_change_nothing() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);

    let t = rig.host_task(&k, "algo");
    rig.engine.report(&t.task, Report::Started).unwrap();
    let err = rig.refused(|e| e.report(&t.task, Report::Started));
    assert_eq!(
        err,
        Error::ReportRefused {
            key: k.clone(),
            job: t.id(),
            status: TaskStatus::Running,
            report: "started".into()
        }
    );
    assert_eq!((err.code(), err.http_status()), ("REPORT_REFUSED", 409));
    names(&err, Some(&k), Some(t.id()), &["running", "started"]);

    // A progress report starts a Pending task; a Started after it is late.
    let p = rig.host_task(&k, "algo");
    rig.engine.report(&p.task, Report::Progress(10)).unwrap();
    assert_eq!(
        rig.refused(|e| e.report(&p.task, Report::Started)).code(),
        "REPORT_REFUSED"
    );

    rig.engine.report(&t.task, Report::Succeeded).unwrap();
    let done = rig.engine.task(&k, t.id()).unwrap();
    for report in [
        Report::Succeeded,
        Report::Failed("late".into()),
        Report::Started,
        Report::Progress(100),
    ] {
        let err = rig.refused(|e| e.report(&t.task, report.clone()));
        assert_eq!(
            err,
            Error::TaskTerminal {
                key: k.clone(),
                job: t.id(),
                status: TaskStatus::Succeeded
            }
        );
        assert_eq!((err.code(), err.http_status()), ("TASK_TERMINAL", 409));
        names(&err, Some(&k), Some(t.id()), &["succeeded"]);
    }
    assert_eq!(rig.engine.task(&k, t.id()).unwrap(), done);

    // A lifecycle job completed twice does not move the graph twice.
    rig.engine.import(&k, "x").unwrap();
    let import = rig.job();
    rig.engine
        .report(&import.task, Report::Failed("bad file".into()))
        .unwrap();
    assert_eq!(rig.engine.state(&k).unwrap(), GraphState::Running);
    let err = rig.refused(|e| e.report(&import.task, Report::Succeeded));
    assert_eq!(err.code(), "TASK_TERMINAL");
    names(&err, Some(&k), Some(import.id()), &["failed"]);
}

#[test]
fn cancelling_a_terminal_task_is_refused_and_changes_nothing() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let a = rig.host_task(&k, "algo");
    rig.engine.report(&a.task, Report::Succeeded).unwrap();
    let b = rig.host_task(&k, "algo");
    rig.engine.cancel(&k, b.id()).unwrap();
    let c = rig.host_task(&k, "algo");
    rig.engine
        .report(&c.task, Report::Failed("x".into()))
        .unwrap();
    for (job, status) in [
        (&a, TaskStatus::Succeeded),
        (&b, TaskStatus::Cancelled),
        (&c, TaskStatus::Failed),
    ] {
        let err = rig.refused(|e| e.cancel(&k, job.id()));
        assert_eq!(
            err,
            Error::TaskTerminal {
                key: k.clone(),
                job: job.id(),
                status
            }
        );
        names(&err, Some(&k), Some(job.id()), &[status.name()]);
    }
    assert!(!a.token.is_void());
}

#[test]
fn a_removed_graph_is_not_found_everywhere_and_its_handle_reads_none() {
    let rig = Rig::new();
    let k = key("proj", "g");
    rig.running(&k);
    let handle = rig.engine.graph(&k).unwrap();
    assert!(handle.serves_queries());
    let host = rig.host_task(&k, "algo");
    rig.engine.stop(&k).unwrap();
    let stop = rig.job();
    rig.engine.report(&stop.task, Report::Succeeded).unwrap();
    rig.engine.remove_graph(&k).unwrap();
    assert!(
        host.token.is_void(),
        "live tasks of a removed graph go void"
    );
    assert_eq!(handle.state(), None);
    assert_eq!(handle.status(), None);
    assert!(!handle.serves_queries());
    assert_eq!(handle.key(), &k);

    let nf = Error::GraphNotFound { key: k.clone() };
    assert_eq!(rig.refused(|e| e.state(&k)), nf);
    assert_eq!(rig.refused(|e| e.graph(&k).map(|h| h.state())), nf);
    assert_eq!(rig.refused(|e| e.graph_info(&k)), nf);
    assert_eq!(rig.refused(|e| e.tasks(&k, &TaskQuery::new())), nf);
    assert_eq!(rig.refused(|e| e.task(&k, host.id())), nf);
    assert_eq!(rig.refused(|e| e.remove_graph(&k)), nf);
    for op in [
        Operation::Start,
        Operation::Stop,
        Operation::Import,
        Operation::Export,
        Operation::Clear,
        Operation::ForceRestart,
    ] {
        let err = rig.refused(|e| match op {
            Operation::Start => e.start(&k),
            Operation::Stop => e.stop(&k),
            Operation::Import => e.import(&k, "x"),
            Operation::Export => e.export(&k, "x"),
            Operation::Clear => e.clear(&k, false),
            _ => e.force_restart(&k).map(|r| r.job),
        });
        assert_eq!(err, nf, "{op}");
    }
    assert_eq!(
        rig.refused(|e| e
            .register_task(&k, TaskSpec::new(HostKind::new("a").unwrap()))
            .map(|j| j.id())),
        nf
    );
    for job in [&host, &stop] {
        assert_eq!(rig.refused(|e| e.report(&job.task, Report::Succeeded)), nf);
        assert_eq!(rig.refused(|e| e.cancel(&k, job.id())), nf);
    }
    assert_eq!((nf.code(), nf.http_status()), ("GRAPH_NOT_FOUND", 404));
    names(&nf, Some(&k), None, &[]);
    assert_eq!(rig.engine.graphs(&k.project, 0, 10).total, 0);
    assert_eq!(
        rig.engine
            .project_tasks(&k.project, &TaskQuery::new())
            .total,
        0
    );

    // A graph created again under the key is a new graph: the old handle
    // does not see it, and the old tasks are not in it.
    let fresh = rig.engine.create_graph(&k).unwrap();
    assert_eq!(fresh.state(), Some(GraphState::Stopped));
    assert_eq!(handle.state(), None);
    assert_eq!(
        rig.refused(|e| e.task(&k, host.id())).code(),
        "TASK_NOT_FOUND"
    );
    assert_eq!(
        rig.refused(|e| e.report(&host.task, Report::Succeeded))
            .code(),
        "TASK_NOT_FOUND"
    );
}

#[test]
fn oversized_payloads_and_messages_are_invalid_argument_and_bad_request_ids_invalid_id() {
    let cfg = Config {
        max_payload_bytes: 1024,
        max_message_bytes: 128,
        ..Config::default()
    };
    let rig = Rig::with(cfg);
    let k = key("proj", "g");
    let stopped = key("proj", "stopped");
    rig.engine.create_graph(&stopped).unwrap();
    rig.running(&k);
    let big = |n: usize| Payload::new(vec![0xAB; n]);
    for n in [1025, 10 * 1024, 1 << 20] {
        let checks: [Error; 4] = [
            rig.refused(|e| e.import(&k, big(n))),
            rig.refused(|e| e.export(&k, big(n))),
            rig.refused(|e| e.start_with(&stopped, big(n))),
            rig.refused(|e| {
                e.register_task(
                    &k,
                    TaskSpec::new(HostKind::new("a").unwrap()).payload(big(n)),
                )
                .map(|j| j.id())
            }),
        ];
        for err in checks {
            assert!(
                matches!(
                    err,
                    Error::InvalidArgument { ref what, .. } if what == "payload"
                ),
                "{err:?}"
            );
            assert_eq!((err.code(), err.http_status()), ("INVALID_ARGUMENT", 400));
            assert!(err.to_string().contains("payload"));
        }
    }
    // At the bound it is accepted, and handed back intact.
    rig.engine.import(&k, big(1024)).unwrap();
    let import = rig.job();
    assert_eq!(import.payload.as_bytes(), &vec![0xAB; 1024][..]);

    let t = rig.host_task(&k, "algo");
    for msg in ["x".repeat(129), "é".repeat(65), "x".repeat(10 * 1024)] {
        let err = rig.refused(|e| e.report(&t.task, Report::Failed(msg.clone())));
        assert!(
            matches!(
                err,
                Error::InvalidArgument { ref what, .. } if what == "failure message"
            ),
            "{err:?}"
        );
        assert!(err.to_string().len() < 300);
    }
    // Hostile but bounded text is the host's business: stored verbatim.
    let odd = "line\nbreak \0 nul 🚀 ../x %2e".to_string();
    rig.engine
        .report(&t.task, Report::Failed(odd.clone()))
        .unwrap();
    assert_eq!(
        rig.engine.task(&k, t.id()).unwrap().reason,
        Some(FailReason::Host(odd.as_str().into()))
    );
    let u = rig.host_task(&k, "algo");
    rig.engine
        .report(&u.task, Report::Failed("x".repeat(128)))
        .unwrap();

    // Request ids: bounded printable ASCII; anything else is refused
    // before it reaches the engine.
    for bad in [
        "k".repeat(257),
        "k".repeat(10 * 1024),
        "é".repeat(129),
        "tab\there".to_string(),
        "nul\0".to_string(),
        "🚀".to_string(),
        String::new(),
    ] {
        let err = RequestId::new(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidId {
                    kind: IdKind::Request,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 400);
        assert!(err.to_string().len() < 300);
    }
    for ok in [
        "k".repeat(256),
        " ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}".to_string(),
    ] {
        let id = RequestId::new(&ok).unwrap();
        let r = rig
            .engine
            .request(Some(id.clone()))
            .force_restart(&k)
            .unwrap();
        assert_eq!(rig.job().id(), r.job);
        let again = rig.unchanged(|e| e.request(Some(id.clone())).force_restart(&k));
        assert_eq!(again, r);
    }
}

/// An id source that repeats itself: the engine must refuse, not corrupt.
struct Stuck(JobId);

impl IdSource for Stuck {
    fn next_id(&self, _now: Timestamp) -> JobId {
        self.0
    }
}

#[test]
fn a_repeating_id_source_gives_duplicate_job_id_and_changes_nothing() {
    let stuck = JobId::parse("0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d").unwrap();
    let (engine, jobs) = Engine::builder().ids(Stuck(stuck)).build();
    let k = key("proj", "g");
    engine.create_graph(&k).unwrap();
    engine.start(&k).unwrap();
    let start = jobs.try_recv().unwrap();
    engine.report(&start.task, Report::Succeeded).unwrap();
    let before = engine.snapshot();
    let dup = Error::DuplicateJobId {
        key: k.clone(),
        job: stuck,
    };
    assert_eq!(engine.import(&k, "x"), Err(dup.clone()));
    assert_eq!(engine.stop(&k), Err(dup.clone()));
    assert_eq!(engine.force_restart(&k).map(|r| r.job), Err(dup.clone()));
    assert_eq!(
        engine
            .register_task(&k, TaskSpec::new(HostKind::new("a").unwrap()))
            .map(|j| j.id()),
        Err(dup.clone())
    );
    assert_eq!(engine.snapshot(), before);
    assert!(jobs.is_empty());
    assert_eq!((dup.code(), dup.http_status()), ("DUPLICATE_JOB_ID", 500));
    names(&dup, Some(&k), Some(stuck), &[]);
}

#[test]
fn extreme_times_epochs_and_pages_are_handled_without_panic() {
    let rig = Rig::with(
        Config::default()
            .timeout(LifecycleKind::Start, Some(Duration::MAX))
            .timeout(LifecycleKind::Import, Some(Duration::from_secs(1)))
            .retention_age(None),
    );
    rig.clock.set(Timestamp::from_millis(u64::MAX - 5));
    let end_of_time = Timestamp::from_millis(u64::MAX);
    let (k, g) = (key("proj", "k"), key("proj", "g"));

    // A deadline that saturates at the end of time is still a deadline:
    // it is announced, and an expiry at that time honours it.
    rig.engine.create_graph(&k).unwrap();
    rig.engine.start(&k).unwrap();
    let stuck = rig.job();
    assert_eq!(
        rig.engine.task(&k, stuck.id()).unwrap().deadline,
        Some(end_of_time)
    );
    assert!(rig.engine.next_deadline().is_some());
    assert_eq!(rig.engine.expire(rig.clock.now()), (0, 0));
    assert_eq!(rig.engine.expire(end_of_time), (1, 0));
    assert!(stuck.token.is_void());
    assert_eq!(rig.engine.state(&k).unwrap(), GraphState::Abnormal);

    rig.engine.create_graph(&g).unwrap();
    rig.engine.start(&g).unwrap();
    let start = rig.job();
    rig.engine.report(&start.task, Report::Succeeded).unwrap();
    rig.engine.import(&g, "x").unwrap();
    let import = rig.job();
    assert_eq!(rig.engine.expire(end_of_time), (1, 0));
    assert!(import.token.is_void());
    assert_eq!(rig.engine.state(&g).unwrap(), GraphState::Abnormal);
    assert_eq!(rig.engine.expire(Timestamp::ZERO), (0, 0));
    let k = g;

    let q = TaskQuery::new()
        .offset(usize::MAX)
        .limit(usize::MAX)
        .since(Timestamp::from_millis(u64::MAX))
        .until(Timestamp::ZERO);
    assert_eq!(rig.engine.tasks(&k, &q).unwrap().total, 0);
    let q = TaskQuery::new().offset(usize::MAX).limit(usize::MAX);
    let page = rig.engine.tasks(&k, &q).unwrap();
    assert_eq!((page.total, page.items.len()), (2, 0));
    assert_eq!(
        rig.engine
            .project_tasks(&k.project, &TaskQuery::new().limit(usize::MAX))
            .total,
        3
    );
    assert_eq!(
        rig.engine.graphs(&k.project, usize::MAX, usize::MAX).total,
        2
    );
    assert!(
        rig.engine
            .graphs(&k.project, usize::MAX, 1)
            .items
            .is_empty()
    );

    let forged = TaskRef::new(k.clone(), import.id(), Epoch(u64::MAX));
    assert!(
        rig.refused(|e| e.report(&forged, Report::Succeeded))
            .http_status()
            >= 400
    );
}

#[test]
fn degenerate_configurations_give_typed_errors_not_panics() {
    let cfg = Config::default()
        .shards(0)
        .event_buffer(0)
        .max_retained_per_graph(0);
    let rig = Rig::with(cfg);
    let sub = rig.engine.subscribe();
    let k = key("proj", "g");
    rig.running(&k);
    // Nothing terminal is retained.
    assert_eq!(rig.engine.tasks(&k, &TaskQuery::new()).unwrap().total, 0);
    let wait = Duration::from_secs(5);
    assert_eq!(sub.recv_timeout(wait).unwrap().change, Change::GraphCreated);
    assert!(matches!(
        sub.recv_timeout(wait),
        Err(EventError::Lagged { .. })
    ));

    let rig = Rig::with(Config::default().max_graphs(0));
    assert_eq!(
        rig.refused(|e| e.create_graph(&key("p", "g")).map(|h| h.state())),
        Error::TooManyGraphs {
            key: key("p", "g"),
            limit: 0
        }
    );

    let rig = Rig::with(Config::default().max_live_tasks_per_graph(0));
    let k = key("p", "g");
    rig.engine.create_graph(&k).unwrap();
    assert_eq!(
        rig.refused(|e| e.start(&k)),
        Error::TooManyTasks {
            key: k.clone(),
            limit: 0
        }
    );
}

/// `docs/CONTRACT.md` section 9: every variant's stable code and HTTP status, written
/// out. Not found is 404; a refused transition or a malformed argument 400;
/// a conflict 409; a cap 429 or 503; an internal fault 500.
const CONTRACT_CODES: &[(&str, &[u16])] = &[
    ("INVALID_ID", &[400]),
    ("INVALID_ARGUMENT", &[400]),
    ("GRAPH_NOT_FOUND", &[404]),
    ("TASK_NOT_FOUND", &[404]),
    ("GRAPH_EXISTS", &[409]),
    ("TRANSITION_REFUSED", &[400]),
    ("NOT_STOPPABLE", &[400]),
    ("BAD_PROGRESS", &[400]),
    ("TASK_TERMINAL", &[409]),
    ("STALE_EPOCH", &[409]),
    ("REPORT_REFUSED", &[409]),
    ("TOO_MANY_GRAPHS", &[429, 503]),
    ("TOO_MANY_TASKS", &[429, 503]),
    ("NO_JOB_RECEIVER", &[503]),
    ("SHUT_DOWN", &[503]),
    ("DUPLICATE_JOB_ID", &[500]),
    ("REQUEST_ID_REUSED", &[409]),
    ("PROJECT_QUOTA", &[429]),
    ("COMMIT_LOG_FAILED", &[503]),
];

/// A commit log that refuses every command, as a failed journal does.
struct Failed;

impl CommitLog for Failed {
    type Pending<'a> = ();
    fn prepare(&self, _: &Command) -> Result<(), LogError> {
        Err(LogError::new(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left on the device",
        )))
    }
    fn append(&self, (): &mut (), _: &Result<Outcome, Error>) {}
    fn finish(&self, (): ()) -> Result<(), LogError> {
        Ok(())
    }
}

#[test]
fn every_error_variant_has_the_contract_code_http_status_and_a_message_naming_what_is_involved() {
    let rig = Rig::with(Config::default().max_graphs(3).max_live_tasks_per_graph(2));
    let k = key("proj", "g");
    let other = key("proj", "other");
    rig.running(&k);
    rig.engine.create_graph(&other).unwrap();
    let mut seen: Vec<Error> = Vec::new();

    seen.push(GraphKey::parse("a/b", "g").unwrap_err());
    seen.push(rig.refused(|e| e.import(&k, vec![0u8; (1 << 20) + 1])));
    let missing = key("proj", "missing");
    let err = rig.refused(|e| e.start(&missing));
    names(&err, Some(&missing), None, &[]);
    seen.push(err);
    let err = rig.refused(|e| e.create_graph(&k).map(|h| h.state()));
    names(&err, Some(&k), None, &[]);
    seen.push(err);
    let ghost = JobId::parse("0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0d").unwrap();
    let err = rig.refused(|e| e.task(&k, ghost));
    names(&err, Some(&k), Some(ghost), &[]);
    seen.push(err);
    let err = rig.refused(|e| e.start(&k));
    names(&err, Some(&k), None, &["running", "start"]);
    seen.push(err);

    let t = rig.host_task(&k, "algo");
    rig.engine.report(&t.task, Report::Progress(20)).unwrap();
    let err = rig.refused(|e| e.report(&t.task, Report::Progress(10)));
    names(&err, Some(&k), Some(t.id()), &["10", "20"]);
    seen.push(err);
    let err = rig.refused(|e| e.report(&t.task, Report::Started));
    names(&err, Some(&k), Some(t.id()), &["running"]);
    seen.push(err);
    let fixed = rig
        .engine
        .register_task(
            &k,
            TaskSpec::new(HostKind::new("pinned").unwrap()).stoppable(false),
        )
        .unwrap();
    let err = rig.refused(|e| e.cancel(&k, fixed.id()));
    names(&err, Some(&k), Some(fixed.id()), &["pinned"]);
    seen.push(err);
    let err = rig.refused(|e| e.import(&k, "x"));
    names(&err, Some(&k), None, &["2"]);
    seen.push(err);
    rig.engine.report(&t.task, Report::Succeeded).unwrap();
    let err = rig.refused(|e| e.cancel(&k, t.id()));
    names(&err, Some(&k), Some(t.id()), &["succeeded"]);
    seen.push(err);

    let r = rig.engine.force_restart(&k).unwrap();
    let _ = rig.job();
    let err = rig.refused(|e| e.report(&fixed.task, Report::Succeeded));
    names(
        &err,
        Some(&k),
        Some(fixed.id()),
        &["0", &r.epoch.to_string()],
    );
    seen.push(err);

    rig.engine.create_graph(&key("proj", "third")).unwrap();
    let fourth = key("proj", "fourth");
    let err = rig.refused(|e| e.create_graph(&fourth).map(|h| h.state()));
    names(&err, Some(&fourth), None, &["3"]);
    seen.push(err);

    let Rig { engine, jobs, .. } = rig;
    drop(jobs);
    let before = engine.snapshot();
    let err = engine.start(&other).unwrap_err();
    assert_eq!(engine.snapshot(), before);
    names(&err, Some(&other), None, &["start"]);
    seen.push(err);

    let (closed, _jobs) = Engine::builder().build();
    closed.create_graph(&k).unwrap();
    closed.shutdown();
    let before = closed.snapshot();
    let err = closed.start(&k).unwrap_err();
    assert_eq!(closed.snapshot(), before);
    names(&err, Some(&k), None, &["start"]);
    seen.push(err);

    let stuck = JobId::parse("0190b6d8-4f1e-7c3a-9d2b-5e6f7a8b9c0e").unwrap();
    let (dup_engine, _jobs) = Engine::builder().ids(Stuck(stuck)).build();
    dup_engine.create_graph(&k).unwrap();
    dup_engine.start(&k).unwrap();
    let err = dup_engine.force_restart(&k).unwrap_err();
    names(&err, Some(&k), Some(stuck), &[]);
    seen.push(err);

    let (engine, _jobs) = Engine::builder().build();
    engine.create_graph(&k).unwrap();
    let id = RequestId::new("once").unwrap();
    engine.request(Some(id.clone())).start(&k).unwrap();
    let before = engine.image().encode();
    let err = engine.request(Some(id)).stop(&k).unwrap_err();
    assert!(engine.image().encode() == before);
    names(&err, Some(&k), None, &["once", "start", "stop"]);
    seen.push(err);

    let (quota, _jobs) = Engine::builder()
        .config(Config::default().max_graphs_per_project(1))
        .build();
    quota.create_graph(&k).unwrap();
    let second = key("proj", "second");
    let err = quota.create_graph(&second).unwrap_err();
    names(&err, Some(&second), None, &["proj", "1", "quota"]);
    assert!(quota.create_graph(&key("elsewhere", "g")).is_ok());
    seen.push(err);

    let (failing, _jobs) = Engine::builder().log(Failed).build();
    let err = failing.create_graph(&k).unwrap_err();
    assert_eq!(failing.graph_count(), 0);
    names(&err, Some(&k), None, &["no space left"]);
    let Error::CommitLog { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        source
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind),
        Some(std::io::ErrorKind::StorageFull)
    );
    seen.push(err);

    let codes: BTreeSet<&str> = seen.iter().map(Error::code).collect();
    assert_eq!(
        codes.len(),
        CONTRACT_CODES.len(),
        "one case per variant: {codes:?}"
    );
    for err in &seen {
        let (_, statuses) = CONTRACT_CODES
            .iter()
            .find(|(c, _)| *c == err.code())
            .unwrap_or_else(|| {
                panic!(
                    "{} is not a code of `docs/CONTRACT.md` section 9",
                    err.code()
                )
            });
        assert!(
            statuses.contains(&err.http_status()),
            "{}: {} not in {statuses:?}",
            err.code(),
            err.http_status()
        );
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn after_shutdown_job_emitting_operations_are_refused_and_change_nothing() {
    let rig = Rig::new();
    let (k, stopped) = (key("proj", "g"), key("proj", "stopped"));
    rig.running(&k);
    rig.engine.create_graph(&stopped).unwrap();
    let host = rig.host_task(&k, "algo");
    rig.engine.import(&k, "x").unwrap();
    let import = rig.job();
    rig.engine.shutdown();
    let cases: [(&GraphKey, Operation); 6] = [
        (&stopped, Operation::Start),
        (&k, Operation::Stop),
        (&k, Operation::Import),
        (&k, Operation::Export),
        (&k, Operation::Clear),
        (&k, Operation::ForceRestart),
    ];
    for (g, op) in cases {
        let err = rig.refused(|e| match op {
            Operation::Start => e.start(g),
            Operation::Stop => e.stop(g),
            Operation::Import => e.import(g, "y"),
            Operation::Export => e.export(g, "y"),
            Operation::Clear => e.clear(g, true),
            _ => e.force_restart(g).map(|r| r.job),
        });
        assert_eq!(err, Error::ShutDown { key: g.clone(), op }, "{op}");
        assert_eq!((err.code(), err.http_status()), ("SHUT_DOWN", 503));
        names(&err, Some(g), None, &[op.name()]);
    }
    // Workers can still finish and report what they hold.
    rig.engine.report(&import.task, Report::Succeeded).unwrap();
    rig.engine.report(&host.task, Report::Succeeded).unwrap();
    assert_eq!(rig.engine.state(&k).unwrap(), GraphState::Running);
    assert!(rig.jobs.recv_timeout(Duration::from_secs(5)).is_err());
}
