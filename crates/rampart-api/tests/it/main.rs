//! In-process tests of the REST API: the real router over a real SQLite store, driven with
//! `tower::ServiceExt::oneshot`. End-to-end tests over HTTPS live in the `rampart` crate.

mod data;
mod devices;
mod harness;
mod people;
mod security;
