//! Slot grammars: the parameters a rule reads from a sentence (priorities,
//! counts, families, campaigns, services, levels, metrics, rankings).

use crate::intent::Level;

use super::lexer::Sentence;

/// Words that end a name (of a family or campaign).
pub(super) const NAME_STOPS: &[&str] = &[
    "the",
    "a",
    "an",
    "all",
    "every",
    "for",
    "in",
    "of",
    "to",
    "from",
    "by",
    "on",
    "at",
    "with",
    "over",
    "during",
    "last",
    "past",
    "since",
    "this",
    "today",
    "yesterday",
    "and",
    "or",
    "ad",
    "game",
    "job",
    "family",
    "campaign",
    "priority",
    "please",
    "now",
    "that",
    "which",
    "older",
    "waiting",
    "queued",
    "than",
    "is",
    "are",
    "be",
    "what",
    "show",
    "me",
    "set",
    "change",
    "move",
    "make",
    "give",
    "put",
    "bump",
    "raise",
    "lower",
    "pause",
    "resume",
    "stop",
    "halt",
    "suspend",
    "unpause",
    "restart",
    "reactivate",
    "ctr",
    "spend",
    "click",
    "impression",
    "cpc",
    "cpm",
    "performance",
    "how",
    "doing",
    "within",
    "across",
    "it",
    "its",
    "their",
    "high",
    "low",
    "highest",
    "lowest",
    "top",
    "named",
    "called",
    "id",
    "kindly",
    "could",
    "you",
    "can",
    "would",
    "pls",
    "plz",
    "thanks",
    "thank",
    "up",
    "down",
    "more",
    "less",
    "longer",
    "new",
    "performing",
    "going",
    "look",
    "looking",
    "analytics",
    "analytic",
    "stat",
    "statistic",
    "report",
    "metric",
    "number",
    "result",
    "figure",
];

/// Words that look like a family name but are not one.
const NOT_FAMILIES: &[&str] = &[
    "queued",
    "waiting",
    "old",
    "new",
    "these",
    "those",
    "pending",
    "stuck",
    "other",
    "my",
    "our",
    "processed",
    "current",
    "remaining",
    "the",
    "all",
    "some",
    "any",
    "next",
];

/// The game family a sentence names: quoted, "the X family", "family X",
/// or "X ads" for a name-like X (capitals or a hyphen).
pub(super) fn game_family(sentence: &Sentence) -> Option<String> {
    if let Some(quoted) = sentence.quoted() {
        return Some(quoted);
    }
    if let Some(at) = sentence.position("family") {
        if let Some(name) = sentence.name_before(at, NAME_STOPS) {
            return Some(name);
        }
        let mut from = at + 1;
        while matches!(sentence.word(from), "called" | "named" | "of") {
            from += 1;
        }
        if let Some(name) = sentence.name_from(from, NAME_STOPS) {
            return Some(name);
        }
    }
    let at = sentence.position_any(&["ad", "game", "job"])?;
    let name = sentence.name_before(at, NAME_STOPS)?;
    let single_lower =
        !name.contains(' ') && !name.contains('-') && name.chars().all(|c| !c.is_uppercase());
    if NOT_FAMILIES.contains(&name.to_lowercase().as_str())
        || (single_lower && sentence.has("family"))
    {
        return None;
    }
    Some(name)
}

/// A campaign named in the sentence: quoted, "campaign X", "the X
/// campaign", or what follows `after` (e.g. "pause X", "CTR of X").
pub(super) fn campaign_name(sentence: &Sentence, after: &[&str]) -> Option<String> {
    if let Some(quoted) = sentence.quoted() {
        return Some(quoted);
    }
    if let Some(at) = sentence.position("campaign") {
        let mut from = at + 1;
        while matches!(sentence.word(from), "called" | "named" | "id") {
            from += 1;
        }
        if let Some(name) = sentence.name_from(from, NAME_STOPS) {
            return Some(name);
        }
        if let Some(name) = sentence.name_before(at, NAME_STOPS) {
            return Some(name);
        }
    }
    let at = sentence.position_any(after)?;
    let mut from = at + 1;
    while matches!(sentence.word(from), "the" | "of" | "for" | "campaign") {
        from += 1;
    }
    sentence.name_from(from, NAME_STOPS)
}

/// The priority a change asks for: "to 5", "priority 4", "p3", "high
/// priority" (5), "low" (1), "normal" (3); "prioritize" alone means 5.
pub(super) fn priority_value(sentence: &Sentence) -> Option<i64> {
    let numbers = sentence.plain_numbers();
    for (index, number) in &numbers {
        let before = if *index > 0 {
            sentence.word(index - 1)
        } else {
            ""
        };
        let before2 = if *index > 1 {
            sentence.word(index - 2)
        } else {
            ""
        };
        if matches!(
            before,
            "to" | "priority" | "of" | "at" | "as" | "=" | "level"
        ) || (before == "priority" && before2 == "to")
        {
            return Some(i64::from(*number));
        }
    }
    for (word, value) in [
        ("highest", 5),
        ("high", 5),
        ("top", 5),
        ("urgent", 5),
        ("critical", 5),
        ("maximum", 5),
        ("max", 5),
        ("lowest", 1),
        ("low", 1),
        ("minimum", 1),
        ("bottom", 1),
        ("medium", 3),
        ("normal", 3),
        ("default", 3),
    ] {
        if sentence.has(word) {
            return Some(value);
        }
    }
    if sentence.has_any(&["deprioritize", "deprioritise"]) {
        return Some(1);
    }
    if sentence.has_any(&["prioritize", "prioritise", "expedite", "boost"]) {
        return Some(5);
    }
    numbers.last().map(|(_, number)| i64::from(*number))
}

/// The count of a "next N" / "top N" / "N ads" request.
pub(super) fn count_after(sentence: &Sentence, keys: &[&str]) -> Option<u32> {
    for (index, number) in sentence.plain_numbers() {
        let before = if index > 0 {
            sentence.word(index - 1)
        } else {
            ""
        };
        let after = sentence.word(index + 1);
        if keys.contains(&before) || matches!(after, "ad" | "job" | "campaign" | "item") {
            return Some(number);
        }
    }
    None
}

pub(super) fn service_name(sentence: &Sentence) -> Option<String> {
    let names = [
        (&["bid-engine", "bidder", "bid_engine"][..], "bid-engine"),
        (&["queue-service", "queue"][..], "queue-service"),
        (
            &["analytics-service", "analytic", "analytics"][..],
            "analytics-service",
        ),
        (&["ad-server", "adserver"][..], "ad-server"),
        (&["agent-service", "agent"][..], "agent-service"),
        (&["edge", "gateway"][..], "edge"),
    ];
    if sentence.has_phrase(&["bid", "engine"]) {
        return Some("bid-engine".into());
    }
    if sentence.has_phrase(&["ad", "server"]) {
        return Some("ad-server".into());
    }
    names
        .iter()
        .find(|(words, _)| sentence.has_any(words))
        .map(|(_, name)| (*name).to_string())
}

pub(super) fn level(sentence: &Sentence) -> Option<Level> {
    if sentence.has_any(&["error", "failure", "failed", "fail"]) {
        Some(Level::Error)
    } else if sentence.has_any(&["warn", "warning"]) {
        Some(Level::Warn)
    } else if sentence.has("debug") {
        Some(Level::Debug)
    } else if sentence.has("info") {
        Some(Level::Info)
    } else {
        None
    }
}

pub(super) fn in_range(value: i64, low: i64, high: i64, what: &str) -> Result<u32, String> {
    if (low..=high).contains(&value) {
        Ok(value as u32)
    } else {
        Err(format!("{what} must be {low}–{high}, got {value}"))
    }
}
