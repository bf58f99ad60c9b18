//! The optional LLM provider: the OpenAI-compatible chat-completions
//! protocol with tool calling (hosted models and local servers alike). Each
//! intent is one tool with a JSON schema; the model's tool call is checked
//! like any other input. Anything else (an error, a timeout, no tool call,
//! an unknown tool, arguments that do not validate) is a [`LlmError`], on
//! which the agent falls back to the offline parser and says why.

use std::time::Duration;

use serde_json::{Value, json};

use admesh_common::Secret;

use crate::intent::{CATALOGUE, Intent, JobSelector, Level, Metric, Period, Ranking};

/// Where and how to reach the model.
#[derive(Clone)]
pub struct LlmProvider {
    endpoint: String,
    model: String,
    api_key: Secret,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for LlmProvider {
    // The key is a secret: it never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmProvider")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why the model's answer was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmError(pub String);

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const SYSTEM_PROMPT: &str = "You operate AdMesh, an advertising backend. Turn the operator's \
sentence into exactly one tool call. Priorities are 1-5 (5 is the highest). Durations in \
minutes or seconds as the tool says. Do not answer in prose.";

impl LlmProvider {
    /// `base_url` is the API root (e.g. `http://127.0.0.1:8000/v1`); the
    /// request goes to `{base_url}/chat/completions`.
    pub fn new(
        base_url: &str,
        model: &str,
        api_key: Secret,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            endpoint: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model: model.to_string(),
            api_key,
            timeout,
            http,
        })
    }

    /// Asks the model for one tool call and turns it into an intent.
    pub async fn parse(&self, text: &str) -> Result<Intent, LlmError> {
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": text},
            ],
            "tools": tools(),
            "tool_choice": "required",
        });
        let mut request = self.http.post(&self.endpoint).json(&body);
        if !self.api_key.is_empty() {
            request = request.bearer_auth(self.api_key.expose());
        }
        let response = request.send().await.map_err(|error| {
            LlmError(if error.is_timeout() {
                format!(
                    "the model did not answer within {} ms",
                    self.timeout.as_millis()
                )
            } else {
                format!("the model could not be reached: {}", without_url(&error))
            })
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(LlmError(format!("the model answered HTTP {status}")));
        }
        let answer: Value = response.json().await.map_err(|error| {
            LlmError(format!(
                "the model's answer is not JSON: {}",
                without_url(&error)
            ))
        })?;
        intent_from_answer(&answer)
    }
}

fn without_url(error: &reqwest::Error) -> String {
    // The URL may carry credentials in some deployments; keep it out.
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<model endpoint>");
    }
    text
}

/// The chat-completions answer's first tool call as an intent.
pub fn intent_from_answer(answer: &Value) -> Result<Intent, LlmError> {
    let call = &answer["choices"][0]["message"]["tool_calls"][0]["function"];
    let name = call["name"]
        .as_str()
        .ok_or_else(|| LlmError("the model made no tool call".into()))?;
    let arguments: Value = match &call["arguments"] {
        Value::String(text) if text.trim().is_empty() => json!({}),
        Value::String(text) => serde_json::from_str(text).map_err(|_| {
            LlmError(format!(
                "the model's arguments for {name} are not valid JSON"
            ))
        })?,
        Value::Object(_) => call["arguments"].clone(),
        Value::Null => json!({}),
        _ => {
            return Err(LlmError(format!(
                "the model's arguments for {name} are not an object"
            )));
        }
    };
    intent_from_tool(name, &arguments).map_err(|why| LlmError(format!("tool {name}: {why}")))
}

/// The tool definitions: one per intent, with a JSON schema.
pub fn tools() -> Value {
    Value::Array(
        CATALOGUE
            .iter()
            .map(|command| {
                json!({
                    "type": "function",
                    "function": {
                        "name": command.intent,
                        "description": command.description,
                        "parameters": schema(command.intent),
                    }
                })
            })
            .collect(),
    )
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn period_schema() -> Value {
    json!({"type": "object", "description": "A window ending now: lastMinutes, lastDays, or today/yesterday",
           "properties": {"lastMinutes": {"type": "integer", "minimum": 1}, "lastDays": {"type": "integer", "minimum": 1},
                          "today": {"type": "boolean"}, "yesterday": {"type": "boolean"}}})
}

fn schema(intent: &str) -> Value {
    match intent {
        "change_priority" => object(
            json!({
                "newPriority": {"type": "integer", "minimum": 1, "maximum": 5},
                "gameFamily": {"type": "string"},
                "olderThanMinutes": {"type": "integer", "minimum": 1},
                "adId": {"type": "string"},
            }),
            &["newPriority"],
        ),
        "show_next" => object(
            json!({"count": {"type": "integer", "minimum": 1, "maximum": 1000}}),
            &[],
        ),
        "find_waiting" => object(
            json!({"olderThanMinutes": {"type": "integer", "minimum": 1}}),
            &["olderThanMinutes"],
        ),
        "set_anti_starvation" => object(json!({"enabled": {"type": "boolean"}}), &["enabled"]),
        "set_max_wait" => object(
            json!({"seconds": {"type": "integer", "minimum": 1, "maximum": 86400}}),
            &["seconds"],
        ),
        "set_worker_count" => object(
            json!({"workers": {"type": "integer", "minimum": 1, "maximum": 1000}}),
            &["workers"],
        ),
        "set_batch_size" => object(
            json!({"batchSize": {"type": "integer", "minimum": 1, "maximum": 1000}}),
            &["batchSize"],
        ),
        "performance_report" => object(json!({"period": period_schema()}), &[]),
        "predict_processing" => object(json!({"adId": {"type": "string"}}), &["adId"]),
        "pause_campaign" | "resume_campaign" => object(
            json!({"campaign": {"type": "string", "description": "name or id"}}),
            &["campaign"],
        ),
        "campaign_performance" => object(
            json!({
                "campaign": {"type": "string"},
                "metric": {"type": "string", "enum": ["ctr", "spend", "clicks", "impressions", "cpc", "cpm", "all"]},
                "period": period_schema(),
            }),
            &["campaign"],
        ),
        "top_campaigns" => object(
            json!({
                "count": {"type": "integer", "minimum": 1, "maximum": 100},
                "rankBy": {"type": "string", "enum": ["spend", "clicks", "ctr"]},
                "period": period_schema(),
            }),
            &[],
        ),
        "recent_activity" => object(
            json!({
                "service": {"type": "string", "enum": ["bid-engine", "ad-server", "queue-service", "analytics-service", "agent-service", "edge"]},
                "level": {"type": "string", "enum": ["debug", "info", "warn", "error"]},
                "period": period_schema(),
            }),
            &[],
        ),
        _ => object(json!({}), &[]),
    }
}

/// A tool call as an intent, validated like the offline parser's slots.
pub fn intent_from_tool(name: &str, arguments: &Value) -> Result<Intent, String> {
    let Value::Object(fields) = arguments else {
        return Err("arguments must be an object".into());
    };
    let known = schema(name);
    if let Some(unknown) = fields
        .keys()
        .find(|key| known["properties"].get(key.as_str()).is_none())
    {
        return Err(format!("unknown argument {unknown}"));
    }
    let int = |key: &str, low: i64, high: i64| -> Result<Option<u32>, String> {
        match arguments.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                let number = value.as_i64().ok_or(format!("{key} must be an integer"))?;
                if (low..=high).contains(&number) {
                    Ok(Some(number as u32))
                } else {
                    Err(format!("{key} must be {low}–{high}, got {number}"))
                }
            }
        }
    };
    let required = |key: &str, low: i64, high: i64| -> Result<u32, String> {
        int(key, low, high)?.ok_or(format!("{key} is required"))
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match arguments.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s))
                if s.chars().count() <= 200 && !s.chars().any(char::is_control) =>
            {
                Ok(Some(s.trim().to_string()))
            }
            Some(_) => Err(format!("{key} must be a short string")),
        }
    };
    let period = |default: Period| -> Result<Period, String> {
        let Some(value) = arguments.get("period") else {
            return Ok(default);
        };
        if value["today"] == true {
            return Ok(Period::Today);
        }
        if value["yesterday"] == true {
            return Ok(Period::Yesterday);
        }
        if let Some(minutes) = value["lastMinutes"]
            .as_i64()
            .filter(|m| (1..=527_040).contains(m))
        {
            return Ok(Period::Minutes(minutes as u32));
        }
        if let Some(days) = value["lastDays"].as_i64().filter(|d| (1..=366).contains(d)) {
            return Ok(Period::Days(days as u32));
        }
        Err("period must give lastMinutes, lastDays, today or yesterday".into())
    };
    Ok(match name {
        "change_priority" => {
            let jobs = JobSelector {
                game_family: text("gameFamily")?,
                older_than_minutes: int("olderThanMinutes", 1, 100_000)?,
                ad_id: text("adId")?,
            };
            if jobs == JobSelector::default() {
                return Err("name a gameFamily, olderThanMinutes or adId".into());
            }
            Intent::ChangePriority {
                priority: required("newPriority", 1, 5)? as i32,
                jobs,
            }
        }
        "show_next" => Intent::ShowNext {
            count: int("count", 1, 1000)?.unwrap_or(10),
        },
        "find_waiting" => Intent::FindWaiting {
            older_than_minutes: required("olderThanMinutes", 1, 100_000)?,
        },
        "set_anti_starvation" => Intent::SetAntiStarvation {
            enabled: arguments["enabled"]
                .as_bool()
                .ok_or("enabled must be true or false")?,
        },
        "set_max_wait" => Intent::SetMaxWait {
            seconds: required("seconds", 1, 86_400)?,
        },
        "set_worker_count" => Intent::SetWorkerCount {
            workers: required("workers", 1, 1000)?,
        },
        "set_batch_size" => Intent::SetBatchSize {
            size: required("batchSize", 1, 1000)?,
        },
        "queue_distribution" => Intent::QueueDistribution,
        "performance_summary" => Intent::PerformanceSummary,
        "performance_report" => Intent::PerformanceReport {
            period: period(Period::Minutes(60))?,
        },
        "family_statistics" => Intent::FamilyStatistics,
        "predict_processing" => Intent::PredictProcessing {
            ad_id: text("adId")?.ok_or("adId is required")?,
        },
        "recommend_priorities" => Intent::RecommendPriorities,
        "capacity_utilization" => Intent::CapacityUtilization,
        "optimize_queue" => Intent::OptimizeQueue,
        "pause_campaign" => Intent::PauseCampaign {
            campaign: text("campaign")?.ok_or("campaign is required")?,
        },
        "resume_campaign" => Intent::ResumeCampaign {
            campaign: text("campaign")?.ok_or("campaign is required")?,
        },
        "campaign_performance" => Intent::CampaignPerformance {
            campaign: text("campaign")?.ok_or("campaign is required")?,
            metric: match text("metric")?.as_deref() {
                None | Some("all") => Metric::All,
                Some("ctr") => Metric::Ctr,
                Some("spend") => Metric::Spend,
                Some("clicks") => Metric::Clicks,
                Some("impressions") => Metric::Impressions,
                Some("cpc") => Metric::Cpc,
                Some("cpm") => Metric::Cpm,
                Some(other) => return Err(format!("metric {other:?} is not one of the schema's")),
            },
            period: period(Period::Days(7))?,
        },
        "top_campaigns" => Intent::TopCampaigns {
            count: int("count", 1, 100)?.unwrap_or(5),
            by: match text("rankBy")?.as_deref() {
                None | Some("spend") => Ranking::Spend,
                Some("clicks") => Ranking::Clicks,
                Some("ctr") => Ranking::Ctr,
                Some(other) => return Err(format!("rankBy {other:?} is not one of the schema's")),
            },
            period: period(Period::Days(7))?,
        },
        "diagnose" => Intent::Diagnose,
        "recent_activity" => Intent::RecentActivity {
            service: text("service")?,
            level: match text("level")?.as_deref() {
                None => None,
                Some("debug") => Some(Level::Debug),
                Some("info") => Some(Level::Info),
                Some("warn") => Some(Level::Warn),
                Some("error") => Some(Level::Error),
                Some(other) => return Err(format!("level {other:?} is not one of the schema's")),
            },
            period: period(Period::Minutes(60))?,
        },
        "help" => Intent::Help,
        other => return Err(format!("{other} is not a supported tool")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str, arguments: &str) -> Value {
        json!({"choices": [{"message": {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
        ]}}]})
    }

    #[test]
    fn every_intent_is_a_tool_with_an_object_schema() {
        let tools = tools();
        let names: Vec<&str> = tools
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["function"]["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(names.len(), CATALOGUE.len());
        for tool in tools.as_array().into_iter().flatten() {
            assert_eq!(tool["function"]["parameters"]["type"], "object");
        }
    }

    #[test]
    fn tool_calls_become_validated_intents() {
        assert_eq!(
            intent_from_answer(&answer(
                "change_priority",
                r#"{"newPriority":5,"gameFamily":"RPG-Fantasy"}"#
            )),
            Ok(Intent::ChangePriority {
                priority: 5,
                jobs: JobSelector {
                    game_family: Some("RPG-Fantasy".into()),
                    ..Default::default()
                },
            })
        );
        assert_eq!(
            intent_from_answer(&answer("show_next", "")),
            Ok(Intent::ShowNext { count: 10 })
        );
        let errors = [
            answer("change_priority", r#"{"newPriority":9,"gameFamily":"x"}"#),
            answer("change_priority", r#"{"newPriority":5}"#),
            answer("set_worker_count", r#"{"workers":"many"}"#),
            answer("set_worker_count", r#"{"workers":4,"dropTables":true}"#),
            answer("launch_rockets", "{}"),
            answer("show_next", "{not json"),
            json!({"choices": [{"message": {"role": "assistant", "content": "Sure! Here you go."}}]}),
            json!({"error": "overloaded"}),
        ];
        for bad in errors {
            assert!(intent_from_answer(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let provider = LlmProvider::new(
            "http://127.0.0.1:1/v1",
            "m",
            Secret::new("sk-very-secret"),
            Duration::from_secs(1),
        )
        .expect("provider");
        assert!(!format!("{provider:?}").contains("sk-very-secret"));
    }
}
