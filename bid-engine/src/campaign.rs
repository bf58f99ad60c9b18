//! The campaign as the auction sees it: plain values, normalized once when
//! loaded (countries upper-case, interests and placements as given, device
//! types as enum values), so matching a bid never re-parses anything.

use std::{collections::HashMap, sync::Arc};

use admesh_common::FastHash;
use admesh_proto::common::v1::DeviceType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignStatus {
    Active,
    Paused,
    Ended,
}

impl CampaignStatus {
    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Ended => "ended",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// An inclusive age range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgeRange {
    pub min: u32,
    pub max: u32,
}

impl AgeRange {
    pub fn contains(self, age: u32) -> bool {
        (self.min..=self.max).contains(&age)
    }

    /// The SQL spelling, `18-34`.
    pub fn to_rule_value(self) -> String {
        format!("{}-{}", self.min, self.max)
    }

    pub fn parse(value: &str) -> Option<Self> {
        let (min, max) = value.split_once('-')?;
        let range = Self {
            min: min.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        };
        (range.min <= range.max).then_some(range)
    }
}

/// Who a campaign wants to reach. An empty list means "any value".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targeting {
    pub countries: Vec<String>,
    pub device_types: Vec<DeviceType>,
    pub placements: Vec<String>,
    pub interests: Vec<String>,
    pub age_range: Option<AgeRange>,
}

/// One creative of a campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ad {
    pub id: String,
    pub title: String,
    pub image_url: String,
    pub redirect_url: String,
    pub created_at: i64,
}

/// A map by campaign id.
pub type CampaignMap<V> = HashMap<Arc<str>, V, FastHash>;

/// A campaign. Spend lives in the ledger, not here: the persisted figures
/// below only seed the ledger when it first meets the campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    pub id: Arc<str>,
    pub name: String,
    pub advertiser_id: String,
    pub status: CampaignStatus,
    /// CPM bid, micros.
    pub bid_price: i64,
    pub daily_budget: i64,
    pub lifetime_budget: Option<i64>,
    /// Unix ms; `None` = open.
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// Impressions per user per UTC day.
    pub frequency_cap: Option<u32>,
    pub targeting: Targeting,
    pub ads: Vec<Ad>,
    /// Creation order: the auction's tie-break (oldest first).
    pub created_seq: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub persisted_spend: PersistedSpend,
}

/// Spend as last written to SQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistedSpend {
    /// The UTC day `spent_today` belongs to.
    pub day: i64,
    pub spent_today: i64,
    pub impressions_today: i64,
    pub lifetime_spent: i64,
}

impl Campaign {
    /// Inside its start/end window at `now` (unix ms); the end is exclusive.
    pub fn is_running_at(&self, now: i64) -> bool {
        self.start_time.is_none_or(|start| now >= start)
            && self.end_time.is_none_or(|end| now < end)
    }
}

/// The spend of one impression at a clearing CPM of `price` micros: a
/// thousandth, rounded up so that no impression is ever free.
pub fn spend_of_impression(price: i64) -> i64 {
    (price + 999) / 1000
}

/// The lower-case name a device type has in REST, SQL and the CLI.
pub fn device_type_name(device: DeviceType) -> &'static str {
    match device {
        DeviceType::Unspecified => "unspecified",
        DeviceType::Mobile => "mobile",
        DeviceType::Desktop => "desktop",
        DeviceType::Tablet => "tablet",
        DeviceType::Ctv => "ctv",
    }
}

/// Parses `mobile` or `DEVICE_TYPE_MOBILE` (any case).
pub fn parse_device_type(value: &str) -> Option<DeviceType> {
    let upper = value.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("DEVICE_TYPE_").unwrap_or(&upper);
    match short {
        "MOBILE" => Some(DeviceType::Mobile),
        "DESKTOP" => Some(DeviceType::Desktop),
        "TABLET" => Some(DeviceType::Tablet),
        "CTV" => Some(DeviceType::Ctv),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_is_a_thousandth_of_the_cpm_rounded_up() {
        assert_eq!(spend_of_impression(2_500_000), 2_500);
        assert_eq!(spend_of_impression(2_500_001), 2_501);
        assert_eq!(spend_of_impression(1), 1);
    }

    #[test]
    fn age_ranges_parse_and_contain_their_ends() {
        let range = AgeRange::parse("18-34").expect("valid");
        assert!(range.contains(18) && range.contains(34) && !range.contains(35));
        assert_eq!(AgeRange::parse("34-18"), None);
        assert_eq!(AgeRange::parse("x-1"), None);
        assert_eq!(range.to_rule_value(), "18-34");
    }

    #[test]
    fn device_types_parse_short_and_proto_names() {
        assert_eq!(parse_device_type("mobile"), Some(DeviceType::Mobile));
        assert_eq!(parse_device_type("DEVICE_TYPE_CTV"), Some(DeviceType::Ctv));
        assert_eq!(parse_device_type("fridge"), None);
    }
}
