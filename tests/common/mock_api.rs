//! A mocked API server (tower-test, as in kube-rs's controller-rs) for the shells that write to
//! the cluster: every call a `kube::Client` makes is recorded (method, path and query, body) and
//! answered by the scenario, for the test to assert.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One call the client made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub uri: String,
    pub body: Value,
}

impl Call {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
}

/// An answer's status that makes the mock fail the call at the transport level (a timeout).
pub const TRANSPORT_FAILURE: u16 = 0;

/// How the mocked API server answers a call: the status and the body (sent as is, so a plain
/// text body is possible, as the API server's `404 page not found` for a resource it doesn't
/// serve).
pub type Answer = Box<dyn Fn(&Call) -> (u16, Vec<u8>) + Send + Sync>;

/// The calls recorded so far, shared with the server task.
pub type Calls = Arc<Mutex<Vec<Call>>>;

/// A client whose every request `answer` answers; the calls are recorded in the returned list.
/// The server task ends with the client.
pub fn client(answer: Answer) -> (Client, Calls) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (code, body) = answer(&call);
            recorded.lock().unwrap().push(call);
            if code == TRANSPORT_FAILURE {
                send.send_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "mocked: the API server timed out",
                ));
                continue;
            }
            send.send_response(Response::builder().status(code).body(Body::from(body)).unwrap());
        }
    });
    (Client::new(service, "default"), calls)
}

/// A JSON answer.
pub fn json_answer(code: u16, body: &Value) -> (u16, Vec<u8>) {
    (code, serde_json::to_vec(body).unwrap())
}

/// An API server that accepts every write, echoing it, and has nothing to GET.
pub fn accepting(call: &Call) -> (u16, Vec<u8>) {
    match call.method.as_str() {
        "GET" => json_answer(
            404,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
        ),
        "POST" => json_answer(201, &call.body),
        _ => json_answer(200, &call.body),
    }
}
