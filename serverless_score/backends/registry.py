"""Which compute backends exist, by name: a new backend adds one line here and touches no
central ``if``. Kept free of imports so the spec can check a name without importing a backend."""

BACKENDS = {
    "local": "serverless_score.backends.local:LocalBackend",
    "docker": "serverless_score.backends.docker:DockerBackend",
    "aci": "serverless_score.backends.aci:AciBackend",
}
