//! The OTLP push: a receiver of the test's own on loopback decodes each
//! POST with opentelemetry-proto's `ExportMetricsServiceRequest` (the same
//! decoding a collector does) and the test reads the pushed values.
//! Counters go by their OpenTelemetry names, without Prometheus's `_total`
//! (a collector's Prometheus exporter adds it back).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use serde_json::json;
use tokio::sync::mpsc;

use crate::harness::*;

/// One push as the receiver got it.
struct Push {
    path: String,
    content_type: String,
    request: ExportMetricsServiceRequest,
}

/// Listens on 127.0.0.1:0; every POST is decoded and sent on the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Push>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let content_type = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let body = req.into_body().collect().await?.to_bytes();
                        let request = ExportMetricsServiceRequest::decode(body)
                            .expect("the push is an ExportMetricsServiceRequest");
                        let _ = tx.send(Push {
                            path,
                            content_type,
                            request,
                        });
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// The value of a counter or gauge point in the push, by metric name and
/// one attribute (or none).
fn number(
    push: &ExportMetricsServiceRequest,
    name: &str,
    attribute: Option<(&str, &str)>,
) -> Option<f64> {
    let metric = push.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)?;
    let points = match metric.data.as_ref()? {
        metric::Data::Sum(sum) => {
            assert!(sum.is_monotonic, "{name} is a monotonic sum");
            &sum.data_points
        }
        metric::Data::Gauge(gauge) => &gauge.data_points,
        _ => return None,
    };
    let point = points.iter().find(|p| match attribute {
        None => p.attributes.is_empty(),
        Some((k, v)) => string_attribute(&p.attributes, k) == Some(v),
    })?;
    match point.value? {
        number_data_point::Value::AsDouble(v) => Some(v),
        number_data_point::Value::AsInt(v) => Some(v as f64),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_pushed_over_otlp_http_protobuf() {
    let (addr, mut pushes) = receiver().await;
    let endpoint = format!("http://{addr}");
    let host = Host::try_start_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
            ("OTEL_SERVICE_NAME", "execd-under-test"),
            ("OPENSANDBOX_ID", "sb-otlp-1"),
        ],
    )
    .await
    .unwrap();
    let events = host
        .run(json!({ "command": "echo one; exit 3" }))
        .await
        .events()
        .await;
    assert!(events.last().is_some_and(|e| e.is_terminal()));

    // Pushes come every 100 ms; wait (bounded) for one that has seen the
    // command end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let push = loop {
        let push = tokio::time::timeout_at(deadline, pushes.recv())
            .await
            .expect("a push that counts the ended command within 30 s")
            .expect("the receiver runs");
        if number(
            &push.request,
            "execd_commands_ended",
            Some(("reason", "exit")),
        ) == Some(1.0)
        {
            break push;
        }
    };
    assert_eq!(push.path, "/v1/metrics");
    assert_eq!(push.content_type, "application/x-protobuf");
    let resource = push.request.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        string_attribute(&resource.attributes, "service.name"),
        Some("execd-under-test")
    );
    assert_eq!(
        string_attribute(&resource.attributes, "sandbox_id"),
        Some("sb-otlp-1")
    );
    let request = &push.request;
    assert_eq!(number(request, "execd_commands_started", None), Some(1.0));
    assert_eq!(number(request, "execd_commands_running", None), Some(0.0));
    assert_eq!(
        number(request, "execd_events_logged", Some(("stream", "stdout"))),
        Some(1.0)
    );
    // The line text, as `/metrics` counts it: "one".
    assert_eq!(
        number(request, "execd_output_bytes", Some(("stream", "stdout"))),
        Some(3.0)
    );
    // The request histogram holds the POST, by route template.
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    let durations = metrics
        .iter()
        .find(|m| m.name == "execd_http_request_duration_seconds")
        .expect("the request histogram");
    let Some(metric::Data::Histogram(histogram)) = &durations.data else {
        panic!("a histogram: {durations:?}")
    };
    let post = histogram
        .data_points
        .iter()
        .find(|p| string_attribute(&p.attributes, "route") == Some("/command"))
        .expect("a point for /command");
    assert_eq!(post.count, 1);
    assert_eq!(post.bucket_counts.iter().sum::<u64>(), 1);
    assert_eq!(post.bucket_counts.len(), post.explicit_bounds.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_otlp_setting_stops_the_start_with_its_name() {
    for (var, value, says) in [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector:4318",
            "only http://",
        ),
        (
            "OTEL_METRIC_EXPORT_INTERVAL",
            "soon",
            "OTEL_METRIC_EXPORT_INTERVAL",
        ),
    ] {
        let mut env = vec![(var, value)];
        if var != "OTEL_EXPORTER_OTLP_ENDPOINT" {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"));
        }
        let err = match Host::try_start_env(&[], &env).await {
            Ok(_) => panic!("{var}={value} must stop the start"),
            Err(stderr) => stderr,
        };
        assert!(err.contains(says), "{var}={value}: {err}");
    }
}
