//! AdmissionReview `admission.k8s.io/v1` in, verdict out: the webhook's decisions without HTTP.
//!
//! Three outcomes are kept apart (as in linkerd's policy controller):
//! - [`Rejection`]: the body is not a usable review — answered with an HTTP 4xx and a message;
//! - a denial: a valid review of an object that can't be admitted — an AdmissionReview with
//!   `allowed: false`, a 4xx `status.code` and a message kubectl shows;
//! - an allow, with the engine's JSON Patch and warnings for `/mutate`.

use base64::Engine as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::consts::{ADMISSION_API_VERSION as API_VERSION, ADMISSION_REVIEW_KIND as KIND};
use crate::metrics::Outcome;
use crate::{MutateError, mutate_statefulset};

/// A body that is not a usable AdmissionReview; the message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<Request>,
}

/// The parts of an AdmissionRequest the webhook reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    #[serde(default)]
    pub uid: String,
    pub kind: Option<GroupVersionKind>,
    pub request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    pub sub_resource: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub operation: String,
    /// Kept raw: parsed straight into the type a handler needs, or not at all.
    pub object: Option<Box<RawValue>>,
    pub old_object: Option<Box<RawValue>>,
    #[serde(default)]
    pub dry_run: bool,
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

/// The webhook's answer, serialised as the `response` of an AdmissionReview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// base64 of the JSON Patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
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
    fn allow(uid: &str) -> Response {
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

    /// The whole AdmissionReview to send back, serialised straight from this answer: the patch
    /// is the bulk of it and is copied once.
    pub fn to_review_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Review<'a> {
            api_version: &'static str,
            kind: &'static str,
            response: &'a Response,
        }
        serde_json::to_vec(&Review { api_version: API_VERSION, kind: KIND, response: self })
            .expect("strings and booleans always serialise")
    }
}

/// Parses a review and checks what every handler relies on: version, kind, request, uid,
/// operation.
pub fn parse(body: &[u8]) -> Result<Request, Rejection> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| Rejection(format!("the body is not an AdmissionReview: {e}")))?;
    match review.api_version.as_deref() {
        Some(API_VERSION) => {}
        other => return Err(Rejection(format!("apiVersion must be {API_VERSION}, not {other:?}"))),
    }
    if review.kind.as_deref() != Some(KIND) {
        return Err(Rejection(format!("kind must be {KIND}, not {:?}", review.kind)));
    }
    let request = review.request.ok_or_else(|| Rejection("the AdmissionReview has no request".into()))?;
    if request.uid.is_empty() {
        return Err(Rejection("request.uid is missing".into()));
    }
    if request.operation.is_empty() {
        return Err(Rejection("request.operation is missing".into()));
    }
    Ok(request)
}

impl Request {
    /// Is this a create or update of a StatefulSet itself (not a subresource)?
    fn is_statefulset_write(&self) -> bool {
        let kind = self.request_kind.as_ref().or(self.kind.as_ref());
        let statefulset =
            kind.is_some_and(|k| k.group == "apps" && k.version == "v1" && k.kind == "StatefulSet");
        statefulset
            && self.sub_resource.as_deref().is_none_or(str::is_empty)
            && matches!(self.operation.as_str(), "CREATE" | "UPDATE")
    }
}

/// `/mutate`: the engine's patch for an opted-in StatefulSet; everything else is allowed as is.
/// Dry-run requests are answered the same way: the webhook has no side effects.
pub fn mutate_review(request: &Request) -> Result<Response, Rejection> {
    if !request.is_statefulset_write() {
        return Ok(Response::allow(&request.uid));
    }
    let object = request.object.as_deref().ok_or_else(|| Rejection("request.object is missing".into()))?;
    let old = match request.operation.as_str() {
        "UPDATE" => Some(
            request.old_object.as_deref().ok_or_else(|| Rejection("request.oldObject is missing".into()))?,
        ),
        _ => None,
    };
    let parse = |raw: &RawValue, field: &str| {
        serde_json::from_str::<StatefulSet>(raw.get())
            .map_err(|e| format!("request.{field} is not a valid apps/v1 StatefulSet: {e}"))
    };
    let parsed = parse(object, "object")
        .and_then(|object| Ok((object, old.map(|o| parse(o, "oldObject")).transpose()?)));
    let (object, old) = match parsed {
        Ok(parsed) => parsed,
        // The API server decodes every object before any webhook sees it: one that doesn't
        // decode can't come from it, so the request itself is invalid.
        Err(message) => return Err(Rejection(message)),
    };
    Ok(match mutate_statefulset(&object, old.as_ref(), request.namespace.as_deref()) {
        Ok(None) => Response::allow(&request.uid),
        Ok(Some(mutation)) => {
            let mut response = Response::allow(&request.uid);
            if !mutation.patch.0.is_empty() {
                let patch = serde_json::to_vec(&mutation.patch).expect("a JSON Patch always serialises");
                response.patch = Some(base64::engine::general_purpose::STANDARD.encode(patch));
                response.patch_type = Some("JSONPatch");
            }
            response.warnings = mutation.warnings;
            response
        }
        // A valid StatefulSet the user must fix: 422 like the API server's own validation.
        Err(MutateError::Invalid(invalid)) => Response::deny(&request.uid, 422, invalid.to_string()),
        // Decoded above, so only re-serialising the object for the patch could fail here.
        Err(MutateError::Malformed(e)) => {
            return Err(Rejection(format!("request.object can't be expanded: {e}")));
        }
    })
}

/// `/validate`: no policies are loaded yet, so every well-formed review is allowed.
pub fn validate_review(request: &Request) -> Response {
    Response::allow(&request.uid)
}
