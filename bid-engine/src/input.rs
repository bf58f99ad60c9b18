//! Checking what callers send and turning it into domain values, and back.
//! Every problem names its field (`campaign.ads[1].redirect_url: …`).

use std::sync::Arc;

use admesh_common::{
    time::{millis_of, timestamp},
    validation::{
        FieldViolations, ImpressionFields, check_impression, invalid_argument, normalize_country,
    },
};
use admesh_proto::{bid::v1 as pb, common::v1::DeviceType};

use crate::{
    auction::MAX_AGE,
    campaign::{Ad, AgeRange, Campaign, CampaignStatus, PersistedSpend, Targeting},
    ledger::Spent,
};

const MAX_NAME_CHARS: usize = 200;
const MAX_ADS: usize = 50;
const MAX_RULE_VALUES: usize = 500;

/// The fields an update mask may name.
pub const UPDATABLE_FIELDS: &[&str] = &[
    "name",
    "advertiser_id",
    "status",
    "bid_price",
    "daily_budget",
    "lifetime_budget",
    "start_time",
    "end_time",
    "frequency_cap",
    "targeting",
    "ads",
];

pub fn status_from_proto(value: i32) -> Option<CampaignStatus> {
    match pb::CampaignStatus::try_from(value).ok()? {
        pb::CampaignStatus::Active => Some(CampaignStatus::Active),
        pb::CampaignStatus::Paused => Some(CampaignStatus::Paused),
        pb::CampaignStatus::Ended => Some(CampaignStatus::Ended),
        pb::CampaignStatus::Unspecified => None,
    }
}

pub fn status_to_proto(status: CampaignStatus) -> pb::CampaignStatus {
    match status {
        CampaignStatus::Active => pb::CampaignStatus::Active,
        CampaignStatus::Paused => pb::CampaignStatus::Paused,
        CampaignStatus::Ended => pb::CampaignStatus::Ended,
    }
}

/// An absolute http(s) URL with a host.
pub fn is_web_url(value: &str) -> bool {
    value.parse::<http::Uri>().ok().is_some_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|host| !host.is_empty())
    })
}

/// A campaign as the caller describes it, checked. Output-only fields (id,
/// spend, times) are ignored. `existing` carries what an update keeps: ids,
/// creation order, ad ids and creation times.
pub fn campaign_from_proto(
    input: &pb::Campaign,
    existing: Option<&Campaign>,
    now: i64,
) -> Result<Campaign, tonic::Status> {
    let mut problems = FieldViolations::new();
    let name = input.name.trim();
    problems.check(!name.is_empty(), "campaign.name", "must not be empty");
    problems.check(
        name.chars().count() <= MAX_NAME_CHARS,
        "campaign.name",
        format!("must be at most {MAX_NAME_CHARS} characters"),
    );
    let advertiser_id = input.advertiser_id.trim();
    problems.check(
        !advertiser_id.is_empty(),
        "campaign.advertiser_id",
        "must not be empty",
    );
    let status = match input.status {
        0 => Some(CampaignStatus::Active),
        value => {
            let status = status_from_proto(value);
            problems.check(
                status.is_some(),
                "campaign.status",
                format!("unknown value {value}"),
            );
            status
        }
    };
    problems.check(
        input.bid_price > 0,
        "campaign.bid_price",
        "must be a positive CPM in micros",
    );
    problems.check(
        input.daily_budget > 0,
        "campaign.daily_budget",
        "must be positive (micros)",
    );
    if let Some(budget) = input.lifetime_budget {
        problems.check(
            budget > 0,
            "campaign.lifetime_budget",
            "must be positive (micros)",
        );
    }
    let start_time = input.start_time.as_ref().map(millis_of);
    let end_time = input.end_time.as_ref().map(millis_of);
    if let (Some(start), Some(end)) = (start_time, end_time) {
        problems.check(start < end, "campaign.end_time", "must be after start_time");
    }
    if let Some(cap) = input.frequency_cap {
        problems.check(cap > 0, "campaign.frequency_cap", "must be at least 1");
    }
    let targeting = targeting_from_proto(input.targeting.as_ref(), &mut problems);
    problems.check(
        !input.ads.is_empty(),
        "campaign.ads",
        "must have at least one ad",
    );
    problems.check(
        input.ads.len() <= MAX_ADS,
        "campaign.ads",
        format!("at most {MAX_ADS} ads"),
    );
    let mut ads = Vec::with_capacity(input.ads.len());
    for (i, ad) in input.ads.iter().enumerate() {
        let field = |name: &str| format!("campaign.ads[{i}].{name}");
        let title = ad.title.trim();
        problems.check(!title.is_empty(), field("title"), "must not be empty");
        problems.check(
            title.chars().count() <= MAX_NAME_CHARS,
            field("title"),
            format!("must be at most {MAX_NAME_CHARS} characters"),
        );
        problems.check(
            is_web_url(&ad.image_url),
            field("image_url"),
            "must be an absolute http(s) URL",
        );
        problems.check(
            is_web_url(&ad.redirect_url),
            field("redirect_url"),
            "must be an absolute http(s) URL",
        );
        let kept = existing.and_then(|campaign| campaign.ads.iter().find(|old| old.id == ad.id));
        if !ad.id.is_empty() && kept.is_none() {
            problems.add(
                field("id"),
                "is not an ad of this campaign (leave empty for a new ad)",
            );
        }
        ads.push(Ad {
            id: kept.map_or_else(admesh_common::ids::new_id, |old| old.id.clone()),
            title: title.to_string(),
            image_url: ad.image_url.clone(),
            redirect_url: ad.redirect_url.clone(),
            created_at: kept.map_or(now, |old| old.created_at),
        });
    }
    problems.into_result()?;
    Ok(Campaign {
        id: existing.map_or_else(
            || Arc::from(admesh_common::ids::new_id()),
            |c| Arc::clone(&c.id),
        ),
        name: name.to_string(),
        advertiser_id: advertiser_id.to_string(),
        status: status.unwrap_or(CampaignStatus::Active),
        bid_price: input.bid_price,
        daily_budget: input.daily_budget,
        lifetime_budget: input.lifetime_budget,
        start_time,
        end_time,
        frequency_cap: input.frequency_cap,
        targeting,
        ads,
        created_seq: existing.map_or(0, |c| c.created_seq),
        created_at: existing.map_or(now, |c| c.created_at),
        updated_at: now,
        persisted_spend: existing.map_or(PersistedSpend::default(), |c| c.persisted_spend),
    })
}

fn targeting_from_proto(
    input: Option<&pb::Targeting>,
    problems: &mut FieldViolations,
) -> Targeting {
    let Some(input) = input else {
        return Targeting::default();
    };
    for (field, count) in [
        ("countries", input.countries.len()),
        ("device_types", input.device_types.len()),
        ("placements", input.placements.len()),
        ("interests", input.interests.len()),
    ] {
        problems.check(
            count <= MAX_RULE_VALUES,
            format!("campaign.targeting.{field}"),
            format!("at most {MAX_RULE_VALUES} values"),
        );
    }
    let mut targeting = Targeting::default();
    for (i, country) in input.countries.iter().enumerate() {
        match normalize_country(country) {
            Some(code) if !code.is_empty() => targeting.countries.push(code),
            _ => problems.add(
                format!("campaign.targeting.countries[{i}]"),
                format!("{country:?} is not a two-letter country code"),
            ),
        }
    }
    for (i, device) in input.device_types.iter().enumerate() {
        match DeviceType::try_from(*device) {
            Ok(device) if device != DeviceType::Unspecified => targeting.device_types.push(device),
            _ => problems.add(
                format!("campaign.targeting.device_types[{i}]"),
                format!("unknown device type {device}"),
            ),
        }
    }
    for (i, placement) in input.placements.iter().enumerate() {
        let placement = placement.trim();
        problems.check(
            !placement.is_empty(),
            format!("campaign.targeting.placements[{i}]"),
            "must not be empty",
        );
        targeting.placements.push(placement.to_string());
    }
    for (i, interest) in input.interests.iter().enumerate() {
        let interest = normalize_interest(interest);
        problems.check(
            !interest.is_empty(),
            format!("campaign.targeting.interests[{i}]"),
            "must not be empty",
        );
        targeting.interests.push(interest);
    }
    for list in [
        &mut targeting.countries,
        &mut targeting.placements,
        &mut targeting.interests,
    ] {
        list.sort();
        list.dedup();
    }
    targeting.device_types.sort_by_key(|device| *device as i32);
    targeting.device_types.dedup();
    if let Some(range) = &input.age_range {
        let valid = range.max >= 1 && range.min <= range.max && range.max <= MAX_AGE;
        problems.check(
            valid,
            "campaign.targeting.age_range",
            format!("needs 0 <= min <= max <= {MAX_AGE} and max >= 1"),
        );
        targeting.age_range = valid.then_some(AgeRange {
            min: range.min,
            max: range.max,
        });
    }
    targeting
}

pub fn normalize_interest(value: &str) -> String {
    value.trim().to_lowercase()
}

/// Overlays the fields `paths` names from `patch` onto `base` (an empty
/// mask means every field the patch sets to a non-default value).
pub fn apply_update_mask(
    base: &pb::Campaign,
    patch: &pb::Campaign,
    paths: &[String],
) -> Result<pb::Campaign, tonic::Status> {
    let implied;
    let paths: &[String] = if paths.is_empty() {
        implied = implied_paths(patch);
        &implied
    } else {
        paths
    };
    let mut merged = base.clone();
    for path in paths {
        // `targeting.countries` and the like replace one targeting list.
        if let Some(sub) = path.strip_prefix("targeting.") {
            let target = merged.targeting.get_or_insert_with(Default::default);
            let source = patch.targeting.clone().unwrap_or_default();
            match sub {
                "countries" => target.countries = source.countries,
                "device_types" => target.device_types = source.device_types,
                "placements" => target.placements = source.placements,
                "interests" => target.interests = source.interests,
                "age_range" => target.age_range = source.age_range,
                _ => return Err(unknown_path(path)),
            }
            continue;
        }
        match path.as_str() {
            "name" => merged.name = patch.name.clone(),
            "advertiser_id" => merged.advertiser_id = patch.advertiser_id.clone(),
            "status" => merged.status = patch.status,
            "bid_price" => merged.bid_price = patch.bid_price,
            "daily_budget" => merged.daily_budget = patch.daily_budget,
            "lifetime_budget" => merged.lifetime_budget = patch.lifetime_budget,
            "start_time" => merged.start_time = patch.start_time,
            "end_time" => merged.end_time = patch.end_time,
            "frequency_cap" => merged.frequency_cap = patch.frequency_cap,
            "targeting" => merged.targeting = patch.targeting.clone(),
            "ads" => merged.ads = patch.ads.clone(),
            _ => return Err(unknown_path(path)),
        }
    }
    Ok(merged)
}

fn unknown_path(path: &str) -> tonic::Status {
    invalid_argument(
        "update_mask",
        format!(
            "unknown field path {path:?} (one of: {}, targeting.<list>)",
            UPDATABLE_FIELDS.join(", ")
        ),
    )
}

fn implied_paths(patch: &pb::Campaign) -> Vec<String> {
    let set = [
        ("name", !patch.name.is_empty()),
        ("advertiser_id", !patch.advertiser_id.is_empty()),
        ("status", patch.status != 0),
        ("bid_price", patch.bid_price != 0),
        ("daily_budget", patch.daily_budget != 0),
        ("lifetime_budget", patch.lifetime_budget.is_some()),
        ("start_time", patch.start_time.is_some()),
        ("end_time", patch.end_time.is_some()),
        ("frequency_cap", patch.frequency_cap.is_some()),
        ("targeting", patch.targeting.is_some()),
        ("ads", !patch.ads.is_empty()),
    ];
    set.iter()
        .filter(|(_, present)| *present)
        .map(|(path, _)| (*path).to_string())
        .collect()
}

/// The API view of a campaign. A running campaign past its end shows as
/// ended.
pub fn campaign_to_proto(campaign: &Campaign, spent: Spent, now: i64) -> pb::Campaign {
    let status = match campaign.status {
        CampaignStatus::Active if campaign.end_time.is_some_and(|end| now >= end) => {
            CampaignStatus::Ended
        }
        status => status,
    };
    pb::Campaign {
        id: campaign.id.to_string(),
        name: campaign.name.clone(),
        advertiser_id: campaign.advertiser_id.clone(),
        status: status_to_proto(status) as i32,
        bid_price: campaign.bid_price,
        daily_budget: campaign.daily_budget,
        lifetime_budget: campaign.lifetime_budget,
        spent_today: spent.today,
        lifetime_spent: spent.lifetime,
        start_time: campaign.start_time.map(timestamp),
        end_time: campaign.end_time.map(timestamp),
        frequency_cap: campaign.frequency_cap,
        targeting: Some(pb::Targeting {
            countries: campaign.targeting.countries.clone(),
            device_types: campaign
                .targeting
                .device_types
                .iter()
                .map(|device| *device as i32)
                .collect(),
            placements: campaign.targeting.placements.clone(),
            interests: campaign.targeting.interests.clone(),
            age_range: campaign.targeting.age_range.map(|range| pb::AgeRange {
                min: range.min,
                max: range.max,
            }),
        }),
        ads: campaign
            .ads
            .iter()
            .map(|ad| pb::Ad {
                id: ad.id.clone(),
                campaign_id: campaign.id.to_string(),
                title: ad.title.clone(),
                image_url: ad.image_url.clone(),
                redirect_url: ad.redirect_url.clone(),
                created_at: Some(timestamp(ad.created_at)),
            })
            .collect(),
        created_at: Some(timestamp(campaign.created_at)),
        updated_at: Some(timestamp(campaign.updated_at)),
    }
}

/// A bid request, checked and normalized.
#[derive(Debug)]
pub struct BidInput {
    pub country: String,
    pub device_type: DeviceType,
    pub interests: Vec<String>,
}

pub fn bid_from_proto(request: &pb::BidRequest) -> Result<BidInput, tonic::Status> {
    let mut problems = FieldViolations::new();
    let country = check_impression(
        ImpressionFields {
            user_id: &request.user_id,
            placement_id: &request.placement_id,
            country_code: &request.country_code,
            device_type: request.device_type,
            age: request.age,
            floor_cpm: request.floor_cpm,
        },
        &mut problems,
    );
    problems.check(
        request.interests.len() <= 100,
        "interests",
        "at most 100 interests",
    );
    problems.into_result()?;
    Ok(BidInput {
        country,
        device_type: DeviceType::try_from(request.device_type).unwrap_or(DeviceType::Unspecified),
        interests: request
            .interests
            .iter()
            .map(|interest| normalize_interest(interest))
            .filter(|interest| !interest.is_empty())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> pb::Campaign {
        pb::Campaign {
            name: "Spring".into(),
            advertiser_id: "adv-1".into(),
            bid_price: 2_000_000,
            daily_budget: 10_000_000,
            ads: vec![pb::Ad {
                title: "Hello".into(),
                image_url: "https://cdn.example.com/a.jpg".into(),
                redirect_url: "https://example.com/".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn problem_of(input: pb::Campaign) -> String {
        campaign_from_proto(&input, None, 0)
            .expect_err("invalid")
            .message()
            .to_string()
    }

    #[test]
    fn a_valid_campaign_is_active_with_fresh_ids() {
        let campaign = campaign_from_proto(&valid(), None, 42).expect("valid");
        assert_eq!(campaign.status, CampaignStatus::Active);
        assert!(!campaign.id.is_empty() && !campaign.ads[0].id.is_empty());
        assert_eq!(campaign.created_at, 42);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut input = valid();
        input.bid_price = 0;
        assert!(problem_of(input).starts_with("campaign.bid_price:"));
        let mut input = valid();
        input.daily_budget = -5;
        assert!(problem_of(input).contains("campaign.daily_budget"));
        let mut input = valid();
        input.status = 42;
        assert!(problem_of(input).contains("campaign.status: unknown value 42"));
        let mut input = valid();
        input.ads[0].redirect_url = "javascript:alert(1)".into();
        assert!(problem_of(input).contains("campaign.ads[0].redirect_url"));
        let mut input = valid();
        input.targeting = Some(pb::Targeting {
            countries: vec!["USA".into()],
            device_types: vec![0],
            ..Default::default()
        });
        let message = problem_of(input);
        assert!(
            message.contains("campaign.targeting.countries[0]"),
            "{message}"
        );
        assert!(
            message.contains("campaign.targeting.device_types[0]"),
            "{message}"
        );
        let mut input = valid();
        input.ads.clear();
        assert!(problem_of(input).contains("campaign.ads: must have at least one ad"));
    }

    #[test]
    fn targeting_is_normalized() {
        let mut input = valid();
        input.targeting = Some(pb::Targeting {
            countries: vec!["us".into(), "US".into()],
            interests: vec![" Gaming ".into()],
            ..Default::default()
        });
        let campaign = campaign_from_proto(&input, None, 0).expect("valid");
        assert_eq!(campaign.targeting.countries, vec!["US".to_string()]);
        assert_eq!(campaign.targeting.interests, vec!["gaming".to_string()]);
    }

    #[test]
    fn update_masks_overlay_only_named_fields() {
        let base = valid();
        let patch = pb::Campaign {
            bid_price: 3_000_000,
            name: "ignored".into(),
            ..Default::default()
        };
        let merged = apply_update_mask(&base, &patch, &["bid_price".into()]).expect("known");
        assert_eq!(merged.bid_price, 3_000_000);
        assert_eq!(merged.name, "Spring");
        let implied = apply_update_mask(&base, &patch, &[]).expect("known");
        assert_eq!(implied.name, "ignored");
        let error = apply_update_mask(&base, &patch, &["colour".into()]).expect_err("unknown");
        assert!(error.message().starts_with("update_mask:"));
    }
}
