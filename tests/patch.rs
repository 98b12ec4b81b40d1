//! The JSON Patch written while the expansion serialises (`mysql_webhook_core::patch`) is the
//! one `json_patch::diff` finds on the two documents: the same operations in the same order,
//! on arbitrary JSON (keys with `~` and `/`, arrays that grow and shrink, kinds that change) and
//! on the expansions of the test manifests and the API server's reviews, typed.

use k8s_openapi::api::apps::v1::StatefulSet;
use mysql_webhook_core::patch;
use mysql_webhook_core::{Operation, mutate};
use proptest::prelude::*;
use serde_json::Value;

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        prop_oneof![Just(0.5f64), Just(-2.0)].prop_map(Value::from),
        "[ab~/]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[ab~/]{0,2}", inner), 0..5)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn written(before: &Value, after: &impl serde::Serialize) -> json_patch::Patch {
    patch::diff(before, after).expect("JSON serialises").operations()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_written_patch_is_the_one_json_patch_diff_finds(before in json(), after in json()) {
        let patch = written(&before, &after);
        prop_assert_eq!(&patch, &json_patch::diff(&before, &after));
        let mut patched = before.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        prop_assert_eq!(patched, after);
    }
}

#[test]
fn a_value_compared_with_itself_yields_the_empty_patch() {
    let object: Value =
        serde_json::from_str(include_str!("data/apiserver/validate-update-statefulset.json")).unwrap();
    let empty = patch::diff(&object, &object).unwrap();
    assert!(empty.is_empty(), "{empty:?}");
    assert_eq!(empty.as_bytes(), b"[]");
}

#[test]
fn the_expansion_of_every_test_manifest_is_patched_as_json_patch_diff_would() {
    let mut compared = 0;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let files =
        [data.clone(), data.join("apiserver")].into_iter().flat_map(|dir| std::fs::read_dir(dir).unwrap());
    for entry in files {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let review: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let object = &review["request"]["object"];
        if object["kind"] != "StatefulSet" {
            continue;
        }
        let Ok(Some(mutation)) = mutate(object, Operation::Create, None) else { continue };
        let submitted: StatefulSet = serde_json::from_value(object.clone()).unwrap();
        let before = serde_json::to_value(&submitted).unwrap();
        let expected = json_patch::diff(&before, &serde_json::to_value(&mutation.expanded).unwrap());
        assert_eq!(written(&before, &mutation.expanded), expected, "{}", path.display());
        assert_eq!(mutation.patch.operations(), expected, "{}", path.display());
        compared += usize::from(!expected.0.is_empty());
    }
    assert!(compared >= 3, "only {compared} manifests changed when expanded");
}
