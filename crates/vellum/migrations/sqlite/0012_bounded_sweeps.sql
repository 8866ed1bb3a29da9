-- A status list is published from its entries that are not valid (store::sql::STATUS_ENTRIES):
-- this partial index holds only those, so that publishing a list reads what was revoked or
-- suspended, not every credential that holds an entry of it.
CREATE INDEX issued_credentials_not_valid
    ON issued_credentials (status_list_id, status_index, status_value)
    WHERE status_value <> 0;

-- The retention sweep removes spent nonces in bounded batches, those that expired first first.
CREATE INDEX used_nonces_by_expiry ON used_nonces (expires_at);
