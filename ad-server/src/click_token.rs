//! Click tokens: what a click-tracking URL carries. The claims (impression,
//! ad, campaign, user, placement, redirect) are signed with HMAC-SHA256, so
//! a forged or altered token is refused and the redirect cannot be pointed
//! elsewhere. Format: `base64url(payload) "." base64url(mac over the first
//! part)`.
//!
//! The payload is binary: a version byte (1), the issue time (i64, big
//! endian), then each claim as a u16 big-endian length and its UTF-8 bytes.
//! Tokens issued before it carry the claims as JSON (their payload starts
//! with `{`) and still verify, so clicks on ads served before an upgrade
//! count.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted (claims are a few hundred bytes).
const MAX_TOKEN_LEN: usize = 4096;

/// The first byte of a binary payload.
const BINARY_V1: u8 = 1;

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

/// The claims to sign, borrowed: serving signs what it already holds.
#[derive(Clone, Copy, Debug)]
pub struct ClaimsToSign<'a> {
    pub impression_id: &'a str,
    pub ad_id: &'a str,
    pub campaign_id: &'a str,
    pub user_id: &'a str,
    pub placement_id: &'a str,
    pub redirect_url: &'a str,
    pub issued_at: i64,
}

impl<'a> From<&'a ClickClaims> for ClaimsToSign<'a> {
    fn from(claims: &'a ClickClaims) -> Self {
        Self {
            impression_id: &claims.impression_id,
            ad_id: &claims.ad_id,
            campaign_id: &claims.campaign_id,
            user_id: &claims.user_id,
            placement_id: &claims.placement_id,
            redirect_url: &claims.redirect_url,
            issued_at: claims.issued_at,
        }
    }
}

impl ClaimsToSign<'_> {
    /// The binary payload (see the module docs); `None` when a claim is
    /// longer than a u16 length can say.
    fn encode(&self) -> Option<Vec<u8>> {
        let fields = [
            self.impression_id,
            self.ad_id,
            self.campaign_id,
            self.user_id,
            self.placement_id,
            self.redirect_url,
        ];
        let mut payload =
            Vec::with_capacity(9 + fields.iter().map(|field| 2 + field.len()).sum::<usize>());
        payload.push(BINARY_V1);
        payload.extend_from_slice(&self.issued_at.to_be_bytes());
        for field in fields {
            payload.extend_from_slice(&u16::try_from(field.len()).ok()?.to_be_bytes());
            payload.extend_from_slice(field.as_bytes());
        }
        Some(payload)
    }
}

/// The claims of a binary payload.
fn decode_binary(payload: &[u8]) -> Option<ClickClaims> {
    let (&version, rest) = payload.split_first()?;
    if version != BINARY_V1 {
        return None;
    }
    let (time, mut rest) = rest.split_first_chunk::<8>()?;
    let mut next = || -> Option<String> {
        let (length, tail) = rest.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_be_bytes(*length));
        if tail.len() < length {
            return None;
        }
        let (field, tail) = tail.split_at(length);
        rest = tail;
        String::from_utf8(field.to_vec()).ok()
    };
    let claims = ClickClaims {
        impression_id: next()?,
        ad_id: next()?,
        campaign_id: next()?,
        user_id: next()?,
        placement_id: next()?,
        redirect_url: next()?,
        issued_at: i64::from_be_bytes(*time),
    };
    rest.is_empty().then_some(claims)
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
    /// Keyed once: each token clones the keyed state instead of deriving
    /// the key pads again.
    keyed: HmacSha256,
}

impl std::fmt::Debug for ClickSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClickSigner")
    }
}

impl ClickSigner {
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        Self {
            // HMAC takes keys of any length.
            keyed: HmacSha256::new_from_slice(key.as_ref())
                .unwrap_or_else(|_| unreachable!("HMAC accepts any key length")),
        }
    }

    pub fn sign(&self, claims: &ClickClaims) -> String {
        let mut token = String::new();
        self.sign_into(claims.into(), &mut token);
        token
    }

    /// Appends the token for `claims` to `out` (e.g. after a click URL's
    /// prefix, so the URL is built in one string). A claim over 65,535
    /// bytes cannot be carried: the ad-server's inputs are far shorter, and
    /// such a token would be refused anyway, so it appends nothing then.
    pub fn sign_into(&self, claims: ClaimsToSign<'_>, out: &mut String) {
        let Some(payload) = claims.encode() else {
            return;
        };
        let start = out.len();
        URL_SAFE_NO_PAD.encode_string(&payload, out);
        let mut mac = self.keyed.clone();
        mac.update(&out.as_bytes()[start..]);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), out);
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
        let mut mac = self.keyed.clone();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        match payload.first() {
            Some(b'{') => serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed),
            _ => decode_binary(&payload).ok_or(TokenError::Malformed),
        }
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
        let altered_payload = URL_SAFE_NO_PAD.encode(
            ClaimsToSign::from(&altered_claims)
                .encode()
                .expect("short claims"),
        );
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

    #[test]
    fn tokens_in_the_earlier_json_format_still_verify() {
        let signer = ClickSigner::new(*b"key one");
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).expect("json"));
        let mut mac = signer.keyed.clone();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(
            signer.verify(&format!("{payload}.{signature}")),
            Ok(claims())
        );
    }

    #[test]
    fn signed_but_truncated_or_padded_payloads_are_malformed() {
        let signer = ClickSigner::new(*b"key one");
        let encoded = ClaimsToSign::from(&claims())
            .encode()
            .expect("short claims");
        let sign = |payload: &[u8]| {
            let payload = URL_SAFE_NO_PAD.encode(payload);
            let mut mac = signer.keyed.clone();
            mac.update(payload.as_bytes());
            format!(
                "{payload}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        let mut padded = encoded.clone();
        padded.push(0);
        let mut other_version = encoded.clone();
        other_version[0] = 2;
        for payload in [
            &encoded[..encoded.len() - 1],
            &padded,
            &other_version,
            &[][..],
        ] {
            assert_eq!(signer.verify(&sign(payload)), Err(TokenError::Malformed));
        }
        assert_eq!(signer.verify(&sign(&encoded)), Ok(claims()));
    }

    #[test]
    fn a_token_is_appended_to_what_the_url_already_holds() {
        let signer = ClickSigner::new(*b"key one");
        let mut url = String::from("https://ads.example/v1/click?t=");
        signer.sign_into((&claims()).into(), &mut url);
        let token = url
            .strip_prefix("https://ads.example/v1/click?t=")
            .expect("prefix kept");
        assert_eq!(token, signer.sign(&claims()));
        assert_eq!(signer.verify(token), Ok(claims()));
    }
}
