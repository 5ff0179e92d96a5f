//! Configuration errors at start-up and `minerd config`.

use e2e::Home;

fn fails_with_64(home: &Home, args: &[&str], env: &[(&str, &str)], needles: &[&str]) {
    let out = home.minerd_output(args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in: {stderr}");
    }
    // The error is printed once, and nothing was started.
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(!home.socket().exists());
}

fn with_yaml(yaml: &str) -> Home {
    let home = Home::new().unwrap();
    std::fs::create_dir_all(home.data_dir()).unwrap();
    std::fs::write(home.data_dir().join("miner.yaml"), yaml).unwrap();
    home
}

#[test]
fn unknown_key_names_the_key_and_the_allowed_ones() {
    let home = with_yaml("nodePort: 8333\nplotDir: /tmp/plots\n");
    fails_with_64(
        &home,
        &[],
        &[],
        &["`plotDir`", "miner.yaml", "plotDirectory"],
    );
}

#[test]
fn wrong_type_names_key_value_and_type() {
    let home = with_yaml("maxConcurrentProofs: lots\n");
    fails_with_64(
        &home,
        &[],
        &[],
        &[
            "`maxConcurrentProofs`",
            "\"lots\"",
            "an integer from 1 to 256",
        ],
    );
}

#[test]
fn out_of_range_from_env_and_flag() {
    let home = Home::new().unwrap();
    fails_with_64(
        &home,
        &[],
        &[("SPACETIME_MINER_NODE_PORT", "0")],
        &["`nodePort`", "SPACETIME_MINER_NODE_PORT", "from 1 to 65535"],
    );
    fails_with_64(
        &home,
        &["--set", "proofGenerationTimeoutSeconds=99999"],
        &[],
        &[
            "`proofGenerationTimeoutSeconds`",
            "\"99999\"",
            "from 1 to 3600",
        ],
    );
    fails_with_64(
        &home,
        &["--log-format", "xml"],
        &[],
        &["`logFormat`", "one of text, json"],
    );
}

#[test]
fn missing_explicit_config_file_is_a_usage_error() {
    let home = Home::new().unwrap();
    fails_with_64(
        &home,
        &["--config", "/nonexistent/miner.yaml"],
        &[],
        &["does not exist"],
    );
}

#[test]
fn config_command_prints_values_and_their_sources() {
    let home = with_yaml("nodeAddress: node.example.org\n");
    let out = home.minerd_output(
        &["config", "--node-port", "9000"],
        &[("SPACETIME_MINER_NETWORK_ID", "spacetime-testnet-v1")],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("{key} missing in {text}"))
            .to_owned()
    };
    assert!(
        line("nodeAddress").contains("node.example.org")
            && line("nodeAddress").contains("miner.yaml")
    );
    assert!(line("nodePort").contains("9000") && line("nodePort").contains("flag --node-port"));
    assert!(line("networkId").contains("spacetime-testnet-v1"));
    assert!(line("networkId").contains("environment SPACETIME_MINER_NETWORK_ID"));
    assert!(
        line("maxConnectionRetries").contains("10")
            && line("maxConnectionRetries").contains("default")
    );
    // The list, and its one-entry form as a comment (the output stays a loadable file).
    let plot_dir = home.plot_dir().to_string_lossy().into_owned();
    assert!(line("plotDirectories").contains(&format!("[\"{plot_dir}\"]")));
    assert!(line("# plotDirectory").contains(&plot_dir));
}

#[test]
fn devnet_shows_the_devnet_network_id_with_its_source() {
    let home = with_yaml("networkId: spacetime-testnet-v1\n");
    for args in [&["config", "--devnet"][..], &["--devnet", "config"]] {
        let out = home.minerd_output(args, &[]);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("networkId:"))
            .unwrap_or_else(|| panic!("networkId missing in {text}"));
        assert!(line.contains("spacetime-devnet-local"), "{line}");
        assert!(
            line.contains("devnet.enabled") && line.contains("spacetime-testnet-v1"),
            "{line}"
        );
    }
    // Without --devnet the file's id stands.
    let out = home.minerd_output(&["config"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("networkId: spacetime-testnet-v1"), "{text}");
}

#[test]
fn configuration_flags_are_not_offered_where_they_mean_nothing() {
    let home = Home::new().unwrap();
    for cmd in ["bench", "devnet-node"] {
        let out = home.minerd_output(&[cmd, "--help"], &[]);
        assert!(out.status.success(), "{out:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        for flag in ["--plot-dir", "--config", "--devnet", "--set"] {
            assert!(!help.contains(flag), "{cmd} --help offers {flag}:\n{help}");
        }
    }
    for cmd in [&["--help"][..], &["run", "--help"], &["config", "--help"]] {
        let out = home.minerd_output(cmd, &[]);
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("--plot-dir") && help.contains("--devnet"),
            "{help}"
        );
    }
    // Given anyway, they are refused rather than ignored.
    fails_with_64(
        &home,
        &["--plot-dir", "/tmp/x", "bench"],
        &[],
        &["--plot-dir", "minerd bench"],
    );
    let out = home.minerd_output(&["devnet-node", "--devnet"], &[]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
}

#[test]
fn plot_directories_given_twice_or_in_both_spellings_are_refused() {
    // Both spellings in the file: which one was meant cannot be told.
    let home = with_yaml("plotDirectory: /tmp/a\nplotDirectories: [/tmp/b]\n");
    fails_with_64(
        &home,
        &[],
        &[],
        &[
            "`plotDirectory` and `plotDirectories` are both set",
            "miner.yaml",
        ],
    );
    // One directory under two names (a link): found at start, before anything runs.
    let home = Home::new().unwrap();
    let real = home.path().join("disk");
    std::fs::create_dir_all(&real).unwrap();
    let link = home.path().join("disk-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let list = format!("{}:{}", real.display(), link.display());
    fails_with_64(
        &home,
        &[],
        &[("SPACETIME_MINER_PLOT_DIRECTORIES", &list)],
        &["lists one directory twice", "disk-link"],
    );
}
