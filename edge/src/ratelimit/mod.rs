//! Rate limiting: token buckets per client (user, API key or IP) and
//! route, by rules created through the API (seed 004's "persisted per-client
//! rate limits"). Rules live in SQL and every replica reloads them each
//! second; buckets live in Redis in the cluster profile, so all replicas
//! count against the same ones.

pub mod bucket;
pub mod store;

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;

use admesh_common::{Database, on_pool};

use self::{bucket::Decision, store::BucketStore};

/// Who a rule limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One client (`user:<name>`, `key:<id>`, `ip:<address>`), or `*`: each
    /// client its own bucket, on every route.
    User,
    /// One route (`GET /serve`), or `*`: each client its own bucket per
    /// route.
    Route,
    /// Everyone together: on one route, or on all (`*` or empty).
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Route => "route",
            Scope::Global => "global",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Scope::User),
            "route" => Some(Scope::Route),
            "global" => Some(Scope::Global),
            _ => None,
        }
    }
}

/// A rule as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub key: String,
    pub name: String,
    pub scope: Scope,
    pub scope_id: String,
    pub refill_rate: f64,
    pub capacity: u32,
    pub updated_at_ms: i64,
}

/// `<name>:<scope>:<scope_id>`.
pub fn rule_key(name: &str, scope: Scope, scope_id: &str) -> String {
    format!("{name}:{}:{scope_id}", scope.as_str())
}

/// Checks a rule's fields; the error names the field.
pub fn validate(
    name: &str,
    scope: Scope,
    scope_id: &str,
    refill_rate: f64,
    capacity: u32,
    known_route: impl Fn(&str) -> bool,
) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("name: 1–100 characters of letters, digits, '-', '_', '.'".into());
    }
    if scope_id.len() > 200 {
        return Err("scope_id: at most 200 characters".into());
    }
    match scope {
        Scope::User if scope_id.is_empty() => {
            return Err("scope_id: a client (user:<name>, key:<id>, ip:<address>) or *".into());
        }
        Scope::User
            if scope_id != "*"
                && !["user:", "key:", "ip:"]
                    .iter()
                    .any(|p| scope_id.starts_with(p)) =>
        {
            return Err(format!(
                "scope_id: {scope_id:?} is not a client; use user:<name>, key:<id>, ip:<address> or *"
            ));
        }
        Scope::Route | Scope::Global
            if !scope_id.is_empty() && scope_id != "*" && !known_route(scope_id) =>
        {
            return Err(format!(
                "scope_id: {scope_id:?} is not a route; use the form \"GET /serve\" or *"
            ));
        }
        Scope::Route if scope_id.is_empty() => {
            return Err("scope_id: a route (\"GET /serve\") or *".into());
        }
        _ => {}
    }
    if !refill_rate.is_finite() || refill_rate <= 0.0 || refill_rate > 1e6 {
        return Err("refill_rate: tokens per second, greater than 0 and at most 1,000,000".into());
    }
    if capacity == 0 || capacity > 1_000_000 {
        return Err("capacity: 1 to 1,000,000 tokens".into());
    }
    Ok(())
}

/// The buckets a request on `route` by `client` takes from: (bucket key,
/// rule).
pub fn applicable<'a>(rules: &'a [Rule], route: &str, client: &str) -> Vec<(String, &'a Rule)> {
    rules
        .iter()
        .filter_map(|rule| {
            let bucket = match rule.scope {
                Scope::User if rule.scope_id == client || rule.scope_id == "*" => {
                    format!("{}|{client}", rule.key)
                }
                Scope::Route if rule.scope_id == route => format!("{}|{client}", rule.key),
                Scope::Route if rule.scope_id == "*" => format!("{}|{route}|{client}", rule.key),
                Scope::Global if rule.scope_id.is_empty() || rule.scope_id == "*" => {
                    rule.key.clone()
                }
                Scope::Global if rule.scope_id == route => rule.key.clone(),
                _ => return None,
            };
            Some((bucket, rule))
        })
        .collect()
}

/// How often every replica reloads the rules.
pub const RULE_RELOAD: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct RateLimiter {
    database: Database,
    rules: ArcSwap<Vec<Rule>>,
    buckets: Arc<dyn BucketStore>,
}

impl RateLimiter {
    pub fn new(database: Database, buckets: Arc<dyn BucketStore>) -> Self {
        Self {
            database,
            rules: ArcSwap::from_pointee(Vec::new()),
            buckets,
        }
    }

    pub fn rules(&self) -> Arc<Vec<Rule>> {
        self.rules.load_full()
    }

    /// Takes a token from every bucket that applies. `None` when no rule
    /// applies; otherwise the most restrictive decision. A bucket store that
    /// fails lets the request through (availability over strictness) and
    /// says so in the log.
    /// `client` names the caller (`user:…`, `key:…`, `ip:…`); it is only
    /// asked for when there are rules.
    pub async fn check(&self, route: &str, client: impl FnOnce() -> String) -> Option<Decision> {
        let rules = self.rules.load();
        if rules.is_empty() {
            return None;
        }
        let client = client();
        let mut verdict: Option<Decision> = None;
        for (bucket, rule) in applicable(&rules, route, &client) {
            match self
                .buckets
                .take(&bucket, rule.capacity, rule.refill_rate)
                .await
            {
                Ok(decision) => {
                    let tighter = verdict.is_none_or(|current| {
                        (!decision.allowed && current.allowed)
                            || (decision.allowed == current.allowed
                                && decision.remaining < current.remaining)
                    });
                    if tighter {
                        verdict = Some(decision);
                    }
                }
                Err(error) => {
                    tracing::warn!(rule = %rule.key, error = %error, "rate-limit bucket unavailable; allowing");
                }
            }
        }
        verdict
    }

    /// Reloads the rules from SQL.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let rows: Vec<(String, String, String, String, f64, i32, i64)> = on_pool!(&self.database, pool => {
            sqlx::query_as(
                "SELECT rule_key, name, scope_type, scope_id, refill_rate, capacity, updated_at \
                 FROM rate_limit_rules ORDER BY rule_key",
            )
            .fetch_all(pool)
            .await?
        });
        let rules = rows
            .into_iter()
            .filter_map(
                |(key, name, scope, scope_id, refill_rate, capacity, updated_at_ms)| {
                    Some(Rule {
                        key,
                        name,
                        scope: Scope::parse(&scope)?,
                        scope_id,
                        refill_rate,
                        capacity: u32::try_from(capacity).ok()?,
                        updated_at_ms,
                    })
                },
            )
            .collect();
        self.rules.store(Arc::new(rules));
        Ok(())
    }

    /// Reloads every [`RULE_RELOAD`] until `shutdown`.
    pub async fn keep_reloading(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(RULE_RELOAD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(error) = self.reload().await {
                        tracing::warn!(error = %error, "reloading rate-limit rules failed");
                    }
                }
            }
        }
    }

    /// Creates or replaces a rule (already validated).
    pub async fn save(&self, rule: &Rule) -> anyhow::Result<()> {
        on_pool!(&self.database, pool => {
            sqlx::query(
                "INSERT INTO rate_limit_rules \
                 (rule_key, name, scope_type, scope_id, refill_rate, capacity, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (rule_key) DO UPDATE SET refill_rate = excluded.refill_rate, \
                 capacity = excluded.capacity, updated_at = excluded.updated_at",
            )
            .bind(&rule.key)
            .bind(&rule.name)
            .bind(rule.scope.as_str())
            .bind(&rule.scope_id)
            .bind(rule.refill_rate)
            // INTEGER in both dialects; validated to at most 1,000,000.
            .bind(i32::try_from(rule.capacity).unwrap_or(i32::MAX))
            .bind(rule.updated_at_ms)
            .execute(pool)
            .await?;
        });
        self.reload().await
    }

    /// Deletes a rule; whether it existed.
    pub async fn delete(&self, key: &str) -> anyhow::Result<bool> {
        let deleted = on_pool!(&self.database, pool => {
            sqlx::query("DELETE FROM rate_limit_rules WHERE rule_key = $1")
                .bind(key)
                .execute(pool)
                .await?
                .rows_affected()
        });
        self.reload().await?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(scope: Scope, scope_id: &str) -> Rule {
        Rule {
            key: rule_key("r", scope, scope_id),
            name: "r".into(),
            scope,
            scope_id: scope_id.into(),
            refill_rate: 1.0,
            capacity: 1,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn buckets_are_per_client_per_route_or_shared_as_the_scope_says() {
        let rules = vec![
            rule(Scope::User, "user:alice"),
            rule(Scope::User, "*"),
            rule(Scope::Route, "GET /serve"),
            rule(Scope::Route, "*"),
            rule(Scope::Global, ""),
            rule(Scope::Global, "POST /api/v1/ads"),
        ];
        let buckets = |route: &str, client: &str| -> Vec<String> {
            applicable(&rules, route, client)
                .into_iter()
                .map(|(bucket, _)| bucket)
                .collect()
        };
        assert_eq!(
            buckets("GET /serve", "user:alice"),
            vec![
                "r:user:user:alice|user:alice",
                "r:user:*|user:alice",
                "r:route:GET /serve|user:alice",
                "r:route:*|GET /serve|user:alice",
                "r:global:",
            ]
        );
        assert_eq!(
            buckets("POST /api/v1/ads", "ip:10.0.0.1"),
            vec![
                "r:user:*|ip:10.0.0.1",
                "r:route:*|POST /api/v1/ads|ip:10.0.0.1",
                "r:global:",
                "r:global:POST /api/v1/ads",
            ]
        );
    }

    #[test]
    fn rules_are_validated_field_by_field() {
        let known = |route: &str| route == "GET /serve";
        assert!(validate("serve", Scope::Route, "GET /serve", 10.0, 20, known).is_ok());
        assert!(validate("all", Scope::Global, "", 10.0, 20, known).is_ok());
        let error = |name, scope, id, rate, cap| {
            validate(name, scope, id, rate, cap, known).expect_err("refused")
        };
        assert!(error("", Scope::Global, "", 1.0, 1).starts_with("name"));
        assert!(error("x y", Scope::Global, "", 1.0, 1).starts_with("name"));
        assert!(error("x", Scope::Route, "GET /nope", 1.0, 1).starts_with("scope_id"));
        assert!(error("x", Scope::User, "alice", 1.0, 1).starts_with("scope_id"));
        assert!(error("x", Scope::User, "", 1.0, 1).starts_with("scope_id"));
        assert!(error("x", Scope::Global, "", 0.0, 1).starts_with("refill_rate"));
        assert!(error("x", Scope::Global, "", f64::NAN, 1).starts_with("refill_rate"));
        assert!(error("x", Scope::Global, "", 1.0, 0).starts_with("capacity"));
    }
}
