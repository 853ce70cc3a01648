//! Device data through the API (SPEC §8): measurements, aggregates, events, alarms and the
//! live stream, with tenant isolation and group scope. Device data enters through the real
//! `Ingestor` (as the gateway and the HTTPS device API feed it).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use rampart_data::DataKind;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::harness::Harness;

const T0: i64 = 1_764_028_800_000; // 2025-11-25T00:00:00.000Z

async fn device(h: &Harness, token: &str, body: Value) {
    let (status, answer) = h.post("/api/v1/devices", token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

async fn submit(h: &Harness, tenant: &str, device: &str, kind: DataKind, payload: Value) {
    let payload = payload.to_string();
    h.ingestor.submit(tenant, device, kind, payload.as_bytes(), h.platform.now_ms()).await.expect("ingest");
}

#[track_caller]
fn assert_error(status: StatusCode, answer: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{answer}");
    assert_eq!(answer["error"], code, "{answer}");
}

fn items(answer: &Value) -> Vec<Value> {
    answer["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn measurements_pages_filters_and_validation() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    device(&h, &admin, json!({"id": "thermo"})).await;
    let messages: Vec<Value> = (0..25).map(|i| json!({"ts": T0 + i * 1000, "temp": i, "hum": 50 + i})).collect();
    submit(&h, "acme", "thermo", DataKind::Telemetry, Value::Array(messages)).await;

    // Every point exactly once, in order, over pages of 7.
    for order in ["asc", "desc"] {
        let mut points = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/devices/thermo/measurements?limit=7&order={order}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, answer) = h.get(&path, &admin).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            let page = items(&answer);
            assert!(page.len() <= 7);
            points.extend(
                page.into_iter()
                    .map(|p| (p["ts"].as_str().unwrap().to_owned(), p["series"].clone(), p["value"].clone())),
            );
            match answer["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(points.len(), 50, "{order}");
        let mut sorted = points.clone();
        sorted.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
        if order == "desc" {
            sorted.reverse();
        }
        assert_eq!(points, sorted, "{order}");
    }
    let (status, answer) = h.get("/api/v1/devices/thermo/measurements?limit=2", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        items(&answer),
        [
            json!({"ts": "2025-11-25T00:00:00.000Z", "series": "hum", "value": 50.0}),
            json!({"ts": "2025-11-25T00:00:00.000Z", "series": "temp", "value": 0.0})
        ]
    );
    // Series and time range, with RFC 3339 and epoch milliseconds.
    let path = format!("/api/v1/devices/thermo/measurements?series=temp&from=2025-11-25T00:00:10Z&to={}", T0 + 12_000);
    let (status, answer) = h.get(&path, &admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let values: Vec<f64> = items(&answer).iter().map(|p| p["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [10.0, 11.0, 12.0]);
    assert_eq!(answer["next_cursor"], Value::Null);
    // Validation.
    for query in ["from=yesterday", "to=2025-13-01", "order=sideways", "limit=0", "cursor=%21%21", "from=2000&to=1000"]
    {
        let (status, answer) = h.get(&format!("/api/v1/devices/thermo/measurements?{query}"), &admin).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, answer) = h.get("/api/v1/devices/nope/measurements", &admin).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (status, answer) = h.get("/api/v1/devices/bad%20id/measurements", &admin).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    // An auditor has no telemetry:read.
    let auditor = h.user("acme", "audrey", &["auditor"], &[]).await;
    let (status, answer) = h.get("/api/v1/devices/thermo/measurements", &auditor).await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn aggregate_buckets_with_known_values() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    device(&h, &admin, json!({"id": "meter"})).await;
    // Minute i (0..120) has power = i; two hours of data.
    let messages: Vec<Value> = (0..120).map(|i| json!({"ts": T0 + i * 60_000, "values": {"power": i}})).collect();
    submit(&h, "acme", "meter", DataKind::Telemetry, Value::Array(messages)).await;
    let check = |query: &'static str, expected: Value| {
        let h = &h;
        let admin = &admin;
        async move {
            let (status, answer) = h.get(&format!("/api/v1/devices/meter/measurements/aggregate?{query}"), admin).await;
            assert_eq!(status, StatusCode::OK, "{query}: {answer}");
            assert_eq!(answer["items"], expected, "{query}");
        }
    };
    check(
        "series=power&interval=1h&fn=avg",
        json!([{"ts": "2025-11-25T00:00:00.000Z", "value": 29.5}, {"ts": "2025-11-25T01:00:00.000Z", "value": 89.5}]),
    )
    .await;
    check(
        "series=power&interval=1h&fn=sum",
        json!([{"ts": "2025-11-25T00:00:00.000Z", "value": 1770.0}, {"ts": "2025-11-25T01:00:00.000Z", "value": 5370.0}]),
    )
    .await;
    check("series=power&interval=1d&fn=count", json!([{"ts": "2025-11-25T00:00:00.000Z", "value": 120.0}])).await;
    check("series=power&interval=1d&fn=max", json!([{"ts": "2025-11-25T00:00:00.000Z", "value": 119.0}])).await;
    check(
        "series=power&interval=1m&fn=min&from=2025-11-25T00:59:00Z&to=2025-11-25T01:00:30Z",
        json!([{"ts": "2025-11-25T00:59:00.000Z", "value": 59.0}, {"ts": "2025-11-25T01:00:00.000Z", "value": 60.0}]),
    )
    .await;
    check("series=other", json!([])).await;
    for query in ["interval=1h&fn=avg", "series=power&interval=5m", "series=power&fn=median", "series=power&from=x"] {
        let (status, answer) = h.get(&format!("/api/v1/devices/meter/measurements/aggregate?{query}"), &admin).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn events_keep_device_fields_and_filter_by_type() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    device(&h, &admin, json!({"id": "door-1"})).await;
    submit(&h, "acme", "door-1", DataKind::Events, json!({"type": "open", "text": "front", "ts": T0, "floor": 2}))
        .await;
    submit(&h, "acme", "door-1", DataKind::Events, json!({"type": "boot", "ts": T0 + 1, "id": "device-chosen"})).await;
    submit(&h, "acme", "door-1", DataKind::Events, json!({"type": "open", "ts": T0 + 2})).await;
    let (status, answer) = h.get("/api/v1/devices/door-1/events", &admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let events = items(&answer);
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["type"], "open");
    assert_eq!(events[0]["text"], "front");
    assert_eq!(events[0]["floor"], 2);
    assert_eq!(events[0]["ts"], "2025-11-25T00:00:00.000Z");
    assert!(events[0]["id"].is_string());
    assert_ne!(events[1]["id"], "device-chosen", "the envelope's id wins");
    assert_eq!(events[1]["text"], Value::Null);
    let (status, answer) = h.get("/api/v1/devices/door-1/events?type=open&order=desc&limit=1", &admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(items(&answer)[0]["ts"], "2025-11-25T00:00:00.002Z");
    let cursor = answer["next_cursor"].as_str().expect("more").to_owned();
    let (_, answer) =
        h.get(&format!("/api/v1/devices/door-1/events?type=open&order=desc&limit=1&cursor={cursor}"), &admin).await;
    assert_eq!(items(&answer)[0]["ts"], "2025-11-25T00:00:00.000Z");
    assert_eq!(answer["next_cursor"], Value::Null);
}

#[tokio::test]
async fn another_tenants_device_data_is_not_found() {
    let h = Harness::new().await;
    let acme = h.tenant("acme").await;
    let globex = h.tenant("globex").await;
    device(&h, &acme, json!({"id": "shared-name"})).await;
    device(&h, &acme, json!({"id": "acme-only"})).await;
    device(&h, &globex, json!({"id": "shared-name"})).await;
    submit(&h, "acme", "shared-name", DataKind::Telemetry, json!({"ts": T0, "secret": 1})).await;
    submit(&h, "acme", "acme-only", DataKind::Alarms, json!({"type": "leak", "severity": "MAJOR"})).await;
    // Same device id in globex: its own (empty) data, never acme's.
    let (status, answer) = h.get("/api/v1/devices/shared-name/measurements", &globex).await;
    assert_eq!(status, StatusCode::OK);
    assert!(items(&answer).is_empty(), "{answer}");
    for path in [
        "/api/v1/devices/acme-only/measurements",
        "/api/v1/devices/acme-only/measurements/aggregate?series=x",
        "/api/v1/devices/acme-only/events",
        "/api/v1/stream?device=acme-only",
    ] {
        let (status, answer) = h.get(path, &globex).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    }
    let (_, answer) = h.get("/api/v1/alarms", &acme).await;
    let alarm_id = items(&answer)[0]["id"].as_str().expect("alarm id").to_owned();
    let (_, answer) = h.get("/api/v1/alarms", &globex).await;
    assert!(items(&answer).is_empty(), "{answer}");
    let (status, answer) = h.get(&format!("/api/v1/alarms/{alarm_id}"), &globex).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (status, answer) = h
        .call(Method::PATCH, &format!("/api/v1/alarms/{alarm_id}"), Some(&globex), Some(json!({"status": "CLEARED"})))
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (_, answer) = h.get(&format!("/api/v1/alarms/{alarm_id}"), &acme).await;
    assert_eq!(answer["status"], "ACTIVE");
}

#[tokio::test]
async fn group_scope_limits_data_and_alarms() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    for body in [json!({"id": "north"}), json!({"id": "north-a", "parent": "north"}), json!({"id": "south"})] {
        let (status, answer) = h.post("/api/v1/groups", &admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    for (id, group) in [("n1", Some("north-a")), ("s1", Some("south")), ("loose", None)] {
        device(&h, &admin, json!({"id": id, "group": group})).await;
        submit(&h, "acme", id, DataKind::Alarms, json!({"type": "fault", "severity": "MINOR"})).await;
        submit(&h, "acme", id, DataKind::Telemetry, json!({"x": 1})).await;
    }
    let olga = h.user("acme", "olga", &["operator"], &["north"]).await;
    let (status, answer) = h.get("/api/v1/alarms", &olga).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let devices: Vec<String> = items(&answer).iter().map(|a| a["device"].as_str().unwrap().to_owned()).collect();
    assert_eq!(devices, ["n1"]);
    let (_, answer) = h.get("/api/v1/alarms?device=s1", &olga).await;
    assert!(items(&answer).is_empty());
    let (_, answer) = h.get("/api/v1/alarms", &admin).await;
    assert_eq!(items(&answer).len(), 3);
    let south_alarm =
        items(&answer).into_iter().find(|a| a["device"] == "s1").unwrap()["id"].as_str().unwrap().to_owned();
    let (status, answer) = h.get(&format!("/api/v1/alarms/{south_alarm}"), &olga).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (status, answer) = h
        .call(Method::PATCH, &format!("/api/v1/alarms/{south_alarm}"), Some(&olga), Some(json!({"status": "CLEARED"})))
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (status, _) = h.get("/api/v1/devices/n1/measurements", &olga).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/api/v1/devices/s1/measurements", "/api/v1/devices/loose/events", "/api/v1/stream?device=s1"] {
        let (status, answer) = h.get(path, &olga).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn alarm_lifecycle_through_patch_is_audited() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    device(&h, &admin, json!({"id": "boiler"})).await;
    for text in ["warm", "hot", "very hot"] {
        submit(&h, "acme", "boiler", DataKind::Alarms, json!({"type": "overheat", "severity": "MAJOR", "text": text}))
            .await;
    }
    submit(&h, "acme", "boiler", DataKind::Alarms, json!({"type": "door", "severity": "WARNING"})).await;
    let (status, answer) = h.get("/api/v1/alarms?status=ACTIVE&severity=MAJOR&device=boiler", &admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let alarms = items(&answer);
    assert_eq!(alarms.len(), 1);
    let alarm = &alarms[0];
    assert_eq!(
        (alarm["type"].clone(), alarm["count"].clone(), alarm["text"].clone()),
        (json!("overheat"), json!(3), json!("very hot"))
    );
    for field in ["id", "device", "severity", "status", "first_ts", "last_ts"] {
        assert!(alarm[field].is_string(), "{field}: {alarm}");
    }
    let id = alarm["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/alarms/{id}");
    let patch = |token: &str, status: &str| {
        let body = json!({"status": status});
        let (h, path, token) = (&h, path.clone(), token.to_owned());
        async move { h.call(Method::PATCH, &path, Some(&token), Some(body)).await }
    };
    let viewer = h.user("acme", "vera", &["viewer"], &[]).await;
    let (status, answer) = patch(&viewer, "ACKNOWLEDGED").await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    for bad in ["ACTIVE", "acknowledged", "GONE"] {
        let (status, answer) = patch(&admin, bad).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, answer) = patch(&admin, "ACKNOWLEDGED").await;
    assert_eq!((status, answer["status"].clone()), (StatusCode::OK, json!("ACKNOWLEDGED")), "{answer}");
    let (status, answer) = patch(&admin, "ACKNOWLEDGED").await;
    assert_error(status, &answer, StatusCode::CONFLICT, "conflict");
    let (status, answer) = patch(&admin, "CLEARED").await;
    assert_eq!((status, answer["status"].clone()), (StatusCode::OK, json!("CLEARED")), "{answer}");
    let (status, answer) = patch(&admin, "ACKNOWLEDGED").await;
    assert_error(status, &answer, StatusCode::CONFLICT, "conflict");
    let (status, answer) =
        h.call(Method::PATCH, "/api/v1/alarms/00ff", Some(&admin), Some(json!({"status": "CLEARED"}))).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (_, answer) = h.get("/api/v1/alarms?status=CLEARED", &admin).await;
    assert_eq!(items(&answer).len(), 1);
    let (status, answer) = h.get("/api/v1/alarms?status=OPEN", &admin).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    // Two successful updates in the audit chain.
    let (status, answer) = h.get("/api/v1/audit?action=alarm.update", &admin).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let records = items(&answer);
    assert_eq!(records.len(), 2, "{answer}");
    assert_eq!(records[0]["target"], format!("alarm:{id}"));
    // Pagination over alarms.
    let (_, first) = h.get("/api/v1/alarms?limit=1", &admin).await;
    let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, second) = h.get(&format!("/api/v1/alarms?limit=1&cursor={cursor}"), &admin).await;
    assert_eq!(items(&second).len(), 1);
    assert_ne!(items(&first)[0]["id"], items(&second)[0]["id"]);
    assert_eq!(second["next_cursor"], Value::Null);
}

/// Reads SSE frames until one `event:` block arrives; answers (event name, data JSON).
async fn next_event(body: &mut Body) -> (String, Value) {
    let mut buffer = String::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("an SSE event in time");
        let frame = frame.expect("stream open").expect("frame");
        if let Ok(data) = frame.into_data() {
            buffer.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            if let Some(name) = name {
                return (name, serde_json::from_str(&data).expect("JSON data"));
            }
        }
    }
}

async fn open_stream(h: &Harness, token: &str, query: &str) -> Body {
    let request = Request::builder()
        .uri(format!("/api/v1/stream{query}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let response = h.app.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    response.into_body()
}

#[tokio::test]
async fn stream_delivers_live_data_of_own_tenant_and_topics() {
    let h = Harness::new().await;
    let acme = h.tenant("acme").await;
    let globex = h.tenant("globex").await;
    device(&h, &acme, json!({"id": "live-1"})).await;
    device(&h, &acme, json!({"id": "live-2"})).await;
    device(&h, &globex, json!({"id": "live-1"})).await;

    let mut everything = open_stream(&h, &acme, "").await;
    let mut alarms_of_one = open_stream(&h, &acme, "?device=live-1&topics=alarms").await;
    // Other tenant and other device first: neither may show up where it does not belong.
    submit(&h, "globex", "live-1", DataKind::Telemetry, json!({"ts": T0, "theirs": 1})).await;
    submit(&h, "acme", "live-2", DataKind::Alarms, json!({"type": "other", "severity": "MINOR"})).await;
    submit(&h, "acme", "live-1", DataKind::Telemetry, json!({"ts": T0, "temp": 21.5})).await;
    submit(&h, "acme", "live-1", DataKind::Alarms, json!({"type": "leak", "severity": "CRITICAL", "text": "wet"}))
        .await;

    let (name, data) = next_event(&mut everything).await;
    assert_eq!((name.as_str(), data["device"].clone()), ("alarms", json!("live-2")), "{data}");
    let (name, data) = next_event(&mut everything).await;
    assert_eq!(name, "telemetry");
    assert_eq!(data, json!({"device": "live-1", "ts": "2025-11-25T00:00:00.000Z", "values": {"temp": 21.5}}));
    let (name, data) = next_event(&mut alarms_of_one).await;
    assert_eq!(name, "alarms");
    assert_eq!(
        (data["device"].clone(), data["type"].clone(), data["text"].clone()),
        (json!("live-1"), json!("leak"), json!("wet"))
    );
    assert!(data["ts"].is_string() && data["id"].is_string(), "{data}");

    for query in ["?topics=telemetry,gossip", "?device=no%20such"] {
        let (status, answer) = h.get(&format!("/api/v1/stream{query}"), &acme).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let auditor = h.user("acme", "audrey", &["auditor"], &[]).await;
    let (status, answer) = h.get("/api/v1/stream", &auditor).await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
}

/// Reads the stream until it ends; `false` if it is still open after `wait`.
async fn ends_within(body: &mut Body, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let clock = rampart_testkit::fixture::FakeClock::at(1_764_000_000_000);
    let h = Harness::with_clock(clock.clone()).await;
    let acme = h.tenant("acme").await;
    let mut stream = open_stream(&h, &acme, "").await;
    assert!(!ends_within(&mut stream, Duration::from_millis(2500)).await, "a valid token keeps its stream");
    // Past the token's expiry (15 minutes): the next re-check ends the stream.
    clock.advance_ms(16 * 60 * 1000);
    assert!(ends_within(&mut stream, Duration::from_secs(5)).await, "the stream outlived its token");
}
