//! Publishing to the ARGO Messaging Service as SSM does (through argo-ams-library):
//! `POST {url}/v1/projects/{project}/topics/{topic}:publish` with header `x-api-key` and body
//! `{"messages":[{"attributes":{"empaid":"<element id>"},"data":"<base64 of the signed
//! message>"}]}`; AMS answers `{"messageIds":["..."]}`. Without a configured token, one is
//! obtained with the host certificate from
//! `GET https://{host}:{authn_port}/v1/service-types/ams/hosts/{host}:authx509`
//! (`{"token":"..."}`). Errors come as `{"error":{"code":..,"message":"..","status":".."}}`.
//!
//! Requests and answers are built and read by pure functions; [`AmsClient`] only sends.

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::config::AmsBroker;
use super::dirq::ElementId;
use super::error::{Error, Result};
use super::smime::Signer;

/// The publish URL of `topic`.
pub fn publish_url(base: &Url, project: &str, topic: &str) -> Result<Url> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| Error::Config(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(["v1", "projects", project, "topics"])
        .push(&format!("{topic}:publish"));
    Ok(url)
}

/// The certificate-to-token URL (argo-ams-library's `auth_x509` route).
pub fn authx509_url(base: &Url, authn_port: u16) -> Result<Url> {
    let host = base
        .host_str()
        .ok_or_else(|| Error::Config(format!("{base} has no host")))?;
    let mut url = base.clone();
    url.set_port(Some(authn_port))
        .map_err(|()| Error::Config(format!("{base} cannot have a port")))?;
    url.path_segments_mut()
        .map_err(|()| Error::Config(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(["v1", "service-types", "ams", "hosts"])
        .push(&format!("{host}:authx509"));
    Ok(url)
}

/// The JSON body publishing one signed message under its element id.
pub fn publish_body(id: &ElementId, signed: &str) -> String {
    serde_json::json!({
        "messages": [{
            "attributes": {"empaid": id.as_str()},
            "data": base64::engine::general_purpose::STANDARD.encode(signed),
        }]
    })
    .to_string()
}

/// Reads a publish answer: the AMS message id, or the error AMS sent.
pub fn publish_response(status: u16, body: &[u8]) -> Result<String> {
    if status != 200 {
        return Err(error_response(status, body));
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::MalformedAmsResponse(format!("not JSON: {e}")))?;
    v["messageIds"][0]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::MalformedAmsResponse(format!("no messageIds in {}", excerpt(body))))
}

/// Reads a token answer.
pub fn token_response(status: u16, body: &[u8]) -> Result<SecretString> {
    if status != 200 {
        return Err(error_response(status, body));
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::MalformedAmsResponse(format!("token answer is not JSON: {e}")))?;
    v["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| Error::MalformedAmsResponse("no token in the answer".to_owned()))
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

fn error_response(status: u16, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| excerpt(body));
    Error::Ams { status, message }
}

/// An AMS publisher with its token.
#[derive(Debug)]
pub struct AmsClient {
    http: reqwest::Client,
    publish: Url,
    token: SecretString,
}

impl AmsClient {
    /// Builds the client and, without a configured token, obtains one with the host
    /// certificate (`identity`).
    pub async fn connect(
        broker: &AmsBroker,
        topic: &str,
        identity: &Signer,
        timeout: Duration,
    ) -> Result<Self> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!(
                    env!("CARGO_PKG_NAME"),
                    "/",
                    env!("CARGO_PKG_VERSION")
                ))
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .use_rustls_tls()
        };
        let http = builder().build().map_err(Error::AmsRequest)?;
        let publish = publish_url(&broker.url, &broker.project, topic)?;
        let token = match &broker.token {
            Some(t) => t.clone(),
            None => {
                let pem = identity.identity_pem()?;
                let id = reqwest::Identity::from_pem(pem.expose_secret().as_bytes())
                    .map_err(Error::AmsRequest)?;
                let authn = builder().identity(id).build().map_err(Error::AmsRequest)?;
                let url = authx509_url(&broker.url, broker.authn_port)?;
                let answer = authn.get(url).send().await.map_err(Error::AmsRequest)?;
                let status = answer.status().as_u16();
                let body = answer.bytes().await.map_err(Error::AmsRequest)?;
                token_response(status, &body)?
            }
        };
        Ok(Self {
            http,
            publish,
            token,
        })
    }

    /// Publishes one signed message; returns the AMS message id.
    pub async fn publish(&self, id: &ElementId, signed: &str) -> Result<String> {
        let answer = self
            .http
            .post(self.publish.clone())
            .header("x-api-key", self.token.expose_secret())
            .header("content-type", "application/json")
            .body(publish_body(id, signed))
            .send()
            .await
            .map_err(Error::AmsRequest)?;
        let status = answer.status().as_u16();
        let body = answer.bytes().await.map_err(Error::AmsRequest)?;
        publish_response(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ElementId {
        ElementId::for_tests("5f3c1a00/5f3c1a2b0a1b21")
    }

    #[test]
    fn urls_as_argo_ams_library_builds_them() {
        let base = Url::parse("https://msg.argo.grnet.gr").unwrap();
        assert_eq!(
            publish_url(&base, "accounting", "eu-egi-cloud-accounting")
                .unwrap()
                .as_str(),
            "https://msg.argo.grnet.gr/v1/projects/accounting/topics/eu-egi-cloud-accounting:publish"
        );
        assert_eq!(
            authx509_url(&base, 8443).unwrap().as_str(),
            "https://msg.argo.grnet.gr:8443/v1/service-types/ams/hosts/msg.argo.grnet.gr:authx509"
        );
        let local = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            publish_url(&local, "p", "t").unwrap().as_str(),
            "http://127.0.0.1:8080/v1/projects/p/topics/t:publish"
        );
    }

    #[test]
    fn body_carries_the_element_id_and_the_signed_text_in_base64() {
        let body: serde_json::Value =
            serde_json::from_str(&publish_body(&id(), "MIME-Version: 1.0\n")).unwrap();
        let m = &body["messages"][0];
        assert_eq!(m["attributes"]["empaid"], "5f3c1a00/5f3c1a2b0a1b21");
        assert_eq!(m["data"], "TUlNRS1WZXJzaW9uOiAxLjAK");
    }

    #[test]
    fn answers_and_errors_are_read() {
        assert_eq!(
            publish_response(200, br#"{"messageIds":["42"]}"#).unwrap(),
            "42"
        );
        let err = publish_response(
            404,
            br#"{"error":{"code":404,"message":"Topic doesn't exist","status":"NOT_FOUND"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "AMS answered HTTP 404: Topic doesn't exist"
        );
        let err = publish_response(502, b"<html>Bad Gateway</html>").unwrap_err();
        assert!(err.is_transient());
        assert!(err.to_string().contains("Bad Gateway"), "{err}");
        assert!(matches!(
            publish_response(200, b"{}").unwrap_err(),
            Error::MalformedAmsResponse(_)
        ));
        assert_eq!(
            token_response(200, br#"{"token":"abc"}"#)
                .unwrap()
                .expose_secret(),
            "abc"
        );
        assert!(token_response(200, br#"{"token":""}"#).is_err());
        assert!(matches!(
            token_response(401, b"{}").unwrap_err(),
            Error::Ams { status: 401, .. }
        ));
    }
}
