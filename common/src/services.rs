//! The services of the mesh, named once: what each is called in logs,
//! metrics and the CLI, which config key holds its listen address, and how
//! the services that call others find them.

use std::net::SocketAddr;

use crate::config::MeshConfig;

/// One service of the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    AdServer,
    BidEngine,
    QueueService,
    AnalyticsService,
    AgentService,
    Edge,
}

impl ServiceKind {
    /// Every service, in the order `admesh up` starts and reports them.
    pub const ALL: [ServiceKind; 6] = [
        Self::AdServer,
        Self::BidEngine,
        Self::QueueService,
        Self::AnalyticsService,
        Self::AgentService,
        Self::Edge,
    ];

    /// The name in logs, metric labels, health reports and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AdServer => "ad-server",
            Self::BidEngine => "bid-engine",
            Self::QueueService => "queue-service",
            Self::AnalyticsService => "analytics-service",
            Self::AgentService => "agent-service",
            Self::Edge => "edge",
        }
    }

    /// The config key of the listen address, for error messages.
    pub const fn listen_key(self) -> &'static str {
        match self {
            Self::AdServer => "ad_server.listen",
            Self::BidEngine => "bid_engine.listen",
            Self::QueueService => "queue.listen",
            Self::AnalyticsService => "analytics.listen",
            Self::AgentService => "agent.listen",
            Self::Edge => "edge.listen",
        }
    }

    /// The configured listen address.
    pub fn listen(self, config: &MeshConfig) -> SocketAddr {
        match self {
            Self::AdServer => config.ad_server.listen,
            Self::BidEngine => config.bid_engine.listen,
            Self::QueueService => config.queue.listen,
            Self::AnalyticsService => config.analytics.listen,
            Self::AgentService => config.agent.listen,
            Self::Edge => config.edge.listen,
        }
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ServiceKind {
    type Err = String;

    /// Parses a service's name, e.g. "bid-engine".
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|service| service.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!("unknown service {name:?}; one of: {}", names.join(", "))
            })
    }
}

impl MeshConfig {
    /// The services behind the edge and the URLs it calls them at.
    pub fn edge_upstreams(&self) -> [(ServiceKind, &str); 5] {
        let edge = &self.edge;
        [
            (ServiceKind::AdServer, &edge.ad_server_url),
            (ServiceKind::BidEngine, &edge.bid_engine_url),
            (ServiceKind::QueueService, &edge.queue_url),
            (ServiceKind::AnalyticsService, &edge.analytics_url),
            (ServiceKind::AgentService, &edge.agent_url),
        ]
    }

    /// The services the agent operates and the URLs it calls them at.
    pub fn agent_targets(&self) -> [(ServiceKind, &str); 4] {
        let agent = &self.agent;
        [
            (ServiceKind::AdServer, &agent.ad_server_url),
            (ServiceKind::BidEngine, &agent.bid_engine_url),
            (ServiceKind::QueueService, &agent.queue_url),
            (ServiceKind::AnalyticsService, &agent.analytics_url),
        ]
    }

    /// Points every caller at the services' actual addresses (`admesh up`
    /// binds `:0` ports first, then tells the services where the others are).
    pub fn point_services_at(&mut self, url_of: impl Fn(ServiceKind) -> String) {
        self.ad_server.bid_engine_url = url_of(ServiceKind::BidEngine);
        self.agent.ad_server_url = url_of(ServiceKind::AdServer);
        self.agent.bid_engine_url = url_of(ServiceKind::BidEngine);
        self.agent.queue_url = url_of(ServiceKind::QueueService);
        self.agent.analytics_url = url_of(ServiceKind::AnalyticsService);
        self.edge.ad_server_url = url_of(ServiceKind::AdServer);
        self.edge.bid_engine_url = url_of(ServiceKind::BidEngine);
        self.edge.queue_url = url_of(ServiceKind::QueueService);
        self.edge.analytics_url = url_of(ServiceKind::AnalyticsService);
        self.edge.agent_url = url_of(ServiceKind::AgentService);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for service in ServiceKind::ALL {
            assert_eq!(service.name().parse::<ServiceKind>(), Ok(service));
        }
        let error = "bidengine".parse::<ServiceKind>().expect_err("unknown");
        assert!(error.contains("bid-engine"), "{error}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
    fn each_listen_key_sets_that_services_address() {
        let defaults: Vec<u16> = ServiceKind::ALL
            .iter()
            .map(|s| s.listen(&MeshConfig::default()).port())
            .collect();
        assert_eq!(defaults, [50051, 50052, 50053, 50054, 50055, 8080]);
        for service in ServiceKind::ALL {
            figment::Jail::expect_with(|jail| {
                let variable = format!(
                    "ADMESH_{}",
                    service.listen_key().replace('.', "__").to_uppercase()
                );
                jail.set_env(variable, "127.0.0.1:1234");
                let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
                assert_eq!(service.listen(&config).port(), 1234, "{}", service.name());
                Ok(())
            });
        }
    }
}
