//! TLS for PostgreSQL on the rustls and aws-lc-rs the AWS SDK links
//! already: a small `MakeTlsConnect` over tokio-rustls (tokio-postgres-rustls
//! would pin its own versions), and the certificate checks of libpq's
//! `sslmode`s.
//!
//! - `require` (and `prefer`, `allow` when they end up encrypting) without a
//!   root certificate: encrypted, the certificate not checked (the
//!   handshake's signature still is, so the key is the certificate's).
//! - any of those with a root certificate, and `verify-ca`: the chain must
//!   lead to a root, whatever name the certificate holds. webpki checks the
//!   chain before the name, so a name mismatch means the chain was good.
//! - `verify-full`: the chain and the host name.
//!
//! ALPN says `postgresql`, as libpq 17 does (needed for
//! `sslnegotiation=direct`; servers before 17 ignore it). SCRAM is bound to
//! the server's certificate (`tls-server-end-point`), as libpq's default
//! `channel_binding=prefer` does.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::engine::error::Error;

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Roots {
    /// None given (and no `~/.postgresql/root.crt`): the certificate is not checked.
    None,
    /// A PEM file of CA certificates (`sslrootcert=FILE`).
    File(PathBuf),
    /// The operating system's roots (`sslrootcert=system`).
    System,
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing (`require`, `prefer`, `allow` without roots).
    Nothing,
    /// The chain, not the name (`verify-ca`, or weaker modes with roots).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// A client certificate and its key (`sslcert`, `sslkey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientCert {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

/// Everything the TLS side of a connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsSettings {
    pub(super) roots: Roots,
    pub(super) check: Check,
    pub(super) client: Option<ClientCert>,
}

/// The TLS connector tokio-postgres calls for each host it tries.
#[derive(Clone)]
pub(super) struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for RustlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RustlsConnect")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn file_error(what: &str, path: &Path, detail: impl fmt::Display) -> Error {
    Error::usage(format!("cannot read {what} {}: {detail}", path.display()))
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::None => {}
        Roots::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| file_error("the root certificate file (sslrootcert)", path, e))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::usage(format!(
                    "the root certificate file {} holds no usable certificate",
                    path.display()
                ))
                .hint("sslrootcert names a PEM file of CA certificates (for RDS, the region's bundle)"));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::usage("sslrootcert=system: the operating system holds no trusted roots")
                    .hint("install the CA certificates (apt-get install ca-certificates) or name a file"));
            }
        }
    }
    Ok(store)
}

fn load_client(client: &ClientCert) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let certs = CertificateDer::pem_file_iter(&client.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| file_error("the client certificate (sslcert)", &client.cert, e))?;
    if certs.is_empty() {
        return Err(Error::usage(format!(
            "the client certificate file {} holds no certificate",
            client.cert.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // libpq's rule: the key may be read by its owner only, or by a group when root owns it.
        let meta = std::fs::metadata(&client.key).map_err(|e| file_error("the client key (sslkey)", &client.key, e))?;
        let mode = meta.permissions().mode();
        let too_open = if meta.uid() == 0 { mode & 0o037 != 0 } else { mode & 0o077 != 0 };
        if too_open {
            return Err(Error::usage(format!(
                "the client key {} may be read by others: its mode is {:o}",
                client.key.display(),
                mode & 0o777
            ))
            .hint(format!("chmod 0600 {}", client.key.display())));
        }
    }
    let key =
        PrivateKeyDer::from_pem_file(&client.key).map_err(|e| file_error("the client key (sslkey)", &client.key, e))?;
    Ok((certs, key))
}

impl TlsSettings {
    /// The connector: roots, checks and client certificate loaded once.
    ///
    /// # Errors
    /// A usage error naming a file that cannot be read or holds nothing usable.
    pub(super) fn connector(&self) -> Result<RustlsConnect, Error> {
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match self.check {
            Check::Nothing => Arc::new(AnyCertificate(Arc::clone(&provider))),
            check => {
                let roots = Arc::new(load_roots(&self.roots)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                    .build()
                    .map_err(|e| Error::usage(format!("cannot use the root certificates: {e}")))?;
                if check == Check::Chain { Arc::new(ChainOnly(webpki)) } else { webpki }
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::usage(format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client {
            Some(client) => {
                let (certs, key) = load_client(client)?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    Error::usage(format!(
                        "the client certificate {} and key {} do not go together: {e}",
                        client.cert.display(),
                        client.key.display()
                    ))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(RustlsConnect { config: Arc::new(config) })
    }
}

/// `require` without roots: any certificate, but the handshake's signatures
/// are still checked against it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: webpki's checks except the name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the name only once the chain, dates and usage are good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsHandshake, io::Error> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{domain:?} is not a host name TLS can check"))
        })?;
        Ok(RustlsHandshake { connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)), name })
    }
}

/// One handshake, with one host's name.
pub(super) struct RustlsHandshake {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for RustlsHandshake
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move { self.connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

/// An encrypted connection.
pub(super) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// `tls-server-end-point` (RFC 5929), as libpq offers it: SCRAM then
    /// proves the password was sent to the holder of this certificate, even
    /// under `sslmode=require` where nothing checked it.
    fn channel_binding(&self) -> ChannelBinding {
        match self.0.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| server_end_point(c)) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// One DER element: (tag, contents, what follows). `None` on anything malformed.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The certificate's hash for `tls-server-end-point`: with the hash of its
/// signature algorithm, SHA-256 in place of MD5 and SHA-1 (RFC 5929 4.1);
/// `None` for algorithms without one (RSA-PSS, Ed25519), as PostgreSQL's server.
fn server_end_point(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use sha2::Digest;
    const RSA: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: [u8; 6] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let (0x30, certificate, _) = der(cert.as_ref())? else { return None };
    let (0x30, _, rest) = der(certificate)? else { return None };
    let (0x30, algorithm, _) = der(rest)? else { return None };
    let (0x06, oid, _) = der(algorithm)? else { return None };
    let bytes = cert.as_ref();
    let (family, last) = if let Some(last) = oid.strip_prefix(&RSA[..]) {
        ("rsa", last)
    } else if let Some(last) = oid.strip_prefix(&ECDSA[..]) {
        ("ecdsa", last)
    } else {
        return None;
    };
    match (family, last) {
        // md5, sha1, sha256 WithRSAEncryption; ecdsa-with-SHA1, -SHA256
        ("rsa", [0x04 | 0x05 | 0x0b]) | ("ecdsa", [0x01] | [0x03, 0x02]) => Some(sha2::Sha256::digest(bytes).to_vec()),
        ("rsa", [0x0c]) | ("ecdsa", [0x03, 0x03]) => Some(sha2::Sha384::digest(bytes).to_vec()),
        ("rsa", [0x0d]) | ("ecdsa", [0x03, 0x04]) => Some(sha2::Sha512::digest(bytes).to_vec()),
        _ => None,
    }
}

/// What went wrong in a handshake, for a person: the rustls error under
/// tokio-postgres's and tokio-rustls's wrappers, if there is one.
pub(super) fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_client_key_others_may_read_is_refused_like_libpq_does() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n").expect("write");
        std::fs::write(&key, "").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let settings = TlsSettings {
            roots: Roots::None,
            check: Check::Nothing,
            client: Some(ClientCert { cert, key: key.clone() }),
        };
        let e = settings.connector().expect_err("refused");
        assert!(e.message.contains("may be read by others"), "{}", e.message);
        assert_eq!(e.hint.as_deref(), Some(format!("chmod 0600 {}", key.display()).as_str()));
    }

    #[test]
    fn channel_binding_hashes_with_the_signature_algorithms_hash() {
        // A minimal certificate shape: SEQUENCE { SEQUENCE {} (tbs), SEQUENCE { OID }, BIT STRING }.
        let cert = |oid: &[u8]| {
            let mut alg = vec![0x06, u8::try_from(oid.len()).expect("short")];
            alg.extend_from_slice(oid);
            let mut body = vec![0x30, 0x00, 0x30, u8::try_from(alg.len()).expect("short")];
            body.extend(alg);
            body.extend([0x03, 0x01, 0x00]);
            let mut der = vec![0x30, u8::try_from(body.len()).expect("short")];
            der.extend(body);
            CertificateDer::from(der)
        };
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let rsa_sha384 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
        let rsa_pss = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
        assert_eq!(server_end_point(&cert(&ecdsa_sha256)).map(|h| h.len()), Some(32));
        assert_eq!(server_end_point(&cert(&rsa_sha384)).map(|h| h.len()), Some(48));
        assert_eq!(server_end_point(&cert(&rsa_pss)), None);
        assert_eq!(server_end_point(&CertificateDer::from(vec![0x30, 0x85, 0x01])), None);
    }

    #[test]
    fn an_empty_root_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").expect("write");
        let settings = TlsSettings { roots: Roots::File(ca), check: Check::ChainAndName, client: None };
        let e = settings.connector().expect_err("refused");
        assert!(e.message.contains("holds no usable certificate"), "{}", e.message);
    }
}
