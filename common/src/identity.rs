//! Who is calling, as it travels between services: the edge authenticates
//! the caller and names them in gRPC metadata; services read it from there
//! (the queue's audit trail, the agent's role check).

/// Metadata naming the caller: `user:<name>`, `key:<id>`.
pub const USER_METADATA: &str = "x-admesh-user";
/// Metadata naming the caller's role: `viewer`, `operator` or `admin`.
pub const ROLE_METADATA: &str = "x-admesh-role";

/// A caller's role; each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// From `admesh.common.v1.Role`.
    pub fn from_proto(value: i32) -> Option<Self> {
        use admesh_proto::common::v1::Role as Proto;
        match Proto::try_from(value).ok()? {
            Proto::Viewer => Some(Role::Viewer),
            Proto::Operator => Some(Role::Operator),
            Proto::Admin => Some(Role::Admin),
            Proto::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> i32 {
        use admesh_proto::common::v1::Role as Proto;
        match self {
            Role::Viewer => Proto::Viewer as i32,
            Role::Operator => Proto::Operator as i32,
            Role::Admin => Proto::Admin as i32,
        }
    }

    /// Whether this role may change state (operator and admin).
    pub fn may_change_state(self) -> bool {
        self >= Role::Operator
    }
}

/// The caller named in `metadata`: (user, role); empty user and no role
/// when the call did not come through the edge.
pub fn caller(metadata: &tonic::metadata::MetadataMap) -> (String, Option<Role>) {
    let get = |key: &str| {
        metadata
            .get(key)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    };
    (
        get(USER_METADATA).chars().take(100).collect(),
        Role::parse(get(ROLE_METADATA)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_order() {
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(Role::from_proto(role.to_proto()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Role::from_proto(0), None);
        assert!(!Role::Viewer.may_change_state());
        assert!(Role::Operator.may_change_state() && Role::Admin.may_change_state());
    }

    #[test]
    fn the_caller_comes_from_metadata() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(caller(&metadata), (String::new(), None));
        metadata.insert(USER_METADATA, "user:alice".parse().expect("value"));
        metadata.insert(ROLE_METADATA, "operator".parse().expect("value"));
        assert_eq!(
            caller(&metadata),
            ("user:alice".into(), Some(Role::Operator))
        );
    }
}
