//! `admesh.edge.v1.EdgeAdmin`: logins, users, API keys and rate-limit
//! rules. The edge serves it in-process and reaches it through the same
//! REST transcoding as every other service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use admesh_common::time::{now_millis, timestamp};
use admesh_proto::edge::v1::{
    CreateApiKeyRequest, CreateApiKeyResponse, CreateUserRequest, DeleteRateLimitRuleRequest,
    DeleteRateLimitRuleResponse, ListRateLimitRulesRequest, ListRateLimitRulesResponse,
    LoginRequest, LoginResponse, RateLimitRule, RateLimitScope, SetRateLimitRuleRequest, User,
    edge_admin_server::EdgeAdmin,
};

use crate::{
    auth::{Authenticator, Identity, Role, store::CreateUserError},
    ratelimit::{self, RateLimiter, Rule, Scope},
};

#[derive(Clone, Debug)]
pub struct EdgeAdminService {
    pub auth: Authenticator,
    pub limiter: Arc<RateLimiter>,
    /// Whether a route key names a real route (for rule scopes).
    pub route_keys: Arc<Vec<String>>,
}

fn require_admin<T>(request: &Request<T>) -> Result<(), Status> {
    match admesh_common::identity::caller(request.metadata()).1 {
        Some(Role::Admin) => Ok(()),
        Some(_) => Err(Status::permission_denied("this needs the admin role")),
        None => Err(Status::unauthenticated("this needs an admin's credentials")),
    }
}

fn proto_user(record: &crate::auth::store::UserRecord) -> User {
    User {
        id: record.id.clone(),
        username: record.username.clone(),
        role: record.role.to_proto(),
        created_at: Some(timestamp(record.created_at_ms)),
    }
}

fn role_field(value: i32, field: &str) -> Result<Role, Status> {
    Role::from_proto(value).ok_or_else(|| {
        Status::invalid_argument(format!(
            "{field}: one of ROLE_VIEWER, ROLE_OPERATOR, ROLE_ADMIN"
        ))
    })
}

fn scope_of(value: i32) -> Option<Scope> {
    match RateLimitScope::try_from(value).ok()? {
        RateLimitScope::User => Some(Scope::User),
        RateLimitScope::Route => Some(Scope::Route),
        RateLimitScope::Global => Some(Scope::Global),
        RateLimitScope::Unspecified => None,
    }
}

fn proto_scope(scope: Scope) -> i32 {
    match scope {
        Scope::User => RateLimitScope::User as i32,
        Scope::Route => RateLimitScope::Route as i32,
        Scope::Global => RateLimitScope::Global as i32,
    }
}

fn proto_rule(rule: &Rule) -> RateLimitRule {
    RateLimitRule {
        key: rule.key.clone(),
        name: rule.name.clone(),
        scope_type: proto_scope(rule.scope),
        scope_id: rule.scope_id.clone(),
        refill_rate: rule.refill_rate,
        capacity: rule.capacity,
        updated_at: Some(timestamp(rule.updated_at_ms)),
    }
}

fn storage(error: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %error, "edge storage failed");
    Status::unavailable("the edge's database is unavailable")
}

#[tonic::async_trait]
impl EdgeAdmin for EdgeAdminService {
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let request = request.into_inner();
        if request.username.is_empty() {
            return Err(Status::invalid_argument("username: required"));
        }
        if request.password.is_empty() {
            return Err(Status::invalid_argument("password: required"));
        }
        if request.password.len() > 256 {
            return Err(Status::unauthenticated("invalid username or password"));
        }
        let user = self
            .auth
            .store
            .check_password(&request.username, &request.password)
            .await
            .map_err(storage)?
            .ok_or_else(|| Status::unauthenticated("invalid username or password"))?;
        let identity = Identity {
            subject: format!("user:{}", user.username),
            role: user.role,
        };
        let (token, expires) = self
            .auth
            .tokens
            .issue(&identity, now_millis() / 1000)
            .map_err(|error| Status::internal(format!("issuing a token: {error}")))?;
        Ok(Response::new(LoginResponse {
            token,
            expires_at: Some(timestamp(expires * 1000)),
            user: Some(proto_user(&user)),
        }))
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let username_ok = (3..=64).contains(&request.username.len())
            && request
                .username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !username_ok {
            return Err(Status::invalid_argument(
                "username: 3–64 characters of letters, digits, '-', '_', '.'",
            ));
        }
        if !(12..=256).contains(&request.password.chars().count()) {
            return Err(Status::invalid_argument("password: 12–256 characters"));
        }
        let role = role_field(request.role, "role")?;
        match self
            .auth
            .store
            .create_user(&request.username, &request.password, role)
            .await
        {
            Ok(record) => Ok(Response::new(proto_user(&record))),
            Err(CreateUserError::AlreadyExists(name)) => {
                Err(Status::already_exists(format!("username: {name} is taken")))
            }
            Err(CreateUserError::Storage(error)) => Err(storage(error)),
        }
    }

    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        if request.name.trim().is_empty() || request.name.chars().count() > 100 {
            return Err(Status::invalid_argument("name: 1–100 characters"));
        }
        let role = role_field(request.role, "role")?;
        let (id, key) = self
            .auth
            .store
            .create_api_key(&request.name, role)
            .await
            .map_err(storage)?;
        Ok(Response::new(CreateApiKeyResponse {
            id,
            key,
            role: role.to_proto(),
        }))
    }

    async fn set_rate_limit_rule(
        &self,
        request: Request<SetRateLimitRuleRequest>,
    ) -> Result<Response<RateLimitRule>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let scope = scope_of(request.scope_type)
            .ok_or_else(|| Status::invalid_argument("scope_type: one of user, route, global"))?;
        ratelimit::validate(
            &request.name,
            scope,
            &request.scope_id,
            request.refill_rate,
            request.capacity,
            |route| self.route_keys.iter().any(|key| key == route),
        )
        .map_err(Status::invalid_argument)?;
        let rule = Rule {
            key: ratelimit::rule_key(&request.name, scope, &request.scope_id),
            name: request.name,
            scope,
            scope_id: request.scope_id,
            refill_rate: request.refill_rate,
            capacity: request.capacity,
            updated_at_ms: now_millis(),
        };
        self.limiter.save(&rule).await.map_err(storage)?;
        Ok(Response::new(proto_rule(&rule)))
    }

    async fn list_rate_limit_rules(
        &self,
        request: Request<ListRateLimitRulesRequest>,
    ) -> Result<Response<ListRateLimitRulesResponse>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        self.limiter.reload().await.map_err(storage)?;
        let scope = scope_of(request.scope_type);
        let rules = self
            .limiter
            .rules()
            .iter()
            .filter(|rule| request.name.is_empty() || rule.name == request.name)
            .filter(|rule| scope.is_none_or(|scope| rule.scope == scope))
            .filter(|rule| request.scope_id.is_empty() || rule.scope_id == request.scope_id)
            .map(proto_rule)
            .collect();
        Ok(Response::new(ListRateLimitRulesResponse { rules }))
    }

    async fn delete_rate_limit_rule(
        &self,
        request: Request<DeleteRateLimitRuleRequest>,
    ) -> Result<Response<DeleteRateLimitRuleResponse>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let key = if !request.key.is_empty() {
            request.key
        } else {
            let scope = scope_of(request.scope_type).ok_or_else(|| {
                Status::invalid_argument("key, or name + scope_type + scope_id: one is required")
            })?;
            if request.name.is_empty() {
                return Err(Status::invalid_argument("name: required without a key"));
            }
            ratelimit::rule_key(&request.name, scope, &request.scope_id)
        };
        let deleted = self.limiter.delete(&key).await.map_err(storage)?;
        Ok(Response::new(DeleteRateLimitRuleResponse { deleted }))
    }
}
