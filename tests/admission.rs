//! The admission decisions as pure functions (`mysql_webhook_core::admission`): what `/mutate` and
//! `/validate` answer for each kind of review, without a socket. The reviews are the API
//! server's own (`tests/data/apiserver/`, captured from kube-apiserver 1.36) and the fixtures of
//! `tests/data/`; `tests/server.rs` checks the same decisions through HTTPS.

mod common;

use base64::Engine as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use mysql_webhook_core::admission::{
    self, Outcome, Request, Response, ReviewError, Validation, evaluation_response, mutate_review,
    scale_request, validation,
};
use serde_json::Value;

fn review(file: &str) -> Vec<u8> {
    std::fs::read(common::repo_path(&format!("tests/data/{file}"))).unwrap()
}

fn request(file: &str) -> Request {
    admission::parse(&review(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn review_json(file: &str) -> Value {
    serde_json::from_slice(&review(file)).unwrap()
}

/// The JSON Patch of an answer, decoded.
fn patch(response: &Response) -> json_patch::Patch {
    response.patch.as_ref().expect("a patch").operations()
}

/// The object of a review with the answer's patch applied, as the API server would store it.
fn patched(file: &str, response: &Response) -> Value {
    let mut object = review_json(file)["request"]["object"].clone();
    json_patch::patch(&mut object, &patch(response)).expect("the patch applies to the submitted object");
    object
}

/// A review of `object` as the API server would send it to `/mutate` on CREATE.
fn create_review(object: &Value) -> Request {
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
            "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
            "namespace": "shop",
            "operation": "CREATE",
            "object": object,
        }
    });
    admission::parse(&serde_json::to_vec(&body).unwrap()).unwrap()
}

#[test]
fn the_api_servers_create_is_patched_into_the_engines_expansion() {
    let file = "apiserver/mutate-create-statefulset.json";
    let response = mutate_review(&request(file)).unwrap();
    assert!(response.allowed);
    assert_eq!(response.outcome(), Outcome::Patched);
    assert_eq!(response.patch_type, Some("JSONPatch"));
    let submitted = review_json(file)["request"]["object"].clone();
    let expanded = mysql_webhook_core::mutate(&submitted, mysql_webhook_core::Operation::Create, Some("rec"))
        .unwrap()
        .expect("opted in")
        .expanded;
    assert_eq!(patched(file, &response), serde_json::to_value(expanded).unwrap());
}

#[test]
fn the_patched_create_needs_no_second_patch() {
    let file = "apiserver/mutate-create-statefulset.json";
    let once = patched(file, &mutate_review(&request(file)).unwrap());
    let again = mutate_review(&create_review(&once)).unwrap();
    assert_eq!((again.allowed, &again.patch), (true, &None), "reinvocation changes nothing");
}

#[test]
fn an_update_never_patches_immutable_fields() {
    let file = "apiserver/mutate-update-statefulset.json";
    let response = mutate_review(&request(file)).unwrap();
    assert!(response.allowed);
    let stored = if response.patch.is_some() {
        patched(file, &response)
    } else {
        review_json(file)["request"]["object"].clone()
    };
    let old = &review_json(file)["request"]["oldObject"];
    for field in ["volumeClaimTemplates", "selector", "serviceName", "podManagementPolicy"] {
        assert_eq!(stored["spec"][field], old["spec"][field], "{field} stays as stored");
    }
    if response.patch.is_some() {
        for operation in patch(&response).0 {
            let path = operation.path().to_string();
            for immutable in [
                "/spec/volumeClaimTemplates",
                "/spec/selector",
                "/spec/serviceName",
                "/spec/podManagementPolicy",
            ] {
                assert!(!path.starts_with(immutable), "{path} is immutable on UPDATE");
            }
        }
    }
}

#[test]
fn mutate_lets_a_scale_through_untouched() {
    let response = mutate_review(&request("apiserver/mutate-update-scale.json")).unwrap();
    assert_eq!((response.allowed, response.outcome()), (true, Outcome::Allowed));
}

#[test]
fn mutate_allows_unannotated_objects_and_other_kinds_as_they_are() {
    for file in ["create-unannotated.json", "create-configmap.json"] {
        let response = mutate_review(&request(file)).unwrap();
        assert_eq!(
            (response.allowed, response.patch.is_none(), response.warnings.len()),
            (true, true, 0),
            "{file}"
        );
    }
}

#[test]
fn mutate_denies_a_bad_annotation_with_422_and_the_reason() {
    let response = mutate_review(&request("create-invalid-storage.json")).unwrap();
    assert_eq!(response.outcome(), Outcome::Denied);
    let status = response.status.as_ref().expect("a status");
    assert_eq!(status.code, 422);
    assert!(status.message.starts_with("annotation mysql-webhook.io/storage:"), "{}", status.message);
}

#[test]
fn validate_judges_the_expanded_object_the_api_server_will_store() {
    let file = "apiserver/validate-create-statefulset.json";
    let Validation::Evaluate(input) = validation(&request(file)).unwrap() else {
        panic!("an opted-in CREATE is evaluated");
    };
    assert_eq!(input.subject.namespace, review_json(file)["request"]["namespace"].as_str().unwrap());
    let input: Value = serde_json::from_str(input.input.whole()).unwrap();
    assert_eq!(input["operation"], "CREATE");
    assert_eq!(input["uid"], review_json(file)["request"]["uid"]);
    let object: StatefulSet = serde_json::from_value(input["object"].clone()).unwrap();
    let containers = object.spec.unwrap().template.spec.unwrap();
    let init: Vec<_> = containers.init_containers.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(init, ["init-mysql", "clone-mysql"]);
    assert!(input.get("oldObject").is_none());
}

#[test]
fn validate_passes_the_old_object_of_an_update() {
    let Validation::Evaluate(input) =
        validation(&request("apiserver/validate-update-statefulset.json")).unwrap()
    else {
        panic!("an opted-in UPDATE is evaluated");
    };
    let input: Value = serde_json::from_str(input.input.whole()).unwrap();
    assert_eq!(input["operation"], "UPDATE");
    assert_eq!(input["oldObject"]["metadata"]["name"], "mysql");
}

#[test]
fn the_view_policies_get_is_the_whole_request_cut_to_the_view_and_nothing_else() {
    for file in ["apiserver/validate-create-statefulset.json", "apiserver/validate-update-statefulset.json"] {
        let Validation::Evaluate(judged) = validation(&request(file)).unwrap() else { panic!("{file}") };
        let (view, whole) = (judged.input.view(), judged.input.whole());
        // Made from the parsed objects, it equals the view cut from the whole JSON (the SDK's).
        let cut = mysql_webhook_core::view::view_of_request(whole).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(view).unwrap(),
            serde_json::from_str::<Value>(&cut).unwrap(),
            "{file}"
        );
        for left_out in ["managedFields", "last-applied-configuration", "\"command\"", "readinessProbe"] {
            assert!(!view.contains(left_out), "{file}: the view has {left_out}");
        }
        assert!(whole.contains("readinessProbe") && !whole.contains("managedFields"), "{file}");
        let view: Value = serde_json::from_str(view).unwrap();
        let containers = &view["object"]["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "mysql", "{file}");
        assert!(containers[0]["image"].is_string() && containers[0]["resources"].is_object(), "{file}");
        assert_eq!(view["object"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data", "{file}");
        assert!(judged.input.view().len() * 3 < whole.len(), "{file}: the view is a fraction of the request");
    }
}

#[test]
fn validate_asks_for_the_parent_of_a_scale() {
    let request = request("apiserver/validate-update-scale.json");
    let decision = validation(&request).unwrap();
    let Validation::Scale { namespace, name, replicas } = decision else { panic!("{decision:?}") };
    assert_eq!((namespace.as_str(), name.as_str(), replicas), ("rec", "mysql", 5));
}

#[test]
fn a_scale_is_judged_as_the_parent_with_the_requested_replicas() {
    let request = request("apiserver/validate-update-scale.json");
    let parent: StatefulSet = serde_json::from_value(
        review_json("apiserver/validate-create-statefulset.json")["request"]["object"].clone(),
    )
    .unwrap();
    let judged = scale_request(&request, &parent, 5).unwrap();
    assert_eq!(judged.subject.namespace, "rec");
    let input: Value = serde_json::from_str(judged.input.whole()).unwrap();
    assert_eq!(input["object"]["spec"]["replicas"], 5);
    assert_eq!(input["oldObject"]["spec"]["replicas"], 3);
    assert_eq!(input["subResource"], "scale");
}

#[test]
fn validate_answers_at_once_for_what_no_policy_judges() {
    for file in ["create-unannotated.json", "create-configmap.json"] {
        let Validation::Answer(response) = validation(&request(file)).unwrap() else { panic!("{file}") };
        assert_eq!(response.outcome(), Outcome::Allowed, "{file}");
    }
    let Validation::Answer(response) = validation(&request("create-invalid-storage.json")).unwrap() else {
        panic!("a refused expansion is answered at once");
    };
    assert_eq!(response.status.map(|s| s.code), Some(422));
}

#[test]
fn policy_denials_are_a_403_naming_every_policy_and_warnings_pass_through() {
    let request = request("create-annotated.json");
    let denials =
        ["replica-quorum: 2 members can't keep a quorum".to_string(), "spread: no anti-affinity".into()];
    let denied = evaluation_response(&request, &denials, vec!["images: latest".into()]);
    let status = denied.status.as_ref().unwrap();
    assert_eq!((denied.allowed, status.code), (false, 403));
    assert_eq!(status.message, "replica-quorum: 2 members can't keep a quorum; spread: no anti-affinity");
    assert_eq!(denied.warnings, ["images: latest"]);
    let allowed = evaluation_response(&request, &[], vec!["images: latest".into()]);
    assert_eq!((allowed.allowed, allowed.outcome(), allowed.warnings.len()), (true, Outcome::Allowed, 1));
}

#[test]
fn bodies_that_are_not_usable_reviews_are_invalid_requests_that_say_why() {
    let error = |body: &str| admission::parse(body.as_bytes()).map(|_| ()).unwrap_err();
    assert!(error("{").0.starts_with("the body is not an AdmissionReview:"));
    assert_eq!(
        error(r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#),
        ReviewError("apiVersion must be admission.k8s.io/v1, not Some(\"admission.k8s.io/v1beta1\")".into())
    );
    assert_eq!(
        error(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).0,
        "the AdmissionReview has no request"
    );
    assert_eq!(
        error(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#).0,
        "request.uid is missing"
    );
}

/// `body` with its request's `object` moved first, before the fields that say what it is.
fn object_first(mut body: Value) -> Value {
    let request = body["request"].as_object_mut().unwrap();
    let object = request.shift_remove("object").unwrap();
    let mut reordered = serde_json::Map::from_iter([("object".to_string(), object)]);
    reordered.extend(std::mem::take(request));
    body["request"] = Value::Object(reordered);
    body
}

/// How a review whose object is refused is refused: by `parse` when its object came after the
/// request's kind (as the API server writes it), by both handlers when it came before; the
/// same message either way.
fn refusals(body: Value) -> Vec<ReviewError> {
    let parsed = admission::parse(&serde_json::to_vec(&body).unwrap()).map(|_| ()).unwrap_err();
    let request = admission::parse(&serde_json::to_vec(&object_first(body)).unwrap()).unwrap();
    vec![parsed, mutate_review(&request).unwrap_err(), validation(&request).map(|_| ()).unwrap_err()]
}

#[test]
fn an_object_that_is_not_a_statefulset_is_an_invalid_request_not_a_denial() {
    let mut body = review_json("create-annotated.json");
    body["request"]["object"]["spec"]["replicas"] = "three".into();
    for error in refusals(body) {
        assert!(error.0.starts_with("request.object is not a valid apps/v1 StatefulSet:"), "{error}");
        assert!(error.0.contains("invalid type: string \"three\", expected i32"), "{error}");
    }
}

#[test]
fn a_review_is_answered_the_same_whatever_the_order_of_its_fields() {
    for file in [
        "apiserver/mutate-create-statefulset.json",
        "apiserver/mutate-update-statefulset.json",
        "update-scale.json",
    ] {
        let body = review_json(file);
        let reordered = admission::parse(&serde_json::to_vec(&object_first(body.clone())).unwrap()).unwrap();
        let (answer, again) = (mutate_review(&request(file)).unwrap(), mutate_review(&reordered).unwrap());
        assert_eq!(answer.to_review_json(), again.to_review_json(), "{file}");
    }
}

#[test]
fn a_subresource_named_after_the_object_still_leaves_it_untouched() {
    // Read as a StatefulSet's create while the review is read, then found to be a status update.
    let mut body = review_json("apiserver/mutate-update-statefulset.json");
    body["request"]["subResource"] = "status".into();
    let request = admission::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
    let answer = mutate_review(&request).unwrap();
    assert_eq!((answer.allowed, answer.patch.is_none()), (true, true));
    assert!(matches!(validation(&request), Ok(Validation::Answer(allowed)) if allowed.allowed));
}

#[test]
fn an_object_of_another_api_version_or_kind_is_an_invalid_request() {
    for (field, value, expected) in
        [("apiVersion", "apps/v1beta2", "apps/v1"), ("kind", "Deployment", "StatefulSet")]
    {
        let mut body = review_json("apiserver/mutate-create-statefulset.json");
        body["request"]["object"][field] = value.into();
        for error in refusals(body) {
            assert!(
                error.0.contains(&format!("invalid value: string \"{value}\", expected {expected}")),
                "{error}"
            );
        }
    }
}

#[test]
fn managed_fields_are_neither_read_nor_patched() {
    let mut body = review_json("apiserver/mutate-create-statefulset.json");
    let answer = mutate_review(&admission::parse(&serde_json::to_vec(&body).unwrap()).unwrap()).unwrap();
    // The API server's own bookkeeping, whatever its shape, is skipped unread.
    body["request"]["object"]["metadata"]["managedFields"] = "not a list of entries".into();
    let skipped = mutate_review(&admission::parse(&serde_json::to_vec(&body).unwrap()).unwrap()).unwrap();
    assert_eq!(patch(&answer), patch(&skipped));
    assert!(patch(&answer).0.iter().all(|op| !op.path().to_string().starts_with("/metadata/managedFields")));
    assert!(!patch(&answer).0.is_empty());
}

#[test]
fn the_answer_is_a_whole_admission_review_with_the_requests_uid() {
    let request = request("create-annotated.json");
    let answer: Value = serde_json::from_slice(&mutate_review(&request).unwrap().to_review_json()).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], request.uid.as_str());
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    // The patch in the answer is the response's own, whole, base64-encoded.
    let response = mutate_review(&request).unwrap();
    let encoded = answer["response"]["patch"].as_str().expect("the patch is a string");
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("standard base64");
    assert_eq!(decoded, response.patch.as_ref().unwrap().as_bytes());
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["warnings"].is_array(), "the fields after the patch are kept");
}

#[test]
fn policies_see_the_stored_object_without_the_api_servers_bookkeeping() {
    let file = "apiserver/validate-update-statefulset.json";
    let review = review_json(file);
    assert!(review["request"]["object"]["metadata"]["managedFields"].is_array(), "the fixture carries them");
    let Validation::Evaluate(input) = validation(&request(file)).unwrap() else { panic!("evaluated") };
    let input: Value = serde_json::from_str(input.input.whole()).unwrap();
    for side in ["object", "oldObject"] {
        let metadata = &input[side]["metadata"];
        assert!(metadata.get("managedFields").is_none(), "{side}");
        assert!(
            metadata["annotations"].get("kubectl.kubernetes.io/last-applied-configuration").is_none(),
            "{side}"
        );
    }
    // An object /mutate already expanded is judged as it will be stored, not expanded again.
    let mut stored = review["request"]["object"].clone();
    stored["metadata"].as_object_mut().unwrap().remove("managedFields");
    stored["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
    let judged: StatefulSet = serde_json::from_value(input["object"].clone()).unwrap();
    let stored: StatefulSet = serde_json::from_value(stored).unwrap();
    assert_eq!(judged, stored);
}

#[test]
fn an_expanded_object_with_a_bad_annotation_is_still_refused() {
    let mut body = review_json("apiserver/validate-create-statefulset.json");
    body["request"]["object"]["metadata"]["annotations"]["mysql-webhook.io/storage"] = "ten gigs".into();
    let request = admission::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
    let Validation::Answer(response) = validation(&request).unwrap() else { panic!("refused at once") };
    assert_eq!(response.status.map(|s| s.code), Some(422));
}
