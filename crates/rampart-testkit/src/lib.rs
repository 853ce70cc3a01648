//! Test support: [`TestServer`] starts the real `rampart` binary on port 0 with a fresh data
//! dir, waits for `endpoints.json`, and offers an HTTPS client that trusts the platform CA;
//! [`mqtt`] is an MQTT client over TLS; [`fixture`] is an in-process platform with a fake
//! clock for the crates' own integration tests.

pub mod fixture;
pub mod mqtt;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The admin password every test server starts with.
pub const ADMIN_PASSWORD: &str = "violet-Harbor-2026-x";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `--storage` value; `None` for the embedded SQLite store.
    pub storage: Option<String>,
    /// Extra arguments after `serve`.
    pub extra_args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Leave `RAMPART_ADMIN_PASSWORD` unset so a password file is generated.
    pub generated_password: bool,
}

/// A running `rampart serve` child process; killed on drop.
pub struct TestServer {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub http_addr: String,
    /// The MQTT over TLS listener, `host:port`.
    pub mqtt_addr: String,
    pub client: reqwest::Client,
    pub options: ServerOptions,
    child: Option<Child>,
    log_path: PathBuf,
    _root: tempfile::TempDir,
}

impl TestServer {
    /// Starts the binary at `binary` (use `env!("CARGO_BIN_EXE_rampart")`).
    pub async fn start(binary: &str, options: ServerOptions) -> TestServer {
        install_crypto_provider();
        let root = tempfile::tempdir().expect("tempdir");
        let data_dir = root.path().join("data");
        let log_path = root.path().join("server.log");
        let mut server = TestServer {
            binary: PathBuf::from(binary),
            data_dir,
            http_addr: String::new(),
            mqtt_addr: String::new(),
            client: reqwest::Client::new(),
            options,
            child: None,
            log_path,
            _root: root,
        };
        server.spawn().await;
        server
    }

    /// Starts (or restarts) the child on the same data dir.
    pub async fn spawn(&mut self) {
        let endpoints = self.data_dir.join("endpoints.json");
        std::fs::remove_file(&endpoints).ok();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("log file");
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0"])
            .args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(storage) = &self.options.storage {
            command.args(["--storage", storage]);
        }
        if !self.options.generated_password {
            command.env("RAMPART_ADMIN_PASSWORD", ADMIN_PASSWORD);
        }
        for (name, value) in &self.options.env {
            command.env(name, value);
        }
        self.child = Some(command.spawn().expect("spawn rampart"));
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&endpoints)
                && let Ok(value) = serde_json::from_str::<Value>(&text)
                && let Some(http) = value["http"].as_str()
            {
                self.http_addr = http.to_owned();
                self.mqtt_addr = value["mqtt"].as_str().unwrap_or_default().to_owned();
                break;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("rampart exited during start-up with {status}:\n{}", self.log());
            }
            assert!(started.elapsed() < START_TIMEOUT, "rampart did not start in time:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.client = https_client(&self.data_dir.join("tls/ca.pem"));
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        child.wait().expect("wait")
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{}", self.http_addr, path)
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and JSON
    /// (`Value::Null` when the answer is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(token), Some(body)).await
    }

    /// Logs in and returns the access token; panics unless it succeeds.
    pub async fn login(&self, tenant: &str, username: &str, password: &str) -> String {
        let body = json!({"tenant": tenant, "username": username, "password": password});
        let (status, answer) = self.call(reqwest::Method::POST, "/api/v1/auth/login", None, Some(body)).await;
        assert_eq!(status, 200, "login {tenant}/{username}: {answer}");
        answer["access_token"].as_str().expect("access_token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login("platform", "admin", ADMIN_PASSWORD).await
    }

    /// Creates sub-tenant `id` and returns its admin's token.
    pub async fn tenant_admin(&self, id: &str) -> String {
        let admin = self.admin_token().await;
        let body = json!({"id": id, "name": id, "admin": {"username": "admin", "password": ADMIN_PASSWORD}});
        let (status, answer) = self.post("/api/v1/tenants", &admin, body).await;
        assert_eq!(status, 201, "create tenant {id}: {answer}");
        self.login(id, "admin", ADMIN_PASSWORD).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// reqwest is built without a crypto provider of its own: use the one the server uses.
fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// An HTTPS client that trusts only the CA in `ca_pem` (no system roots).
pub fn https_client(ca_pem: &Path) -> reqwest::Client {
    install_crypto_provider();
    let pem = std::fs::read(ca_pem).expect("read ca.pem");
    let ca = reqwest::Certificate::from_pem(&pem).expect("parse ca.pem");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The PostgreSQL URL for tests, or `None` (with a printed reason) when not configured.
pub fn postgres_url() -> Option<String> {
    match std::env::var("RAMPART_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("skipping PostgreSQL variant: RAMPART_TEST_POSTGRES is not set");
            None
        }
    }
}
