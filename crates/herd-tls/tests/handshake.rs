//! Real TLS handshakes over loopback TCP between herd-tls server and client
//! configs.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use herd_tls::{
    ALPN_H2, ALPN_HTTP11, ServerTls, TlsError, Trust, client_config, fingerprint, pem_fingerprint,
    server_tls_from_files, server_tls_generated,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Serves one connection: handshake, read "ping", answer "pong".
async fn serve_once(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let mut buf = [0u8; 4];
            if tls.read_exact(&mut buf).await.is_ok() && &buf == b"ping" {
                let _ = tls.write_all(b"pong").await;
                let _ = tls.shutdown().await;
            }
        }
    });
    addr
}

/// Connects as `name`, exchanges ping/pong, returns the negotiated ALPN.
async fn exchange(
    server: &ServerTls,
    trust: &Trust,
    name: &str,
    alpn: &[&[u8]],
) -> Result<Option<Vec<u8>>, String> {
    let addr = serve_once(server.config.clone()).await;
    let client = client_config(trust, alpn).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut tls = TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"pong");
    Ok(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
}

fn pinned(server: &ServerTls) -> Trust {
    Trust::Pinned(server.ca_fingerprint.clone().unwrap())
}

#[tokio::test]
async fn pinned_client_reaches_localhost_and_ip_with_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_tls_generated(dir.path(), &[]).unwrap();
    let trust = pinned(&server);

    let alpn = exchange(&server, &trust, "localhost", &[ALPN_H2, ALPN_HTTP11])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(ALPN_H2));
    let alpn = exchange(&server, &trust, "127.0.0.1", &[ALPN_HTTP11])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(ALPN_HTTP11));
    let alpn = exchange(&server, &trust, "::1", &[]).await.unwrap();
    assert_eq!(alpn, None);
}

#[tokio::test]
async fn wrong_pin_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_tls_generated(dir.path(), &[]).unwrap();
    let wrong = Trust::Pinned(fingerprint(b"not the CA"));
    let err = exchange(&server, &wrong, "localhost", &[ALPN_H2])
        .await
        .unwrap_err();
    assert!(err.contains("pinned"), "{err}");
    assert!(
        err.contains(&format!("pinned {}", fingerprint(b"not the CA"))),
        "names the pin: {err}"
    );
    assert!(
        err.contains(server.ca_fingerprint.as_deref().unwrap()),
        "names the server's CA: {err}"
    );
}

#[tokio::test]
async fn a_pin_mismatch_is_found_in_the_connectors_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_tls_generated(dir.path(), &[]).unwrap();
    let addr = serve_once(server.config.clone()).await;
    let wrong = fingerprint(b"not the CA");
    let client = client_config(&Trust::Pinned(wrong.clone()), &[]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost".to_string()).unwrap();
    let err = TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .unwrap_err();
    let m = herd_tls::pin_mismatch(&err).expect("a pin mismatch");
    assert_eq!(m.pinned, wrong);
    assert_eq!(Some(m.presented), server.ca_fingerprint);
    let other = std::io::Error::other("refused");
    assert!(herd_tls::pin_mismatch(&other).is_none());
}

#[tokio::test]
async fn right_pin_wrong_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_tls_generated(dir.path(), &[]).unwrap();
    let err = exchange(&server, &pinned(&server), "elsewhere.example", &[])
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn pin_forms_are_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_tls_generated(dir.path(), &[]).unwrap();
    let fp = server.ca_fingerprint.clone().unwrap();
    let colons = fp
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    for form in [
        format!("sha256:{colons}"),
        format!("SHA256:{}", fp.to_uppercase()),
        colons,
    ] {
        exchange(&server, &Trust::Pinned(form), "localhost", &[])
            .await
            .unwrap();
    }
    let err = client_config(&Trust::Pinned("abc".into()), &[]).unwrap_err();
    assert!(matches!(err, TlsError::BadPin { .. }), "{err}");
}

#[tokio::test]
async fn ca_pem_trust_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_tls_generated(dir.path(), &[]).unwrap();
    let ca_pem = server.ca_pem.clone().unwrap();
    assert_eq!(
        pem_fingerprint(&ca_pem).unwrap(),
        server.ca_fingerprint.clone().unwrap()
    );
    let alpn = exchange(
        &server,
        &Trust::CaPem(ca_pem),
        "localhost",
        &[ALPN_H2, ALPN_HTTP11],
    )
    .await
    .unwrap();
    assert_eq!(alpn.as_deref(), Some(ALPN_H2));
}

#[test]
fn trust_none_is_refused() {
    let err = client_config(&Trust::None, &[ALPN_H2]).unwrap_err();
    assert!(matches!(err, TlsError::NoTrust));
    assert!(err.to_string().contains("--ca-sha256"), "{err}");
}

#[test]
fn regeneration_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let first = server_tls_generated(dir.path(), &["herd.example".into()]).unwrap();
    let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let ca_mtime = std::fs::metadata(dir.path().join("ca.pem"))
        .unwrap()
        .modified()
        .unwrap();
    let server_before = std::fs::read(dir.path().join("server.pem")).unwrap();

    let second = server_tls_generated(dir.path(), &["herd.example".into()]).unwrap();
    assert_eq!(first.ca_fingerprint, second.ca_fingerprint);
    assert_eq!(first.ca_pem, second.ca_pem);
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
    assert_eq!(
        std::fs::metadata(dir.path().join("ca.pem"))
            .unwrap()
            .modified()
            .unwrap(),
        ca_mtime
    );
    assert_eq!(
        std::fs::read(dir.path().join("server.pem")).unwrap(),
        server_before
    );

    use std::os::unix::fs::PermissionsExt;
    for key in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
}

#[tokio::test]
async fn new_extra_san_reissues_from_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let first = server_tls_generated(dir.path(), &[]).unwrap();
    let trust = pinned(&first);
    assert!(exchange(&first, &trust, "herd.example", &[]).await.is_err());
    let server_before = std::fs::read(dir.path().join("server.pem")).unwrap();

    let second =
        server_tls_generated(dir.path(), &["herd.example".into(), "10.9.8.7".into()]).unwrap();
    assert_eq!(first.ca_fingerprint, second.ca_fingerprint);
    assert_ne!(
        std::fs::read(dir.path().join("server.pem")).unwrap(),
        server_before
    );
    exchange(&second, &trust, "herd.example", &[])
        .await
        .unwrap();
    exchange(&second, &trust, "10.9.8.7", &[]).await.unwrap();
    exchange(&second, &trust, "localhost", &[]).await.unwrap();

    // A subset of the names already covered does not re-issue.
    let reissued = std::fs::read(dir.path().join("server.pem")).unwrap();
    server_tls_generated(dir.path(), &["10.9.8.7".into()]).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("server.pem")).unwrap(),
        reissued
    );
}

#[test]
fn incomplete_ca_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    server_tls_generated(dir.path(), &[]).unwrap();
    std::fs::remove_file(dir.path().join("ca.key")).unwrap();
    let err = server_tls_generated(dir.path(), &[]).err().unwrap();
    assert!(matches!(err, TlsError::IncompleteCa { .. }), "{err}");
    assert!(err.to_string().contains("ca.key"), "{err}");
    assert!(dir.path().join("ca.pem").exists());
}

#[test]
fn from_files_bad_path_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let err = server_tls_from_files(&missing, &dir.path().join("nope.key"))
        .err()
        .unwrap();
    assert!(matches!(err, TlsError::Read { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("--tls-cert"), "{msg}");
}

#[test]
fn from_files_rejects_key_of_another_cert() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    server_tls_generated(a.path(), &[]).unwrap();
    server_tls_generated(b.path(), &[]).unwrap();
    let err = server_tls_from_files(&a.path().join("server.pem"), &b.path().join("server.key"))
        .err()
        .unwrap();
    assert!(matches!(err, TlsError::Identity { .. }), "{err}");
    let err = server_tls_from_files(&a.path().join("server.pem"), &a.path().join("server.pem"))
        .err()
        .unwrap();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
}

#[tokio::test]
async fn operator_files_serve_with_ca_pem_or_leaf_pin() {
    let dir = tempfile::tempdir().unwrap();
    let generated = server_tls_generated(dir.path(), &[]).unwrap();
    let server = server_tls_from_files(
        &dir.path().join("server.pem"),
        &dir.path().join("server.key"),
    )
    .unwrap();
    assert!(server.ca_fingerprint.is_none());
    assert!(server.ca_pem.is_none());

    let ca = Trust::CaPem(generated.ca_pem.clone().unwrap());
    let alpn = exchange(&server, &ca, "localhost", &[ALPN_H2, ALPN_HTTP11])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(ALPN_H2));

    // The pin printed for operator files is the leaf's: it is accepted, and
    // the name is still checked.
    let leaf_pem = std::fs::read_to_string(dir.path().join("server.pem")).unwrap();
    let leaf_pin = Trust::Pinned(pem_fingerprint(&leaf_pem).unwrap());
    exchange(&server, &leaf_pin, "127.0.0.1", &[])
        .await
        .unwrap();
    assert!(
        exchange(&server, &leaf_pin, "elsewhere.example", &[])
            .await
            .is_err()
    );
}
