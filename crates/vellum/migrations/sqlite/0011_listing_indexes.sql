-- The sessions listing reads each page in index order, whatever its filters (store::sql::
-- sessions_page): by status, newest first, with the id breaking ties as in sessions_by_created;
-- by profile the same. (sessions_by_status_expiry serves the expiry sweep, by expires_at.)
-- sessions_by_profile (profile_id, created_at) is a prefix of the new one, which replaces it.
CREATE INDEX sessions_by_status_created ON sessions (status, created_at, id);
DROP INDEX sessions_by_profile;
CREATE INDEX sessions_by_profile ON sessions (profile_id, created_at, id);
