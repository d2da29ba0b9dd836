//! Real Atomese: files from the OpenCog project load into 1, 2 and 3 shards
//! with the counts an independent reading of the text gives; a dump loaded
//! into a cluster of another shard count dumps the same, value for value;
//! unordered links are one atom in any order; the loader takes stdin, any
//! extension, skips (or, under --strict, refuses) forms that are not atoms.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lockstep::model::AtomType;
use serde_json::Value;

use crate::util::{TestCluster, lockstep, text, wait_for_total};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The top-level atoms of an Atomese file, counted without a parser: the
/// files put each top-level form at the start of a line.
fn top_level_forms(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            l.starts_with('(') && !l.starts_with("(use-modules") && !l.starts_with("(define")
        })
        .count()
}

/// The distinct nodes of an Atomese file by type, read off the text: every
/// `(SomethingNode "name"` (names here hold no quotes).
fn nodes_by_type(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, _) in text.match_indices("Node \"") {
        let start = text[..i].rfind('(').unwrap() + 1;
        let ty = &text[start..i + 4];
        let rest = &text[i + 6..];
        let name = &rest[..rest.find('"').unwrap()];
        out.entry(ty.to_string())
            .or_default()
            .insert(name.to_string());
    }
    out
}

async fn cli(args: &[&str]) -> String {
    let out = lockstep(args).await;
    assert!(
        out.status.success(),
        "lockstep {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

async fn load_json(addr: &str, file: &Path) -> Value {
    let out = cli(&[
        "--coordinator",
        addr,
        "load",
        file.to_str().unwrap(),
        "--json",
    ])
    .await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn type_counts(tc: &TestCluster, total: u64) -> BTreeMap<String, u64> {
    let client = tc.client().await;
    let st = wait_for_total(&client, total).await;
    let mut out = BTreeMap::new();
    for s in &st.shards {
        for (t, n) in &s.metrics.as_ref().unwrap().type_counts {
            *out.entry(t.clone()).or_default() += n;
        }
    }
    out
}

async fn dump(addr: &str, to: &Path) -> String {
    cli(&[
        "--coordinator",
        addr,
        "dump",
        "--output",
        to.to_str().unwrap(),
    ])
    .await;
    std::fs::read_to_string(to).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_atomese_loads_into_any_shard_count_and_a_dump_round_trips() {
    let files = [
        data("relex-anaphora.scm"),
        data("pln-sumo-living-organism.scm"),
        data("values.scm"),
    ];
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let nodes = nodes_by_type(&texts.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let mut dumps = Vec::new();
    for shards in [1, 2, 3] {
        let tc = TestCluster::start(shards).await;
        let addr = tc.addr();
        let mut total = 0;
        let mut loads = Vec::new();
        for (file, text) in files.iter().zip(&texts) {
            let l = load_json(&addr, file).await;
            assert_eq!(
                l["atoms"],
                top_level_forms(text) as u64,
                "{}: {l}",
                file.display()
            );
            total += l["created"].as_u64().unwrap();
            loads.push(l);
        }
        let new: Vec<&str> = loads[0]["new_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            new.contains(&"WordInstanceNode") && new.contains(&"SentenceNode"),
            "{new:?}"
        );
        assert_eq!(
            loads[1]["new_types"],
            serde_json::json!([]),
            "SUMO/PLN uses built-in types only"
        );
        assert_eq!(loads[2]["skipped"]["define"], 1, "{}", loads[2]);
        assert_eq!(loads[2]["skipped"]["use-modules"], 1, "{}", loads[2]);
        let counts = type_counts(&tc, total).await;
        // Every node type holds the distinct nodes the text names.
        for (ty, names) in &nodes {
            assert_eq!(
                counts.get(ty).copied(),
                Some(names.len() as u64),
                "{ty}: {counts:?}"
            );
        }
        let node_total: u64 = nodes.values().map(|s| s.len() as u64).sum();
        let links = total - node_total;
        assert!(links > 0);
        // Both orders of the SetLink are one atom.
        assert_eq!(counts["SetLink"], 1, "{counts:?}");
        dumps.push(dump(&addr, &dir.path().join(format!("dump{shards}.scm"))).await);
    }
    assert!(
        dumps[0].contains("(ConceptNode \"count\" (ctv 0.7 0.9 12345.678))"),
        "{}",
        dumps[0]
    );
    assert!(dumps[0].contains("(av -12.5 3 1)"));
    assert!(
        dumps[0].contains("(cog-set-value! (ConceptNode \"count\") (PredicateNode \"fuzzy\") (FloatValue 1 2 0.30000000000000004))"),
        "{}",
        dumps[0]
    );
    assert!(dumps[0].contains(
        "(LinkValue (FloatValue 1e-300) (ConceptNode \"b\") (LinkValue (StringValue \"s\")))"
    ));
    assert_eq!(dumps[0], dumps[1], "1 and 2 shards dump alike");
    assert_eq!(dumps[1], dumps[2], "2 and 3 shards dump alike");
    // Load the 3-shard dump into a fresh 2-shard cluster: the same dump.
    let tc = TestCluster::start(2).await;
    let addr = tc.addr();
    load_json(&addr, &dir.path().join("dump3.scm")).await;
    let again = dump(&addr, &dir.path().join("again.scm")).await;
    assert_eq!(
        again, dumps[2],
        "a dump loaded and dumped again is the same"
    );

    // `get` prints the AtomSpace's form, and finds a link by its content
    // in either order of an unordered link.
    let get = |args: &[&str]| {
        let mut all: Vec<String> = vec!["--coordinator".into(), addr.clone(), "get".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            cli(&all).await
        }
    };
    let json = |s: String| serde_json::from_str::<Value>(&s).unwrap();
    let got = json(get(&["--atom", "(Set (Concept \"a\") (Concept \"b\"))", "--json"]).await);
    assert_eq!(got["type"], "SetLink");
    let count = ["--node", "ConceptNode", "count"];
    let node = get(&count).await;
    assert!(
        node.contains("(ConceptNode \"count\" (ctv 0.7 0.9 12345.678))"),
        "{node}"
    );
    // One value by key; a value set, the others kept.
    let v = get(&[&count[..], &["--key", "(Predicate \"fuzzy\")"]].concat()).await;
    assert_eq!(v.trim(), "(FloatValue 1 2 0.30000000000000004)");
    cli(&[
        "--coordinator",
        &addr,
        "set-value",
        "(ConceptNode \"count\")",
        "fresh",
        "(StringValue \"new\")",
    ])
    .await;
    let all = json(get(&[&count[..], &["--json"]].concat()).await);
    assert_eq!(all["values"]["fresh"], serde_json::json!(["new"]), "{all}");
    assert_eq!(
        all["values"]["probabilistic"],
        serde_json::json!(["p", "q \"r\""]),
        "{all}"
    );
    assert_eq!(all["tv"]["kind"], "ctv", "{all}");
    let missing = lockstep(&[
        "--coordinator",
        &addr,
        "get",
        "--node",
        "ConceptNode",
        "count",
        "--key",
        "nope",
    ])
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("no value under (PredicateNode \"nope\")"),
        "{}",
        text(&missing.stderr)
    );
    for (ty, n) in [("SetLink", 0), ("InheritanceLink", 1)] {
        let inc = json(get(&[&count[..], &["--incoming-type", ty, "--json"]].concat()).await);
        assert_eq!(inc["incoming"].as_array().unwrap().len(), n, "{ty}: {inc}");
    }

    // `scan Link --subtypes` is every link, registered types included, in
    // handle order; pages joined with --after are the whole list.
    let links = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "--coordinator",
            &addr,
            "scan",
            "Link",
            "--subtypes",
            "--json",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        async move {
            let args: Vec<&str> = args.iter_mut().map(|s| s.as_str()).collect();
            let v: Value = serde_json::from_str(&cli(&args).await).unwrap();
            v["atoms"].as_array().unwrap().clone()
        }
    };
    let all = links(&["--limit", "1000"]).await;
    assert!(all.iter().all(|a| a["name"].is_null()));
    assert!(all.iter().any(|a| a["type"] == "ReferenceLink"));
    let handles: Vec<&str> = all.iter().map(|a| a["handle"].as_str().unwrap()).collect();
    let mut sorted = handles.clone();
    sorted.sort();
    assert_eq!(handles, sorted, "in handle order");
    let first = links(&["--limit", "5"]).await;
    let last = first.last().unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_string();
    let mut joined: Vec<Value> = first;
    joined.extend(links(&["--after", &last, "--limit", "1000"]).await);
    assert_eq!(joined, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loader_takes_stdin_any_extension_and_strict_modes() {
    let tc = TestCluster::start(2).await;
    let addr = tc.addr();
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path().join("t1.SCM");
    std::fs::write(
        &upper,
        "(setlocale LC_ALL \"\")\n(define (f x) x)\n(define y 2)\n(ConceptNode \"a\")\n(ReferenceLink (ConceptNode \"a\") (WordNode \"a\"))\n",
    )
    .unwrap();
    let out = cli(&["--coordinator", &addr, "load", upper.to_str().unwrap()]).await;
    assert!(
        out.contains("skipped 3 forms: define ×2, setlocale ×1"),
        "{out}"
    );
    assert!(out.contains("new types (1): ReferenceLink"), "{out}");
    for (flag, needle) in [
        ("--strict", "setlocale"),
        ("--strict-types", "ReferenceLink"),
    ] {
        let o = lockstep(&[
            "--coordinator",
            &addr,
            "load",
            flag,
            upper.to_str().unwrap(),
        ])
        .await;
        assert_eq!(o.status.code(), Some(1), "{flag}");
        let err = text(&o.stderr);
        assert!(
            err.contains(needle) && err.contains("t1.SCM:"),
            "{flag}: {err}"
        );
    }
    // `-` is standard input; JSON Lines is told from its content.
    let mut child = tokio::process::Command::new(crate::util::exe())
        .args(["--coordinator", &addr, "load", "-", "--json"])
        .env("LOCKSTEP_HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"type\": \"ConceptNode\", \"name\": \"from stdin\", \"av\": [1, 2, 3]}\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let l: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(l["created"], 1);
    let client = tc.client().await;
    let c = lockstep::model::Atom::node(AtomType::builtin("ConceptNode").unwrap(), "from stdin")
        .unwrap();
    let rec = client
        .get(&[c.handle()])
        .await
        .unwrap()
        .pop()
        .flatten()
        .unwrap();
    assert_eq!(rec.av.vlti, 3.0);
}
