//! The ad-processor's analysis (SPEC §4): deterministic rules whose every
//! step is reported, so an operator can see why an ad was approved, sent to
//! review or rejected. The same ad always gets the same result for the same
//! [`ANALYZER_VERSION`].

use admesh_proto::queue::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::job::Job;

/// Changes whenever a rule or weight changes.
pub const ANALYZER_VERSION: &str = "rules-2026.11";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recommendation {
    Approve,
    Review,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "high" => Self::High,
            "medium" => Self::Medium,
            _ => Self::Low,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFlag {
    pub code: String,
    pub severity: Severity,
    pub excerpt: String,
    pub explanation: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The analysis stored with a completed job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    pub quality_score: u32,
    pub recommendation: Recommendation,
    pub reasons: Vec<String>,
    pub policy_flags: Vec<PolicyFlag>,
    pub call_to_action_strength: u32,
    pub audience_fit: u32,
    pub checks: Vec<Check>,
    pub analyzer_version: String,
}

/// What a policy rule looks for: any of `phrases`, case-insensitively.
struct PolicyRule {
    code: &'static str,
    severity: Severity,
    phrases: &'static [&'static str],
    explanation: &'static str,
}

const POLICY_RULES: &[PolicyRule] = &[
    PolicyRule {
        code: "prohibited_content",
        severity: Severity::High,
        phrases: &[
            "real money gambling",
            "casino",
            "bet real money",
            "buy drugs",
            "weapons for sale",
            "cigarettes",
        ],
        explanation: "Gambling, drugs, weapons and tobacco may not be advertised in game ads.",
    },
    PolicyRule {
        code: "misleading_claim",
        severity: Severity::Medium,
        phrases: &[
            "guaranteed win",
            "guaranteed to win",
            "100% free",
            "totally free",
            "free gems",
            "unlimited gems",
            "get rich",
            "no risk",
            "#1 game",
            "best game ever",
            "number one game",
        ],
        explanation: "Absolute or unverifiable claims mislead players; substantiate or remove them.",
    },
    PolicyRule {
        code: "fake_urgency",
        severity: Severity::Low,
        phrases: &[
            "last chance",
            "only today",
            "act now or",
            "expires in minutes",
        ],
        explanation: "Invented deadlines pressure players; use real offer dates.",
    },
];

/// Verbs that tell the player what to do.
const ACTION_VERBS: &[&str] = &[
    "play",
    "download",
    "install",
    "join",
    "start",
    "try",
    "get",
    "claim",
    "build",
    "battle",
    "explore",
    "discover",
    "enter",
    "pre-register",
    "preregister",
    "fight",
    "race",
    "conquer",
    "unlock",
    "begin",
];

const URGENCY_WORDS: &[&str] = &["now", "today", "free", "tonight", "instantly"];

/// Genre keywords (found in the game family) and the audience labels, words
/// and visuals that fit them.
struct Genre {
    keywords: &'static [&'static str],
    audiences: &'static [&'static str],
    vocabulary: &'static [&'static str],
}

const GENRES: &[Genre] = &[
    Genre {
        keywords: &["rpg", "fantasy", "mmo"],
        audiences: &["18-34", "25-44", "rpg-fans", "fantasy-fans", "core-gamers"],
        vocabulary: &[
            "quest",
            "hero",
            "dragon",
            "magic",
            "adventure",
            "dungeon",
            "sword",
            "epic",
            "guild",
            "legend",
        ],
    },
    Genre {
        keywords: &["strategy", "4x", "tactics", "war"],
        audiences: &["25-44", "35-54", "strategy-fans", "core-gamers"],
        vocabulary: &[
            "empire", "conquer", "army", "build", "alliance", "kingdom", "battle", "command",
        ],
    },
    Genre {
        keywords: &["puzzle", "casual", "match"],
        audiences: &["all-ages", "casual", "35-54", "45+", "puzzle-fans"],
        vocabulary: &[
            "puzzle", "match", "relax", "brain", "levels", "solve", "tiles",
        ],
    },
    Genre {
        keywords: &["shooter", "fps", "action", "battle-royale"],
        audiences: &["18-34", "18-24", "action-fans", "core-gamers"],
        vocabulary: &[
            "squad", "shoot", "arena", "battle", "weapon", "survive", "fast",
        ],
    },
    Genre {
        keywords: &["racing", "sports", "football", "soccer"],
        audiences: &["18-34", "25-44", "sports-fans", "racing-fans"],
        vocabulary: &[
            "race",
            "speed",
            "team",
            "league",
            "championship",
            "goal",
            "drift",
        ],
    },
    Genre {
        keywords: &["kids", "family", "educational"],
        audiences: &["all-ages", "kids", "parents", "family"],
        vocabulary: &["learn", "fun", "friends", "family", "colorful", "safe"],
    },
];

/// Audience labels that must not meet a kids' genre.
const ADULT_AUDIENCES: &[&str] = &["18+", "21+", "adults-only", "mature"];

/// Analyzes `job`'s creative.
pub fn analyze(job: &Job) -> Analysis {
    let text = format!("{} {} {}", job.title, job.description, job.call_to_action);
    let lower = text.to_lowercase();
    let mut checks = Vec::new();
    let mut reasons = Vec::new();

    let policy_flags = policy_flags(&text, &lower);
    let shouting = shouting(&job.title);
    checks.push(check(
        "no_shouting",
        !shouting,
        if shouting {
            "the title is mostly capitals or has repeated exclamation marks"
        } else {
            "the title reads as normal text"
        },
    ));

    let title_chars = job.title.chars().count();
    let title_ok = (10..=90).contains(&title_chars);
    checks.push(check(
        "title_length",
        title_ok,
        format!("{title_chars} characters (10–90 read well)"),
    ));
    let description_chars = job.description.chars().count();
    let description_ok = (30..=500).contains(&description_chars);
    checks.push(check(
        "description_length",
        description_ok,
        format!("{description_chars} characters (30–500 read well)"),
    ));
    let duration_ok = job.duration == 0 || (6..=60).contains(&job.duration);
    checks.push(check(
        "duration",
        duration_ok,
        if job.duration == 0 {
            "static creative (no duration)".to_string()
        } else {
            format!("{} s (video ads should run 6–60 s)", job.duration)
        },
    ));
    let visuals_ok = job.visual_elements.len() >= 2;
    checks.push(check(
        "visual_elements",
        visuals_ok,
        format!(
            "{} visual elements (at least 2 expected)",
            job.visual_elements.len()
        ),
    ));

    let call_to_action_strength = call_to_action_strength(&job.call_to_action);
    checks.push(check(
        "call_to_action",
        call_to_action_strength >= 50,
        format!("strength {call_to_action_strength}/100"),
    ));

    let (audience_fit, fit_detail, age_conflict) = audience_fit(job, &lower);
    checks.push(check("audience_fit", audience_fit >= 50, fit_detail));
    checks.push(check(
        "age_rating",
        !age_conflict,
        if age_conflict {
            "an adult audience is targeted with a kids' or family game"
        } else {
            "audience and genre ages agree"
        },
    ));

    let text_checks_passed = [title_ok, description_ok, duration_ok, !shouting]
        .iter()
        .filter(|passed| **passed)
        .count() as u32;
    let mut score = text_checks_passed * 30 / 4
        + call_to_action_strength * 25 / 100
        + audience_fit * 25 / 100
        + if visuals_ok { 20 } else { 5 };
    for flag in &policy_flags {
        score = score.saturating_sub(match flag.severity {
            Severity::Low => 5,
            Severity::Medium => 15,
            Severity::High => 40,
        });
    }
    if age_conflict {
        score = score.saturating_sub(20);
    }
    let quality_score = score.min(100);

    let worst = policy_flags.iter().map(|flag| flag.severity).max();
    let recommendation = if worst == Some(Severity::High) || age_conflict {
        Recommendation::Reject
    } else if worst == Some(Severity::Medium) || quality_score < 60 {
        Recommendation::Review
    } else {
        Recommendation::Approve
    };

    for flag in &policy_flags {
        reasons.push(format!(
            "{} ({}): \"{}\" — {}",
            flag.code,
            flag.severity.as_str(),
            flag.excerpt,
            flag.explanation
        ));
    }
    if age_conflict {
        reasons.push("An adult audience is targeted with a kids' or family game.".into());
    }
    for failed in checks.iter().filter(|check| !check.passed) {
        if failed.name != "age_rating" {
            reasons.push(format!("{} failed: {}.", failed.name, failed.detail));
        }
    }
    reasons.push(match recommendation {
        Recommendation::Approve => {
            format!("Quality score {quality_score}/100 with no policy issues: approve.")
        }
        Recommendation::Review => {
            format!("Quality score {quality_score}/100: a person should review it.")
        }
        Recommendation::Reject => {
            format!("Quality score {quality_score}/100 with a blocking issue: reject.")
        }
    });

    Analysis {
        quality_score,
        recommendation,
        reasons,
        policy_flags,
        call_to_action_strength,
        audience_fit,
        checks,
        analyzer_version: ANALYZER_VERSION.into(),
    }
}

fn check(name: &str, passed: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        passed,
        detail: detail.into(),
    }
}

fn policy_flags(text: &str, lower: &str) -> Vec<PolicyFlag> {
    let mut flags = Vec::new();
    for rule in POLICY_RULES {
        for phrase in rule.phrases {
            if let Some(at) = lower.find(phrase) {
                // Lowercasing can change byte lengths outside ASCII; fall
                // back to the phrase itself then.
                let excerpt = text
                    .get(at..at + phrase.len())
                    .unwrap_or(phrase)
                    .to_string();
                flags.push(PolicyFlag {
                    code: rule.code.into(),
                    severity: rule.severity,
                    excerpt,
                    explanation: rule.explanation.into(),
                });
            }
        }
    }
    flags
}

/// Mostly capitals (of at least 8 letters) or "!!".
fn shouting(title: &str) -> bool {
    let letters: Vec<char> = title.chars().filter(|c| c.is_alphabetic()).collect();
    let capitals = letters.iter().filter(|c| c.is_uppercase()).count();
    (letters.len() >= 8 && capitals * 10 > letters.len() * 7) || title.contains("!!")
}

/// 0–100: an action verb first counts most, then urgency, then brevity.
pub fn call_to_action_strength(call_to_action: &str) -> u32 {
    let lower = call_to_action.trim().to_lowercase();
    if lower.is_empty() {
        return 0;
    }
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|word| !word.is_empty())
        .collect();
    let mut strength: u32 = 10;
    if let Some(first) = words.first() {
        if ACTION_VERBS.contains(first) {
            strength += 45;
        } else if words.iter().any(|word| ACTION_VERBS.contains(word)) {
            strength += 30;
        }
    }
    if words.iter().any(|word| URGENCY_WORDS.contains(word)) {
        strength += 20;
    }
    if (2..=5).contains(&words.len()) {
        strength += 15;
    }
    if lower.contains("click here") {
        strength = strength.saturating_sub(25);
    }
    if call_to_action.chars().count() <= 25 {
        strength += 10;
    }
    strength.min(100)
}

/// 0–100 fit of audience, words and visuals with the game family's genre;
/// also whether an adult audience meets a kids' genre.
fn audience_fit(job: &Job, lower_text: &str) -> (u32, String, bool) {
    let family = job.game_family.to_lowercase();
    let genres: Vec<&Genre> = GENRES
        .iter()
        .filter(|genre| {
            genre
                .keywords
                .iter()
                .any(|keyword| family.contains(keyword))
        })
        .collect();
    let audiences: Vec<String> = job
        .target_audience
        .iter()
        .map(|label| label.to_lowercase())
        .collect();
    let age_conflict = family_is_for_kids(&family)
        && audiences
            .iter()
            .any(|label| ADULT_AUDIENCES.contains(&label.as_str()));
    if genres.is_empty() {
        return (
            50,
            format!(
                "no known genre in game family {:?}; neutral fit",
                job.game_family
            ),
            age_conflict,
        );
    }
    let matching_audiences = audiences
        .iter()
        .filter(|label| {
            genres
                .iter()
                .any(|genre| genre.audiences.contains(&label.as_str()))
        })
        .count();
    let visuals = job.visual_elements.join(" ").to_lowercase();
    let vocabulary_hits = genres
        .iter()
        .flat_map(|genre| genre.vocabulary.iter())
        .filter(|word| lower_text.contains(*word) || visuals.contains(*word))
        .count();
    let mut fit = 30;
    fit += match (audiences.len(), matching_audiences) {
        (0, _) => 10,
        (total, matching) => (40 * matching / total) as u32,
    };
    fit += (vocabulary_hits.min(3) * 10) as u32;
    let fit = fit.min(100);
    (
        fit,
        format!(
            "{matching_audiences} of {} audience labels and {vocabulary_hits} genre words fit {:?}",
            audiences.len(),
            job.game_family
        ),
        age_conflict,
    )
}

fn family_is_for_kids(family: &str) -> bool {
    ["kids", "family", "educational"]
        .iter()
        .any(|keyword| family.contains(keyword))
}

impl Analysis {
    pub fn to_proto(&self) -> pb::AdAnalysis {
        pb::AdAnalysis {
            quality_score: self.quality_score,
            recommendation: match self.recommendation {
                Recommendation::Approve => pb::Recommendation::Approve,
                Recommendation::Review => pb::Recommendation::Review,
                Recommendation::Reject => pb::Recommendation::Reject,
            } as i32,
            reasons: self.reasons.clone(),
            policy_flags: self
                .policy_flags
                .iter()
                .map(|flag| pb::PolicyFlag {
                    code: flag.code.clone(),
                    severity: flag.severity.as_str().into(),
                    excerpt: flag.excerpt.clone(),
                    explanation: flag.explanation.clone(),
                })
                .collect(),
            call_to_action_strength: self.call_to_action_strength,
            audience_fit: self.audience_fit,
            checks: self
                .checks
                .iter()
                .map(|check| pb::AnalysisCheck {
                    name: check.name.clone(),
                    passed: check.passed,
                    detail: check.detail.clone(),
                })
                .collect(),
            analyzer_version: self.analyzer_version.clone(),
        }
    }

    /// From a processor's report; `None` when the recommendation is unset
    /// or the score is out of range.
    pub fn from_proto(analysis: &pb::AdAnalysis) -> Option<Self> {
        let recommendation = match pb::Recommendation::try_from(analysis.recommendation).ok()? {
            pb::Recommendation::Approve => Recommendation::Approve,
            pb::Recommendation::Review => Recommendation::Review,
            pb::Recommendation::Reject => Recommendation::Reject,
            pb::Recommendation::Unspecified => return None,
        };
        if analysis.quality_score > 100
            || analysis.call_to_action_strength > 100
            || analysis.audience_fit > 100
        {
            return None;
        }
        Some(Self {
            quality_score: analysis.quality_score,
            recommendation,
            reasons: analysis.reasons.clone(),
            policy_flags: analysis
                .policy_flags
                .iter()
                .map(|flag| PolicyFlag {
                    code: flag.code.clone(),
                    severity: Severity::parse(&flag.severity),
                    excerpt: flag.excerpt.clone(),
                    explanation: flag.explanation.clone(),
                })
                .collect(),
            call_to_action_strength: analysis.call_to_action_strength,
            audience_fit: analysis.audience_fit,
            checks: analysis
                .checks
                .iter()
                .map(|c| check(&c.name, c.passed, c.detail.clone()))
                .collect(),
            analyzer_version: analysis.analyzer_version.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::NewAd;

    fn job(title: &str, description: &str, cta: &str, family: &str, audience: &[&str]) -> Job {
        Job::new(
            NewAd {
                title: title.into(),
                description: description.into(),
                game_family: family.into(),
                target_audience: audience.iter().map(|label| label.to_string()).collect(),
                visual_elements: vec!["dragon artwork".into(), "gameplay footage".into()],
                call_to_action: cta.into(),
                duration: 30,
                priority: 3,
                max_wait_secs: 300,
            },
            "job".into(),
            0,
        )
    }

    fn good() -> Job {
        job(
            "Epic RPG Adventure Awaits",
            "Lead your guild through dungeons and face the dragon in a hand-drawn fantasy world.",
            "Play free now",
            "RPG-Fantasy",
            &["18-34", "rpg-fans"],
        )
    }

    #[test]
    fn a_clean_well_targeted_ad_is_approved() {
        let analysis = analyze(&good());
        assert_eq!(
            analysis.recommendation,
            Recommendation::Approve,
            "{analysis:#?}"
        );
        assert!(analysis.quality_score >= 80, "{}", analysis.quality_score);
        assert!(analysis.policy_flags.is_empty());
        assert!(
            analysis.checks.iter().all(|check| check.passed),
            "{analysis:#?}"
        );
    }

    #[test]
    fn prohibited_content_is_rejected_with_the_offending_text() {
        let mut ad = good();
        ad.description = "Win at the Casino tables every night with your guild.".into();
        let analysis = analyze(&ad);
        assert_eq!(analysis.recommendation, Recommendation::Reject);
        let flag = &analysis.policy_flags[0];
        assert_eq!(flag.code, "prohibited_content");
        assert_eq!(flag.excerpt, "Casino");
        assert!(analysis.reasons[0].contains("prohibited_content"));
    }

    #[test]
    fn misleading_claims_need_review() {
        let mut ad = good();
        ad.title = "Guaranteed win, 100% free".into();
        let analysis = analyze(&ad);
        assert_eq!(analysis.recommendation, Recommendation::Review);
        assert_eq!(analysis.policy_flags.len(), 2);
        assert!(analysis.quality_score < analyze(&good()).quality_score);
    }

    #[test]
    fn an_adult_audience_for_a_kids_game_is_rejected() {
        let ad = job(
            "Learn letters with friendly dragons",
            "A colorful, safe world where kids learn to read with fun friends.",
            "Download today",
            "Kids-Educational",
            &["18+"],
        );
        let analysis = analyze(&ad);
        assert_eq!(analysis.recommendation, Recommendation::Reject);
        assert!(
            analysis
                .checks
                .iter()
                .any(|c| c.name == "age_rating" && !c.passed)
        );
    }

    #[test]
    fn call_to_action_strength_rewards_a_verb_first_and_short_text() {
        assert_eq!(call_to_action_strength(""), 0);
        let strong = call_to_action_strength("Play free now");
        let weak = call_to_action_strength("Click here for more information about our game");
        assert!(strong >= 90, "{strong}");
        assert!(weak < 40, "{weak}");
    }

    #[test]
    fn length_and_duration_checks_explain_themselves() {
        let mut ad = good();
        ad.title = "Go".into();
        ad.duration = 120;
        let analysis = analyze(&ad);
        let title = analysis
            .checks
            .iter()
            .find(|c| c.name == "title_length")
            .expect("check");
        assert!(!title.passed);
        assert!(title.detail.starts_with("2 characters"));
        let duration = analysis
            .checks
            .iter()
            .find(|c| c.name == "duration")
            .expect("check");
        assert!(!duration.passed);
        assert!(
            analysis
                .reasons
                .iter()
                .any(|reason| reason.starts_with("duration failed"))
        );
    }

    #[test]
    fn the_same_ad_always_gets_the_same_analysis_and_it_survives_the_proto() {
        let first = analyze(&good());
        assert_eq!(first, analyze(&good()));
        assert_eq!(Analysis::from_proto(&first.to_proto()), Some(first));
    }
}
