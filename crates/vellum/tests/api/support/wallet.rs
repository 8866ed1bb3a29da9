//! A minimal wallet for driving the protocol in Rust tests, including the ways a wallet can get
//! things wrong, and its side of the authorization code flow (PKCE, state, the PAR form, the
//! code exchange). The interop tests use a third-party wallet instead.

use reqwest::{Response, StatusCode};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{self, Algorithm, Jwk, SigningKey};
use vellum_formats::sdjwt;

use crate::support::{CONFIGURATION, TestApp, status_and_json};

pub const PRE_AUTHORIZED_GRANT: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";
pub const AUTHORIZATION_CODE_GRANT: &str = "authorization_code";
/// The wallet's client_id and redirect_uri in the authorization code flow.
pub const WALLET_CLIENT: &str = "wallet.example";
pub const WALLET_REDIRECT: &str = "https://wallet.example/callback";

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

/// The wallet's side of one authorization: its PKCE verifier and state.
pub struct Authorization {
    pub verifier: String,
    pub state: String,
}

impl Authorization {
    pub fn new() -> Self {
        Authorization {
            verifier: jose::b64(rand_bytes()),
            state: jose::b64(rand_bytes()),
        }
    }

    fn challenge(&self) -> String {
        jose::b64(Sha256::digest(self.verifier.as_bytes()))
    }

    /// The PAR form for an offer's issuer_state.
    pub fn form(&self, issuer_state: &str) -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", WALLET_CLIENT),
            ("redirect_uri", WALLET_REDIRECT),
            ("code_challenge", &self.challenge()),
            ("code_challenge_method", "S256"),
            ("state", &self.state),
            ("issuer_state", issuer_state),
            (
                "authorization_details",
                &json!([{"type": "openid_credential", "credential_configuration_id": CONFIGURATION}])
                    .to_string(),
            ),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (index, byte) in uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .enumerate()
    {
        bytes[index] = *byte;
    }
    bytes
}

/// The response parameters of the URL the holder's browser was sent back to.
pub fn authorization_response(url: &str) -> Value {
    assert!(url.starts_with(WALLET_REDIRECT), "{url}");
    let url = url::Url::parse(url).expect("redirect URL");
    Value::Object(
        url.query_pairs()
            .map(|(name, value)| (name.into_owned(), Value::from(value.into_owned())))
            .collect(),
    )
}

/// The form of a token request exchanging an authorization code.
pub fn code_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", AUTHORIZATION_CODE_GRANT),
        ("code", code),
        ("redirect_uri", WALLET_REDIRECT),
        ("code_verifier", verifier),
        ("client_id", WALLET_CLIENT),
    ]
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
    check_sd_jwt_against(&app.get_json("/jwks").await, compact)
}

/// [`check_sd_jwt`] with the issuer's JWKS at hand (an issuer that is not a [`TestApp`]).
pub fn check_sd_jwt_against(jwks: &Value, compact: &str) -> CheckedSdJwt {
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
