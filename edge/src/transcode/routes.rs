//! The REST routes, read from the `google.api.http` and
//! `admesh.common.v1.rest` options of every RPC in the descriptor sets.

use std::{collections::HashMap, sync::Arc};

use anyhow::{Context, bail};
use http::{Method, StatusCode, uri::PathAndQuery};
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MethodDescriptor, Value};

use admesh_proto::google::api::{HttpRule, http_rule::Pattern};

use super::template::{Binding, PathTemplate, split_path};
use crate::auth::Access;

/// Where a route's request fields come from besides the path.
#[derive(Clone, Debug)]
pub enum BodyRule {
    /// No body: the remaining fields come from the query string.
    None,
    /// `body: "*"`: every field the path does not bind.
    Whole,
    /// `body: "field"`: that field; the rest from the query string.
    Field(FieldDescriptor),
}

/// How a success is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The response message as JSON, with the route's success status.
    Json,
    /// 302 to the response's `redirect_url`: click tracking followed by a
    /// browser (`GET /v1/click`), where HTTP semantics demand it.
    Redirect,
    /// 204: the seed's `POST /click`.
    NoContent,
}

/// One HTTP binding of an RPC.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: Method,
    pub template: PathTemplate,
    pub rpc: MethodDescriptor,
    pub body: BodyRule,
    /// `response_body`: answer with this field of the response only.
    pub response_body: Option<FieldDescriptor>,
    pub access: Access,
    pub success: StatusCode,
    pub answer: Answer,
    /// `/package.Service/Method`.
    pub grpc_path: PathAndQuery,
    /// `"GET /api/v1/ads/{ad_id}"`: what rate-limit rules and metrics name.
    pub key: String,
    /// The request's own fields by proto and JSON name, found once here
    /// rather than in the descriptor for every query parameter of every call.
    pub top_level_fields: HashMap<Box<str>, FieldDescriptor, admesh_common::FastHash>,
}

impl Route {
    pub fn service_name(&self) -> &str {
        self.rpc.parent_service().full_name()
    }
}

/// What a request resolves to.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(&'a Arc<Route>, Vec<Binding>),
    /// The path exists for these other methods.
    MethodNotAllowed(Vec<Method>),
    NotFound,
    /// The path is not valid percent-encoded UTF-8.
    BadPath,
}

/// Every route, looked up by method and path.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    /// Templates without variables, by method and path: most requests,
    /// found without allocating.
    literal: HashMap<Method, HashMap<String, usize>>,
    /// The rest, most literal segments first, so `/api/v1/ads/analytics`
    /// beats `/api/v1/ads/{ad_id}`.
    patterned: Vec<usize>,
}

impl RouteTable {
    /// Reads the routes of every service in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> anyhow::Result<Self> {
        let http = pool
            .get_extension_by_name("google.api.http")
            .context("descriptors lack google.api.http")?;
        let rest = pool
            .get_extension_by_name("admesh.common.v1.rest")
            .context("descriptors lack admesh.common.v1.rest")?;
        let mut table = Self::default();
        for service in pool.services() {
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&http) {
                    continue;
                }
                if rpc.is_client_streaming() || rpc.is_server_streaming() {
                    bail!("{}: streaming RPCs have no REST binding", rpc.full_name());
                }
                let rule: HttpRule = match options.get_extension(&http).as_ref() {
                    Value::Message(message) => message
                        .transcode_to()
                        .with_context(|| format!("{}: bad google.api.http", rpc.full_name()))?,
                    _ => bail!("{}: google.api.http is not a message", rpc.full_name()),
                };
                let (access, success) = rest_options(&options, &rest);
                for binding in std::iter::once(&rule).chain(rule.additional_bindings.iter()) {
                    table.add(Route::new(&rpc, binding, access, success)?)?;
                }
            }
        }
        let routes = &table.routes;
        table
            .patterned
            .sort_by_key(|&index| std::cmp::Reverse(routes[index].template.literal_count()));
        Ok(table)
    }

    fn add(&mut self, route: Route) -> anyhow::Result<()> {
        let index = self.routes.len();
        if route.template.is_literal() {
            let by_path = self.literal.entry(route.method.clone()).or_default();
            if by_path
                .insert(route.template.as_str().to_string(), index)
                .is_some()
            {
                bail!("two RPCs bind {}", route.key);
            }
        } else {
            self.patterned.push(index);
        }
        self.routes.push(Arc::new(route));
        Ok(())
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route named `"GET /serve"`-style, as rate-limit rules name it.
    pub fn find(&self, key: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| route.key == key)
    }

    /// The route for `method` and the raw (still percent-encoded) `path`.
    /// Routes without variables (most requests) are found by the raw path;
    /// only the others need it split and decoded.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        if let Some(&index) = self
            .literal
            .get(method)
            .and_then(|by_path| by_path.get(path))
        {
            return Lookup::Found(&self.routes[index], Vec::new());
        }
        let Some(segments) = split_path(path) else {
            return Lookup::BadPath;
        };
        let segments = segments.as_slice();
        for &index in &self.patterned {
            let route = &self.routes[index];
            if route.method == *method
                && let Some(bindings) = route.template.matches(segments)
            {
                return Lookup::Found(route, bindings);
            }
        }
        let mut allowed: Vec<Method> = self
            .routes
            .iter()
            .filter(|route| route.template.matches(segments).is_some())
            .map(|route| route.method.clone())
            .collect();
        allowed.dedup();
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed(allowed)
        }
    }
}

fn rest_options(
    options: &DynamicMessage,
    rest: &prost_reflect::ExtensionDescriptor,
) -> (Option<Access>, StatusCode) {
    if !options.has_extension(rest) {
        return (None, StatusCode::OK);
    }
    let Value::Message(message) = options.get_extension(rest).into_owned() else {
        return (None, StatusCode::OK);
    };
    let access = match message.get_field_by_name("access").as_deref() {
        Some(Value::EnumNumber(1)) => Some(Access::Public),
        Some(Value::EnumNumber(2)) => Some(Access::Viewer),
        Some(Value::EnumNumber(3)) => Some(Access::Operator),
        Some(Value::EnumNumber(4)) => Some(Access::Admin),
        _ => None,
    };
    let success = match message.get_field_by_name("success_status").as_deref() {
        Some(Value::U32(code)) if *code != 0 => u16::try_from(*code)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok()),
        _ => None,
    };
    (access, success.unwrap_or(StatusCode::OK))
}

impl Route {
    fn new(
        rpc: &MethodDescriptor,
        rule: &HttpRule,
        access: Option<Access>,
        success: StatusCode,
    ) -> anyhow::Result<Self> {
        let name = rpc.full_name();
        let (method, path) = match &rule.pattern {
            Some(Pattern::Get(path)) => (Method::GET, path),
            Some(Pattern::Post(path)) => (Method::POST, path),
            Some(Pattern::Put(path)) => (Method::PUT, path),
            Some(Pattern::Delete(path)) => (Method::DELETE, path),
            Some(Pattern::Patch(path)) => (Method::PATCH, path),
            Some(Pattern::Custom(custom)) => (
                Method::from_bytes(custom.kind.as_bytes())
                    .with_context(|| format!("{name}: bad custom method {:?}", custom.kind))?,
                &custom.path,
            ),
            None => bail!("{name}: google.api.http without a pattern"),
        };
        let template = PathTemplate::parse(path).with_context(|| name.to_string())?;
        let input = rpc.input();
        for variable in template.variables() {
            field_at(&input, variable).with_context(|| {
                format!(
                    "{name}: path variable {} is not a field",
                    variable.join(".")
                )
            })?;
        }
        let body = match rule.body.as_str() {
            "" => BodyRule::None,
            "*" => BodyRule::Whole,
            field => BodyRule::Field(
                input
                    .get_field_by_name(field)
                    .with_context(|| format!("{name}: body field {field:?} does not exist"))?,
            ),
        };
        let response_body = match rule.response_body.as_str() {
            "" => None,
            field => Some(rpc.output().get_field_by_name(field).with_context(|| {
                format!("{name}: response_body field {field:?} does not exist")
            })?),
        };
        let access = access.unwrap_or(if method == Method::GET {
            Access::Viewer
        } else {
            Access::Operator
        });
        let grpc_path = PathAndQuery::try_from(format!(
            "/{}/{}",
            rpc.parent_service().full_name(),
            rpc.name()
        ))?;
        // Click tracking is the one RPC whose HTTP answer is not its JSON.
        let answer = match (name, &method) {
            ("admesh.adserver.v1.AdServer.Click", &Method::GET) => Answer::Redirect,
            ("admesh.adserver.v1.AdServer.Click", _) => Answer::NoContent,
            _ => Answer::Json,
        };
        // JSON names first, so a proto name wins where the two collide,
        // as in `json::field_named`.
        let top_level_fields = input
            .fields()
            .map(|field| (Box::from(field.json_name()), field))
            .chain(input.fields().map(|field| (Box::from(field.name()), field)))
            .collect();
        Ok(Self {
            answer,
            top_level_fields,
            key: format!("{method} {path}"),
            method,
            template,
            rpc: rpc.clone(),
            body,
            response_body,
            access,
            success,
            grpc_path,
        })
    }
}

/// The field a dotted path names, through nested messages.
pub fn field_at(
    message: &prost_reflect::MessageDescriptor,
    path: &[String],
) -> Option<FieldDescriptor> {
    let (last, parents) = path.split_last()?;
    let mut current = message.clone();
    for parent in parents {
        match current.get_field_by_name(parent)?.kind() {
            prost_reflect::Kind::Message(inner) => current = inner,
            _ => return None,
        }
    }
    current.get_field_by_name(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::descriptor_pool;

    fn table() -> RouteTable {
        RouteTable::from_pool(&descriptor_pool().expect("pool")).expect("routes")
    }

    fn resolve(table: &RouteTable, method: Method, path: &str) -> Option<(String, Vec<Binding>)> {
        match table.lookup(&method, path) {
            Lookup::Found(route, bindings) => Some((route.rpc.full_name().to_string(), bindings)),
            _ => None,
        }
    }

    #[test]
    fn every_seed_path_resolves_to_its_rpc() {
        let table = table();
        let cases = [
            (Method::GET, "/serve", "admesh.adserver.v1.AdServer.Serve"),
            (Method::POST, "/click", "admesh.adserver.v1.AdServer.Click"),
            (
                Method::POST,
                "/api/v1/ads",
                "admesh.queue.v1.QueueService.SubmitAd",
            ),
            (
                Method::POST,
                "/api/v1/ads/batch",
                "admesh.queue.v1.QueueService.SubmitAdsBatch",
            ),
            (
                Method::GET,
                "/api/v1/ads/7",
                "admesh.queue.v1.QueueService.GetAd",
            ),
            (
                Method::GET,
                "/api/v1/ads/queue/stats",
                "admesh.queue.v1.QueueService.GetQueueStats",
            ),
            (
                Method::GET,
                "/api/v1/ads",
                "admesh.adserver.v1.AdServer.ListAds",
            ),
            (
                Method::GET,
                "/api/v1/ads/analytics",
                "admesh.analytics.v1.AnalyticsService.GetAdAnalytics",
            ),
            (
                Method::GET,
                "/analytics/campaign/c1",
                "admesh.analytics.v1.AnalyticsService.GetCampaignAnalytics",
            ),
            (
                Method::POST,
                "/api/v1/agent/command",
                "admesh.agent.v1.AgentService.Command",
            ),
            (
                Method::POST,
                "/auth/login",
                "admesh.edge.v1.EdgeAdmin.Login",
            ),
            (
                Method::PATCH,
                "/v1/campaigns/c1",
                "admesh.bid.v1.BidEngine.UpdateCampaign",
            ),
        ];
        for (method, path, rpc) in cases {
            let found = resolve(&table, method.clone(), path);
            assert_eq!(
                found.map(|(name, _)| name).as_deref(),
                Some(rpc),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn literal_routes_win_over_variables_and_methods_are_told_apart() {
        let table = table();
        let (_, bindings) = resolve(&table, Method::GET, "/api/v1/ads/7").expect("route");
        assert_eq!(bindings, vec![(vec!["ad_id".to_string()], "7".to_string())]);
        assert!(matches!(
            table.lookup(&Method::GET, "/api/v1/ads/batch"),
            Lookup::Found(route, _) if route.rpc.name() == "GetAd"
        ));
        assert!(matches!(
            table.lookup(&Method::GET, "/api/v1/ads/%ff"),
            Lookup::BadPath
        ));
        assert!(matches!(
            table.lookup(&Method::DELETE, "/serve"),
            Lookup::MethodNotAllowed(methods) if methods == vec![Method::GET]
        ));
    }

    #[test]
    fn access_and_status_come_from_the_rest_option() {
        let table = table();
        let route = |key: &str| {
            table
                .find(key)
                .unwrap_or_else(|| panic!("no route {key}"))
                .clone()
        };
        assert_eq!(route("GET /serve").access, Access::Public);
        assert_eq!(route("POST /api/v1/ads").success, StatusCode::CREATED);
        assert_eq!(route("POST /api/v1/ads").access, Access::Operator);
        assert_eq!(route("GET /api/v1/queue/jobs").access, Access::Viewer);
        assert_eq!(route("POST /api/v1/auth/users").access, Access::Admin);
        assert_eq!(route("GET /api/v1/ads/queue/stats").success, StatusCode::OK);
    }
}
