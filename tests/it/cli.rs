//! `lockstep up`: starts a cluster, stops it cleanly on SIGTERM, and keeps
//! the data across restarts.

use std::process::Stdio;
use std::time::Duration;

use lockstep::model::{Atom, AtomType};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::util::{exe, wait_for_total};

/// Starts `lockstep up` and reads its output until "ready:", returning the
/// coordinator address it printed.
async fn up(data: &std::path::Path, home: &std::path::Path) -> (Child, String) {
    let (child, addr, _, mut lines) = up_with_output(data, home).await;
    // Keep reading so that `up` never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Like [`up`], also returning the shards it printed (registered name and
/// pid, in order) and its output.
async fn up_with_output(
    data: &std::path::Path,
    home: &std::path::Path,
) -> (Child, String, Vec<(String, u32)>, Lines) {
    up_with_args(data, home, &[]).await
}

/// Like [`up_with_output`], with more flags for `up`.
async fn up_with_args(
    data: &std::path::Path,
    home: &std::path::Path,
    extra: &[&str],
) -> (Child, String, Vec<(String, u32)>, Lines) {
    let mut child = Command::new(exe())
        .args(["up", "--shards", "2", "--port", "0", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("LOCKSTEP_HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut pids = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // NAME ADDRESS pid PID metrics ADDRESS log PATH
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"coordinator") {
                addr = Some(words[1].to_string());
            }
            if words.first() == Some(&"coordinator")
                || words.first().is_some_and(|w| w.starts_with("shard-"))
            {
                assert_eq!(
                    (words[2], words[4], words[6]),
                    ("pid", "metrics", "log"),
                    "{line}"
                );
                let metrics: std::net::SocketAddr = words[5].parse().expect("a metrics address");
                assert!(metrics.ip().is_loopback(), "{line}");
                assert!(std::path::Path::new(words[7]).exists(), "{line}");
            }
            if words.first().is_some_and(|w| w.starts_with("shard-")) {
                pids.push((words[0].to_string(), words[3].parse().unwrap()));
            }
            if line.starts_with("ready:") {
                return;
            }
        }
        panic!("lockstep up exited before it was ready");
    };
    tokio::time::timeout(Duration::from_secs(90), read)
        .await
        .expect("lockstep up becomes ready");
    (
        child,
        addr.expect("up printed the coordinator address"),
        pids,
        lines,
    )
}

async fn terminate(mut child: Child) {
    let pid = child.id().unwrap() as libc::pid_t;
    // SAFETY: a pid we spawned and have not reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("lockstep up exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_stops_cleanly_and_restarts_on_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, addr, _, mut lines) = up_with_output(&data, home.path()).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // `up` recorded its address: a command without --coordinator finds it.
    let recorded = std::fs::read_to_string(home.path().join("coordinator")).unwrap();
    assert_eq!(recorded.trim(), addr);

    let c = AtomType::by_name("ConceptNode").unwrap();
    let atoms: Vec<Atom> = (0..500)
        .map(|i| Atom::node(c, format!("p{i}")).unwrap())
        .collect();
    {
        let client = lockstep::Client::connect(&addr).await.unwrap();
        client.put(&atoms).await.unwrap();
    }
    terminate(child).await;

    let (child, addr) = up(&data, home.path()).await;
    let client = lockstep::Client::connect(&addr).await.unwrap();
    let handles: Vec<_> = atoms.iter().map(Atom::handle).collect();
    let got = client.get(&handles).await.unwrap();
    assert!(got.iter().all(Option::is_some), "data survived the restart");
    let st = wait_for_total(&client, 500).await;
    assert_eq!(st.shards.len(), 2, "the same two shards came back");

    let out = tokio::process::Command::new(exe())
        .args(["status"])
        .env("LOCKSTEP_HOME", home.path())
        .env_remove("LOCKSTEP_COORDINATOR")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    terminate(child).await;
}

/// One file with `[coordinator]` and `[shard]` sections configures every
/// process `up` starts: each reads its own section, and a coordinator key
/// no longer kills the shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_hands_one_sectioned_config_to_every_process() {
    use lockstep::proto::pb;
    use lockstep::proto::pb::shard_client::ShardClient;
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.toml");
    std::fs::write(
        &file,
        "[coordinator]\nvnodes = 48\n\n[shard]\nmax_scan_page = 7\n",
    )
    .unwrap();
    let flat = dir.path().join("flat.toml");
    std::fs::write(&flat, "vnodes = 48\n").unwrap();
    let out = Command::new(exe())
        .args(["up", "--shards", "1", "--port", "0", "--data-dir"])
        .arg(dir.path().join("flat"))
        .arg("--config")
        .arg(&flat)
        .env("LOCKSTEP_HOME", home.path())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("[coordinator] and [shard] sections"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let data = dir.path().join("data");
    let file = file.to_str().unwrap();
    let (child, addr, _, mut lines) = up_with_args(&data, home.path(), &["--config", file]).await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = lockstep::Client::connect(&addr).await.unwrap();
    let routing = client.routing();
    assert_eq!(
        routing.topology.vnodes, 48,
        "the coordinator read [coordinator]"
    );
    assert_eq!(routing.topology.shards.len(), 2);
    for shard in &routing.topology.shards {
        let mut raw = ShardClient::connect(format!("http://{}", shard.address))
            .await
            .unwrap();
        let scan = |limit| pb::ScanTypeRequest {
            epoch: routing.topology.epoch.0,
            r#type: "ConceptNode".into(),
            after: vec![],
            limit,
        };
        raw.scan_type(scan(7))
            .await
            .expect("a page of max_scan_page");
        let e = raw.scan_type(scan(8)).await.unwrap_err();
        assert!(e.message().contains("max_scan_page"), "{}", e.message());
    }

    // `config show` reports the same values and where they came from.
    let out = Command::new(exe())
        .args(["config", "show", "--json", "--config", file])
        .env("LOCKSTEP_WEIGHT", "2.5")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["coordinator"]["config"]["vnodes"], 48);
    assert_eq!(
        v["coordinator"]["sources"]["vnodes"],
        format!("{file} [coordinator]")
    );
    assert_eq!(v["shard"]["config"]["max_scan_page"], 7);
    assert_eq!(v["shard"]["config"]["weight"], 2.5);
    assert_eq!(v["shard"]["sources"]["weight"], "LOCKSTEP_WEIGHT");
    assert_eq!(v["shard"]["sources"]["listen"], "default");
    let out = Command::new(exe())
        .args(["config", "show", "shard", "--config", file, "--weight", "3"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let weight = text
        .lines()
        .find(|l| l.trim_start().starts_with("weight"))
        .unwrap();
    assert!(
        weight.contains('3') && weight.contains("--weight"),
        "{text}"
    );
    terminate(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_restarts_a_crashed_shard_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let (child, addr, shards, mut lines) = up_with_output(&dir.path().join("d"), home.path()).await;
    assert_eq!(shards.len(), 2);
    // `up` names each process by the id it registered with, as `status`
    // does: the two ids are the registry's, and distinct.
    let client = lockstep::Client::connect(&addr).await.unwrap();
    let registered: std::collections::BTreeSet<String> = client
        .status()
        .await
        .unwrap()
        .shards
        .iter()
        .map(|s| format!("shard-{}", s.shard.as_ref().unwrap().id))
        .collect();
    let printed: std::collections::BTreeSet<String> =
        shards.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(printed, registered);
    let (name, old_pid) = shards[1].clone();
    // SAFETY: a pid of a child of the `up` process we started.
    unsafe { libc::kill(old_pid as libc::pid_t, libc::SIGKILL) };
    let said = async {
        let mut exited = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            exited |= line.starts_with(&format!("{name} exited"));
            if exited && let Some(rest) = line.strip_prefix(&format!("{name} restarted (pid ")) {
                return rest.trim_end_matches(')').parse::<u32>().unwrap();
            }
        }
        panic!("up exited without restarting {name}");
    };
    let new_pid = tokio::time::timeout(Duration::from_secs(60), said)
        .await
        .expect("up reports the restart under the same name");
    assert_ne!(new_pid, old_pid, "the restart is a new process");
    // SAFETY: probing a pid with signal 0 sends nothing.
    assert_eq!(
        unsafe { libc::kill(new_pid as libc::pid_t, 0) },
        0,
        "pid {new_pid} is alive"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = lockstep::Client::connect(&addr).await.unwrap();
    crate::util::wait_for("both shards Up again", Duration::from_secs(30), || async {
        let st = client.status().await.map_err(|e| e.to_string())?;
        let up = st
            .shards
            .iter()
            .filter(|s| {
                s.shard.as_ref().unwrap().liveness == lockstep::proto::pb::Liveness::Up as i32
            })
            .count();
        if up == 2 {
            Ok(())
        } else {
            Err(format!("{up} Up"))
        }
    })
    .await;
    terminate(child).await;
}

/// A failing command prints one line, in words: its cause once, and no
/// gRPC status code. Under `--json` it prints one JSON object instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_printed_once_in_words_and_as_json_under_json() {
    let tc = crate::util::TestCluster::start(2).await;
    let addr = tc.addr();
    let out = crate::util::lockstep(&["--coordinator", &addr, "scan", "Foo"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(err.matches("unknown atom type \"Foo\"").count(), 1, "{err}");

    // A refusal from the coordinator: no `(FailedPrecondition)` in it.
    let client = tc.client().await;
    client
        .put(&lockstep::input::generate::generate(50, 1))
        .await
        .unwrap();
    let out = crate::util::lockstep(&["--coordinator", &addr, "remove", "1"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot be removed"), "{err}");
    assert!(
        !err.contains("FailedPrecondition") && !err.contains("Code"),
        "{err}"
    );

    // Under --json: one JSON object on stdout, nothing on stderr.
    for args in [
        vec!["--coordinator", &addr, "scan", "Foo", "--json"],
        vec!["--coordinator", &addr, "remove", "1", "--json"],
        vec!["--coordinator", "127.0.0.1:1", "status", "--json"],
        vec!["--coordinator", &addr, "jobs", "--bogus", "--json"],
    ] {
        let out = crate::util::lockstep(&args).await;
        assert!(!out.status.success(), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        let msg = v["error"]["message"].as_str().expect("error.message");
        assert!(!msg.is_empty(), "{args:?}");
        assert!(v["error"]["retryable"].is_boolean(), "{args:?}");
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = crate::util::lockstep(&["--coordinator", "127.0.0.1:1", "status", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["error"]["retryable"], true,
        "an unreachable coordinator may answer later"
    );
    tc.cluster.shutdown().await;
}

/// Every command that prints takes `--json` and prints one valid JSON
/// document with the documented fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_commands_speak_json() {
    let tc = crate::util::TestCluster::start(2).await;
    let addr = tc.addr();
    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let scm = tc.dir.path().join("kb.scm");
    std::fs::write(
        &scm,
        "(Inheritance (Concept \"cat\") (Concept \"animal\"))\n",
    )
    .unwrap();
    let v = json(
        crate::util::lockstep(&[
            "--coordinator",
            &addr,
            "load",
            scm.to_str().unwrap(),
            "--json",
        ])
        .await,
    );
    assert_eq!(
        (v["atoms"].as_u64(), v["created"].as_u64()),
        (Some(1), Some(3)),
        "{v}"
    );
    let v = json(
        crate::util::lockstep(&["--coordinator", &addr, "scan", "ConceptNode", "--json"]).await,
    );
    let atoms = v["atoms"].as_array().expect("atoms");
    let mut names: Vec<&str> = atoms.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["animal", "cat"]);
    let v = json(
        crate::util::lockstep(&["--coordinator", &addr, "scan", "InheritanceLink", "--json"]).await,
    );
    let link = &v["atoms"][0];
    assert_eq!(
        link["atomese"],
        "(InheritanceLink (ConceptNode \"cat\") (ConceptNode \"animal\"))"
    );
    let handle = link["handle"].as_str().expect("handle").to_string();
    let v =
        json(crate::util::lockstep(&["--coordinator", &addr, "delete", &handle, "--json"]).await);
    assert_eq!(
        (v["handle"].as_str(), v["deleted"].as_u64()),
        (Some(handle.as_str()), Some(1))
    );
    let v = json(crate::util::lockstep(&["--coordinator", &addr, "health", "--json"]).await);
    assert_eq!(
        (v["address"].as_str(), v["serving"].as_bool()),
        (Some(addr.as_str()), Some(true))
    );
    let v = json(crate::util::lockstep(&["--coordinator", &addr, "jobs", "--json"]).await);
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(0));
    let v = json(crate::util::lockstep(&["--coordinator", &addr, "status", "--json"]).await);
    assert_eq!(v["total_atoms"], 2, "{v}");
    tc.cluster.shutdown().await;
}

/// Both servers answer gRPC reflection (v1), as `grpcurl` and reflection
/// clients use it, without the cluster token: it lists the Lockstep
/// services and the health service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_servers_list_their_services_over_reflection() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "reflection-test-token").unwrap();
    let tc = crate::util::TestCluster::start_with_token(1, &token).await;
    let shard = tc.client().await.routing().topology.shards[0]
        .address
        .clone();
    for (addr, ours) in [
        (tc.addr(), "lockstep.v1.Coordinator"),
        (shard, "lockstep.v1.Shard"),
    ] {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().expect("an answer");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("{addr}: not a service list: {answer:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in [
            ours,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ] {
            assert!(names.iter().any(|n| n == want), "{addr}: {names:?}");
        }
    }
    tc.cluster.shutdown().await;
}

/// Shell completions and the man page come from the same clap definition
/// as the commands, so they list every command.
#[tokio::test]
async fn completions_and_man_page_list_the_commands() {
    for (shell, marker) in [
        ("bash", "_lockstep()"),
        ("zsh", "#compdef lockstep"),
        ("fish", "complete -c lockstep"),
    ] {
        let out = crate::util::lockstep(&["completions", shell]).await;
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}");
        for cmd in ["status", "cancel", "jobs", "load"] {
            assert!(text.contains(cmd), "{shell} completes {cmd}");
        }
    }
    let out = crate::util::lockstep(&["man"]).await;
    assert!(out.status.success());
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH lockstep"),
        "{}",
        &man[..man.len().min(200)]
    );
    assert!(man.contains("cancel") && man.contains("completions"));
    let out = crate::util::lockstep(&["completions", "tcsh"]).await;
    assert!(!out.status.success(), "an unknown shell is refused");
}

/// `GET /metrics` from `addr`, over plain HTTP/1.1.
async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), get)
        .await
        .unwrap_or_else(|_| panic!("no /metrics answer from {addr} within 30 s"));
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// Runs `promtool check metrics` (scripts/deps.sh installs it) on `text`.
async fn promtool_check(what: &str, text: &str) {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/deps.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("promtool finishes")
        .unwrap();
    assert!(
        out.status.success(),
        "promtool refused {what}'s metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `series` (name and labels, exactly as
/// rendered) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Every process `up` starts serves Prometheus `/metrics` on the loopback
/// port it printed, `status --json` names the same addresses, and what
/// they serve passes `promtool check metrics` and counts what was done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_serves_metrics_that_promtool_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, addr) = up(&data, home.path()).await;
    let scm = dir.path().join("kb.scm");
    std::fs::write(
        &scm,
        "(Inheritance (Concept \"cat\") (Concept \"animal\"))\n(Inheritance (Concept \"dog\") (Concept \"animal\"))\n",
    )
    .unwrap();
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    ok(crate::util::lockstep(&["--coordinator", &addr, "load", scm.to_str().unwrap()]).await);
    ok(crate::util::lockstep(&["--coordinator", &addr, "run", "attention", "--ticks", "2"]).await);
    let st: serde_json::Value = serde_json::from_slice(&ok(crate::util::lockstep(&[
        "--coordinator",
        &addr,
        "status",
        "--json",
    ])
    .await))
    .unwrap();

    let coordinator = st["metrics_address"]
        .as_str()
        .expect("the coordinator's metrics_address");
    let text = scrape(coordinator).await;
    promtool_check("the coordinator", &text).await;
    assert_eq!(
        sample(&text, "lockstep_shards{state=\"up\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "lockstep_ticks_committed_total{workload=\"attention\"}"
        ),
        Some(2.0),
        "{text}"
    );
    // Two setup phases, then spread, apply, prepare and commit per tick.
    assert_eq!(
        sample(
            &text,
            "lockstep_tick_phase_seconds_count{phase=\"spread\",workload=\"attention\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.contains(
            "lockstep_barrier_wait_seconds_bucket{phase=\"commit\",workload=\"attention\""
        ),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Register\",grpc_service=\"lockstep.v1.Coordinator\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        text.contains("lockstep_shard_heartbeat_age_seconds{shard="),
        "{text}"
    );

    let mut atoms = 0.0;
    let shards = st["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2);
    for s in shards {
        let at = s["metrics_address"]
            .as_str()
            .expect("each shard's metrics_address");
        let text = scrape(at).await;
        promtool_check(at, &text).await;
        atoms += sample(&text, "lockstep_atoms").expect("lockstep_atoms");
        assert!(
            sample(&text, "lockstep_heartbeat_age_seconds").is_some(),
            "{text}"
        );
        assert_eq!(
            sample(&text, "lockstep_last_tick"),
            st["committed_tick"].as_f64(),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "lockstep_shard_phase_seconds_count{phase=\"apply\",workload=\"attention\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert!(
            text.contains("grpc_server_handling_seconds_bucket{grpc_method=\"StartPhase\",grpc_service=\"lockstep.v1.Shard\""),
            "{text}"
        );
    }
    // cat, dog, animal and the two links.
    assert_eq!(atoms, 5.0);
    terminate(child).await;
}
