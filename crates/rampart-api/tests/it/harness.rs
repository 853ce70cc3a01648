//! A platform on a fresh SQLite store with the API router in front, and request helpers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use rampart_api::{ApiSettings, AppState, router};
use rampart_crypto::SecretKey256;
use rampart_platform::{Platform, SystemClock};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "first-Start-pass-42";

pub struct Harness {
    pub app: Router,
    pub platform: Arc<Platform>,
    /// Device data behind the §8 routes; tests submit device data through it.
    pub ingestor: rampart_data::Ingestor,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = rampart_store::open_sqlite(&dir.path().join("rampart.db")).await.expect("open store");
        let platform = Platform::open(store, SecretKey256::generate(), Arc::new(SystemClock)).await.expect("platform");
        platform.bootstrap(ADMIN_PASSWORD).await.expect("bootstrap");
        let platform = Arc::new(platform);
        let ingestor = rampart_data::Ingestor::start(Arc::clone(&platform), rampart_data::IngestSettings::default());
        let state = AppState::new(Arc::clone(&platform), ApiSettings::default()).with_ingestor(ingestor.clone());
        let app = router(state);
        Harness { app, platform, ingestor, _dir: dir }
    }

    /// Sends one request; `body` is sent as JSON. Returns the status and the JSON answer
    /// (`Value::Null` for an empty or non-JSON body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header("content-type", "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Logs in and returns the access token; panics unless the login succeeds.
    pub async fn login(&self, tenant: &str, username: &str, password: &str) -> String {
        let body = json!({"tenant": tenant, "username": username, "password": password});
        let (status, answer) = self.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "login {tenant}/{username}: {answer}");
        answer["access_token"].as_str().expect("access_token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login("platform", "admin", ADMIN_PASSWORD).await
    }

    /// Creates sub-tenant `id` of `platform` and returns a token of its admin `admin`.
    pub async fn tenant_admin(&self, id: &str) -> String {
        let admin = self.admin_token().await;
        let body = json!({"id": id, "name": id, "admin": {"username": "admin", "password": ADMIN_PASSWORD}});
        let (status, answer) = self.post("/api/v1/tenants", &admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "create tenant {id}: {answer}");
        self.login(id, "admin", ADMIN_PASSWORD).await
    }
}
