//! TLS on both listeners (rustls with ring, as tonic's): the server's certificate and, on gRPC,
//! optional client certificates for switches (mutual TLS) signed by the configured CA. A switch
//! that presents one is the switch its certificate's subject common name names
//! ([`switch_id`]); people connect without one and present their token. Plaintext only when
//! the configuration says so.

use crate::config::{ConfigError, TlsConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use x509_cert::der::{
    Decode,
    asn1::{ObjectIdentifier, PrintableStringRef, Utf8StringRef},
};

/// A handshake that takes longer is dropped, so slow clients cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Both listeners' TLS settings, read and checked once at start-up.
#[derive(Clone)]
pub struct Tls {
    pub grpc: tonic::transport::ServerTlsConfig,
    pub http: Arc<rustls::ServerConfig>,
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::File {
        key,
        message: format!("cannot read {}: {e}", path.display()),
    })
}

impl TlsConfig {
    /// The listeners' TLS, or None when the configuration asks for plaintext.
    pub fn load(&self) -> Result<Option<Tls>, ConfigError> {
        self.validate()?;
        let (Some(cert_path), Some(key_path)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let cert_pem = read("tls.cert_file", cert_path)?;
        let key_pem = read("tls.key_file", key_path)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or(ConfigError::File {
                key: "tls.cert_file",
                message: format!("{} holds no PEM certificate", cert_path.display()),
            })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ConfigError::File {
            key: "tls.key_file",
            message: format!("{} holds no PEM private key: {e}", key_path.display()),
        })?;
        let http = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| ConfigError::File {
            key: "tls.key_file",
            message: format!("does not match tls.cert_file, or is unusable: {e}"),
        })?;
        let mut grpc = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&cert_pem, &key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca_path) = &self.client_ca_file {
            let ca_pem = read("tls.client_ca_file", ca_path)?;
            let any = CertificateDer::pem_slice_iter(&ca_pem).any(|c| c.is_ok());
            if !any {
                return Err(ConfigError::File {
                    key: "tls.client_ca_file",
                    message: format!("{} holds no PEM certificate", ca_path.display()),
                });
            }
            grpc = grpc
                .client_ca_root(tonic::transport::Certificate::from_pem(ca_pem))
                // People connect without a certificate and present a token instead.
                .client_auth_optional(true);
        }
        // tonic reads the PEM only when it builds the acceptor: make it do so now.
        tonic::transport::Server::builder()
            .tls_config(grpc.clone())
            .map_err(|e| ConfigError::File {
                key: "tls.client_ca_file",
                message: format!("the gRPC listener's TLS cannot be set up: {e}"),
            })?;
        Ok(Some(Tls {
            grpc,
            http: Arc::new(http),
        }))
    }
}

/// id-at-commonName (2.5.4.3).
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// The switch a client certificate stands for: its subject's common name. None when the
/// certificate cannot be read or names no one.
pub fn switch_id(certificate: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(certificate).ok()?;
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == COMMON_NAME)
        .find_map(|atv| {
            atv.value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
        .filter(|id| !id.is_empty())
}

/// The HTTP side's TLS listener for axum: accepts TCP connections and runs each handshake in
/// its own task (bounded by [`HANDSHAKE_TIMEOUT`]), so one slow client holds up nobody.
pub struct TlsListener {
    connections: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, connections) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { connections, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(c) => c,
            // The accept task only stops once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
