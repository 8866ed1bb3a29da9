//! The master key and everything derived from it: sealing private keys at rest, and the MAC
//! keys behind pre-authorized codes, offer handles, tx_code hashes, stateless nonces and
//! event-stream tokens.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The message names the setting: `master_key` or `master_key_file`.
    #[error("{0}")]
    MasterKey(String),
    #[error("sealed data cannot be opened with this master key")]
    Unseal,
}

/// Purposes of derived keys; distinct labels keep the derived secrets independent.
#[derive(Clone, Copy)]
pub enum Purpose {
    KeySealing,
    PreAuthorizedCode,
    OfferHandle,
    TxCode,
    Nonce,
    DpopNonce,
    AttestationChallenge,
    StatusIndex,
    IssuerState,
    UpstreamLogin,
    StreamToken,
    ConsoleSession,
    MasterKeyCheck,
    RequestEncryption,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::KeySealing => b"vellum/v1/key-sealing",
            Purpose::PreAuthorizedCode => b"vellum/v1/pre-authorized-code",
            Purpose::OfferHandle => b"vellum/v1/offer-handle",
            Purpose::TxCode => b"vellum/v1/tx-code",
            Purpose::Nonce => b"vellum/v1/nonce",
            Purpose::DpopNonce => b"vellum/v1/dpop-nonce",
            Purpose::AttestationChallenge => b"vellum/v1/attestation-challenge",
            Purpose::StatusIndex => b"vellum/v1/status-index",
            Purpose::IssuerState => b"vellum/v1/issuer-state",
            Purpose::UpstreamLogin => b"vellum/v1/upstream-login",
            Purpose::StreamToken => b"vellum/v1/stream-token",
            Purpose::ConsoleSession => b"vellum/v1/console-session",
            Purpose::MasterKeyCheck => b"vellum/v1/master-key-check",
            Purpose::RequestEncryption => b"vellum/v1/request-encryption",
        }
    }
}

pub struct Secrets {
    master: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([redacted])")
    }
}

impl Secrets {
    /// From `master_key` (base64) if set, else from `file`, creating it on first start.
    pub fn load(master_key: &str, file: &Path) -> Result<Secrets, SecretsError> {
        let in_file = |why: String| {
            SecretsError::MasterKey(format!("master_key_file {}: {why}", file.display()))
        };
        let (encoded, from) = if !master_key.is_empty() {
            (
                Zeroizing::new(master_key.trim().to_owned()),
                "master_key".to_owned(),
            )
        } else if file.exists() {
            let text = std::fs::read_to_string(file).map_err(|error| in_file(error.to_string()))?;
            (
                Zeroizing::new(text.trim().to_owned()),
                format!("master_key_file {}", file.display()),
            )
        } else {
            let mut key = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(key.as_mut());
            let encoded = Zeroizing::new(STANDARD.encode(key.as_ref()));
            write_private_file(file, encoded.as_bytes())
                .map_err(|error| in_file(error.to_string()))?;
            tracing::warn!(
                file = %file.display(),
                "generated a new master key; set VELLUM_MASTER_KEY from a secret store in production"
            );
            (encoded, format!("master_key_file {}", file.display()))
        };
        let invalid =
            || SecretsError::MasterKey(format!("{from}: must be 32 random bytes in base64"));
        let bytes = Zeroizing::new(STANDARD.decode(encoded.as_bytes()).map_err(|_| invalid())?);
        let master: [u8; 32] = bytes.as_slice().try_into().map_err(|_| invalid())?;
        Ok(Secrets {
            master: Zeroizing::new(master),
        })
    }

    fn derived(&self, purpose: Purpose) -> Zeroizing<[u8; 32]> {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.master.as_ref()).expect("any key length");
        mac.update(purpose.label());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// A value that identifies the master key without revealing it (hex), stored so that an
    /// instance started with another master key notices.
    pub fn fingerprint(&self) -> String {
        self.mac(Purpose::MasterKeyCheck, &[])
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The P-256 key wallets encrypt credential requests to (OID4VCI 1.0 §10): derived from the
    /// master key, so every instance sharing it has the same one and it survives restarts.
    pub fn request_encryption_key(&self) -> vellum_formats::jwe::DecryptionKey {
        (0u8..=u8::MAX)
            .find_map(|attempt| {
                let bytes = Zeroizing::new(self.mac(Purpose::RequestEncryption, &[&[attempt]]));
                vellum_formats::jwe::DecryptionKey::from_secret_bytes(&bytes).ok()
            })
            .expect("one of 256 derived values is a P-256 scalar")
    }

    /// HMAC-SHA256 under the key for `purpose`.
    pub fn mac(&self, purpose: Purpose, parts: &[&[u8]]) -> [u8; 32] {
        let key = self.derived(purpose);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key.as_ref()).expect("any key length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The `position`-th element of a keyed permutation of `0..size` (`size` >= 1), one per
    /// `domain`: distinct positions give distinct values, in an order that cannot be told
    /// without the master key. A status list hands out its entries this way, one after the
    /// other from a counter, so that indices are unique yet not in issue order (herd privacy).
    ///
    /// A four-round Feistel network keyed by HMAC over the smallest even-bit domain that holds
    /// `size`, walked along its cycle until the value falls inside `0..size`.
    pub fn permute(&self, purpose: Purpose, domain: &[u8], position: u64, size: u64) -> u64 {
        assert!(position < size, "position {position} outside 0..{size}");
        let half = (u64::BITS - (size - 1).leading_zeros()).div_ceil(2).max(1);
        let mask = (1u64 << half) - 1;
        let key = self.derived(purpose);
        let round = |value: u64, round: u8| {
            let mut mac =
                <HmacSha256 as Mac>::new_from_slice(key.as_ref()).expect("any key length");
            mac.update(&(domain.len() as u64).to_be_bytes());
            mac.update(domain);
            mac.update(&[round]);
            mac.update(&value.to_be_bytes());
            let digest = mac.finalize().into_bytes();
            u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) & mask
        };
        let mut value = position;
        loop {
            let (mut left, mut right) = (value >> half, value & mask);
            for index in 0..4 {
                (left, right) = (right, left ^ round(right, index));
            }
            value = (left << half) | right;
            if value < size {
                return value;
            }
        }
    }

    /// AES-256-GCM with a random nonce; `context` (e.g. the key id) is bound as associated data.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let key = self.derived(Purpose::KeySealing);
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).expect("32-byte key");
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let mut sealed = nonce.to_vec();
        sealed.extend(
            cipher
                .encrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: plaintext,
                        aad: context,
                    },
                )
                .expect("in-memory encryption"),
        );
        sealed
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        if sealed.len() < 12 {
            return Err(SecretsError::Unseal);
        }
        let key = self.derived(Purpose::KeySealing);
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).expect("32-byte key");
        let (nonce, ciphertext) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SecretsError::Unseal)?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Unseal)
    }
}

/// `whsec_` + base64 of 24-64 random bytes (Standard Webhooks).
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let key = webhook_signing_key(text)?;
        if !(24..=64).contains(&key.len()) {
            return Err("a webhook secret must hold 24 to 64 bytes".into());
        }
        Ok(WebhookSecret(text.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for WebhookSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        WebhookSecret::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The HMAC key of a `whsec_` secret.
pub fn webhook_signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or("a webhook secret starts with whsec_")?;
    STANDARD
        .decode(encoded)
        .map_err(|_| "a webhook secret is whsec_ followed by base64".to_owned())
}

/// SHA-256, hex: how bearer secrets (codes, tokens, handles) are stored and looked up.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A fresh 256-bit random value, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    vellum_formats::jose::b64(bytes)
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_permutation_hands_out_every_index_once_and_not_in_order() {
        let secrets = Secrets::load(&STANDARD.encode([7u8; 32]), Path::new("unused")).expect("key");
        for size in [1u64, 2, 3, 7, 100, 1000, 4096, 5000] {
            let values: Vec<u64> = (0..size)
                .map(|position| secrets.permute(Purpose::StatusIndex, b"list-1", position, size))
                .collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..size).collect::<Vec<_>>(),
                "size {size}: a permutation"
            );
            if size >= 100 {
                let ascending = values.windows(2).filter(|pair| pair[0] < pair[1]).count();
                let share = ascending as f64 / (size - 1) as f64;
                assert!(
                    (0.35..0.65).contains(&share),
                    "size {size}: {share} ascending steps"
                );
            }
        }
        let other = |list: &[u8]| secrets.permute(Purpose::StatusIndex, list, 0, 100_000);
        let firsts: std::collections::BTreeSet<u64> =
            (0..20u8).map(|list| other(&[list])).collect();
        assert!(firsts.len() > 15, "each list has its own order: {firsts:?}");
    }

    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_context() {
        let secrets = Secrets::load(&STANDARD.encode([7u8; 32]), Path::new("unused")).expect("key");
        let sealed = secrets.seal(b"private", b"key-1");
        assert_eq!(
            secrets.open(&sealed, b"key-1").expect("opens").as_slice(),
            b"private"
        );
        assert!(secrets.open(&sealed, b"key-2").is_err());
        let other = Secrets::load(&STANDARD.encode([8u8; 32]), Path::new("unused")).expect("key");
        assert!(other.open(&sealed, b"key-1").is_err());
    }

    #[test]
    fn a_master_key_of_the_wrong_size_is_refused() {
        assert!(Secrets::load(&STANDARD.encode([7u8; 16]), Path::new("unused")).is_err());
        assert!(Secrets::load("not base64!", Path::new("unused")).is_err());
    }
}
