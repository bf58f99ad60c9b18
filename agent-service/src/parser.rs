//! The offline parser: deterministic, no network. A sentence is lexed into
//! tokens (numbers written as digits or words, quoted names, ids), each
//! intent's grammar rule looks for its key words, and slot grammars read the
//! parameters (priorities, durations, periods, game families and campaign
//! names with spaces). Words outside the grammar (politeness, fillers,
//! typos in them) are ignored; text that matches no rule, or two, is an
//! error that names the closest supported commands.

use crate::intent::{CATALOGUE, Intent, JobSelector, Level, Metric, Period, Ranking};

/// Longest command accepted, in characters.
pub const MAX_COMMAND_CHARS: usize = 1_000;

/// Why a sentence is not a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    TooLong(usize),
    ControlCharacters,
    /// No rule matched; the closest supported commands (examples).
    Unknown(Vec<&'static str>),
    /// More than one command matched.
    Ambiguous(Vec<&'static str>),
    /// The intent is clear but a parameter is missing or out of range.
    Invalid {
        intent: &'static str,
        message: String,
    },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Empty => f.write_str("command: empty; try \"help\""),
            ParseError::TooLong(chars) => write!(
                f,
                "command: {chars} characters; at most {MAX_COMMAND_CHARS}"
            ),
            ParseError::ControlCharacters => f.write_str("command: contains control characters"),
            ParseError::Unknown(closest) => write!(
                f,
                "command: not understood; closest supported commands: {}",
                quote_all(closest)
            ),
            ParseError::Ambiguous(intents) => write!(
                f,
                "command: ambiguous, it reads as {}; ask for one thing at a time",
                intents.join(" and ")
            ),
            ParseError::Invalid { intent, message } => write!(f, "{intent}: {message}"),
        }
    }
}

fn quote_all(examples: &[&str]) -> String {
    examples
        .iter()
        .map(|example| format!("\"{example}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What any command must be before a parser (or a model) sees it:
/// non-empty, at most [`MAX_COMMAND_CHARS`], no control characters.
pub fn check_text(text: &str) -> Result<(), ParseError> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if chars > MAX_COMMAND_CHARS {
        return Err(ParseError::TooLong(chars));
    }
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(ParseError::ControlCharacters);
    }
    Ok(())
}

/// Parses one sentence into an intent.
pub fn parse(text: &str) -> Result<Intent, ParseError> {
    check_text(text)?;
    let sentence = Sentence::new(text);
    let mut matches: Vec<(&'static str, Result<Intent, String>)> = Vec::new();
    for rule in RULES {
        if let Some(result) = (rule.matches)(&sentence) {
            matches.push((rule.intent, result));
        }
    }
    match matches.len() {
        0 => Err(ParseError::Unknown(closest_examples(&sentence))),
        1 => {
            let (intent, result) = matches.remove(0);
            result.map_err(|message| ParseError::Invalid { intent, message })
        }
        _ => Err(ParseError::Ambiguous(
            matches.iter().map(|(intent, _)| *intent).collect(),
        )),
    }
}

// ── Lexing ─────────────────────────────────────────────────────────────────

#[derive(Clone, Debug, PartialEq)]
struct Token {
    /// As written (quotes removed).
    raw: String,
    /// Lower case, plural and possessive endings removed.
    word: String,
    number: Option<u32>,
    quoted: bool,
    /// Punctuation that ends a name.
    boundary: bool,
}

struct Sentence {
    tokens: Vec<Token>,
}

const QUOTES: &[char] = &['"', '“', '”', '«', '»', '`'];

impl Sentence {
    fn new(text: &str) -> Self {
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        let mut current = String::new();
        let flush = |current: &mut String, tokens: &mut Vec<Token>| {
            let trimmed = current.trim_matches(|c: char| matches!(c, '.' | '\'' | '-' | '_'));
            if !trimmed.is_empty() {
                tokens.extend(word_tokens(trimmed));
            }
            current.clear();
        };
        while let Some(c) = chars.next() {
            if QUOTES.contains(&c) {
                flush(&mut current, &mut tokens);
                let mut quoted = String::new();
                for inner in chars.by_ref() {
                    if QUOTES.contains(&inner) {
                        break;
                    }
                    quoted.push(inner);
                }
                let quoted = quoted.trim().to_string();
                if !quoted.is_empty() {
                    tokens.push(Token {
                        word: quoted.to_lowercase(),
                        raw: quoted,
                        number: None,
                        quoted: true,
                        boundary: false,
                    });
                }
            } else if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '\'' | '’') {
                current.push(if c == '’' { '\'' } else { c });
            } else {
                flush(&mut current, &mut tokens);
                if matches!(c, ',' | ';' | '!' | '?' | '(' | ')' | ':' | '/') {
                    tokens.push(Token {
                        raw: c.to_string(),
                        word: c.to_string(),
                        number: None,
                        quoted: false,
                        boundary: true,
                    });
                }
            }
        }
        flush(&mut current, &mut tokens);
        Self {
            tokens: merge_number_words(tokens),
        }
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    fn word(&self, index: usize) -> &str {
        self.tokens
            .get(index)
            .map_or("", |token| token.word.as_str())
    }

    fn has(&self, word: &str) -> bool {
        self.tokens.iter().any(|token| token.word == word)
    }

    fn has_any(&self, words: &[&str]) -> bool {
        words.iter().any(|word| self.has(word))
    }

    fn position(&self, word: &str) -> Option<usize> {
        self.tokens.iter().position(|token| token.word == word)
    }

    fn position_any(&self, words: &[&str]) -> Option<usize> {
        self.tokens
            .iter()
            .position(|token| words.contains(&token.word.as_str()))
    }

    /// Whether the words appear in this order, next to each other.
    fn has_phrase(&self, phrase: &[&str]) -> bool {
        self.tokens.windows(phrase.len()).any(|window| {
            window
                .iter()
                .zip(phrase)
                .all(|(token, word)| token.word == *word)
        })
    }

    fn quoted(&self) -> Option<String> {
        self.tokens
            .iter()
            .find(|token| token.quoted)
            .map(|token| token.raw.clone())
    }

    fn number_at(&self, index: usize) -> Option<u32> {
        self.tokens.get(index).and_then(|token| token.number)
    }

    /// Numbers that are not part of a duration ("10 minutes").
    fn plain_numbers(&self) -> Vec<(usize, u32)> {
        self.tokens
            .iter()
            .enumerate()
            .filter_map(|(index, token)| {
                let number = token.number?;
                (time_unit_seconds(self.word(index + 1)).is_none()).then_some((index, number))
            })
            .collect()
    }

    /// The first duration, in seconds: "10 minutes", "an hour", "2h",
    /// "half an hour".
    fn duration_seconds(&self) -> Option<u64> {
        for index in 0..self.len() {
            let unit = time_unit_seconds(self.word(index + 1));
            if let (Some(number), Some(unit)) = (self.number_at(index), unit) {
                return Some(u64::from(number) * unit);
            }
            if matches!(self.word(index), "a" | "an" | "one")
                && let Some(unit) = time_unit_seconds(self.word(index + 1))
            {
                let half = index > 0 && self.word(index - 1) == "half";
                return Some(if half { unit / 2 } else { unit });
            }
        }
        None
    }

    /// A period ending now: "last hour", "past 7 days", "today", "this
    /// week", "24h".
    fn period(&self) -> Option<Period> {
        if self.has("today") {
            return Some(Period::Today);
        }
        if self.has("yesterday") {
            return Some(Period::Yesterday);
        }
        for index in 0..self.len() {
            let word = self.word(index);
            if matches!(word, "last" | "past" | "previous" | "this" | "recent") {
                let (count, unit_index) = match self.number_at(index + 1) {
                    Some(count) => (count, index + 2),
                    None => (1, index + 1),
                };
                if let Some(period) = period_of(count, self.word(unit_index)) {
                    return Some(period);
                }
            }
        }
        for index in 0..self.len() {
            if let Some(count) = self.number_at(index)
                && let Some(period) = period_of(count, self.word(index + 1))
            {
                return Some(period);
            }
        }
        None
    }

    /// Raw text of tokens `from..to`, joined by spaces.
    fn raw_between(&self, from: usize, to: usize) -> String {
        self.tokens[from..to]
            .iter()
            .map(|token| token.raw.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A name that starts at `from` and runs until a boundary word.
    fn name_from(&self, from: usize, stops: &[&str]) -> Option<String> {
        let mut end = from;
        while end < self.len() {
            let token = &self.tokens[end];
            if token.boundary || stops.contains(&token.word.as_str()) || token.quoted {
                break;
            }
            end += 1;
        }
        (end > from).then(|| self.raw_between(from, end))
    }

    /// A name that ends just before `to`, reading back to a boundary word.
    fn name_before(&self, to: usize, stops: &[&str]) -> Option<String> {
        let mut start = to;
        while start > 0 {
            let token = &self.tokens[start - 1];
            if token.boundary || stops.contains(&token.word.as_str()) || token.number.is_some() {
                break;
            }
            start -= 1;
        }
        (start < to).then(|| self.raw_between(start, to))
    }

    /// A job or ad id: a UUID-like token, or the token after "ad"/"job".
    fn ad_id(&self) -> Option<String> {
        if let Some(token) = self.tokens.iter().find(|token| looks_like_id(&token.raw)) {
            return Some(token.raw.clone());
        }
        let index = self.position_any(&["ad", "job", "id"])?;
        let token = self.tokens.get(index + 1)?;
        (token.raw.len() >= 6
            && token.raw.chars().any(|c| c.is_ascii_digit())
            && token
                .raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then(|| token.raw.clone())
    }
}

fn looks_like_id(text: &str) -> bool {
    text.len() == 36
        && text.chars().filter(|c| *c == '-').count() == 4
        && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn period_of(count: u32, unit: &str) -> Option<Period> {
    if count == 0 {
        return None;
    }
    Some(match unit {
        "minute" | "min" | "mins" | "m" => Period::Minutes(count),
        "hour" | "hr" | "h" => Period::Minutes(count.saturating_mul(60)),
        "day" | "d" => Period::Days(count),
        "week" | "w" => Period::Days(count.saturating_mul(7)),
        "month" => Period::Days(count.saturating_mul(30)),
        _ => return None,
    })
}

fn time_unit_seconds(word: &str) -> Option<u64> {
    Some(match word {
        "second" | "sec" | "secs" | "s" => 1,
        "minute" | "min" | "mins" | "m" => 60,
        "hour" | "hr" | "hrs" | "h" => 3_600,
        "day" | "d" => 86_400,
        _ => return None,
    })
}

/// One written word as tokens: "10m" is a number and a unit, "p5" a
/// priority word and a number.
fn word_tokens(raw: &str) -> Vec<Token> {
    let lower = raw.to_lowercase();
    let digits_end = lower
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(lower.len(), |(at, _)| at);
    if digits_end > 0 && digits_end < lower.len() {
        let (digits, unit) = lower.split_at(digits_end);
        if let (Ok(number), true) = (digits.parse::<u32>(), unit.chars().all(char::is_alphabetic)) {
            return vec![number_token(digits, number), word_token(unit)];
        }
    }
    if let Some(rest) = lower.strip_prefix('p')
        && let Ok(number) = rest.parse::<u32>()
        && rest.len() == 1
    {
        return vec![word_token("priority"), number_token(rest, number)];
    }
    if let Ok(number) = lower.parse::<u32>() {
        return vec![number_token(raw, number)];
    }
    // "twenty-five": the parts are number words.
    if lower.contains('-') && lower.split('-').all(|part| number_word(part).is_some()) {
        return lower.split('-').map(word_token).collect();
    }
    vec![Token {
        raw: raw.to_string(),
        word: lemma(&lower),
        number: None,
        quoted: false,
        boundary: false,
    }]
}

fn number_token(raw: &str, number: u32) -> Token {
    Token {
        raw: raw.to_string(),
        word: number.to_string(),
        number: Some(number),
        quoted: false,
        boundary: false,
    }
}

fn word_token(word: &str) -> Token {
    Token {
        raw: word.to_string(),
        word: lemma(word),
        number: None,
        quoted: false,
        boundary: false,
    }
}

/// Plural and possessive endings off: "ads" → "ad", "families" → "family",
/// "what's" → "what".
fn lemma(word: &str) -> String {
    let word = word
        .strip_suffix("'s")
        .or_else(|| word.strip_suffix('\''))
        .unwrap_or(word);
    if let Some(stem) = word.strip_suffix("ies")
        && stem.len() >= 3
    {
        return format!("{stem}y");
    }
    for ending in ["sses", "ches", "shes", "xes"] {
        if word.ends_with(ending) {
            return word[..word.len() - 2].to_string();
        }
    }
    let keep = word.len() <= 2
        || matches!(
            word,
            "was" | "has" | "its" | "yes" | "his" | "does" | "plus" | "gas" | "bus"
        )
        || word.ends_with("ss")
        || word.ends_with("us")
        || word.ends_with("is")
        || word.ends_with("ics");
    match word.strip_suffix('s') {
        Some(stem) if !keep => stem.to_string(),
        _ => word.to_string(),
    }
}

fn number_word(word: &str) -> Option<u32> {
    Some(match word {
        "zero" => 0,
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" | "dozen" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        "hundred" => 100,
        "thousand" => 1_000,
        _ => return None,
    })
}

/// "twenty five" → 25, "two hundred fifty" → 250, "a dozen" → 12. "one"
/// alone stays a number too ("one hour").
fn merge_number_words(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut index = 0;
    while index < tokens.len() {
        let Some(first) = number_word(&tokens[index].word).filter(|_| !tokens[index].quoted) else {
            out.push(tokens[index].clone());
            index += 1;
            continue;
        };
        let start = index;
        let mut total: u32 = 0;
        let mut current: u32 = first;
        index += 1;
        while let Some(next) = tokens.get(index).and_then(|token| number_word(&token.word)) {
            match next {
                100 | 1_000 => current = current.max(1).saturating_mul(next),
                _ if next < 10 && current.is_multiple_of(10) && (20..100).contains(&current) => {
                    current += next
                }
                _ if current >= 100 => {
                    total = total.saturating_add(current);
                    current = next;
                }
                _ => break,
            }
            if next == 1_000 {
                total = total.saturating_add(current);
                current = 0;
            }
            index += 1;
        }
        let value = total.saturating_add(current);
        let raw = tokens[start..index]
            .iter()
            .map(|token| token.raw.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut token = number_token(&raw, value);
        token.raw = raw;
        out.push(token);
    }
    out
}

// ── Slots ──────────────────────────────────────────────────────────────────

/// Words that end a name (of a family or campaign).
const NAME_STOPS: &[&str] = &[
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
fn game_family(sentence: &Sentence) -> Option<String> {
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
fn campaign_name(sentence: &Sentence, after: &[&str]) -> Option<String> {
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
fn priority_value(sentence: &Sentence) -> Option<i64> {
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
fn count_after(sentence: &Sentence, keys: &[&str]) -> Option<u32> {
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

fn service_name(sentence: &Sentence) -> Option<String> {
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

fn level(sentence: &Sentence) -> Option<Level> {
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

fn in_range(value: i64, low: i64, high: i64, what: &str) -> Result<u32, String> {
    if (low..=high).contains(&value) {
        Ok(value as u32)
    } else {
        Err(format!("{what} must be {low}–{high}, got {value}"))
    }
}

// ── Rules ──────────────────────────────────────────────────────────────────

struct Rule {
    intent: &'static str,
    /// `None`: not this intent. `Some(Err)`: this intent, bad parameters.
    matches: fn(&Sentence) -> Option<Result<Intent, String>>,
}

const RULES: &[Rule] = &[
    Rule {
        intent: "change_priority",
        matches: change_priority,
    },
    Rule {
        intent: "show_next",
        matches: show_next,
    },
    Rule {
        intent: "find_waiting",
        matches: find_waiting,
    },
    Rule {
        intent: "set_anti_starvation",
        matches: set_anti_starvation,
    },
    Rule {
        intent: "set_max_wait",
        matches: set_max_wait,
    },
    Rule {
        intent: "set_worker_count",
        matches: set_worker_count,
    },
    Rule {
        intent: "set_batch_size",
        matches: set_batch_size,
    },
    Rule {
        intent: "queue_distribution",
        matches: queue_distribution,
    },
    Rule {
        intent: "performance_summary",
        matches: performance_summary,
    },
    Rule {
        intent: "performance_report",
        matches: performance_report,
    },
    Rule {
        intent: "family_statistics",
        matches: family_statistics,
    },
    Rule {
        intent: "predict_processing",
        matches: predict_processing,
    },
    Rule {
        intent: "recommend_priorities",
        matches: recommend_priorities,
    },
    Rule {
        intent: "capacity_utilization",
        matches: capacity_utilization,
    },
    Rule {
        intent: "optimize_queue",
        matches: optimize_queue,
    },
    Rule {
        intent: "pause_campaign",
        matches: pause_campaign,
    },
    Rule {
        intent: "resume_campaign",
        matches: resume_campaign,
    },
    Rule {
        intent: "campaign_performance",
        matches: campaign_performance,
    },
    Rule {
        intent: "top_campaigns",
        matches: top_campaigns,
    },
    Rule {
        intent: "diagnose",
        matches: diagnose,
    },
    Rule {
        intent: "recent_activity",
        matches: recent_activity,
    },
    Rule {
        intent: "help",
        matches: help,
    },
];

const CHANGE_VERBS: &[&str] = &[
    "change",
    "set",
    "update",
    "make",
    "move",
    "bump",
    "raise",
    "lower",
    "put",
    "give",
    "adjust",
    "increase",
    "decrease",
    "prioritize",
    "prioritise",
    "deprioritize",
    "deprioritise",
    "expedite",
    "boost",
    "reprioritize",
    "escalate",
    "drop",
    "mark",
    "push",
];

fn recommending(sentence: &Sentence) -> bool {
    sentence.has_any(&[
        "recommend",
        "suggest",
        "suggestion",
        "recommendation",
        "advise",
        "advice",
        "should",
    ])
}

fn change_priority(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let about_priority = sentence.has_any(&[
        "priority",
        "prioritize",
        "prioritise",
        "deprioritize",
        "deprioritise",
        "expedite",
        "reprioritize",
    ]);
    if !about_priority
        || !sentence.has_any(CHANGE_VERBS)
        || recommending(sentence)
        || sentence.has_any(&["distribution", "breakdown", "optimize", "optimise"])
    {
        return None;
    }
    let older = sentence.duration_seconds().filter(|_| {
        sentence.has_any(&[
            "older", "than", "waiting", "waited", "over", "longer", "age", "aged", "stuck",
        ])
    });
    let ad_id = sentence.ad_id();
    let family = if ad_id.is_some() {
        None
    } else {
        game_family(sentence)
    };
    let jobs = JobSelector {
        game_family: family,
        older_than_minutes: older.map(|seconds| seconds.div_ceil(60) as u32),
        ad_id,
    };
    let everything = sentence.has_any(&["all", "every", "everything"]);
    Some((|| {
        let value = priority_value(sentence).ok_or("which priority? say e.g. \"to 5\"")?;
        let priority = in_range(value, 1, 5, "priority")? as i32;
        if jobs == JobSelector::default() {
            return Err(if everything {
                "which ads? name a game family, an age (\"older than 10 minutes\") or an ad id"
                    .to_string()
            } else {
                "for which ads? name a game family, an age (\"older than 10 minutes\") or an ad id"
                    .to_string()
            });
        }
        Ok(Intent::ChangePriority { priority, jobs })
    })())
}

fn show_next(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let next = sentence.has_any(&["next", "upcoming", "peek"])
        || sentence.has_phrase(&["in", "line"])
        || sentence.has_phrase(&["front", "of", "the", "queue"]);
    if !next || sentence.has("priority") || sentence.has("campaign") {
        return None;
    }
    let count = count_after(sentence, &["next", "first", "top", "upcoming"]).unwrap_or(10);
    Some(in_range(i64::from(count), 1, 1000, "count").map(|count| Intent::ShowNext { count }))
}

fn find_waiting(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let waiting = sentence.has_any(&["waiting", "waited", "wait", "stuck", "older", "queued"]);
    let asking = sentence.has_any(&[
        "find", "list", "show", "which", "what", "get", "any", "display", "give", "are", "how",
    ]);
    if !waiting
        || !asking
        || sentence.has_any(&[
            "priority", "maximum", "max", "set", "average", "predict", "when", "campaign",
        ])
        || sentence.has_any(&["starvation"])
    {
        return None;
    }
    let seconds = sentence.duration_seconds()?;
    let minutes = seconds.div_ceil(60);
    Some(
        in_range(minutes as i64, 1, 100_000, "minutes")
            .map(|older_than_minutes| Intent::FindWaiting { older_than_minutes }),
    )
}

fn set_anti_starvation(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(&["starvation", "anti-starvation", "antistarvation"]) {
        return None;
    }
    let off = sentence.has_any(&[
        "disable",
        "disabled",
        "off",
        "deactivate",
        "stop",
        "no",
        "false",
    ]);
    let on = sentence.has_any(&[
        "enable", "enabled", "on", "activate", "start", "true", "use",
    ]);
    match (on, off) {
        (true, false) => Some(Ok(Intent::SetAntiStarvation { enabled: true })),
        (false, true) => Some(Ok(Intent::SetAntiStarvation { enabled: false })),
        (true, true) => Some(Err("on or off? the sentence says both".into())),
        (false, false) => Some(Err("say whether to enable or disable it".into())),
    }
}

fn set_max_wait(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let max = sentence.has_any(&["max", "maximum", "max-wait", "maxwait"]) || sentence.has("limit");
    if !max || !sentence.has_any(&["wait", "max-wait", "maxwait"]) || sentence.has("priority") {
        return None;
    }
    let seconds = sentence
        .duration_seconds()
        .or_else(|| sentence.plain_numbers().last().map(|(_, n)| u64::from(*n)));
    Some(match seconds {
        Some(seconds) => in_range(seconds as i64, 1, 86_400, "max wait (seconds)")
            .map(|seconds| Intent::SetMaxWait { seconds }),
        None => Err("how long? e.g. \"to 600 seconds\"".into()),
    })
}

fn set_worker_count(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(&["worker", "processor", "concurrency", "worker-count"])
        || sentence.has_any(&["utilization", "utilisation", "capacity", "batch"])
    {
        return None;
    }
    let verb = sentence.has_any(&[
        "set", "scale", "change", "use", "increase", "decrease", "make", "have", "run", "adjust",
        "bump", "raise", "lower", "update", "give", "add",
    ]);
    if !verb {
        return None;
    }
    let numbers = sentence.plain_numbers();
    Some(match numbers.last() {
        Some((_, workers)) => in_range(i64::from(*workers), 1, 1000, "worker count")
            .map(|workers| Intent::SetWorkerCount { workers }),
        None => Err("how many workers? e.g. \"to 8\"".into()),
    })
}

fn set_batch_size(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(&["batch", "batch-size", "batchsize"]) {
        return None;
    }
    let numbers = sentence.plain_numbers();
    Some(match numbers.last() {
        Some((_, size)) => in_range(i64::from(*size), 1, 1000, "batch size")
            .map(|size| Intent::SetBatchSize { size }),
        None => Err("how large? e.g. \"to 20\"".into()),
    })
}

fn queue_distribution(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let distribution = sentence.has_any(&["distribution", "distributed", "breakdown", "split"])
        || (sentence.has_phrase(&["how", "many"])
            && sentence.has_any(&["each", "per"])
            && sentence.has("priority"))
        || (sentence.has_any(&["per", "by", "each"])
            && sentence.has("priority")
            && sentence.has_any(&["count", "number", "many"]));
    if !distribution
        || sentence.has("family")
        || sentence.has_any(
            CHANGE_VERBS
                .iter()
                .filter(|verb| **verb != "set")
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
        ) && sentence.has("to")
    {
        return None;
    }
    Some(Ok(Intent::QueueDistribution))
}

fn performance_summary(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let summary = (sentence.has_any(&["performance", "queue", "throughput"])
        && sentence.has_any(&[
            "summary",
            "overview",
            "summarize",
            "summarise",
            "status",
            "health",
        ]))
        || sentence.has_phrase(&["how", "is", "the", "queue", "doing"])
        || sentence.has_phrase(&["how", "the", "queue", "is", "doing"]);
    if !summary
        || sentence.has_any(&[
            "report",
            "family",
            "capacity",
            "utilization",
            "utilisation",
            "campaign",
            "distribution",
            "diagnose",
        ])
        || sentence.period().is_some()
    {
        return None;
    }
    Some(Ok(Intent::PerformanceSummary))
}

fn performance_report(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let report = sentence.has("report")
        && !sentence.has_any(&[
            "capacity",
            "utilization",
            "utilisation",
            "campaign",
            "family",
        ]);
    let period_summary =
        sentence.has_any(&["performance", "throughput", "processed", "processing"])
            && sentence.period().is_some()
            && !sentence.has_any(&["campaign", "family", "ctr", "spend"]);
    if !report && !period_summary {
        return None;
    }
    let period = sentence.period().unwrap_or(Period::Minutes(60));
    Some(Ok(Intent::PerformanceReport { period }))
}

fn family_statistics(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let by_family = sentence.has("family")
        && (sentence.has_any(&[
            "by",
            "per",
            "each",
            "every",
            "across",
            "statistic",
            "statistics",
            "stat",
        ]) || sentence.has_phrase(&["game", "family"]));
    let asking = sentence.has_any(&[
        "statistic",
        "statistics",
        "stat",
        "stats",
        "breakdown",
        "break",
        "figure",
        "number",
        "metric",
        "show",
        "report",
        "summary",
        "how",
    ]);
    if !by_family || !asking || sentence.has_any(CHANGE_VERBS) && sentence.has("priority") {
        return None;
    }
    Some(Ok(Intent::FamilyStatistics))
}

fn predict_processing(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let predict = sentence.has_any(&["predict", "eta", "estimate", "estimated", "forecast"])
        || (sentence.has("when")
            && sentence.has_any(&[
                "processed",
                "process",
                "done",
                "ready",
                "start",
                "run",
                "handled",
            ]));
    if !predict || sentence.has("priority") {
        return None;
    }
    Some(match sentence.ad_id() {
        Some(ad_id) => Ok(Intent::PredictProcessing { ad_id }),
        None => Err("which ad? give its id".into()),
    })
}

fn recommend_priorities(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !recommending(sentence)
        || !sentence.has_any(&[
            "priority",
            "prioritize",
            "prioritise",
            "throughput",
            "reprioritize",
            "change",
        ])
    {
        return None;
    }
    Some(Ok(Intent::RecommendPriorities))
}

fn capacity_utilization(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let capacity = sentence.has_any(&[
        "utilization",
        "utilisation",
        "utilized",
        "utilised",
        "capacity",
        "saturation",
        "saturated",
    ]) || sentence.has_phrase(&["how", "busy"]);
    if !capacity || sentence.has_any(&["set", "scale"]) && sentence.plain_numbers().len() == 1 {
        return None;
    }
    Some(Ok(Intent::CapacityUtilization))
}

fn optimize_queue(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(&[
        "optimize",
        "optimise",
        "optimization",
        "optimisation",
        "tune",
        "minimize",
        "minimise",
    ]) {
        return None;
    }
    if sentence.has("campaign") {
        return None;
    }
    Some(Ok(Intent::OptimizeQueue))
}

const PAUSE_WORDS: &[&str] = &["pause", "halt", "suspend", "stop", "freeze", "deactivate"];
const RESUME_WORDS: &[&str] = &[
    "resume",
    "unpause",
    "restart",
    "reactivate",
    "unfreeze",
    "continue",
    "reenable",
    "re-enable",
];

fn pause_campaign(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(PAUSE_WORDS)
        || sentence.has_any(RESUME_WORDS)
        || sentence.has("starvation")
    {
        return None;
    }
    if !sentence.has("campaign") && sentence.quoted().is_none() && !sentence.has("pause") {
        return None;
    }
    Some(match campaign_name(sentence, PAUSE_WORDS) {
        Some(campaign) => Ok(Intent::PauseCampaign { campaign }),
        None => Err("which campaign? give its name or id".into()),
    })
}

fn resume_campaign(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(RESUME_WORDS) || sentence.has("starvation") {
        return None;
    }
    if !sentence.has("campaign")
        && sentence.quoted().is_none()
        && !sentence.has_any(&["resume", "unpause"])
    {
        return None;
    }
    Some(match campaign_name(sentence, RESUME_WORDS) {
        Some(campaign) => Ok(Intent::ResumeCampaign { campaign }),
        None => Err("which campaign? give its name or id".into()),
    })
}

fn metric(sentence: &Sentence) -> Option<Metric> {
    if sentence.has_any(&["ctr", "click-through", "clickthrough"])
        || sentence.has_phrase(&["click", "through"])
    {
        Some(Metric::Ctr)
    } else if sentence.has_any(&["spend", "spent", "spending", "cost", "costs", "budget"]) {
        Some(Metric::Spend)
    } else if sentence.has("cpc") {
        Some(Metric::Cpc)
    } else if sentence.has("cpm") {
        Some(Metric::Cpm)
    } else if sentence.has_any(&["impression", "view"]) {
        Some(Metric::Impressions)
    } else if sentence.has("click") {
        Some(Metric::Clicks)
    } else if sentence.has_any(&[
        "performance",
        "performing",
        "analytic",
        "analytics",
        "stat",
        "statistic",
        "doing",
        "result",
        "metric",
        "number",
    ]) {
        Some(Metric::All)
    } else {
        None
    }
}

fn ranking(sentence: &Sentence) -> Ranking {
    if sentence.has_any(&["ctr", "click-through", "clickthrough"]) {
        Ranking::Ctr
    } else if sentence.has("click") {
        Ranking::Clicks
    } else {
        Ranking::Spend
    }
}

fn top_campaigns(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let top = sentence.has_any(&["top", "best", "highest", "biggest", "leading", "most"])
        || sentence.has_phrase(&["rank", "campaign"]);
    if !top
        || !sentence.has("campaign")
        || sentence.has_any(PAUSE_WORDS)
        || sentence.has_any(RESUME_WORDS)
    {
        return None;
    }
    let count = count_after(sentence, &["top", "best", "first"]).unwrap_or(5);
    let period = sentence.period().unwrap_or(Period::Days(7));
    Some(
        in_range(i64::from(count), 1, 100, "count").map(|count| Intent::TopCampaigns {
            count,
            by: ranking(sentence),
            period,
        }),
    )
}

fn campaign_performance(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let metric = metric(sentence)?;
    let top = sentence.has_any(&["top", "best", "highest", "biggest", "leading", "most"]);
    if top
        || sentence.has_any(PAUSE_WORDS)
        || sentence.has_any(RESUME_WORDS)
        || sentence.has_any(&["queue", "family", "processing", "report"])
    {
        return None;
    }
    let named = sentence.has("campaign")
        || sentence.quoted().is_some()
        || matches!(
            metric,
            Metric::Ctr | Metric::Spend | Metric::Cpc | Metric::Cpm
        );
    if !named {
        return None;
    }
    let period = sentence.period().unwrap_or(Period::Days(7));
    Some(match campaign_name(sentence, &["of", "for"]) {
        Some(campaign) => Ok(Intent::CampaignPerformance {
            campaign,
            metric,
            period,
        }),
        None => Err("which campaign? give its name or id".into()),
    })
}

fn diagnose(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let diagnose = sentence.has_any(&[
        "diagnose",
        "diagnosis",
        "diagnostic",
        "diagnostics",
        "troubleshoot",
        "healthcheck",
        "health-check",
    ]) || sentence.has_phrase(&["health", "check"])
        || (sentence.has("health")
            && sentence.has_any(&["mesh", "service", "system", "cluster", "everything"]))
        || sentence.has_phrase(&["what", "wrong"])
        || (sentence.has_phrase(&["is", "everything"])
            && sentence.has_any(&["ok", "okay", "healthy", "fine", "up", "working"]));
    if !diagnose || sentence.has("log") {
        return None;
    }
    Some(Ok(Intent::Diagnose))
}

fn recent_activity(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let activity = sentence.has_any(&["activity", "log", "audit", "event", "happened", "history"])
        || (sentence.has_any(&["error", "warning", "warn"])
            && sentence.has_any(&["show", "list", "recent", "any", "find", "get", "from", "in"]));
    if !activity || sentence.has_any(&["priority", "campaign"]) || sentence.has_any(&["diagnose"]) {
        return None;
    }
    Some(Ok(Intent::RecentActivity {
        service: service_name(sentence),
        level: level(sentence),
        period: sentence.period().unwrap_or(Period::Minutes(60)),
    }))
}

fn help(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let help = sentence.has_any(&["help", "commands", "command"])
        && !sentence.has_any(&["priority", "campaign", "worker"])
        || sentence.has_phrase(&["what", "can", "you", "do"])
        || sentence.has_phrase(&["what", "can", "i", "ask"]);
    help.then_some(Ok(Intent::Help))
}

/// The supported commands closest to the sentence: examples ranked by the
/// words they share with it.
fn closest_examples(sentence: &Sentence) -> Vec<&'static str> {
    let words: Vec<&str> = sentence
        .tokens
        .iter()
        .filter(|token| !token.boundary && token.word.len() > 2)
        .map(|token| token.word.as_str())
        .collect();
    let mut scored: Vec<(usize, &'static str)> = CATALOGUE
        .iter()
        .flat_map(|command| command.examples.iter().copied())
        .map(|example| {
            let example_words: Vec<String> = Sentence::new(example)
                .tokens
                .into_iter()
                .map(|token| token.word)
                .collect();
            let shared = words
                .iter()
                .filter(|word| example_words.iter().any(|other| other == *word))
                .count();
            (shared, example)
        })
        .collect();
    scored.sort_by_key(|(shared, _)| std::cmp::Reverse(*shared));
    let best: Vec<&'static str> = scored
        .iter()
        .filter(|(shared, _)| *shared > 0)
        .take(3)
        .map(|(_, example)| *example)
        .collect();
    if best.is_empty() {
        vec![
            "Show the next 5 ads to be processed",
            "Change priority to 5 for all ads in the RPG-Fantasy family",
            "help",
        ]
    } else {
        best
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
