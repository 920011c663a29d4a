"""wsbench harness: suites, metrics, the training protocol, robustness, records, CLI,
leaderboard and paper tables."""
