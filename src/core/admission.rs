//! AdmissionReview `admission.k8s.io/v1` in, verdict out: the webhook's decisions without HTTP.
//!
//! Three outcomes are kept apart (as in linkerd's policy controller):
//! - [`ReviewError`]: the body is not a usable review — answered with an HTTP 4xx and a message;
//! - a denial: a valid review of an object that can't be admitted — an AdmissionReview with
//!   `allowed: false`, a 4xx `status.code` and a message kubectl shows;
//! - an allow, with the engine's JSON Patch and warnings for `/mutate`, or the policies'
//!   warnings for `/validate`.
//!
//! `/validate` runs the policies on what the API server will store: the expanded StatefulSet
//! (expanded again here, which changes nothing when `/mutate` already ran), or for a scale the
//! parent StatefulSet with the requested replicas. Finding the parent and running the policies
//! are the server's (IO); deciding what to run and what to answer is here, pure, so that every
//! decision is tested without a socket (`tests/admission.rs`).

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::value::RawValue;

use crate::consts::{
    ADMISSION_API_VERSION as API_VERSION, ADMISSION_REVIEW_KIND as KIND, LABEL_MANAGED,
    LAST_APPLIED_ANNOTATION,
};
use crate::patch::JsonPatch;
use crate::plan;
use crate::policy_request::{Gvk, PolicyInput, PolicyRequest};
use crate::scope::Subject;
use crate::view::{StatefulSetView, metadata_without_managed_fields};
use crate::{MutateError, mutate_statefulset};

/// A body that is not a usable AdmissionReview (an invalid request, not a denial); the message
/// says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReviewError(pub String);

/// How an admission request ended: the metrics' label and the log's field.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed without a patch.
    Allowed,
    /// Allowed with a patch.
    Patched,
    /// Answered `allowed: false`.
    Denied,
    /// Not a usable AdmissionReview: answered with an HTTP 4xx.
    Invalid,
    /// The webhook's own failure: answered with an HTTP 500.
    Error,
    /// Refused at once because the server is at one of its limits: HTTP 503.
    Overloaded,
}

impl Outcome {
    /// The label value and log field: lower case, like every other label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
            Outcome::Overloaded => "overloaded",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<Request>,
}

/// The parts of an AdmissionRequest the webhook reads.
#[derive(Debug)]
pub struct Request {
    pub uid: String,
    pub kind: Option<GroupVersionKind>,
    pub request_kind: Option<GroupVersionKind>,
    /// Passed on to the policies as it came.
    pub resource: Option<Box<RawValue>>,
    pub sub_resource: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub operation: String,
    pub object: Option<Object>,
    /// Kept raw: parsed into the view a handler needs, whole only if a policy asks.
    pub old_object: Option<Box<RawValue>>,
    /// Passed on to the policies as it came.
    pub user_info: Option<Box<RawValue>>,
    pub dry_run: bool,
}

/// The object of a review.
#[derive(Debug)]
pub enum Object {
    /// The object of a StatefulSet's create or update, parsed while the review is read: the API
    /// server writes the request's kind and operation before it, so it is known to be one, and
    /// its bytes (most of a review's) are scanned once rather than kept raw and parsed again
    /// (callgrind: that second scan was a sixth of a `/mutate`).
    StatefulSet(Box<StatefulSet>),
    /// Any other object, or one that came before the fields that say what it is (a review the
    /// API server did not write): parsed into the type a handler needs, or not at all.
    Json(Box<RawValue>),
}

/// The members of an AdmissionRequest the webhook reads.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum RequestField {
    Uid,
    Kind,
    RequestKind,
    Resource,
    SubResource,
    Name,
    Namespace,
    Operation,
    Object,
    OldObject,
    UserInfo,
    DryRun,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Request, D::Error> {
        deserializer.deserialize_map(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> de::Visitor<'de> for RequestVisitor {
    type Value = Request;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("struct Request")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Request, A::Error> {
        /// A member's value, once (a repeated member is an error, as serde's derive makes it).
        fn once<'de, T: Deserialize<'de>, A: de::MapAccess<'de>>(
            map: &mut A,
            slot: &mut Option<T>,
            name: &'static str,
        ) -> Result<(), A::Error> {
            if slot.is_some() {
                return Err(de::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }
        let (mut uid, mut kind, mut request_kind, mut resource, mut sub_resource) =
            (None, None, None, None, None);
        let (mut name, mut namespace, mut operation, mut object, mut old_object) =
            (None, None, None, None, None);
        let (mut user_info, mut dry_run) = (None, None);
        while let Some(field) = map.next_key()? {
            match field {
                RequestField::Uid => once(&mut map, &mut uid, "uid")?,
                RequestField::Kind => once(&mut map, &mut kind, "kind")?,
                RequestField::RequestKind => once(&mut map, &mut request_kind, "requestKind")?,
                RequestField::Resource => once(&mut map, &mut resource, "resource")?,
                RequestField::SubResource => once(&mut map, &mut sub_resource, "subResource")?,
                RequestField::Name => once(&mut map, &mut name, "name")?,
                RequestField::Namespace => once(&mut map, &mut namespace, "namespace")?,
                RequestField::Operation => once(&mut map, &mut operation, "operation")?,
                RequestField::Object => {
                    if object.is_some() {
                        return Err(de::Error::duplicate_field("object"));
                    }
                    let kind = request_kind.as_ref().or(kind.as_ref()).and_then(Option::as_ref);
                    let sub_resource = sub_resource.as_ref().and_then(Option::as_deref);
                    let typed = is_statefulset_write(kind, sub_resource, operation.as_deref());
                    object = Some(map.next_value_seed(ObjectSeed { typed })?);
                }
                RequestField::OldObject => once(&mut map, &mut old_object, "oldObject")?,
                RequestField::UserInfo => once(&mut map, &mut user_info, "userInfo")?,
                RequestField::DryRun => once(&mut map, &mut dry_run, "dryRun")?,
                RequestField::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let mut request = Request {
            uid: uid.unwrap_or_default(),
            kind: kind.flatten(),
            request_kind: request_kind.flatten(),
            resource: resource.flatten(),
            sub_resource: sub_resource.flatten(),
            name: name.flatten(),
            namespace: namespace.flatten(),
            operation: operation.unwrap_or_default(),
            object: object.flatten(),
            old_object: old_object.flatten(),
            user_info: user_info.flatten(),
            dry_run: dry_run.unwrap_or_default(),
        };
        // A field after the object said it is not a StatefulSet's write after all: a review no
        // API server writes, whose object goes back to JSON for the handler that reads it.
        if let Some(Object::StatefulSet(sts)) = &request.object
            && !request.is_statefulset_write()
        {
            let json = serde_json::value::to_raw_value(sts).map_err(de::Error::custom)?;
            request.object = Some(Object::Json(json));
        }
        Ok(request)
    }
}

/// Reads the object as a StatefulSet (without `managedFields`) when `typed`, else keeps it raw.
struct ObjectSeed {
    typed: bool,
}

impl<'de> de::DeserializeSeed<'de> for ObjectSeed {
    type Value = Option<Object>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Object>, D::Error> {
        if !self.typed {
            return Ok(Option::<Box<RawValue>>::deserialize(deserializer)?.map(Object::Json));
        }
        let lean = Option::<WithoutManagedFields>::deserialize(deserializer)
            .map_err(|e| de::Error::custom(invalid_statefulset("object", &e)))?;
        Ok(lean.map(|lean| Object::StatefulSet(Box::new(lean.into()))))
    }
}

/// Is this a create or update of a StatefulSet itself (not a subresource)?
fn is_statefulset_write(
    kind: Option<&GroupVersionKind>,
    sub_resource: Option<&str>,
    operation: Option<&str>,
) -> bool {
    kind.is_some_and(|k| k.group == "apps" && k.version == "v1" && k.kind == "StatefulSet")
        && sub_resource.is_none_or(str::is_empty)
        && matches!(operation, Some("CREATE" | "UPDATE"))
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

impl GroupVersionKind {
    fn as_gvk(&self) -> Gvk<'_> {
        Gvk { group: &self.group, version: &self.version, kind: &self.kind }
    }
}

/// The webhook's answer, serialised as the `response` of an AdmissionReview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// The JSON Patch; written base64-encoded by [`Response::to_review_json`].
    #[serde(skip)]
    pub patch: Option<JsonPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

impl Response {
    pub fn allow(uid: &str) -> Response {
        Response {
            uid: uid.into(),
            allowed: true,
            patch_type: None,
            patch: None,
            status: None,
            warnings: Vec::new(),
        }
    }

    fn deny(uid: &str, code: u16, message: String) -> Response {
        Response { allowed: false, status: Some(Status { code, message }), ..Response::allow(uid) }
    }

    pub fn outcome(&self) -> Outcome {
        match (self.allowed, &self.patch) {
            (false, _) => Outcome::Denied,
            (true, Some(_)) => Outcome::Patched,
            (true, None) => Outcome::Allowed,
        }
    }

    /// The whole AdmissionReview to send back, serialised straight from this answer. The patch
    /// is the bulk of it (20 KB of base64 for a CREATE) and its alphabet needs no escaping in
    /// JSON: it is encoded straight into the answer's text rather than into a string of its own
    /// that would then be copied in, or scanned byte by byte for escapes (callgrind: that scan
    /// was a tenth of a `/mutate`, the string and its copy a twentieth).
    pub fn to_review_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Review<'a> {
            api_version: &'static str,
            kind: &'static str,
            response: &'a Response,
        }
        let patch = self.patch.as_ref().map(|patch| patch.as_bytes());
        let encoded = patch.map_or(0, |patch| base64_simd::STANDARD.encoded_length(patch.len()));
        let mut json = Vec::with_capacity(256 + encoded);
        serde_json::to_writer(&mut json, &Review { api_version: API_VERSION, kind: KIND, response: self })
            .expect("strings and booleans always serialise");
        if let Some(patch) = patch {
            // The review ends with the response's and its own closing braces.
            json.truncate(json.len() - 2);
            json.extend_from_slice(b",\"patch\":\"");
            base64_simd::STANDARD.encode_append(patch, &mut json);
            json.extend_from_slice(b"\"}}");
        }
        json
    }
}

/// Parses a review and checks what every handler relies on: version, kind, request, uid,
/// operation.
pub fn parse(body: &[u8]) -> Result<Request, ReviewError> {
    let review: Review = serde_json::from_slice(body).map_err(|e| {
        // An object that isn't the StatefulSet the request names is said as such (it is read
        // with the review: [`Object::StatefulSet`]).
        let message = e.to_string();
        match message.starts_with(&not_a_statefulset("object")) {
            true => ReviewError(message),
            false => ReviewError(format!("the body is not an AdmissionReview: {message}")),
        }
    })?;
    match review.api_version.as_deref() {
        Some(API_VERSION) => {}
        other => return Err(ReviewError(format!("apiVersion must be {API_VERSION}, not {other:?}"))),
    }
    if review.kind.as_deref() != Some(KIND) {
        return Err(ReviewError(format!("kind must be {KIND}, not {:?}", review.kind)));
    }
    let request = review.request.ok_or_else(|| ReviewError("the AdmissionReview has no request".into()))?;
    if request.uid.is_empty() {
        return Err(ReviewError("request.uid is missing".into()));
    }
    if request.operation.is_empty() {
        return Err(ReviewError("request.operation is missing".into()));
    }
    Ok(request)
}

impl Request {
    fn kind(&self) -> Option<&GroupVersionKind> {
        self.request_kind.as_ref().or(self.kind.as_ref())
    }

    fn sub_resource(&self) -> Option<&str> {
        self.sub_resource.as_deref().filter(|s| !s.is_empty())
    }

    /// Is this a create or update of a StatefulSet itself (not a subresource)?
    fn is_statefulset_write(&self) -> bool {
        is_statefulset_write(self.kind(), self.sub_resource(), Some(&self.operation))
    }

    /// Is this `kubectl scale` (an update of `statefulsets/scale`)?
    fn is_statefulset_scale(&self) -> bool {
        let resource = self.resource.as_deref().and_then(|r| serde_json::from_str::<Resource>(r.get()).ok());
        resource.is_some_and(|r| r.group == "apps" && r.resource == "statefulsets")
            && self.sub_resource() == Some("scale")
            && self.operation == "UPDATE"
    }

    /// The object as a StatefulSet.
    fn statefulset(&self) -> Result<Cow<'_, StatefulSet>, ReviewError> {
        match &self.object {
            Some(Object::StatefulSet(sts)) => Ok(Cow::Borrowed(sts)),
            Some(Object::Json(raw)) => parse_statefulset(raw, "object").map(Cow::Owned),
            None => Err(ReviewError("request.object is missing".into())),
        }
    }

    /// The stored object of an UPDATE, unparsed; `None` on other operations.
    fn stored(&self) -> Result<Option<&RawValue>, ReviewError> {
        match self.operation.as_str() {
            "UPDATE" => Ok(Some(
                self.old_object
                    .as_deref()
                    .ok_or_else(|| ReviewError("request.oldObject is missing".into()))?,
            )),
            _ => Ok(None),
        }
    }

    /// The request the policies see, with `object` and `old` in place of the review's, without
    /// their bookkeeping (`managedFields`, kubectl's last-applied copy of the object): what a
    /// policy judges is the object, and those are most of the API server's bytes. The view is
    /// made now; the whole request only if a policy needs it.
    pub fn policy_input(&self, mut object: StatefulSet, mut old: Option<StatefulSet>) -> PolicyInput {
        for sts in std::iter::once(&mut object).chain(old.as_mut()) {
            strip_bookkeeping(sts);
        }
        let view = self.policy_request(&object, old.as_ref()).view_json();
        let fields = self.fields();
        PolicyInput::new(view, move || fields.policy_request(&object, old.as_ref()).to_json())
    }

    /// [`Request::policy_input`] of an UPDATE whose stored object `old` is still JSON: it is
    /// parsed as a view only (without building its scripts), and whole only if a policy asks.
    fn policy_input_of_stored(
        &self,
        mut object: StatefulSet,
        old: &RawValue,
    ) -> Result<PolicyInput, ReviewError> {
        strip_bookkeeping(&mut object);
        let old_view = parse_view(old)?.without_bookkeeping();
        let object_view = StatefulSetView::of(&object);
        let view = self.policy_request(&object, None).view_with(&object_view, Some(&old_view));
        let (fields, old) = (self.fields(), old.to_owned());
        Ok(PolicyInput::new(view, move || {
            // Parsed as a StatefulSet above the view already: it can't fail now.
            let mut old = parse_statefulset(&old, "oldObject").unwrap_or_default();
            strip_bookkeeping(&mut old);
            fields.policy_request(&object, Some(&old)).to_json()
        }))
    }

    /// This request's fields without its objects: what the whole request is made of later.
    fn fields(&self) -> Request {
        // The review's own objects are not needed for the whole request: the judged ones are.
        Request {
            uid: self.uid.clone(),
            kind: self.kind.clone(),
            request_kind: self.request_kind.clone(),
            resource: self.resource.clone(),
            sub_resource: self.sub_resource.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            operation: self.operation.clone(),
            object: None,
            old_object: None,
            user_info: self.user_info.clone(),
            dry_run: self.dry_run,
        }
    }

    fn policy_request<'a>(
        &'a self,
        object: &'a StatefulSet,
        old: Option<&'a StatefulSet>,
    ) -> PolicyRequest<'a> {
        PolicyRequest {
            uid: &self.uid,
            kind: self.kind.as_ref().map(GroupVersionKind::as_gvk),
            resource: self.resource.as_deref(),
            sub_resource: self.sub_resource.as_deref(),
            request_kind: self.request_kind.as_ref().map(GroupVersionKind::as_gvk),
            name: self.name.as_deref(),
            namespace: self.namespace.as_deref(),
            operation: &self.operation,
            user_info: self.user_info.as_deref(),
            object,
            old_object: old,
            dry_run: self.dry_run,
        }
    }
}

/// The API server decodes every object before any webhook sees it: one that doesn't decode
/// can't come from it, so the request itself is invalid.
fn parse_statefulset(raw: &RawValue, field: &str) -> Result<StatefulSet, ReviewError> {
    let lean = serde_json::from_str::<WithoutManagedFields>(raw.get())
        .map_err(|e| invalid_statefulset(field, &e))?;
    Ok(lean.into())
}

/// A StatefulSet as admission reads it: without `managedFields`, which nothing here reads (the
/// expansion never changes them, the policies never see them: [`strip_bookkeeping`]) and which
/// were a tenth of a `/mutate`: parsed into maps (`fieldsV1`), serialised again for the patch,
/// compared there. `apiVersion` and `kind` are checked as `StatefulSet`'s own parser does.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WithoutManagedFields {
    #[serde(rename = "apiVersion", default, deserialize_with = "statefulset_api_version")]
    _api_version: (),
    #[serde(rename = "kind", default, deserialize_with = "statefulset_kind")]
    _kind: (),
    #[serde(default, deserialize_with = "metadata_without_managed_fields")]
    metadata: ObjectMeta,
    spec: Option<StatefulSetSpec>,
    status: Option<StatefulSetStatus>,
}

impl From<WithoutManagedFields> for StatefulSet {
    fn from(lean: WithoutManagedFields) -> StatefulSet {
        StatefulSet { metadata: lean.metadata, spec: lean.spec, status: lean.status }
    }
}

fn statefulset_api_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    expect_str(deserializer, "apps/v1")
}

fn statefulset_kind<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    expect_str(deserializer, "StatefulSet")
}

fn expect_str<'de, D: Deserializer<'de>>(deserializer: D, expected: &'static str) -> Result<(), D::Error> {
    let found = String::deserialize(deserializer)?;
    if found == expected {
        Ok(())
    } else {
        Err(de::Error::invalid_value(de::Unexpected::Str(&found), &expected))
    }
}

/// The stored object as a view: what is read of it unless a policy asks for the whole.
fn parse_view(old: &RawValue) -> Result<StatefulSetView, ReviewError> {
    let view = serde_json::from_str::<StatefulSetView>(old.get())
        .map_err(|e| invalid_statefulset("oldObject", &e))?;
    view.check_kind().map_err(|e| ReviewError(format!("request.oldObject: {e}")))?;
    Ok(view)
}

fn invalid_statefulset(field: &str, error: &dyn std::fmt::Display) -> ReviewError {
    ReviewError(format!("{}: {error}", not_a_statefulset(field)))
}

fn not_a_statefulset(field: &str) -> String {
    format!("request.{field} is not a valid apps/v1 StatefulSet")
}

/// Drops what the API server and kubectl keep for themselves from a copy the policies see.
pub(crate) fn strip_bookkeeping(sts: &mut StatefulSet) {
    sts.metadata.managed_fields = None;
    if let Some(annotations) = sts.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resource: String,
}

/// The parts of an `autoscaling/v1` Scale the webhook reads.
#[derive(Deserialize)]
struct Scale {
    spec: Option<ScaleSpec>,
}

#[derive(Deserialize)]
struct ScaleSpec {
    replicas: Option<i32>,
}

/// `/mutate`: the engine's patch for an opted-in StatefulSet; everything else is allowed as is.
/// Dry-run requests are answered the same way: the webhook has no side effects.
pub fn mutate_review(request: &Request) -> Result<Response, ReviewError> {
    if !request.is_statefulset_write() {
        return Ok(Response::allow(&request.uid));
    }
    let object = request.statefulset()?;
    let old = request.stored()?.map(parse_view).transpose()?;
    Ok(match mutate_statefulset(&object, old.as_ref(), request.namespace.as_deref()) {
        Ok(None) => Response::allow(&request.uid),
        Ok(Some(mutation)) => {
            let mut response = Response::allow(&request.uid);
            if !mutation.patch.is_empty() {
                response.patch = Some(mutation.patch);
                response.patch_type = Some("JSONPatch");
            }
            response.warnings = mutation.warnings;
            response
        }
        Err(error) => expansion_refused(request, error)?,
    })
}

/// The answer when the expansion refuses the object.
fn expansion_refused(request: &Request, error: MutateError) -> Result<Response, ReviewError> {
    match error {
        // A valid StatefulSet the user must fix: 422 like the API server's own validation.
        MutateError::Refused(invalid) => Ok(Response::deny(&request.uid, 422, invalid.to_string())),
        // Decoded already, so only re-serialising the object for the patch could fail here.
        MutateError::Malformed(e) => Err(ReviewError(format!("request.object can't be expanded: {e}"))),
    }
}

/// What `/validate` does with a review.
#[derive(Debug)]
pub enum Validation {
    /// Answer at once: not an opted-in StatefulSet, or refused by the expansion.
    Answer(Response),
    /// A scale: find the managed parent `namespace/name`, then [`scale_request`].
    Scale { namespace: String, name: String, replicas: i32 },
    /// Run the policies whose scope takes in the subject on this request.
    Evaluate(Judged),
}

/// What the policies judge: the request they receive (an AdmissionRequest, object expanded, as
/// a view and whole) and the StatefulSet as their scopes and exceptions see it.
#[derive(Debug)]
pub struct Judged {
    pub input: PolicyInput,
    pub subject: Subject,
}

/// Decides what `/validate` runs.
pub fn validation(request: &Request) -> Result<Validation, ReviewError> {
    if request.is_statefulset_scale() {
        let object = match &request.object {
            Some(Object::Json(raw)) => raw,
            // A scale's object is never read as a StatefulSet (`is_statefulset_write`).
            Some(Object::StatefulSet(_)) => unreachable!("a scale is not a StatefulSet's write"),
            None => return Err(ReviewError("request.object is missing".into())),
        };
        let scale: Scale = serde_json::from_str(object.get())
            .map_err(|e| ReviewError(format!("request.object is not a valid autoscaling/v1 Scale: {e}")))?;
        let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        let (Some(namespace), Some(name)) = (request.namespace.clone(), request.name.clone()) else {
            return Err(ReviewError(
                "a statefulsets/scale request needs request.namespace and request.name".into(),
            ));
        };
        return Ok(Validation::Scale { namespace, name, replicas });
    }
    if !request.is_statefulset_write() {
        return Ok(Validation::Answer(Response::allow(&request.uid)));
    }
    let object = request.statefulset()?.into_owned();
    if is_expanded(&object) {
        // The validating webhook sees the object after every mutation, ours included: judge
        // what will be stored, without expanding it again (the expansion is idempotent, and
        // the expand + diff is most of a review's cost). The annotations are still checked.
        // The stored object is only read by the policies: it is parsed as their view.
        return match plan::plan(&object, request.namespace.as_deref()) {
            Ok(None) => Ok(Validation::Answer(Response::allow(&request.uid))),
            Ok(Some(_)) => evaluate(request, object, request.stored()?.map(Stored::Unparsed)),
            Err(error) => expansion_refused(request, MutateError::Refused(error)).map(Validation::Answer),
        };
    }
    let old = request.stored()?.map(|raw| parse_statefulset(raw, "oldObject")).transpose()?;
    let old_view = old.as_ref().map(StatefulSetView::of);
    match mutate_statefulset(&object, old_view.as_ref(), request.namespace.as_deref()) {
        Ok(None) => Ok(Validation::Answer(Response::allow(&request.uid))),
        Ok(Some(mutation)) => {
            evaluate(request, mutation.expanded, old.map(|old| Stored::Parsed(Box::new(old))))
        }
        Err(error) => expansion_refused(request, error).map(Validation::Answer),
    }
}

/// The policies' request on `object` (expanded), with the subject their scopes judge.
fn evaluate(
    request: &Request,
    object: StatefulSet,
    old: Option<Stored<'_>>,
) -> Result<Validation, ReviewError> {
    let subject = match Subject::of(&object, request.namespace.as_deref()) {
        Ok(subject) => subject,
        Err(invalid) => {
            return expansion_refused(request, MutateError::Refused(invalid)).map(Validation::Answer);
        }
    };
    let input = match old {
        None => request.policy_input(object, None),
        Some(Stored::Parsed(old)) => request.policy_input(object, Some(*old)),
        Some(Stored::Unparsed(old)) => request.policy_input_of_stored(object, old)?,
    };
    Ok(Validation::Evaluate(Judged { input, subject }))
}

/// The stored object of an UPDATE: parsed by the expansion, or still JSON when only the
/// policies read it.
enum Stored<'a> {
    Parsed(Box<StatefulSet>),
    Unparsed(&'a RawValue),
}

/// Whether `/mutate` expanded this object (it adds the managed label).
fn is_expanded(sts: &StatefulSet) -> bool {
    sts.metadata.labels.as_ref().and_then(|labels| labels.get(LABEL_MANAGED)).is_some_and(|v| v == "true")
}

/// The policies' request for a scale of `parent` (as stored) to `replicas`: the parent with the
/// requested replicas as the object, the parent as the old object; a 422 denial when the
/// parent's exceptions annotation can't be read (stored before this webhook validated it).
pub fn scale_request(
    request: &Request,
    parent: &StatefulSet,
    replicas: i32,
) -> Result<Judged, Box<Response>> {
    let subject = Subject::of(parent, request.namespace.as_deref())
        .map_err(|invalid| Box::new(Response::deny(&request.uid, 422, invalid.to_string())))?;
    let mut scaled = parent.clone();
    scaled.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
    Ok(Judged { input: request.policy_input(scaled, Some(parent.clone())), subject })
}

/// The answer for the policies' evaluation: denied (403, every denial with its policy's name,
/// in order) when an enforced policy denies, allowed otherwise; warnings either way.
pub fn evaluation_response(request: &Request, denials: &[String], warnings: Vec<String>) -> Response {
    let mut response = match denials.is_empty() {
        true => Response::allow(&request.uid),
        false => Response::deny(&request.uid, 403, denials.join("; ")),
    };
    response.warnings = warnings;
    response
}

/// An answer with `warning` for a review the policies can't judge.
pub fn allow_with_warning(request: &Request, warning: String) -> Response {
    Response { warnings: vec![warning], ..Response::allow(&request.uid) }
}
