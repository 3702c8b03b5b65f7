//! A stand-in for OpenWeather's `GET /data/2.5/weather`, served over real
//! HTTP on 127.0.0.1 so the tool's client, pool and timeouts are exercised
//! exactly as in production.
//!
//! By default it answers like the real API: 401 for a wrong `appid`, else a
//! body of the documented shape for `q=` or `lat=&lon=`. A test can script the
//! next answers with [`FakeWeather::reply`], and reads back every request it
//! received with [`FakeWeather::requests`].

// Each test binary that declares `mod support;` uses a different subset.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// Exactly as sent, to check percent-encoding.
    pub raw_query: String,
    /// Decoded, in order.
    pub params: Vec<(String, String)>,
    /// When it arrived, for tests of retry delays and rate limits.
    pub at: Instant,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Behave like OpenWeather (the default).
    Realistic,
    /// A JSON body with a status and extra headers.
    Json {
        status: u16,
        body: Value,
        headers: Vec<(&'static str, String)>,
    },
    /// Any body, for malformed answers and redirects.
    Raw {
        status: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
    },
    /// Wait, then answer; longer than the client's timeout to provoke one.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// OpenWeather's error shape: `{"cod": "404", "message": "..."}`.
    pub fn error(status: u16, message: &str) -> Self {
        Reply::json(
            status,
            json!({"cod": status.to_string(), "message": message}),
        )
    }
}

struct Shared {
    api_key: String,
    reply: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
}

pub struct FakeWeather {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeWeather {
    /// Starts on a free port; `api_key` is the only `appid` it accepts.
    pub async fn start(api_key: &str) -> Self {
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            reply: Mutex::new(Reply::Realistic),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/data/2.5/weather", get(handle))
            .with_state(Arc::clone(&shared));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeWeather {
            addr,
            shared,
            server,
        }
    }

    /// What to configure as `tools.weather.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the answer for every following request.
    pub fn reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeWeather {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let params = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let recorded = Recorded {
        path: uri.path().to_owned(),
        raw_query: uri.query().unwrap_or_default().to_owned(),
        params,
        at: Instant::now(),
    };
    shared.requests.lock().unwrap().push(recorded.clone());
    let reply = shared.reply.lock().unwrap().clone();
    answer(reply, &recorded, &shared.api_key).await
}

async fn answer(mut reply: Reply, request: &Recorded, api_key: &str) -> Response {
    while let Reply::Delay(wait, next) = reply {
        tokio::time::sleep(wait).await;
        reply = *next;
    }
    match reply {
        Reply::Realistic => realistic(request, api_key),
        Reply::Json {
            status,
            body,
            headers,
        } => respond(status, "application/json", body.to_string(), headers),
        Reply::Raw {
            status,
            body,
            headers,
        } => respond(status, "text/html", body, headers),
        Reply::Delay(..) => unreachable!("delays are unwrapped above"),
    }
}

fn realistic(request: &Recorded, api_key: &str) -> Response {
    if request.param("appid") != Some(api_key) {
        return respond(
            401,
            "application/json",
            json!({
                "cod": 401,
                "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info."
            })
            .to_string(),
            Vec::new(),
        );
    }
    let body = match (
        request.param("q"),
        request.param("lat"),
        request.param("lon"),
    ) {
        (Some(city), _, _) => current_weather(city, "GB", 51.5085, -0.1257),
        (None, Some(lat), Some(lon)) => current_weather(
            "Zocca",
            "IT",
            lat.parse().unwrap_or_default(),
            lon.parse().unwrap_or_default(),
        ),
        _ => {
            return respond(
                400,
                "application/json",
                json!({"cod": "400", "message": "Nothing to geocode"}).to_string(),
                Vec::new(),
            )
        }
    };
    respond(200, "application/json", body.to_string(), Vec::new())
}

/// The documented shape of a current-weather answer
/// (openweathermap.org/current#example_JSON), with fixed readings.
pub fn current_weather(name: &str, country: &str, lat: f64, lon: f64) -> Value {
    json!({
        "coord": {"lon": lon, "lat": lat},
        "weather": [{"id": 501, "main": "Rain", "description": "moderate rain", "icon": "10d"}],
        "base": "stations",
        "main": {
            "temp": 298.48, "feels_like": 298.74, "temp_min": 297.56, "temp_max": 300.05,
            "pressure": 1015, "humidity": 64, "sea_level": 1015, "grnd_level": 933
        },
        "visibility": 10000,
        "wind": {"speed": 0.62, "deg": 349, "gust": 1.18},
        "rain": {"1h": 3.16},
        "clouds": {"all": 100},
        "dt": 1661870592,
        "sys": {"type": 2, "id": 2075663, "country": country, "sunrise": 1661834187, "sunset": 1661882248},
        "timezone": 7200,
        "id": 3163858,
        "name": name,
        "cod": 200
    })
}

fn respond(
    status: u16,
    content_type: &str,
    body: String,
    headers: Vec<(&'static str, String)>,
) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    let map = response.headers_mut();
    map.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap(),
    );
    for (name, value) in headers {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    response.into_response()
}
