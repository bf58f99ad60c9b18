//! Click tokens: what a click-tracking URL carries. The claims (impression,
//! ad, campaign, user, placement, redirect) are signed with HMAC-SHA256, so
//! a forged or altered token is refused and the redirect cannot be pointed
//! elsewhere. Format: `base64url(json claims) "." base64url(mac)`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted (claims are a few hundred bytes).
const MAX_TOKEN_LEN: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickClaims {
    #[serde(rename = "i")]
    pub impression_id: String,
    #[serde(rename = "a")]
    pub ad_id: String,
    #[serde(rename = "c")]
    pub campaign_id: String,
    #[serde(rename = "u")]
    pub user_id: String,
    #[serde(rename = "p")]
    pub placement_id: String,
    #[serde(rename = "r")]
    pub redirect_url: String,
    /// Unix ms of the impression.
    #[serde(rename = "t")]
    pub issued_at: i64,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("is not a click token")]
    Malformed,
    #[error("signature does not match (forged or altered)")]
    BadSignature,
}

#[derive(Clone)]
pub struct ClickSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for ClickSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClickSigner")
    }
}

impl ClickSigner {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    pub fn sign(&self, claims: &ClickClaims) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The claims of a token this signer made; the MAC is compared in
    /// constant time before anything in the payload is parsed.
    pub fn verify(&self, token: &str) -> Result<ClickClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> ClickClaims {
        ClickClaims {
            impression_id: "imp-1".into(),
            ad_id: "ad-1".into(),
            campaign_id: "c-1".into(),
            user_id: "user-1".into(),
            placement_id: "home".into(),
            redirect_url: "https://example.com/offer".into(),
            issued_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let signer = ClickSigner::new(*b"0123456789abcdef0123456789abcdef");
        let token = signer.sign(&claims());
        assert_eq!(signer.verify(&token), Ok(claims()));
    }

    #[test]
    fn altered_forged_and_foreign_tokens_are_refused() {
        let signer = ClickSigner::new(*b"key one");
        let token = signer.sign(&claims());
        let (payload, signature) = token.split_once('.').expect("two parts");

        let mut altered_claims = claims();
        altered_claims.redirect_url = "https://evil.example/".into();
        let altered_payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&altered_claims).expect("json"));
        assert_eq!(
            signer.verify(&format!("{altered_payload}.{signature}")),
            Err(TokenError::BadSignature)
        );
        // Another first character keeps the base64 valid but changes the MAC.
        let first = if signature.starts_with('A') { "B" } else { "A" };
        let flipped = format!("{first}{}", &signature[1..]);
        assert_eq!(
            signer.verify(&format!("{payload}.{flipped}")),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            ClickSigner::new(*b"key two").verify(&token),
            Err(TokenError::BadSignature)
        );
        assert_eq!(signer.verify("no-dot"), Err(TokenError::Malformed));
        assert_eq!(signer.verify("a.!!!"), Err(TokenError::Malformed));
        assert_eq!(signer.verify(""), Err(TokenError::Malformed));
    }
}
