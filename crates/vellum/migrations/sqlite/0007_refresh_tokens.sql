-- Refresh tokens (grants of kind REFRESH_TOKEN, one family per authorization request, rotated on
-- every use) are bound to the DPoP key of the tokens they replace: its RFC 7638 thumbprint.
ALTER TABLE grants ADD COLUMN dpop_jkt TEXT;
