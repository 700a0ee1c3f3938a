"""Usage metrics: a bounded in-memory window per host and VM, rates by API and Prometheus."""
