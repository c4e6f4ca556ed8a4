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

/// aiosmtpd on loopback delivering into `maildir`; installed from PyPI when missing.
fn smtpd(maildir: &Path) -> (Smtpd, u16) {
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
    let child = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "aiosmtpd did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Smtpd(child), port)
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
        "channels:\n- name: mail\n  email: {{host: 127.0.0.1, port: {port}, tls: none, from: argo-drift@example.com, to: [sre@example.com]}}\nroutes:\n- events: [drift-detected]\n  minSeverity: medium\n  channels: [mail]\n"
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
}
