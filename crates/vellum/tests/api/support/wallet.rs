//! A minimal wallet for driving the protocol in Rust tests, including the ways a wallet can get
//! things wrong. The interop tests use a third-party wallet instead.

use reqwest::{Response, StatusCode};
use serde_json::{Map, Value, json};
use vellum_formats::jose::{self, Algorithm, Jwk, SigningKey};
use vellum_formats::sdjwt;

use crate::support::{TestApp, status_and_json};

pub const PRE_AUTHORIZED_GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";

pub struct Wallet {
    pub key: SigningKey,
}

/// What a test can change about a proof.
pub struct ProofClaims {
    pub aud: Value,
    pub nonce: Option<String>,
    pub iat: i64,
    pub typ: &'static str,
}

impl Wallet {
    pub fn new() -> Self {
        Self::with(Algorithm::ES256)
    }

    pub fn with(algorithm: Algorithm) -> Self {
        Wallet {
            key: SigningKey::generate(algorithm),
        }
    }

    /// The offer object behind an `openid-credential-offer://` URI, by value or by reference.
    pub async fn resolve(&self, app: &TestApp, uri: &str) -> Value {
        let query = uri
            .strip_prefix("openid-credential-offer://?")
            .expect("offer URI scheme");
        let (name, value) = url::form_urlencoded::parse(query.as_bytes())
            .next()
            .expect("one parameter");
        match name.as_ref() {
            "credential_offer" => serde_json::from_str(&value).expect("offer JSON"),
            "credential_offer_uri" => {
                let response = app
                    .client
                    .get(value.as_ref())
                    .send()
                    .await
                    .expect("GET offer");
                let (status, offer) = status_and_json(response).await;
                assert_eq!(status, StatusCode::OK, "{offer}");
                offer
            }
            other => panic!("unexpected offer parameter {other}"),
        }
    }

    pub fn code(offer: &Value) -> String {
        offer["grants"][PRE_AUTHORIZED_GRANT]["pre-authorized_code"]
            .as_str()
            .expect("pre-authorized code")
            .to_owned()
    }

    pub async fn token_request(&self, app: &TestApp, form: &[(&str, &str)]) -> Response {
        app.client
            .post(app.endpoint("/token"))
            .form(form)
            .send()
            .await
            .expect("token request")
    }

    /// Exchanges the code; panics unless it succeeds.
    pub async fn token(&self, app: &TestApp, code: &str, tx_code: Option<&str>) -> String {
        let mut form = vec![
            ("grant_type", PRE_AUTHORIZED_GRANT),
            ("pre-authorized_code", code),
        ];
        if let Some(tx_code) = tx_code {
            form.push(("tx_code", tx_code));
        }
        let (status, body) = status_and_json(self.token_request(app, &form).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn nonce(&self, app: &TestApp) -> String {
        let response = app
            .client
            .post(app.endpoint("/nonce"))
            .send()
            .await
            .expect("nonce");
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["c_nonce"].as_str().expect("c_nonce").to_owned()
    }

    pub fn claims(&self, app: &TestApp, nonce: &str) -> ProofClaims {
        ProofClaims {
            aud: Value::from(app.url.as_str()),
            nonce: Some(nonce.to_owned()),
            iat: app.clock_seconds(),
            typ: "openid4vci-proof+jwt",
        }
    }

    pub fn proof_with(&self, claims: &ProofClaims) -> String {
        let mut header = Map::new();
        header.insert("typ".into(), Value::from(claims.typ));
        header.insert("jwk".into(), self.key.public_jwk().to_value());
        let mut payload = json!({"aud": claims.aud, "iat": claims.iat});
        if let Some(nonce) = &claims.nonce {
            payload["nonce"] = Value::from(nonce.as_str());
        }
        jose::sign_compact(header, &payload, &self.key)
    }

    pub fn proof(&self, app: &TestApp, nonce: &str) -> String {
        self.proof_with(&self.claims(app, nonce))
    }

    pub async fn credential_request(&self, app: &TestApp, token: &str, body: &Value) -> Response {
        app.client
            .post(app.endpoint("/credential"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("credential request")
    }

    pub fn request_body(configuration_id: &str, proof: &str) -> Value {
        json!({"credential_configuration_id": configuration_id, "proofs": {"jwt": [proof]}})
    }

    /// Runs the whole flow for an offer-creation response; returns the credential.
    pub async fn complete(&self, app: &TestApp, created: &Value) -> String {
        let offer = self
            .resolve(
                app,
                created["credentialOffer"]
                    .as_str()
                    .expect("credentialOffer"),
            )
            .await;
        let token = self
            .token(app, &Self::code(&offer), created["txCodeValue"].as_str())
            .await;
        let nonce = self.nonce(app).await;
        let configuration = offer["credential_configuration_ids"][0]
            .as_str()
            .expect("id");
        let body = Self::request_body(configuration, &self.proof(app, &nonce));
        let (status, response) =
            status_and_json(self.credential_request(app, &token, &body).await).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        response["credentials"][0]["credential"]
            .as_str()
            .expect("credential")
            .to_owned()
    }
}

impl TestApp {
    pub fn clock_seconds(&self) -> i64 {
        use vellum::clock::Clock;
        self.clock.now() / 1000
    }
}

/// An SD-JWT VC taken apart and checked: issuer signature via the JWKS, every disclosure's
/// digest present exactly once. Returns the header and the claims with disclosures restored.
pub struct CheckedSdJwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub disclosures: Vec<Value>,
}

pub async fn check_sd_jwt(app: &TestApp, compact: &str) -> CheckedSdJwt {
    assert!(
        compact.ends_with('~'),
        "an SD-JWT without key binding ends with ~"
    );
    let mut parts: Vec<&str> = compact.split('~').collect();
    parts.pop();
    let jwt = parts.remove(0);
    let jws = jose::UnverifiedJws::parse(jwt).expect("issuer JWT");
    let kid = jws.header["kid"].as_str().expect("kid");
    let issuer_key = if kid.starts_with("did:jwk:") || kid.starts_with("did:key:") {
        Some(vellum_formats::did::jwk_from_did(kid).expect("a resolvable DID URL"))
    } else {
        None
    };
    // Any other DID URL names one of our keys by its fragment (as our did:web document does).
    let kid = kid.rsplit('#').next().expect("kid");
    let jwks = app.get_json("/jwks").await;
    let jwk = match issuer_key {
        Some(jwk) => jwk,
        None => Jwk::from_value(
            jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .find(|key| key["kid"] == kid)
                .expect("kid in JWKS"),
        )
        .expect("jwk"),
    };
    jws.verify_with(&jwk).expect("issuer signature");
    if let Some(x5c) = jws.header.get("x5c") {
        check_x5c(x5c, &jwk, jws.payload["iss"].as_str().expect("iss"));
    }
    let mut by_digest: std::collections::HashMap<String, Value> = parts
        .iter()
        .map(|d| {
            let decoded: Value =
                serde_json::from_slice(&jose::b64_decode(d).expect("b64")).expect("json");
            (sdjwt::digest(d), decoded)
        })
        .collect();
    let disclosures = by_digest.values().cloned().collect();
    let mut claims = Value::Object(jws.payload.clone());
    restore(&mut claims, &mut by_digest);
    assert!(
        by_digest.is_empty(),
        "disclosures without digest: {by_digest:?}"
    );
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    CheckedSdJwt {
        header: jws.header,
        claims,
        disclosures,
    }
}

fn restore(value: &mut Value, disclosures: &mut std::collections::HashMap<String, Value>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(digests)) = object.remove("_sd") {
                for digest in digests {
                    if let Some(Value::Array(d)) =
                        disclosures.remove(digest.as_str().expect("digest"))
                    {
                        assert_eq!(d.len(), 3);
                        let name = d[1].as_str().expect("name").to_owned();
                        assert!(!object.contains_key(&name), "duplicate claim {name}");
                        object.insert(name, d[2].clone());
                    }
                }
            }
            object.remove("_sd_alg");
            for member in object.values_mut() {
                restore(member, disclosures);
            }
        }
        Value::Array(items) => {
            let mut restored = Vec::new();
            for mut item in std::mem::take(items) {
                if let Some(digest) = item.get("...").and_then(Value::as_str) {
                    match disclosures.remove(digest) {
                        Some(Value::Array(d)) => {
                            assert_eq!(d.len(), 2);
                            let mut element = d[1].clone();
                            restore(&mut element, disclosures);
                            restored.push(element);
                        }
                        _ => panic!("array digest without disclosure"),
                    }
                } else {
                    restore(&mut item, disclosures);
                    restored.push(item);
                }
            }
            *items = restored;
        }
        _ => {}
    }
}

/// An `x5c` header as SD-JWT VC and HAIP verifiers take it: the leaf certifies the signing key
/// and names `iss`; each certificate is signed by the next; no self-signed root rides along.
fn check_x5c(x5c: &Value, signer: &Jwk, iss: &str) {
    use base64::Engine;
    use vellum_formats::x509;
    let chain: Vec<Vec<u8>> = x5c
        .as_array()
        .expect("x5c is an array")
        .iter()
        .map(|der| {
            base64::engine::general_purpose::STANDARD
                .decode(der.as_str().expect("base64 string"))
                .expect("standard base64 DER")
        })
        .collect();
    assert!(!chain.is_empty(), "x5c is empty");
    assert_eq!(
        x509::leaf_public_jwk(&chain[0])
            .expect("leaf key")
            .thumbprint(),
        signer.thumbprint(),
        "the x5c leaf certifies another key"
    );
    x509::verify_chain(&chain, None).expect("x5c chain verifies");
    for der in &chain {
        assert!(
            !x509::is_self_issued(der).expect("parses"),
            "x5c carries a self-signed certificate"
        );
    }
    let names = x509::alt_names(&chain[0]).expect("alt names");
    assert!(
        names.contains(&x509::AltName::Uri(iss.to_owned())),
        "the x5c leaf does not name iss {iss}: {names:?}"
    );
}
