//! Bearer JWTs (HS256), signed with a key every edge replica shares.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{Identity, Role};

const ISSUER: &str = "admesh-edge";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// `user:<name>`.
    sub: String,
    role: String,
    iat: i64,
    exp: i64,
    iss: String,
}

/// Issues and checks tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// A token for `identity`, valid from `now_secs`; and when it expires.
    pub fn issue(&self, identity: &Identity, now_secs: i64) -> anyhow::Result<(String, i64)> {
        let expires = now_secs + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: identity.subject.clone(),
            role: identity.role.as_str().to_string(),
            iat: now_secs,
            exp: expires,
            iss: ISSUER.to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, expires))
    }

    /// The identity in a valid token; why not, otherwise.
    pub fn verify(&self, token: &str) -> Result<Identity, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                _ => "the token is not valid",
            },
        )?;
        let role = Role::parse(&data.claims.role).ok_or("the token is not valid")?;
        Ok(Identity {
            subject: data.claims.sub,
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            subject: "user:alice".into(),
            role: Role::Operator,
        }
    }

    fn now() -> i64 {
        admesh_common::time::now_millis() / 1000
    }

    #[test]
    fn a_token_carries_its_identity() {
        let issuer = TokenIssuer::new(b"k", Duration::from_secs(60));
        let (token, expires) = issuer.issue(&alice(), now()).expect("token");
        assert!(expires > now());
        assert_eq!(issuer.verify(&token), Ok(alice()));
    }

    #[test]
    fn tampered_foreign_and_expired_tokens_are_refused() {
        let issuer = TokenIssuer::new(b"k", Duration::from_secs(60));
        let (token, _) = issuer.issue(&alice(), now()).expect("token");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Re-encode the payload with an admin role but keep the signature.
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(engine.decode(&parts[1]).expect("b64")).expect("utf8");
        parts[1] = engine.encode(payload.replace("operator", "admin"));
        assert_eq!(
            issuer.verify(&parts.join(".")),
            Err("the token is not valid".into())
        );

        let other = TokenIssuer::new(b"other", Duration::from_secs(60));
        assert!(other.verify(&token).is_err());

        let (old, _) = issuer.issue(&alice(), now() - 3600).expect("token");
        assert_eq!(issuer.verify(&old), Err("the token has expired".into()));
        assert!(issuer.verify("not-a-token").is_err());
    }
}
