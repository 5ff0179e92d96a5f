//! `minerd`: the Spacetime miner daemon, as a library so that tests can run it in-process.
