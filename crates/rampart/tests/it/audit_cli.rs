//! SPEC §11 offline: `rampart audit verify --data-dir` on a stopped server, an audit table
//! altered behind the platform's back, and an export checked with the public key alone.

use std::path::Path;
use std::process::{Command, Output};

use rampart_testkit::{ADMIN_PASSWORD, ServerOptions, TestServer};

use crate::BIN;

fn rampart(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run rampart")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn verify_data_dir(data_dir: &Path) -> Output {
    rampart(&["audit", "verify", "--data-dir", &data_dir.display().to_string()])
}

/// Starts a server, writes a few audit records (logins, a tenant), stops it cleanly.
async fn stopped_server_with_history() -> (TestServer, String) {
    let mut server = TestServer::start(BIN, ServerOptions::default()).await;
    server.tenant_admin("acme").await;
    for _ in 0..3 {
        server.admin_token().await;
    }
    let (status, key) = server.get("/api/v1/audit/public-key", &server.admin_token().await).await;
    assert_eq!(status, 200, "{key}");
    let public_key = key["public_key"].as_str().expect("public_key").to_owned();
    assert!(server.terminate().success());
    (server, public_key)
}

fn sqlite(server: &TestServer) -> rusqlite::Connection {
    rusqlite::Connection::open(server.data_dir.join("rampart.db")).expect("open db")
}

#[tokio::test]
async fn storage_refuses_to_change_audit_records() {
    let (server, _) = stopped_server_with_history().await;
    let db = sqlite(&server);
    let update = db.execute("UPDATE audit_records SET action = 'nothing' WHERE seq = 1", []);
    assert!(update.is_err(), "UPDATE must be refused");
    let delete = db.execute("DELETE FROM audit_records", []);
    assert!(delete.is_err(), "DELETE must be refused");
    drop(db);
    let output = verify_data_dir(&server.data_dir);
    assert!(output.status.success(), "{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
    let platform_chain_intact = stdout(&output)
        .lines()
        .any(|line| line.starts_with("tenant platform (incarnation ") && line.contains("): intact, "));
    assert!(platform_chain_intact, "{}", stdout(&output));
}

#[tokio::test]
async fn an_altered_record_is_named() {
    let (server, _) = stopped_server_with_history().await;
    let db = sqlite(&server);
    db.execute_batch("DROP TRIGGER audit_records_no_update;").expect("drop trigger");
    db.execute("UPDATE audit_records SET outcome = 'failure' WHERE tenant = 'platform' AND seq = 3", [])
        .expect("tamper");
    drop(db);
    let output = verify_data_dir(&server.data_dir);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("first bad record seq 3"), "{}", stdout(&output));
}

#[tokio::test]
async fn a_removed_record_is_found() {
    let (server, _) = stopped_server_with_history().await;
    let db = sqlite(&server);
    db.execute_batch("DROP TRIGGER audit_records_no_delete;").expect("drop trigger");
    db.execute("DELETE FROM audit_records WHERE tenant = 'platform' AND seq = 2", []).expect("tamper");
    drop(db);
    let output = verify_data_dir(&server.data_dir);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("first bad record seq 2"), "{}", stdout(&output));
}

#[tokio::test]
async fn the_removed_tail_is_caught_by_the_signed_checkpoint() {
    let (server, _) = stopped_server_with_history().await;
    let db = sqlite(&server);
    let head: i64 = db
        .query_row("SELECT MAX(seq) FROM audit_records WHERE tenant = 'platform'", [], |row| row.get(0))
        .expect("head");
    db.execute_batch("DROP TRIGGER audit_records_no_delete;").expect("drop trigger");
    db.execute("DELETE FROM audit_records WHERE tenant = 'platform' AND seq = ?1", [head]).expect("tamper");
    drop(db);
    let output = verify_data_dir(&server.data_dir);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains(&format!("first bad record seq {head}")), "{}", stdout(&output));
}

#[tokio::test]
async fn swapped_records_are_found() {
    let (server, _) = stopped_server_with_history().await;
    let db = sqlite(&server);
    db.execute_batch(
        "DROP TRIGGER audit_records_no_update;
         UPDATE audit_records SET seq = -1 WHERE tenant = 'platform' AND seq = 2;
         UPDATE audit_records SET seq = 2 WHERE tenant = 'platform' AND seq = 3;
         UPDATE audit_records SET seq = 3 WHERE tenant = 'platform' AND seq = -1;",
    )
    .expect("reorder");
    drop(db);
    let output = verify_data_dir(&server.data_dir);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("first bad record seq 2"), "{}", stdout(&output));
}

#[tokio::test]
async fn an_export_verifies_with_the_public_key_only() {
    let (server, public_key) = stopped_server_with_history().await;
    let out = server.data_dir.parent().expect("root").join("platform.jsonl");
    let out_arg = out.display().to_string();
    let data_arg = server.data_dir.display().to_string();
    let export = rampart(&["audit", "export", "--data-dir", &data_arg, "--tenant", "platform", "--out", &out_arg]);
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));

    let verify = rampart(&["audit", "verify", "--file", &out_arg, "--public-key", &public_key]);
    assert!(verify.status.success(), "{}", stdout(&verify));

    // Someone else's key does not vouch for this export.
    let other_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let verify = rampart(&["audit", "verify", "--file", &out_arg, "--public-key", other_key]);
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));

    // A changed line is caught and named.
    let text = std::fs::read_to_string(&out).expect("read export");
    let tampered = text.replacen("\"outcome\":\"success\"", "\"outcome\":\"failure\"", 1);
    assert_ne!(text, tampered);
    std::fs::write(&out, tampered).expect("write");
    let verify = rampart(&["audit", "verify", "--file", &out_arg, "--public-key", &public_key]);
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    assert!(stdout(&verify).contains("first bad record seq 1"), "{}", stdout(&verify));
    let _ = ADMIN_PASSWORD;
}

#[tokio::test]
async fn master_key_rotation_rewraps_every_key() {
    let mut server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    assert_eq!(server.get("/api/v1/ca/crl", &acme).await.0, 200);
    assert!(server.terminate().success());

    let new_key = server.data_dir.parent().expect("root").join("master-2.key");
    let data_arg = server.data_dir.display().to_string();
    let key_arg = new_key.display().to_string();
    let rotate = rampart(&["keys", "rotate-master", "--data-dir", &data_arg, "--new-key-file", &key_arg]);
    assert!(rotate.status.success(), "{}", String::from_utf8_lossy(&rotate.stderr));
    assert!(stdout(&rotate).contains("re-wrapped"), "{}", stdout(&rotate));

    // The old key no longer opens anything: the server refuses to start with it.
    let old = Command::new(BIN)
        .args(["serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--data-dir", &data_arg])
        .output()
        .expect("run");
    assert!(!old.status.success(), "the old master key must not open the rotated store");

    // With the new key everything opens: the platform keys, acme's tenant key and its CA key.
    server.options.env.push(("RAMPART_MASTER_KEY_FILE".to_owned(), key_arg.clone()));
    server.spawn().await;
    let acme = server.login("acme", "admin", rampart_testkit::ADMIN_PASSWORD).await;
    assert_eq!(server.get("/api/v1/ca/crl", &acme).await.0, 200);
    let (status, verify) = server.get("/api/v1/audit/verify", &server.admin_token().await).await;
    assert_eq!((status, verify["valid"].as_bool()), (200, Some(true)), "{verify}");
}
