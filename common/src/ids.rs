//! Ids the services make up: impressions, events, campaigns, jobs, users.

/// A new time-ordered id (UUID v7, hyphenated lower-case), so ids sort by
/// creation. Written through a stack buffer: `to_string` goes through the
/// formatter and grows its `String` four times, on every serve.
pub fn new_id() -> String {
    let mut buffer = uuid::Uuid::encode_buffer();
    String::from(&*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_text_in_creation_order() {
        let first = new_id();
        let second = new_id();
        let parsed = uuid::Uuid::parse_str(&first).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(first, parsed.hyphenated().to_string());
        assert!(first < second, "{first} then {second}");
    }
}
