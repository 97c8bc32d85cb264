#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn empty_file_is_valid_with_defaults() {
    let raw = parse_source("").unwrap();
    let c = Config::try_from(&raw).unwrap();
    assert_eq!(c.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
    assert_eq!(c.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
    assert_eq!(c.tftp_listen.unwrap().to_string(), DEFAULT_TFTP_LISTEN);
    assert_eq!(c.dhcp_mode, DhcpMode::Proxy);
    assert_eq!(c.assets_dir, PathBuf::from(DEFAULT_DATA_DIR).join("assets"));
}

#[test]
fn unknown_key_and_bad_address_are_both_named_with_lines() {
    let text = "mode = \"standalone\"\nbogus = 1\n\n[admin]\nlisten = \"not-an-address\"\n";
    let problems = check_source(text);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].key, "bogus");
    assert_eq!(problems[0].line, Some(2));
    assert!(
        problems[0].message.contains("unknown field"),
        "{}",
        problems[0].message
    );
    assert_eq!(problems[1].key, "admin.listen");
    assert_eq!(problems[1].line, Some(5));
    assert!(problems[1].message.contains("bad address"));
}

#[test]
fn every_parse_problem_is_reported_not_only_the_first() {
    let text = "[dhcp]\nport = \"sixty-seven\"\nfoo = true\n[tftp]\nmax_blksize = 1468\nbar = 2\n[nope]\nx = 1\n";
    let problems = check_source(text);
    let keys: Vec<_> = problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        vec![
            ("dhcp.port", Some(2)),
            ("dhcp.foo", Some(3)),
            ("tftp.bar", Some(6)),
            ("nope", Some(7))
        ]
    );
}

#[test]
fn missing_referenced_file_is_a_problem() {
    let problems = check_source("[admin]\ntoken_file = \"/nonexistent/token\"\n");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "admin.token_file");
    assert_eq!(problems[0].line, Some(2));
}

#[test]
fn semantic_problems_are_all_collected() {
    let text = "mode = \"omni\"\nadvertise_addr = \"255.255.255.255\"\n[dhcp]\nmode = \"full\"\n[dhcp.boot_files]\nx86 = \"a.efi\"\n[omni]\ninstall_boot = \"copy\"\n";
    let problems = check_source(text);
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"advertise_addr"), "{keys:?}");
    assert!(keys.contains(&"dhcp.mode"));
    assert!(keys.contains(&"dhcp.boot_files.x86"));
    assert!(keys.contains(&"omni.endpoint"));
    assert!(keys.contains(&"omni.provider_id"));
    assert!(keys.contains(&"omni.install_boot"));
}

#[test]
fn syntax_error_is_reported_with_line() {
    let problems = check_source("mode = \"standalone\"\n[admin\nlisten = 1\n");
    assert!(!problems.is_empty());
    assert_eq!(problems[0].line, Some(2));
}

#[test]
fn layering_prefers_the_upper_layer() {
    let file =
        parse_source("[admin]\nlisten = \"127.0.0.1:9000\"\n[http]\nlisten = \"0.0.0.0:1\"\n")
            .unwrap();
    let mut flags = RawConfig::default();
    flags.admin.listen = Some("127.0.0.1:9100".into());
    let merged = flags.over(file);
    assert_eq!(merged.admin.listen.as_deref(), Some("127.0.0.1:9100"));
    assert_eq!(merged.http.listen.as_deref(), Some("0.0.0.0:1"));
}

/// Every config file the project ships parses and validates.
#[test]
fn shipped_config_files_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("image/rackboot.toml")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            files.push(p);
        }
    }
    assert!(
        files.len() >= 2,
        "expected image/rackboot.toml and examples/*.toml"
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let problems = check_source(&text);
        // Files named by shipped configs (key files, tokens) exist only on the target host.
        let real: Vec<_> = problems
            .iter()
            .filter(|p| !p.message.contains("does not exist"))
            .collect();
        assert!(real.is_empty(), "{}: {real:?}", f.display());
    }
}

/// Found by `fuzz/fuzz_targets/config.rs`: a line with an empty key (` = 1`) or an empty table
/// header (`[]`) was reported under the key "" (`FILE:2: : invalid key`).
#[test]
fn a_problem_without_a_key_is_named_file() {
    for text in ["mode = \"omni\"\n = 1\n", "[]\nx = 1\n"] {
        let problems = check_source(text);
        assert!(!problems.is_empty(), "{text:?}");
        for p in &problems {
            assert!(!p.key.is_empty(), "{text:?}: {p:?}");
        }
    }
}

#[test]
fn discovery_limit_defaults_and_bounds() {
    let c = Config::try_from(&parse_source("").unwrap()).unwrap();
    assert_eq!(c.discovery_burst, DEFAULT_DISCOVERY_BURST);
    assert_eq!(c.discovery_per_second, DEFAULT_DISCOVERY_PER_SECOND);
    let raw = parse_source("[inventory]\ndiscovery_burst = 0\ndiscovery_per_second = 0\n").unwrap();
    let c = Config::try_from(&raw).unwrap();
    assert_eq!((c.discovery_burst, c.discovery_per_second), (0, 0));
    let problems =
        check_source("[inventory]\ndiscovery_burst = 5000000\ndiscovery_per_second = -1\n");
    let keys: Vec<_> = problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        vec![
            ("inventory.discovery_per_second", Some(3)),
            ("inventory.discovery_burst", Some(2)),
        ],
        "{problems:?}"
    );
    assert!(problems[1].message.contains("outside 0..="), "{problems:?}");
}

#[test]
fn tftp_retransmission_keys_default_like_the_engine_and_reach_the_config() {
    let c = Config::try_from(&parse_source("").unwrap()).unwrap();
    assert_eq!(c.tftp_timeout, std::time::Duration::from_secs(1));
    assert_eq!(c.tftp_min_timeout, std::time::Duration::from_millis(50));
    assert_eq!(c.tftp_max_retries, 5);
    assert!(c.tftp_tail_probe);
    assert!(c.tftp_gso);

    let text = "[tftp]\ntimeout_ms = 3000\nmin_timeout_ms = 3000\nmax_retries = 8\n\
                tail_probe = false\ngso = false\n";
    assert!(check_source(text).is_empty(), "{:?}", check_source(text));
    let c = Config::try_from(&parse_source(text).unwrap()).unwrap();
    assert_eq!(c.tftp_timeout, std::time::Duration::from_secs(3));
    assert_eq!(c.tftp_min_timeout, std::time::Duration::from_secs(3));
    assert_eq!(c.tftp_max_retries, 8);
    assert!(!c.tftp_tail_probe);
    assert!(!c.tftp_gso);

    // A timeout below the default floor brings the floor down with it.
    let c = Config::try_from(&parse_source("[tftp]\ntimeout_ms = 20\n").unwrap()).unwrap();
    assert_eq!(c.tftp_min_timeout, std::time::Duration::from_millis(20));
}

#[test]
fn bad_tftp_retransmission_values_are_named_by_key_and_line() {
    let text =
        "[tftp]\ntimeout_ms = 0\nmin_timeout_ms = 0\nmax_retries = 0\ntail_probe = \"yes\"\n";
    let problems = check_source(text);
    let keys: Vec<_> = problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        vec![
            ("tftp.tail_probe", Some(5)),
            ("tftp.timeout_ms", Some(2)),
            ("tftp.min_timeout_ms", Some(3)),
            ("tftp.max_retries", Some(4))
        ],
        "{problems:?}"
    );
    let problems = check_source("[tftp]\ntimeout_ms = 500\nmin_timeout_ms = 800\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "tftp.min_timeout_ms");
    assert!(
        problems[0].message.contains("500"),
        "{}",
        problems[0].message
    );
    let problems = check_source("[tftp]\ntimeout_ms = 256000\n");
    assert_eq!(problems[0].key, "tftp.timeout_ms");
    assert!(
        problems[0].message.contains("255"),
        "{}",
        problems[0].message
    );
}

#[test]
fn boot_http_congestion_control_defaults_to_cubic_and_system_keeps_the_hosts() {
    let c = Config::try_from(&parse_source("").unwrap()).unwrap();
    assert_eq!(c.http_tcp_congestion.as_deref(), Some("cubic"));
    let c =
        Config::try_from(&parse_source("[http]\ntcp_congestion = \"system\"\n").unwrap()).unwrap();
    assert_eq!(c.http_tcp_congestion, None);
    let c =
        Config::try_from(&parse_source("[http]\ntcp_congestion = \"reno\"\n").unwrap()).unwrap();
    assert_eq!(c.http_tcp_congestion.as_deref(), Some("reno"));
    for bad in ["", "Cubic", "cubic;rm", "a_name_longer_than_15"] {
        let text = format!("[http]\ntcp_congestion = {bad:?}\n");
        let problems = check_source(&text);
        assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
        assert_eq!(problems[0].key, "http.tcp_congestion");
        assert_eq!(problems[0].line, Some(2), "{bad:?}");
    }
}
