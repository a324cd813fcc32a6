//! TLS for the sinks that connect over TCP (socket, syslog, otlp, nats): rustls with the ring
//! provider.
//! The server's certificate must chain to the configured CA file (the system's roots are not
//! consulted: evidence goes only where the operator pinned it) and carry the server name;
//! a client certificate is offered when configured. The files are read once, at start, so a
//! missing or unreadable one stops the run with the sink's name instead of failing later.
use std::{io, net::TcpStream, path::Path, sync::Arc};

use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
};

use crate::config::sinks::TlsFiles;

/// A TLS stream over a TCP connection.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// What a connection needs: the checked configuration and the name to verify.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl Tls {
    /// Reads the CA (and client) files; `host` is the address's host, the name checked unless
    /// `tls_server_name` says otherwise. The error says which file and what is wrong with it.
    pub fn load(files: &TlsFiles, host: &str) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs("tls_ca_file", &files.ca_file)? {
            roots.add(cert).map_err(|e| {
                format!(
                    "tls_ca_file {}: a certificate is not usable as a CA: {e}",
                    files.ca_file.display()
                )
            })?;
        }
        // ring builds with a C compiler alone (aws-lc-rs needs cmake and more); its provider
        // has no post-quantum key exchange, which rustls marks deprecated.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = match &files.client {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let chain = read_certs("tls_cert_file", cert_file)?;
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                    format!(
                        "tls_key_file {}: no usable private key: {e}",
                        key_file.display()
                    )
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "tls_cert_file {} and tls_key_file {}: {e}",
                        cert_file.display(),
                        key_file.display()
                    )
                })?
            }
        };
        let name = files.server_name.as_deref().unwrap_or(host);
        // `[::1]` is how an IPv6 host is written in an address; the certificate names `::1`.
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| format!("{name:?} is not a DNS name or an IP address to check the server's certificate against"))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Makes the handshake on `tcp` now, so a server that cannot prove itself is refused at
    /// connect (with rustls's reason) before any record is sent.
    pub fn connect(&self, tcp: TcpStream) -> io::Result<TlsStream> {
        let connection = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(connection, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
        }
        Ok(stream)
    }
}

fn read_certs(field: &str, file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: &dyn std::fmt::Display| format!("{field} {}: {e}", file.display());
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| what(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(&e))?;
    if certs.is_empty() {
        return Err(what(&"no PEM certificate in it"));
    }
    Ok(certs)
}
