//! `vellum bench formats`: the cost of building and signing one credential of each format, and
//! of encrypting a credential response, in-process (no server, no database): per second on one
//! core.

use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::OsRng;
use serde_json::{Map, Value, json};
use vellum_formats::jose::{Algorithm, SigningKey};
use vellum_formats::jwe::{self, ContentEncryption};
use vellum_formats::sdjwt::{self, SelectiveDisclosure};
use vellum_formats::{jwt_vc, mdoc, x509};

#[derive(Debug, Clone, Args)]
pub struct FormatOptions {
    /// Credentials built per format.
    #[arg(long, default_value_t = 5000)]
    pub credentials: u32,
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub async fn run(options: FormatOptions) -> anyhow::Result<()> {
    let issuer = SigningKey::generate(Algorithm::ES256);
    let holder = SigningKey::generate(Algorithm::ES256).public_jwk();
    let now = 1_767_225_600;

    // SD-JWT VC: the demo profile's shape (8 disclosures, 2 decoys per _sd array).
    let disclosure: SelectiveDisclosure = serde_json::from_value(json!({
        "fields": {
            "given_name": {"sd": true}, "family_name": {"sd": true}, "birthdate": {"sd": true},
            "address": {"sd": true, "children": {"street_address": {"sd": true}, "locality": {"sd": true}}},
            "nationalities": {"children": {"*": {"sd": true}}}
        },
        "decoyMode": "FIXED", "decoys": 2
    }))?;
    let claims = object(json!({
        "iss": "https://issuer.example", "vct": "urn:example:identity", "iat": now, "nbf": now,
        "exp": now + 31_536_000, "cnf": {"jwk": holder},
        "given_name": "Erika", "family_name": "Mustermann", "birthdate": "1984-01-26",
        "address": {"street_address": "Heidestraße 17", "locality": "Köln", "country": "DE"},
        "nationalities": ["DE", "FR"]
    }));
    let header = sdjwt::Header {
        typ: sdjwt::TYP,
        kid: Some("k".into()),
        x5c: None,
    };
    let sd_jwt = measure(options.credentials, || {
        sdjwt::issue(&header, claims.clone(), &disclosure, &issuer, &mut OsRng).len()
    });

    // W3C VC (VCDM 1.1) as JWT.
    let credential = object(json!({
        "@context": [jwt_vc::CONTEXT_V1],
        "type": ["VerifiableCredential", "UniversityDegreeCredential"],
        "credentialSubject": {"degree": {"type": "BachelorDegree", "name": "Bachelor of Science"}}
    }));
    let issuance = jwt_vc::Issuance {
        issuer: "did:example:issuer",
        kid: "did:example:issuer#0",
        subject: "did:example:holder",
        issued_at: now,
        expires_at: now + 31_536_000,
        id: "urn:uuid:00000000-0000-4000-8000-000000000000",
    };
    let w3c = measure(options.credentials, || {
        jwt_vc::issue(credential.clone(), &issuance, &issuer).len()
    });

    // mdoc: an mDL with eight elements under a document signer chain.
    let ca = SigningKey::generate(Algorithm::ES256);
    let subject = |name: &str| x509::Subject {
        common_name: name.into(),
        country: Some("DE".into()),
        organization: None,
    };
    let validity = x509::Validity {
        not_before: now,
        not_after: now + 86_400 * 365,
    };
    let root = x509::iaca(&ca, &subject("IACA"), &validity, &[1; 16])?;
    let signer = x509::issue_leaf(
        &ca,
        &root,
        &x509::Leaf {
            subject_key: &issuer.public_jwk(),
            subject: &subject("DS"),
            validity: &validity,
            profile: x509::CertificateProfile::MdocDocumentSigner,
            serial: &[2; 16],
            alt_names: &[],
        },
    )?;
    let chain = vec![signer, root];
    let namespaces = object(json!({mdoc::MDL_NAMESPACE: {
        "family_name": "Mustermann", "given_name": "Erika", "birth_date": "1984-01-26",
        "issuing_country": "DE", "document_number": "T22000129", "age_over_18": true,
        "portrait": "/9j/4AAQSkZJRgABAQEASABIAAD/2w==",
        "driving_privileges": [{"vehicle_category_code": "B", "issue_date": "2010-04-01"}]
    }}));
    let input = mdoc::MdocInput {
        doc_type: mdoc::MDL_DOC_TYPE,
        namespaces: &namespaces,
        device_key: &holder,
        signed: now,
        valid_from: now,
        valid_until: now + 31_536_000,
        x5chain: &chain,
        status: None,
    };
    let mdl = measure(options.credentials, || {
        mdoc::issue(&input, &issuer, &mut OsRng)
            .map(|bytes| bytes.len())
            .unwrap_or(0)
    });

    // Response encryption (OID4VCI 1.0 §10): the SD-JWT VC's credential response sealed to a
    // wallet's P-256 key (ECDH-ES: one key pair and one agreement per response), and opened.
    let response = json!({
        "credentials": [{"credential": sdjwt::issue(&header, claims.clone(), &disclosure, &issuer, &mut OsRng)}],
        "notification_id": "bench",
    })
    .to_string();
    let wallet = jwe::DecryptionKey::generate();
    let seal = |enc, zip| {
        jwe::encrypt(
            response.as_bytes(),
            &wallet.public_jwk(),
            enc,
            None,
            zip,
            None,
        )
        .map(|sealed| sealed.len())
        .unwrap_or(0)
    };
    let a128 = measure(options.credentials, || {
        seal(ContentEncryption::A128Gcm, false)
    });
    let a256 = measure(options.credentials, || {
        seal(ContentEncryption::A256Gcm, false)
    });
    let a256_def = measure(options.credentials, || {
        seal(ContentEncryption::A256Gcm, true)
    });
    let sealed = jwe::encrypt(
        response.as_bytes(),
        &wallet.public_jwk(),
        ContentEncryption::A256Gcm,
        None,
        false,
        None,
    )?;
    let open = measure(options.credentials, || {
        jwe::decrypt(&sealed, &wallet, 1 << 20)
            .map(|opened| opened.plaintext.len())
            .unwrap_or(0)
    });

    println!(
        "{} credentials per format, one core, ES256 issuer key, building + signing only:",
        options.credentials
    );
    println!(
        "{:<34} {:>14} {:>12} {:>10}",
        "format", "credentials/s", "us each", "bytes"
    );
    for (name, (elapsed, bytes)) in [
        ("dc+sd-jwt (8 disclosures, decoys)", sd_jwt),
        ("jwt_vc_json (VCDM 1.1)", w3c),
        ("mso_mdoc (mDL, 8 elements)", mdl),
    ] {
        let each = elapsed.as_secs_f64() / f64::from(options.credentials);
        println!(
            "{name:<34} {:>14.0} {:>12.1} {bytes:>10}",
            1.0 / each,
            each * 1_000_000.0
        );
    }
    println!(
        "response encryption, the SD-JWT VC's response ({} bytes of JSON) to a P-256 key:",
        response.len()
    );
    println!(
        "{:<34} {:>14} {:>12} {:>10}",
        "JWE (ECDH-ES)", "responses/s", "us each", "bytes"
    );
    for (name, (elapsed, bytes)) in [
        ("seal, A128GCM", a128),
        ("seal, A256GCM", a256),
        ("seal, A256GCM + DEF", a256_def),
        ("open (wallet side), A256GCM", open),
    ] {
        let each = elapsed.as_secs_f64() / f64::from(options.credentials);
        println!(
            "{name:<34} {:>14.0} {:>12.1} {bytes:>10}",
            1.0 / each,
            each * 1_000_000.0
        );
    }
    Ok(())
}

/// Runs `build` n times; returns the time taken and the size of the last result.
fn measure(n: u32, mut build: impl FnMut() -> usize) -> (Duration, usize) {
    let started = Instant::now();
    let mut size = 0;
    for _ in 0..n {
        size = build();
    }
    (started.elapsed(), size)
}
