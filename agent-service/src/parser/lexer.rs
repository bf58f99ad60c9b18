//! Lexing: a sentence as tokens, with numbers written as digits or words,
//! units, quoted names and ids, and the word forms the rules compare.

use crate::intent::Period;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    /// As written (quotes removed).
    pub(super) raw: String,
    /// Lower case, plural and possessive endings removed.
    pub(super) word: String,
    pub(super) number: Option<u32>,
    pub(super) quoted: bool,
    /// Punctuation that ends a name.
    pub(super) boundary: bool,
}

pub(super) struct Sentence {
    pub(super) tokens: Vec<Token>,
}

const QUOTES: &[char] = &['"', '“', '”', '«', '»', '`'];

impl Sentence {
    pub(super) fn new(text: &str) -> Self {
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

    pub(super) fn len(&self) -> usize {
        self.tokens.len()
    }

    pub(super) fn word(&self, index: usize) -> &str {
        self.tokens
            .get(index)
            .map_or("", |token| token.word.as_str())
    }

    pub(super) fn has(&self, word: &str) -> bool {
        self.tokens.iter().any(|token| token.word == word)
    }

    pub(super) fn has_any(&self, words: &[&str]) -> bool {
        words.iter().any(|word| self.has(word))
    }

    pub(super) fn position(&self, word: &str) -> Option<usize> {
        self.tokens.iter().position(|token| token.word == word)
    }

    pub(super) fn position_any(&self, words: &[&str]) -> Option<usize> {
        self.tokens
            .iter()
            .position(|token| words.contains(&token.word.as_str()))
    }

    /// Whether the words appear in this order, next to each other.
    pub(super) fn has_phrase(&self, phrase: &[&str]) -> bool {
        self.tokens.windows(phrase.len()).any(|window| {
            window
                .iter()
                .zip(phrase)
                .all(|(token, word)| token.word == *word)
        })
    }

    pub(super) fn quoted(&self) -> Option<String> {
        self.tokens
            .iter()
            .find(|token| token.quoted)
            .map(|token| token.raw.clone())
    }

    pub(super) fn number_at(&self, index: usize) -> Option<u32> {
        self.tokens.get(index).and_then(|token| token.number)
    }

    /// Numbers that are not part of a duration ("10 minutes").
    pub(super) fn plain_numbers(&self) -> Vec<(usize, u32)> {
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
    pub(super) fn duration_seconds(&self) -> Option<u64> {
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
    pub(super) fn period(&self) -> Option<Period> {
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
    pub(super) fn raw_between(&self, from: usize, to: usize) -> String {
        self.tokens[from..to]
            .iter()
            .map(|token| token.raw.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A name that starts at `from` and runs until a boundary word.
    pub(super) fn name_from(&self, from: usize, stops: &[&str]) -> Option<String> {
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
    pub(super) fn name_before(&self, to: usize, stops: &[&str]) -> Option<String> {
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
    pub(super) fn ad_id(&self) -> Option<String> {
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

pub(super) fn looks_like_id(text: &str) -> bool {
    text.len() == 36
        && text.chars().filter(|c| *c == '-').count() == 4
        && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

pub(super) fn period_of(count: u32, unit: &str) -> Option<Period> {
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

pub(super) fn time_unit_seconds(word: &str) -> Option<u64> {
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
