//! Unit tests of what needs no server: URLs, specs, keys in the journal.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::spec::{DynamoSpec, item_id, key_from_json, key_to_json, parse_url};

fn spec() -> DynamoSpec {
    DynamoSpec {
        table: "orders".into(),
        attributes: vec!["edk".into()],
        into: None,
        context_attributes: Vec::new(),
        version_attribute: None,
        segments: 4,
    }
}

#[test]
fn urls_name_a_valid_table() {
    assert_eq!(parse_url("dynamodb://orders-2026.v1").expect("valid"), "orders-2026.v1");
    assert_eq!(parse_url("dynamodb://orders/").expect("valid"), "orders");
    for bad in ["dynamodb://", "dynamodb://ab", "dynamodb://a b c", "s3://orders", "dynamodb://x/y"] {
        assert!(parse_url(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn specs_are_checked_before_any_request() {
    assert!(spec().check().is_ok());
    let mut s = spec();
    s.attributes.clear();
    assert!(s.check().is_err(), "no attribute");
    let mut s = spec();
    s.attributes.push("other".into());
    s.into = Some("edk_new".into());
    assert!(s.check().is_err(), "--into with two attributes");
    let mut s = spec();
    s.into = Some("edk".into());
    assert!(s.check().is_err(), "--into onto the original");
    let mut s = spec();
    s.attributes = vec!["a.b[2]".into()];
    assert!(s.check().is_err(), "document paths are refused, not misread as names");
    let mut s = spec();
    s.segments = 0;
    assert!(s.check().is_err(), "no segment");
}

#[test]
fn keys_survive_the_journal_exactly() {
    let key: HashMap<String, AttributeValue> = HashMap::from([
        ("pk".to_owned(), AttributeValue::S("tenant \"7\"".into())),
        ("sk".to_owned(), AttributeValue::N("12.50".into())),
        ("bin".to_owned(), AttributeValue::B(Blob::new(vec![0, 255, 7]))),
    ]);
    let json = key_to_json(&key);
    assert_eq!(key_from_json(&json).expect("round trip"), key);
    assert!(key_from_json(&serde_json::json!({"pk": {"X": "1"}})).is_err());
    let names = vec!["pk".to_owned(), "sk".to_owned()];
    assert_eq!(item_id("orders", &names, &key), "orders pk=\"tenant \\\"7\\\"\",sk=12.50");
}
