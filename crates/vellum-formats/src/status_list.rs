//! Status lists: one small number per issued credential, packed into a byte array that is
//! compressed and published, so that a verifier learns whether a credential is still valid
//! without telling the issuer which one it checks.
//!
//! Two encodings of the same idea, which differ in bit order and compression:
//! - the IETF Token Status List (draft-ietf-oauth-status-list): 1, 2, 4 or 8 bits per entry, the
//!   first entry in the least significant bits of the first byte, zlib (RFC 1950) compressed; the
//!   JWT form carries it base64url in `status_list.lst`, the CWT form as a byte string;
//! - the W3C Bitstring Status List v1.0: one bit per entry and purpose, the first entry in the
//!   most significant bit of the first byte, GZIP (RFC 1952) compressed, multibase base64url
//!   (`u` prefix) in `encodedList`; at least 131,072 entries (16 KiB), for herd privacy.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};

use crate::jose;

/// The statuses of the IETF Token Status List (the values every verifier knows).
pub const VALID: u8 = 0;
pub const INVALID: u8 = 1;
pub const SUSPENDED: u8 = 2;

/// The smallest W3C Bitstring Status List, in entries (§6.1: 16 KiB uncompressed).
pub const BITSTRING_MIN_ENTRIES: usize = 131_072;

/// The largest compressed or decompressed list this module reads: 16 MiB, far beyond any list
/// an issuer publishes, so that a hostile list cannot exhaust memory.
const MAX_LIST_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusListError {
    #[error("bits must be 1, 2, 4 or 8")]
    Bits,
    #[error("index {0} is outside the list")]
    Index(usize),
    #[error("status {0} does not fit in the list's bits")]
    Value(u8),
    #[error("the list is not validly compressed or encoded: {0}")]
    Encoding(&'static str),
}

/// Which way entries are packed into each byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOrder {
    /// The first entry in the least significant bits (IETF Token Status List).
    LeastSignificantFirst,
    /// The first entry in the most significant bit (W3C Bitstring Status List).
    MostSignificantFirst,
}

/// A status list in memory: `len` entries of `bits` bits each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    order: BitOrder,
    bytes: Vec<u8>,
}

impl StatusList {
    /// A list of `len` entries of `bits` bits, all 0 (valid), rounded up to whole bytes.
    pub fn new(bits: u8, order: BitOrder, len: usize) -> Result<Self, StatusListError> {
        check_bits(bits)?;
        let bytes = vec![0; (len * usize::from(bits)).div_ceil(8)];
        Ok(StatusList { bits, order, bytes })
    }

    /// An IETF Token Status List of `len` entries.
    pub fn token(bits: u8, len: usize) -> Result<Self, StatusListError> {
        Self::new(bits, BitOrder::LeastSignificantFirst, len)
    }

    /// A W3C Bitstring Status List of `len` entries (at least [`BITSTRING_MIN_ENTRIES`]).
    pub fn bitstring(len: usize) -> Self {
        StatusList {
            bits: 1,
            order: BitOrder::MostSignificantFirst,
            bytes: vec![0; len.max(BITSTRING_MIN_ENTRIES).div_ceil(8)],
        }
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// How many entries the list holds.
    pub fn len(&self) -> usize {
        self.bytes.len() * 8 / usize::from(self.bits)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The packed bytes, uncompressed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where entry `index` sits: its byte and the shift of its lowest bit within it.
    fn position(&self, index: usize) -> Result<(usize, u32), StatusListError> {
        if index >= self.len() {
            return Err(StatusListError::Index(index));
        }
        let per_byte = 8 / usize::from(self.bits);
        let slot = index % per_byte;
        let shift = match self.order {
            BitOrder::LeastSignificantFirst => slot * usize::from(self.bits),
            BitOrder::MostSignificantFirst => 8 - (slot + 1) * usize::from(self.bits),
        };
        Ok((index / per_byte, shift as u32))
    }

    fn mask(&self) -> u8 {
        u8::MAX >> (8 - self.bits)
    }

    pub fn get(&self, index: usize) -> Result<u8, StatusListError> {
        let (byte, shift) = self.position(index)?;
        Ok((self.bytes[byte] >> shift) & self.mask())
    }

    pub fn set(&mut self, index: usize, status: u8) -> Result<(), StatusListError> {
        if status > self.mask() {
            return Err(StatusListError::Value(status));
        }
        let (byte, shift) = self.position(index)?;
        let mask = self.mask() << shift;
        self.bytes[byte] = (self.bytes[byte] & !mask) | (status << shift);
        Ok(())
    }

    /// The IETF list's bytes, zlib compressed (the CWT `lst`).
    pub fn to_zlib(&self) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(&self.bytes);
        encoder.finish().unwrap_or_default()
    }

    /// The IETF list's `lst` for a JWT: zlib compressed, base64url.
    pub fn to_lst(&self) -> String {
        jose::b64(self.to_zlib())
    }

    /// An IETF list from its zlib-compressed bytes.
    pub fn from_zlib(bits: u8, compressed: &[u8]) -> Result<Self, StatusListError> {
        check_bits(bits)?;
        let bytes = inflate(ZlibDecoder::new(compressed))?;
        Ok(StatusList {
            bits,
            order: BitOrder::LeastSignificantFirst,
            bytes,
        })
    }

    /// An IETF list from a JWT's `lst`.
    pub fn from_lst(bits: u8, lst: &str) -> Result<Self, StatusListError> {
        let compressed =
            jose::b64_decode(lst).map_err(|_| StatusListError::Encoding("lst is not base64url"))?;
        Self::from_zlib(bits, &compressed)
    }

    /// The W3C `encodedList`: GZIP compressed, multibase base64url (`u` prefix).
    pub fn to_encoded_list(&self) -> String {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        let _ = encoder.write_all(&self.bytes);
        format!("u{}", jose::b64(encoder.finish().unwrap_or_default()))
    }

    /// A W3C list from its `encodedList`.
    pub fn from_encoded_list(encoded: &str) -> Result<Self, StatusListError> {
        let compressed = encoded
            .strip_prefix('u')
            .and_then(|text| jose::b64_decode(text).ok())
            .ok_or(StatusListError::Encoding(
                "encodedList is not multibase base64url (u...)",
            ))?;
        let bytes = inflate(GzDecoder::new(compressed.as_slice()))?;
        Ok(StatusList {
            bits: 1,
            order: BitOrder::MostSignificantFirst,
            bytes,
        })
    }
}

fn check_bits(bits: u8) -> Result<(), StatusListError> {
    if matches!(bits, 1 | 2 | 4 | 8) {
        Ok(())
    } else {
        Err(StatusListError::Bits)
    }
}

/// Everything a decoder yields, up to [`MAX_LIST_BYTES`].
fn inflate(decoder: impl Read) -> Result<Vec<u8>, StatusListError> {
    let mut bytes = Vec::new();
    decoder
        .take(MAX_LIST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| StatusListError::Encoding("the compressed data is corrupt"))?;
    if bytes.len() as u64 > MAX_LIST_BYTES {
        return Err(StatusListError::Encoding("the list is too large"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of draft-ietf-oauth-status-list §4.1: one bit per entry, two bytes 0xB9 0xA3.
    const SPEC_LST: &str = "eNrbuRgAAhcBXQ";
    const SPEC_STATUSES: [u8; 16] = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];

    #[test]
    fn the_specifications_one_bit_example_reads_and_is_written_alike() {
        let list = StatusList::from_lst(1, SPEC_LST).expect("the example decodes");
        assert_eq!(list.as_bytes(), [0xB9, 0xA3]);
        for (index, status) in SPEC_STATUSES.iter().enumerate() {
            assert_eq!(list.get(index), Ok(*status), "entry {index}");
        }
        let mut written = StatusList::token(1, 16).expect("list");
        for (index, status) in SPEC_STATUSES.iter().enumerate() {
            written.set(index, *status).expect("set");
        }
        assert_eq!(written.as_bytes(), [0xB9, 0xA3]);
        assert_eq!(
            written.to_lst(),
            SPEC_LST,
            "zlib at best compression, as the example"
        );
        assert_eq!(
            StatusList::from_lst(1, &written.to_lst()).expect("round trip"),
            written
        );
    }

    #[test]
    fn two_bit_entries_are_packed_least_significant_first_and_keep_their_neighbours() {
        let mut list = StatusList::token(2, 12).expect("list");
        let statuses = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        for (index, status) in statuses.iter().enumerate() {
            list.set(index, *status).expect("set");
        }
        // Entry 0 in bits 0-1 of byte 0, entry 3 in bits 6-7.
        assert_eq!(list.as_bytes(), [0b1100_1001, 0b0100_0100, 0b1111_1001]);
        list.set(1, VALID).expect("set");
        assert_eq!(
            (list.get(0), list.get(1), list.get(2)),
            (Ok(1), Ok(0), Ok(0))
        );
        assert_eq!(list.set(0, 4), Err(StatusListError::Value(4)));
        assert_eq!(list.get(12), Err(StatusListError::Index(12)));
        assert_eq!(StatusList::token(3, 8), Err(StatusListError::Bits));
    }

    #[test]
    fn a_bitstring_list_is_most_significant_first_gzip_and_at_least_16_kib() {
        let mut list = StatusList::bitstring(10);
        assert_eq!(list.len(), BITSTRING_MIN_ENTRIES);
        list.set(0, 1).expect("set");
        list.set(9, 1).expect("set");
        assert_eq!(&list.as_bytes()[..2], [0b1000_0000, 0b0100_0000]);
        let encoded = list.to_encoded_list();
        assert!(
            encoded.starts_with("uH4sI"),
            "multibase u, then the GZIP magic: {encoded}"
        );
        assert_eq!(StatusList::from_encoded_list(&encoded), Ok(list));
        assert!(StatusList::from_encoded_list("zabc").is_err());
        assert!(StatusList::from_lst(1, "bm90LXpsaWI").is_err());
    }
}
