//! Email through a real SMTP server process (aiosmtpd from PyPI, storing into a maildir).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use argo_drift_core::Severity;
use argo_drift_notify::email::{EmailChannel, Settings, Tls};
use argo_drift_notify::event::{ChangeLine, EventKind, Notification};

struct Smtpd(Child);

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the test SMTP server listens.
#[derive(Default)]
struct ServerTls<'a> {
    /// "none", "starttls" or "implicit".
    mode: &'a str,
    /// PEM certificate and key files for the TLS modes.
    cert: Option<(&'a Path, &'a Path)>,
    /// AUTH required with this login and password.
    auth: Option<(&'a str, &'a str)>,
}

/// aiosmtpd (installed from PyPI when missing) on loopback, run by `tests/smtp/server.py`,
/// delivering into `maildir`.
fn smtpd(maildir: &Path) -> (Smtpd, u16) {
    smtpd_with(
        maildir,
        ServerTls {
            mode: "none",
            ..ServerTls::default()
        },
    )
}

fn smtpd_with(maildir: &Path, tls: ServerTls) -> (Smtpd, u16) {
    let have = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .unwrap()
        .success();
    if !have {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "pip install aiosmtpd failed");
    }
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--port", &port.to_string(), "--mode", tls.mode, "--maildir"])
        .arg(maildir);
    if let Some((cert, key)) = tls.cert {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if let Some((user, password)) = tls.auth {
        cmd.args(["--user", user, "--password", password]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "the SMTP server did not start");
    (Smtpd(child), port)
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as PEM files in `dir`.
/// Returns (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "argo-drift test relay CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// The one message in `maildir`.
fn only_message(maildir: &Path) -> String {
    let files: Vec<_> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::read_to_string(&files[0]).unwrap()
}

fn notification() -> Notification {
    Notification {
        kind: EventKind::DriftDetected,
        app: "argocd/web".into(),
        severity: Severity::High,
        summary: "high drift in 1 resource".into(),
        changes: vec![ChangeLine {
            resource: "Deployment.apps shop/web".into(),
            field: "spec.template.spec.containers[name=web].image".into(),
            severity: Severity::High,
            manager: Some("kubectl-set".into()),
            live: Some("\"nginx:<evil>\"".into()),
            changed_by: None,
        }],
        decision: Some("notify only".into()),
        incident: "argo-drift/argocd/web/1".into(),
        time: "2026-11-21T06:00:00Z".into(),
    }
}

fn settings(port: u16) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: Tls::None,
        username: None,
        password: None,
        from: "argo-drift <argo-drift@example.com>".parse().unwrap(),
        to: vec![
            "sre@example.com".parse().unwrap(),
            "Platform <platform@example.com>".parse().unwrap(),
        ],
        timeout: Duration::from_secs(5),
        ca_pem: None,
    }
}

#[tokio::test]
async fn a_message_reaches_every_recipient_with_text_and_html_parts() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let (_server, port) = smtpd(&maildir);
    let channel = EmailChannel::new("mail", settings(port)).unwrap();
    assert_eq!(
        channel
            .send(&notification(), Some("https://argocd.example.com"))
            .await
            .unwrap(),
        1
    );
    let new = maildir.join("new");
    let files: Vec<_> = std::fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one message for both recipients");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        raw.contains("Subject: [argo-drift] Drift detected: argocd/web (high)"),
        "{raw}"
    );
    assert!(
        raw.contains("sre@example.com") && raw.contains("platform@example.com"),
        "{raw}"
    );
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(
        raw.contains("Content-Type: text/plain") && raw.contains("Content-Type: text/html"),
        "{raw}"
    );
    assert!(raw.contains("kubectl-set"), "{raw}");
    assert!(
        raw.contains("https://argocd.example.com/applications/argocd/web"),
        "{raw}"
    );
}

#[tokio::test]
async fn a_dead_server_is_retried_then_given_up() {
    let channel = EmailChannel::new("mail", settings(free_port())).unwrap();
    let err = channel.send(&notification(), None).await.unwrap_err();
    assert!(
        matches!(
            err,
            argo_drift_notify::Error::Undelivered { attempts: 3, .. }
        ),
        "retried, then given up: {err}"
    );
}

#[tokio::test]
async fn the_notifier_routes_to_an_email_channel_from_notifications_yaml() {
    use argo_drift_notify::config::Notifications;
    use argo_drift_notify::dispatch::{Notifier, Queued};
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let (_server, port) = smtpd(&maildir);
    let yaml = format!(
        "channels:\n- name: mail\n  email: {{host: 127.0.0.1, port: {port}, tls: none, from: argo-drift@example.com, to: [sre@example.com]}}\nroutes:\n- events: [drift-detected]\n  minSeverity: medium\n  channels: [mail]\ntemplates:\n- channels: [mail]\n  title: \"{{{{ appName }}}}: {{{{ severity }}}} drift\"\n  body: \"Set by {{{{ changes[0].manager if changes else 'nobody' }}}}: {{{{ summary }}}}\"\n"
    );
    let config = Notifications::from_yaml("n.yaml", &yaml, &|_| None).unwrap();
    let notifier = Notifier::start(config, None).unwrap();
    assert_eq!(
        notifier.notify(notification()),
        [Queued::Queued("mail".into())]
    );
    let new = maildir.join("new");
    let start = Instant::now();
    while std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "no mail arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The worker counts once the server has answered, a moment after the file appears.
    while notifier.stats().count_of("mail", "sent") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the send was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(notifier.stats().count_of("mail", "failed"), 0);
    let raw = only_message(&maildir);
    assert!(raw.contains("Subject: web: high drift"), "{raw}");
    assert!(
        raw.contains("Set by kubectl-set: high drift in 1 resource"),
        "{raw}"
    );
}

/// A relay on loopback with its certificate from a private CA, requiring AUTH as
/// argo-drift/s3cret-pw when `auth`; and client settings for it that trust that CA and log in
/// with `password`.
fn relay(
    dir: &Path,
    tls: Tls,
    auth: bool,
    password: &str,
) -> (Smtpd, std::path::PathBuf, Settings) {
    let (ca, cert, key) = certificates(dir);
    let maildir = dir.join("mail");
    let mode = if tls == Tls::Implicit {
        "implicit"
    } else {
        "starttls"
    };
    let (server, port) = smtpd_with(
        &maildir,
        ServerTls {
            mode,
            cert: Some((&cert, &key)),
            auth: auth.then_some(("argo-drift", "s3cret-pw")),
        },
    );
    let mut s = settings(port);
    s.tls = tls;
    if auth {
        s.username = Some("argo-drift".into());
        s.password = Some(password.into());
    }
    s.ca_pem = Some(std::fs::read(&ca).unwrap());
    (server, maildir, s)
}

#[tokio::test]
async fn starttls_with_auth_through_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, maildir, s) = relay(dir.path(), Tls::Starttls, true, "s3cret-pw");
    let channel = EmailChannel::new("mail", s).unwrap();
    assert_eq!(channel.send(&notification(), None).await.unwrap(), 1);
    let raw = only_message(&maildir);
    assert!(raw.contains("X-Test-TLS: yes"), "{raw}");
    assert!(raw.contains("X-Test-Auth: argo-drift"), "{raw}");
    assert!(
        raw.contains("X-Test-Rcpt: sre@example.com,platform@example.com"),
        "{raw}"
    );
    assert!(
        !raw.contains("s3cret-pw"),
        "the password is not in the message"
    );
}

#[tokio::test]
async fn implicit_tls_with_auth_through_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, maildir, s) = relay(dir.path(), Tls::Implicit, true, "s3cret-pw");
    let channel = EmailChannel::new("mail", s).unwrap();
    assert_eq!(channel.send(&notification(), None).await.unwrap(), 1);
    let raw = only_message(&maildir);
    assert!(raw.contains("X-Test-TLS: yes"), "{raw}");
    assert!(raw.contains("X-Test-Auth: argo-drift"), "{raw}");
}

#[tokio::test]
async fn a_wrong_password_is_a_permanent_rejection_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, maildir, s) = relay(dir.path(), Tls::Starttls, true, "wrong-pw");
    let channel = EmailChannel::new("mail", s).unwrap();
    let err = channel.send(&notification(), None).await.unwrap_err();
    match &err {
        argo_drift_notify::Error::Rejected {
            status, protocol, ..
        } => {
            assert_eq!((*protocol, *status), ("SMTP", 535), "{err}");
            assert!(err.to_string().contains("rejected with SMTP 535"), "{err}");
        }
        other => panic!("expected a rejection, got {other}"),
    }
    assert!(!err.to_string().contains("wrong-pw"), "{err}");
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, maildir, mut s) = relay(dir.path(), Tls::Implicit, false, "");
    s.ca_pem = None;
    s.timeout = Duration::from_secs(2);
    let channel = EmailChannel::new("mail", s).unwrap();
    let err = channel.send(&notification(), None).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
}

#[tokio::test]
async fn starttls_is_required_so_a_relay_without_it_never_sees_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let (_server, port) = smtpd(&maildir);
    let mut s = settings(port);
    s.tls = Tls::Starttls;
    s.username = Some("argo-drift".into());
    s.password = Some("s3cret-pw".into());
    s.timeout = Duration::from_secs(2);
    let channel = EmailChannel::new("mail", s).unwrap();
    let err = channel.send(&notification(), None).await.unwrap_err();
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
}
