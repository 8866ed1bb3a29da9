//! The store conformance suite: one function per behaviour, each taking `&dyn Store`, run
//! against SQLite (a fresh file per test) and against PostgreSQL (a fresh database per test,
//! dropped afterwards) on the server `VELLUM_TEST_DATABASE_URL` names, by default the local one
//! at 127.0.0.1:5432. Without a reachable server the PostgreSQL tests fail; they never skip.

use std::time::Duration;

use crate::support::database::TestDatabase;
use serde_json::json;
use vellum::clock::Millis;
use vellum::config::Synchronous;
use vellum::ids::{KeyId, ProfileId, SessionId};
use vellum::store::postgres::PostgresStore;
use vellum::store::sqlite::SqliteStore;
use vellum::store::{
    Applied, AttemptOutcome, AttemptRecord, AuthorizationCompletion, AuthorizationRequestRecord,
    ConsoleSessionRecord, Deferral, DeferredLookup, DeferredOutcome, DeferredState, DeliveryCount,
    DeliveryStatus, EventLog, FinishedAttempt, GrantKind, GrantState, Issuance, IssuanceCommit,
    IssuedCredentialRecord, KeyRecord, NewAccessToken, NewEvent, NewGrant, NotificationReceipt,
    ProfileRecord, Purged, RequestLookup, RequestStatus, SeedBatch, SessionCount, SessionFilter,
    SessionLookup, SessionRecord, SessionStatus, Spent, StatusEntry, StatusListKind, Store,
    StoreError, TxCodeFailure, WalletNotification, WebhookTarget,
};

/// Generates, for every behaviour, one test per backend: `store::sqlite::<behaviour>` and
/// `store::postgres::<behaviour>`.
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let store = super::SqliteStore::open(
                        &dir.path().join("vellum.db"),
                        super::Synchronous::Normal,
                    )
                    .await
                    .expect("open SQLite");
                    super::$behaviour(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    if !crate::support::database::postgres_or_skip().await {
                        return;
                    }
                    let database = crate::support::database::TestDatabase::create().await;
                    let store = super::PostgresStore::open(&database.url, Default::default())
                        .await
                        .expect("open PostgreSQL");
                    super::$behaviour(&store).await;
                }
            )*
        }
    };
}

conformance!(
    settings_are_initialised_once,
    a_call_whose_write_fails_applies_nothing,
    keys_are_inserted_once_and_published_when_used,
    profiles_are_created_once_versioned_and_deactivated,
    sessions_are_stored_with_their_webhook_and_found_by_hash,
    sessions_are_filtered_and_paged_newest_first,
    a_tx_code_failure_applies_only_to_the_count_it_saw,
    a_code_is_redeemed_once,
    ten_concurrent_redemptions_apply_exactly_once,
    a_token_is_bound_to_its_key_and_a_proof_is_used_once,
    an_authorization_request_goes_from_pushed_to_a_code_once,
    issuance_completes_once_and_a_nonce_is_used_once,
    issued_credentials_are_recorded_and_outlive_their_session_until_they_expire,
    a_deferred_transaction_is_made_once_resolved_once_and_fetched_once,
    a_wallet_notification_is_recorded_once_for_its_session,
    status_entries_are_handed_out_once_and_full_lists_roll_over,
    sessions_expire_once_when_due,
    purge_removes_finished_sessions_with_everything_they_own,
    retention_removes_in_bounded_batches,
    seeding_copies_a_finished_session_with_what_it_owns,
    events_are_listed_in_order_after_a_sequence,
    deliveries_are_written_per_event_the_webhook_wants,
    a_claim_respects_the_per_url_limit_and_leases,
    concurrent_claims_never_exceed_the_per_url_limit,
    attempts_are_recorded_with_their_consequence,
    gone_stops_every_pending_delivery_to_the_url,
    redeliver_reschedules_failed_and_gone_deliveries,
    watch_events_advances_after_a_commit_with_events,
    console_sign_ins_end_at_their_expiry_or_when_closed,
    the_overview_counts_sessions_and_deliveries_since_a_moment,
);

// ----- records ------------------------------------------------------------------------------

const HOOK: &str = "https://hooks.example/a";
const OTHER_HOOK: &str = "https://hooks.example/b";

fn key(id: &str, created_at: Millis) -> KeyRecord {
    KeyRecord {
        id: KeyId::parse(id).expect("key id"),
        algorithm: "ES256".into(),
        public_jwk: json!({"kty": "EC", "crv": "P-256", "kid": id}),
        sealed_private: vec![1, 2, 3, 0, 255],
        created_at,
    }
}

fn profile(id: &str, key: &str, created_at: Millis) -> ProfileRecord {
    ProfileRecord {
        id: ProfileId::parse(id).expect("profile id"),
        version: 1,
        active: true,
        definition: json!({"name": id, "claims": {"a": [1, 2]}}),
        issuer_key_id: KeyId::parse(key).expect("key id"),
        created_at,
        updated_at: created_at,
    }
}

fn webhook(url: &str, events: Option<&[&str]>) -> WebhookTarget {
    WebhookTarget {
        url: url.into(),
        bearer_token: Some("bearer".into()),
        secret: Some("whsec_c2VjcmV0".into()),
        events: events.map(|events| events.iter().map(|event| (*event).to_owned()).collect()),
    }
}

fn session(created_at: Millis, webhook: Option<WebhookTarget>) -> SessionRecord {
    let id = SessionId::generate();
    SessionRecord {
        id,
        profile_id: ProfileId::parse("pid").expect("profile id"),
        profile_version: 1,
        credential_configuration_id: "config".into(),
        status: SessionStatus::Active,
        status_reason: None,
        offer_handle_hash: format!("handle-{id}"),
        by_value: false,
        template: json!({"claims": {"given_name": "Ada"}}).to_string(),
        webhook,
        issuer_key_id: KeyId::parse("kid").expect("key id"),
        created_at,
        updated_at: created_at,
        expires_at: created_at + 1_000,
        resolved_at: None,
        token_issued_at: None,
        finished_at: None,
        offer_grant: None,
    }
}

/// The pre-authorized grant a session is created with.
fn grant(session: &SessionRecord) -> NewGrant {
    NewGrant {
        kind: GrantKind::PreAuthorizedCode,
        secret_hash: format!("code-{}", session.id),
        tx_code: Some(json!({"length": 4, "input_mode": "numeric"})),
        tx_code_mac: Some(format!("mac-{}", session.id)),
        expires_at: None,
        request_id: None,
        dpop_jkt: None,
    }
}

fn event(session: Option<SessionId>, event_type: &str, timestamp: Millis) -> NewEvent {
    NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        session_id: session,
        event_type: event_type.into(),
        timestamp,
        data: json!({"type": event_type, "at": timestamp}),
    }
}

async fn create(store: &dyn Store, session: &SessionRecord) {
    store
        .create_session(
            session,
            Some(&grant(session)),
            &event(
                Some(session.id),
                "credential_offer_created",
                session.created_at,
            ),
        )
        .await
        .expect("create session");
}

async fn reload(store: &dyn Store, id: SessionId) -> SessionRecord {
    store
        .session(id)
        .await
        .expect("read session")
        .expect("session exists")
}

/// The session's pre-authorized grant, as stored.
async fn stored_grant(store: &dyn Store, id: SessionId) -> vellum::store::GrantRecord {
    reload(store, id).await.offer_grant.expect("a grant")
}

fn token_hash(session: SessionId) -> String {
    format!("token-{session}")
}

async fn redeem(store: &dyn Store, session: &SessionRecord, now: Millis) -> Applied {
    redeem_bound(store, session, None, now).await
}

/// Redeems the session's grant for a token bound to `dpop_jkt` (`None`: a Bearer token).
async fn redeem_bound(
    store: &dyn Store,
    session: &SessionRecord,
    dpop_jkt: Option<&str>,
    now: Millis,
) -> Applied {
    let grant = stored_grant(store, session.id).await.id;
    let token = NewAccessToken {
        hash: token_hash(session.id),
        expires_at: now + 500,
        dpop_jkt: dpop_jkt.map(str::to_owned),
        refresh: None,
    };
    store
        .redeem_grant(
            session.id,
            grant,
            &token,
            now,
            &[event(Some(session.id), "token_issued", now)],
        )
        .await
        .expect("redeem")
}

/// What a session issues in a test: one credential, valid until `expires_at`.
fn credential(session: SessionId, issued_at: Millis, expires_at: Millis) -> IssuedCredentialRecord {
    IssuedCredentialRecord {
        id: uuid::Uuid::new_v4().to_string(),
        session_id: session,
        credential_configuration_id: "config".into(),
        format: "dc+sd-jwt".into(),
        holder: "holder-thumbprint".into(),
        issued_at,
        expires_at,
        status: Some(json!({"status_list": {"idx": 7, "uri": "https://i/statuslists/1"}})),
        status_entry: None,
        status_value: 0,
        notification_id: None,
    }
}

/// Completes issuance with the session's access token and one credential.
async fn complete(
    store: &dyn Store,
    id: SessionId,
    nonce: &str,
    nonce_expires_at: Millis,
    now: Millis,
) -> IssuanceCommit {
    store
        .complete_issuance(&Issuance {
            session: id,
            token_hash: token_hash(id),
            spends: Spent::Nonce {
                hash: nonce.to_owned(),
                expires_at: nonce_expires_at,
            },
            credentials: vec![credential(id, now, now + 10_000)],
            finish: true,
            now,
            events: vec![event(Some(id), "credential_issued", now)],
        })
        .await
        .expect("complete")
}

fn ok_attempt(at: Millis, status: u16) -> AttemptRecord {
    AttemptRecord {
        started_at: at,
        duration_ms: 12,
        status_code: Some(status),
        error: None,
        response: Some("ok".into()),
    }
}

// ----- behaviours ---------------------------------------------------------------------------

/// A statement that fails in the middle of a call (here the grant's, after the session's)
/// undoes the call's earlier writes and writes none of its events, and every pooled connection
/// is usable after it.
async fn a_call_whose_write_fails_applies_nothing(store: &dyn Store) {
    let first = session(10, None);
    create(store, &first).await;
    let second = session(20, None);
    let refused = store
        .create_session(
            &second,
            Some(&grant(&first)),
            &event(Some(second.id), "credential_offer_created", 20),
        )
        .await;
    assert!(refused.is_err(), "a code already taken: {refused:?}");
    let stored = store.session(second.id).await.expect("read the session");
    assert!(stored.is_none(), "the session insert is undone: {stored:?}");
    let events = store.events(Some(second.id), 0, 10).await.expect("events");
    assert!(events.is_empty(), "no event: {events:?}");
    for index in 0..20 {
        let next = session(30 + index, None);
        create(store, &next).await;
        assert_eq!(reload(store, next.id).await.id, next.id);
    }
    let events = store.events(None, 0, 100).await.expect("events");
    assert_eq!(events.len(), 21, "the first session's event and 20 more");
}

async fn settings_are_initialised_once(store: &dyn Store) {
    assert_eq!(store.setting("api_key").await.expect("setting"), None);
    let first = store.init_setting("api_key", "one").await.expect("init");
    let second = store.init_setting("api_key", "two").await.expect("init");
    assert_eq!((first.as_str(), second.as_str()), ("one", "one"));
    assert_eq!(
        store.setting("api_key").await.expect("setting").as_deref(),
        Some("one")
    );
    store.ping().await.expect("ping");
}

async fn keys_are_inserted_once_and_published_when_used(store: &dyn Store) {
    store.insert_key(&key("kid", 2)).await.expect("insert");
    store.insert_key(&key("other", 1)).await.expect("insert");
    let again = store.insert_key(&key("kid", 3)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    let stored = store
        .key(&KeyId::parse("kid").expect("id"))
        .await
        .expect("key")
        .expect("present");
    assert_eq!(stored.public_jwk, key("kid", 2).public_jwk);
    assert_eq!(stored.sealed_private, vec![1, 2, 3, 0, 255]);
    assert_eq!(stored.created_at, 2);
    let missing = store.key(&KeyId::parse("nope").expect("id")).await;
    assert!(missing.expect("key").is_none());
    let ids = |keys: Vec<KeyRecord>| {
        keys.into_iter()
            .map(|k| k.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.keys().await.expect("keys").logged("key")),
        ["other", "kid"]
    );
    assert!(
        store
            .published_keys()
            .await
            .expect("keys")
            .logged("key")
            .is_empty()
    );

    store
        .create_profile(&profile("pid", "other", 5))
        .await
        .expect("profile");
    assert_eq!(
        ids(store.published_keys().await.expect("keys").logged("key")),
        ["other"]
    );
    create(store, &session(10, None)).await;
    assert_eq!(
        ids(store.published_keys().await.expect("keys").logged("key")),
        ["other", "kid"]
    );
}

async fn profiles_are_created_once_versioned_and_deactivated(store: &dyn Store) {
    for id in ["kid", "next"] {
        store.insert_key(&key(id, 1)).await.expect("key");
    }
    let id = ProfileId::parse("pid").expect("id");
    store
        .create_profile(&profile("pid", "kid", 10))
        .await
        .expect("create");
    store
        .create_profile(&profile("second", "kid", 11))
        .await
        .expect("create");
    let again = store.create_profile(&profile("pid", "kid", 12)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    let definition = json!({"name": "v2"});
    let next = KeyId::parse("next").expect("id");
    let updated = store
        .update_profile(&id, &definition, &next, 20)
        .await
        .expect("update")
        .expect("active profile");
    assert_eq!(
        (
            updated.version,
            updated.active,
            updated.created_at,
            updated.updated_at
        ),
        (2, true, 10, 20)
    );
    assert_eq!(updated.definition, definition);
    assert_eq!(updated.issuer_key_id, next);

    let latest = store
        .profile(&id, None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!((latest.version, latest.definition), (2, definition.clone()));
    let first = store
        .profile(&id, Some(1))
        .await
        .expect("read")
        .expect("found");
    assert_eq!((first.version, first.updated_at), (1, 10));
    assert_eq!(first.definition, profile("pid", "kid", 10).definition);
    assert!(store.profile(&id, Some(3)).await.expect("read").is_none());
    let listed: Vec<(String, i64)> = store
        .profiles()
        .await
        .expect("list")
        .logged("profile")
        .into_iter()
        .map(|p| (p.id.to_string(), p.version))
        .collect();
    assert_eq!(listed, [("pid".to_owned(), 2), ("second".to_owned(), 1)]);
    let published = store.published_keys().await.expect("keys").logged("key");
    assert_eq!(published.len(), 2);

    assert!(store.deactivate_profile(&id, 30).await.expect("deactivate"));
    assert!(store.deactivate_profile(&id, 40).await.expect("again"));
    let inactive = store
        .profile(&id, None)
        .await
        .expect("read")
        .expect("found");
    assert_eq!((inactive.active, inactive.updated_at), (false, 30));
    assert!(
        store
            .update_profile(&id, &definition, &next, 50)
            .await
            .expect("update")
            .is_none()
    );
    let unknown = ProfileId::parse("unknown").expect("id");
    assert!(
        !store
            .deactivate_profile(&unknown, 30)
            .await
            .expect("deactivate")
    );
    assert!(
        store
            .update_profile(&unknown, &definition, &next, 50)
            .await
            .expect("update")
            .is_none()
    );
}

async fn sessions_are_stored_with_their_webhook_and_found_by_hash(store: &dyn Store) {
    let with_hook = session(
        10,
        Some(webhook(HOOK, Some(&["credential_issued", "token_issued"]))),
    );
    let without = session(11, None);
    create(store, &with_hook).await;
    create(store, &without).await;

    let stored = reload(store, with_hook.id).await;
    assert_eq!(stored.webhook, with_hook.webhook);
    let stored_grant = stored.offer_grant.clone().expect("its grant");
    assert_eq!(stored_grant.tx_code, grant(&with_hook).tx_code);
    assert_eq!(stored_grant.tx_code_mac, grant(&with_hook).tx_code_mac);
    assert_eq!(
        (
            stored_grant.kind,
            stored_grant.tx_code_failures,
            stored_grant.created_at
        ),
        (GrantKind::PreAuthorizedCode, 0, 10)
    );
    assert_eq!(stored.template, with_hook.template);
    assert_eq!(
        (stored.status, stored_grant.state, stored.expires_at),
        (SessionStatus::Active, GrantState::Unused, 1_010)
    );
    assert_eq!(reload(store, without.id).await.webhook, None);
    assert!(
        store
            .session(SessionId::generate())
            .await
            .expect("read")
            .is_none()
    );

    let by = |lookup| async move {
        store
            .session_by(lookup)
            .await
            .expect("lookup")
            .map(|s| s.id)
    };
    let handle = with_hook.offer_handle_hash.clone();
    let code = grant(&with_hook).secret_hash;
    assert_eq!(
        by(SessionLookup::OfferHandle(&handle)).await,
        Some(with_hook.id)
    );
    assert_eq!(by(SessionLookup::Grant(&code)).await, Some(with_hook.id));
    let token = token_hash(with_hook.id);
    let by_token = |token: String| async move {
        store
            .token_session(&token)
            .await
            .expect("lookup")
            .map(|(token, session)| (token.session_id, session.id))
    };
    assert_eq!(by_token(token.clone()).await, None);
    assert_eq!(redeem(store, &with_hook, 20).await, Applied::Yes);
    assert_eq!(by_token(token).await, Some((with_hook.id, with_hook.id)));
    assert_eq!(by(SessionLookup::OfferHandle("nope")).await, None);
    assert_eq!(by(SessionLookup::Grant("nope")).await, None);

    store
        .record_offer_resolved(
            with_hook.id,
            30,
            &[event(Some(with_hook.id), "credential_offer_resolved", 30)],
        )
        .await
        .expect("resolved");
    store
        .record_offer_resolved(with_hook.id, 40, &[])
        .await
        .expect("resolved again");
    let resolved = reload(store, with_hook.id).await;
    assert_eq!((resolved.resolved_at, resolved.updated_at), (Some(30), 40));
}

async fn sessions_are_filtered_and_paged_newest_first(store: &dyn Store) {
    let mut all = Vec::new();
    for (index, created_at) in [10, 20, 20, 30, 40].into_iter().enumerate() {
        let mut s = session(created_at, None);
        if index % 2 == 1 {
            s.profile_id = ProfileId::parse("odd").expect("id");
        }
        create(store, &s).await;
        all.push(s);
    }
    // Newest first; equal times by id, descending.
    let mut expected: Vec<(Millis, String)> = all
        .iter()
        .map(|s| (s.created_at, s.id.to_string()))
        .collect();
    expected.sort();
    expected.reverse();

    let page = |filter: SessionFilter| async move {
        store
            .sessions(&filter)
            .await
            .expect("list")
            .logged("session")
            .into_iter()
            .map(|s| (s.created_at, s.id.to_string()))
            .collect::<Vec<_>>()
    };
    let first = page(SessionFilter {
        limit: 2,
        ..SessionFilter::default()
    })
    .await;
    assert_eq!(first, expected[..2]);
    let last = first.last().expect("a page");
    let second = page(SessionFilter {
        limit: 10,
        before: Some((last.0, SessionId::parse(&last.1).expect("id"))),
        ..SessionFilter::default()
    })
    .await;
    assert_eq!(second, expected[2..]);

    let odd = page(SessionFilter {
        limit: 10,
        profile_id: Some(ProfileId::parse("odd").expect("id")),
        ..SessionFilter::default()
    })
    .await;
    assert_eq!(odd.len(), 2);

    let expired = all[0].id;
    assert!(
        store
            .expire_session(expired, 2_000, &[event(Some(expired), "expired", 2_000)])
            .await
            .expect("expire")
    );
    let by_status = |status| {
        page(SessionFilter {
            limit: 10,
            status: Some(status),
            ..SessionFilter::default()
        })
    };
    assert_eq!(
        by_status(SessionStatus::Expired).await,
        [(10, expired.to_string())]
    );
    assert_eq!(by_status(SessionStatus::Active).await.len(), 4);
    assert!(by_status(SessionStatus::Successful).await.is_empty());
}

async fn a_tx_code_failure_applies_only_to_the_count_it_saw(store: &dyn Store) {
    let s = session(10, None);
    create(store, &s).await;
    let failure = |seen_failures, locks| TxCodeFailure {
        seen_failures,
        locks,
    };
    let grant = stored_grant(store, s.id).await.id;
    let fail = |failure: TxCodeFailure, now| async move {
        store
            .record_tx_code_failure(
                s.id,
                grant,
                &failure,
                now,
                &[event(Some(s.id), "token_request_failed", now)],
            )
            .await
            .expect("record failure")
    };
    assert_eq!(fail(failure(0, false), 20).await, Applied::Yes);
    assert_eq!(fail(failure(0, false), 21).await, Applied::Stale);
    let counted = reload(store, s.id).await;
    assert_eq!(
        (
            counted.offer_grant.expect("grant").tx_code_failures,
            counted.status,
            counted.updated_at
        ),
        (1, SessionStatus::Active, 20)
    );
    assert_eq!(fail(failure(1, true), 30).await, Applied::Yes);
    let locked = reload(store, s.id).await;
    let locked_grant = locked.offer_grant.clone().expect("grant");
    assert_eq!(locked_grant.tx_code_failures, 2);
    assert_eq!(locked_grant.state, GrantState::Locked);
    assert_eq!(locked.status, SessionStatus::Unsuccessful);
    assert_eq!(
        locked.status_reason.as_deref(),
        Some("tx_code_attempts_exhausted")
    );
    assert_eq!(locked.finished_at, Some(30));
    assert_eq!(fail(failure(2, false), 40).await, Applied::Stale);
    assert_eq!(redeem(store, &s, 50).await, Applied::Stale);
    // Only applied changes wrote their events.
    let events = store.events(Some(s.id), 0, 100).await.expect("events");
    assert_eq!(events.len(), 3);
}

async fn a_code_is_redeemed_once(store: &dyn Store) {
    let s = session(10, None);
    create(store, &s).await;
    assert_eq!(redeem(store, &s, 900).await, Applied::Yes);
    let redeemed = reload(store, s.id).await;
    let redeemed_grant = redeemed.offer_grant.clone().expect("grant");
    assert_eq!(
        (redeemed_grant.state, redeemed_grant.redeemed_at),
        (GrantState::Redeemed, Some(900))
    );
    let (token, _) = store
        .token_session(&token_hash(s.id))
        .await
        .expect("lookup")
        .expect("the token");
    assert_eq!(token.grant_id, redeemed_grant.id);
    assert_eq!(token.dpop_jkt, None, "a Bearer token");
    assert_eq!(
        (
            token.expires_at,
            redeemed.token_issued_at,
            redeemed.expires_at
        ),
        (1_400, Some(900), 1_400),
        "the session lives at least as long as its token"
    );
    assert_eq!(redeem(store, &s, 901).await, Applied::Stale);

    let late = session(10, None);
    create(store, &late).await;
    assert_eq!(
        redeem(store, &late, 1_010).await,
        Applied::Stale,
        "an expired offer is not redeemed"
    );
    let events = store.events(Some(s.id), 0, 100).await.expect("events");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["credential_offer_created", "token_issued"]);
}

async fn a_token_is_bound_to_its_key_and_a_proof_is_used_once(store: &dyn Store) {
    let s = session(10, None);
    create(store, &s).await;
    assert_eq!(
        redeem_bound(store, &s, Some("thumbprint"), 5).await,
        Applied::Yes
    );
    let (token, _) = store
        .token_session(&token_hash(s.id))
        .await
        .expect("lookup")
        .expect("the token");
    assert_eq!(token.dpop_jkt.as_deref(), Some("thumbprint"));

    assert_eq!(
        store.record_use("jti-a", 100).await.expect("use"),
        Applied::Yes
    );
    assert_eq!(
        store.record_use("jti-b", 200).await.expect("use"),
        Applied::Yes
    );
    assert_eq!(
        store.record_use("jti-a", 100).await.expect("use"),
        Applied::Stale,
        "a replay"
    );
    let uses = (0..8).map(|_| store.record_use("jti-c", 100));
    let outcomes = futures_util::future::join_all(uses).await;
    let applied = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(Applied::Yes)))
        .count();
    assert_eq!(applied, 1, "concurrent uses: {outcomes:?}");
    // Once a use can no longer be replayed (its proof is refused as too old), it is forgotten.
    store.purge(0, 150, 1_000).await.expect("purge");
    assert_eq!(
        store.record_use("jti-a", 300).await.expect("use"),
        Applied::Yes
    );
    assert_eq!(
        store.record_use("jti-b", 300).await.expect("use"),
        Applied::Stale
    );
}

fn authorization_request(
    id: &str,
    session: Option<SessionId>,
    now: Millis,
) -> AuthorizationRequestRecord {
    AuthorizationRequestRecord {
        id: id.into(),
        request_uri_hash: Some(format!("uri-{id}")),
        state_hash: None,
        session_id: session,
        profile_id: ProfileId::parse("pid").expect("profile id"),
        client_id: "wallet".into(),
        parameters: json!({"redirect_uri": "https://wallet.example/cb", "code_challenge": "c"}),
        status: RequestStatus::Pushed,
        created_at: now,
        expires_at: now + 60,
    }
}

async fn an_authorization_request_goes_from_pushed_to_a_code_once(store: &dyn Store) {
    let s = session(10, None);
    store
        .create_session(&s, None, &event(Some(s.id), "credential_offer_created", 10))
        .await
        .expect("create session");
    let pushed = authorization_request("req-1", Some(s.id), 20);
    store
        .create_authorization_request(&pushed, &[event(Some(s.id), "pushed", 20)])
        .await
        .expect("create request");
    let found = store
        .authorization_request(RequestLookup::RequestUri("uri-req-1"))
        .await
        .expect("lookup")
        .expect("the request");
    assert_eq!(found, pushed);

    // Used once, and only before it expires.
    assert_eq!(
        store
            .start_login("req-1", "state-1", 500, 80)
            .await
            .expect("start"),
        Applied::Stale,
        "expired"
    );
    assert_eq!(
        store
            .start_login("req-1", "state-1", 500, 30)
            .await
            .expect("start"),
        Applied::Yes
    );
    assert_eq!(
        store
            .start_login("req-1", "state-2", 500, 31)
            .await
            .expect("start"),
        Applied::Stale,
        "used"
    );
    let at_provider = store
        .authorization_request(RequestLookup::State("state-1"))
        .await
        .expect("lookup")
        .expect("the request");
    assert_eq!(
        (
            at_provider.status,
            at_provider.expires_at,
            at_provider.state_hash.as_deref()
        ),
        (RequestStatus::AtProvider, 500, Some("state-1"))
    );

    let completion = AuthorizationCompletion {
        request_id: "req-1".into(),
        session: s.id,
        template: json!({"claims": {"given_name": "Erika"}}).to_string(),
        grant: NewGrant {
            kind: GrantKind::AuthorizationCode,
            secret_hash: "code-hash".into(),
            tx_code: None,
            tx_code_mac: None,
            expires_at: Some(100),
            request_id: Some("req-1".into()),
            dpop_jkt: None,
        },
        now: 40,
        events: vec![event(Some(s.id), "authorized", 40)],
    };
    assert_eq!(
        store
            .complete_authorization(&completion)
            .await
            .expect("complete"),
        Applied::Yes
    );
    assert_eq!(
        store
            .complete_authorization(&completion)
            .await
            .expect("complete"),
        Applied::Stale,
        "completed once"
    );
    assert_eq!(
        store.fail_authorization("req-1", &[]).await.expect("fail"),
        Applied::Stale
    );
    assert_eq!(reload(store, s.id).await.template, completion.template);
    let (code, request, session) = store
        .request_grant(GrantKind::AuthorizationCode, "code-hash")
        .await
        .expect("lookup")
        .expect("the code");
    assert_eq!(
        (
            code.kind,
            code.state,
            code.expires_at,
            code.request_id.as_deref()
        ),
        (
            GrantKind::AuthorizationCode,
            GrantState::Unused,
            Some(100),
            Some("req-1")
        )
    );
    assert_eq!(
        (request.status, request.session_id, request.expires_at),
        (RequestStatus::Completed, Some(s.id), 100)
    );
    assert_eq!(session.id, s.id);
    assert!(
        store
            .request_grant(GrantKind::AuthorizationCode, "code-hash-x")
            .await
            .expect("lookup")
            .is_none()
    );

    // Redeemed with a refresh token, which is redeemed (rotated) in turn; then all of the
    // authorization revoked as a code used twice.
    let refresh = |hash: &str, expires_at| NewGrant {
        kind: GrantKind::RefreshToken,
        secret_hash: hash.into(),
        tx_code: None,
        tx_code_mac: None,
        expires_at: Some(expires_at),
        request_id: Some("req-1".into()),
        dpop_jkt: Some("jkt-1".into()),
    };
    let token = NewAccessToken {
        hash: "code-token".into(),
        expires_at: 900,
        dpop_jkt: Some("jkt-1".into()),
        refresh: Some(refresh("refresh-1", 800)),
    };
    assert_eq!(
        store
            .redeem_grant(s.id, code.id, &token, 50, &[])
            .await
            .expect("redeem"),
        Applied::Yes
    );
    let (first, request, _) = store
        .request_grant(GrantKind::RefreshToken, "refresh-1")
        .await
        .expect("lookup")
        .expect("the refresh token");
    assert_eq!(
        (
            first.state,
            first.expires_at,
            first.dpop_jkt.as_deref(),
            request.id.as_str()
        ),
        (GrantState::Unused, Some(800), Some("jkt-1"), "req-1")
    );
    assert!(
        store
            .request_grant(GrantKind::AuthorizationCode, "refresh-1")
            .await
            .expect("lookup")
            .is_none(),
        "looked up by kind"
    );
    let refreshed = NewAccessToken {
        hash: "refreshed-token".into(),
        expires_at: 950,
        dpop_jkt: Some("jkt-1".into()),
        refresh: Some(refresh("refresh-2", 800)),
    };
    assert_eq!(
        store
            .redeem_grant(s.id, first.id, &refreshed, 800, &[])
            .await
            .expect("redeem"),
        Applied::Stale,
        "expired"
    );
    assert_eq!(
        store
            .redeem_grant(s.id, first.id, &refreshed, 60, &[])
            .await
            .expect("redeem"),
        Applied::Yes
    );
    let (token, _) = store
        .token_session("refreshed-token")
        .await
        .expect("lookup")
        .expect("the refreshed token");
    assert_eq!(token.grant_kind, GrantKind::RefreshToken);
    assert_eq!(
        store
            .redeem_grant(s.id, first.id, &refreshed, 61, &[])
            .await
            .expect("redeem"),
        Applied::Stale,
        "used once"
    );
    let revoked = store
        .revoke_request("req-1", &[event(Some(s.id), "revoked", 62)])
        .await
        .expect("revoke");
    assert_eq!(revoked, 2);
    for hash in ["code-token", "refreshed-token"] {
        assert!(
            store.token_session(hash).await.expect("lookup").is_none(),
            "{hash} revoked"
        );
    }
    let (second, _, _) = store
        .request_grant(GrantKind::RefreshToken, "refresh-2")
        .await
        .expect("lookup")
        .expect("the second refresh token");
    assert_eq!(second.state, GrantState::Locked, "unusable once revoked");

    // A request that fails, and one left to expire: purged once they cannot be used.
    store
        .create_authorization_request(&authorization_request("req-2", None, 20), &[])
        .await
        .expect("create request");
    assert_eq!(
        store
            .fail_authorization("req-2", &[event(None, "failed", 21)])
            .await
            .expect("fail"),
        Applied::Yes
    );
    assert_eq!(
        store.fail_authorization("req-2", &[]).await.expect("fail"),
        Applied::Stale
    );
    store.purge(0, 101, 1_000).await.expect("purge");
    for lookup in [
        RequestLookup::RequestUri("uri-req-1"),
        RequestLookup::RequestUri("uri-req-2"),
    ] {
        assert!(
            store
                .authorization_request(lookup)
                .await
                .expect("lookup")
                .is_none()
        );
    }
}

async fn ten_concurrent_redemptions_apply_exactly_once(store: &dyn Store) {
    let s = session(10, None);
    create(store, &s).await;
    let attempts = (0..10).map(|index| redeem(store, &s, 100 + index));
    let outcomes = futures_util::future::join_all(attempts).await;
    let applied = outcomes.iter().filter(|o| **o == Applied::Yes).count();
    assert_eq!(applied, 1, "{outcomes:?}");
    let events = store.events(Some(s.id), 0, 100).await.expect("events");
    assert_eq!(events.len(), 2, "one token_issued event");
}

async fn issuance_completes_once_and_a_nonce_is_used_once(store: &dyn Store) {
    let complete = |id: SessionId, nonce: &'static str, now: Millis| async move {
        complete(store, id, nonce, now + 300, now).await
    };
    let s = session(10, None);
    create(store, &s).await;
    assert_eq!(
        complete(s.id, "n1", 20).await,
        IssuanceCommit::SessionNotActive,
        "no token yet"
    );
    assert_eq!(redeem(store, &s, 30).await, Applied::Yes);
    assert_eq!(complete(s.id, "n1", 40).await, IssuanceCommit::Issued);
    let done = reload(store, s.id).await;
    assert_eq!(
        (done.status, done.finished_at),
        (SessionStatus::Successful, Some(40))
    );
    assert_eq!(
        complete(s.id, "n2", 50).await,
        IssuanceCommit::SessionNotActive
    );

    let other = session(10, None);
    create(store, &other).await;
    assert_eq!(redeem(store, &other, 30).await, Applied::Yes);
    assert_eq!(
        complete(other.id, "n1", 60).await,
        IssuanceCommit::AlreadySpent
    );
    assert_eq!(reload(store, other.id).await.status, SessionStatus::Active);
    assert_eq!(
        complete(other.id, "n3", 530).await,
        IssuanceCommit::SessionNotActive,
        "the token has expired"
    );
    let events = store.events(Some(other.id), 0, 100).await.expect("events");
    assert_eq!(events.len(), 2, "no event for a commit that did not happen");
}

async fn issued_credentials_are_recorded_and_outlive_their_session_until_they_expire(
    store: &dyn Store,
) {
    let s = session(10, None);
    create(store, &s).await;
    assert_eq!(redeem(store, &s, 20).await, Applied::Yes);
    let issue = |nonce: &str, now: Millis, finish: bool| {
        let issuance = Issuance {
            session: s.id,
            token_hash: token_hash(s.id),
            spends: Spent::Nonce {
                hash: nonce.to_owned(),
                expires_at: 400,
            },
            credentials: vec![credential(s.id, now, 5_000)],
            finish,
            now,
            events: vec![event(Some(s.id), "credential_issued", now)],
        };
        async move { store.complete_issuance(&issuance).await.expect("complete") }
    };
    // A credential that does not finish the session leaves it ACTIVE for the next one.
    assert_eq!(issue("n1", 30, false).await, IssuanceCommit::Issued);
    assert_eq!(reload(store, s.id).await.status, SessionStatus::Active);
    assert_eq!(issue("n2", 40, true).await, IssuanceCommit::Issued);
    let finished = reload(store, s.id).await;
    assert_eq!(
        (finished.status, finished.finished_at),
        (SessionStatus::Successful, Some(40))
    );
    let issued = store.issued_credentials(s.id).await.expect("records");
    assert_eq!(issued.len(), 2);
    assert_eq!(
        issued
            .iter()
            .map(|record| record.issued_at)
            .collect::<Vec<_>>(),
        [30, 40]
    );
    assert_eq!(issued[0].status, credential(s.id, 0, 0).status);
    assert_eq!(
        (
            issued[1].format.as_str(),
            issued[1].holder.as_str(),
            issued[1].expires_at
        ),
        ("dc+sd-jwt", "holder-thumbprint", 5_000)
    );
    // The session is purged; the records stay while the credentials are valid.
    assert_eq!(
        store.purge(100, 100, 1_000).await.expect("purge").sessions,
        1
    );
    assert!(store.session(s.id).await.expect("read").is_none());
    assert_eq!(
        store.issued_credentials(s.id).await.expect("records").len(),
        2
    );
    store.purge(5_001, 5_001, 1_000).await.expect("purge");
    assert!(
        store
            .issued_credentials(s.id)
            .await
            .expect("records")
            .is_empty()
    );
}

async fn status_entries_are_handed_out_once_and_full_lists_roll_over(store: &dyn Store) {
    let signer = json!({"keyId": "k1", "iss": "https://issuer.example"});
    // Forty callers at once over lists of sixteen entries: three lists, no entry twice.
    let allocations = futures_util::future::join_all(
        (0..40).map(|_| store.allocate_status_entry(StatusListKind::Token, &signer, 2, 16, 10)),
    )
    .await;
    let mut taken: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for allocation in allocations {
        let allocation = allocation.expect("allocate");
        assert_eq!((allocation.list.bits, allocation.list.size), (2, 16));
        taken
            .entry(allocation.list.id)
            .or_default()
            .push(allocation.position);
    }
    let mut counts: Vec<usize> = taken.values().map(Vec::len).collect();
    counts.sort_unstable();
    assert_eq!(counts, [8, 16, 16], "{taken:?}");
    for (list, positions) in &mut taken {
        positions.sort_unstable();
        let expected: Vec<i64> = (0..positions.len() as i64).collect();
        assert_eq!(*positions, expected, "list {list}: each position once");
        let record = store.status_list(list).await.expect("read").expect("list");
        assert_eq!(record.allocated, positions.len() as i64);
        assert_eq!(record.kind, StatusListKind::Token);
    }
    // Another kind, signer or shape has lists of its own.
    let other_signer = json!({"keyId": "k2", "iss": "https://issuer.example"});
    let other = store
        .allocate_status_entry(StatusListKind::Token, &other_signer, 2, 16, 11)
        .await
        .expect("allocate");
    assert_eq!((other.position, other.list.signer), (0, other_signer));
    let bitstring = store
        .allocate_status_entry(StatusListKind::Bitstring, &signer, 1, 16, 11)
        .await
        .expect("allocate");
    assert!(!taken.contains_key(&bitstring.list.id));
    assert_eq!(bitstring.position, 0);

    // What a list publishes comes from the credentials holding its entries.
    let s = session(10, None);
    create(store, &s).await;
    assert_eq!(redeem(store, &s, 20).await, Applied::Yes);
    let list = bitstring.list.id.clone();
    let entry = |index: i64, value: u8| {
        let mut record = credential(s.id, 30, 5_000);
        record.status_entry = Some(StatusEntry {
            list_id: list.clone(),
            index,
        });
        record.status_value = value;
        record
    };
    let issuance = Issuance {
        session: s.id,
        token_hash: token_hash(s.id),
        spends: Spent::Nonce {
            hash: "status-nonce".into(),
            expires_at: 400,
        },
        credentials: vec![entry(9, 0), entry(3, 2), entry(12, 1)],
        finish: true,
        now: 30,
        events: vec![],
    };
    assert_eq!(
        store.complete_issuance(&issuance).await.expect("complete"),
        IssuanceCommit::Issued
    );
    assert_eq!(
        store.status_entries(&list).await.expect("entries"),
        [(3, 2), (12, 1)]
    );
    let issued = store.issued_credentials(s.id).await.expect("records");
    assert!(issued.iter().any(|record| record.status_entry
        == Some(StatusEntry {
            list_id: list.clone(),
            index: 12
        })
        && record.status_value == 1));
    assert!(
        store
            .status_list("no-such-list")
            .await
            .expect("read")
            .is_none()
    );
}

async fn sessions_expire_once_when_due(store: &dyn Store) {
    let due = session(10, None);
    let later = session(500, None);
    create(store, &due).await;
    create(store, &later).await;
    let ids = store.sessions_due_for_expiry(1_010, 10).await.expect("due");
    assert_eq!(ids, [due.id]);
    let expire = |id: SessionId, now: Millis| async move {
        store
            .expire_session(id, now, &[event(Some(id), "credential_offer_expired", now)])
            .await
            .expect("expire")
    };
    assert!(!expire(later.id, 1_010).await, "not due yet");
    assert!(expire(due.id, 1_010).await);
    assert!(!expire(due.id, 1_020).await, "already expired");
    let expired = reload(store, due.id).await;
    assert_eq!(expired.status, SessionStatus::Expired);
    assert_eq!(expired.status_reason.as_deref(), Some("expired"));
    assert_eq!(expired.finished_at, Some(1_010));
    assert!(
        store
            .sessions_due_for_expiry(1_010, 10)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(
        store
            .events(Some(due.id), 0, 10)
            .await
            .expect("events")
            .len(),
        2
    );
}

async fn purge_removes_finished_sessions_with_everything_they_own(store: &dyn Store) {
    let old = session(10, Some(webhook(HOOK, None)));
    let recent = session(10, Some(webhook(HOOK, None)));
    let active = session(10, Some(webhook(HOOK, None)));
    for s in [&old, &recent, &active] {
        create(store, s).await;
        assert_eq!(redeem(store, s, 20).await, Applied::Yes);
    }
    let complete =
        |id, nonce: &'static str, now| async move { complete(store, id, nonce, 100, now).await };
    assert_eq!(complete(old.id, "nonce", 30).await, IssuanceCommit::Issued);
    assert_eq!(
        complete(recent.id, "fresh", 60).await,
        IssuanceCommit::Issued
    );
    let due = store
        .claim_deliveries(70, 1_000, 100, 100)
        .await
        .expect("claim");
    let ours = due
        .iter()
        .find(|d| d.event.session_id == Some(old.id))
        .expect("a delivery");
    store
        .record_attempt(ours.id, &ok_attempt(70, 200), AttemptOutcome::Delivered, 71)
        .await
        .expect("record");

    let removed = store.purge(50, 150, 1_000).await.expect("purge");
    assert_eq!(removed.sessions, 1);
    assert!(store.session(old.id).await.expect("read").is_none());
    assert!(
        store
            .events(Some(old.id), 0, 10)
            .await
            .expect("events")
            .is_empty()
    );
    assert!(
        store
            .session_deliveries(old.id)
            .await
            .expect("deliveries")
            .is_empty()
    );
    assert!(store.session(recent.id).await.expect("read").is_some());
    assert_eq!(
        store
            .events(Some(recent.id), 0, 10)
            .await
            .expect("events")
            .len(),
        3
    );
    assert!(store.session(active.id).await.expect("read").is_some());
    // The expired nonce is gone, so it no longer counts as used.
    assert_eq!(
        complete(active.id, "nonce", 90).await,
        IssuanceCommit::Issued
    );
}

/// A batch ends after the millisecond in which its last session finished, so that sessions that
/// finished together go together; each part of the batch says when it was full.
async fn retention_removes_in_bounded_batches(store: &dyn Store) {
    let mut ids = Vec::new();
    for (n, finished) in [30, 31, 31, 32, 33].into_iter().enumerate() {
        let s = session(10, None);
        create(store, &s).await;
        assert_eq!(redeem(store, &s, 20).await, Applied::Yes);
        let nonce = format!("nonce-{n}");
        let nonce_expires_at = 100 + i64::try_from(n).expect("small");
        assert_eq!(
            complete(store, s.id, &nonce, nonce_expires_at, finished).await,
            IssuanceCommit::Issued
        );
        ids.push(s.id);
    }
    let purge = |finished_before, now| async move {
        store.purge(finished_before, now, 2).await.expect("purge")
    };
    let purged = |sessions, more| Purged { sessions, more };
    assert_eq!(purge(40, 50).await, purged(3, true));
    for (n, id) in ids.iter().enumerate() {
        let kept = store.session(*id).await.expect("read").is_some();
        assert_eq!(kept, n >= 3, "session {n}");
    }
    assert_eq!(purge(40, 50).await, purged(2, true));
    assert_eq!(purge(40, 50).await, purged(0, false));
    // Nonces that expired before now (100 and 101), two at most per batch.
    assert_eq!(purge(40, 102).await, purged(0, true));
    assert_eq!(purge(40, 102).await, purged(0, false));
    // Records of credentials kept after their sessions, until they expire (at 10,030 to 10,033).
    assert_eq!(purge(20_000, 102).await, purged(0, true));
    assert_eq!(purge(20_000, 102).await, purged(0, true));
    assert_eq!(purge(20_000, 102).await, purged(0, false));
    for id in ids {
        assert!(
            store
                .issued_credentials(id)
                .await
                .expect("credentials")
                .is_empty()
        );
    }
}

/// Seeding (`vellum bench seed`) writes copies that read back as the template does: each its own
/// session, grant, credential with a status entry of its own on full lists, and events naming
/// it; spread over the past, numbered across batches, and removed by retention like any other.
async fn seeding_copies_a_finished_session_with_what_it_owns(store: &dyn Store) {
    let signer = json!({"keyId": "k1", "iss": "https://issuer.example"});
    let allocation = store
        .allocate_status_entry(StatusListKind::Token, &signer, 2, 4, 10)
        .await
        .expect("allocate");
    let template = session(10, None);
    create(store, &template).await;
    assert_eq!(redeem(store, &template, 20).await, Applied::Yes);
    let list = allocation.list.id.clone();
    let mut issued = credential(template.id, 30, 10_030);
    issued.status =
        Some(json!({"status_list": {"idx": 3, "uri": format!("https://i/status-lists/{list}")}}));
    issued.status_entry = Some(StatusEntry {
        list_id: list.clone(),
        index: 3,
    });
    let commit = store
        .complete_issuance(&Issuance {
            session: template.id,
            token_hash: token_hash(template.id),
            spends: Spent::Nonce {
                hash: "nonce".into(),
                expires_at: 100,
            },
            credentials: vec![issued],
            finish: true,
            now: 30,
            events: vec![NewEvent {
                data: json!({"sessionId": template.id}),
                ..event(Some(template.id), "credential_issued", 30)
            }],
        })
        .await
        .expect("complete");
    assert_eq!(commit, IssuanceCommit::Issued);

    let batch = |first, count| SeedBatch {
        run: 0xabc,
        first,
        count,
        step_ms: 100,
        events_per_session: 4,
    };
    assert_eq!(
        store.seed(template.id, &batch(0, 4)).await.expect("seed"),
        16
    );
    assert_eq!(
        store.seed(template.id, &batch(4, 2)).await.expect("seed"),
        8
    );
    assert_eq!(
        store.seed(template.id, &batch(6, 0)).await.expect("seed"),
        0,
        "an empty batch writes nothing"
    );

    let filter = SessionFilter {
        status: Some(SessionStatus::Successful),
        profile_id: None,
        before: None,
        limit: 100,
    };
    let listed: Vec<SessionRecord> = store
        .sessions(&filter)
        .await
        .expect("list")
        .rows
        .into_iter()
        .map(|row| row.expect("readable"))
        .collect();
    assert_eq!(listed.len(), 7);
    assert_eq!(listed[0].id, template.id, "the copies are older");
    let mut finished = Vec::new();
    let mut entries = std::collections::BTreeSet::new();
    for copy in &listed[1..] {
        let copied_finish = copy.finished_at.expect("finished");
        finished.push(copied_finish);
        assert_eq!(copy.created_at - 10, copied_finish - 30, "moved as a whole");
        assert_eq!(copy.profile_id, template.profile_id);
        assert_eq!(
            stored_grant(store, copy.id).await.state,
            GrantState::Redeemed
        );
        let types: Vec<String> = store
            .events(Some(copy.id), 0, 10)
            .await
            .expect("events")
            .into_iter()
            .map(|event| {
                if event.event_type == "credential_issued" {
                    assert_eq!(event.data["sessionId"], json!(copy.id), "names the copy");
                }
                event.event_type
            })
            .collect();
        assert_eq!(
            types,
            [
                "credential_offer_created",
                "token_issued",
                "credential_issued",
                "credential_offer_created"
            ]
        );
        let credentials = store
            .issued_credentials(copy.id)
            .await
            .expect("credentials");
        assert_eq!(credentials.len(), 1);
        let entry = credentials[0].status_entry.clone().expect("an entry");
        assert_ne!(entry.list_id, list);
        let reference = &credentials[0].status.as_ref().expect("a reference")["status_list"];
        assert_eq!(reference["idx"], json!(entry.index));
        assert!(
            reference["uri"]
                .as_str()
                .expect("uri")
                .ends_with(&entry.list_id)
        );
        let seeded_list = store
            .status_list(&entry.list_id)
            .await
            .expect("read")
            .expect("the list");
        assert_eq!(
            seeded_list.allocated, seeded_list.size,
            "full: nothing else takes an entry"
        );
        assert!(
            entries.insert((entry.list_id, entry.index)),
            "each entry once"
        );
    }
    finished.sort_unstable();
    assert_eq!(finished, [-570, -470, -370, -270, -170, -70]);
    // Copies 3, 4 and 5 finished more than 350 ms before the template.
    let purged = store.purge(-320, 0, 1_000).await.expect("purge");
    assert_eq!(purged.sessions, 3);
}

async fn events_are_listed_in_order_after_a_sequence(store: &dyn Store) {
    let a = session(10, None);
    let b = session(11, None);
    create(store, &a).await;
    create(store, &b).await;
    store
        .append_events(&[
            event(Some(a.id), "one", 20),
            event(None, "issuer_wide", 21),
            event(Some(b.id), "two", 22),
            event(Some(a.id), "three", 23),
        ])
        .await
        .expect("append");
    let all = store.events(None, 0, 100).await.expect("events");
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "credential_offer_created",
            "credential_offer_created",
            "one",
            "issuer_wide",
            "two",
            "three"
        ]
    );
    assert!(all.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(all[3].session_id, None);
    assert_eq!(all[3].data, json!({"type": "issuer_wide", "at": 21}));

    let page = store.events(None, all[1].seq, 2).await.expect("events");
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [all[2].seq, all[3].seq]
    );
    let of_a = store
        .events(Some(a.id), all[0].seq, 10)
        .await
        .expect("events");
    let types: Vec<&str> = of_a.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["one", "three"]);
    assert!(
        store
            .events(None, all[5].seq, 10)
            .await
            .expect("events")
            .is_empty()
    );
}

async fn deliveries_are_written_per_event_the_webhook_wants(store: &dyn Store) {
    let all = session(10, Some(webhook(HOOK, None)));
    let picky = session(10, Some(webhook(OTHER_HOOK, Some(&["credential_issued"]))));
    let silent = session(10, None);
    for s in [&all, &picky, &silent] {
        create(store, s).await;
        store
            .append_events(&[
                event(Some(s.id), "token_issued", 20),
                event(Some(s.id), "credential_issued", 30),
            ])
            .await
            .expect("append");
    }
    store
        .append_events(&[event(None, "issuer_wide", 40)])
        .await
        .expect("append");

    let deliveries = store.session_deliveries(all.id).await.expect("deliveries");
    assert_eq!(deliveries.len(), 3);
    let events = store.events(Some(all.id), 0, 10).await.expect("events");
    for (delivery, event) in deliveries.iter().zip(&events) {
        assert_eq!(delivery.event_seq, event.seq);
        assert_eq!(
            (delivery.url.as_str(), delivery.status.as_str()),
            (HOOK, "PENDING")
        );
        assert_eq!(delivery.next_attempt_at, Some(event.timestamp));
        assert!(delivery.attempts.is_empty());
    }
    let picked = store
        .session_deliveries(picky.id)
        .await
        .expect("deliveries");
    assert_eq!(picked.len(), 1);
    let issued = store.events(Some(picky.id), 0, 10).await.expect("events");
    assert_eq!(picked[0].event_seq, issued[2].seq);
    assert!(
        store
            .session_deliveries(silent.id)
            .await
            .expect("deliveries")
            .is_empty()
    );
    let due = store
        .claim_deliveries(100, 1_000, 100, 100)
        .await
        .expect("claim");
    assert_eq!(due.len(), 4);
    assert!(due.windows(2).all(|pair| {
        (pair[0].event.timestamp, pair[0].id) <= (pair[1].event.timestamp, pair[1].id)
    }));
    let first = &due[0];
    assert_eq!((first.attempt, first.retry_step), (1, 0));
    assert_eq!(first.webhook, webhook(HOOK, None));
    assert_eq!(first.event.event_type, "credential_offer_created");
}

async fn a_claim_respects_the_per_url_limit_and_leases(store: &dyn Store) {
    for url in [HOOK, OTHER_HOOK] {
        let s = session(10, Some(webhook(url, None)));
        create(store, &s).await;
        let more: Vec<NewEvent> = (0..9).map(|i| event(Some(s.id), "more", 11 + i)).collect();
        store.append_events(&more).await.expect("events");
    }
    assert!(
        store
            .claim_deliveries(5, 1_000, 100, 4)
            .await
            .expect("claim")
            .is_empty(),
        "nothing is due before its time"
    );
    assert!(
        store
            .claim_deliveries(100, 1_000, 0, 4)
            .await
            .expect("claim")
            .is_empty()
    );
    let per_url = |claimed: &[vellum::store::DueDelivery], url: &str| {
        claimed.iter().filter(|due| due.webhook.url == url).count()
    };
    let first = store
        .claim_deliveries(100, 1_000, 6, 4)
        .await
        .expect("claim");
    assert_eq!(first.len(), 6, "the overall limit");
    assert!(per_url(&first, HOOK) <= 4 && per_url(&first, OTHER_HOOK) <= 4);
    let second = store
        .claim_deliveries(101, 1_000, 100, 4)
        .await
        .expect("claim");
    assert_eq!(per_url(&first, HOOK) + per_url(&second, HOOK), 4);
    assert_eq!(
        per_url(&first, OTHER_HOOK) + per_url(&second, OTHER_HOOK),
        4
    );
    assert!(
        store
            .claim_deliveries(102, 1_000, 100, 4)
            .await
            .expect("claim")
            .is_empty()
    );

    // Finishing one makes room for one more to that URL, in the same write.
    let done = &first[0];
    let next = store
        .record_and_claim(
            vec![FinishedAttempt {
                delivery: done.id,
                record: ok_attempt(103, 200),
                outcome: AttemptOutcome::Delivered,
                at: 104,
            }],
            105,
            1_000,
            100,
            4,
        )
        .await
        .expect("record and claim");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].webhook.url, done.webhook.url);

    // Leases end at their time: everything still pending is due again (and still counted once).
    let again = store
        .claim_deliveries(1_000, 2_000, 100, 4)
        .await
        .expect("claim");
    assert_eq!(per_url(&again, HOOK), 4);
    assert_eq!(per_url(&again, OTHER_HOOK), 4);
    assert!(again.iter().all(|due| due.id != done.id));
}

async fn concurrent_claims_never_exceed_the_per_url_limit(store: &dyn Store) {
    for url in [HOOK, OTHER_HOOK] {
        let s = session(10, Some(webhook(url, None)));
        create(store, &s).await;
        let more: Vec<NewEvent> = (0..19).map(|i| event(Some(s.id), "more", 11 + i)).collect();
        store.append_events(&more).await.expect("events");
    }
    let claims = (0..6).map(|_| store.claim_deliveries(100, 1_000, 100, 3));
    let claimed: Vec<_> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .flat_map(|claim| claim.expect("claim"))
        .collect();
    for url in [HOOK, OTHER_HOOK] {
        let leased = claimed.iter().filter(|due| due.webhook.url == url).count();
        assert_eq!(leased, 3, "{url}");
    }
    let mut ids: Vec<i64> = claimed.iter().map(|due| due.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), claimed.len(), "no delivery leased twice");
}

async fn attempts_are_recorded_with_their_consequence(store: &dyn Store) {
    let s = session(10, Some(webhook(HOOK, None)));
    create(store, &s).await;
    store
        .append_events(&[event(Some(s.id), "two", 11), event(Some(s.id), "three", 12)])
        .await
        .expect("append");
    let due = store
        .claim_deliveries(20, 1_000, 10, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 3);
    let failed = AttemptRecord {
        started_at: 21,
        duration_ms: 5_000,
        status_code: None,
        error: Some("timed out".into()),
        response: None,
    };
    store
        .record_and_claim(
            vec![
                FinishedAttempt {
                    delivery: due[0].id,
                    record: ok_attempt(21, 204),
                    outcome: AttemptOutcome::Delivered,
                    at: 22,
                },
                FinishedAttempt {
                    delivery: due[1].id,
                    record: failed.clone(),
                    outcome: AttemptOutcome::RetryAt(500),
                    at: 23,
                },
                FinishedAttempt {
                    delivery: due[2].id,
                    record: ok_attempt(21, 500),
                    outcome: AttemptOutcome::Failed,
                    at: 24,
                },
            ],
            25,
            1_000,
            10,
            10,
        )
        .await
        .expect("record");
    let deliveries = store.session_deliveries(s.id).await.expect("deliveries");
    let summary: Vec<(&str, Option<Millis>, usize)> = deliveries
        .iter()
        .map(|d| (d.status.as_str(), d.next_attempt_at, d.attempts.len()))
        .collect();
    assert_eq!(
        summary,
        [
            ("DELIVERED", None, 1),
            ("PENDING", Some(500), 1),
            ("FAILED", None, 1)
        ]
    );
    assert_eq!(deliveries[0].attempts[0], ok_attempt(21, 204));
    assert_eq!(deliveries[1].attempts[0], failed);

    assert!(
        store
            .claim_deliveries(499, 1_000, 10, 10)
            .await
            .expect("claim")
            .is_empty(),
        "the retry waits for its time"
    );
    let retry = store
        .claim_deliveries(500, 1_000, 10, 10)
        .await
        .expect("claim");
    assert_eq!(retry.len(), 1);
    assert_eq!(
        (retry[0].id, retry[0].attempt, retry[0].retry_step),
        (due[1].id, 2, 1)
    );
    store
        .record_attempt(
            retry[0].id,
            &ok_attempt(501, 200),
            AttemptOutcome::Delivered,
            502,
        )
        .await
        .expect("record");
    let deliveries = store.session_deliveries(s.id).await.expect("deliveries");
    assert_eq!(deliveries[1].status, DeliveryStatus::Delivered);
    assert_eq!(deliveries[1].attempts.len(), 2);
    assert_eq!(deliveries[1].attempts[1], ok_attempt(501, 200));
}

async fn gone_stops_every_pending_delivery_to_the_url(store: &dyn Store) {
    let first = session(10, Some(webhook(HOOK, None)));
    let second = session(10, Some(webhook(HOOK, None)));
    let elsewhere = session(10, Some(webhook(OTHER_HOOK, None)));
    for s in [&first, &second, &elsewhere] {
        create(store, s).await;
    }
    let due = store
        .claim_deliveries(20, 1_000, 10, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 3);
    let to = |id: SessionId| {
        due.iter()
            .find(|d| d.event.session_id == Some(id))
            .expect("due")
    };
    let retried_in_flight = to(second.id).id;
    store
        .record_attempt(
            to(first.id).id,
            &ok_attempt(21, 410),
            AttemptOutcome::Gone,
            22,
        )
        .await
        .expect("record gone");
    // An attempt to the same URL that was in flight meanwhile does not come back.
    store
        .record_attempt(
            retried_in_flight,
            &ok_attempt(21, 503),
            AttemptOutcome::RetryAt(100),
            23,
        )
        .await
        .expect("record retry");
    for id in [first.id, second.id] {
        let deliveries = store.session_deliveries(id).await.expect("deliveries");
        assert_eq!(deliveries[0].status, DeliveryStatus::Gone, "{id}");
    }
    let other = store
        .session_deliveries(elsewhere.id)
        .await
        .expect("deliveries");
    assert_eq!(other[0].status, DeliveryStatus::Pending);

    // New events for that URL are written as GONE; other URLs are unaffected.
    store
        .append_events(&[
            event(Some(first.id), "later", 30),
            event(Some(elsewhere.id), "later", 30),
        ])
        .await
        .expect("append");
    let deliveries = store
        .session_deliveries(first.id)
        .await
        .expect("deliveries");
    assert_eq!(deliveries[1].status, DeliveryStatus::Gone);
    let claimed = store
        .claim_deliveries(1_000, 2_000, 10, 10)
        .await
        .expect("claim");
    assert!(claimed.iter().all(|due| due.webhook.url == OTHER_HOOK));
    assert_eq!(claimed.len(), 2);
}

async fn redeliver_reschedules_failed_and_gone_deliveries(store: &dyn Store) {
    let s = session(10, Some(webhook(HOOK, None)));
    create(store, &s).await;
    store
        .append_events(&[event(Some(s.id), "two", 11), event(Some(s.id), "three", 12)])
        .await
        .expect("append");
    let due = store
        .claim_deliveries(20, 1_000, 10, 10)
        .await
        .expect("claim");
    let outcomes = [
        AttemptOutcome::Delivered,
        AttemptOutcome::Failed,
        AttemptOutcome::Gone,
    ];
    for (delivery, outcome) in due.iter().zip(outcomes) {
        store
            .record_attempt(delivery.id, &ok_attempt(21, 500), outcome, 22)
            .await
            .expect("record");
    }
    assert_eq!(
        store.redeliver(s.id, None, 30).await.expect("redeliver"),
        2,
        "the FAILED and the GONE one"
    );
    let deliveries = store.session_deliveries(s.id).await.expect("deliveries");
    let statuses: Vec<(&str, Option<Millis>)> = deliveries
        .iter()
        .map(|d| (d.status.as_str(), d.next_attempt_at))
        .collect();
    assert_eq!(
        statuses,
        [
            ("DELIVERED", None),
            ("PENDING", Some(30)),
            ("PENDING", Some(30))
        ]
    );
    // The URL is no longer gone: new events are delivered to it again.
    let later = session(40, Some(webhook(HOOK, None)));
    create(store, &later).await;
    let deliveries = store
        .session_deliveries(later.id)
        .await
        .expect("deliveries");
    assert_eq!(deliveries[0].status, DeliveryStatus::Pending);

    // One event's deliveries, whatever their state, but never one in flight.
    let events = store.events(Some(s.id), 0, 10).await.expect("events");
    assert_eq!(
        store
            .redeliver(s.id, Some(&events[0].id), 50)
            .await
            .expect("redeliver"),
        1
    );
    let deliveries = store.session_deliveries(s.id).await.expect("deliveries");
    assert_eq!(
        (deliveries[0].status.as_str(), deliveries[0].attempts.len()),
        ("PENDING", 1)
    );
    let claimed = store
        .claim_deliveries(60, 1_000, 10, 10)
        .await
        .expect("claim");
    assert!(claimed.iter().any(|d| d.id == deliveries[0].id));
    let retried = claimed
        .iter()
        .find(|d| d.id == deliveries[1].id)
        .expect("claimed");
    assert_eq!((retried.attempt, retried.retry_step), (2, 0));
    assert_eq!(
        store
            .redeliver(s.id, Some(&events[0].id), 70)
            .await
            .expect("redeliver"),
        0,
        "in flight"
    );
    assert_eq!(
        store
            .redeliver(s.id, Some("no-such-event"), 70)
            .await
            .expect("redeliver"),
        0
    );
}

async fn watch_events_advances_after_a_commit_with_events(store: &dyn Store) {
    let mut watch = store.watch_events();
    let start = *watch.borrow_and_update();
    let s = session(10, None);
    create(store, &s).await;
    store
        .append_events(&[event(Some(s.id), "more", 20)])
        .await
        .expect("append");
    let newest = store.events(None, 0, 100).await.expect("events");
    let newest = newest.last().expect("an event").seq;
    assert!(newest > start);
    tokio::time::timeout(Duration::from_secs(5), async {
        while *watch.borrow_and_update() < newest {
            watch.changed().await.expect("store alive");
        }
    })
    .await
    .expect("the watch reaches the newest event");
    assert_eq!(*watch.borrow(), newest);
    // A commit without events announces nothing new.
    store.init_setting("quiet", "1").await.expect("setting");
    assert_eq!(*store.watch_events().borrow(), newest);
}

/// PostgreSQL only: a commit by one instance reaches another's `watch_events` (LISTEN/NOTIFY,
/// or the poll behind it).
#[tokio::test]
async fn postgres_instances_announce_each_others_events() {
    if !crate::support::database::postgres_or_skip().await {
        return;
    }
    let database = TestDatabase::create().await;
    let writer = PostgresStore::open(&database.url, Default::default())
        .await
        .expect("open");
    let follower = PostgresStore::open(&database.url, Default::default())
        .await
        .expect("open");
    let mut watch = follower.watch_events();
    let s = session(10, None);
    create(&writer, &s).await;
    let newest = writer.events(None, 0, 10).await.expect("events")[0].seq;
    tokio::time::timeout(Duration::from_secs(5), async {
        while *watch.borrow_and_update() < newest {
            watch.changed().await.expect("store alive");
        }
    })
    .await
    .expect("the other instance hears of the commit");
}

async fn a_deferred_transaction_is_made_once_resolved_once_and_fetched_once(store: &dyn Store) {
    let deferral = |session: SessionId, nonce: &str, transaction: &str, now: Millis| Deferral {
        session,
        token_hash: token_hash(session),
        nonce_hash: nonce.to_owned(),
        nonce_expires_at: now + 300,
        transaction_hash: transaction.to_owned(),
        holders: json!([{"jwk": {"kty": "EC"}, "did": "did:example:holder"}]),
        expires_at: 100_000,
        now,
        events: vec![event(Some(session), "credential_deferred", now)],
    };
    let fetch = |session: SessionId, transaction: &str, now: Millis| Issuance {
        session,
        token_hash: token_hash(session),
        spends: Spent::Deferred {
            transaction_hash: transaction.to_owned(),
        },
        credentials: vec![credential(session, now, now + 10_000)],
        finish: true,
        now,
        events: vec![event(Some(session), "credential_issued", now)],
    };
    let s = session(10, None);
    create(store, &s).await;
    assert_eq!(redeem(store, &s, 30).await, Applied::Yes);
    let defer = |d: Deferral| async move { store.defer_issuance(&d).await.expect("defer") };
    assert_eq!(
        defer(deferral(s.id, "d1", "t1", 40)).await,
        IssuanceCommit::Issued
    );
    assert_eq!(
        defer(deferral(s.id, "d2", "t2", 41)).await,
        IssuanceCommit::SessionNotActive,
        "a session defers once"
    );
    let pending = store
        .deferred_transaction(DeferredLookup::TransactionHash("t1"))
        .await
        .expect("read")
        .expect("transaction");
    assert_eq!(pending.session_id, s.id);
    assert_eq!(pending.state, DeferredState::Pending);
    assert_eq!(pending.holders[0]["did"], "did:example:holder");
    assert_eq!(
        store
            .deferred_transaction(DeferredLookup::Session(s.id))
            .await
            .expect("read"),
        Some(pending)
    );
    // The session and its token live for the deferred window.
    assert_eq!(reload(store, s.id).await.expires_at, 100_000);
    let (token, _) = store
        .token_session(&token_hash(s.id))
        .await
        .expect("read")
        .expect("token");
    assert_eq!(token.expires_at, 100_000);

    // Nothing to fetch while PENDING; READY once; fetched once.
    assert_eq!(
        store
            .complete_issuance(&fetch(s.id, "t1", 50))
            .await
            .expect("fetch"),
        IssuanceCommit::AlreadySpent
    );
    let ready = DeferredOutcome::Ready {
        template: json!({"claims": {"given_name": "Grace"}}).to_string(),
    };
    let resolve = |session: SessionId, outcome: DeferredOutcome, now: Millis| async move {
        store
            .resolve_deferred(
                session,
                &outcome,
                now,
                &[event(Some(session), "resolved", now)],
            )
            .await
            .expect("resolve")
    };
    assert_eq!(resolve(s.id, ready.clone(), 60).await, Applied::Yes);
    assert_eq!(resolve(s.id, ready, 61).await, Applied::Stale);
    assert!(reload(store, s.id).await.template.contains("Grace"));
    assert_eq!(
        store
            .complete_issuance(&fetch(s.id, "t1", 70))
            .await
            .expect("fetch"),
        IssuanceCommit::Issued
    );
    assert_eq!(reload(store, s.id).await.status, SessionStatus::Successful);
    assert_eq!(
        store
            .deferred_transaction(DeferredLookup::Session(s.id))
            .await
            .expect("read")
            .expect("transaction")
            .state,
        DeferredState::Issued
    );
    assert_eq!(store.issued_credentials(s.id).await.expect("read").len(), 1);

    // Failed: the session fails with it; the nonce of the refused deferral above is unspent.
    let other = session(10, None);
    create(store, &other).await;
    assert_eq!(redeem(store, &other, 30).await, Applied::Yes);
    assert_eq!(
        defer(deferral(other.id, "d2", "t3", 40)).await,
        IssuanceCommit::Issued
    );
    let failed = DeferredOutcome::Failed {
        reason: "withdrawn".into(),
    };
    assert_eq!(resolve(other.id, failed, 50).await, Applied::Yes);
    let done = reload(store, other.id).await;
    assert_eq!(done.status, SessionStatus::Unsuccessful);
    let transaction = store
        .deferred_transaction(DeferredLookup::TransactionHash("t3"))
        .await
        .expect("read")
        .expect("transaction");
    assert_eq!(
        (transaction.state, transaction.reason.as_deref()),
        (DeferredState::Failed, Some("withdrawn"))
    );
    assert_eq!(
        store
            .complete_issuance(&fetch(other.id, "t3", 60))
            .await
            .expect("fetch"),
        IssuanceCommit::SessionNotActive
    );
    let events = store.events(Some(other.id), 0, 100).await.expect("events");
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        [
            "credential_offer_created",
            "token_issued",
            "credential_deferred",
            "resolved"
        ]
    );
}

async fn a_wallet_notification_is_recorded_once_for_its_session(store: &dyn Store) {
    let s = session(10, None);
    create(store, &s).await;
    assert_eq!(redeem(store, &s, 20).await, Applied::Yes);
    let mut issued = credential(s.id, 30, 10_000);
    issued.notification_id = Some("n-1".into());
    let issuance = Issuance {
        session: s.id,
        token_hash: token_hash(s.id),
        spends: Spent::Nonce {
            hash: "n".into(),
            expires_at: 400,
        },
        credentials: vec![issued],
        finish: true,
        now: 30,
        events: Vec::new(),
    };
    assert_eq!(
        store.complete_issuance(&issuance).await.expect("issue"),
        IssuanceCommit::Issued
    );
    let other = session(10, None);
    create(store, &other).await;
    let report = |session: SessionId, id: &str, kind: &str, now: Millis| WalletNotification {
        notification_id: id.to_owned(),
        session,
        event: kind.to_owned(),
        now,
        events: vec![event(Some(session), kind, now)],
    };
    let record = |n: WalletNotification| async move {
        store.record_wallet_notification(&n).await.expect("record")
    };
    assert_eq!(
        record(report(s.id, "n-1", "credential_accepted", 40)).await,
        NotificationReceipt::Recorded
    );
    assert_eq!(
        record(report(s.id, "n-1", "credential_accepted", 41)).await,
        NotificationReceipt::Repeated
    );
    assert_eq!(
        record(report(s.id, "n-1", "credential_deleted", 42)).await,
        NotificationReceipt::Recorded
    );
    assert_eq!(
        record(report(s.id, "n-2", "credential_accepted", 43)).await,
        NotificationReceipt::Unknown
    );
    assert_eq!(
        record(report(other.id, "n-1", "credential_accepted", 44)).await,
        NotificationReceipt::Unknown,
        "another session's id"
    );
    let events = store.events(Some(s.id), 0, 100).await.expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "credential_offer_created",
            "token_issued",
            "credential_accepted",
            "credential_deleted"
        ]
    );
    let others = store.events(Some(other.id), 0, 100).await.expect("events");
    assert_eq!(others.len(), 1, "only its offer's event");
}

// ----- the operator -------------------------------------------------------------------------

fn console_sign_in(id_hash: &str, created_at: Millis, expires_at: Millis) -> ConsoleSessionRecord {
    ConsoleSessionRecord {
        id_hash: id_hash.into(),
        key_fingerprint: "fingerprint".into(),
        created_at,
        expires_at,
    }
}

async fn console_sign_ins_end_at_their_expiry_or_when_closed(store: &dyn Store) {
    let first = console_sign_in("first", 100, 200);
    store.open_console_session(&first, 100).await.expect("open");
    let found = |hash: &'static str, now: Millis| async move {
        store.console_session(hash, now).await.expect("read")
    };
    assert_eq!(found("first", 199).await, Some(first.clone()));
    assert_eq!(found("first", 200).await, None, "expired at its expiry");
    assert_eq!(found("unknown", 150).await, None);
    // A later sign-in forgets those expired by then.
    let second = console_sign_in("second", 300, 400);
    store
        .open_console_session(&second, 300)
        .await
        .expect("open");
    assert_eq!(found("first", 150).await, None, "forgotten");
    assert_eq!(found("second", 350).await, Some(second));
    assert!(store.close_console_session("second").await.expect("close"));
    assert!(!store.close_console_session("second").await.expect("close"));
    assert_eq!(found("second", 350).await, None);
}

async fn the_overview_counts_sessions_and_deliveries_since_a_moment(store: &dyn Store) {
    let hooked = session(10, Some(webhook(HOOK, None)));
    let quiet = session(20, None);
    let expiring = session(30, Some(webhook(OTHER_HOOK, None)));
    for s in [&hooked, &quiet, &expiring] {
        create(store, s).await;
    }
    assert!(
        store
            .expire_session(expiring.id, 2_000, &[])
            .await
            .expect("expire")
    );
    let count = |status: &str, count: i64| SessionCount {
        credential_configuration_id: "config".into(),
        status: status.into(),
        count,
    };
    assert_eq!(
        store.session_counts(0).await.expect("counts"),
        [count("ACTIVE", 2), count("EXPIRED", 1)]
    );
    assert_eq!(
        store.session_counts(20).await.expect("counts"),
        [count("ACTIVE", 1), count("EXPIRED", 1)]
    );
    assert_eq!(store.session_counts(31).await.expect("counts"), []);

    // One delivery per hooked session (its offer event): one fails and will be retried.
    let delivered = |state: &str, count: i64| DeliveryCount {
        state: state.into(),
        count,
    };
    assert_eq!(
        store.delivery_counts(0).await.expect("counts"),
        [delivered("PENDING", 2)]
    );
    let due = store
        .claim_deliveries(40, 1_000, 10, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 2);
    store
        .record_and_claim(
            vec![FinishedAttempt {
                delivery: due[0].id,
                record: ok_attempt(41, 500),
                outcome: AttemptOutcome::RetryAt(500),
                at: 42,
            }],
            43,
            1_000,
            0,
            10,
        )
        .await
        .expect("record");
    assert_eq!(
        store.delivery_counts(0).await.expect("counts"),
        [delivered("PENDING", 1), delivered("RETRYING", 1)]
    );
    assert_eq!(store.delivery_counts(31).await.expect("counts"), []);
}

// ----- query plans --------------------------------------------------------------------------

/// Every listing and filter of the management API reads through indexes, on both databases:
/// each statement `listing_statements` gives (the very SQL the stores run) is explained, and the
/// plan may not read a large table whole, nor sort what it read when it returns a page. This
/// checks plans, not times, so that it holds on any machine.
///
/// The test opens a connection of its own to the database the store has just migrated, rather
/// than asking the store for plans: explaining is this test's concern, not a use of the service,
/// so the `Store` traits keep no method for it.
///
/// Large tables are those that grow with the traffic, a row or more per session; each statement
/// names those it reads (sessions, webhooks, grants, events, deliveries and their attempts,
/// issued credentials, deferred transactions, used nonces). Keys, profiles (profile_heads, profile_versions),
/// settings and console sign-ins stay small and may be scanned.
mod plans {
    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Write as _;

    use rusqlite::config::DbConfig;
    use serde_json::Value;
    use tokio_postgres::types::{FromSql, ToSql, Type};
    use vellum::config::Synchronous;
    use vellum::store::postgres::PostgresStore;
    use vellum::store::sqlite::SqliteStore;
    use vellum::store::{ListingStatement, listing_statements};

    /// SQLite: `EXPLAIN QUERY PLAN`, on the empty file (the store never runs ANALYZE, so its
    /// plans follow from the indexes, not from the data). A `SCAN` of a large table fails, unless it reads the
    /// statement's `whole_index` (`SCAN s USING INDEX sessions_by_created`: the newest page), and
    /// so does an automatic index (built by reading the table whole); `SEARCH ... USING INDEX`,
    /// `USING PRIMARY KEY` or `USING INTEGER PRIMARY KEY` passes. A statement with `LIMIT` (a
    /// page) may not sort: `USE TEMP B-TREE FOR ORDER BY` fails.
    #[tokio::test]
    async fn sqlite_listings_read_through_indexes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("vellum.db");
        let _store = SqliteStore::open(&path, Synchronous::Normal)
            .await
            .expect("open SQLite");
        let conn = rusqlite::Connection::open(&path).expect("open the SQLite file");
        // As the store's connections: one plan per statement, whatever the bound values.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .expect("QPSG");
        let mut failures = String::new();
        for statement in statements() {
            if let Some(index) = statement.whole_index {
                let exists: bool = conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?)",
                        [index],
                        |row| row.get(0),
                    )
                    .expect("look the index up");
                assert!(exists, "{}: no index {index}", statement.name);
            }
            let values = statement.params.iter().map(|value| match value {
                Value::String(text) => rusqlite::types::Value::Text(text.clone()),
                Value::Number(number) => {
                    rusqlite::types::Value::Integer(number.as_i64().expect("an integer"))
                }
                other => panic!("{}: a sample value {other}", statement.name),
            });
            let mut explain = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sql))
                .unwrap_or_else(|error| panic!("{}: {error}", statement.name));
            let lines: Vec<(i64, i64, String)> = explain
                .query_map(rusqlite::params_from_iter(values), |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(3)?))
                })
                .and_then(Iterator::collect)
                .unwrap_or_else(|error| panic!("{}: {error}", statement.name));
            let names = plan_names(&statement);
            let mut problems = Vec::new();
            for (_, _, detail) in &lines {
                let words: Vec<&str> = detail.split_whitespace().collect();
                let table = words.get(1).and_then(|name| names.get(*name));
                if let (Some("SCAN"), Some(table)) = (words.first().copied(), table) {
                    let whole_index = statement.whole_index.is_some_and(|index| {
                        matches!(
                            words[2..],
                            ["USING", "INDEX", name] | ["USING", "COVERING", "INDEX", name]
                                if name == index
                        )
                    });
                    if !whole_index {
                        problems.push(format!("reads the whole table {table}: {detail}"));
                    }
                }
                if table.is_some() && detail.contains("AUTOMATIC") {
                    problems.push(format!("builds an index for itself: {detail}"));
                }
                if paged(&statement)
                    && detail.starts_with("USE TEMP B-TREE FOR")
                    && detail.contains("ORDER BY")
                {
                    problems.push(format!("sorts before it returns a page: {detail}"));
                }
            }
            if let Some(index) = statement.reads_index
                && !lines
                    .iter()
                    .any(|(_, _, detail)| detail.split_whitespace().any(|word| word == index))
            {
                problems.push(format!("does not read the index {index}"));
            }
            report(&statement, &sqlite_tree(&lines), &problems, &mut failures);
        }
        assert!(failures.is_empty(), "plans that read too much:\n{failures}");
    }

    /// PostgreSQL: `EXPLAIN (FORMAT JSON)` with the sample values, on tables holding a few
    /// thousand analysed rows ([`FIXTURE`]), with sequential scans disabled in this connection so
    /// that a table this small does not make one the cheapest plan: a `Seq Scan` of a large
    /// table then means no index serves the statement, and fails. So does an index read whose
    /// `Index Cond` does not bind the index's first column, or that has none, unless it is the
    /// statement's `whole_index`: disabled sequential scans make PostgreSQL read a whole index
    /// rather than the table when the column sits further back in it. For a statement with
    /// `LIMIT` (a page) sorts are disabled too, for the same reason: a sort left in its plan
    /// means no index gives its order, and fails.
    #[tokio::test]
    async fn postgres_listings_read_through_indexes() {
        if !crate::support::database::postgres_or_skip().await {
            return;
        }
        let database = crate::support::database::TestDatabase::create().await;
        let _store = PostgresStore::open(&database.url, Default::default())
            .await
            .expect("open PostgreSQL");
        let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(FIXTURE)
            .await
            .expect("fill the large tables");
        client
            .batch_execute("SET enable_seqscan = off")
            .await
            .expect("disable sequential scans");
        let first_columns: HashMap<String, String> = client
            .query(
                "SELECT c.relname, a.attname FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]",
                &[],
            )
            .await
            .expect("read the indexes")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let mut failures = String::new();
        for statement in statements() {
            if let Some(index) = statement.whole_index {
                assert!(
                    first_columns.contains_key(index),
                    "{}: no index {index}",
                    statement.name
                );
            }
            let values: Vec<Box<dyn ToSql + Sync>> = statement
                .params
                .iter()
                .map(|value| -> Box<dyn ToSql + Sync> {
                    match value {
                        Value::String(text) => Box::new(text.clone()),
                        Value::Number(number) => Box::new(number.as_i64().expect("an integer")),
                        other => panic!("{}: a sample value {other}", statement.name),
                    }
                })
                .collect();
            let values: Vec<&(dyn ToSql + Sync)> = values.iter().map(AsRef::as_ref).collect();
            client
                .batch_execute(&format!("SET enable_sort = {}", !paged(&statement)))
                .await
                .expect("enable or disable sorts");
            let row = client
                .query_one(&format!("EXPLAIN (FORMAT JSON) {}", statement.sql), &values)
                .await
                .unwrap_or_else(|error| panic!("{}: {error}", statement.name));
            let PlanJson(text) = row.get(0);
            let plan: Value = serde_json::from_str(&text).expect("the plan is JSON");
            let root = &plan[0]["Plan"];
            let mut problems = Vec::new();
            postgres_problems(&statement, &first_columns, root, None, &mut problems);
            if let Some(index) = statement.reads_index
                && !text.contains(&format!("\"Index Name\": \"{index}\""))
            {
                problems.push(format!("does not read the index {index}"));
            }
            let mut tree = String::new();
            postgres_tree(root, 0, &mut tree);
            report(&statement, &tree, &problems, &mut failures);
        }
        assert!(failures.is_empty(), "plans that read too much:\n{failures}");
        drop(client);
        let _ = driver.await;
    }

    /// A few thousand sessions with what hangs off them, analysed: a server's planner knows how
    /// large its tables are, and on empty ones PostgreSQL picks plans that only win there (it
    /// would read every offer grant once rather than look up each listed session's). Most
    /// sessions have finished, as on a server: the sample filters (ACTIVE, a profile) match few,
    /// the case where reading sessions newest first until a page matches would read them all.
    const FIXTURE: &str = "
        INSERT INTO sessions (id, profile_id, profile_version, credential_configuration_id,
            status, offer_handle_hash, by_value, template, issuer_key_id, created_at, updated_at,
            expires_at, finished_at)
        SELECT 's' || n, 'p' || n % 20, 1, 'c' || n % 3,
            CASE WHEN n % 100 = 0 THEN 'ACTIVE' WHEN n % 10 = 1 THEN 'EXPIRED'
                WHEN n % 10 = 2 THEN 'UNSUCCESSFUL' ELSE 'SUCCESSFUL' END,
            'h' || n, FALSE, '{}', 'k', n * 1000, n * 1000, n * 1000 + 600000,
            CASE WHEN n % 100 = 0 THEN NULL ELSE n * 1000 + 500 END
        FROM generate_series(1, 5000) AS n;
        INSERT INTO webhooks (session_id, url)
        SELECT 's' || n, 'https://hooks.example/' || n % 10 FROM generate_series(1, 5000) AS n;
        INSERT INTO grants (session_id, kind, secret_hash, state, created_at)
        SELECT 's' || n, 'PRE_AUTHORIZED_CODE', 'g' || n, 'REDEEMED', n * 1000
        FROM generate_series(1, 5000) AS n;
        INSERT INTO events (id, session_id, type, timestamp, data)
        SELECT 'e' || n, 's' || n / 5, 'credential_issued', n * 200, '{}'
        FROM generate_series(5, 25004) AS n;
        INSERT INTO deliveries (event_seq, session_id, url, status, next_attempt_at, created_at)
        SELECT e.seq, e.session_id, w.url,
            CASE WHEN e.seq % 50 = 0 THEN 'PENDING' ELSE 'DELIVERED' END,
            e.timestamp, e.timestamp
        FROM events e JOIN webhooks w ON w.session_id = e.session_id;
        INSERT INTO delivery_attempts (delivery_id, number, started_at, duration_ms, status_code)
        SELECT id, 1, created_at, 10, 200 FROM deliveries;
        INSERT INTO issued_credentials (id, session_id, credential_configuration_id, format,
            holder, issued_at, expires_at, status_list_id, status_index, status_value)
        SELECT 'c' || n, 's' || n, 'c', 'dc+sd-jwt', 'holder', n * 1000, n * 1000 + 86400000,
            'l' || n / 1000, n % 1000, CASE WHEN n % 100 = 0 THEN 1 ELSE 0 END
        FROM generate_series(1, 5000) AS n;
        INSERT INTO used_nonces (nonce_hash, expires_at)
        SELECT 'n' || n, n * 1000 FROM generate_series(1, 5000) AS n;
        INSERT INTO deferred_transactions (session_id, transaction_hash, holders, state,
            created_at, changed_at)
        SELECT 's' || n, 'x' || n, '[]', 'PENDING', n * 1000, n * 1000
        FROM generate_series(10, 5000, 10) AS n;
        ANALYZE;
    ";

    fn statements() -> Vec<ListingStatement> {
        let statements = listing_statements();
        for statement in &statements {
            for table in statement.large_tables {
                assert!(
                    statement.sql.contains(table),
                    "{} does not read {table}",
                    statement.name
                );
            }
        }
        statements
    }

    /// A statement that returns a page: its rows must come in an index's order, so that it
    /// stops after the page.
    fn paged(statement: &ListingStatement) -> bool {
        statement.sql.contains(" LIMIT ")
    }

    /// The names SQLite's plan gives the statement's large tables: the table's own, or the
    /// alias it has after `FROM` or `JOIN` (`FROM sessions s`).
    fn plan_names(statement: &ListingStatement) -> BTreeMap<String, &'static str> {
        const NOT_AN_ALIAS: &[&str] = &[
            "WHERE", "JOIN", "LEFT", "INNER", "ON", "ORDER", "GROUP", "LIMIT", "AS",
        ];
        let words: Vec<&str> = statement
            .sql
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
            .filter(|word| !word.is_empty())
            .collect();
        let mut names = BTreeMap::new();
        for (at, pair) in words.windows(2).enumerate() {
            let keyword = pair[0].to_ascii_uppercase();
            let Some(table) = statement
                .large_tables
                .iter()
                .find(|table| **table == pair[1])
            else {
                continue;
            };
            if keyword != "FROM" && keyword != "JOIN" {
                continue;
            }
            names.insert((*table).to_owned(), *table);
            let mut next = words.get(at + 2).copied();
            if next.is_some_and(|word| word.eq_ignore_ascii_case("AS")) {
                next = words.get(at + 3).copied();
            }
            if let Some(alias) = next
                && !NOT_AN_ALIAS.contains(&alias.to_ascii_uppercase().as_str())
            {
                names.insert(alias.to_owned(), *table);
            }
        }
        names
    }

    /// SQLite's plan lines as a tree, each under its parent.
    fn sqlite_tree(lines: &[(i64, i64, String)]) -> String {
        let mut depth: BTreeMap<i64, usize> = BTreeMap::new();
        let mut tree = String::new();
        for (id, parent, detail) in lines {
            let level = depth.get(parent).map_or(0, |level| level + 1);
            depth.insert(*id, level);
            let _ = writeln!(tree, "{}{detail}", "  ".repeat(level));
        }
        tree
    }

    fn postgres_problems(
        statement: &ListingStatement,
        first_columns: &HashMap<String, String>,
        node: &Value,
        relation: Option<&str>,
        problems: &mut Vec<String>,
    ) {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        // A bitmap index scan names no table; it reads for the bitmap heap scan above it.
        let relation = node["Relation Name"].as_str().or(relation);
        let large = relation.filter(|table| statement.large_tables.contains(table));
        if let Some(table) = large {
            if kind == "Seq Scan" {
                problems.push(format!("reads the whole table {table} (Seq Scan)"));
            }
            let index_scan = matches!(kind, "Index Scan" | "Index Only Scan" | "Bitmap Index Scan");
            let index = node["Index Name"].as_str().unwrap_or_default();
            let first = first_columns.get(index).map_or("?", String::as_str);
            match node["Index Cond"].as_str() {
                _ if !index_scan || statement.whole_index == Some(index) => {}
                None => problems.push(format!(
                    "reads the whole index {index} of {table} ({kind} without Index Cond)"
                )),
                Some(condition) if !binds(condition, first) => problems.push(format!(
                    "reads the whole index {index} of {table}: {condition} does not bind its \
                     first column, {first}"
                )),
                Some(_) => {}
            }
        }
        if paged(statement) && kind.ends_with("Sort") {
            problems.push(format!("sorts before it returns a page ({kind})"));
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            postgres_problems(statement, first_columns, child, relation, problems);
        }
    }

    /// Whether an index condition names `column` (and so seeks or ranges on it).
    fn binds(condition: &str, column: &str) -> bool {
        condition
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == column)
    }

    /// A JSON plan as indented lines: node, table, index, conditions.
    fn postgres_tree(node: &Value, depth: usize, tree: &mut String) {
        let _ = write!(
            tree,
            "{}{}",
            "  ".repeat(depth),
            node["Node Type"].as_str().unwrap_or("?")
        );
        for (key, label) in [
            ("Relation Name", " on "),
            ("Alias", " as "),
            ("Index Name", " using "),
            ("Index Cond", " index cond: "),
            ("Recheck Cond", " recheck: "),
            ("Filter", " filter: "),
            ("Sort Key", " sort key: "),
        ] {
            if let Some(value) = node.get(key) {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                let _ = write!(tree, "{label}{value}");
            }
        }
        if node["Scan Direction"] == "Backward" {
            tree.push_str(" (backward)");
        }
        tree.push('\n');
        for child in node["Plans"].as_array().into_iter().flatten() {
            postgres_tree(child, depth + 1, tree);
        }
    }

    /// Prints every plan (seen with `--nocapture`, or when the test fails) and gathers the
    /// statements whose plan fails, each with its SQL and plan.
    fn report(
        statement: &ListingStatement,
        plan: &str,
        problems: &[String],
        failures: &mut String,
    ) {
        let verdict = if problems.is_empty() { "ok" } else { "FAILS" };
        eprintln!("{verdict}: {}\n{plan}", statement.name);
        if !problems.is_empty() {
            let _ = writeln!(
                failures,
                "{}\n  {}\n  SQL: {}\n  plan:\n{}",
                statement.name,
                problems.join("\n  "),
                statement.sql,
                plan.lines()
                    .map(|line| format!("    {line}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    /// The text of a `json` value (`EXPLAIN (FORMAT JSON)` answers one).
    struct PlanJson(String);

    impl<'a> FromSql<'a> for PlanJson {
        fn from_sql(
            _: &Type,
            raw: &'a [u8],
        ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            Ok(PlanJson(String::from_utf8(raw.to_vec())?))
        }

        fn accepts(ty: &Type) -> bool {
            *ty == Type::JSON
        }
    }
}
