"""Route tables and bodies the gateway tests share (echo vN answers x * N)."""

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

# All traffic on echo v1, v2 ready as the canary: the admin and CLI tests start rollouts from it.
CANARY_READY_ROUTES = {
    "routes": {
        "echo": {
            "targets": [
                {"alias": "stable", "model": "echo", "version": "1", "weight": 100},
                {"alias": "canary", "model": "echo", "version": "2", "weight": 0},
            ]
        }
    }
}
ECHO_BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}
