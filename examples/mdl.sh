#!/usr/bin/env bash
# Issues a sample mobile driving licence (mDL) from a running Vellum started with
#
#   vellum serve --config examples/mdl.toml
#
# It creates a CA key and a development IACA, an issuer key with a document signer certificate
# under that IACA, the mDL profile with the chain and sample data, and an offer. Development
# certificates only: a production IACA comes from the issuing authority's PKI.
#
#   VELLUM=http://127.0.0.1:8080 VELLUM_API_KEY=... examples/mdl.sh
#
# Needs curl and jq. Prints the IACA (give it to verifiers as the trusted root), then the offer.
set -euo pipefail

: "${VELLUM:?set VELLUM to the issuer URL}"
: "${VELLUM_API_KEY:?set VELLUM_API_KEY to the management API key}"

api() {
  local method=$1 path=$2 body=${3:-}
  curl -sS --fail-with-body -X "$method" "$VELLUM$path" \
    -H "Authorization: Bearer $VELLUM_API_KEY" \
    -H 'Content-Type: application/json' \
    ${body:+-d "$body"}
}

# 1. A CA key and a self-signed IACA for it.
ca_key=$(api POST /api/v1/keys '{"keyType": "P-256"}' | jq -r .id)
iaca=$(api POST "/api/v1/keys/$ca_key/certificates" \
  '{"profile": "IACA", "commonName": "Example mDL IACA", "country": "DE"}' | jq -r .certificate)

# 2. An issuer key and its document signer certificate under the IACA.
issuer_key=$(api POST /api/v1/keys '{"keyType": "P-256"}' | jq -r .id)
chain=$(api POST "/api/v1/keys/$issuer_key/certificates" "$(jq -n --arg ca "$ca_key" --arg iaca "$iaca" \
  '{profile: "MDOC_DOCUMENT_SIGNER", commonName: "Example mDL Document Signer", country: "DE",
    issuerKeyId: $ca, issuerCertificate: $iaca}')" | jq -c .x5Chain)

# 3. The mDL profile: the chain (leaf first) and the elements of namespace org.iso.18013.5.1.
# In this namespace, dates are plain "YYYY-MM-DD" strings and portrait is base64 bytes.
profile=$(api POST /api/v1/profiles "$(jq -n --arg key "$issuer_key" --argjson chain "$chain" '{
  name: "Sample mDL",
  credentialConfigurationId: "mdl",
  issuerKeyId: $key,
  x5Chain: $chain,
  credentialData: {"org.iso.18013.5.1": {
    family_name: "Mustermann",
    given_name: "Erika",
    birth_date: "1984-01-26",
    issue_date: "2024-03-01",
    expiry_date: "2034-02-28",
    issuing_country: "DE",
    issuing_authority: "Kraftfahrt-Bundesamt",
    document_number: "T22000129",
    portrait: "/9j/4AAQSkZJRgABAQEASABIAAD/2w==",
    un_distinguishing_sign: "D",
    age_over_18: true,
    driving_privileges: [
      {vehicle_category_code: "B", issue_date: "2010-04-01", expiry_date: "2030-04-01"}
    ]
  }}
}')" | jq -r .profileId)

# 4. A pre-authorized offer with a transaction code.
offer=$(api POST /api/v1/offers "$(jq -n --arg profile "$profile" '{profileId: $profile, txCode: {}}')")

printf '%s\n' "$iaca"
jq '{offerId, credentialOffer, txCodeValue}' <<<"$offer"
