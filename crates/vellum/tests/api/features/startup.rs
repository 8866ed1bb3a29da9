//! A configuration that could start but not work is refused at start, before anything is
//! created (no master key file, no database), with one line that names the setting.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::support::free_port;

/// Runs `vellum serve` in an empty directory with `env` (and `args`); expects it to stop with
/// one line on stderr. Returns that line.
async fn refused(env: &[(&str, &str)], files: &[(&str, &str)], args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_vellum"));
    command
        .arg("serve")
        .args(args)
        .current_dir(dir.path())
        .env("VELLUM_HTTP__PORT", free_port().to_string())
        .env("VELLUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("{env:?}: the server started instead of stopping"))
        .expect("run vellum");
    assert!(!output.status.success(), "{env:?}: exited successfully");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{env:?}: not one line:\n{stderr}");
    assert!(lines[0].starts_with("vellum: "), "{stderr}");
    assert_nothing_created(dir.path(), env);
    lines[0].to_owned()
}

fn assert_nothing_created(dir: &Path, env: &[(&str, &str)]) {
    let data = dir.join("vellum-data");
    let made: Vec<String> = std::fs::read_dir(&data)
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(made.is_empty(), "{env:?}: created {made:?} before refusing");
}

#[tokio::test]
async fn settings_that_could_not_work_are_refused_in_one_line_naming_the_key() {
    for (name, value, key) in [
        (
            "VELLUM_PUBLIC_URL",
            "https://user:secret@issuer.example",
            "public_url",
        ),
        (
            "VELLUM_PUBLIC_URL",
            "https://issuer.example/#frag",
            "public_url",
        ),
        (
            "VELLUM_HTTP__MANAGEMENT_BODY_LIMIT",
            "0",
            "http.management_body_limit",
        ),
        (
            "VELLUM_HTTP__PROTOCOL_BODY_LIMIT",
            "0",
            "http.protocol_body_limit",
        ),
        (
            "VELLUM_HTTP__HEADER_READ_TIMEOUT",
            "0s",
            "http.header_read_timeout",
        ),
        ("VELLUM_HTTP__MAX_CONNECTIONS", "0", "http.max_connections"),
        (
            "VELLUM_CREDENTIALS__DEFAULT_VALIDITY_SECONDS",
            "0",
            "credentials.default_validity_seconds",
        ),
        ("VELLUM_HTTP__HOST", "not a host!", "http.host"),
        (
            "VELLUM_STATUS_LISTS__PUBLISH_DELAY",
            "10m",
            "status_lists.publish_delay",
        ),
        ("VELLUM_STATUS_LISTS__SIZE", "8", "status_lists.size"),
        ("VELLUM_PROTOCOL__BATCH_SIZE", "0", "protocol.batch_size"),
        (
            "VELLUM_HTTP__CORS_ORIGINS",
            "[\"https://wallet.example/app\"]",
            "http.cors_origins",
        ),
        // Well formed, but not an address of this machine: the listen fails, still first.
        ("VELLUM_HTTP__HOST", "192.0.2.1", "http.host"),
        ("VELLUM_HTTP__PORT", "abc", "http.port"),
        ("VELLUM_MASTER_KEY", "not-base64-of-32-bytes", "master_key"),
        (
            "VELLUM_NOTIFICATIONS__PROXY",
            "ftp://proxy",
            "notifications.proxy",
        ),
        (
            "VELLUM_METADATA__SIGNING_KEY",
            "no such key!",
            "metadata.signing_key",
        ),
        (
            "VELLUM_CLIENT_ATTESTATION__TRUSTED_CERTIFICATES",
            "[\"/nonexistent/ca.pem\"]",
            "client_attestation.trusted_certificates",
        ),
        (
            "VELLUM_METADATA__X5_CHAIN_FILE",
            "/nonexistent/chain.pem",
            "metadata.x5_chain_file",
        ),
    ] {
        let line = refused(&[(name, value)], &[], &[]).await;
        assert!(line.contains(key), "{name}={value}: {line}");
        assert!(!line.contains("secret"), "{line}");
    }
}

#[tokio::test]
async fn a_configuration_file_that_is_not_toml_is_refused_in_one_line() {
    let line = refused(
        &[],
        &[("bad.toml", "[http\nport = 3\n")],
        &["--config", "bad.toml"],
    )
    .await;
    assert!(
        line.contains("bad.toml") && line.contains("line 1"),
        "{line}"
    );
    let line = refused(
        &[],
        &[("typo.toml", "[http]\nprot = 3\n")],
        &["--config", "typo.toml"],
    )
    .await;
    assert!(line.contains("http.prot"), "{line}");
}

/// A configured profile is checked before the master key, the database or any key exist.
#[tokio::test]
async fn a_bad_profile_in_the_configuration_file_is_refused_before_anything_is_created() {
    for (profile, why) in [
        (
            "credentialConfigurationId = \"nope\"\nissuerKeyId = \"demo-es256\"",
            "nope",
        ),
        (
            "credentialConfigurationId = \"identity_credential\"\nissuerKeyId = \"demo-es256\"\n\
             x5Chain = \"development\"\n[profiles.broken.credentialData.address]\n_sd = [\"forged\"]",
            "credentialData.address._sd",
        ),
        (
            "credentialConfigurationId = \"identity_credential\"\nissuerKeyId = \"demo-es256\"",
            "issuer identity",
        ),
    ] {
        let file = format!("[profiles.broken]\nname = \"Broken\"\n{profile}\n");
        let line = refused(&[], &[("p.toml", &file)], &["--config", "p.toml"]).await;
        assert!(
            line.contains("profiles.broken") && line.contains(why),
            "{line}"
        );
    }
}

/// A credential configuration is read by its format before the master key, the database or any
/// key exist: an unknown format, a missing or unknown member stops the start.
#[tokio::test]
async fn a_bad_credential_configuration_is_refused_before_anything_is_created() {
    let common = "credential_signing_alg_values_supported = [\"ES256\"]\n\
                  cryptographic_binding_methods_supported = [\"jwk\"]\n\
                  proof_signing_alg_values_supported = [\"ES256\"]";
    for (members, why) in [
        ("format = \"ldp_vc\"", "broken.format: unknown format"),
        ("format = \"mso_mdoc\"", "broken: mso_mdoc needs doctype"),
        (
            "format = \"dc+sd-jwt\"\nvct = \"urn:x\"\ndoctype = \"d\"",
            "broken.doctype: unknown field",
        ),
    ] {
        let file = format!("[credential_configurations.broken]\n{members}\n{common}\n");
        let line = refused(&[], &[("c.toml", &file)], &["--config", "c.toml"]).await;
        assert!(
            line.contains(&format!("credential_configurations.{why}")),
            "{line}"
        );
    }
}

/// A database that cannot be reached stops the start with one line naming database.url, and
/// leaves no master key file behind.
#[tokio::test]
async fn an_unreachable_or_missing_postgresql_database_is_refused_in_one_line() {
    let mut urls = vec![format!(
        "postgres://postgres@127.0.0.1:{}/vellum",
        free_port()
    )];
    // A database the server does not have: only with a server to ask.
    if crate::support::database::postgres_or_skip().await {
        urls.push("postgres://postgres@127.0.0.1:5432/vellum_no_such_database".to_owned());
    }
    for url in urls {
        let line = refused(
            &[
                ("VELLUM_DATABASE__URL", &url),
                ("VELLUM_DATABASE__CONNECT_TIMEOUT", "2s"),
            ],
            &[],
            &[],
        )
        .await;
        assert!(line.contains("database.url"), "{line}");
    }
}
