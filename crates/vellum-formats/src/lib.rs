//! Pure credential formats for Vellum: JOSE primitives and the SD-JWT VC encoder.
//!
//! Nothing here performs I/O or knows about HTTP, databases or clocks: callers pass time,
//! claims and keys in, and get bytes out. That keeps every format testable on its own.

pub mod did;
pub mod jose;
pub mod jwt_vc;
pub mod mdoc;
pub mod sdjwt;
pub mod x509;
