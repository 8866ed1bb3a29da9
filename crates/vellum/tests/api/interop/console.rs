//! The operator console in a real browser: Debian's chromium, driven through npm playwright-core
//! by interop/console.mjs, signs in, makes an offer that the oid4vc-ts wallet redeems, watches
//! the session succeed live, redelivers an event from the page and signs out. The webhook
//! receiver is this test's, so what the page shows is checked against what was delivered.
//! Screenshots of every page are left in target/console-screenshots.

use std::path::Path;

use serde_json::json;
use tokio::process::Command;

use crate::support::API_KEY;
use crate::support::interop::{interop_dir, require_installed, run_within, stdout_json};
use crate::support::webhooks::{Receiver, types, webhook_app};

const SEED_EVENTS: [&str; 5] = [
    "credential_offer_created",
    "resolved_credential_offer",
    "requested_token",
    "sdjwt_issue",
    "issuance_status_changed",
];

#[tokio::test]
async fn an_operator_runs_an_issuance_from_the_console_in_a_real_browser() {
    let receiver = Receiver::start(Vec::new()).await;
    let app = webhook_app(json!({})).await;
    let dir = interop_dir();
    require_installed(
        &dir.join("node_modules/playwright-core"),
        "playwright-core (npm)",
    );
    let chromium = require_installed(Path::new("/usr/bin/chromium"), "chromium (Debian)");
    let screenshots =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    let mut command = Command::new("node");
    command
        .arg(dir.join("console.mjs"))
        .env("VELLUM_URL", &app.url)
        .env("VELLUM_API_KEY", API_KEY)
        .env("VELLUM_WEBHOOK_URL", &receiver.url)
        .env("VELLUM_SCREENSHOTS", &screenshots)
        .env("CHROMIUM", chromium);
    let output = run_within(
        command,
        None,
        "the console in chromium",
        std::time::Duration::from_secs(240),
    )
    .await;
    let seen = stdout_json(&output, "the console in chromium");

    // The page never held the key or the cookie; the cookie is HttpOnly and SameSite=Strict.
    assert_eq!(
        seen["cookie"],
        json!({"httpOnly": true, "sameSite": "Strict"})
    );
    assert_eq!(seen["scriptSeesCookie"], false);
    assert_eq!(seen["keyInStorage"], false);
    assert_eq!(seen["problems"], json!([]), "the page logged errors");

    // The offer page showed a QR code, the deep link and the six-digit tx code; the holder
    // screen showed the code without the console around it.
    assert_eq!(seen["offer"]["uri"], true);
    assert_eq!(seen["offer"]["txCodeDigits"], true);
    assert!(seen["offer"]["qrWidth"].as_u64().expect("width") > 0);
    assert_eq!(seen["holderNav"], false);

    // The wallet's issuance turned the row SUCCESSFUL without a reload.
    assert_eq!(seen["walletVerified"], true);
    assert_eq!(seen["statusBefore"], "ACTIVE");
    assert_eq!(seen["statusAfter"], "SUCCESSFUL");
    assert_eq!(seen["withoutReload"], true);
    let session = seen["sessionId"].as_str().expect("session id");
    assert_eq!(app.session(session).await["status"], "SUCCESSFUL");

    // The timeline showed the seed's events, each delivered once to this receiver, as it was.
    let timeline = seen["timeline"].as_array().expect("timeline");
    let shown: Vec<&str> = timeline
        .iter()
        .map(|event| event["type"].as_str().expect("type"))
        .collect();
    assert_eq!(shown, SEED_EVENTS);
    for event in timeline {
        assert_eq!(
            event["deliveries"],
            json!([{"status": "DELIVERED", "url": receiver.url, "attempts": 1}]),
            "{event}"
        );
    }

    // Redelivered from the page: the receiver got the issuance event a second time, with the
    // same webhook-id, and the page showed the second attempt.
    assert_eq!(seen["redelivered"]["attempts"], 2);
    let received = receiver.wait_for(SEED_EVENTS.len() + 1).await;
    let mut delivered = types(&received);
    delivered.sort();
    let mut expected: Vec<String> = SEED_EVENTS.iter().map(|t| (*t).to_owned()).collect();
    expected.push("sdjwt_issue".to_owned());
    expected.sort();
    assert_eq!(delivered, expected);
    let issuance: Vec<&str> = received
        .iter()
        .filter(|r| r.body["type"] == "sdjwt_issue")
        .map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(issuance.len(), 2);
    assert_eq!(issuance[0], issuance[1]);
    let redelivered = seen["redelivered"]["eventId"].as_str().expect("event id");
    let listed = timeline
        .iter()
        .find(|event| event["type"] == "sdjwt_issue")
        .expect("issuance event");
    assert_eq!(listed["id"], redelivered);

    // The overview counted the session and its five deliveries (a redelivery is another
    // attempt of the same delivery).
    assert_eq!(seen["overview"], json!({"successful": 1, "delivered": 5}));

    // The profile editor showed the API's error at the member it names.
    let error = &seen["profileError"];
    assert!(
        error["text"]
            .as_str()
            .expect("text")
            .starts_with("invalid_profile: mapping.jti"),
        "{error}"
    );
    assert!(
        error["member"]
            .as_str()
            .expect("member")
            .starts_with("At mapping.jti"),
        "{error}"
    );
    assert_eq!(
        error["selected"].as_str().map(str::trim),
        Some("\"jti\": \"<no-such-function>\"")
    );
    assert!(seen["keys"].as_u64().expect("keys") >= 1);

    // After signing out, neither the page nor a replay of the old cookie reads anything.
    assert_eq!(seen["afterSignOut"], 401);
    assert_eq!(seen["oldCookie"], 401);
    for page in [
        "sign-in",
        "offer-form",
        "offer",
        "holder",
        "sessions",
        "session",
        "overview",
        "profile",
        "keys",
        "sessions-phone",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        let bytes =
            std::fs::read(&shot).unwrap_or_else(|error| panic!("{}: {error}", shot.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{}", shot.display());
    }
}
