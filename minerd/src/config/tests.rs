//! Loader, key table and renderer tests.

use super::load::valid_host;
use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    m.entry("HOME".into())
        .or_insert_with(|| "/home/test".into());
    m
}

fn load_yaml(yaml: &str, extra_env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("miner.yaml");
    std::fs::write(&path, yaml).unwrap();
    let opts = LoadOptions {
        config_file: Some(path),
        cli: vec![],
    };
    load(&opts, &env(extra_env))
}

/// Loads what `minerd config` printed, its comments stripped.
fn reload(rendered: &str) -> Loaded {
    let yaml: Vec<&str> = rendered
        .lines()
        .map(|l| l.split(" #").next().unwrap())
        .collect();
    load_yaml(&yaml.join("\n"), &[]).unwrap()
}

#[test]
fn defaults_follow_home_and_reference() {
    let l = load(&LoadOptions::default(), &env(&[])).unwrap();
    let c = &l.config;
    assert_eq!(c.data_directory, PathBuf::from("/home/test/.spacetime"));
    assert_eq!(
        c.plot_directory,
        PathBuf::from("/home/test/.spacetime/plots")
    );
    assert_eq!(
        c.plot_metadata_path,
        PathBuf::from("/home/test/.spacetime/plots_metadata.json")
    );
    assert_eq!(c.node_address, "127.0.0.1");
    assert_eq!(c.node_port, 8333);
    assert_eq!(c.max_concurrent_proofs, 1);
    assert_eq!(c.proof_generation_timeout_seconds, 60);
    assert_eq!(c.connection_retry_interval_seconds, 5);
    assert_eq!(c.max_connection_retries, 10);
    assert!(c.enable_performance_monitoring);
    assert_eq!(c.network_id, DEVNET_NETWORK_ID);
    assert_eq!(c.scan_strategy, ScanStrategy::Deadline);
    assert_eq!(c.listen_tcp, None);
    assert!(!c.devnet.enabled);
    assert!(l.sources.values().all(|s| *s == Source::Default));
    assert_eq!(l.sources.len(), KEYS.len());
    assert!(!l.file.1);
}

#[test]
fn layers_apply_in_order_and_record_sources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(
        &path,
        "nodePort: 9000\nnodeAddress: node.example.org\ndevnet:\n  epochDurationSeconds: 3\n",
    )
    .unwrap();
    let e = env(&[
        ("SPACETIME_MINER_NODE_PORT", "9001"),
        ("SPACETIME_MINER_DEVNET_ENABLED", "true"),
        ("SPACETIME_MINER_DATA_DIRECTORY", "~/x"),
    ]);
    let opts = LoadOptions {
        config_file: Some(path.clone()),
        cli: vec![("nodePort".into(), "9002".into(), "--node-port".into())],
    };
    let l = load(&opts, &e).unwrap();
    assert_eq!(l.config.node_port, 9002);
    assert_eq!(l.config.node_address, "node.example.org");
    assert_eq!(l.config.devnet.epoch_duration_seconds, 3);
    assert!(l.config.devnet.enabled);
    assert_eq!(l.config.data_directory, PathBuf::from("/home/test/x"));
    assert_eq!(l.config.plot_directory, PathBuf::from("/home/test/x/plots"));
    assert_eq!(l.sources["nodePort"], Source::Cli("--node-port".into()));
    assert_eq!(l.sources["nodeAddress"], Source::File(path));
    assert_eq!(
        l.sources["devnet.enabled"],
        Source::Env("SPACETIME_MINER_DEVNET_ENABLED".into())
    );
    let text = l.render();
    assert!(text.contains("nodePort: 9002"), "{text}");
    assert!(text.contains("flag --node-port"), "{text}");
    // The rendered output is itself a valid configuration.
    let reparsed = reload(&text);
    assert_eq!(reparsed.config, l.config);
}

#[test]
fn unknown_key_is_named_with_the_allowed_keys() {
    let err = load_yaml("nodePort: 1\nplotDir: /x\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown config key `plotDir`"), "{msg}");
    assert!(msg.contains("plotDirectory"), "{msg}");
    let err = load_yaml("devnet:\n  bogus: 1\n", &[]).unwrap_err();
    assert!(err.to_string().contains("`devnet.bogus`"), "{err}");
}

#[test]
fn wrong_type_and_out_of_range_name_key_value_and_range() {
    let msg = load_yaml("nodePort: abc\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("`nodePort`"), "{msg}");
    assert!(msg.contains("\"abc\""), "{msg}");
    assert!(msg.contains("from 1 to 65535"), "{msg}");
    let msg = load_yaml("maxConcurrentProofs: 0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`maxConcurrentProofs`") && msg.contains("from 1 to 256"),
        "{msg}"
    );
    let msg = load_yaml("autoStartMining: maybe\n", &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("true or false"), "{msg}");
    let msg = load_yaml("logFormat: xml\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("one of text, json"), "{msg}");
    let msg = load_yaml("nodeAddress: \"bad host!\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("host name"), "{msg}");
    let msg = load_yaml("devnet: 3\n", &[]).unwrap_err().to_string();
    assert!(msg.contains("`devnet` must be a mapping"), "{msg}");
    let msg = load(
        &LoadOptions::default(),
        &env(&[("SPACETIME_MINER_NODE_PORT", "70000")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("environment SPACETIME_MINER_NODE_PORT"),
        "{msg}"
    );
    assert!(msg.contains("\"70000\""), "{msg}");
}

#[test]
fn yaml_syntax_error_names_the_file() {
    let msg = load_yaml("nodePort: [1,\n", &[]).unwrap_err().to_string();
    assert!(
        msg.contains("miner.yaml") && msg.contains("not valid YAML"),
        "{msg}"
    );
}

#[test]
fn explicit_missing_file_is_an_error_default_missing_is_not() {
    let err = load(
        &LoadOptions {
            config_file: Some("/nonexistent/m.yaml".into()),
            cli: vec![],
        },
        &env(&[]),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::MissingFile { .. }));
    assert!(load(&LoadOptions::default(), &env(&[])).is_ok());
}

#[test]
fn host_names_and_socket_addresses() {
    assert!(valid_host("localhost"));
    assert!(valid_host("node-1.example.org"));
    assert!(valid_host("::1"));
    assert!(!valid_host("-bad.example"));
    assert!(!valid_host("a..b"));
    assert!(!valid_host("host:8333"));
    let l = load_yaml("listenTcp: 127.0.0.1:0\n", &[]).unwrap();
    assert_eq!(l.config.listen_tcp, Some("127.0.0.1:0".parse().unwrap()));
    let l = load_yaml("listenTcp: \"\"\n", &[]).unwrap();
    assert_eq!(l.config.listen_tcp, None);
    assert!(load_yaml("listenTcp: localhost\n", &[]).is_err());
}

#[test]
fn env_var_names() {
    assert_eq!(
        key_def("proofGenerationTimeoutSeconds").unwrap().env_var(),
        "SPACETIME_MINER_PROOF_GENERATION_TIMEOUT_SECONDS"
    );
    assert_eq!(
        key_def("devnet.listenPort").unwrap().env_var(),
        "SPACETIME_MINER_DEVNET_LISTEN_PORT"
    );
}

#[test]
fn readme_documents_every_key_and_variable() {
    let readme = include_str!("../../../README.md");
    for def in KEYS {
        assert!(
            readme.contains(&format!("`{}`", def.key)),
            "README lacks {}",
            def.key
        );
        assert!(
            readme.contains(&def.env_var()),
            "README lacks {}",
            def.env_var()
        );
    }
}

#[test]
fn devnet_forces_the_devnet_network_id_and_says_so() {
    // A network id from the file and devnet from a flag: the devnet's id wins, with a note.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, "networkId: spacetime-testnet-v1\n").unwrap();
    let opts = LoadOptions {
        config_file: Some(path.clone()),
        cli: vec![("devnet.enabled".into(), "true".into(), "--devnet".into())],
    };
    let l = load(&opts, &env(&[])).unwrap();
    assert_eq!(l.config.network_id, DEVNET_NETWORK_ID);
    let src = l.sources["networkId"].to_string();
    assert!(
        src.contains("devnet.enabled") && src.contains("spacetime-testnet-v1"),
        "{src}"
    );
    assert_eq!(l.notes.len(), 1);
    assert!(l.notes[0].contains("spacetime-testnet-v1"), "{:?}", l.notes);
    let text = l.render();
    let line = text.lines().find(|l| l.starts_with("networkId:")).unwrap();
    assert!(
        line.contains(DEVNET_NETWORK_ID) && line.contains("devnet.enabled"),
        "{line}"
    );
    // Devnet with the default id: same id, the source says why, nothing to warn about.
    let l = load(
        &LoadOptions::default(),
        &env(&[("SPACETIME_MINER_DEVNET_ENABLED", "true")]),
    )
    .unwrap();
    assert_eq!(l.config.network_id, DEVNET_NETWORK_ID);
    assert_eq!(l.sources["networkId"], Source::Devnet { overrides: None });
    assert!(l.notes.is_empty());
    // Without devnet the configured id stands.
    let l = load(
        &LoadOptions {
            config_file: Some(path),
            cli: vec![],
        },
        &env(&[]),
    )
    .unwrap();
    assert_eq!(l.config.network_id, "spacetime-testnet-v1");
    assert!(l.notes.is_empty());
}

#[test]
fn missing_home_without_data_dir_is_reported() {
    let err = load(&LoadOptions::default(), &HashMap::new()).unwrap_err();
    assert!(matches!(err, ConfigError::NoHome));
}

#[test]
fn grpc_web_origins_are_a_list_of_bare_origins() {
    let l = load_yaml(
        "grpcWebOrigins: [\"https://a.example\", \"http://localhost:8080\"]\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        l.config.grpc_web_origins(),
        ["https://a.example", "http://localhost:8080"]
    );
    let l = load_yaml(
        "grpcWebOrigins: \"https://a.example, https://b.example:4443\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(l.config.grpc_web_origins().len(), 2);
    let l = load_yaml("", &[]).unwrap();
    assert!(l.config.grpc_web_origins().is_empty());
    for bad in [
        "a.example",
        "https://a.example/path",
        "ftp://a.example",
        "*",
        "https://",
    ] {
        assert!(
            load_yaml(&format!("grpcWebOrigins: \"{bad}\"\n"), &[]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn tcp_reachable_from_other_hosts_needs_tls_or_the_waiver() {
    let check = |yaml: &str| load_yaml(yaml, &[]).unwrap().check_tcp_security();
    // Loopback in clear is fine; so is no TCP at all.
    check("listenTcp: 127.0.0.1:9090\n").unwrap();
    check("listenTcp: \"[::1]:9090\"\n").unwrap();
    check("{}\n").unwrap();
    // Every other address needs TLS...
    for addr in ["0.0.0.0:9090", "192.0.2.7:9090", "\"[::]:9090\""] {
        let e = check(&format!("listenTcp: {addr}\n"))
            .unwrap_err()
            .to_string();
        for want in [
            "listenTcp",
            "in clear",
            "tlsCertFile",
            "tls-init",
            "allowPlaintextTcp",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(e.contains("miner.yaml"), "names the origin: {e}");
    }
    // ... or the explicit waiver.
    check("listenTcp: 0.0.0.0:9090\nallowPlaintextTcp: true\n").unwrap();
    let tls = "tlsCertFile: ~/c.pem\ntlsKeyFile: ~/k.pem\n";
    check(&format!("listenTcp: 0.0.0.0:9090\n{tls}")).unwrap();
    let l = load_yaml(tls, &[]).unwrap();
    assert_eq!(l.config.tls_cert_file, Some("/home/test/c.pem".into()));
    // A certificate without its key (or the reverse) is refused, naming both keys.
    for half in ["tlsCertFile: /c.pem\n", "tlsKeyFile: /k.pem\n"] {
        let e = check(half).unwrap_err().to_string();
        assert!(e.contains("tlsCertFile") && e.contains("tlsKeyFile"), "{e}");
    }
    assert_eq!(
        load_yaml("tlsCertFile: \"\"\n", &[])
            .unwrap()
            .config
            .tls_cert_file,
        None
    );
}

#[test]
fn connection_caps_have_defaults_and_ranges() {
    let c = load_yaml("{}\n", &[]).unwrap().config;
    assert_eq!(
        (c.max_tcp_connections, c.max_socket_connections),
        (256, 1024)
    );
    assert!(load_yaml("maxTcpConnections: 0\n", &[]).is_err());
    let c = load_yaml("maxTcpConnections: 1000\n", &[]).unwrap().config;
    assert_eq!(c.max_tcp_connections, 1000);
}

#[test]
fn plot_directories_are_a_list_and_plot_directory_its_one_entry_form() {
    // The default: one directory in the data directory.
    let l = load(&LoadOptions::default(), &env(&[])).unwrap();
    assert_eq!(
        l.config.plot_directories,
        [PathBuf::from("/home/test/.spacetime/plots")]
    );
    // A list in the file; the first is `plotDirectory`.
    let l = load_yaml("plotDirectories: [\"/a\", \"~/b\"]\n", &[]).unwrap();
    assert_eq!(
        l.config.plot_directories,
        [PathBuf::from("/a"), PathBuf::from("/home/test/b")]
    );
    assert_eq!(l.config.plot_directory, PathBuf::from("/a"));
    // The rendered output loads again (the list on one line, `plotDirectory` commented).
    let text = l.render();
    assert!(
        text.contains("plotDirectories: [\"/a\", \"/home/test/b\"]"),
        "{text}"
    );
    assert!(text.contains("# plotDirectory: /a"), "{text}");
    let reparsed = reload(&text);
    assert_eq!(reparsed.config, l.config);
    // The environment's `:`-separated form; the one-entry form.
    let l = load_yaml("", &[("SPACETIME_MINER_PLOT_DIRECTORIES", "/x:/y/")]).unwrap();
    assert_eq!(
        l.config.plot_directories,
        [PathBuf::from("/x"), PathBuf::from("/y")]
    );
    let l = load_yaml("plotDirectory: /one\n", &[]).unwrap();
    assert_eq!(l.config.plot_directories, [PathBuf::from("/one")]);
    // A later layer replaces the other spelling of an earlier one.
    let l = load_yaml(
        "plotDirectories: [/a, /b]\n",
        &[("SPACETIME_MINER_PLOT_DIRECTORY", "/env")],
    )
    .unwrap();
    assert_eq!(l.config.plot_directories, [PathBuf::from("/env")]);
    assert_eq!(
        l.sources["plotDirectories"],
        Source::Env("SPACETIME_MINER_PLOT_DIRECTORY".into())
    );
    // Both spellings in one layer: which was meant cannot be told.
    let msg = load_yaml("plotDirectory: /a\nplotDirectories: [/b]\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`plotDirectory` and `plotDirectories` are both set")
            && msg.contains("miner.yaml"),
        "{msg}"
    );
    let msg = load_yaml(
        "",
        &[
            ("SPACETIME_MINER_PLOT_DIRECTORY", "/a"),
            ("SPACETIME_MINER_PLOT_DIRECTORIES", "/b"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("SPACETIME_MINER_PLOT_DIRECTORIES"), "{msg}");
    // Empty, duplicated or non-string entries are refused with the key named.
    for bad in [
        "plotDirectories: []\n",
        "plotDirectories: [/a, /a/]\n",
        "plotDirectories: [/a, \"\"]\n",
        "plotDirectories: [1, 2]\n",
        "plotDirectories: {a: 1}\n",
    ] {
        let msg = load_yaml(bad, &[]).unwrap_err().to_string();
        assert!(
            msg.contains("`plotDirectories`") && msg.contains("distinct paths"),
            "{bad}: {msg}"
        );
    }
}
