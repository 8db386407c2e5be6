from tests.gateway.conftest import gateway_factory, triton  # noqa: F401  (the gateway fixtures)
