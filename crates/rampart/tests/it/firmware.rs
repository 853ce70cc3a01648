//! SPEC §9 firmware through the real binary: the signing key checked by an Ed25519
//! implementation other than the server's, uploads signed by the tenant or offline, refusals
//! (bad signature, hash mismatch), images encrypted at rest, device downloads with Range,
//! campaigns (canary, waves, self-pause, resume, cancel, anti-rollback), attestation
//! verdicts with their events, alarm and quarantine, and advisories with the exposure; and
//! another tenant reaching none of it.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer;
use rampart_mqtt::Protocol;
use rampart_testkit::mqtt::{ConnectOptions, MqttClient};
use rampart_testkit::{ServerOptions, TestServer};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::BIN;

/// Registers `device` (in `group`, if given) and returns a fresh token for it.
async fn device_with_token(server: &TestServer, admin: &str, device: &str, group: Option<&str>) -> String {
    let token = crate::gateway::device_with_token(server, admin, device).await;
    if let Some(group) = group {
        let path = format!("/api/v1/devices/{device}");
        let (status, answer) = server.call(Method::PATCH, &path, Some(admin), Some(json!({"group": group}))).await;
        assert_eq!(status, 200, "{answer}");
    }
    token
}

fn image_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed as usize) % 251) as u8).collect()
}

/// Uploads an image; answers status and body.
async fn upload(server: &TestServer, admin: &str, metadata: Value, image: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .text("metadata", metadata.to_string())
        .part("image", reqwest::multipart::Part::bytes(image).file_name("fw.bin"));
    let response = server
        .client
        .post(server.url("/api/v1/firmware"))
        .bearer_auth(admin)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn manifest(name: &str, version: &str, hardware: &str, counter: i64, sha256: &str) -> String {
    format!("rampart-fw-v1\n{name}\n{version}\n{hardware}\n{counter}\n{sha256}\n")
}

/// Verifies with aws-lc-rs, not the server's ed25519-dalek.
fn independently_verifies(public_key_b64: &str, message: &str, signature_b64: &str) -> bool {
    let key = STANDARD.decode(public_key_b64).expect("key base64");
    let signature = STANDARD.decode(signature_b64).expect("signature base64");
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key)
        .verify(message.as_bytes(), &signature)
        .is_ok()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn found_in_tree(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            return found_in_tree(&path, needle);
        }
        std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
    })
}

#[tokio::test]
async fn the_repository_signs_verifies_encrypts_and_serves_ranges() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    let token = device_with_token(&server, &acme, "cam-1", None).await;
    let other_token = device_with_token(&server, &globex, "cam-1", None).await;

    let (status, key) = server.get("/api/v1/firmware/signing-key", &acme).await;
    assert_eq!((status, key["algorithm"].as_str()), (200, Some("ed25519")), "{key}");
    let public_key = key["public_key"].as_str().expect("public key").to_owned();
    assert_eq!(STANDARD.decode(&public_key).expect("base64").len(), 32);
    let (_, theirs) = server.get("/api/v1/firmware/signing-key", &globex).await;
    assert_ne!(theirs["public_key"], key["public_key"], "each tenant has its own key");

    // Signed by the tenant key, over the exact manifest; checked by another implementation.
    let image = image_bytes(200_000, 7);
    let sha = hex::encode(Sha256::digest(&image));
    let metadata = json!({"name": "cam-fw", "version": "1.0.0", "hardware": "rev-b", "security_counter": 1});
    let (status, firmware) = upload(&server, &acme, metadata, image.clone()).await;
    assert_eq!(status, 201, "{firmware}");
    assert_eq!((firmware["sha256"].as_str(), firmware["size"].as_u64()), (Some(sha.as_str()), Some(200_000)));
    let signed = manifest("cam-fw", "1.0.0", "rev-b", 1, &sha);
    assert!(independently_verifies(&public_key, &signed, firmware["signature"].as_str().expect("signature")));
    assert!(!independently_verifies(
        &public_key,
        &manifest("cam-fw", "1.0.0", "rev-b", 2, &sha),
        firmware["signature"].as_str().expect("sig")
    ));
    let id = firmware["id"].as_str().expect("id").to_owned();

    // A hash mismatch and a duplicate are refused, and leave nothing behind.
    let wrong = json!({"name": "cam-fw", "version": "1.0.1", "hardware": "rev-b", "security_counter": 1, "sha256": "00".repeat(32)});
    let (status, refused) = upload(&server, &acme, wrong, image.clone()).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().is_some_and(|text| text.contains("sha256")), "{refused}");
    let same = json!({"name": "cam-fw", "version": "1.0.0", "hardware": "rev-b", "security_counter": 1});
    assert_eq!(upload(&server, &acme, same, image.clone()).await.0, 409);
    let bad_version = json!({"name": "cam-fw", "version": "latest", "hardware": "rev-b", "security_counter": 1});
    let (status, refused) = upload(&server, &acme, bad_version, image.clone()).await;
    assert!(status == 400 && refused["message"].as_str().is_some_and(|text| text.contains("version")), "{refused}");

    // Signed offline with a registered key; a bad signature is refused.
    let offline = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let offline_public = STANDARD.encode(offline.verifying_key().to_bytes());
    let (status, registered) =
        server.post("/api/v1/firmware/keys", &acme, json!({"id": "release-2026", "public_key": offline_public})).await;
    assert_eq!(status, 201, "{registered}");
    let image_b = image_bytes(70_000, 9);
    let sha_b = hex::encode(Sha256::digest(&image_b));
    let signature =
        STANDARD.encode(offline.sign(manifest("cam-fw", "1.1.0", "rev-b", 2, &sha_b).as_bytes()).to_bytes());
    let offline_meta = |version: &str, signature: &str| json!({"name": "cam-fw", "version": version, "hardware": "rev-b", "security_counter": 2, "signature": signature});
    let (status, bad) = upload(&server, &acme, offline_meta("1.1.1", &signature), image_b.clone()).await;
    assert_eq!(status, 400, "a signature over another manifest: {bad}");
    assert!(bad["message"].as_str().is_some_and(|text| text.contains("signature")), "{bad}");
    let (status, good) = upload(&server, &acme, offline_meta("1.1.0", &signature), image_b.clone()).await;
    assert_eq!((status, good["key_id"].as_str()), (201, Some("release-2026")), "{good}");
    let (_, listed) = server.get("/api/v1/firmware", &acme).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2), "refused uploads left nothing: {listed}");

    // Other routes keep the 1 MiB limit; the upload route takes a larger image.
    let big = image_bytes(2 * 1024 * 1024, 3);
    let big_meta = json!({"name": "cam-fw", "version": "2.0.0", "hardware": "rev-b", "security_counter": 3});
    assert_eq!(upload(&server, &acme, big_meta, big).await.0, 201);
    let oversized = json!({"id": "x", "name": "y".repeat(2 * 1024 * 1024)});
    assert_eq!(server.post("/api/v1/devices", &acme, oversized).await.0, 413);

    // The device downloads it, whole and by range; the file on disk is not the image.
    let download = |range: Option<&str>, token: &str| {
        let mut request = server.client.get(server.url(&format!("/api/v1/device/firmware/{id}"))).bearer_auth(token);
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        async move {
            let response = request.send().await.expect("download");
            let status = response.status().as_u16();
            let content_range = response.headers().get("content-range").map(|v| v.to_str().unwrap_or("").to_owned());
            (status, content_range, response.bytes().await.expect("body").to_vec())
        }
    };
    let (status, _, whole) = download(None, &token).await;
    assert_eq!((status, whole.len()), (200, image.len()));
    assert!(whole == image);
    let (status, content_range, part) = download(Some("bytes=65000-131999"), &token).await;
    assert_eq!((status, content_range.as_deref()), (206, Some("bytes 65000-131999/200000")));
    assert!(part == image[65_000..132_000]);
    let (status, _, tail) = download(Some("bytes=-100"), &token).await;
    assert!(status == 206 && tail == image[199_900..]);
    assert_eq!(download(Some("bytes=300000-"), &token).await.0, 416);
    assert!(!found_in_tree(&server.data_dir, &image[1000..1064]), "the image is stored in clear");

    // Another tenant reaches none of it.
    assert_eq!(server.get(&format!("/api/v1/firmware/{id}"), &globex).await.0, 404);
    assert_eq!(download(None, &other_token).await.0, 404);
    let (_, theirs) = server.get("/api/v1/firmware", &globex).await;
    assert_eq!(theirs["items"], json!([]));
    let (_, audit) = server.get("/api/v1/audit?action=firmware.upload", &acme).await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(3), "{audit}");
}

/// The device's pending operations over HTTPS.
async fn pending(server: &TestServer, token: &str) -> Vec<Value> {
    let (status, page) = server.get("/api/v1/device/operations?status=PENDING", token).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn report(server: &TestServer, token: &str, operation: &str, body: Value) {
    let path = format!("/api/v1/device/operations/{operation}");
    let (status, answer) = server.call(Method::PUT, &path, Some(token), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn campaigns_roll_out_in_waves_pause_themselves_and_refuse_rollback() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    assert_eq!(server.post("/api/v1/groups", &acme, json!({"id": "line-a"})).await.0, 201);
    let mut tokens = Vec::new();
    for index in 0..10 {
        tokens.push(device_with_token(&server, &acme, &format!("pump-{index}"), Some("line-a")).await);
    }
    let meta = json!({"name": "pump-fw", "version": "1.1.0", "hardware": "hw1", "security_counter": 2});
    let (status, firmware) = upload(&server, &acme, meta, image_bytes(10_000, 1)).await;
    assert_eq!(status, 201, "{firmware}");
    let firmware_id = firmware["id"].as_str().expect("id").to_owned();
    let (_, key) = server.get("/api/v1/firmware/signing-key", &acme).await;

    let body = json!({"firmware_id": firmware_id, "target": {"group": "line-a"},
        "strategy": {"canary": 1, "waves": [50, 100], "failure_threshold_pct": 20}});
    let (status, campaign) = server.post("/api/v1/campaigns", &acme, body).await;
    assert_eq!(status, 201, "{campaign}");
    let campaign_id = campaign["id"].as_str().expect("id").to_owned();
    assert_eq!((campaign["total"].as_u64(), campaign["dispatched"].as_u64()), (Some(10), Some(1)), "{campaign}");
    assert_eq!(
        (campaign["counts"]["PENDING"].as_i64(), campaign["counts"]["NOT_STARTED"].as_i64()),
        (Some(1), Some(9))
    );
    let campaign_path = format!("/api/v1/campaigns/{campaign_id}");
    let get_campaign = || server.get(&campaign_path, &acme);

    // The canary: its operation carries the signed manifest, checked independently.
    let canary = tokens.iter().position(|_| true).expect("a device");
    let mut ops = Vec::new();
    for token in &tokens {
        ops.push(pending(&server, token).await);
    }
    let with_op: Vec<usize> = (0..10).filter(|index| !ops[*index].is_empty()).collect();
    assert_eq!(with_op.len(), 1, "only the canary has its operation");
    let canary = with_op.first().copied().unwrap_or(canary);
    let operation = ops[canary][0].clone();
    assert_eq!(operation["type"], "firmware_update");
    let payload = &operation["payload"];
    let signed = manifest("pump-fw", "1.1.0", "hw1", 2, payload["sha256"].as_str().expect("sha"));
    assert!(independently_verifies(
        key["public_key"].as_str().expect("key"),
        &signed,
        payload["signature"].as_str().expect("sig")
    ));
    report(&server, &tokens[canary], operation["id"].as_str().expect("id"), json!({"status": "SUCCESSFUL"})).await;

    // The first wave (to 50 %) starts by itself; 2 of its 4 fail: past 20 %, it pauses itself.
    let campaign = wait_for("the first wave", async || {
        let (_, campaign) = get_campaign().await;
        (campaign["dispatched"] == 5).then_some(campaign)
    })
    .await;
    assert_eq!(campaign["status"], "running");
    let mut failed = 0;
    for (index, token) in tokens.iter().enumerate() {
        for operation in pending(&server, token).await {
            let id = operation["id"].as_str().expect("id");
            if failed < 2 {
                failed += 1;
                report(&server, token, id, json!({"status": "FAILED", "reason": "flash error"})).await;
            } else {
                report(&server, token, id, json!({"status": "SUCCESSFUL"})).await;
            }
            assert_ne!(index, canary);
        }
    }
    let paused = wait_for("the self-pause", async || {
        let (_, campaign) = get_campaign().await;
        (campaign["status"] == "paused").then_some(campaign)
    })
    .await;
    assert!(paused["reason"].as_str().is_some_and(|text| text.contains("2 of 4")), "{paused}");
    assert_eq!(paused["dispatched"], 5, "no further wave while paused");

    // Another tenant cannot see or move it.
    assert_eq!(server.get(&format!("/api/v1/campaigns/{campaign_id}"), &globex).await.0, 404);
    assert_eq!(server.post(&format!("/api/v1/campaigns/{campaign_id}/resume"), &globex, json!({})).await.0, 404);

    // Resumed by a person: the last wave goes out; all succeed; it completes.
    let (status, resumed) = server.post(&format!("/api/v1/campaigns/{campaign_id}/resume"), &acme, json!({})).await;
    assert_eq!((status, resumed["dispatched"].as_u64()), (200, Some(10)), "{resumed}");
    for token in &tokens {
        for operation in pending(&server, token).await {
            report(&server, token, operation["id"].as_str().expect("id"), json!({"status": "SUCCESSFUL"})).await;
        }
    }
    let done = wait_for("completion", async || {
        let (_, campaign) = get_campaign().await;
        (campaign["status"] == "completed").then_some(campaign)
    })
    .await;
    assert_eq!(
        (done["counts"]["SUCCESSFUL"].as_i64(), done["counts"]["FAILED"].as_i64()),
        (Some(8), Some(2)),
        "{done}"
    );

    // Anti-rollback: an image with a lower security counter is refused for updated devices.
    let (_, device) = server.get(&format!("/api/v1/devices/pump-{canary}"), &acme).await;
    assert_eq!(device["attestation"]["security_counter"], 2, "{device}");
    let old = json!({"name": "pump-fw", "version": "1.0.9", "hardware": "hw1", "security_counter": 1});
    let (_, old) = upload(&server, &acme, old, image_bytes(5_000, 2)).await;
    let rollback = json!({"firmware_id": old["id"], "target": {"devices": [format!("pump-{canary}")]}});
    let (status, refused) = server.post("/api/v1/campaigns", &acme, rollback).await;
    assert_eq!(status, 409, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("anti-rollback") && message.contains(&format!("pump-{canary}")), "{refused}");
    // And no firmware_update outside a campaign.
    let direct = json!({"type": "firmware_update", "payload": {"firmware_id": old["id"]}});
    assert_eq!(server.post(&format!("/api/v1/devices/pump-{canary}/operations"), &acme, direct).await.0, 400);

    // Cancel: pending operations fail with reason "cancelled".
    let newer = json!({"name": "pump-fw", "version": "1.2.0", "hardware": "hw1", "security_counter": 3});
    let (_, newer) = upload(&server, &acme, newer, image_bytes(5_000, 4)).await;
    let body = json!({"firmware_id": newer["id"], "target": {"devices": ["pump-0", "pump-1"]}, "strategy": {"canary": 1, "waves": [100]}});
    let (status, second) = server.post("/api/v1/campaigns", &acme, body).await;
    assert_eq!(status, 201, "{second}");
    let second_id = second["id"].as_str().expect("id");
    let (status, paused) = server.post(&format!("/api/v1/campaigns/{second_id}/pause"), &acme, json!({})).await;
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")), "{paused}");
    assert_eq!(server.post(&format!("/api/v1/campaigns/{second_id}/pause"), &acme, json!({})).await.0, 409);
    let (_, audit) = server.get("/api/v1/audit?action=campaign.pause", &acme).await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");
    let (status, cancelled) = server.post(&format!("/api/v1/campaigns/{second_id}/cancel"), &acme, json!({})).await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
    assert_eq!(cancelled["counts"]["FAILED"], 1, "{cancelled}");
    let (_, failed_ops) = server.get("/api/v1/devices/pump-0/operations?status=FAILED", &acme).await;
    assert!(failed_ops["items"].as_array().into_iter().flatten().any(|op| op["reason"] == "cancelled"), "{failed_ops}");
    assert_eq!(server.post(&format!("/api/v1/campaigns/{second_id}/resume"), &acme, json!({})).await.0, 409);
    let (_, audit) = server.get("/api/v1/audit?action=campaign.create", &acme).await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(2), "{audit}");
}

async fn attest(client: &mut MqttClient, device: &str, version: &str, sha256: &str, secure_boot: bool) {
    let report = json!({"firmware_version": version, "firmware_sha256": sha256, "secure_boot": secure_boot});
    let reason = client.publish_qos1(&format!("devices/{device}/attestation"), report.to_string().as_bytes()).await;
    assert_eq!(reason.expect("publish"), Some(0));
}

async fn attestation_of(server: &TestServer, admin: &str, device: &str, status: &str) -> Value {
    wait_for(&format!("{device} to be {status}"), async || {
        let (_, answer) = server.get(&format!("/api/v1/devices/{device}"), admin).await;
        (answer["attestation"]["status"] == status).then_some(answer)
    })
    .await
}

#[tokio::test]
async fn attestation_is_judged_against_the_repository_and_advisories_expose_devices() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    let token = device_with_token(&server, &acme, "gw-1", None).await;
    let ca = server.data_dir.join("tls/ca.pem");
    let options = ConnectOptions::token(Protocol::V5, "acme", "gw-1", &token);
    let (mut client, code) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
    assert_eq!(code, 0);

    // An empty repository judges nothing.
    attest(&mut client, "gw-1", "1.1.0", &"ab".repeat(32), true).await;
    let device = attestation_of(&server, &acme, "gw-1", "unknown").await;
    assert!(device["attestation"]["checked_at"].is_string(), "{device}");

    let image = image_bytes(4_000, 5);
    let sha = hex::encode(Sha256::digest(&image));
    let meta = json!({"name": "gw-fw", "version": "1.1.0", "hardware": "gw", "security_counter": 4});
    assert_eq!(upload(&server, &acme, meta, image).await.0, 201);
    attest(&mut client, "gw-1", "1.1.0", &sha, true).await;
    let device = attestation_of(&server, &acme, "gw-1", "trusted").await;
    assert_eq!(device["attestation"]["security_counter"], 4, "{device}");

    // An unknown hash: untrusted, a security event and a CRITICAL alarm.
    attest(&mut client, "gw-1", "1.1.0", &"cd".repeat(32), true).await;
    attestation_of(&server, &acme, "gw-1", "untrusted").await;
    let events = wait_for("untrusted_firmware", async || {
        let (_, events) = server.get("/api/v1/security/events?type=untrusted_firmware", &acme).await;
        events["items"].as_array().is_some_and(|items| !items.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events["items"][0]["device"], "gw-1", "{events}");
    let (_, alarms) = server.get("/api/v1/alarms?device=gw-1", &acme).await;
    let alarm =
        alarms["items"].as_array().into_iter().flatten().find(|alarm| alarm["type"] == "untrusted_firmware").cloned();
    assert_eq!(alarm.as_ref().map(|alarm| alarm["severity"].clone()), Some(json!("CRITICAL")), "{alarms}");
    // Secure boot off: its own event, and untrusted even with a known hash.
    attest(&mut client, "gw-1", "1.1.0", &sha, false).await;
    wait_for("secure_boot_disabled", async || {
        let (_, events) = server.get("/api/v1/security/events?type=secure_boot_disabled", &acme).await;
        events["items"].as_array().is_some_and(|items| !items.is_empty()).then_some(events)
    })
    .await;
    let (_, theirs) = server.get("/api/v1/security/events?type=untrusted_firmware", &globex).await;
    assert_eq!(theirs["items"], json!([]), "{theirs}");

    // Advisories: an OSV record for gw-fw >= 1.0.0, < 1.2.0 exposes gw-1 (on 1.1.0).
    attest(&mut client, "gw-1", "1.1.0", &sha, true).await;
    attestation_of(&server, &acme, "gw-1", "trusted").await;
    let osv = json!({"id": "RSA-2026-0001", "summary": "Buffer overflow in the MQTT stack", "severity": "HIGH",
        "affected": [{"package": {"name": "gw-fw"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.2.0"}]}]}]});
    let (status, imported) = server.post("/api/v1/advisories", &acme, osv.clone()).await;
    assert_eq!(status, 201, "{imported}");
    let (_, exposure) = server.get("/api/v1/advisories/exposure", &acme).await;
    assert_eq!(exposure["items"].as_array().map(Vec::len), Some(1), "{exposure}");
    assert_eq!(
        (exposure["items"][0]["device"].as_str(), exposure["items"][0]["advisories"][0]["id"].as_str()),
        (Some("gw-1"), Some("RSA-2026-0001"))
    );
    let (_, theirs) = server.get("/api/v1/advisories/exposure", &globex).await;
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    let mut malformed = osv.clone();
    malformed["affected"][0]["ranges"][0]["type"] = json!("GIT");
    let (status, refused) = server.post("/api/v1/advisories", &acme, malformed).await;
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().is_some_and(|text| text.contains("affected[0].ranges[0].type")), "{refused}");

    // The CLI imports a file, and refuses a malformed one naming the field, with a non-zero exit.
    let good = server.data_dir.join("osv-good.json");
    let fixed = json!({"id": "RSA-2026-0002", "affected": [{"package": {"name": "gw-fw"}, "versions": ["1.1.0"]}]});
    std::fs::write(&good, fixed.to_string()).expect("write");
    let bad = server.data_dir.join("osv-bad.json");
    std::fs::write(&bad, json!({"id": "RSA-2026-0003", "affected": [{"package": {}}]}).to_string()).expect("write");
    let cli = |file: &std::path::Path| {
        std::process::Command::new(BIN)
            .args(["advisories", "--url", &server.url(""), "--ca"])
            .arg(&ca)
            .args(["import"])
            .arg(file)
            .env("RAMPART_TOKEN", &acme)
            .output()
            .expect("run the CLI")
    };
    let ok = cli(&good);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let refused = cli(&bad);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("affected[0].package.name"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let (_, exposure) = server.get("/api/v1/advisories/exposure", &acme).await;
    assert_eq!(exposure["items"][0]["advisories"].as_array().map(Vec::len), Some(2), "{exposure}");

    // Quarantine on untrusted firmware, when the tenant policy says so.
    let (status, _) = server
        .call(Method::PUT, "/api/v1/tenant/policy", Some(&acme), Some(json!({"quarantine_untrusted_firmware": true})))
        .await;
    assert_eq!(status, 200);
    attest(&mut client, "gw-1", "6.6.6", &"ef".repeat(32), true).await;
    assert!(client.closed_within(Duration::from_secs(3)).await, "a quarantined device is cut off");
    let (_, device) = server.get("/api/v1/devices/gw-1", &acme).await;
    assert_eq!(device["status"], "quarantined", "{device}");
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
    assert_eq!(code, 0x87, "refused while quarantined");
}

#[tokio::test]
async fn refused_uploads_are_readable_over_http1_and_http2_with_curl() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, image_bytes(3 * 1024 * 1024, 1)).expect("write image");
    let ca = server.data_dir.join("tls/ca.pem");
    let curl = |version: &str, extra: &[String]| {
        let mut command = std::process::Command::new("curl");
        command.args(["-sS", version, "--cacert"]).arg(&ca).args(["-o", "/dev/null", "-w", "%{http_code}", "-H"]);
        command.arg(format!("Authorization: Bearer {acme}")).args(extra).arg(server.url("/api/v1/firmware"));
        let output = command.output().expect("curl");
        (String::from_utf8_lossy(&output.stdout).to_string(), String::from_utf8_lossy(&output.stderr).to_string())
    };
    let bad_signature = format!(
        "metadata={{\"name\":\"fw\",\"version\":\"1.0.0\",\"hardware\":\"h\",\"security_counter\":1,\"signature\":\"{}\"}}",
        STANDARD.encode([0u8; 64])
    );
    let bad_version =
        "metadata={\"name\":\"fw\",\"version\":\"x\",\"hardware\":\"h\",\"security_counter\":1}".to_owned();
    for version in ["--http1.1", "--http2"] {
        // Not a multipart form at all: read to its end, then a 400.
        let (status, stderr) = curl(
            version,
            &[
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data-binary".into(),
                format!("@{}", image.display()),
            ],
        );
        assert_eq!(status, "400", "curl {version} (not multipart): {stderr}");
        // A signature but no registered key: refused once the image is in.
        let (status, stderr) =
            curl(version, &["-F".into(), bad_signature.clone(), "-F".into(), format!("image=@{}", image.display())]);
        assert_eq!(status, "400", "curl {version} (bad signature): {stderr}");
        // Refused on the metadata, before the image: the image still streaming is drained.
        let (status, stderr) =
            curl(version, &["-F".into(), bad_version.clone(), "-F".into(), format!("image=@{}", image.display())]);
        assert_eq!(status, "400", "curl {version} (bad version): {stderr}");
        // A good one.
        let meta = format!(
            "metadata={{\"name\":\"fw\",\"version\":\"1.0.{}\",\"hardware\":\"h\",\"security_counter\":1}}",
            version.len()
        );
        let (status, stderr) = curl(version, &["-F".into(), meta, "-F".into(), format!("image=@{}", image.display())]);
        assert_eq!(status, "201", "curl {version}: {stderr}");
    }
}
