use std::process::Command;

use crate::helpers::{Backend, spawn_app_with};

/// An RSA key pair made with openssl: (PKCS#1 PEM private key, base64 DER
/// public key for the DNS record).
fn rsa_key_pair(dir: &std::path::Path) -> (String, String) {
    let private = dir.join("dkim.pem");
    let made = Command::new("openssl")
        .args([
            "genrsa",
            "-traditional",
            "-out",
            private.to_str().unwrap(),
            "2048",
        ])
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public = Command::new("openssl")
        .args([
            "rsa",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ])
        .output()
        .unwrap();
    assert!(public.status.success());
    use base64::Engine;
    (
        std::fs::read_to_string(&private).unwrap(),
        base64::engine::general_purpose::STANDARD.encode(public.stdout),
    )
}

/// Verifies with dkimpy (an independent implementation), answering its DNS
/// query with the public key directly.
fn dkimpy_verifies(message: &str, public_key: &str) -> (bool, String) {
    let script = r#"
import sys, dkim
message = sys.stdin.buffer.read()
record = ("v=DKIM1; k=rsa; p=" + sys.argv[1]).encode()
def dns(name, timeout=5):
    return record if name.startswith(b"assent._domainkey.clinic.example") else None
ok = dkim.verify(message, dnsfunc=dns)
print("ok" if ok else "bad")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, public_key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with dkimpy (pip install dkimpy)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (
        out == "ok",
        format!("{out} {}", String::from_utf8_lossy(&output.stderr)),
    )
}

async fn mail_is_dkim_signed_over_the_unsubscribe_headers(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (_private, public) = rsa_key_pair(dir.path());
    let key_file = dir.path().join("dkim.pem");
    let extra = format!(
        "[dkim]\nselector = \"assent\"\ndomain = \"clinic.example\"\nprivate_key_file = \"{}\"",
        key_file.display()
    );
    let app = spawn_app_with(backend, &extra).await;
    app.confirmed_subscriber("dk@example.org", "newsletter")
        .await;
    let mails = app.mails_to("dk@example.org");
    assert_eq!(mails.len(), 2);
    for mail in &mails {
        // SMTP wire format: CRLF line ends.
        let raw = mail.data.replace("\r\n", "\n").replace('\n', "\r\n");
        let signature = crate::helpers::header(&raw, "DKIM-Signature").expect("a DKIM-Signature");
        let signed: Vec<String> = signature
            .split(';')
            .map(str::trim)
            .find(|t| t.starts_with("h="))
            .unwrap()
            .trim_start_matches("h=")
            .split(':')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        for header in ["from", "subject", "date", "message-id"] {
            assert!(
                signed.contains(&header.to_owned()),
                "{header} not signed: {signature}"
            );
        }
        let (ok, detail) = dkimpy_verifies(&raw, &public);
        assert!(ok, "dkimpy did not verify: {detail}");
    }
    // The welcome email's signature covers the one-click headers.
    let welcome = crate::helpers::header(&mails[1].data, "DKIM-Signature")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        welcome.contains("list-unsubscribe:list-unsubscribe-post")
            || (welcome.contains("list-unsubscribe") && welcome.contains("list-unsubscribe-post"))
    );
}

crate::backend_tests!(mail_is_dkim_signed_over_the_unsubscribe_headers);
