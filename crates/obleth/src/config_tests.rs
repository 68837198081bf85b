//! Config loading tests: values in, typed config or a named error out. No test reads
//! or writes the process environment.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn defaults_are_valid() {
    let c = Config::from_parts("", "test", env(&[])).expect("defaults");
    assert_eq!(c.listen.data.port(), 8080);
    assert_eq!(c.listen.admin.port(), 9090);
    assert_eq!(c.listen.metrics.port(), 9091);
    assert_eq!(c.database_url, "sqlite://obleth.db");
    assert_eq!(c.admission.core.slots, 256);
    assert_eq!(c.admission.core.mode, obleth_scheduler::core::Mode::Hierarchical);
    assert_eq!(c.admission.core.brownout_after, Some(Duration::from_secs(10)));
    assert!(c.admin_token.is_none());
    assert!(c.listen.admin.ip().is_loopback(), "the admin API stays on this host by default");
    assert!(c.listen.metrics.ip().is_loopback(), "so do the metrics");
    assert!(c.listen.data.ip().is_unspecified(), "the data plane serves the network");
    let data = &c.connections.data;
    assert_eq!(data.max_connections, 8192);
    assert_eq!(data.header_read_timeout, Duration::from_secs(10));
    assert_eq!(data.body_read_timeout, Duration::from_secs(60));
    assert_eq!(data.idle_timeout, Duration::from_secs(75));
    assert_eq!(data.client_stall_timeout, Duration::from_secs(30));
    assert!(data.request_ids);
    assert_eq!(c.connections.admin.max_connections, 256);
    assert_eq!(c.max_sse_event_bytes, 1 << 20);
}

#[test]
fn limits_from_the_environment() {
    let c = Config::from_parts(
        "[limits]\nidle_timeout = \"5s\"\n",
        "f",
        env(&[
            ("OBLETH_LIMITS_MAX_CONNECTIONS", "100"),
            ("OBLETH_LIMITS_CLIENT_STALL_TIMEOUT", "2s"),
            ("OBLETH_LIMITS_MAX_SSE_EVENT_BYTES", "65536"),
        ]),
    )
    .expect("config");
    assert_eq!(c.connections.data.max_connections, 100);
    assert_eq!(c.connections.data.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.connections.metrics.client_stall_timeout, Duration::from_secs(2));
    assert_eq!(c.max_sse_event_bytes, 65536);
}

#[test]
fn admin_tokens_must_look_generated() {
    for bad in [
        "short",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "abababababababababababababababab12",
        "0123456789abcde 0123456789abcdef",
    ] {
        let err = Config::from_parts("", "f", env(&[("OBLETH_ADMIN_TOKEN", bad)])).expect_err(bad);
        assert!(err.to_string().contains("admin.token"), "{err}");
        assert!(!err.to_string().contains(bad), "the token is not echoed: {err}");
    }
    // What `openssl rand -hex 24` prints.
    Config::from_parts("", "f", env(&[("OBLETH_ADMIN_TOKEN", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c")]))
        .expect("a generated token");
}

#[test]
fn file_values_and_env_overrides() {
    let text = r#"
        [upstream]
        base_url = "http://vllm:8000/v1"
        response_timeout = "90s"
        [admission]
        max_in_flight = 8
    "#;
    let c = Config::from_parts(
        text,
        "obleth.toml",
        env(&[
            ("OBLETH_UPSTREAM_BASE_URL", "http://aibrix-gateway:8080/v1"),
            ("OBLETH_ADMIN_TOKEN", "a-very-long-admin-token-7f3K9xQ2mZ"),
            ("OBLETH_DATABASE_URL", "sqlite:///tmp/x.db"),
            ("OBLETH_ADMISSION_MAX_IN_FLIGHT", "0"),
            ("OBLETH_UPSTREAM_FORWARD_CLIENT_AUTHORIZATION", "true"),
            ("OBLETH_ADMISSION_MODE", "weighted"),
            ("OBLETH_ADMISSION_OUTPUT_TOKEN_WEIGHT", "1.5"),
            ("OBLETH_ADMISSION_BROWNOUT_AFTER", "0s"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .expect("config");
    assert_eq!(c.upstream.base_url.as_deref(), Some("http://aibrix-gateway:8080/v1"), "env wins over file");
    assert_eq!(c.upstream.response_timeout, Duration::from_secs(90));
    assert_eq!(c.admission.core.slots, u32::MAX, "0 means unlimited");
    assert!(c.upstream.forward_client_authorization);
    assert_eq!(c.admission.core.mode, obleth_scheduler::core::Mode::Weighted);
    assert_eq!(c.admission.core.output_weight, 1.5);
    assert_eq!(c.admission.core.brownout_after, None, "0s disables brownout");
    assert_eq!(c.database_url, "sqlite:///tmp/x.db");
    assert_eq!(
        c.admin_token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(),
        Some("a-very-long-admin-token-7f3K9xQ2mZ")
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = Config::from_parts("[upstream]\nbase_ur = \"http://x\"\n", "obleth.toml", env(&[])).expect_err("typo");
    let msg = err.to_string();
    assert!(msg.contains("obleth.toml"), "{msg}");
    assert!(msg.contains("base_ur"), "{msg}");
    let err = Config::from_parts("[nope]\n", "f", env(&[])).expect_err("section");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn invalid_values_name_the_field() {
    let cases = [
        ("[listen]\ndata = \"localhost\"\n", "listen.data"),
        ("[upstream]\nbase_url = \"ftp://x\"\n", "upstream.base_url"),
        ("[admin]\ntoken = \"short\"\n", "admin.token"),
        ("[database]\nurl = \"mysql://x\"\n", "database.url"),
        ("[upstream]\nresponse_timeout = \"0s\"\n", "upstream.response_timeout"),
        ("[limits]\nmax_body_bytes = 10\n", "limits.max_body_bytes"),
        ("[limits]\nmax_sse_event_bytes = 10\n", "limits.max_sse_event_bytes"),
        ("[limits]\nmax_connections = 0\n", "limits.max_connections"),
        ("[limits]\nclient_stall_timeout = \"0s\"\n", "limits.client_stall_timeout"),
        ("[admission]\nmode = \"fifo\"\n", "admission.mode"),
        ("[admission]\noutput_token_weight = -1.0\n", "admission.output_token_weight"),
    ];
    for (text, field) in cases {
        let err = Config::from_parts(text, "f", env(&[])).expect_err(field);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let err = Config::from_parts("[upstream]\nresponse_timeout = \"soon\"\n", "f", env(&[])).expect_err("duration");
    assert!(err.to_string().contains("response_timeout"), "{err}");
}

#[test]
fn env_values_of_the_wrong_type_name_the_variable() {
    let err = Config::from_parts("", "f", env(&[("OBLETH_ADMISSION_MAX_IN_FLIGHT", "lots")])).expect_err("int");
    assert!(err.to_string().contains("OBLETH_ADMISSION_MAX_IN_FLIGHT"), "{err}");
}

#[test]
fn secrets_are_never_printed() {
    let c = Config::from_parts(
        "",
        "f",
        env(&[
            ("OBLETH_ADMIN_TOKEN", "super-secret-admin-token-7f3K9xQ2mZ"),
            ("OBLETH_UPSTREAM_API_KEY", "sk-upstream-secret"),
        ]),
    )
    .expect("config");
    let debug = format!("{c:?}");
    let shown = serde_json::to_string(&c.redacted()).expect("json");
    for text in [debug, shown] {
        assert!(!text.contains("super-secret-admin-token-7f3K9xQ2mZ"), "{text}");
        assert!(!text.contains("sk-upstream-secret"), "{text}");
    }
}

#[test]
fn the_metrics_section() {
    let c = Config::from_parts("", "f", env(&[])).expect("defaults");
    assert!(c.metrics.token.is_none());
    assert_eq!(c.metrics.series, obleth_scheduler::telemetry::SeriesLimits { tenants: 100, groups: 100 });
    let text = "[metrics]\ntoken = \"file-token-Zr4Wq9Lm2Xv7Kp3Tn8BcQ5\"\ntenant_series = 20\n";
    let c = Config::from_parts(
        text,
        "f",
        env(&[("OBLETH_METRICS_TOKEN", "env-token-Hs6Dj1Fq8Yw3Ng5Ve9RaPk4M"), ("OBLETH_METRICS_GROUP_SERIES", "0")]),
    )
    .expect("config");
    assert_eq!(
        c.metrics.token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(),
        Some("env-token-Hs6Dj1Fq8Yw3Ng5Ve9RaPk4M")
    );
    assert_eq!(c.metrics.series, obleth_scheduler::telemetry::SeriesLimits { tenants: 20, groups: 0 });
    assert!(!format!("{c:?}").contains("env-token"), "the token is a secret");
    assert_eq!(serde_json::to_value(c.redacted()).expect("json")["metrics_token"], "[set]");
    for (text, field) in [
        ("[metrics]\ntoken = \"short\"\n", "metrics.token"),
        ("[metrics]\ntenant_series = -1\n", "tenant_series"),
        ("[metrics]\nseries = 5\n", "series"),
    ] {
        let err = Config::from_parts(text, "f", env(&[])).expect_err(field);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[test]
fn upstream_allowed_hosts_and_base_url_are_checked() {
    use obleth_core::upstream::AllowEntry;
    let c = Config::from_parts("", "f", env(&[])).expect("defaults");
    assert!(c.upstream.allowed_hosts.is_empty(), "empty by default: all but the forbidden");
    let text = "[upstream]\nallowed_hosts = [\"vllm.internal\", \"10.0.0.0/8\"]\nbase_url = \"HTTP://VLLM.internal:8000/v1/\"\n";
    let c = Config::from_parts(text, "f", env(&[])).expect("file");
    assert_eq!(
        c.upstream.allowed_hosts,
        [AllowEntry::Name("vllm.internal".into()), AllowEntry::Net("10.0.0.0/8".parse().expect("net"))]
    );
    assert_eq!(c.upstream.base_url.as_deref(), Some("http://vllm.internal:8000/v1"), "normalised");
    let c = Config::from_parts(text, "f", env(&[("OBLETH_UPSTREAM_ALLOWED_HOSTS", " *.svc.cluster.local, fd00::/8,")]))
        .expect("env");
    assert_eq!(
        c.upstream.allowed_hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["*.svc.cluster.local", "fd00::/8"]
    );
    let shown = serde_json::to_string(&c.redacted()).expect("json");
    assert!(shown.contains("*.svc.cluster.local"), "{shown}");

    for (vars, field, says) in [
        (vec![("OBLETH_UPSTREAM_ALLOWED_HOSTS", "vllm,http://x")], "upstream.allowed_hosts", "'http://x'"),
        (vec![("OBLETH_UPSTREAM_ALLOWED_HOSTS", "10.0.0.0/40")], "upstream.allowed_hosts", "'10.0.0.0/40'"),
        (vec![("OBLETH_UPSTREAM_BASE_URL", "http://user:pw@vllm:8000")], "upstream.base_url", "api_key"),
        (vec![("OBLETH_UPSTREAM_BASE_URL", "http://vllm:8000/v1?")], "upstream.base_url", "query"),
    ] {
        let err = Config::from_parts("", "f", env(&vars)).expect_err(field).to_string();
        assert!(err.contains(field) && err.contains(says), "{vars:?}: {err}");
        assert!(!err.contains(":pw@"), "the URL's credentials are not echoed: {err}");
    }
}

#[test]
fn viewer_tokens_and_sessions_are_checked() {
    let admin = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822c";
    let viewer = "0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b";
    let c = Config::from_parts(
        "[admin]\nsession_ttl = \"2h\"\nsecure_cookie = true\n",
        "f",
        env(&[("OBLETH_ADMIN_TOKEN", admin), ("OBLETH_VIEWER_TOKENS", &format!("{viewer}, {viewer}x"))]),
    )
    .expect("valid");
    assert_eq!(c.console.viewer_tokens.len(), 2);
    assert_eq!(c.console.session_ttl, Duration::from_secs(7200));
    assert!(c.console.secure_cookie);
    let d = Config::from_parts("", "f", env(&[])).expect("defaults");
    assert!(d.console.viewer_tokens.is_empty() && !d.console.secure_cookie);
    assert_eq!(d.console.session_ttl, Duration::from_secs(8 * 3600));
    for (vars, field) in [
        (vec![("OBLETH_VIEWER_TOKENS", "short")], "admin.viewer_tokens"),
        (vec![("OBLETH_ADMIN_TOKEN", admin), ("OBLETH_VIEWER_TOKENS", admin)], "admin.viewer_tokens"),
        (vec![("OBLETH_ADMIN_SESSION_TTL", "5s")], "admin.session_ttl"),
    ] {
        let err = Config::from_parts("", "f", env(&vars)).expect_err(field).to_string();
        assert!(err.contains(field), "{err}");
    }
}
