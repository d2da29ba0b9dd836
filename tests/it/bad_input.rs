//! Bad input gets a typed error and changes nothing, against the running
//! binaries.

use std::time::Duration;

use lockstep::model::{Atom, AtomType};
use lockstep::proto::pb::{self, shard_client::ShardClient};
use lockstep::proto::wire_error::{WireKind, epoch_error};
use tonic::Code;

use crate::util::{TestCluster, exe, lockstep, text, wait_for_total};

fn node(ty: &str, name: &str) -> pb::AtomWrite {
    pb::AtomWrite {
        r#type: ty.into(),
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_and_leave_data_unchanged() {
    let tc = TestCluster::start_with(1, vec!["--max-batch".into(), "100".into()]).await;
    let client = tc.client().await;
    let c = AtomType::by_name("ConceptNode").unwrap();
    let good = Atom::node(c, "keep")
        .unwrap()
        .with_tv(lockstep::model::TruthValue::new(0.25, 0.5).unwrap());
    client.put(std::slice::from_ref(&good)).await.unwrap();
    wait_for_total(&client, 1).await;

    let routing = client.routing();
    let epoch = routing.topology.epoch.0;
    let addr = routing.topology.shards[0].address.clone();
    let mut raw = ShardClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let put = |atoms: Vec<pb::AtomWrite>, epoch: u64| {
        let mut raw = raw.clone();
        async move {
            raw.put_atoms(pb::PutAtomsRequest {
                epoch,
                atoms,
                incoming: vec![],
            })
            .await
            .unwrap_err()
        }
    };

    // Each bad atom rides with a good one: the whole request is refused.
    let fresh = node("ConceptNode", "fresh");
    let cases: Vec<(&str, pb::AtomWrite, &str)> = vec![
        (
            "unknown type",
            // Not CamelCase ending in Node or Link, so not a new type.
            node("Foo", "x"),
            "unknown atom type \"Foo\"",
        ),
        (
            "empty name",
            node("ConceptNode", ""),
            "ConceptNode needs a non-empty name",
        ),
        (
            "malformed handle",
            pb::AtomWrite {
                r#type: "ListLink".into(),
                outgoing: vec![vec![1, 2, 3]],
                ..Default::default()
            },
            "a handle must be 16 bytes, got 3",
        ),
        (
            "node with outgoing",
            pb::AtomWrite {
                r#type: "ConceptNode".into(),
                name: "n".into(),
                outgoing: vec![vec![0; 16]],
                ..Default::default()
            },
            "cannot have outgoing atoms",
        ),
        (
            "truth value out of range",
            pb::AtomWrite {
                tv: Some(pb::TruthValue {
                    strength: 7.0,
                    confidence: 0.1,
                    ..Default::default()
                }),
                ..node("ConceptNode", "keep")
            },
            "strength must be a finite number in [0, 1], got 7",
        ),
        (
            "unknown truth value kind",
            pb::AtomWrite {
                tv: Some(pb::TruthValue {
                    kind: 99,
                    ..Default::default()
                }),
                ..node("ConceptNode", "keep")
            },
            "unknown truth value kind 99",
        ),
        (
            "unknown named value kind",
            pb::AtomWrite {
                values: [(
                    "k".to_string(),
                    pb::NamedValue {
                        kind: 9,
                        ..Default::default()
                    },
                )]
                .into(),
                ..node("ConceptNode", "keep")
            },
            "unknown value kind 9",
        ),
        (
            "a value key that is not one atom",
            pb::AtomWrite {
                values: [(
                    "(Concept \"a\") (Concept \"b\")".to_string(),
                    pb::NamedValue::default(),
                )]
                .into(),
                ..node("ConceptNode", "keep")
            },
            "is not one atom",
        ),
        (
            "count truth value without its count",
            pb::AtomWrite {
                tv: Some(pb::TruthValue {
                    kind: 1,
                    numbers: vec![0.5, 0.5],
                    ..Default::default()
                }),
                ..node("ConceptNode", "keep")
            },
            "ctv takes 3 numbers, got 2",
        ),
        (
            "NaN attention",
            pb::AtomWrite {
                av: Some(pb::AttentionValue {
                    sti: f64::NAN,
                    lti: 0.0,
                    vlti: 0.0,
                }),
                ..node("ConceptNode", "keep")
            },
            "sti must be a finite number",
        ),
    ];
    for (what, bad, msg) in cases {
        let st = put(vec![fresh.clone(), bad], epoch).await;
        assert_eq!(st.code(), Code::InvalidArgument, "{what}: {st:?}");
        assert!(st.message().contains(msg), "{what}: {}", st.message());
    }

    // A batch over the shard's maximum.
    let big: Vec<pb::AtomWrite> = (0..101)
        .map(|i| node("ConceptNode", &format!("b{i}")))
        .collect();
    let st = put(big, epoch).await;
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message()
            .contains("batch of 101 items exceeds the maximum of 100"),
        "{}",
        st.message()
    );

    // A wrong epoch, old and from the future.
    let st = put(vec![fresh.clone()], epoch - 1).await;
    assert_eq!(
        epoch_error(&st),
        Some((WireKind::WrongEpoch, lockstep::model::Epoch(epoch)))
    );
    let st = put(vec![fresh.clone()], epoch + 5).await;
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert_eq!(epoch_error(&st).map(|(k, _)| k), Some(WireKind::EpochAhead));

    // A malformed handle on a read.
    let st = raw
        .get_atoms(pb::GetAtomsRequest {
            epoch,
            handles: vec![vec![9; 15]],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);

    // Nothing changed: one atom, with its old truth value, and no "fresh".
    let fresh_h = Atom::node(c, "fresh").unwrap().handle();
    let got = client.get(&[good.handle(), fresh_h]).await.unwrap();
    assert_eq!(got[0].as_ref().unwrap().tv, good.tv.unwrap());
    assert!(got[1].is_none());
    wait_for_total(&client, 1).await;

    // The shard is still serving.
    client
        .put(&[Atom::node(c, "after").unwrap()])
        .await
        .unwrap();
    wait_for_total(&client, 2).await;
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fails_to_parse_loads_nothing_and_names_the_place() {
    let tc = TestCluster::start(1).await;
    let f = tc.dir.path().join("bad.scm");
    std::fs::write(
        &f,
        "(Concept \"ok\")\n(Inheritance (Concept \"a\")\n   (Blah \"b\"))\n",
    )
    .unwrap();
    let out = lockstep(&["--coordinator", &tc.addr(), "load", f.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.scm:3:5: unknown atom type \"Blah\""),
        "{err}"
    );
    let client = tc.client().await;
    // Give heartbeats a chance to report anything that slipped through.
    wait_for_total(&client, 0).await;
    let ok = Atom::node(AtomType::by_name("Concept").unwrap(), "ok")
        .unwrap()
        .handle();
    assert!(client.get(&[ok]).await.unwrap()[0].is_none());
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_coordinator_is_one_line() {
    let out = lockstep(&["--coordinator", "127.0.0.1:1", "status"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: coordinator 127.0.0.1:1 unreachable"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_shard_on_the_same_data_folder_is_refused() {
    let tc = TestCluster::start(1).await;
    let dir = tc.cluster.shard_dir(0);
    let fut = tokio::process::Command::new(exe())
        .args([
            "--coordinator",
            &tc.addr(),
            "shard",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("the second shard exits by itself")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("in use by another shard process"), "{err}");
    // The first shard is unharmed.
    let client = tc.client().await;
    client
        .put(&[Atom::node(AtomType::by_name("Concept").unwrap(), "still").unwrap()])
        .await
        .unwrap();
    tc.cluster.shutdown().await;
}
