//! The store conformance suite: one test per check, each run on SQLite always and on
//! PostgreSQL (in a fresh schema, dropped afterwards) when `RAMPART_TEST_POSTGRES` names a
//! server. Modules mirror the store's areas; `support` holds the backends and row builders.
//!
//! `RAMPART_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo test -p rampart-store`

/// `conformance!(name, |store| { ... })` (or `|store, raw|` for raw SQL access) declares one
/// test that runs the body on a fresh SQLite store, then on a fresh PostgreSQL schema.
macro_rules! conformance {
    ($(#[$attr:meta])* $name:ident, |$store:ident, $raw:ident| $body:block) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::support::on_every_backend(stringify!($name), |$raw: $crate::support::Raw| async move {
                let $store: std::sync::Arc<dyn rampart_store::Store> = $raw.open().await;
                $body
            })
            .await;
        }
    };
    ($(#[$attr:meta])* $name:ident, |$store:ident| $body:block) => {
        conformance!($(#[$attr])* $name, |$store, raw| $body);
    };
}

mod audit;
mod credentials;
mod device_data;
mod devices;
mod fleet;
mod gateway;
mod operations;
mod people;
mod postgres_tls;
mod schema;
mod security;
mod support;
mod tenants;
