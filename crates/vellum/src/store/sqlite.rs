//! The embedded store: one SQLite file in WAL mode. All writes go through a single connection
//! (SQLite has one writer anyway), so transactions never fight over the lock; reads use a small
//! pool of their own and never wait for writes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::*;
use crate::config::Synchronous;

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

fn db_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(error.to_string())
        }
        other => StoreError::Database(Box::new(other)),
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn json(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|_| corrupt("JSON column"))
}

// Column lists as macros, so that every statement stays a `&'static str` (sqlx refuses SQL
// built at run time unless it is asserted safe).
macro_rules! session_columns {
    () => {
        "id, profile_id, profile_version, credential_configuration_id, status, status_reason, \
         offer_handle_hash, code_hash, code_state, tx_code, tx_code_mac, tx_code_failures, \
         token_hash, token_expires_at, by_value, template, issuer_key_id, created_at, updated_at, \
         expires_at, resolved_at, token_issued_at, finished_at"
    };
}

macro_rules! select_sessions {
    ($where:literal) => {
        concat!("SELECT ", session_columns!(), " FROM sessions ", $where)
    };
}

macro_rules! select_profiles {
    ($where:literal) => {
        concat!(
            "SELECT v.id, v.version, h.active, v.definition, v.issuer_key_id, h.created_at, \
             CASE WHEN v.version = h.version THEN h.updated_at ELSE v.created_at END AS updated_at \
             FROM profile_versions v JOIN profile_heads h ON h.id = v.id ",
            $where
        )
    };
}

impl SqliteStore {
    pub async fn open(path: &Path, synchronous: Synchronous) -> StoreResult<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Unavailable(format!("{}: {error}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(db_error)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match synchronous {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .map_err(db_error)?;
        Ok(SqliteStore { writer, readers })
    }

    async fn begin(&self) -> StoreResult<Transaction<'_, Sqlite>> {
        self.writer.begin().await.map_err(db_error)
    }

    async fn insert_events(
        tx: &mut Transaction<'_, Sqlite>,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        for event in events {
            sqlx::query(
                "INSERT INTO events (id, session_id, type, timestamp, data) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&event.id)
            .bind(event.session_id.map(|id| id.to_string()))
            .bind(&event.event_type)
            .bind(event.timestamp)
            .bind(event.data.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        }
        Ok(())
    }

    async fn publish_key(tx: &mut Transaction<'_, Sqlite>, key: &KeyId) -> StoreResult<()> {
        sqlx::query("UPDATE keys SET published = 1 WHERE id = ? AND published = 0")
            .bind(key.as_str())
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn commit(tx: Transaction<'_, Sqlite>) -> StoreResult<()> {
        tx.commit().await.map_err(db_error)
    }
}

fn key_from_row(row: &SqliteRow) -> StoreResult<KeyRecord> {
    Ok(KeyRecord {
        id: KeyId::parse(row.try_get("id").map_err(db_error)?).map_err(|_| corrupt("key id"))?,
        algorithm: row.try_get("algorithm").map_err(db_error)?,
        public_jwk: json(row.try_get("public_jwk").map_err(db_error)?)?,
        sealed_private: row.try_get("sealed_private").map_err(db_error)?,
        created_at: row.try_get("created_at").map_err(db_error)?,
    })
}

fn profile_from_row(row: &SqliteRow) -> StoreResult<ProfileRecord> {
    Ok(ProfileRecord {
        id: ProfileId::parse(row.try_get("id").map_err(db_error)?)
            .map_err(|_| corrupt("profile id"))?,
        version: row.try_get("version").map_err(db_error)?,
        active: row.try_get::<i64, _>("active").map_err(db_error)? != 0,
        definition: json(row.try_get("definition").map_err(db_error)?)?,
        issuer_key_id: KeyId::parse(row.try_get("issuer_key_id").map_err(db_error)?)
            .map_err(|_| corrupt("key id"))?,
        created_at: row.try_get("created_at").map_err(db_error)?,
        updated_at: row.try_get("updated_at").map_err(db_error)?,
    })
}

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
    let get_str = |name: &str| -> StoreResult<String> { row.try_get(name).map_err(db_error) };
    let get_opt_i64 =
        |name: &str| -> StoreResult<Option<i64>> { row.try_get(name).map_err(db_error) };
    let get_i64 = |name: &str| -> StoreResult<i64> { row.try_get(name).map_err(db_error) };
    let tx_code: Option<String> = row.try_get("tx_code").map_err(db_error)?;
    Ok(SessionRecord {
        id: SessionId::parse(&get_str("id")?).ok_or_else(|| corrupt("session id"))?,
        profile_id: ProfileId::parse(&get_str("profile_id")?).map_err(|_| corrupt("profile id"))?,
        profile_version: get_i64("profile_version")?,
        credential_configuration_id: get_str("credential_configuration_id")?,
        status: SessionStatus::parse(&get_str("status")?).ok_or_else(|| corrupt("status"))?,
        status_reason: row.try_get("status_reason").map_err(db_error)?,
        offer_handle_hash: get_str("offer_handle_hash")?,
        code_hash: get_str("code_hash")?,
        code_state: CodeState::parse(&get_str("code_state")?)
            .ok_or_else(|| corrupt("code state"))?,
        tx_code: tx_code.as_deref().map(json).transpose()?,
        tx_code_mac: row.try_get("tx_code_mac").map_err(db_error)?,
        tx_code_failures: u32::try_from(get_i64("tx_code_failures")?)
            .map_err(|_| corrupt("tx_code_failures"))?,
        token_hash: row.try_get("token_hash").map_err(db_error)?,
        token_expires_at: get_opt_i64("token_expires_at")?,
        by_value: get_i64("by_value")? != 0,
        template: json(&get_str("template")?)?,
        issuer_key_id: KeyId::parse(&get_str("issuer_key_id")?).map_err(|_| corrupt("key id"))?,
        created_at: get_i64("created_at")?,
        updated_at: get_i64("updated_at")?,
        expires_at: get_i64("expires_at")?,
        resolved_at: get_opt_i64("resolved_at")?,
        token_issued_at: get_opt_i64("token_issued_at")?,
        finished_at: get_opt_i64("finished_at")?,
    })
}

fn event_from_row(row: &SqliteRow) -> StoreResult<EventRecord> {
    let session: Option<String> = row.try_get("session_id").map_err(db_error)?;
    Ok(EventRecord {
        seq: row.try_get("seq").map_err(db_error)?,
        id: row.try_get("id").map_err(db_error)?,
        session_id: session
            .map(|text| SessionId::parse(&text).ok_or_else(|| corrupt("session id")))
            .transpose()?,
        event_type: row.try_get("type").map_err(db_error)?,
        timestamp: row.try_get("timestamp").map_err(db_error)?,
        data: json(row.try_get("data").map_err(db_error)?)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(|error| StoreError::Database(Box::new(error)))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        Self::commit(tx).await?;
        Ok(stored)
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let result = sqlx::query(
            "INSERT INTO keys (id, algorithm, public_jwk, sealed_private, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(key.id.as_str())
        .bind(&key.algorithm)
        .bind(key.public_jwk.to_string())
        .bind(&key.sealed_private)
        .bind(key.created_at)
        .execute(&self.writer)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => {
                Err(StoreError::Conflict(format!("key {}", key.id)))
            }
            Err(error) => Err(db_error(error)),
        }
    }

    async fn key(&self, id: &KeyId) -> StoreResult<Option<KeyRecord>> {
        sqlx::query("SELECT * FROM keys WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn keys(&self) -> StoreResult<Vec<KeyRecord>> {
        sqlx::query("SELECT * FROM keys ORDER BY created_at, id")
            .fetch_all(&self.readers)
            .await
            .map_err(db_error)?
            .iter()
            .map(key_from_row)
            .collect()
    }

    async fn published_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        sqlx::query("SELECT * FROM keys WHERE published = 1 ORDER BY created_at, id")
            .fetch_all(&self.readers)
            .await
            .map_err(db_error)?
            .iter()
            .map(key_from_row)
            .collect()
    }

    async fn create_profile(&self, profile: &ProfileRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO profile_heads (id, version, active, created_at, updated_at) \
             VALUES (?, 1, 1, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(profile.id.as_str())
        .bind(profile.created_at)
        .bind(profile.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("profile {}", profile.id)));
        }
        sqlx::query(
            "INSERT INTO profile_versions (id, version, definition, issuer_key_id, created_at) \
             VALUES (?, 1, ?, ?, ?)",
        )
        .bind(profile.id.as_str())
        .bind(profile.definition.to_string())
        .bind(profile.issuer_key_id.as_str())
        .bind(profile.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        Self::publish_key(&mut tx, &profile.issuer_key_id).await?;
        Self::commit(tx).await
    }

    async fn update_profile(
        &self,
        id: &ProfileId,
        definition: &Value,
        issuer_key_id: &KeyId,
        now: Millis,
    ) -> StoreResult<Option<ProfileRecord>> {
        let mut tx = self.begin().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE profile_heads SET version = version + 1, updated_at = ? \
             WHERE id = ? AND active = 1 RETURNING version",
        )
        .bind(now)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(version) = version else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO profile_versions (id, version, definition, issuer_key_id, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(version)
        .bind(definition.to_string())
        .bind(issuer_key_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        Self::publish_key(&mut tx, issuer_key_id).await?;
        let row = sqlx::query(select_profiles!("WHERE v.id = ? AND v.version = ?"))
            .bind(id.as_str())
            .bind(version)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let profile = profile_from_row(&row)?;
        Self::commit(tx).await?;
        Ok(Some(profile))
    }

    async fn deactivate_profile(&self, id: &ProfileId, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE profile_heads SET active = 0, updated_at = CASE WHEN active = 1 THEN ? ELSE updated_at END WHERE id = ?",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn profile(
        &self,
        id: &ProfileId,
        version: Option<i64>,
    ) -> StoreResult<Option<ProfileRecord>> {
        let row = match version {
            Some(version) => {
                sqlx::query(select_profiles!("WHERE v.id = ? AND v.version = ?"))
                    .bind(id.as_str())
                    .bind(version)
                    .fetch_optional(&self.readers)
                    .await
            }
            None => {
                sqlx::query(select_profiles!("WHERE v.id = ? AND v.version = h.version"))
                    .bind(id.as_str())
                    .fetch_optional(&self.readers)
                    .await
            }
        }
        .map_err(db_error)?;
        row.as_ref().map(profile_from_row).transpose()
    }

    async fn profiles(&self) -> StoreResult<Vec<ProfileRecord>> {
        sqlx::query(select_profiles!(
            "WHERE v.version = h.version ORDER BY h.created_at, v.id"
        ))
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?
        .iter()
        .map(profile_from_row)
        .collect()
    }

    async fn create_session(&self, session: &SessionRecord, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(session.id.to_string())
        .bind(session.profile_id.as_str())
        .bind(session.profile_version)
        .bind(&session.credential_configuration_id)
        .bind(session.status.as_str())
        .bind(&session.status_reason)
        .bind(&session.offer_handle_hash)
        .bind(&session.code_hash)
        .bind(session.code_state.as_str())
        .bind(session.tx_code.as_ref().map(Value::to_string))
        .bind(&session.tx_code_mac)
        .bind(i64::from(session.tx_code_failures))
        .bind(&session.token_hash)
        .bind(session.token_expires_at)
        .bind(i64::from(session.by_value))
        .bind(session.template.to_string())
        .bind(session.issuer_key_id.as_str())
        .bind(session.created_at)
        .bind(session.updated_at)
        .bind(session.expires_at)
        .bind(session.resolved_at)
        .bind(session.token_issued_at)
        .bind(session.finished_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        Self::publish_key(&mut tx, &session.issuer_key_id).await?;
        Self::insert_events(&mut tx, std::slice::from_ref(event)).await?;
        Self::commit(tx).await
    }

    async fn session(&self, id: SessionId) -> StoreResult<Option<SessionRecord>> {
        sqlx::query(select_sessions!("WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn session_by(&self, lookup: SessionLookup<'_>) -> StoreResult<Option<SessionRecord>> {
        let (statement, hash) = match lookup {
            SessionLookup::OfferHandle(hash) => {
                (select_sessions!("WHERE offer_handle_hash = ?"), hash)
            }
            SessionLookup::PreAuthorizedCode(hash) => {
                (select_sessions!("WHERE code_hash = ?"), hash)
            }
            SessionLookup::AccessToken(hash) => (select_sessions!("WHERE token_hash = ?"), hash),
        };
        // WAL readers see every commit that finished before their query started, so a wallet's
        // next step always finds what its previous one wrote.
        sqlx::query(statement)
            .bind(hash)
            .fetch_optional(&self.readers)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn sessions(&self, filter: &SessionFilter) -> StoreResult<Vec<SessionRecord>> {
        let (before_at, before_id) = filter
            .before
            .map(|(at, id)| (Some(at), Some(id.to_string())))
            .unwrap_or((None, None));
        sqlx::query(select_sessions!(
            "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR profile_id = ?2) \
             AND (?3 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4)) \
             ORDER BY created_at DESC, id DESC LIMIT ?5"
        ))
        .bind(filter.status.map(SessionStatus::as_str))
        .bind(filter.profile_id.as_ref().map(ProfileId::as_str))
        .bind(before_at)
        .bind(before_id)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?
        .iter()
        .map(session_from_row)
        .collect()
    }

    async fn record_offer_resolved(
        &self,
        id: SessionId,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE sessions SET resolved_at = COALESCE(resolved_at, ?1), updated_at = ?1 WHERE id = ?2",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        Self::insert_events(&mut tx, events).await?;
        Self::commit(tx).await
    }

    async fn record_tx_code_failure(
        &self,
        id: SessionId,
        failure: &TxCodeFailure,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let mut tx = self.begin().await?;
        let result = if failure.locks {
            sqlx::query(
                "UPDATE sessions SET tx_code_failures = tx_code_failures + 1, code_state = 'LOCKED', \
                 status = 'UNSUCCESSFUL', status_reason = 'tx_code_attempts_exhausted', \
                 finished_at = ?1, updated_at = ?1 \
                 WHERE id = ?2 AND tx_code_failures = ?3 AND code_state = 'UNUSED' AND status = 'ACTIVE'",
            )
        } else {
            sqlx::query(
                "UPDATE sessions SET tx_code_failures = tx_code_failures + 1, updated_at = ?1 \
                 WHERE id = ?2 AND tx_code_failures = ?3 AND code_state = 'UNUSED' AND status = 'ACTIVE'",
            )
        }
        .bind(now)
        .bind(id.to_string())
        .bind(i64::from(failure.seen_failures))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Ok(Applied::Stale);
        }
        Self::insert_events(&mut tx, events).await?;
        Self::commit(tx).await?;
        Ok(Applied::Yes)
    }

    async fn redeem_pre_authorized_code(
        &self,
        id: SessionId,
        token_hash: &str,
        token_expires_at: Millis,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<Applied> {
        let mut tx = self.begin().await?;
        let result = sqlx::query(
            "UPDATE sessions SET code_state = 'REDEEMED', token_hash = ?1, token_expires_at = ?2, \
             token_issued_at = ?3, updated_at = ?3, expires_at = MAX(expires_at, ?2) \
             WHERE id = ?4 AND code_state = 'UNUSED' AND status = 'ACTIVE' AND expires_at > ?3",
        )
        .bind(token_hash)
        .bind(token_expires_at)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Ok(Applied::Stale);
        }
        Self::insert_events(&mut tx, events).await?;
        Self::commit(tx).await?;
        Ok(Applied::Yes)
    }

    async fn complete_issuance(
        &self,
        id: SessionId,
        nonce_hash: &str,
        nonce_expires_at: Millis,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<IssuanceCommit> {
        let mut tx = self.begin().await?;
        let nonce = sqlx::query(
            "INSERT INTO used_nonces (nonce_hash, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(nonce_hash)
        .bind(nonce_expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if nonce.rows_affected() == 0 {
            return Ok(IssuanceCommit::NonceAlreadyUsed);
        }
        let session = sqlx::query(
            "UPDATE sessions SET status = 'SUCCESSFUL', finished_at = ?1, updated_at = ?1 \
             WHERE id = ?2 AND status = 'ACTIVE' AND code_state = 'REDEEMED' AND token_expires_at > ?1",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if session.rows_affected() == 0 {
            return Ok(IssuanceCommit::SessionNotActive);
        }
        Self::insert_events(&mut tx, events).await?;
        Self::commit(tx).await?;
        Ok(IssuanceCommit::Issued)
    }

    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::insert_events(&mut tx, events).await?;
        Self::commit(tx).await
    }

    async fn sessions_due_for_expiry(
        &self,
        now: Millis,
        limit: u32,
    ) -> StoreResult<Vec<SessionId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE status = 'ACTIVE' AND expires_at <= ? LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?;
        ids.iter()
            .map(|id| SessionId::parse(id).ok_or_else(|| corrupt("session id")))
            .collect()
    }

    async fn expire_session(
        &self,
        id: SessionId,
        now: Millis,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let result = sqlx::query(
            "UPDATE sessions SET status = 'EXPIRED', status_reason = 'expired', finished_at = ?1, \
             updated_at = ?1 WHERE id = ?2 AND status = 'ACTIVE' AND expires_at <= ?1",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Ok(false);
        }
        Self::insert_events(&mut tx, events).await?;
        Self::commit(tx).await?;
        Ok(true)
    }

    async fn purge(&self, finished_before: Millis, now: Millis) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM events WHERE session_id IN \
             (SELECT id FROM sessions WHERE finished_at IS NOT NULL AND finished_at < ?)",
        )
        .bind(finished_before)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let sessions =
            sqlx::query("DELETE FROM sessions WHERE finished_at IS NOT NULL AND finished_at < ?")
                .bind(finished_before)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        sqlx::query("DELETE FROM used_nonces WHERE expires_at < ?")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        Self::commit(tx).await?;
        Ok(sessions.rows_affected())
    }

    async fn session_events(
        &self,
        id: SessionId,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        sqlx::query(
            "SELECT seq, id, session_id, type, timestamp, data FROM events \
             WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(id.to_string())
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?
        .iter()
        .map(event_from_row)
        .collect()
    }
}
