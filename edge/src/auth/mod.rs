//! Who is calling and what they may do: bearer JWTs from `POST /auth/login`
//! (users with argon2 password hashes) and API keys for service clients,
//! with the roles viewer < operator < admin. The identity travels to the
//! services as gRPC metadata (`x-admesh-user`, `x-admesh-role`).

pub mod store;
pub mod tokens;

use std::sync::Arc;

use http::HeaderMap;
use tonic::Code;

use self::{store::AuthStore, tokens::TokenIssuer};
use crate::error::ApiError;

pub use admesh_common::identity::Role;

/// What a route needs (from the RPC's `admesh.common.v1.rest` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    Viewer,
    Operator,
    Admin,
}

impl Access {
    pub fn required_role(self) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::Viewer => Some(Role::Viewer),
            Access::Operator => Some(Role::Operator),
            Access::Admin => Some(Role::Admin),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Viewer => "viewer",
            Access::Operator => "operator",
            Access::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `user:<name>` or `key:<id>`: what rate limits and the audit log
    /// name.
    pub subject: String,
    pub role: Role,
}

/// Decides 401 (who are you?) and 403 (not allowed) for a route.
pub fn authorize(access: Access, identity: Option<&Identity>) -> Result<(), ApiError> {
    let Some(required) = access.required_role() else {
        return Ok(());
    };
    match identity {
        None => Err(ApiError::new(
            Code::Unauthenticated,
            "this route needs a bearer token (POST /auth/login) or an API key",
        )),
        Some(identity) if identity.role < required => Err(ApiError::new(
            Code::PermissionDenied,
            format!(
                "this route needs the {} role; {} has {}",
                required.as_str(),
                identity.subject,
                identity.role.as_str()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Checks credentials: JWTs by signature and expiry, API keys by their hash.
#[derive(Clone, Debug)]
pub struct Authenticator {
    pub tokens: TokenIssuer,
    pub store: Arc<AuthStore>,
}

/// API keys look like `amk_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "amk_";

impl Authenticator {
    /// The caller's identity from `Authorization: Bearer …`, `X-API-Key`, or
    /// (for browsers' EventSource, which cannot set headers) an
    /// `access_token` query value. `Ok(None)` without credentials; 401 for
    /// credentials that do not check out.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Option<Identity>, ApiError> {
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .unwrap_or(value)
                    .trim()
            });
        let api_key = headers
            .get("x-api-key")
            .and_then(|value| value.to_str().ok());
        let Some(credential) = bearer.or(api_key).or(query_token) else {
            return Ok(None);
        };
        let invalid = |why: &str| ApiError::new(Code::Unauthenticated, why.to_string());
        if credential.starts_with(API_KEY_PREFIX) {
            return match self.store.api_key_identity(credential).await {
                Ok(Some(identity)) => Ok(Some(identity)),
                Ok(None) => Err(invalid("unknown or revoked API key")),
                Err(error) => {
                    tracing::warn!(error = %error, "checking an API key failed");
                    Err(ApiError::new(
                        Code::Unavailable,
                        "cannot check credentials now",
                    ))
                }
            };
        }
        self.tokens
            .verify(credential)
            .map(Some)
            .map_err(|why| invalid(&why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role) -> Identity {
        Identity {
            subject: "user:u".into(),
            role,
        }
    }

    #[test]
    fn every_role_against_every_route_class() {
        use Access::*;
        let roles = [
            None,
            Some(Role::Viewer),
            Some(Role::Operator),
            Some(Role::Admin),
        ];
        // (access, expected HTTP status per caller: anonymous, viewer, operator, admin)
        let table = [
            (Public, [200, 200, 200, 200]),
            (Viewer, [401, 200, 200, 200]),
            (Operator, [401, 403, 200, 200]),
            (Admin, [401, 403, 403, 200]),
        ];
        for (access, expected) in table {
            for (role, status) in roles.iter().zip(expected) {
                let identity = role.map(who);
                let got = match authorize(access, identity.as_ref()) {
                    Ok(()) => 200,
                    Err(error) => crate::error::http_status(error.code).as_u16(),
                };
                assert_eq!(got, status, "{access:?} as {role:?}");
            }
        }
    }
}
