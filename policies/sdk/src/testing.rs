//! Native tests for policies: AdmissionRequests built the way the host builds them, run through
//! the same adapter as the wasm exports, plus the webhook's real expansion as a fixture.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::{Value, json};

use crate::{Policy, Verdict, Whole, adapter};

/// The webhook's output for a typical annotated 3-member StatefulSet (`tests/golden/mysql-8.4.yaml`).
const EXPANDED_MYSQL: &str = include_str!("expanded-mysql.json");

/// `validate-settings` as the host calls it once at load.
///
/// # Errors
///
/// As the wasm export: the reason, prefixed with "settings: ".
pub fn validate_settings<P: Policy>(settings: &str) -> Result<(), String> {
    adapter::validate_settings::<P>(settings)
}

/// `validate` as the host calls it per admission: with the request's view, and the whole
/// request on demand.
pub fn validate<P: Policy>(request: &Value, settings: &str) -> Verdict {
    let whole = request.to_string();
    let view = mysql_webhook_core::view::view_of_request(&whole).unwrap_or_else(|_| whole.clone());
    adapter::validate::<P>(&view, settings, Whole::Json(whole))
}

/// The default expansion of a 3-member MySQL 8.4 StatefulSet named `mysql`: images `mysql:8.4`
/// and `percona/percona-xtrabackup:8.4`, requests on the containers (not the init containers), no
/// limits, preferred pod anti-affinity on `kubernetes.io/hostname`, a 10Gi `data` claim template
/// without a storage class.
///
/// # Panics
///
/// Never: the fixture is checked in and parsed by the SDK's own tests.
pub fn expanded_statefulset() -> StatefulSet {
    serde_json::from_str(EXPANDED_MYSQL).expect("expanded-mysql.json is a StatefulSet")
}

/// A CREATE of `sts`.
pub fn create(sts: StatefulSet) -> Value {
    request("CREATE", None, &sts, None)
}

/// An UPDATE from `old` to `new`.
pub fn update(old: StatefulSet, new: StatefulSet) -> Value {
    request("UPDATE", None, &new, Some(&old))
}

/// `kubectl scale --replicas=<replicas>` of the stored `sts`: as the host sends it, the object is
/// the StatefulSet with the requested replicas and the old object is `sts`.
pub fn scale(sts: StatefulSet, replicas: i32) -> Value {
    let mut scaled = sts.clone();
    spec_mut(&mut scaled).replicas = Some(replicas);
    request("UPDATE", Some("scale"), &scaled, Some(&sts))
}

fn request(
    operation: &str,
    sub_resource: Option<&str>,
    object: &StatefulSet,
    old: Option<&StatefulSet>,
) -> Value {
    let kind = match sub_resource {
        Some(_) => json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
        None => json!({"group": "apps", "version": "v1", "kind": "StatefulSet"}),
    };
    json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": kind,
        "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
        "subResource": sub_resource,
        "requestKind": kind,
        "name": object.metadata.name,
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": object,
        "oldObject": old,
        "dryRun": false,
    })
}

/// The StatefulSet's spec, created if absent; for fixtures.
pub fn spec_mut(sts: &mut StatefulSet) -> &mut StatefulSetSpec {
    sts.spec.get_or_insert_with(Default::default)
}

/// The pod template's spec, created if absent; for fixtures.
pub fn pod_spec_mut(sts: &mut StatefulSet) -> &mut PodSpec {
    spec_mut(sts).template.spec.get_or_insert_with(Default::default)
}

/// The container or init container `name`; for fixtures.
///
/// # Panics
///
/// When there is no such container: the test is wrong.
pub fn container_mut<'a>(sts: &'a mut StatefulSet, name: &str) -> &'a mut Container {
    let spec = pod_spec_mut(sts);
    spec.containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("the fixture has no container {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerKind, Operation, Request};

    fn parse(request: &Value) -> Request {
        Request::from_json(request.to_string()).expect("a well-formed request")
    }

    #[test]
    fn the_fixture_is_the_default_expansion() {
        let r = parse(&create(expanded_statefulset()));
        assert_eq!(r.operation, Operation::Create);
        assert_eq!(r.statefulset_name(), "mysql");
        assert_eq!(r.replicas(), 3);
        assert_eq!(r.pod_labels().get("app").map(String::as_str), Some("mysql"));
        let names: Vec<_> = r.containers().map(|(kind, c)| (kind, c.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (ContainerKind::Init, "init-mysql"),
                (ContainerKind::Init, "clone-mysql"),
                (ContainerKind::Regular, "mysql"),
                (ContainerKind::Regular, "xtrabackup")
            ]
        );
        let images: Vec<_> = r.images().map(|i| i.image).collect();
        assert_eq!(
            images,
            ["mysql:8.4", "percona/percona-xtrabackup:8.4", "mysql:8.4", "percona/percona-xtrabackup:8.4"]
        );
    }

    #[test]
    fn scale_carries_the_requested_replicas_and_the_stored_object() {
        let r = parse(&scale(expanded_statefulset(), 5));
        assert!(r.is_scale());
        assert_eq!(r.operation, Operation::Update);
        assert_eq!((r.replicas(), r.old_replicas()), (5, Some(3)));
    }

    #[test]
    fn absent_replicas_default_to_one() {
        let mut sts = expanded_statefulset();
        spec_mut(&mut sts).replicas = None;
        let r = parse(&update(expanded_statefulset(), sts));
        assert!(!r.is_scale());
        assert_eq!((r.replicas(), r.old_replicas()), (1, Some(3)));
    }

    #[test]
    fn a_delete_sees_the_stored_object() {
        let request = json!({"operation": "DELETE", "oldObject": expanded_statefulset(), "dryRun": true});
        let r = parse(&request);
        assert_eq!((r.replicas(), r.dry_run), (3, true));
    }

    #[test]
    fn ephemeral_container_images_are_listed() {
        let mut sts = expanded_statefulset();
        pod_spec_mut(&mut sts).ephemeral_containers =
            Some(vec![k8s_openapi::api::core::v1::EphemeralContainer {
                name: "debug".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }]);
        let r = parse(&create(sts));
        let last = r.images().last().expect("images");
        assert_eq!((last.kind, last.name, last.image), (ContainerKind::Ephemeral, "debug", "busybox"));
        assert_eq!(last.kind.to_string(), "ephemeral container");
    }

    #[test]
    fn the_whole_objects_are_there_for_fields_the_view_leaves_out() {
        let stored = expanded_statefulset();
        let mut new = stored.clone();
        container_mut(&mut new, "mysql").command = Some(vec!["mysqld".into(), "--skip-log-bin".into()]);
        let r = parse(&update(stored.clone(), new.clone()));
        assert_eq!(r.statefulset().unwrap(), new);
        assert_eq!(r.old_statefulset().unwrap(), Some(stored));
        let delete = parse(&json!({"operation": "DELETE", "oldObject": expanded_statefulset()}));
        assert_eq!(
            delete.statefulset().unwrap(),
            expanded_statefulset(),
            "a DELETE judges the stored object"
        );
    }

    #[test]
    fn the_view_keeps_what_topology_policies_read() {
        let sts = expanded_statefulset();
        let r = parse(&create(sts.clone()));
        let spec = sts.spec.as_ref().unwrap();
        let view = r.object.spec.as_ref().unwrap();
        assert_eq!(view.volume_claim_templates, spec.volume_claim_templates);
        assert_eq!(view.service_name.as_deref(), Some(spec.service_name.as_deref().unwrap_or_default()));
        let pod = spec.template.spec.as_ref().unwrap();
        let pod_view = r.pod_spec().unwrap();
        assert_eq!(pod_view.affinity, pod.affinity);
        assert_eq!(pod_view.topology_spread_constraints, pod.topology_spread_constraints);
        for (kind, container) in r.containers() {
            let whole = pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten())
                .find(|c| c.name == container.name);
            let whole = whole.unwrap_or_else(|| panic!("{kind} {} is in the object", container.name));
            assert_eq!((&container.image, &container.resources), (&whole.image, &whole.resources));
        }
        assert_eq!(r.object.metadata, sts.metadata);
    }

    #[test]
    fn an_object_of_another_kind_is_refused_naming_it() {
        let scale =
            json!({"operation": "UPDATE", "object": {"apiVersion": "autoscaling/v1", "kind": "Scale"}});
        let error = Request::from_json(scale.to_string()).unwrap_err();
        assert_eq!(error, "the object is a autoscaling/v1 Scale, not an apps/v1 StatefulSet");
    }
}
