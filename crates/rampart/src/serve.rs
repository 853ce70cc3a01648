//! `rampart serve`: open everything, bind the listeners (HTTPS and MQTT over TLS), announce
//! them, serve until SIGTERM or SIGINT, then stop accepting, close MQTT sessions, commit
//! everything acknowledged, sign the audit heads and exit 0.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rampart_api::{ApiSettings, AppState};
use rampart_data::{IngestSettings, Ingestor};
use rampart_gateway::{Gateway, GatewaySettings};
use rampart_platform::{Platform, PlatformSettings, SystemClock};

use crate::cli::ServeArgs;
use crate::config::{ServeSettings, check_environment};
use crate::first_start::{AdminPassword, bootstrap_admin, load_master_key, prepare_data_dir};
use crate::peer_cert::PeerCertAcceptor;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    check_environment(std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()))?;
    let settings = ServeSettings::resolve(args)?;
    init_logging(settings.json_logs);
    if let Some(metrics) = settings.metrics_listen {
        anyhow::bail!("--metrics-listen {metrics}: the metrics endpoint is not built yet");
    }
    prepare_data_dir(&settings.data_dir)?;
    let master = load_master_key(&settings.data_dir)?;
    let store =
        rampart_store::open(settings.storage.as_spec(), &settings.data_dir).await.context("opening the store")?;
    let platform = Arc::new(
        Platform::open(
            Arc::clone(&store),
            master,
            Arc::new(SystemClock),
            PlatformSettings { ids_exempt: settings.ids_exempt.clone(), ..PlatformSettings::default() },
        )
        .await
        .context("opening the platform")?,
    );
    let admin = bootstrap_admin(&platform, &settings.data_dir).await?;
    let tls = crate::tls::listener_configs(&platform, &settings).await?;
    // The data plane and the fleet services are the service crates besides the platform that
    // hold the store.
    let ingest_settings =
        IngestSettings { queue_bytes: settings.quotas.ingest_queue_bytes, ..IngestSettings::default() };
    let ingestor = Ingestor::start(Arc::clone(&platform), Arc::clone(&store), ingest_settings);
    let gateway_settings = GatewaySettings {
        listen: settings.mqtt_listen,
        max_retained_per_tenant: settings.quotas.max_retained_per_tenant,
        max_sessions_per_tenant: settings.quotas.max_sessions_per_tenant,
        ..GatewaySettings::default()
    };
    let guard = Arc::new(rampart_gateway::BlockGuard(Arc::clone(&platform)));
    let gateway = Gateway::start_guarded(Arc::clone(&platform), ingestor.clone(), tls.mqtt, gateway_settings, guard)
        .await
        .context("starting the MQTT listener")?;
    let mqtt_addr = gateway.local_addr();

    let listener = std::net::TcpListener::bind(settings.http_listen)
        .with_context(|| format!("binding the HTTPS listener on {}", settings.http_listen))?;
    listener.set_nonblocking(true)?;
    let http_addr = listener.local_addr()?;
    let fleet = rampart_fleet::Fleet::start(
        Arc::clone(&platform),
        Arc::clone(&store),
        ingestor.clone(),
        settings.data_dir.join("firmware"),
        rampart_fleet::FleetSettings::default(),
    );
    let state = AppState::new(Arc::clone(&platform), ingestor.clone(), fleet, ApiSettings::default());
    let app = rampart_api::router(state);
    let handle = Handle::new();
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(tls.https)).handshake_timeout(HANDSHAKE_TIMEOUT);
    let mut server = axum_server::from_tcp(listener)
        .acceptor(PeerCertAcceptor::new(acceptor, Arc::clone(&platform)))
        .handle(handle.clone());
    server.http_builder().http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HANDSHAKE_TIMEOUT);
    let http_task = tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
    handle.listening().await.context("the HTTPS listener did not start")?;

    write_endpoints(&settings.data_dir, http_addr, mqtt_addr)?;
    announce(&settings, http_addr, mqtt_addr, &admin);
    let checkpointer = tokio::spawn(checkpoint_periodically(Arc::clone(&platform)));

    wait_for_shutdown_signal().await?;
    tracing::info!("shutting down");
    handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
    // Closes sessions and waits for their in-flight stores; then everything acknowledged is
    // committed.
    gateway.shutdown().await;
    ingestor.flush().await;
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "HTTPS listener failed"),
        Err(error) => tracing::error!(%error, "HTTPS listener task failed"),
    }
    checkpointer.abort();
    if let Err(error) = platform.audit().checkpoint_all().await {
        tracing::error!(%error, "final audit checkpoint failed");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAMPART_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if json { builder.json().try_init() } else { builder.try_init() };
    if result.is_err() {
        eprintln!("rampart: logging was already initialised");
    }
}

/// Writes `DATA_DIR/endpoints.json` atomically, once the listeners accept connections.
fn write_endpoints(data_dir: &Path, http: SocketAddr, mqtt: SocketAddr) -> anyhow::Result<()> {
    let body = serde_json::json!({ "http": http.to_string(), "mqtt": mqtt.to_string() });
    let temporary = data_dir.join("endpoints.json.tmp");
    std::fs::write(&temporary, body.to_string()).context("writing endpoints.json")?;
    std::fs::rename(&temporary, data_dir.join("endpoints.json")).context("writing endpoints.json")?;
    Ok(())
}

fn announce(settings: &ServeSettings, http: SocketAddr, mqtt: SocketAddr, admin: &AdminPassword) {
    let data_dir = settings.data_dir.display();
    println!("console https://{http}/");
    println!("api https://{http}/api/v1");
    println!("mqtt mqtts://{mqtt}");
    if settings.tls_files.is_none() {
        println!("ca {data_dir}/tls/ca.pem");
    }
    match admin {
        AdminPassword::Generated(path) => println!("admin password {}", path.display()),
        AdminPassword::FromEnvironment => println!("admin password from RAMPART_ADMIN_PASSWORD"),
        AdminPassword::AlreadyBootstrapped => {}
    }
    println!("ready");
    tracing::info!(%http, storage = settings.storage.as_spec().split('@').next_back().unwrap_or(""), "ready");
}

async fn checkpoint_periodically(platform: Arc<Platform>) {
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = platform.audit().checkpoint_all().await {
            tracing::error!(%error, "audit checkpoint failed");
        }
    }
}

async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}
