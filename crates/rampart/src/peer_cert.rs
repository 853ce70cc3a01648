//! The HTTPS listener's acceptor: refuses connections from blocked addresses before TLS
//! (SPEC §10), and hands the TLS client certificate chain (if the client sent one) to the HTTP
//! handlers as a request extension, so the HTTPS device API can authenticate devices by
//! certificate.

use std::io;
use std::sync::Arc;

use axum::middleware::AddExtension;
use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsAcceptor;
use futures::future::BoxFuture;
use rampart_api::PeerCertificates;
use rampart_platform::Platform;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tower::Layer;

/// A rustls acceptor that records the peer's certificate chain.
#[derive(Clone)]
pub(crate) struct PeerCertAcceptor {
    inner: RustlsAcceptor,
    platform: Arc<Platform>,
}

impl PeerCertAcceptor {
    pub(crate) fn new(inner: RustlsAcceptor, platform: Arc<Platform>) -> Self {
        PeerCertAcceptor { inner, platform }
    }
}

impl<S> Accept<TcpStream, S> for PeerCertAcceptor
where
    S: Send + 'static,
{
    type Stream = TlsStream<TcpStream>;
    type Service = AddExtension<S, PeerCertificates>;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let acceptor = self.inner.clone();
        let blocked = stream.peer_addr().is_ok_and(|peer| self.platform.is_blocked(peer.ip()));
        Box::pin(async move {
            if blocked {
                // Dropped before TLS: a blocked address learns nothing.
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "address blocked"));
            }
            let (stream, service) = acceptor.accept(stream, service).await?;
            let chain = stream.get_ref().1.peer_certificates().map(|certs| Arc::new(certs.to_vec()));
            Ok((stream, axum::Extension(PeerCertificates(chain)).layer(service)))
        })
    }
}
