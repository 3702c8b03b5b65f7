//! The weather tool against a fake OpenWeather over real HTTP.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fake_weather::{current_weather, FakeWeather, Reply};
use toolq::tools::weather::{WeatherConfig, WeatherTool};
use toolq::tools::{JobContext, Secret, Tool, ToolError};

/// The context of a call made outside a worker.
fn cx() -> JobContext<'static> {
    JobContext::new("test", 0, "default")
}

const KEY: &str = "TESTKEY-9f8e7d6c5b4a39281706f5e4d3c2b1a0";

fn tool_at(base_url: String, key: &str, timeout: Duration) -> WeatherTool {
    WeatherTool::new(WeatherConfig {
        api_key: Some(Secret::new(key)),
        base_url,
        timeout,
        ..WeatherConfig::default()
    })
    .unwrap()
}

fn tool(server: &FakeWeather) -> WeatherTool {
    tool_at(server.base_url(), KEY, Duration::from_secs(5))
}

/// Every failure path must keep the key out of what gets logged and stored.
fn assert_key_hidden(err: &ToolError) {
    assert!(!err.to_string().contains(KEY), "key in Display: {err}");
    assert!(!format!("{err:?}").contains(KEY), "key in Debug: {err:?}");
}

async fn call_err(tool: &WeatherTool, args: Value) -> ToolError {
    let err = tool.call(&args, cx()).await.unwrap_err();
    assert_key_hidden(&err);
    err
}

fn retryable(err: ToolError) -> (String, Option<Duration>) {
    match err {
        ToolError::Retryable {
            message,
            retry_after,
        } => (message, retry_after),
        other => panic!("expected Retryable, got {other:?}"),
    }
}

fn permanent(err: ToolError) -> String {
    match err {
        ToolError::Permanent(message) => message,
        other => panic!("expected Permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn city_query_returns_compact_output() {
    let server = FakeWeather::start(KEY).await;
    let out = tool(&server)
        .call(
            &json!({"city": "New York", "units": "imperial", "lang": "fr"}),
            cx(),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({
            "city": "New York", "country": "GB", "lat": 51.5085, "lon": -0.1257,
            "temperature": 298.48, "feels_like": 298.74, "humidity": 64, "pressure": 1015,
            "wind_speed": 0.62, "wind_deg": 349, "description": "moderate rain",
            "units": "imperial", "observed_at": 1661870592
        })
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.path, "/data/2.5/weather");
    assert_eq!(req.param("q"), Some("New York"));
    assert_eq!(req.param("units"), Some("imperial"));
    assert_eq!(req.param("lang"), Some("fr"));
    assert_eq!(req.param("appid"), Some(KEY));
    assert!(req.raw_query.contains("q=New+York"), "{}", req.raw_query);
}

#[tokio::test]
async fn coordinates_query_defaults_to_metric() {
    let server = FakeWeather::start(KEY).await;
    let out = tool(&server)
        .call(&json!({"lat": 44.34, "lon": 10.99}), cx())
        .await
        .unwrap();
    assert_eq!(out["city"], "Zocca");
    assert_eq!(out["country"], "IT");
    assert_eq!(out["lat"], 44.34);
    assert_eq!(out["lon"], 10.99);
    assert_eq!(out["units"], "metric");

    let req = &server.requests()[0];
    assert_eq!(req.param("lat"), Some("44.34"));
    assert_eq!(req.param("lon"), Some("10.99"));
    assert_eq!(req.param("units"), Some("metric"));
    assert_eq!(req.param("q"), None);
    assert_eq!(req.param("lang"), None);
}

#[tokio::test]
async fn special_characters_in_the_city_are_encoded() {
    let server = FakeWeather::start(KEY).await;
    let city = "Saint-Étienne&appid=stolen#x";
    let out = tool(&server)
        .call(&json!({"city": city}), cx())
        .await
        .unwrap();
    assert_eq!(out["city"], city);
    let req = &server.requests()[0];
    assert_eq!(req.param("q"), Some(city));
    assert_eq!(req.param("appid"), Some(KEY));
    assert_eq!(req.params.iter().filter(|(k, _)| k == "appid").count(), 1);
}

#[tokio::test]
async fn invalid_args_never_reach_the_api() {
    let server = FakeWeather::start(KEY).await;
    let tool = tool(&server);
    for args in [
        json!({}),
        json!({"city": ""}),
        json!({"city": "Paris", "lat": 1.0, "lon": 2.0}),
        json!({"lat": 100, "lon": 0}),
        json!({"city": "Paris", "units": "kelvin"}),
    ] {
        assert!(
            matches!(tool.validate(&args), Err(ToolError::InvalidArgs(_))),
            "{args}"
        );
        assert!(
            matches!(tool.call(&args, cx()).await, Err(ToolError::InvalidArgs(_))),
            "{args}"
        );
    }
    assert!(tool.validate(&json!({"city": "Paris"})).is_ok());
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let tool = tool_at(format!("http://{addr}"), KEY, Duration::from_secs(5));
    let (message, retry_after) = retryable(call_err(&tool, json!({"city": "Oslo"})).await);
    assert!(
        message.starts_with("could not connect to weather API"),
        "{message}"
    );
    assert_eq!(retry_after, None);
}

#[tokio::test]
async fn slow_api_times_out_as_retryable() {
    let server = FakeWeather::start(KEY).await;
    server.reply(Reply::Delay(
        Duration::from_secs(3),
        Box::new(Reply::Realistic),
    ));
    let tool = tool_at(server.base_url(), KEY, Duration::from_millis(200));
    let started = Instant::now();
    let (message, _) = retryable(call_err(&tool, json!({"city": "Oslo"})).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(message, "weather API did not answer within 200ms");
}

#[tokio::test]
async fn server_error_is_retryable() {
    let server = FakeWeather::start(KEY).await;
    server.reply(Reply::error(500, "Internal error"));
    let (message, retry_after) = retryable(call_err(&tool(&server), json!({"city": "Oslo"})).await);
    assert_eq!(
        message,
        "weather API server error (500 Internal Server Error): Internal error"
    );
    assert_eq!(retry_after, None);
}

#[tokio::test]
async fn rate_limit_is_retryable_after_the_given_delay() {
    let server = FakeWeather::start(KEY).await;
    server.reply(Reply::Json {
        status: 429,
        body: json!({"cod": 429, "message": "Your account is temporary blocked due to exceeding of requests limitation of your subscription type."}),
        headers: vec![("retry-after", "7".into())],
    });
    let (message, retry_after) = retryable(call_err(&tool(&server), json!({"city": "Oslo"})).await);
    assert!(
        message.starts_with("weather API rate limit exceeded (429)"),
        "{message}"
    );
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn wrong_key_is_permanent() {
    let server = FakeWeather::start(KEY).await;
    let tool = tool_at(server.base_url(), "not-the-key", Duration::from_secs(5));
    let err = tool.call(&json!({"city": "Oslo"}), cx()).await.unwrap_err();
    assert_eq!(permanent(err), "weather API rejected the API key (401)");
}

#[tokio::test]
async fn unknown_city_is_permanent() {
    let server = FakeWeather::start(KEY).await;
    server.reply(Reply::error(404, "city not found"));
    let err = call_err(&tool(&server), json!({"city": "Atlantis"})).await;
    assert_eq!(permanent(err), "city not found: Atlantis");
}

#[tokio::test]
async fn other_client_errors_are_permanent_with_the_api_message() {
    let server = FakeWeather::start(KEY).await;
    // A misbehaving API (or proxy) echoing the key must not leak it.
    server.reply(Reply::error(
        400,
        &format!("wrong latitude for appid={KEY}"),
    ));
    let err = call_err(&tool(&server), json!({"lat": 1.0, "lon": 2.0})).await;
    assert_eq!(
        permanent(err),
        "weather API returned 400 Bad Request: wrong latitude for appid=***"
    );
}

#[tokio::test]
async fn malformed_bodies_are_permanent() {
    let server = FakeWeather::start(KEY).await;
    server.reply(Reply::Raw {
        status: 200,
        body: "<html>maintenance</html>".into(),
        headers: Vec::new(),
    });
    let err = call_err(&tool(&server), json!({"city": "Oslo"})).await;
    assert_eq!(
        permanent(err),
        "unexpected response from weather API: body is not JSON"
    );

    let mut body = current_weather("Oslo", "NO", 59.9, 10.7);
    body["main"].as_object_mut().unwrap().remove("temp");
    server.reply(Reply::json(200, body));
    let err = call_err(&tool(&server), json!({"city": "Oslo"})).await;
    assert_eq!(
        permanent(err),
        "unexpected response from weather API: missing main.temp"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = FakeWeather::start(KEY).await;
    server.reply(Reply::Raw {
        status: 302,
        body: String::new(),
        headers: vec![(
            "location",
            format!("{}/data/2.5/weather", server.base_url()),
        )],
    });
    let err = call_err(&tool(&server), json!({"city": "Oslo"})).await;
    assert!(permanent(err).contains("status 302"));
    assert_eq!(server.requests().len(), 1);
}
