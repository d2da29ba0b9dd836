//! Hardening: each defect the outside attack found, against real processes.
//! Writes during jobs stay written and counted; joins near the first write
//! never hide atoms; bad registrations, abusive inputs and host paths are
//! refused with every process still up; deterministic job errors are
//! reported once; `up` brings its coordinator back; a Down shard fails a
//! read within the stated budget.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use lockstep::Client;
use lockstep::cluster::spawn_server;
use lockstep::model::atom::AtomRecord;
use lockstep::model::{Atom, AtomType, AttentionValue, Handle};
use lockstep::proto::pb::Liveness;
use lockstep::proto::pb::{self, coordinator_client::CoordinatorClient, shard_client::ShardClient};
use tonic::Code;

use crate::ticks::spec;
use crate::util::{TestCluster, UpProcess, exe, follow, lockstep, lockstep_env, text, wait_for};

fn concept(name: &str) -> Atom {
    Atom::node(AtomType::by_name("ConceptNode").unwrap(), name).unwrap()
}

fn with_av(mut a: Atom, sti: f64) -> Atom {
    a.av = Some(AttentionValue::new(sti, 1.0).unwrap());
    a
}

/// Everything the cluster holds, by a scan of every type.
async fn scan_all(client: &Client) -> HashMap<Handle, AtomRecord> {
    let mut out = HashMap::new();
    let registered = client.refresh().await.unwrap().topology.registered_types();
    let types: Vec<&'static AtomType> = AtomType::builtins().chain(registered).collect();
    let mut scan = client.scan(&types, None).unwrap();
    while let Some(r) = scan.next().await.unwrap() {
        out.insert(r.handle, r);
    }
    out
}

/// Checks the store against a scan: the shards' counters (atoms per type,
/// incoming entries) equal what a scan finds, and no link points at a
/// missing atom. Returns the scan.
async fn check_counters_and_links(client: &Client) -> HashMap<Handle, AtomRecord> {
    let all = scan_all(client).await;
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut incoming = 0u64;
    for r in all.values() {
        *by_type.entry(r.ty.name.to_string()).or_default() += 1;
        let mut targets = r.outgoing.clone();
        targets.sort();
        targets.dedup();
        for t in &targets {
            assert!(
                all.contains_key(t),
                "{} {} points at missing atom {t}",
                r.ty.name,
                r.handle
            );
        }
        incoming += targets.len() as u64;
    }
    let total = all.len() as u64;
    wait_for(
        "the shards' counters to equal a scan",
        Duration::from_secs(30),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            let mut counted: BTreeMap<String, u64> = BTreeMap::new();
            let mut inc = 0;
            for s in &st.shards {
                let m = s.metrics.clone().unwrap_or_default();
                inc += m.incoming;
                for (t, n) in m.type_counts {
                    *counted.entry(t).or_default() += n;
                }
            }
            if counted == by_type && inc == incoming && st.total_atoms == total {
                Ok(())
            } else {
                Err(format!(
                    "counters {counted:?} / {inc} incoming against scan {by_type:?} / {incoming}"
                ))
            }
        },
    )
    .await;
    all
}

/// Client writes, each acknowledged before the next, until `stop` flips:
/// attention values on atoms the job also writes, atoms of the client's own
/// that it creates and deletes, and deletes of atoms the job links to.
/// Returns the last acknowledged AV per handle and the client's own atoms
/// that should exist.
async fn write_while(
    client: &Client,
    targets: &[Atom],
    stop: tokio::sync::watch::Receiver<bool>,
) -> (HashMap<Handle, f64>, Vec<Handle>, usize) {
    let mut avs = HashMap::new();
    let mut mine = Vec::new();
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..100_000usize {
        if *stop.borrow() || Instant::now() > deadline {
            break;
        }
        let t = &targets[i % targets.len()];
        let sti = i as f64 + 0.5;
        client.put(&[with_av(t.clone(), sti)]).await.unwrap();
        avs.insert(t.handle(), sti);
        let own = concept(&format!("client-{i}"));
        client.put(std::slice::from_ref(&own)).await.unwrap();
        if i % 3 == 0 {
            client.delete(own.handle(), false).await.unwrap();
        } else {
            mine.push(own.handle());
        }
        // A job's target, deleted when nothing (stored or prepared) links
        // to it; refused otherwise. Either way no link may dangle.
        let victim = &targets[(i * 7 + 3) % targets.len()];
        if client.delete(victim.handle(), false).await.is_err() {
            refused += 1;
        } else {
            avs.remove(&victim.handle());
        }
    }
    (avs, mine, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_writes_during_ingest_and_tfidf_jobs_are_kept_counted_and_never_dangle() {
    let docs = tempfile::tempdir().unwrap();
    let words = ["cat", "dog", "mat", "zebra", "food", "happy"];
    for i in 0..6 {
        let body: Vec<&str> = words.iter().cycle().skip(i).take(9).copied().collect();
        std::fs::write(docs.path().join(format!("d{i}.txt")), body.join(" ")).unwrap();
    }
    let args = vec![
        "--fault-commit-delay-ms".to_string(),
        "150".into(),
        "--import-dir".into(),
        docs.path().display().to_string(),
    ];
    let tc = TestCluster::start_with(2, args).await;
    let client = tc.client().await;

    // ingest: the generated nodes are the client's targets.
    let generated = lockstep::input::generate::generate(3_000, 5);
    let nodes: Vec<Atom> = generated
        .iter()
        .filter(|a| a.outgoing.is_empty())
        .cloned()
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let job = async {
        let ev = follow(
            &client,
            spec(
                "ingest",
                6,
                &[("generate", "3000"), ("seed", "5"), ("batch", "500")],
            ),
            |_| {},
        )
        .await;
        let _ = stop_tx.send(true);
        ev
    };
    let (events, (avs, mine, refused)) = tokio::join!(job, write_while(&client, &nodes, stop_rx));
    let last = events.last().unwrap();
    assert_eq!(
        last.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        last.message
    );
    let all = check_counters_and_links(&client).await;
    let mut kept = 0;
    for (h, sti) in &avs {
        let got = all.get(h).map(|r| r.av.sti);
        assert_eq!(got, Some(*sti), "acknowledged AV of {h} lost");
        kept += 1;
    }
    for h in &mine {
        assert!(all.contains_key(h), "the client's atom {h} is gone");
    }
    assert!(
        kept > 0 && !mine.is_empty(),
        "the writer ran: {kept} AVs, {refused} refused deletes"
    );
    // Nothing of the input is missing (deleted nodes come back with the
    // tick that links to them, or stay deleted if none does).
    let links = generated.iter().filter(|a| !a.outgoing.is_empty());
    for l in links {
        assert!(all.contains_key(&l.handle()), "generated link missing");
    }

    // tfidf: the client gives the job's WordNodes attention values first
    // and goes on writing while the job runs.
    let word_atoms: Vec<Atom> = words
        .iter()
        .map(|w| Atom::node(AtomType::by_name("WordNode").unwrap(), *w).unwrap())
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let job = async {
        let ev = follow(&client, spec("tfidf", 3, &[("docs", ".")]), |_| {}).await;
        let _ = stop_tx.send(true);
        ev
    };
    let (events, (avs, mine, _)) = tokio::join!(job, write_while(&client, &word_atoms, stop_rx));
    let last = events.last().unwrap();
    assert_eq!(
        last.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        last.message
    );
    let all = check_counters_and_links(&client).await;
    for (h, sti) in &avs {
        assert_eq!(
            all.get(h).map(|r| r.av.sti),
            Some(*sti),
            "AV of word {h} lost"
        );
    }
    for h in &mine {
        assert!(all.contains_key(h), "the client's atom {h} is gone");
    }
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_joins_around_the_first_write_leave_every_atom_readable() {
    let tc = TestCluster::start(1).await;
    let client = tc.client().await;
    let specs: Vec<(Vec<String>, std::path::PathBuf)> = (0..20)
        .map(|i| {
            let (mut args, log) = tc.extra_shard(&format!("late-{i}"));
            args.extend(["--block-cache-mb".into(), "8".into()]);
            (args, log)
        })
        .collect();
    let bin = exe();
    let spawn = |range: std::ops::Range<usize>| {
        futures::future::join_all(
            specs[range]
                .iter()
                .map(|(a, log)| spawn_server(&bin, a, log, Duration::from_secs(60))),
        )
    };
    // Ten shards start together; the first write goes out as soon as the
    // first of them has registered, so the other nine join around it.
    // Ten more start the moment that write is acknowledged: they must all
    // be Joining.
    let atoms: Vec<Atom> = (0..2_000).map(|i| concept(&format!("j{i}"))).collect();
    let (first_ten, second_ten) = tokio::join!(spawn(0..10), async {
        wait_for(
            "a late shard to register",
            Duration::from_secs(60),
            || async {
                let st = client.status().await.map_err(|e| e.to_string())?;
                if st.shards.len() > 1 {
                    Ok(())
                } else {
                    Err(format!("{} shards", st.shards.len()))
                }
            },
        )
        .await;
        let mut chunks = atoms.chunks(50);
        if let Some(first) = chunks.next() {
            client.put(first).await.unwrap();
        }
        let (late, ()) = tokio::join!(spawn(10..20), async {
            for chunk in chunks {
                client.put(chunk).await.unwrap();
            }
        });
        late
    });
    let mut children: Vec<_> = first_ten
        .into_iter()
        .chain(second_ten)
        .map(|c| c.unwrap().0)
        .collect();
    wait_for(
        "all 21 shards registered",
        Duration::from_secs(60),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            if st.shards.len() == 21 {
                Ok(())
            } else {
                Err(format!("{} shards", st.shards.len()))
            }
        },
    )
    .await;
    let fresh = Client::connect(&tc.addr()).await.unwrap();
    let handles: Vec<Handle> = atoms.iter().map(Atom::handle).collect();
    let got = fresh.get(&handles).await.unwrap();
    let missing = got.iter().filter(|r| r.is_none()).count();
    assert_eq!(
        missing, 0,
        "{missing} of 2000 acknowledged atoms unreadable"
    );
    let st = fresh.status().await.unwrap();
    let joining = st
        .shards
        .iter()
        .filter(|s| !s.shard.as_ref().unwrap().in_ring)
        .count();
    assert!(st.has_data && joining >= 10, "{joining} shards Joining");
    for c in &mut children {
        let _ = c.kill().await;
    }
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_registration_is_refused_and_remove_takes_a_joining_shard_out() {
    let tc = TestCluster::start(1).await;
    let client = tc.client().await;
    let mut coord = CoordinatorClient::connect(format!("http://{}", tc.addr()))
        .await
        .unwrap();
    let register = |address: &str| pb::RegisterRequest {
        shard_id: None,
        address: address.into(),
        weight: 1.0,
        cluster_id: String::new(),
        metrics: None,
    };
    let st = coord.register(register("a b")).await.unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains("\"a b\""), "{}", st.message());
    // Parses, but nothing answers there.
    let st = coord.register(register("127.0.0.1:1")).await.unwrap_err();
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(
        st.message().contains("cannot be reached"),
        "{}",
        st.message()
    );
    assert_eq!(client.status().await.unwrap().shards.len(), 1);

    // Data, then a late shard: Joining, and removable; the data-holding
    // ring member is not.
    client.put(&[concept("x")]).await.unwrap();
    let mut late = tc.start_extra_shard("late").await;
    let joining = wait_for(
        "the late shard to register",
        Duration::from_secs(30),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            st.shards
                .iter()
                .filter_map(|s| s.shard.clone())
                .find(|e| !e.in_ring)
                .map(|e| e.id)
                .ok_or_else(|| format!("{} shards", st.shards.len()))
        },
    )
    .await;
    late.kill().await.unwrap();
    let out = lockstep(&["--coordinator", &tc.addr(), "remove", &joining.to_string()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("removed shard-{joining}")));
    let member = client.routing().topology.shards[0].id.0.to_string();
    let out = lockstep(&["--coordinator", &tc.addr(), "remove", &member]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot be removed") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(client.status().await.unwrap().shards.len(), 1);
    let events = follow(&client, spec("attention", 2, &[]), |_| {}).await;
    assert_eq!(
        events.last().unwrap().kind(),
        lockstep::proto::pb::JobEventKind::Finished
    );
    tc.cluster.shutdown().await;
}

/// Runs a job that must fail at once with `needle` in its one message.
async fn fails_once(client: &Client, job: pb::JobSpec, needle: &str) {
    let started = Instant::now();
    let events = follow(client, job, |_| {}).await;
    let last = events.last().unwrap();
    assert_eq!(
        last.kind(),
        lockstep::proto::pb::JobEventKind::Failed,
        "{}",
        last.message
    );
    assert!(last.message.contains(needle), "{}", last.message);
    assert_eq!(last.message.matches(needle).count(), 1, "{}", last.message);
    assert!(
        !events
            .iter()
            .any(|e| e.kind() == lockstep::proto::pb::JobEventKind::Aborted),
        "a deterministic error was retried: {events:?}"
    );
    assert!(
        !last.message.contains("missing"),
        "reported as a missing shard: {}",
        last.message
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_inputs_and_host_paths_are_refused_and_every_process_stays_up() {
    let import = tempfile::tempdir().unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "root only words").unwrap();
    let deep = |depth: usize| {
        let mut s = "(ListLink ".repeat(depth - 1);
        s.push_str("(ConceptNode \"x\")");
        s.push_str(&")".repeat(depth - 1));
        s
    };
    // 200,000 deep: past any thread's stack, were the readers recursive.
    std::fs::write(import.path().join("deep.scm"), deep(200_000)).unwrap();
    std::fs::write(import.path().join("zeros.jsonl"), vec![0u8; 3 << 20]).unwrap();
    std::os::unix::fs::symlink("/dev/zero", import.path().join("zero.scm")).unwrap();
    std::fs::create_dir(import.path().join("docs")).unwrap();
    std::fs::write(import.path().join("docs/a.txt"), "fine words").unwrap();
    let tc = TestCluster::start_with(
        2,
        vec![
            "--import-dir".into(),
            import.path().display().to_string(),
            "--max-tick-read-mb".into(),
            "1".into(),
            "--max-inbox-mb".into(),
            "1".into(),
        ],
    )
    .await;
    let client = tc.client().await;
    client
        .put(&lockstep::input::generate::generate(300, 2))
        .await
        .unwrap();
    let ingest = |k: &str, v: &str| spec("ingest", 2, &[(k, v)]);
    fails_once(&client, ingest("generate", "200000000"), "max_generate").await;
    fails_once(
        &client,
        ingest("file", "/dev/zero"),
        "outside the import folder",
    )
    .await;
    fails_once(&client, ingest("file", "zero.scm"), "points outside").await;
    fails_once(&client, ingest("file", "zeros.jsonl"), "max_tick_read_mb").await;
    fails_once(&client, ingest("file", "deep.scm"), "limit of 1000").await;
    fails_once(&client, ingest("file", "nope.scm"), "does not exist").await;
    let path = secret.path().display().to_string();
    fails_once(&client, ingest("file", &path), "outside the import folder").await;
    fails_once(
        &client,
        spec("tfidf", 2, &[("docs", "../")]),
        "`..` is not allowed",
    )
    .await;
    fails_once(
        &client,
        spec("tfidf", 2, &[("docs", "/etc")]),
        "outside the import folder",
    )
    .await;
    // The secret's words never became atoms.
    let words = client
        .scan_type(AtomType::by_name("WordNode").unwrap(), 10)
        .await
        .unwrap();
    assert!(words.is_empty(), "{words:?}");

    // The CLI's own reader refuses a file nested past any stack.
    let deep_file = import.path().join("deeper.scm");
    std::fs::write(&deep_file, deep(200_000)).unwrap();
    let out = lockstep(&[
        "--coordinator",
        &tc.addr(),
        "load",
        deep_file.to_str().unwrap(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("limit of 1000"),
        "{}",
        text(&out.stderr)
    );

    // Raw requests over the shard's limits.
    let routing = client.routing();
    let shard = &routing.topology.shards[0];
    let mut raw = ShardClient::connect(format!("http://{}", shard.address))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    let st = raw
        .deliver(pb::DeliverRequest {
            job_id: 999,
            tick: 1,
            attempt: 0,
            phase: lockstep::proto::pb::Phase::Spread.into(),
            messages: vec![pb::ShardMessage {
                key: vec![],
                data: vec![0; 2 << 20],
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(st.message().contains("max_inbox_mb"), "{}", st.message());
    let st = raw
        .scan_type(pb::ScanTypeRequest {
            epoch: routing.topology.epoch.0,
            r#type: "ConceptNode".into(),
            after: vec![],
            limit: 1_000_000,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message().contains("max_scan_page = 10000"),
        "{}",
        st.message()
    );

    // Every process is still up and a real job still runs.
    let mut tc = tc;
    assert!(tc.cluster.exited().is_empty(), "a shard died");
    let st = client.status().await.unwrap();
    assert!(
        st.shards
            .iter()
            .all(|s| s.shard.as_ref().unwrap().liveness == Liveness::Up as i32)
    );
    let events = follow(&client, spec("tfidf", 2, &[("docs", "docs")]), |_| {}).await;
    assert_eq!(
        events.last().unwrap().kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{:?}",
        events.last()
    );
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_whose_ticks_stop_short_of_its_input_says_so() {
    let tc = TestCluster::start(1).await;
    let client = tc.client().await;
    let short = spec(
        "ingest",
        3,
        &[("generate", "5000"), ("batch", "1000"), ("seed", "1")],
    );
    let events = follow(&client, short, |_| {}).await;
    let last = events.last().unwrap();
    assert_eq!(last.kind(), lockstep::proto::pb::JobEventKind::Finished);
    assert!(
        last.message.contains("only the first 3000"),
        "{}",
        last.message
    );
    let full = spec(
        "ingest",
        5,
        &[("generate", "5000"), ("batch", "1000"), ("seed", "1")],
    );
    let events = follow(&client, full, |_| {}).await;
    assert_eq!(events.last().unwrap().message, "");
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_shard_fails_a_read_within_the_retry_budget_in_one_line() {
    let mut tc = TestCluster::start(2).await;
    let client = tc.client().await;
    let atoms: Vec<Atom> = (0..200).map(|i| concept(&format!("d{i}"))).collect();
    client.put(&atoms).await.unwrap();
    let routing = client.routing();
    let ring = routing.ring.as_ref().unwrap();
    let victim = tc.cluster.shard_pids()[1].unwrap();
    // SIGSTOP: the process holds its sockets but answers nothing.
    // SAFETY: kill(2) on a child this test owns.
    unsafe {
        libc::kill(victim as libc::pid_t, libc::SIGSTOP);
    }
    let down = wait_for("a shard to be Down", Duration::from_secs(30), || async {
        let st = client.status().await.map_err(|e| e.to_string())?;
        st.shards
            .iter()
            .filter_map(|s| s.shard.clone())
            .find(|e| e.liveness == Liveness::Down as i32)
            .map(|e| e.id)
            .ok_or_else(|| "none Down yet".to_string())
    })
    .await;
    let owned = atoms
        .iter()
        .find(|a| ring.owner(a.handle().ring_position()).0 == down)
        .unwrap();
    let started = Instant::now();
    let out = lockstep(&[
        "--coordinator",
        &tc.addr(),
        "get",
        "--node",
        "ConceptNode",
        &owned.name,
    ])
    .await;
    let took = started.elapsed();
    unsafe {
        libc::kill(victim as libc::pid_t, libc::SIGCONT);
    }
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} against a Down shard: {err}"
    );
    assert!(
        err.contains(&format!("shard-{down}"))
            && err.contains("is Down")
            && err.contains("no heartbeat for"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(tc.cluster.exited().is_empty());
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_brings_its_coordinator_back_on_the_same_address_and_refuses_a_second_up() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let mut up = UpProcess::spawn(
        &["--shards", "2", "--port", "0", "--data-dir", &data_arg],
        home.path(),
    );
    // coordinator ADDRESS pid PID log PATH
    let line = up.line("coordinator  ").await;
    let words: Vec<&str> = line.split_whitespace().collect();
    let addr = words[1].to_string();
    assert_eq!(words[2], "pid", "{line}");
    let pid: i32 = words[3].parse().unwrap();
    up.line("ready:").await;

    // A second `up` on the same folder is refused, naming the holder.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(exe())
            .args(["up", "--port", "0", "--data-dir"])
            .arg(&data)
            .env("LOCKSTEP_HOME", home.path())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("in use by another `lockstep up` (pid"),
        "{err}"
    );

    let client = Client::connect(&addr).await.unwrap();
    client
        .put(&lockstep::input::generate::generate(2_000, 4))
        .await
        .unwrap();
    // A long job, followed by a client process.
    let run = tokio::process::Command::new(exe())
        .args([
            "--coordinator",
            &addr,
            "run",
            "attention",
            "--ticks",
            "100000",
        ])
        .env("LOCKSTEP_HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for("the job to be running", Duration::from_secs(30), || async {
        let jobs = client.jobs().await.map_err(|e| e.to_string())?;
        let st = client.status().await.map_err(|e| e.to_string())?;
        if jobs
            .iter()
            .any(|j| j.outcome() == lockstep::proto::pb::JobOutcome::Running)
            && st.committed_tick > 0
        {
            Ok(())
        } else {
            Err(format!("{jobs:?}"))
        }
    })
    .await;
    // SAFETY: kill(2) on the coordinator `up` started for this test.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    up.line("coordinator restarted").await;
    let out = tokio::time::timeout(Duration::from_secs(120), run.wait_with_output())
        .await
        .expect("the following client ends")
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the coordinator restarted and the job is gone with it; the store stays at committed tick"),
        "{err}"
    );
    // Same address, and the shards find it again.
    wait_for("both shards Up again", Duration::from_secs(60), || async {
        let st = client.status().await.map_err(|e| e.to_string())?;
        let up = st
            .shards
            .iter()
            .filter(|s| s.shard.as_ref().unwrap().liveness == Liveness::Up as i32)
            .count();
        if up == 2 {
            Ok(())
        } else {
            Err(format!("{up} Up"))
        }
    })
    .await;
    let events = follow(&client, spec("attention", 2, &[]), |_| {}).await;
    assert_eq!(
        events.last().unwrap().kind(),
        lockstep::proto::pb::JobEventKind::Finished
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_token_refuses_strangers_and_works_for_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "cluster-secret-1\n").unwrap();
    let tc = TestCluster::start_with_token(2, &token_file).await;
    let addr = tc.addr();

    // No token, and a wrong one: refused, each in one line.
    let out = lockstep(&["--coordinator", &addr, "status"]).await;
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("requires a token") && err.trim().lines().count() == 1,
        "{err}"
    );
    let out = lockstep_env(
        &["--coordinator", &addr, "status"],
        &[("LOCKSTEP_TOKEN", "guess")],
    )
    .await;
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("wrong cluster token") && err.trim().lines().count() == 1,
        "{err}"
    );
    // Straight to a shard, past the coordinator: refused too.
    let shard = tc.client().await.routing().topology.shards[0]
        .address
        .clone();
    let mut raw = ShardClient::connect(format!("http://{shard}"))
        .await
        .unwrap();
    let st = raw
        .get_atoms(pb::GetAtomsRequest {
            epoch: 0,
            handles: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated);
    let st = raw
        .deliver(pb::DeliverRequest {
            job_id: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated);
    // The health check stays open, for container probes.
    let out = lockstep(&["health", &shard]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // With the token: a load, and a job whose phases cross every link
    // (coordinator to shards, shard to shard, shards to coordinator).
    let tf = token_file.display().to_string();
    let out = lockstep(&[
        "--coordinator",
        &addr,
        "--token-file",
        &tf,
        "load",
        "--generate",
        "2000",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lockstep_env(
        &["--coordinator", &addr, "run", "attention", "--ticks", "3"],
        &[("LOCKSTEP_TOKEN", "cluster-secret-1")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("committed tick 3"),
        "{}",
        text(&out.stdout)
    );
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_as_disk_full_and_keeps_every_acknowledged_atom() {
    let tc = TestCluster::start(0).await;
    let dir = tc.dir.path().join("full");
    std::fs::create_dir_all(&dir).unwrap();
    // A 16 MiB filesystem of its own (needs root, as CI and this machine
    // have; elsewhere the test says so and passes nothing off as tested).
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(dir.clone());
    let mut shard = tc.start_extra_shard("full").await;
    let client = tc.client().await;
    wait_for("the shard in the ring", Duration::from_secs(30), || async {
        client.refresh().await.map_err(|e| e.to_string())?;
        if client.routing().ring.is_some() {
            Ok(())
        } else {
            Err("no ring yet".into())
        }
    })
    .await;
    let routing = client.routing();
    let addr = routing.topology.shards[0].address.clone();
    let mut raw = ShardClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let c = AtomType::by_name("ConceptNode").unwrap();
    let mut acked: Vec<Handle> = Vec::new();
    let mut refusal = None;
    // 60 KiB names: the WAL fills the 16 MiB in a few hundred atoms.
    for i in 0..2_000 {
        let a = Atom::node(c, format!("{i:08}{}", "x".repeat(60 << 10))).unwrap();
        let flat = lockstep::model::FlatAtom::new(c, a.name.clone(), Vec::new()).unwrap();
        let req = pb::PutAtomsRequest {
            epoch: routing.topology.epoch.0,
            atoms: vec![(&flat).into()],
            incoming: vec![],
        };
        match raw.put_atoms(req).await {
            Ok(_) => acked.push(a.handle()),
            Err(st) => {
                refusal = Some(st);
                break;
            }
        }
    }
    let st = refusal.expect("the disk filled up");
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert_eq!(
        lockstep::proto::wire_error::error_kind(&st),
        Some(lockstep::proto::wire_error::WireKind::DiskFull),
        "{st:?}"
    );
    assert!(st.message().contains("disk full"), "{}", st.message());
    assert!(!acked.is_empty());
    // Every acknowledged atom is still there, and the shard still serves.
    let got = client.get(&acked).await.unwrap();
    assert!(
        got.iter().all(Option::is_some),
        "an acknowledged atom is gone"
    );
    assert!(shard.try_wait().unwrap().is_none(), "the shard died");
    let _ = shard.kill().await;
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_page_within_a_small_max_scan_page() {
    let tc = TestCluster::start_with(1, vec!["--max-scan-page".into(), "10".into()]).await;
    let client = tc.client().await;
    let hub = concept("hub");
    let atoms: Vec<Atom> = (0..25)
        .map(|i| {
            Atom::link(
                AtomType::by_name("MemberLink").unwrap(),
                vec![concept(&format!("m{i}")), hub.clone()],
            )
            .unwrap()
        })
        .collect();
    client.put(&atoms).await.unwrap();
    // Pages of the shard's size, never over its limit: everything comes back.
    let scanned = client
        .scan_type(AtomType::by_name("MemberLink").unwrap(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(scanned.len(), 25);
    assert_eq!(client.incoming(hub.handle()).await.unwrap().len(), 25);
    tc.cluster.shutdown().await;
}
