//! The YAML configuration loader (`minerd::config::load`, the function `minerd` itself
//! calls) on a file holding the input: never panics, and an accepted file renders
//! (`minerd config`) to a file that loads to the same configuration.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use minerd::config::{load, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("miner.yaml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let mut env = HashMap::new();
    env.insert("HOME".to_string(), dir.path().display().to_string());
    let opts = LoadOptions {
        config_file: Some(path.clone()),
        cli: vec![],
    };
    if let Ok(loaded) = load(&opts, &env) {
        let rendered = loaded.render();
        std::fs::write(&path, &rendered).expect("rewrite config");
        let again =
            load(&opts, &env).unwrap_or_else(|e| panic!("rendered config fails: {e}\n{rendered}"));
        assert_eq!(again.config, loaded.config, "{rendered}");
    }
});
