-- Claiming deliveries by index seeks per URL (in flight: url + lease_until; due and not leased:
-- url + NULL lease + next_attempt_at, in order). Replaces deliveries_in_flight (url,
-- lease_until), a prefix of it.
DROP INDEX deliveries_in_flight;
CREATE INDEX deliveries_pending ON deliveries (url, lease_until, next_attempt_at)
    WHERE status = 'PENDING';
