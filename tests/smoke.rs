use graph_lifecycle::*;

#[test]
fn force_restart_fails_inflight_import_and_refuses_stale_report() {
    let (engine, jobs) = Engine::builder().build();
    let key = GraphKey::parse("p1", "g1").unwrap();
    let events = engine.subscribe();
    engine.create_graph(&key).unwrap();
    engine.start(&key).unwrap();
    let start = jobs.try_recv().unwrap();
    engine.report(&start.task, Report::Succeeded).unwrap();
    engine.import(&key, "edges.csv").unwrap();
    let import = jobs.try_recv().unwrap();
    engine.report(&import.task, Report::Progress(30)).unwrap();
    let host = engine
        .register_task(&key, TaskSpec::new(HostKind::new("pagerank").unwrap()))
        .unwrap();
    let once = Some(RequestId::new("k1").unwrap());
    let r = engine.request(once.clone()).force_restart(&key).unwrap();
    assert_eq!(r.failed, 2);
    assert!(import.token.is_void() && host.token.is_void());
    let again = engine.request(once).force_restart(&key).unwrap();
    assert_eq!(again, r);
    let err = engine
        .report(&import.task, Report::Progress(40))
        .unwrap_err();
    assert_eq!(err.code(), "STALE_EPOCH");
    let restart = jobs.try_recv().unwrap();
    assert_eq!(restart.id(), r.job);
    assert!(jobs.try_recv().is_err());
    engine.report(&restart.task, Report::Succeeded).unwrap();
    assert_eq!(engine.state(&key).unwrap(), GraphState::Running);
    let t = engine.task(&key, import.id()).unwrap();
    assert_eq!(t.reason, Some(FailReason::ForceRestarted(r.job)));
    let all = engine.project_tasks(&key.project, &TaskQuery::new());
    assert_eq!(all.total, 4);
    let evs = events.drain();
    assert!(evs.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(evs.len() > 8, "{evs:#?}");
}
