//! A platform on a fresh SQLite store (the testkit's fixture) with the API router in front,
//! request helpers, and set-up helpers that go through the services (tenants, users,
//! groups), as an administrator would.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use rampart_api::{ApiSettings, AppState, router};
use rampart_core::{GroupId, Username};
use rampart_platform::{NewGroup, NewUser, Platform, Principal};
use rampart_store::Store;
use rampart_testkit::fixture::{FIXTURE_PASSWORD, Fixture};
use serde_json::{Value, json};
use tower::ServiceExt;
use zeroize::Zeroizing;

pub(crate) const ADMIN_PASSWORD: &str = FIXTURE_PASSWORD;

pub(crate) struct Harness {
    pub app: Router,
    pub platform: Arc<Platform>,
    /// The test's own handle on the store, to look at what the services wrote.
    pub store: Arc<dyn Store>,
    /// Device data behind the §8 routes; tests submit device data through it.
    pub ingestor: rampart_data::Ingestor,
    pub fixture: Fixture,
}

impl Harness {
    pub(crate) async fn new() -> Harness {
        Harness::with_settings(ApiSettings::default()).await
    }

    pub(crate) async fn with_settings(settings: ApiSettings) -> Harness {
        Harness::over(Fixture::new().await, settings).await
    }

    /// A harness whose platform reads `clock` (tests move time by hand).
    pub(crate) async fn with_clock(clock: Arc<dyn rampart_platform::Clock>) -> Harness {
        Harness::over(Fixture::with_clock(clock).await, ApiSettings::default()).await
    }

    async fn over(fixture: Fixture, settings: ApiSettings) -> Harness {
        let platform = Arc::clone(&fixture.platform);
        let ingestor = fixture.ingestor.clone();
        let fleet = rampart_fleet::Fleet::start(
            Arc::clone(&platform),
            Arc::clone(&fixture.store),
            ingestor.clone(),
            fixture.data_dir().join("firmware"),
            rampart_fleet::FleetSettings::default(),
        );
        let app = router(AppState::new(Arc::clone(&platform), ingestor.clone(), fleet, settings));
        Harness { app, platform, store: Arc::clone(&fixture.store), ingestor, fixture }
    }

    /// Creates sub-tenant `id` of `platform` (through the services) and answers a token of
    /// its `admin`.
    pub(crate) async fn tenant(&self, id: &str) -> String {
        self.fixture.tenant(id).await;
        self.login(id, "admin", ADMIN_PASSWORD).await
    }

    /// The principal of a tenant's `admin`.
    pub(crate) async fn admin_of(&self, tenant: &str) -> Principal {
        self.fixture.login(tenant, "admin").await
    }

    /// Creates a user (through the services, as the tenant's admin) and answers a token of it.
    pub(crate) async fn user(&self, tenant: &str, username: &str, roles: &[&str], groups: &[&str]) -> String {
        let new = NewUser {
            username: Username::parse(username).expect("username"),
            password: Zeroizing::new(ADMIN_PASSWORD.to_owned()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            groups: (!groups.is_empty()).then(|| groups.iter().map(|g| (*g).to_owned()).collect()),
            email: None,
        };
        self.platform.create_user(&self.admin_of(tenant).await, new).await.expect("create user");
        self.login(tenant, username, ADMIN_PASSWORD).await
    }

    /// Creates a device group (through the services, as the tenant's admin).
    pub(crate) async fn group(&self, tenant: &str, id: &str, parent: Option<&str>) {
        let new = NewGroup {
            id: GroupId::parse(id).expect("group id"),
            name: None,
            parent: parent.map(|parent| GroupId::parse(parent).expect("group id")),
        };
        self.platform.create_group(&self.admin_of(tenant).await, new).await.expect("create group");
    }

    /// Sends one request; `body` is sent as JSON. Returns the status and the JSON answer
    /// (`Value::Null` for an empty or non-JSON body).
    pub(crate) async fn call(
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

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Logs in and returns the access token; panics unless the login succeeds.
    pub(crate) async fn login(&self, tenant: &str, username: &str, password: &str) -> String {
        let body = json!({"tenant": tenant, "username": username, "password": password});
        let (status, answer) = self.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "login {tenant}/{username}: {answer}");
        answer["access_token"].as_str().expect("access_token").to_owned()
    }

    pub(crate) async fn admin_token(&self) -> String {
        self.login("platform", "admin", ADMIN_PASSWORD).await
    }

    /// Creates sub-tenant `id` of `platform` and returns a token of its admin `admin`.
    pub(crate) async fn tenant_admin(&self, id: &str) -> String {
        let admin = self.admin_token().await;
        let body = json!({"id": id, "name": id, "admin": {"username": "admin", "password": ADMIN_PASSWORD}});
        let (status, answer) = self.post("/api/v1/tenants", &admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "create tenant {id}: {answer}");
        self.login(id, "admin", ADMIN_PASSWORD).await
    }
}
