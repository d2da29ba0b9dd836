//! TLS with client certificates on every connection, and the cluster
//! token over it: what a stranger gets (one line each), and that the
//! cluster's own clients and every internal link work.

use std::os::unix::fs::PermissionsExt;

use lockstep::certs::{CLIENT, CertDir, cluster_names};
use lockstep::proto::pb::{self, shard_client::ShardClient};

use crate::util::{TestCluster, UpProcess, lockstep, lockstep_env, text};

/// The CLI flags that give a client certificate `name` of `certs`.
fn tls_flags(certs: &CertDir, name: &str) -> Vec<String> {
    let f = certs.files(name);
    vec![
        "--tls-cert".into(),
        f.cert.display().to_string(),
        "--tls-key".into(),
        f.key.display().to_string(),
        "--tls-ca".into(),
        f.ca.display().to_string(),
    ]
}

fn args<'a>(head: &'a [String], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter()
        .map(String::as_str)
        .chain(tail.iter().copied())
        .collect()
}

fn refused_in_one_line(out: &std::process::Output, what: &str, want: &[&str]) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} was accepted: {}",
        text(&out.stdout)
    );
    assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
    for w in want {
        assert!(err.contains(w), "{what}: {err:?} lacks {w:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_refuses_plaintext_strangers_and_wrong_tokens_and_works_for_its_own() {
    let tc = TestCluster::start_secure(2).await;
    let addr = tc.addr();
    let certs = CertDir::new(tc.dir.path().join("tls"));
    let token = certs.token().display().to_string();
    let shard = tc.client().await.routing().topology.shards[0]
        .address
        .clone();

    // Plaintext, with the right token: refused, saying why.
    let out = lockstep(&["--coordinator", &addr, "--token-file", &token, "status"]).await;
    refused_in_one_line(&out, "a plaintext client", &["TLS"]);
    // Straight to a shard in plaintext: no gRPC answer at all.
    let raw = ShardClient::connect(format!("http://{shard}")).await;
    if let Ok(mut raw) = raw {
        raw.get_atoms(pb::GetAtomsRequest {
            epoch: 0,
            handles: vec![],
        })
        .await
        .expect_err("a plaintext call to a TLS shard");
    }
    let out = lockstep(&["health", &shard]).await;
    assert!(!out.status.success(), "plaintext health check answered");

    // TLS with a certificate of another cluster's CA: refused.
    let other = tempfile::tempdir().unwrap();
    let stranger = CertDir::new(other.path().join("tls"));
    stranger.ensure(&cluster_names(0)).unwrap();
    let flags = tls_flags(&stranger, CLIENT);
    let mut head = vec!["--coordinator".to_string(), addr.clone()];
    head.extend(flags);
    head.extend(["--token-file".to_string(), token.clone()]);
    let out = lockstep(&args(&head, &["status"])).await;
    refused_in_one_line(
        &out,
        "another cluster's CA",
        &["certificate", "UnknownIssuer"],
    );
    // That certificate with this cluster's CA to check the server by: the
    // server refuses the client's certificate.
    let f = stranger.files(CLIENT);
    let out = lockstep(&[
        "--coordinator",
        &addr,
        "--tls-cert",
        &f.cert.display().to_string(),
        "--tls-key",
        &f.key.display().to_string(),
        "--tls-ca",
        &certs.ca().display().to_string(),
        "--token-file",
        &token,
        "status",
    ])
    .await;
    refused_in_one_line(
        &out,
        "another cluster's client certificate",
        &["certificate"],
    );

    // The cluster's own certificate with a wrong token: UNAUTHENTICATED.
    let mut head = vec!["--coordinator".to_string(), addr.clone()];
    head.extend(tls_flags(&certs, CLIENT));
    let out = lockstep_env(&args(&head, &["status"]), &[("LOCKSTEP_TOKEN", "guess")]).await;
    refused_in_one_line(&out, "a wrong token", &["wrong cluster token"]);
    let out = lockstep(&args(&head, &["status"])).await;
    refused_in_one_line(&out, "no token", &["requires a token"]);

    // Certificate and token: a load, then a job whose phases cross every
    // link (client to coordinator and shards, coordinator to shards, shard
    // to shard, shard to coordinator), and health checks over TLS.
    head.extend(["--token-file".to_string(), token.clone()]);
    let out = lockstep(&args(&head, &["load", "--generate", "2000"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lockstep(&args(&head, &["run", "attention", "--ticks", "3"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("committed tick 3"),
        "{}",
        text(&out.stdout)
    );
    let out = lockstep(&args(&head, &["health", &shard])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lockstep(&args(&head, &["status", "--json"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_secure_makes_private_material_and_its_user_s_commands_just_work() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let mut up = UpProcess::spawn(
        &[
            "--secure",
            "--shards",
            "2",
            "--port",
            "0",
            "--data-dir",
            &data_arg,
        ],
        home.path(),
    );
    let addr = up.ready().await;

    let tls = data.join("tls");
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(tls.clone()), 0o700);
    for f in [
        "ca.key",
        "client.key",
        "coordinator.key",
        "shard-1.key",
        "token",
    ] {
        assert_eq!(mode(tls.join(f)), 0o600, "{f}");
    }

    // The user who ran `up`: no flags needed.
    let home_env = [("LOCKSTEP_HOME", home.path().to_str().unwrap())];
    let out = lockstep_env(&["load", "--generate", "500"], &home_env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lockstep_env(&["status"], &home_env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Anybody else (another home, so nothing recorded): refused.
    let out = lockstep(&["--coordinator", &addr, "status"]).await;
    refused_in_one_line(&out, "a client without the cluster's material", &["TLS"]);

    up.stop().await;
}
