//! A wallet provider that attests its wallet instances (draft-ietf-oauth-attestation-based-
//! client-auth), for tests: the issuer settings that trust it, Client Attestations for an instance
//! key, and PoPs by that key, well made or spoiled as a test says.

use reqwest::RequestBuilder;
use serde_json::{Value, json};
use vellum_formats::jose::{self, Algorithm, SigningKey};

use crate::support::{TestApp, now_millis, signed};

pub struct WalletProvider {
    pub key: SigningKey,
    /// Its certificate (base64 DER), when a CA certifies it: attestations then carry it as x5c.
    pub x5c: Option<String>,
}

/// One wallet instance: its key and the attestation its provider gave it.
pub struct Instance {
    pub key: SigningKey,
    pub client_id: String,
    pub attestation: String,
}

impl WalletProvider {
    pub fn new() -> Self {
        WalletProvider {
            key: SigningKey::generate(Algorithm::ES256),
            x5c: None,
        }
    }

    /// A wallet provider whose key a new CA certifies, valid around `now` (Unix seconds) for
    /// `lifetime` seconds; returns it and the CA's certificate as PEM (the trust anchor).
    pub fn certified(now: i64, lifetime: i64) -> (Self, String) {
        use base64::Engine as _;
        use vellum_formats::x509::{self, CertificateProfile, Leaf, Subject, Validity};
        let subject = |name: &str| Subject {
            common_name: name.into(),
            country: None,
            organization: Some("Test wallet provider".into()),
        };
        let validity = Validity {
            not_before: now - 60,
            not_after: now + lifetime,
        };
        let ca_key = SigningKey::generate(Algorithm::ES256);
        let ca = x509::iaca(&ca_key, &subject("Test wallet CA"), &validity, &[1]).expect("CA");
        let key = SigningKey::generate(Algorithm::ES256);
        let leaf = x509::issue_leaf(
            &ca_key,
            &ca,
            &Leaf {
                subject_key: &key.public_jwk(),
                subject: &subject("Test wallet provider"),
                validity: &validity,
                profile: CertificateProfile::SdJwtSigner,
                serial: &[2],
                alt_names: &[],
            },
        )
        .expect("leaf");
        let provider = WalletProvider {
            key,
            x5c: Some(base64::engine::general_purpose::STANDARD.encode(leaf)),
        };
        (provider, x509::to_pem(&ca))
    }

    /// The issuer's `[client_attestation]` trusting this provider, `extra` merged in.
    pub fn settings(&self, extra: Value) -> Value {
        let mut settings = json!({"trusted_keys": [self.key.public_jwk().to_value()]});
        if let (Value::Object(settings), Value::Object(extra)) = (&mut settings, extra) {
            settings.extend(extra);
        }
        settings
    }

    /// An attestation with the claims of a good one, `changes` applied (a null removes a claim).
    pub fn attest_with(
        &self,
        app: &TestApp,
        client_id: &str,
        key: &SigningKey,
        changes: Value,
    ) -> String {
        self.attest_at(now_millis(app) / 1000, client_id, key, changes)
    }

    /// [`WalletProvider::attest_with`] at `now` (Unix seconds).
    pub fn attest_at(&self, now: i64, client_id: &str, key: &SigningKey, changes: Value) -> String {
        let mut claims = json!({
            "iss": "https://wallet-provider.example",
            "sub": client_id,
            "iat": now,
            "exp": now + 3600,
            "cnf": {"jwk": key.public_jwk().to_value()},
            "wallet_name": "Test Wallet",
        });
        apply(&mut claims, changes);
        let mut header = json!({"typ": "oauth-client-attestation+jwt"});
        if let Some(x5c) = &self.x5c {
            header["x5c"] = json!([x5c]);
        }
        signed(header, &claims, &self.key)
    }

    /// A new wallet instance of `client_id`, attested.
    pub fn instance(&self, app: &TestApp, client_id: &str) -> Instance {
        self.instance_at(now_millis(app) / 1000, client_id)
    }

    /// [`WalletProvider::instance`] attested at `now` (Unix seconds).
    pub fn instance_at(&self, now: i64, client_id: &str) -> Instance {
        let key = SigningKey::generate(Algorithm::ES256);
        Instance {
            attestation: self.attest_at(now, client_id, &key, json!({})),
            client_id: client_id.to_owned(),
            key,
        }
    }
}

impl Instance {
    /// A PoP for `app` with the claims of a good one, `changes` applied (a null removes a claim).
    pub fn pop_with(&self, app: &TestApp, changes: Value) -> String {
        self.pop_for(&app.url, now_millis(app) / 1000, changes)
    }

    /// A PoP for the issuer `audience` at `now` (Unix seconds), `changes` applied.
    pub fn pop_for(&self, audience: &str, now: i64, changes: Value) -> String {
        let mut claims = json!({
            "iss": self.client_id,
            "aud": audience,
            "jti": jose::b64(uuid::Uuid::new_v4().as_bytes()),
            "iat": now,
            "exp": now + 60,
        });
        apply(&mut claims, changes);
        signed(
            json!({"typ": "oauth-client-attestation-pop+jwt"}),
            &claims,
            &self.key,
        )
    }

    pub fn pop(&self, app: &TestApp) -> String {
        self.pop_with(app, json!({}))
    }

    /// `request` with this instance's attestation and a fresh PoP.
    pub fn attach(&self, app: &TestApp, request: RequestBuilder) -> RequestBuilder {
        headers(request, &self.attestation, &self.pop(app))
    }
}

/// `request` with the two attestation headers.
pub fn headers(request: RequestBuilder, attestation: &str, pop: &str) -> RequestBuilder {
    request
        .header("OAuth-Client-Attestation", attestation)
        .header("OAuth-Client-Attestation-PoP", pop)
}

fn apply(claims: &mut Value, changes: Value) {
    let Value::Object(changes) = changes else {
        panic!("changes must be an object")
    };
    for (name, value) in changes {
        if value.is_null() {
            claims.as_object_mut().expect("claims").remove(&name);
        } else {
            claims[name] = value;
        }
    }
}
