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
            ("OBLETH_ADMIN_TOKEN", "a-very-long-admin-token"),
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
        Some("a-very-long-admin-token")
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
        env(&[("OBLETH_ADMIN_TOKEN", "super-secret-admin-token"), ("OBLETH_UPSTREAM_API_KEY", "sk-upstream-secret")]),
    )
    .expect("config");
    let debug = format!("{c:?}");
    let shown = serde_json::to_string(&c.redacted()).expect("json");
    for text in [debug, shown] {
        assert!(!text.contains("super-secret-admin-token"), "{text}");
        assert!(!text.contains("sk-upstream-secret"), "{text}");
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
