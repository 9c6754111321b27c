"""nftables rulesets as data, applied atomically inside a network namespace."""
