//! The OTLP push, as OpenSandbox's execd does it: when
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (the full URL) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a base, `/v1/metrics` appended) is set,
//! the same metrics as `/metrics` go over OTLP/HTTP protobuf every
//! `OTEL_METRIC_EXPORT_INTERVAL` ms (default 60000), with `service.name`
//! from `OTEL_SERVICE_NAME` (default `execd-host`) and `sandbox_id` from
//! `OPENSANDBOX_ID`.
//!
//! The messages are opentelemetry-proto's; their values are read from the
//! OpenMetrics text the host already makes, so both exports say the same.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// Where and how often to push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// `http://host:port/path` of the metrics endpoint.
    pub endpoint: String,
    /// Time between pushes (`OTEL_METRIC_EXPORT_INTERVAL`).
    pub interval: Duration,
    /// The `service.name` resource attribute (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// The `sandbox_id` resource attribute (`OPENSANDBOX_ID`), if set.
    pub sandbox_id: Option<String>,
}

/// The default push interval, as OpenTelemetry's SDKs have it.
const DEFAULT_INTERVAL_MS: u64 = 60_000;

impl OtlpConfig {
    /// The push the environment asks for, `Ok(None)` when it asks for
    /// none, `Err` naming a value that cannot be used.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<OtlpConfig>, String> {
        let nonempty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let endpoint = match (
            nonempty("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
            nonempty("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(full), _) => full,
            (None, Some(base)) => format!("{}/v1/metrics", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        if !endpoint.starts_with("http://") {
            return Err(format!(
                "OTLP endpoint {endpoint:?}: only http:// is supported (no TLS in the host; put a collector beside it)"
            ));
        }
        let interval = match nonempty("OTEL_METRIC_EXPORT_INTERVAL") {
            None => DEFAULT_INTERVAL_MS,
            Some(ms) => ms
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| {
                    format!("OTEL_METRIC_EXPORT_INTERVAL={ms:?} is not a positive number of ms")
                })?,
        };
        Ok(Some(OtlpConfig {
            endpoint,
            interval: Duration::from_millis(interval),
            service_name: nonempty("OTEL_SERVICE_NAME").unwrap_or_else(|| "execd-host".into()),
            sandbox_id: nonempty("OPENSANDBOX_ID"),
        }))
    }
}

/// Pushes `openmetrics()` to the endpoint every interval, until dropped.
/// A failed push is logged (once per run of failures) and retried at the
/// next interval.
pub async fn push_forever<F>(config: OtlpConfig, openmetrics: F)
where
    F: Fn() -> Option<String>,
{
    let started = unix_nanos();
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once: skip it, as the SDKs do.
    ticks.tick().await;
    let mut failing = false;
    loop {
        ticks.tick().await;
        let Some(text) = openmetrics() else { return };
        let request = export_request(&config, &text, started, unix_nanos());
        match post(&config.endpoint, request.encode_to_vec()).await {
            Ok(()) => {
                if failing {
                    tracing::info!(endpoint = %config.endpoint, "OTLP metrics push works again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(endpoint = %config.endpoint, "OTLP metrics push failed: {e}");
                }
                failing = true;
            }
        }
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How long one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

async fn post(endpoint: &str, body: Vec<u8>) -> Result<(), String> {
    let uri: hyper::Uri = endpoint.parse().map_err(|e| format!("bad URL: {e}"))?;
    let host = uri.host().ok_or("no host in the URL")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let request = Request::post(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        // Read the answer out, so the connection ends cleanly.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    };
    tokio::time::timeout(PUSH_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer in {PUSH_TIMEOUT:?}"))?
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// One sample line of the OpenMetrics text.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// One sample line, `name{k="v",...} value`, with OpenMetrics's label
/// escapes (`\\`, `\"`, `\n`) undone: a gap reason comes from the policy
/// and may hold any character.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.strip_prefix(',').unwrap_or(body);
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_key) = body.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after_key.char_indices();
            let value_end = loop {
                match chars.next()? {
                    (at, '"') => break at,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            body = &after_key[value_end + 1..];
        }
    }
    // The value, then perhaps a timestamp.
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The OTLP request for the metrics in `text` (OpenMetrics, as
/// [`Metrics::openmetrics`](super::Metrics::openmetrics) writes it).
pub fn export_request(
    config: &OtlpConfig,
    text: &str,
    start_nanos: u64,
    now_nanos: u64,
) -> ExportMetricsServiceRequest {
    // Families in order, each with its type, help and samples.
    let mut order = Vec::new();
    let mut families: BTreeMap<String, (String, String, Vec<Sample>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                order.push(name.to_string());
                families.entry(name.to_string()).or_default().0 = kind.to_string();
            }
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, help)) = rest.split_once(' ') {
                families.entry(name.to_string()).or_default().1 = help.to_string();
            }
        } else if !line.starts_with('#')
            && let Some(sample) = parse_sample(line)
            && let Some(family) = order.last()
            && let Some(entry) = families.get_mut(family)
        {
            entry.2.push(sample);
        }
    }
    let point_attributes = |labels: &[(String, String)], skip: &str| -> Vec<KeyValue> {
        labels
            .iter()
            .filter(|(k, _)| k != skip)
            .map(|(k, v)| attribute(k, v))
            .collect()
    };
    let number = |sample: &Sample| NumberDataPoint {
        attributes: point_attributes(&sample.labels, ""),
        start_time_unix_nano: start_nanos,
        time_unix_nano: now_nanos,
        value: Some(number_data_point::Value::AsDouble(sample.value)),
        ..Default::default()
    };
    let mut metrics = Vec::new();
    for name in order {
        let Some((kind, help, samples)) = families.remove(&name) else {
            continue;
        };
        let data = match kind.as_str() {
            "counter" => metric::Data::Sum(Sum {
                data_points: samples
                    .iter()
                    .filter(|s| s.name.ends_with("_total"))
                    .map(number)
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
            "gauge" => metric::Data::Gauge(Gauge {
                data_points: samples.iter().map(number).collect(),
            }),
            "histogram" => metric::Data::Histogram(Histogram {
                data_points: histogram_points(&name, &samples, start_nanos, now_nanos),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
            _ => continue,
        };
        metrics.push(Metric {
            name,
            description: help,
            data: Some(data),
            ..Default::default()
        });
    }
    let mut resource = vec![attribute("service.name", &config.service_name)];
    if let Some(id) = &config.sandbox_id {
        resource.push(attribute("sandbox_id", id));
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "execd-host".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A sample's labels, `le` aside: what names one point of a family.
type LabelSet = Vec<(String, String)>;

/// A histogram family's points, one per label set: OpenMetrics's
/// cumulative `_bucket` counts become OTLP's per-bucket counts.
fn histogram_points(
    family: &str,
    samples: &[Sample],
    start_nanos: u64,
    now_nanos: u64,
) -> Vec<HistogramDataPoint> {
    let mut points: BTreeMap<LabelSet, HistogramDataPoint> = BTreeMap::new();
    // Per label set, each bucket's (upper bound, cumulative count).
    let mut cumulative: BTreeMap<LabelSet, Vec<(f64, f64)>> = BTreeMap::new();
    for sample in samples {
        let key: LabelSet = sample
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        let point = points
            .entry(key.clone())
            .or_insert_with(|| HistogramDataPoint {
                attributes: key.iter().map(|(k, v)| attribute(k, v)).collect(),
                start_time_unix_nano: start_nanos,
                time_unix_nano: now_nanos,
                ..Default::default()
            });
        let suffix = sample.name.strip_prefix(family).unwrap_or("");
        match suffix {
            "_sum" => point.sum = Some(sample.value),
            "_count" => point.count = sample.value as u64,
            "_bucket" => {
                let le = sample
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .and_then(|(_, v)| match v.as_str() {
                        "+Inf" => Some(f64::INFINITY),
                        v => v.parse().ok(),
                    });
                if let Some(le) = le {
                    cumulative.entry(key).or_default().push((le, sample.value));
                }
            }
            _ => {}
        }
    }
    for (key, mut buckets) in cumulative {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(point) = points.get_mut(&key) {
            let mut before = 0.0;
            for (le, count) in buckets {
                if le.is_finite() {
                    point.explicit_bounds.push(le);
                }
                point.bucket_counts.push((count - before).max(0.0) as u64);
                before = count;
            }
        }
    }
    points.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OtlpConfig {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4318/v1/metrics".into(),
            interval: Duration::from_secs(1),
            service_name: "execd-host".into(),
            sandbox_id: Some("sb-1".into()),
        }
    }

    #[test]
    fn the_environment_picks_the_endpoint() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(OtlpConfig::from_env(env(&[])), Ok(None));
        let c = OtlpConfig::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://c:4318/v1/metrics");
        assert_eq!(c.interval, Duration::from_secs(60));
        let c = OtlpConfig::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:1/x"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.interval),
            ("http://m:1/x", Duration::from_millis(250))
        );
        assert!(
            OtlpConfig::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c")])).is_err()
        );
        assert!(
            OtlpConfig::from_env(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
            ]))
            .is_err()
        );
    }

    #[test]
    fn label_values_keep_every_character() {
        let s = parse_sample(r#"g_total{reason="a\"b,c\\d\ne",k="",x="}"} 7"#).unwrap();
        assert_eq!(s.name, "g_total");
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("reason", "a\"b,c\\d\ne"), ("k", ""), ("x", "}")]);
        assert_eq!(s.value, 7.0);
        assert_eq!(
            parse_sample("up 1").map(|s| (s.labels.len(), s.value)),
            Some((0, 1.0))
        );
        assert!(parse_sample(r#"bad{k="v 1"#).is_none());
    }

    #[test]
    fn counters_gauges_and_histograms_become_otlp_metrics() {
        let text = "# HELP c Things.\n# TYPE c counter\nc_total{reason=\"exit\"} 3\n\
                    # HELP g Now.\n# TYPE g gauge\ng 2\n\
                    # HELP h Time.\n# TYPE h histogram\nh_sum{call=\"read\"} 0.5\nh_count{call=\"read\"} 3\n\
                    h_bucket{le=\"0.1\",call=\"read\"} 1\nh_bucket{le=\"1.0\",call=\"read\"} 3\n\
                    h_bucket{le=\"+Inf\",call=\"read\"} 3\n# EOF\n";
        let request = export_request(&config(), text, 1, 2);
        let scope = &request.resource_metrics[0].scope_metrics[0];
        assert_eq!(scope.metrics.len(), 3);
        let Some(metric::Data::Sum(sum)) = &scope.metrics[0].data else {
            panic!("a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(3.0))
        );
        assert_eq!(sum.data_points[0].attributes[0].key, "reason");
        let Some(metric::Data::Histogram(h)) = &scope.metrics[2].data else {
            panic!("a histogram")
        };
        let point = &h.data_points[0];
        assert_eq!(point.count, 3);
        assert_eq!(point.explicit_bounds, vec![0.1, 1.0]);
        assert_eq!(point.bucket_counts, vec![1, 2, 0]);
        let resource = request.resource_metrics[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes.len(), 2);
    }
}
