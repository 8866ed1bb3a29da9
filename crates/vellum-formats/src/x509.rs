//! X.509 certificates for mdoc and SD-JWT issuance: a self-signed IACA root (ISO/IEC 18013-5
//! Annex B), leaves it certifies (mdoc document signer, SD-JWT signer), PEM, and chain checks.
//!
//! The certificate structures come from `x509-cert`; the TBSCertificate is assembled here and
//! signed with [`SigningKey::sign`], with the ECDSA `r || s` re-encoded as the DER
//! `Ecdsa-Sig-Value` X.509 expects. Doing the signing by hand keeps every extension under our
//! control (the `x509-cert` builder's profiles add extensions and criticality of their own) and
//! avoids its signer traits altogether.
//!
//! Signature algorithms follow the issuing key: P-256 signs with ecdsa-with-SHA256, P-384 with
//! ecdsa-with-SHA384 and Ed25519 with id-Ed25519. Subject keys may be any of the three.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use der::asn1::{
    Any, BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString, PrintableStringRef,
    SetOfVec, UintRef, UtcTime, Utf8StringRef,
};
use der::{AnyRef, Decode, Encode, Reader, SliceReader};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::Time;

use crate::jose::{self, Algorithm, Jwk, SigningKey};

/// Extended key usage of an mdoc document signer (ISO/IEC 18013-5, id-mdl-kp-mdlDS).
pub const EKU_MDL_DOCUMENT_SIGNER: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.0.18013.5.1.2");

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const COUNTRY_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const ORGANIZATION_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// UTCTime covers 1950-2049; RFC 5280 requires GeneralizedTime from 2050 on.
const YEAR_2050: i64 = 2_524_608_000;

const PEM_LABEL: &str = "CERTIFICATE";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum X509Error {
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    #[error("unsupported key or algorithm: {0}")]
    Unsupported(&'static str),
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("invalid PEM: {0}")]
    Pem(&'static str),
    #[error("certificate {index} of the chain: {reason}")]
    Chain { index: usize, reason: &'static str },
}

impl From<der::Error> for X509Error {
    fn from(error: der::Error) -> Self {
        X509Error::Malformed(error.to_string())
    }
}

/// The distinguished name of a certificate: C, O and CN, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    /// ISO 3166-1 alpha-2, encoded as a PrintableString.
    pub country: Option<String>,
    pub organization: Option<String>,
}

/// A validity window in unix seconds, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateProfile {
    Iaca,
    MdocDocumentSigner,
    SdJwtSigner,
}

/// A self-signed IACA root (ISO/IEC 18013-5 Annex B): CA with pathLen 0, keyCertSign + cRLSign,
/// subject key identifier, issuer = subject. Returns DER.
pub fn iaca(
    key: &SigningKey,
    subject: &Subject,
    validity: &Validity,
    serial: &[u8],
) -> Result<Vec<u8>, X509Error> {
    let spki = jwk_to_spki(&key.public_jwk())?;
    let name = encode_name(subject)?;
    let ski = key_identifier(&spki);
    let extensions = vec![
        extension(
            &BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            },
            true,
        )?,
        extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true)?,
        extension(&SubjectKeyIdentifier(OctetString::new(ski)?), false)?,
    ];
    build_and_sign(key, name.clone(), name, spki, validity, serial, extensions)
}

/// A subject alternative name (RFC 5280 §4.2.1.6) of the kinds credential verifiers match the
/// issuer against: SD-JWT VC compares `iss` with a URI entry, or its host with a DNS entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AltName {
    Uri(String),
    Dns(String),
}

/// What a leaf certificate says: whose key, for what, when, and under which names.
#[derive(Debug, Clone)]
pub struct Leaf<'a> {
    pub subject_key: &'a Jwk,
    pub subject: &'a Subject,
    pub validity: &'a Validity,
    pub profile: CertificateProfile,
    pub serial: &'a [u8],
    /// Written as a non-critical subjectAltName extension when not empty.
    pub alt_names: &'a [AltName],
}

/// A leaf certified by a CA: digitalSignature, SKI + AKI, not a CA; the mdoc document signer
/// profile adds the critical extended key usage 1.0.18013.5.1.2.
///
/// `ca_key` must be the key of `ca_certificate`, which must be a CA, and the leaf's validity must
/// lie within the CA's. [`CertificateProfile::Iaca`] is refused here: use [`iaca`].
pub fn issue_leaf(
    ca_key: &SigningKey,
    ca_certificate: &[u8],
    leaf: &Leaf<'_>,
) -> Result<Vec<u8>, X509Error> {
    let Leaf {
        subject_key,
        subject,
        validity,
        profile,
        serial,
        alt_names,
    } = *leaf;
    if profile == CertificateProfile::Iaca {
        return Err(X509Error::Invalid("an IACA is self-signed: use iaca()"));
    }
    let ca = Certificate::from_der(ca_certificate)?;
    let ca_tbs = &ca.tbs_certificate;
    if spki_to_jwk(&ca_tbs.subject_public_key_info)? != ca_key.public_jwk() {
        return Err(X509Error::Invalid(
            "the CA key does not match the CA certificate",
        ));
    }
    if !is_ca(ca_tbs) {
        return Err(X509Error::Invalid(
            "the CA certificate is not a CA (basicConstraints / keyUsage)",
        ));
    }
    let ca_not_before = ca_tbs.validity.not_before.to_unix_duration().as_secs();
    let ca_not_after = ca_tbs.validity.not_after.to_unix_duration().as_secs();
    let inside = |t: i64| u64::try_from(t).is_ok_and(|t| ca_not_before <= t && t <= ca_not_after);
    if !inside(validity.not_before) || !inside(validity.not_after) {
        return Err(X509Error::Invalid(
            "the leaf validity must lie within the CA's validity",
        ));
    }
    // Reuse the CA's own identifier when it has one, so AKI always matches the issuer's SKI.
    let authority_key_id = match ca_tbs.get::<SubjectKeyIdentifier>()? {
        Some((_, ski)) => ski.0,
        None => OctetString::new(key_identifier(&ca_tbs.subject_public_key_info))?,
    };

    let spki = jwk_to_spki(subject_key)?;
    let ski = key_identifier(&spki);
    let mut extensions = vec![
        extension(
            &BasicConstraints {
                ca: false,
                path_len_constraint: None,
            },
            true,
        )?,
        extension(&KeyUsage(KeyUsages::DigitalSignature.into()), true)?,
        extension(&SubjectKeyIdentifier(OctetString::new(ski)?), false)?,
        extension(
            &AuthorityKeyIdentifier {
                key_identifier: Some(authority_key_id),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?,
    ];
    if profile == CertificateProfile::MdocDocumentSigner {
        extensions.push(extension(
            &ExtendedKeyUsage(vec![EKU_MDL_DOCUMENT_SIGNER]),
            true,
        )?);
    }
    if !alt_names.is_empty() {
        let names = alt_names
            .iter()
            .map(|name| {
                let (text, uri) = match name {
                    AltName::Uri(text) => (text, true),
                    AltName::Dns(text) => (text, false),
                };
                let text = Ia5String::new(text)
                    .map_err(|_| X509Error::Invalid("an alternative name must be ASCII"))?;
                Ok(if uri {
                    GeneralName::UniformResourceIdentifier(text)
                } else {
                    GeneralName::DnsName(text)
                })
            })
            .collect::<Result<Vec<_>, X509Error>>()?;
        extensions.push(extension(&SubjectAltName(names), false)?);
    }
    build_and_sign(
        ca_key,
        ca_tbs.subject.clone(),
        encode_name(subject)?,
        spki,
        validity,
        serial,
        extensions,
    )
}

/// PEM with the `CERTIFICATE` label, 64-character lines and a trailing newline.
pub fn to_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    pem
}

/// Decodes exactly one PEM `CERTIFICATE` block.
pub fn from_pem(pem: &str) -> Result<Vec<u8>, X509Error> {
    let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|_| X509Error::Pem("not a single PEM block"))?;
    if label != PEM_LABEL {
        return Err(X509Error::Pem("label is not CERTIFICATE"));
    }
    Ok(der)
}

/// Decodes every PEM `CERTIFICATE` block of a bundle, in order (a chain file, leaf first).
pub fn from_pem_chain(pem: &str) -> Result<Vec<Vec<u8>>, X509Error> {
    let end = format!("-----END {PEM_LABEL}-----");
    let mut chain = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let stop = block
            .find(&end)
            .ok_or(X509Error::Pem("unterminated CERTIFICATE block"))?
            + end.len();
        chain.push(from_pem(&block[..stop])?);
        rest = &block[stop..];
    }
    if chain.is_empty() {
        return Err(X509Error::Pem("no CERTIFICATE block"));
    }
    Ok(chain)
}

/// The URI and DNS subject alternative names of a certificate (DER), in order.
pub fn alt_names(der: &[u8]) -> Result<Vec<AltName>, X509Error> {
    let certificate = Certificate::from_der(der)?;
    let Some((_, names)) = certificate.tbs_certificate.get::<SubjectAltName>()? else {
        return Ok(Vec::new());
    };
    Ok(names
        .0
        .into_iter()
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(text) => Some(AltName::Uri(text.to_string())),
            GeneralName::DnsName(text) => Some(AltName::Dns(text.to_string())),
            _ => None,
        })
        .collect())
}

/// Whether a certificate (DER) names itself as its issuer: a root, which verifiers hold as a
/// trust anchor and which credential headers leave out.
pub fn is_self_issued(der: &[u8]) -> Result<bool, X509Error> {
    let tbs = Certificate::from_der(der)?.tbs_certificate;
    Ok(tbs.issuer == tbs.subject)
}

/// The public key of a certificate (DER) as a JWK.
pub fn leaf_public_jwk(der: &[u8]) -> Result<Jwk, X509Error> {
    let certificate = Certificate::from_der(der)?;
    spki_to_jwk(&certificate.tbs_certificate.subject_public_key_info)
}

/// Checks a chain, leaf first: every certificate parses, names chain (issuer = next subject),
/// is signed by the next certificate's key, whose certificate must be a CA; the last certificate
/// is verified against its own key when it is self-signed and trusted as given otherwise.
/// With `now`, every certificate must be valid at that instant.
///
/// This checks the structure Vellum produces; it is not a full RFC 5280 path validation (no
/// revocation, name or policy constraints, no trust anchor selection).
pub fn verify_chain(chain: &[Vec<u8>], now: Option<i64>) -> Result<(), X509Error> {
    if chain.is_empty() {
        return Err(X509Error::Invalid("empty chain"));
    }
    let certificates = chain
        .iter()
        .enumerate()
        .map(|(index, der)| {
            Certificate::from_der(der).map_err(|_| X509Error::Chain {
                index,
                reason: "does not parse",
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(now) = now {
        valid_at(chain, now)?;
    }
    for (index, certificate) in certificates.iter().enumerate() {
        let fail = |reason| X509Error::Chain { index, reason };
        let tbs = &certificate.tbs_certificate;
        if certificate.signature_algorithm != tbs.signature {
            return Err(fail("outer and inner signature algorithms differ"));
        }
        let issuer = match certificates.get(index + 1) {
            Some(issuer) => {
                if !is_ca(&issuer.tbs_certificate) {
                    return Err(fail("issuer certificate is not a CA"));
                }
                issuer
            }
            None if tbs.issuer == tbs.subject => certificate,
            None => continue,
        };
        if tbs.issuer != issuer.tbs_certificate.subject {
            return Err(fail("issuer name does not match the next subject"));
        }
        let issuer_key = spki_to_jwk(&issuer.tbs_certificate.subject_public_key_info)
            .map_err(|_| fail("unsupported issuer key"))?;
        verify_signature(&chain[index], certificate, &issuer_key)
            .map_err(|_| fail("signature does not verify with the issuer's key"))?;
    }
    Ok(())
}

/// Whether every certificate of a chain (DER) is valid at `now` (unix seconds); nothing else is
/// checked (see [`verify_chain`]).
pub fn valid_at(chain: &[Vec<u8>], now: i64) -> Result<(), X509Error> {
    for (index, der) in chain.iter().enumerate() {
        let fail = |reason| X509Error::Chain { index, reason };
        let certificate = Certificate::from_der(der).map_err(|_| fail("does not parse"))?;
        let validity = &certificate.tbs_certificate.validity;
        let not_before = validity.not_before.to_unix_duration().as_secs();
        let not_after = validity.not_after.to_unix_duration().as_secs();
        if !u64::try_from(now).is_ok_and(|t| not_before <= t && t <= not_after) {
            return Err(fail("not valid at the given time"));
        }
    }
    Ok(())
}

fn is_ca(tbs: &TbsCertificate) -> bool {
    let basic = matches!(tbs.get::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca);
    let usage = match tbs.get::<KeyUsage>() {
        Ok(Some((_, usage))) => usage.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    basic && usage
}

fn build_and_sign(
    key: &SigningKey,
    issuer: Name,
    subject: Name,
    spki: SubjectPublicKeyInfoOwned,
    validity: &Validity,
    serial: &[u8],
    extensions: Vec<Extension>,
) -> Result<Vec<u8>, X509Error> {
    let algorithm = signature_algorithm(key.algorithm());
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: serial_number(serial)?,
        signature: algorithm.clone(),
        issuer,
        validity: encode_validity(validity)?,
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signature = key.sign_deterministic(&tbs.to_der()?);
    let signature = match key {
        SigningKey::P256(_) | SigningKey::P384(_) => ecdsa_fixed_to_der(&signature)?,
        SigningKey::Ed25519(_) => signature,
    };
    let certificate = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature)?,
    };
    Ok(certificate.to_der()?)
}

fn verify_signature(der: &[u8], certificate: &Certificate, issuer: &Jwk) -> Result<(), X509Error> {
    let algorithm = issuer
        .algorithm()
        .map_err(|_| X509Error::Unsupported("issuer key"))?;
    if certificate.signature_algorithm != signature_algorithm(algorithm) {
        return Err(X509Error::Unsupported(
            "signature algorithm does not match the issuer key",
        ));
    }
    let signature = certificate
        .signature
        .as_bytes()
        .ok_or(X509Error::Invalid("signature has unused bits"))?;
    let signature = match algorithm {
        Algorithm::ES256 => ecdsa_der_to_fixed(signature, 32)?,
        Algorithm::ES384 => ecdsa_der_to_fixed(signature, 48)?,
        Algorithm::EdDSA => signature.to_vec(),
    };
    jose::verify(issuer, algorithm, &raw_tbs(der)?, &signature)
        .map_err(|_| X509Error::Invalid("bad signature"))
}

/// The TBSCertificate exactly as it appears in `der` (re-encoding could differ for non-DER input).
fn raw_tbs(der: &[u8]) -> Result<Vec<u8>, X509Error> {
    let outer = AnyRef::from_der(der)?;
    let mut reader = SliceReader::new(outer.value())?;
    let tbs: AnyRef<'_> = reader.decode()?;
    Ok(tbs.to_der()?)
}

fn signature_algorithm(algorithm: Algorithm) -> AlgorithmIdentifierOwned {
    let oid = match algorithm {
        Algorithm::ES256 => ECDSA_WITH_SHA256,
        Algorithm::ES384 => ECDSA_WITH_SHA384,
        Algorithm::EdDSA => ID_ED25519,
    };
    AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    }
}

/// `r || s` to `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
fn ecdsa_fixed_to_der(signature: &[u8]) -> Result<Vec<u8>, X509Error> {
    let (r, s) = signature.split_at(signature.len() / 2);
    Ok(vec![UintRef::new(r)?, UintRef::new(s)?].to_der()?)
}

fn ecdsa_der_to_fixed(signature: &[u8], size: usize) -> Result<Vec<u8>, X509Error> {
    let parts = Vec::<UintRef<'_>>::from_der(signature)?;
    let [r, s] = parts.as_slice() else {
        return Err(X509Error::Invalid("ECDSA signature is not two integers"));
    };
    let mut fixed = vec![0; 2 * size];
    for (integer, half) in [r, s].into_iter().zip(fixed.chunks_mut(size)) {
        let bytes = integer.as_bytes();
        if bytes.len() > size {
            return Err(X509Error::Invalid("ECDSA integer too long"));
        }
        half[size - bytes.len()..].copy_from_slice(bytes);
    }
    Ok(fixed)
}

fn serial_number(serial: &[u8]) -> Result<SerialNumber, X509Error> {
    match serial.first() {
        None => Err(X509Error::Invalid("empty serial number")),
        Some(&first) if first >= 0x80 => Err(X509Error::Invalid(
            "serial number must be positive (first byte below 0x80)",
        )),
        Some(_) if serial.len() > 20 => {
            Err(X509Error::Invalid("serial number longer than 20 bytes"))
        }
        Some(_) if serial.iter().all(|&b| b == 0) => {
            Err(X509Error::Invalid("serial number must not be zero"))
        }
        Some(_) => Ok(SerialNumber::new(serial)?),
    }
}

fn encode_validity(validity: &Validity) -> Result<x509_cert::time::Validity, X509Error> {
    if validity.not_before < 0 || validity.not_after < validity.not_before {
        return Err(X509Error::Invalid(
            "validity must satisfy 0 <= not_before <= not_after",
        ));
    }
    Ok(x509_cert::time::Validity {
        not_before: encode_time(validity.not_before)?,
        not_after: encode_time(validity.not_after)?,
    })
}

fn encode_time(unix: i64) -> Result<Time, X509Error> {
    let seconds = u64::try_from(unix).map_err(|_| X509Error::Invalid("time before 1970"))?;
    let duration = Duration::from_secs(seconds);
    Ok(if unix < YEAR_2050 {
        Time::UtcTime(UtcTime::from_unix_duration(duration)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(duration)?)
    })
}

fn encode_name(subject: &Subject) -> Result<Name, X509Error> {
    let mut rdns = Vec::new();
    if let Some(country) = &subject.country {
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(X509Error::Invalid(
                "country must be two upper-case letters (ISO 3166-1 alpha-2)",
            ));
        }
        rdns.push(rdn(
            COUNTRY_NAME,
            Any::encode_from(&PrintableStringRef::new(country)?)?,
        )?);
    }
    if let Some(organization) = &subject.organization {
        rdns.push(rdn(ORGANIZATION_NAME, utf8(organization)?)?);
    }
    if subject.common_name.is_empty() {
        return Err(X509Error::Invalid("common name must not be empty"));
    }
    rdns.push(rdn(COMMON_NAME, utf8(&subject.common_name)?)?);
    Ok(RdnSequence(rdns))
}

fn utf8(text: &str) -> Result<Any, X509Error> {
    Ok(Any::encode_from(&Utf8StringRef::new(text)?)?)
}

fn rdn(oid: ObjectIdentifier, value: Any) -> Result<RelativeDistinguishedName, X509Error> {
    let attribute = AttributeTypeAndValue { oid, value };
    Ok(RelativeDistinguishedName(SetOfVec::try_from(vec![
        attribute,
    ])?))
}

fn extension<T: der::oid::AssociatedOid + Encode>(
    value: &T,
    critical: bool,
) -> Result<Extension, X509Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// RFC 7093 method 1: the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits.
fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec()
}

fn jwk_to_spki(jwk: &Jwk) -> Result<SubjectPublicKeyInfoOwned, X509Error> {
    let (algorithm, key) = match jwk
        .algorithm()
        .map_err(invalid("unsupported JWK kty/crv"))?
    {
        Algorithm::ES256 => {
            let point = sec1_point(jwk, 32)?;
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(invalid("not a P-256 point"))?;
            (ec_algorithm(SECP256R1)?, point)
        }
        Algorithm::ES384 => {
            let point = sec1_point(jwk, 48)?;
            p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(invalid("not a P-384 point"))?;
            (ec_algorithm(SECP384R1)?, point)
        }
        Algorithm::EdDSA => {
            let x: [u8; 32] = jose::b64_decode(&jwk.x)
                .map_err(invalid("x is not base64url"))?
                .try_into()
                .map_err(|_| X509Error::Invalid("Ed25519 x must be 32 bytes"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(invalid("not an Ed25519 point"))?;
            let algorithm = AlgorithmIdentifierOwned {
                oid: ID_ED25519,
                parameters: None,
            };
            (algorithm, x.to_vec())
        }
    };
    Ok(SubjectPublicKeyInfoOwned {
        algorithm,
        subject_public_key: BitString::from_bytes(&key)?,
    })
}

fn invalid<E>(what: &'static str) -> impl FnOnce(E) -> X509Error {
    move |_| X509Error::Invalid(what)
}

fn ec_algorithm(curve: ObjectIdentifier) -> Result<AlgorithmIdentifierOwned, X509Error> {
    Ok(AlgorithmIdentifierOwned {
        oid: ID_EC_PUBLIC_KEY,
        parameters: Some(Any::encode_from(&curve)?),
    })
}

fn sec1_point(jwk: &Jwk, size: usize) -> Result<Vec<u8>, X509Error> {
    let decode = |text: &str| {
        jose::b64_decode(text)
            .ok()
            .filter(|bytes| bytes.len() == size)
            .ok_or(X509Error::Invalid(
                "EC coordinate has the wrong encoding or length",
            ))
    };
    let x = decode(&jwk.x)?;
    let y = decode(
        jwk.y
            .as_deref()
            .ok_or(X509Error::Invalid("EC key without y"))?,
    )?;
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

fn spki_to_jwk(spki: &SubjectPublicKeyInfoOwned) -> Result<Jwk, X509Error> {
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or(X509Error::Invalid("public key has unused bits"))?;
    match spki.algorithm.oid {
        ID_EC_PUBLIC_KEY => {
            let curve: ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or(X509Error::Invalid("EC key without curve parameters"))?
                .decode_as()?;
            // Going through the verifying key accepts compressed points and yields a public JWK.
            let (crv, point) = match curve {
                SECP256R1 => (
                    "P-256",
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                        .map_err(invalid("not a P-256 point"))?
                        .to_encoded_point(false)
                        .as_bytes()
                        .to_vec(),
                ),
                SECP384R1 => (
                    "P-384",
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(key)
                        .map_err(invalid("not a P-384 point"))?
                        .to_encoded_point(false)
                        .as_bytes()
                        .to_vec(),
                ),
                _ => return Err(X509Error::Unsupported("EC curve other than P-256/P-384")),
            };
            let (x, y) = point[1..].split_at((point.len() - 1) / 2);
            Ok(Jwk {
                kty: "EC".into(),
                crv: crv.into(),
                x: jose::b64(x),
                y: Some(jose::b64(y)),
                d: None,
            })
        }
        ID_ED25519 => {
            let x: [u8; 32] = key
                .try_into()
                .map_err(|_| X509Error::Invalid("Ed25519 key must be 32 bytes"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(invalid("not an Ed25519 point"))?;
            Ok(Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: jose::b64(x),
                y: None,
                d: None,
            })
        }
        _ => Err(X509Error::Unsupported(
            "public key algorithm other than EC P-256/P-384 or Ed25519",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::flagset::FlagSet;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_790_000_000;

    fn serial(seed: u8) -> Vec<u8> {
        let mut serial: Vec<u8> = Sha256::digest([seed])[..16].to_vec();
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        serial
    }

    fn subject(common_name: &str) -> Subject {
        Subject {
            common_name: common_name.into(),
            country: Some("NL".into()),
            organization: Some("Vellum test".into()),
        }
    }

    fn window(days: i64) -> Validity {
        Validity {
            not_before: NOW - DAY,
            not_after: NOW + days * DAY,
        }
    }

    struct Pki {
        iaca_key: SigningKey,
        iaca: Vec<u8>,
        leaf_key: SigningKey,
        leaf: Vec<u8>,
    }

    fn pki(ca: Algorithm, subject_alg: Algorithm, profile: CertificateProfile) -> Pki {
        let iaca_key = SigningKey::generate(ca);
        let iaca_der = iaca(
            &iaca_key,
            &subject("Vellum IACA"),
            &window(3650),
            &serial(1),
        )
        .expect("iaca");
        let leaf_key = SigningKey::generate(subject_alg);
        let leaf = issue_leaf(
            &iaca_key,
            &iaca_der,
            &Leaf {
                subject_key: &leaf_key.public_jwk(),
                subject: &subject("Vellum DS"),
                validity: &window(365),
                profile,
                serial: &serial(2),
                alt_names: &[],
            },
        )
        .expect("leaf");
        Pki {
            iaca_key,
            iaca: iaca_der,
            leaf_key,
            leaf,
        }
    }

    fn ski(tbs: &TbsCertificate) -> Vec<u8> {
        let (critical, ski) = tbs
            .get::<SubjectKeyIdentifier>()
            .expect("decodes")
            .expect("SKI present");
        assert!(!critical);
        ski.0.as_bytes().to_vec()
    }

    #[test]
    fn x509_iaca_and_document_signer_have_the_iso_18013_5_extensions() {
        let pki = pki(
            Algorithm::ES256,
            Algorithm::ES256,
            CertificateProfile::MdocDocumentSigner,
        );
        let root = Certificate::from_der(&pki.iaca).expect("IACA parses");
        let ds = Certificate::from_der(&pki.leaf).expect("DS parses");
        let (root_tbs, ds_tbs) = (&root.tbs_certificate, &ds.tbs_certificate);

        assert_eq!(root_tbs.version, Version::V3);
        assert_eq!(root_tbs.issuer, root_tbs.subject);
        assert_eq!(ds_tbs.issuer, root_tbs.subject);
        assert_eq!(root.signature_algorithm.oid, ECDSA_WITH_SHA256);
        assert_eq!(ds.signature_algorithm.oid, ECDSA_WITH_SHA256);
        assert_eq!(root_tbs.serial_number.as_bytes(), serial(1).as_slice());
        assert_eq!(
            root_tbs.subject.to_string(),
            "CN=Vellum IACA,O=Vellum test,C=NL"
        );

        let (critical, bc) = root_tbs
            .get::<BasicConstraints>()
            .expect("decodes")
            .expect("present");
        assert!(critical && bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let (critical, usage) = root_tbs
            .get::<KeyUsage>()
            .expect("decodes")
            .expect("present");
        assert!(critical);
        assert_eq!(usage.0, KeyUsages::KeyCertSign | KeyUsages::CRLSign);
        assert!(
            root_tbs
                .get::<ExtendedKeyUsage>()
                .expect("decodes")
                .is_none()
        );
        assert!(
            root_tbs
                .get::<AuthorityKeyIdentifier>()
                .expect("decodes")
                .is_none()
        );

        let (_, bc) = ds_tbs
            .get::<BasicConstraints>()
            .expect("decodes")
            .expect("present");
        assert!(!bc.ca);
        let (critical, usage) = ds_tbs.get::<KeyUsage>().expect("decodes").expect("present");
        assert!(critical);
        assert_eq!(usage.0, FlagSet::from(KeyUsages::DigitalSignature));
        let (critical, eku) = ds_tbs
            .get::<ExtendedKeyUsage>()
            .expect("decodes")
            .expect("EKU present");
        assert!(critical);
        assert_eq!(eku.0, vec![EKU_MDL_DOCUMENT_SIGNER]);
        assert_eq!(EKU_MDL_DOCUMENT_SIGNER.to_string(), "1.0.18013.5.1.2");

        let (_, aki) = ds_tbs
            .get::<AuthorityKeyIdentifier>()
            .expect("decodes")
            .expect("AKI present");
        let aki = aki.key_identifier.expect("key identifier");
        assert_eq!(aki.as_bytes(), ski(root_tbs).as_slice());
        assert_ne!(ski(ds_tbs), ski(root_tbs));
        assert_eq!(ski(root_tbs).len(), 20);

        verify_chain(&[pki.leaf.clone(), pki.iaca.clone()], Some(NOW)).expect("chain verifies");
        verify_chain(std::slice::from_ref(&pki.iaca), None).expect("self-signed root verifies");
        verify_chain(std::slice::from_ref(&pki.leaf), Some(NOW)).expect("lone leaf is accepted");
        assert_eq!(
            leaf_public_jwk(&pki.leaf).expect("jwk"),
            pki.leaf_key.public_jwk()
        );
        assert_eq!(
            leaf_public_jwk(&pki.iaca).expect("jwk"),
            pki.iaca_key.public_jwk()
        );
    }

    #[test]
    fn x509_sd_jwt_signer_has_no_eku_and_every_curve_combination_verifies() {
        let profiles = [
            CertificateProfile::SdJwtSigner,
            CertificateProfile::MdocDocumentSigner,
        ];
        for ca in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            for subject_alg in Algorithm::ALL {
                for profile in profiles {
                    let pki = pki(ca, subject_alg, profile);
                    let leaf = Certificate::from_der(&pki.leaf).expect("parses");
                    assert_eq!(leaf.signature_algorithm, signature_algorithm(ca));
                    let eku = leaf
                        .tbs_certificate
                        .get::<ExtendedKeyUsage>()
                        .expect("decodes");
                    assert_eq!(
                        eku.is_some(),
                        profile == CertificateProfile::MdocDocumentSigner
                    );
                    verify_chain(&[pki.leaf.clone(), pki.iaca.clone()], Some(NOW))
                        .unwrap_or_else(|e| panic!("{ca} CA, {subject_alg} leaf: {e}"));
                    assert_eq!(
                        leaf_public_jwk(&pki.leaf).expect("jwk"),
                        pki.leaf_key.public_jwk()
                    );
                }
            }
        }
    }

    #[test]
    fn x509_alt_names_round_trip_and_only_the_root_is_self_issued() {
        let pki = pki(
            Algorithm::ES256,
            Algorithm::ES256,
            CertificateProfile::SdJwtSigner,
        );
        assert_eq!(alt_names(&pki.leaf).expect("reads"), []);
        let names = [
            AltName::Uri("https://issuer.example/tenant".into()),
            AltName::Dns("issuer.example".into()),
        ];
        let named = issue_leaf(
            &pki.iaca_key,
            &pki.iaca,
            &Leaf {
                subject_key: &pki.leaf_key.public_jwk(),
                subject: &subject("Vellum SD-JWT signer"),
                validity: &window(30),
                profile: CertificateProfile::SdJwtSigner,
                serial: &serial(3),
                alt_names: &names,
            },
        )
        .expect("leaf");
        assert_eq!(alt_names(&named).expect("reads"), names);
        let (critical, _) = Certificate::from_der(&named)
            .expect("parses")
            .tbs_certificate
            .get::<SubjectAltName>()
            .expect("decodes")
            .expect("present");
        assert!(!critical);
        verify_chain(&[named.clone(), pki.iaca.clone()], Some(NOW)).expect("verifies");
        assert!(is_self_issued(&pki.iaca).expect("parses"));
        assert!(!is_self_issued(&named).expect("parses"));
        let not_ascii = [AltName::Dns("bücher.example".into())];
        let refused = issue_leaf(
            &pki.iaca_key,
            &pki.iaca,
            &Leaf {
                alt_names: &not_ascii,
                subject_key: &pki.leaf_key.public_jwk(),
                subject: &subject("x"),
                validity: &window(30),
                profile: CertificateProfile::SdJwtSigner,
                serial: &serial(4),
            },
        );
        assert!(matches!(refused, Err(X509Error::Invalid(_))));
    }

    #[test]
    fn x509_pem_round_trips() {
        let pki = pki(
            Algorithm::ES256,
            Algorithm::ES256,
            CertificateProfile::MdocDocumentSigner,
        );
        let pem = to_pem(&pki.leaf);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
        assert_eq!(from_pem(&pem).expect("decodes"), pki.leaf);
        let bundle = format!("{}\n{}", pem, to_pem(&pki.iaca));
        assert_eq!(
            from_pem_chain(&bundle).expect("decodes"),
            vec![pki.leaf.clone(), pki.iaca.clone()]
        );
        assert!(from_pem(&bundle).is_err());
        assert!(from_pem(&pem.replace("CERTIFICATE", "PRIVATE KEY")).is_err());
        assert!(from_pem("not pem").is_err());
    }

    #[test]
    fn x509_a_wrong_ca_expiry_or_tampering_fails_verify_chain() {
        let pki = pki(
            Algorithm::ES256,
            Algorithm::ES256,
            CertificateProfile::MdocDocumentSigner,
        );
        // Same subject name, different key: names chain but the signature does not.
        let other_key = SigningKey::generate(Algorithm::ES256);
        let other = iaca(
            &other_key,
            &subject("Vellum IACA"),
            &window(3650),
            &serial(3),
        )
        .expect("iaca");
        assert!(matches!(
            verify_chain(&[pki.leaf.clone(), other.clone()], Some(NOW)),
            Err(X509Error::Chain { index: 0, .. })
        ));
        // A different name fails on the issuer name.
        let renamed = iaca(
            &pki.iaca_key,
            &subject("Another IACA"),
            &window(3650),
            &serial(4),
        )
        .expect("iaca");
        assert!(verify_chain(&[pki.leaf.clone(), renamed], None).is_err());
        // A leaf cannot act as a CA.
        assert!(verify_chain(&[pki.leaf.clone(), pki.leaf.clone()], None).is_err());
        // Outside the validity window.
        let chain = [pki.leaf.clone(), pki.iaca.clone()];
        assert!(verify_chain(&chain, Some(NOW + 400 * DAY)).is_err());
        assert!(verify_chain(&chain, Some(NOW - 2 * DAY)).is_err());
        // A flipped bit inside the leaf's TBS (its common name).
        let mut tampered = pki.leaf.clone();
        let at = tampered
            .windows(9)
            .position(|w| w == b"Vellum DS")
            .expect("CN bytes");
        tampered[at] ^= 0x01;
        assert!(verify_chain(&[tampered, pki.iaca.clone()], None).is_err());
        assert!(verify_chain(&[], None).is_err());
    }

    #[test]
    fn x509_inputs_are_validated() {
        let key = SigningKey::generate(Algorithm::ES256);
        let name = subject("Vellum IACA");
        let err = |s: &[u8]| iaca(&key, &name, &window(10), s).expect_err("refused");
        assert!(matches!(err(&[0x80; 16]), X509Error::Invalid(_)));
        assert!(matches!(err(&[]), X509Error::Invalid(_)));
        assert!(matches!(err(&[0; 16]), X509Error::Invalid(_)));
        assert!(matches!(err(&[0x01; 21]), X509Error::Invalid(_)));
        let backwards = Validity {
            not_before: NOW,
            not_after: NOW - 1,
        };
        assert!(iaca(&key, &name, &backwards, &serial(1)).is_err());
        let bad_country = Subject {
            country: Some("Netherlands".into()),
            ..name.clone()
        };
        assert!(iaca(&key, &bad_country, &window(10), &serial(1)).is_err());

        let root = iaca(&key, &name, &window(10), &serial(1)).expect("iaca");
        let leaf_key = SigningKey::generate(Algorithm::ES256).public_jwk();
        let leaf = |ca_key: &SigningKey, ca: &[u8], validity: &Validity| {
            issue_leaf(
                ca_key,
                ca,
                &Leaf {
                    subject_key: &leaf_key,
                    subject: &subject("Vellum DS"),
                    validity,
                    profile: CertificateProfile::MdocDocumentSigner,
                    serial: &serial(2),
                    alt_names: &[],
                },
            )
        };
        let stranger = SigningKey::generate(Algorithm::ES256);
        assert!(
            leaf(&stranger, &root, &window(5)).is_err(),
            "key must match the CA"
        );
        assert!(
            leaf(&key, &root, &window(20)).is_err(),
            "must fit in the CA window"
        );
        let ds = leaf(&key, &root, &window(5)).expect("issues");
        assert!(leaf(&key, &ds, &window(5)).is_err(), "a leaf cannot issue");
        let far = Validity {
            not_before: NOW,
            not_after: YEAR_2050 + DAY,
        };
        let long_root = iaca(&key, &name, &far, &serial(5)).expect("GeneralizedTime");
        let parsed = Certificate::from_der(&long_root).expect("parses");
        assert!(matches!(
            parsed.tbs_certificate.validity.not_after,
            Time::GeneralTime(_)
        ));
        assert!(matches!(
            parsed.tbs_certificate.validity.not_before,
            Time::UtcTime(_)
        ));
        assert!(
            issue_leaf(
                &key,
                &root,
                &Leaf {
                    subject_key: &leaf_key,
                    subject: &name,
                    validity: &window(5),
                    profile: CertificateProfile::Iaca,
                    serial: &serial(6),
                    alt_names: &[],
                },
            )
            .is_err()
        );
    }

    /// Cross-checks our DER with an independent parser when the `openssl` command exists.
    #[test]
    fn x509_openssl_reads_the_certificates() {
        let available = std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|output| output.status.success());
        if !available {
            println!("note: the openssl command is not installed; skipping the cross-check");
            return;
        }
        let pki = pki(
            Algorithm::ES256,
            Algorithm::ES256,
            CertificateProfile::MdocDocumentSigner,
        );
        let directory = std::env::temp_dir().join(format!(
            "vellum-x509-{}-{}",
            std::process::id(),
            jose::b64(serial(9))
        ));
        std::fs::create_dir_all(&directory).expect("temp dir");
        let text = |name: &str, der: &[u8]| {
            let path = directory.join(name);
            std::fs::write(&path, der).expect("write DER");
            let output = std::process::Command::new("openssl")
                .args(["x509", "-inform", "DER", "-noout", "-text", "-in"])
                .arg(&path)
                .output()
                .expect("runs openssl");
            assert!(
                output.status.success(),
                "openssl failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let root = text("iaca.der", &pki.iaca);
        let ds = text("ds.der", &pki.leaf);
        // The chain also verifies under openssl when it knows the root.
        let root_pem = directory.join("iaca.pem");
        let ds_pem = directory.join("ds.pem");
        std::fs::write(&root_pem, to_pem(&pki.iaca)).expect("write PEM");
        std::fs::write(&ds_pem, to_pem(&pki.leaf)).expect("write PEM");
        let verified = std::process::Command::new("openssl")
            .args(["verify", "-no-CApath", "-no-CAstore", "-attime"])
            .arg(NOW.to_string())
            .arg("-purpose")
            .arg("any")
            .arg("-CAfile")
            .arg(&root_pem)
            .arg(&ds_pem)
            .output()
            .expect("runs openssl verify");
        let _ = std::fs::remove_dir_all(&directory);

        assert!(root.contains("CA:TRUE"), "{root}");
        assert!(root.contains("pathlen:0"), "{root}");
        assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
        assert!(root.contains("ecdsa-with-SHA256"), "{root}");
        assert!(!root.contains("1.0.18013.5.1.2"), "{root}");
        assert!(ds.contains("1.0.18013.5.1.2"), "{ds}");
        assert!(ds.contains("CA:FALSE"), "{ds}");
        assert!(ds.contains("Digital Signature"), "{ds}");
        assert!(ds.contains("Authority Key Identifier"), "{ds}");
        assert!(
            verified.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&verified.stdout),
            String::from_utf8_lossy(&verified.stderr)
        );
    }
}
