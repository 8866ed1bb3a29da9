//! QR codes of credential offers, drawn by Vellum itself: an SVG for the console and the holder's
//! screen, and block characters for a terminal. Error correction M (15% of the symbol may be
//! lost), raised to the highest level that still fits the same symbol size; a quiet zone of four
//! modules, as ISO/IEC 18004 asks.

use std::fmt::Write;

use qrcodegen::{QrCode, QrCodeEcc};

/// Modules of light margin around the symbol.
const QUIET_ZONE: i32 = 4;

/// The text does not fit in the largest QR code (version 40), about 2,300 bytes of a URI.
#[derive(Debug, thiserror::Error)]
#[error("the text is too long for a QR code ({0} bytes)")]
pub struct TooLong(pub usize);

fn encode(text: &str) -> Result<QrCode, TooLong> {
    QrCode::encode_text(text, QrCodeEcc::Medium).map_err(|_| TooLong(text.len()))
}

/// An SVG image of `text`'s QR code, `title` its accessible name: one path of dark modules on
/// a white square, scaled by the viewer (crisp at any size).
pub fn svg(text: &str, title: &str) -> Result<String, TooLong> {
    let code = encode(text)?;
    let side = code.size() + 2 * QUIET_ZONE;
    let mut path = String::new();
    for y in 0..code.size() {
        for x in 0..code.size() {
            if code.get_module(x, y) {
                let _ = write!(path, "M{},{}h1v1h-1z", x + QUIET_ZONE, y + QUIET_ZONE);
            }
        }
    }
    Ok(format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" "#,
            r#"shape-rendering="crispEdges" role="img" aria-label="{title}">"#,
            r##"<title>{title}</title><rect width="{side}" height="{side}" fill="#fff"/>"##,
            r##"<path d="{path}" fill="#000"/></svg>"##
        ),
        side = side,
        title = escape_xml(title),
        path = path
    ))
}

/// `text`'s QR code in block characters, two modules per character cell (upper and lower half),
/// dark on light whatever the terminal's colours: light modules are drawn, dark ones left as
/// spaces, on a light background the codes give.
pub fn terminal(text: &str) -> Result<String, TooLong> {
    let code = encode(text)?;
    let light = |x: i32, y: i32| !code.get_module(x, y);
    let span = -QUIET_ZONE..code.size() + QUIET_ZONE;
    let mut out = String::new();
    let mut y = span.start;
    while y < span.end {
        for x in span.clone() {
            // Outside the symbol (the quiet zone), get_module answers false: light.
            out.push(match (light(x, y), y + 1 < span.end && light(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    Ok(out)
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_uri_becomes_an_svg_and_terminal_blocks() {
        let uri = "openid-credential-offer://?credential_offer_uri=https%3A%2F%2Fissuer.example%2Fcredential-offer%2F0b6f1c2e";
        let image = svg(uri, "Offer <1>").expect("fits");
        assert!(image.starts_with("<svg "), "{image}");
        assert!(image.contains("aria-label=\"Offer &lt;1&gt;\""), "{image}");
        let blocks = terminal(uri).expect("fits");
        let lines: Vec<&str> = blocks.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|line| line.chars().count() == width));
        // The quiet zone: the first row of cells is all light.
        assert!(lines[0].chars().all(|cell| cell == '█'));
    }

    #[test]
    fn a_text_too_long_is_refused() {
        let long = "x".repeat(4_000);
        assert_eq!(svg(&long, "t").unwrap_err().0, 4_000);
        assert!(terminal(&long).is_err());
    }
}
