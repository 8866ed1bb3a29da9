-- Status lists. A list hands out its entries in allocation order (allocated counts them), and
-- entry n of a list is at index permute(n): a keyed permutation of 0..size, so that indices are
-- unique without a search and not in issue order. What the list publishes is derived from the
-- credentials that hold its entries: their status_value (0 valid, 1 invalid, 2 suspended). A
-- list is signed as its credentials are (the same key, iss and certificates: signer, JSON), so
-- credentials of different issuers never share one.
CREATE TABLE status_lists (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,                  -- TOKEN (IETF Token Status List) or BITSTRING (W3C)
    signer     TEXT NOT NULL,                  -- JSON: who signs the list
    bits       INTEGER NOT NULL,               -- bits per entry
    size       BIGINT NOT NULL,                -- entries
    allocated  BIGINT NOT NULL,                -- entries handed out
    created_at BIGINT NOT NULL,
    changed_at BIGINT NOT NULL                 -- the last status change of one of its entries
);

CREATE INDEX status_lists_open ON status_lists (kind, signer, bits, size, created_at);

ALTER TABLE issued_credentials ADD COLUMN status_list_id TEXT;
ALTER TABLE issued_credentials ADD COLUMN status_index BIGINT;
ALTER TABLE issued_credentials ADD COLUMN status_value INTEGER NOT NULL DEFAULT 0;

CREATE UNIQUE INDEX issued_credentials_by_status_entry
    ON issued_credentials (status_list_id, status_index);
