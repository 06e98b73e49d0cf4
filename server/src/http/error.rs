//! The one error type of the HTTP API: every failure is `{"error": "<code>", "message": "..."}`
//! with a 4xx/5xx status and a stable code (`docs/API.md`). Extractor rejections convert into
//! it, so no handler formats an error body itself.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use revbloom::bearer::BearerProblem;
use revbloom::wire;

/// A JSON error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with an HTTP status, a stable machine-readable code and a human message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The response, with `Connection: close`: for a client whose request was not read in
    /// full, so the connection cannot carry another one.
    pub(crate) fn closing(self) -> Response {
        let mut res = self.into_response();
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The same error, said of item `index` of a batch.
    pub(crate) fn in_item(mut self, index: usize) -> Self {
        self.message = format!("item {index}: {}", self.message);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(wire::ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        });
        let mut res = (self.status, body).into_response();
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The body was not read in full: the connection cannot carry another request.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let v = format!("Bearer realm=\"revbloom\", error=\"{}\"", self.code);
            if let Ok(v) = HeaderValue::from_str(&v) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        res
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        if super::deadline::is_body_timeout(&e) {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body was not received in time; send it at once",
            );
        }
        match e {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as `Content-Type: application/json`",
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::bad("malformed_json", e.body_text()),
            JsonRejection::JsonDataError(e) => ApiError::bad("invalid_body", e.body_text()),
            e if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is over the size limit; split the batch",
            ),
            e => ApiError::bad("unreadable_body", e.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad("invalid_jti", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad("invalid_query", e.body_text())
    }
}

impl From<BearerProblem> for ApiError {
    fn from(p: BearerProblem) -> Self {
        match p {
            BearerProblem::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "this endpoint needs `Authorization: Bearer <admin token>`",
            ),
            BearerProblem::Malformed(why) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", why)
            }
            _ => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the bearer credentials are unusable",
            ),
        }
    }
}
