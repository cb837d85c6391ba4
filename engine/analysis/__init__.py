"""Statistics over runs: means, intervals, paired ratios, verdicts, and the machine's noise floor."""
