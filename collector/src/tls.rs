//! TLS with rustls (ring provider), from PEM files named in `[tls]`.

use axum_server::tls_rustls::RustlsConfig;

use super::config::TlsConfig;

pub async fn load(tls: &TlsConfig) -> anyhow::Result<RustlsConfig> {
    // The process may already have a provider (a second call is harmless).
    let _ = rustls::crypto::ring::default_provider().install_default();
    for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
        std::fs::metadata(path).map_err(|e| anyhow::anyhow!("key `{key}`: cannot read {}: {e}", path.display()))?;
    }
    RustlsConfig::from_pem_file(&tls.cert, &tls.key).await.map_err(|e| {
        anyhow::anyhow!(
            "keys `tls.cert`/`tls.key`: cannot use {} and {} as a PEM certificate chain and private key: {e}",
            tls.cert.display(),
            tls.key.display()
        )
    })
}
