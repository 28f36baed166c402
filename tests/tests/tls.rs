//! TLS on both listeners, and switches known by their client certificates (mutual TLS): a
//! switch without a certificate (or credentials) is refused, one with a certificate from
//! another CA never gets through the handshake, plaintext clients are not served, and people
//! still connect with a token and no certificate.

use callwarden_proto::v1::{
    CheckCallRequest, Decision, GetOperatorStatusRequest, console_client::ConsoleClient,
    screening_client::ScreeningClient,
};
use callwarden_server::{auth::Role, clock::ManualClock, config::TlsConfig, startup::Application};
use callwarden_tests::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

const SWITCH_CN: &str = "sw-cert";

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate and its key (PEM) for `common_name`, signed by `ca`.
fn issue(
    ca: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![purpose];
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Pki {
    ca_pem: String,
    switch: (String, String),
    rogue_switch: (String, String),
    files: TlsConfig,
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pki() -> Pki {
    let server_ca = authority("callwarden test server CA");
    let switch_ca = authority("callwarden test switch CA");
    let rogue_ca = authority("someone else's CA");
    let (server_cert, server_key) = issue(
        &server_ca,
        "callwarden",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    let dir = std::env::temp_dir().join(format!("callwarden-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        Some(path)
    };
    Pki {
        ca_pem: server_ca.pem(),
        switch: issue(&switch_ca, SWITCH_CN, &[], client.clone()),
        rogue_switch: issue(&rogue_ca, SWITCH_CN, &[], client),
        files: TlsConfig {
            cert_file: write("server.pem", &server_cert),
            key_file: write("server.key", &server_key),
            client_ca_file: write("switch-ca.pem", &switch_ca.pem()),
            plaintext: false,
        },
        dir,
    }
}

struct Served {
    grpc: SocketAddr,
    http: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(tls: TlsConfig) -> Served {
    let mut config = test_config(&redis_default());
    config.tls = tls;
    let app = Application::build_with_clock(config, Arc::new(ManualClock::default()))
        .await
        .expect("the application starts with TLS");
    let (grpc, http) = (app.grpc_addr(), app.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Served {
        grpc,
        http,
        _stop: stop,
    }
}

/// A TLS connection to the gRPC listener that trusts the test CA, with a client certificate
/// or without.
async fn connect(
    pki: &Pki,
    addr: SocketAddr,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

fn check(switch_id: &str) -> CheckCallRequest {
    CheckCallRequest {
        call_id: uuid::Uuid::new_v4().to_string(),
        caller: "+48601234567".into(),
        line: PL_LINE.into(),
        switch_id: switch_id.into(),
        operator_id: String::new(),
    }
}

#[tokio::test]
async fn switches_are_known_by_their_certificates_and_nothing_is_served_in_clear() {
    let pki = pki();
    let served = serve(pki.files.clone()).await;

    // A switch with a certificate from the switches' CA is the switch its certificate names.
    let channel = connect(&pki, served.grpc, Some(&pki.switch)).await.unwrap();
    let mut switch = ScreeningClient::new(channel);
    let answer = switch.check_call(check("")).await.unwrap().into_inner();
    assert_eq!(answer.decision(), Decision::Allow, "{answer:?}");
    switch.check_call(check(SWITCH_CN)).await.unwrap();
    let refused = switch.check_call(check("sw-other")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // A switch without a certificate, and without an API key, is not let in.
    let bare = connect(&pki, served.grpc, None).await.unwrap();
    let refused = ScreeningClient::new(bare.clone())
        .check_call(check(SWITCH_CN))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // Nor is it a switch because it says so in a token.
    let refused = ScreeningClient::new(with_token(&bare, &token(Role::Operator, "op-1")))
        .check_call(check(SWITCH_CN))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // People connect without a certificate and present their token.
    let status = ConsoleClient::new(with_token(&bare, &token(Role::Operator, "op-1")))
        .get_operator_status(GetOperatorStatusRequest {
            operator_id: String::new(),
        })
        .await;
    assert!(status.is_ok(), "{status:?}");

    // A certificate from another CA, with the same name, fails the handshake.
    let rogue = match connect(&pki, served.grpc, Some(&pki.rogue_switch)).await {
        Err(e) => Err(format!("{e:?}")),
        Ok(channel) => ScreeningClient::new(channel)
            .check_call(check(SWITCH_CN))
            .await
            .map_err(|s| format!("{s:?}")),
    };
    assert!(
        rogue.is_err(),
        "a rogue certificate got an answer: {rogue:?}"
    );

    // Plaintext gRPC gets nothing.
    let plain = match Channel::from_shared(format!("http://{}", served.grpc))
        .unwrap()
        .connect()
        .await
    {
        Err(e) => Err(format!("{e:?}")),
        Ok(channel) => ScreeningClient::new(channel)
            .check_call(check(SWITCH_CN))
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}")),
    };
    assert!(plain.is_err(), "plaintext gRPC was served");

    // The HTTP side speaks TLS only.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::pem::PemObject::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(served.http).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("the HTTP side's handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.ok();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let mut tcp = tokio::net::TcpStream::connect(served.http).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tcp.read_to_end(&mut reply),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&reply).contains("200 OK"),
        "plaintext HTTP was served"
    );
}

#[tokio::test]
async fn unreadable_or_mismatched_certificates_stop_the_start_naming_the_key() {
    let pki = pki();
    let mut config = test_config(&redis_default());
    let wrong_key = pki.dir.join("wrong.key");
    std::fs::write(&wrong_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    for (tls, key) in [
        (
            TlsConfig {
                cert_file: Some(pki.dir.join("missing.pem")),
                ..pki.files.clone()
            },
            "tls.cert_file",
        ),
        (
            TlsConfig {
                key_file: Some(wrong_key),
                ..pki.files.clone()
            },
            "tls.key_file",
        ),
        (
            TlsConfig {
                client_ca_file: pki.files.key_file.clone(),
                ..pki.files.clone()
            },
            "tls.client_ca_file",
        ),
    ] {
        config.tls = tls;
        let err = match Application::build(config.clone()).await {
            Ok(_) => panic!("started with {key} wrong"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(key), "{key}: {err}");
    }
}
