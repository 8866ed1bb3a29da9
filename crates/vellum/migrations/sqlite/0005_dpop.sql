-- DPoP (RFC 9449): an access token may be bound to the key of the wallet that obtained it,
-- named by its RFC 7638 thumbprint (cnf.jkt). NULL: a Bearer token.
ALTER TABLE access_tokens ADD COLUMN dpop_jkt TEXT;
