//! The offline parser: deterministic, no network. A sentence is lexed into
//! tokens (numbers written as digits or words, quoted names, ids), each
//! intent's grammar rule looks for its key words, and slot grammars read the
//! parameters (priorities, durations, periods, game families and campaign
//! names with spaces). Words outside the grammar (politeness, fillers,
//! typos in them) are ignored; text that matches no rule, or two, is an
//! error that names the closest supported commands.

mod lexer;
mod rules;
mod slots;

use crate::intent::{CATALOGUE, Intent};

use self::{lexer::Sentence, rules::RULES};

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
mod tests;
