"""Service and model health: drift in the job, Prometheus rules, the report and ``status``."""
