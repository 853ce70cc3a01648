//! Hands the TLS client certificate chain (if the client sent one) to the HTTP handlers as a
//! request extension, so the HTTPS device API can authenticate devices by certificate.

use std::io;
use std::sync::Arc;

use axum::middleware::AddExtension;
use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsAcceptor;
use futures::future::BoxFuture;
use rampart_api::PeerCertificates;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tower::Layer;

/// A rustls acceptor that records the peer's certificate chain.
#[derive(Clone)]
pub(crate) struct PeerCertAcceptor {
    inner: RustlsAcceptor,
}

impl PeerCertAcceptor {
    pub(crate) fn new(inner: RustlsAcceptor) -> Self {
        PeerCertAcceptor { inner }
    }
}

impl<I, S> Accept<I, S> for PeerCertAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = TlsStream<I>;
    type Service = AddExtension<S, PeerCertificates>;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let acceptor = self.inner.clone();
        Box::pin(async move {
            let (stream, service) = acceptor.accept(stream, service).await?;
            let chain = stream.get_ref().1.peer_certificates().map(|certs| Arc::new(certs.to_vec()));
            Ok((stream, axum::Extension(PeerCertificates(chain)).layer(service)))
        })
    }
}
