//! One command end to end: parse → check the caller's role → run (or dry
//! run) → record in the commands audit table → answer with the intent, the
//! result and one line for a human.

use std::time::Instant;

use serde_json::{Value, json};
use tonic::Status;

use admesh_common::{
    Database,
    identity::Role,
    time::{now_millis, timestamp},
};
use admesh_proto::agent::v1::{
    CommandRequest, CommandResponse, CommandStatus, Intent as ProtoIntent,
};

use crate::{
    audit::{self, CommandRow},
    execute::{ExecError, Executor},
    intent::Intent,
    llm::LlmProvider,
    parser::{self, ParseError},
};

/// Who is asking, from the metadata the edge sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    /// None when the call did not say (it may read, not change).
    pub role: Option<Role>,
}

impl Caller {
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Self {
        let (user, role) = admesh_common::identity::caller(metadata);
        Self { user, role }
    }

    /// Whether the caller may change state.
    pub fn may_change_state(&self) -> bool {
        self.role.is_some_and(Role::may_change_state)
    }
}

pub const PROVIDER_OFFLINE: &str = "offline";
pub const PROVIDER_LLM: &str = "llm";

/// What a command runs with.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub executor: &'a Executor,
    pub database: &'a Database,
    /// Set when an LLM provider is configured.
    pub llm: Option<&'a LlmProvider>,
}

/// Runs one command and records it, whatever the outcome.
pub async fn handle(
    context: &Context<'_>,
    caller: &Caller,
    request: CommandRequest,
) -> Result<CommandResponse, Status> {
    let (executor, database) = (context.executor, context.database);
    let started = Instant::now();
    let command_id = admesh_common::ids::new_id();
    let mut row = CommandRow {
        id: command_id.clone(),
        text: truncate(&request.command, 1_000),
        intent: None,
        status: "rejected",
        result: None,
        error: String::new(),
        duration_us: 0,
        user: caller.user.clone(),
        role: caller.role.map_or("", Role::as_str).to_string(),
        provider: PROVIDER_OFFLINE,
        dry_run: request.dry_run,
        created_at_ms: now_millis(),
    };
    let mut fallback_reason = String::new();
    let outcome = run(
        context.llm,
        executor,
        caller,
        &request,
        &mut row,
        &mut fallback_reason,
    )
    .await;
    row.duration_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
    if let Err(error) = audit::record(database, &row).await {
        // The command ran; losing its audit row is an operations problem,
        // not the caller's.
        tracing::error!(error = %error, command_id, "recording a command failed");
    }
    let (intent, result, message) = match outcome {
        Ok(done) => done,
        Err(status) => {
            return Err(Status::new(
                status.code(),
                format!("{} (command {command_id})", status.message()),
            ));
        }
    };
    Ok(CommandResponse {
        command_id,
        status: if request.dry_run {
            CommandStatus::DryRun
        } else {
            CommandStatus::Executed
        } as i32,
        intent: Some(proto_intent(&intent)),
        result: Some(to_struct(result)),
        message,
        execution_time: Some(timestamp(row.created_at_ms)),
        processing_duration: prost_types::Duration::try_from(started.elapsed()).ok(),
        provider: row.provider.into(),
        fallback_reason,
    })
}

/// The intent: from the model when one is configured (and the caller did
/// not ask for the offline parser), else, or when the model fails, from the
/// offline parser, saying why.
async fn understand(
    llm: Option<&LlmProvider>,
    request: &CommandRequest,
    row: &mut CommandRow,
    fallback_reason: &mut String,
) -> Result<Intent, ParseError> {
    parser::check_text(&request.command)?;
    if let Some(llm) = llm.filter(|_| !request.use_fallback) {
        match llm.parse(&request.command).await {
            Ok(intent) => {
                row.provider = PROVIDER_LLM;
                return Ok(intent);
            }
            Err(error) => {
                tracing::warn!(reason = %error, "the LLM provider failed; parsing offline");
                *fallback_reason = format!("{error}; the offline parser answered");
            }
        }
    }
    parser::parse(&request.command)
}

async fn run(
    llm: Option<&LlmProvider>,
    executor: &Executor,
    caller: &Caller,
    request: &CommandRequest,
    row: &mut CommandRow,
    fallback_reason: &mut String,
) -> Result<(Intent, Value, String), Status> {
    let intent = understand(llm, request, row, fallback_reason)
        .await
        .map_err(|error| {
            row.error = error.to_string();
            Status::invalid_argument(error.to_string())
        })?;
    row.intent = Some(intent_json(&intent));
    if intent.mutating() && !request.dry_run && !caller.may_change_state() {
        let who = if caller.user.is_empty() {
            "an anonymous caller".to_string()
        } else {
            caller.user.clone()
        };
        let message = format!(
            "{} changes state and needs the operator or admin role; {who} has {}",
            intent.name(),
            caller.role.map_or("none", Role::as_str)
        );
        row.error = message.clone();
        return Err(Status::permission_denied(message));
    }
    match executor.run(&intent, request.dry_run).await {
        Ok(outcome) => {
            row.status = if request.dry_run {
                "dry_run"
            } else {
                "executed"
            };
            row.result = Some(outcome.result.clone());
            Ok((intent, outcome.result, outcome.message))
        }
        Err(ExecError::Rejected(message)) => {
            row.error = message.clone();
            Err(Status::failed_precondition(message))
        }
        Err(ExecError::Failed(message)) => {
            row.status = "failed";
            row.error = message.clone();
            Err(Status::unavailable(message))
        }
    }
}

fn truncate(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

fn intent_json(intent: &Intent) -> Value {
    json!({"name": intent.name(), "parameters": intent.parameters(), "mutating": intent.mutating()})
}

pub fn proto_intent(intent: &Intent) -> ProtoIntent {
    ProtoIntent {
        name: intent.name().into(),
        parameters: Some(to_struct(intent.parameters())),
        mutating: intent.mutating(),
    }
}

/// A JSON object as a `google.protobuf.Struct` (anything else is wrapped
/// as `{"value": …}`).
pub fn to_struct(value: Value) -> prost_types::Struct {
    match value {
        Value::Object(map) => prost_types::Struct {
            fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
        },
        other => prost_types::Struct {
            fields: [("value".to_string(), to_value(other))]
                .into_iter()
                .collect(),
        },
    }
}

fn to_value(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Value::Object(_) => Kind::StructValue(to_struct(value)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// `google.protobuf.Struct` back to JSON (for the history).
pub fn from_json_text(text: Option<&str>) -> Option<prost_types::Struct> {
    text.and_then(|text| serde_json::from_str::<Value>(text).ok())
        .map(to_struct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_operators_and_admins_change_state() {
        for (role, allowed) in [
            ("", false),
            ("viewer", false),
            ("operator", true),
            ("admin", true),
            ("root", false),
        ] {
            let caller = Caller {
                user: "u".into(),
                role: Role::parse(role),
            };
            assert_eq!(caller.may_change_state(), allowed, "{role}");
        }
    }

    #[test]
    fn json_becomes_a_struct() {
        let value = to_struct(json!({"a": 1, "b": [true, "x"], "c": {"d": null}}));
        assert_eq!(value.fields.len(), 3);
        let wrapped = to_struct(json!(5));
        assert!(wrapped.fields.contains_key("value"));
    }
}
