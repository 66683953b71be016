"""A Python client for a DeepScope server: the REST API and the run WebSocket, on httpx.

It imports nothing of torch, so a script author installs and starts it cheaply::

    from deepscope.client import DeepScope

    ds = DeepScope("http://127.0.0.1:8000", token=None)   # token: a workshop's class token
    run = ds.submit({"model": {"depth": 20, "activation": "tanh"}})
    for event in ds.stream(run["id"]):                      # live, until the run ends
        if event["type"] == "eval":
            print(event["epoch"], event["val_acc"])
    print(ds.wait(run["id"])["summary"])

Errors are ``ApiError``: the HTTP status, the server's message and, for an invalid config, the field.
The session keeps the identity the server issues (a signed cookie), so a client sees its own runs.
"""

from deepscope.client.api import ApiError, DeepScope

__all__ = ["ApiError", "DeepScope"]
