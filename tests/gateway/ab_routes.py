"""The A/B route table the REST and gRPC protocol tests share (echo vN answers x * N)."""

import numpy as np

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
AB_ROUTES = {
    "routes": {
        "echo": {
            "targets": [
                {"alias": "stable", "model": "echo", "version": "1", "weight": 50},
                {"alias": "canary", "model": "echo", "version": "2", "weight": 50},
            ]
        },
        "digits": {"targets": [{"alias": "stable", "model": "echo", "version": "2", "weight": 100}]},
    }
}
MULTIPLIER = {"stable": 1, "canary": 2}
