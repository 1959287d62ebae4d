//! Test support for the web chat: tokens signed here, independently of deputy's verifier
//! (jsonwebtoken): HS256 by hand with hmac/sha2, RS256 and ES256 with ring; a real WebSocket
//! client (tokio-tungstenite); and deputy started with `run` and its listener on a free port.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hmac::Mac;
use ring::signature::{self, KeyPair};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::support::{free_port, Deputy};

pub const ISSUER: &str = "https://intranet.test";
pub const AUDIENCE: &str = "deputy";
/// The HS256 secret the site and deputy share (test only).
pub const SITE_SECRET: &str = "test-site-secret-0123456789abcdef-not-for-production";
pub const SITE_ORIGIN: &str = "http://intranet.test:8081";

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims a site would issue for `user`, valid for `secs` from now.
pub fn claims(user: &str, secs: i64) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user,
        "name": format!("{user} (site)"),
        "iat": now(),
        "exp": now() + secs,
    })
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// HS256 over `header.claims` with `secret`, by hand (RFC 7515 A.1).
pub fn hs256_with(secret: &[u8], header: Value, claims: &Value) -> String {
    let input = signing_input(&header, claims);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(mac.finalize().into_bytes()))
}

pub fn hs256(claims: &Value) -> String {
    hs256_with(
        SITE_SECRET.as_bytes(),
        json!({"alg": "HS256", "typ": "JWT"}),
        claims,
    )
}

/// An ES256 key pair made by ring.
pub struct Es256 {
    pair: signature::EcdsaKeyPair,
    pub kid: String,
}

impl Es256 {
    pub fn generate(kid: &str) -> Es256 {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        Es256 {
            pair,
            kid: kid.into(),
        }
    }

    /// The public key as a JWK (RFC 7518 6.2: x and y from the uncompressed point).
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        assert_eq!(point.len(), 65);
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        })
    }

    /// Signs with this key, naming `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let input = signing_input(&json!({"alg": "ES256", "typ": "JWT", "kid": kid}), claims);
        let rng = ring::rand::SystemRandom::new();
        // FIXED signing gives r || s, the JWS form (RFC 7518 3.4).
        let sig = self.pair.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid.clone(), claims)
    }
}

/// The RS256 test key in tests/fixtures (ring cannot generate RSA keys).
pub fn rs256(claims: &Value) -> String {
    let pem = std::fs::read_to_string(fixture("web-rs256-key.pem")).unwrap();
    let der = pem_body(&pem);
    let pair = signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let input = signing_input(&json!({"alg": "RS256", "typ": "JWT"}), claims);
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", b64(sig))
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// `[web]` config for a chat on `port` with `identity` lines in `[web.identity]` and `chat`
/// lines in `[web.chat]`.
pub fn web_config(port: u16, chat: &str, identity: &str) -> String {
    format!(
        "\n[web]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\n\
         [web.chat]\nenabled = true\nallowed_origins = [\"{SITE_ORIGIN}\"]\n{chat}\n\n\
         [web.identity]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nworkspace = \"acme\"\nname_claim = \"name\"\n{identity}\n"
    )
}

/// HS256 identity lines.
pub const HS256: &str = "algorithm = \"HS256\"";

/// A running `deputy run` with the web chat; killed on drop.
pub struct WebDeputy {
    pub child: tokio::process::Child,
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl WebDeputy {
    /// A deputy on a free port; `configure` gets the web config lines to add to its config.
    pub fn config(jenkins_url: &str, chat: &str, identity: &str) -> (Deputy, u16) {
        let port = free_port();
        let mut d = Deputy::new(jenkins_url, &web_config(port, chat, identity));
        d.env
            .push(("DEPUTY_WEB_JWT_SECRET".into(), SITE_SECRET.into()));
        (d, port)
    }

    /// Starts `deputy run` and returns once its listener is bound (it logs so).
    pub async fn start(deputy: &Deputy, port: u16) -> WebDeputy {
        let mut child = deputy.spawn(&["run"]);
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("deputy's listener within 30 s")
                .unwrap();
            let Some(line) = line else {
                panic!("deputy exited before listening:\n{}", log.lock().unwrap());
            };
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if line.contains("web listener started") {
                break;
            }
        }
        // Keep reading, so a full pipe never stalls deputy, and keep the log for asserts.
        let l = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                l.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        WebDeputy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn connect(&self, token: &str) -> Chat {
        match self.try_connect(Some(SITE_ORIGIN), Some(token)).await {
            Ok(c) => c,
            Err((status, body)) => panic!("refused with {status}: {body}"),
        }
    }

    /// Opens `/chat/ws` as a browser on `origin` would, offering `deputy` and the token.
    pub async fn try_connect(
        &self,
        origin: Option<&str>,
        token: Option<&str>,
    ) -> Result<Chat, (u16, String)> {
        let url = format!("{}/chat/ws", self.url.replace("http://", "ws://"));
        let mut request = url.into_client_request().unwrap();
        if let Some(o) = origin {
            request.headers_mut().insert("origin", o.parse().unwrap());
        }
        let protocols = match token {
            Some(t) => format!("deputy, {t}"),
            None => "deputy".into(),
        };
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, response)) => {
                // deputy selects its protocol and never echoes the token.
                assert_eq!(
                    response
                        .headers()
                        .get("sec-websocket-protocol")
                        .map(|v| v.to_str().unwrap()),
                    Some("deputy")
                );
                let mut chat = Chat { ws };
                let hello = chat.next().await;
                assert_eq!(hello["type"], "hello", "{hello}");
                Ok(chat)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((response.status().as_u16(), body))
            }
            Err(e) => panic!("WebSocket failed: {e}"),
        }
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One open chat connection.
pub struct Chat {
    pub ws: Ws,
}

/// What the server ended a connection with.
#[derive(Debug)]
pub enum End {
    Frame(Value),
    Closed(Option<u16>, String),
}

impl Chat {
    pub async fn say(&mut self, text: &str) {
        self.send_raw(json!({"type": "message", "text": text}).to_string())
            .await;
    }

    pub async fn send_raw(&mut self, text: String) {
        self.ws.send(Frame::text(text)).await.unwrap();
    }

    /// The next frame or the close, within 20 s.
    pub async fn event(&mut self) -> End {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .expect("a frame within 20 s");
            match frame {
                Some(Ok(Frame::Text(t))) => return End::Frame(serde_json::from_str(&t).unwrap()),
                Some(Ok(Frame::Close(c))) => {
                    return End::Closed(
                        c.as_ref().map(|c| c.code.into()),
                        c.map(|c| c.reason.to_string()).unwrap_or_default(),
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return End::Closed(None, e.to_string()),
                None => return End::Closed(None, "ended".into()),
            }
        }
    }

    /// The next JSON frame, skipping typing indicators.
    pub async fn next(&mut self) -> Value {
        loop {
            match self.event().await {
                End::Frame(v) if v["type"] == "busy" => continue,
                End::Frame(v) => return v,
                End::Closed(code, why) => panic!("closed ({code:?}): {why}"),
            }
        }
    }

    /// The text of the next reply.
    pub async fn reply(&mut self) -> String {
        let v = self.next().await;
        assert_eq!(v["type"], "reply", "{v}");
        v["text"].as_str().unwrap().to_string()
    }

    pub async fn ask(&mut self, text: &str) -> String {
        self.say(text).await;
        self.reply().await
    }

    /// Closes the connection and waits for the server's close.
    pub async fn close(mut self) {
        self.ws.close(None).await.unwrap();
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}
