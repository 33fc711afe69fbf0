//! TLS for the listener: the certificate and key from PEM files, offered with
//! HTTP/2 and HTTP/1.1 by ALPN, and re-read on `SIGHUP` so a renewed
//! certificate needs no restart (connections already open keep theirs).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols offered, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The PEM files of the certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no PEM block of the expected kind.
    #[error("cannot read the TLS {what} from {path}: {cause}")]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// The key is not the certificate's, or not usable.
    #[error("the TLS key in {key} does not fit the certificate in {cert}: {cause}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        cause: String,
    },
}

/// The crypto provider every TLS piece of the service uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsFiles {
    /// Reads and checks the pair: a chain, a key, and the key is the leaf's.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let read_error = |what, path: &Path, cause: String| TlsError::Read {
            what,
            path: path.to_owned(),
            cause,
        };
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| read_error("certificate", &self.cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(read_error(
                "certificate",
                &self.cert,
                "no CERTIFICATE block".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| read_error("private key", &self.key, e.to_string()))?;
        CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
            cert: self.cert.clone(),
            key: self.key.clone(),
            cause: e.to_string(),
        })
    }
}

/// Hands every handshake the current certificate; [`CertResolver::reload`]
/// swaps it without touching established connections.
pub struct CertResolver {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertResolver {
    /// Loads `files` once; an error stops start-up.
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let current = ArcSwap::from_pointee(files.load()?);
        Ok(Self { files, current })
    }

    /// Re-reads the files; on failure the previous certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(self.files.load()?));
        Ok(())
    }

    /// The rustls configuration of the listener: this resolver, TLS 1.2 and
    /// 1.3, and HTTP/2 then HTTP/1.1 by ALPN.
    pub fn server_config(self: Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Mismatch {
                cert: self.files.cert.clone(),
                key: self.files.key.clone(),
                cause: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(self);
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Re-reads the certificate on every `SIGHUP` until `shutdown`.
pub async fn reload_on_sighup(
    resolver: Arc<CertResolver>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: the certificate will not be reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = hangups.recv() => if received.is_none() { return },
        }
        match resolver.reload() {
            Ok(()) => {
                tracing::info!(cert = %resolver.files.cert.display(), "TLS certificate reloaded")
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificate not reloaded; still serving the previous one")
            }
        }
    }
}

/// The certificate of `serve --dev --tls`: `cert.pem` and `key.pem` in `dir`,
/// reused while they load, else a new self-signed one for `localhost`,
/// 127.0.0.1 and ::1 (so a browser that was told to trust it keeps doing so).
pub fn dev_certificate(dir: &Path) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if files.load().is_ok() {
        return Ok(files);
    }
    let generated = rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(|e| TlsError::Read {
        what: "certificate",
        path: dir.to_owned(),
        cause: format!("cannot generate one: {e}"),
    })?;
    let write = |path: &Path, pem: String, what| {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)
            })
            .and_then(|mut file| file.write_all(pem.as_bytes()))
            .map_err(|e| TlsError::Read {
                what,
                path: path.to_owned(),
                cause: format!("cannot write it: {e}"),
            })
    };
    write(&files.cert, generated.cert.pem(), "certificate")?;
    write(
        &files.key,
        generated.signing_key.serialize_pem(),
        "private key",
    )?;
    Ok(files)
}
