//! Reading request bodies: a hard size limit, and form fields from
//! `application/x-www-form-urlencoded` or `multipart/form-data`.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use crate::error::ErrorKind;

/// The largest body accepted by any public POST.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Form,
    Multipart,
    Json,
}

/// The body's encoding from `Content-Type`, if it is one we read.
pub fn encoding_of(req: &HttpRequest) -> Option<Encoding> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = value.split(';').next()?.trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-www-form-urlencoded" => Some(Encoding::Form),
        "multipart/form-data" => Some(Encoding::Multipart),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] (by the
/// declared length first, then by what arrives).
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::Bytes, ErrorKind> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(ErrorKind::PayloadTooLarge);
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ErrorKind::PayloadTooLarge,
            other => ErrorKind::BadRequest(format!("the body could not be read: {other}")),
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ErrorKind::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The fields of a form body, in order.
pub async fn form_pairs(
    req: &HttpRequest,
    encoding: Encoding,
    body: web::Bytes,
) -> Result<Vec<(String, String)>, String> {
    match encoding {
        Encoding::Form => serde_urlencoded::from_bytes(&body)
            .map_err(|e| format!("the form body could not be decoded: {e}")),
        Encoding::Multipart => multipart_pairs(req, body, MULTIPART_DEADLINE).await,
        Encoding::Json => Err("expected a form body".to_owned()),
    }
}

/// How long decoding a multipart body (already in memory, at most
/// [`MAX_BODY_BYTES`]) may take. actix-multipart 0.7 never finishes on some
/// bodies that end inside their closing boundary (it waits for data that
/// cannot come); such a body is refused instead of holding the request
/// open for good. A well-formed body decodes in microseconds.
const MULTIPART_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

async fn multipart_pairs(
    req: &HttpRequest,
    body: web::Bytes,
    deadline: std::time::Duration,
) -> Result<Vec<(String, String)>, String> {
    tokio::time::timeout(deadline, decode_multipart(req, body))
        .await
        .unwrap_or_else(|_| {
            Err("the multipart body is malformed: it ends before its closing boundary".to_owned())
        })
}

async fn decode_multipart(
    req: &HttpRequest,
    body: web::Bytes,
) -> Result<Vec<(String, String)>, String> {
    let stream =
        futures_util::stream::once(async move { Ok::<_, actix_web::error::PayloadError>(body) });
    let mut multipart = actix_multipart::Multipart::new(req.headers(), stream);
    let mut pairs = Vec::new();
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(|e| format!("the multipart body is malformed: {e}"))?;
        let name = field
            .content_disposition()
            .and_then(|cd| cd.get_name())
            .unwrap_or("")
            .to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| format!("the multipart body is malformed: {e}"))?;
            bytes.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(bytes)
            .map_err(|_| format!("the field {name:?} is not valid UTF-8"))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_multipart_body_cut_anywhere_is_answered() {
        let boundary = "assent-boundary";
        let whole = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nx@example.org\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAnn\r\n--{boundary}--\r\n"
        );
        let req = actix_web::test::TestRequest::default()
            .insert_header((
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            ))
            .to_http_request();
        let complete = multipart_pairs(&req, web::Bytes::from(whole.clone()), MULTIPART_DEADLINE)
            .await
            .unwrap();
        assert_eq!(complete[1], ("name".to_owned(), "Ann".to_owned()));
        for cut in 1..whole.len() {
            let body = web::Bytes::copy_from_slice(&whole.as_bytes()[..cut]);
            let deadline = std::time::Duration::from_millis(50);
            // Refused (or, cut after the last part, read): never left waiting.
            let decoded = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                multipart_pairs(&req, body, deadline),
            )
            .await;
            assert!(decoded.is_ok(), "cut at {cut}: no answer");
        }
    }
}
