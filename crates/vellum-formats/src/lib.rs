//! Pure credential formats for Vellum: JOSE, SD-JWT VC, W3C VC as JWT, ISO 18013-5 mdoc, the
//! identities behind them (DIDs, X.509 certificates), and the status lists that revoke them.
//!
//! Nothing here performs I/O or knows about HTTP, databases or clocks: callers pass time,
//! claims and keys in, and get bytes out. That keeps every format testable on its own.

pub mod did;
pub mod jose;
pub mod jwe;
pub mod jwt_vc;
pub mod mdoc;
pub mod sdjwt;
pub mod status_list;
pub mod x509;
