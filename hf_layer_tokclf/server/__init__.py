"""An entity server: the Inference API's token-classification task over HTTP, concurrent requests batched.

- settings: what a server runs (`ServerSettings`: the model, decoding, limits) and how it batches (`BatchSettings`).
- requests: a request's body read and checked (`parse_request`): its texts and parameters, or the status and message
  that name what is wrong.
- batcher: concurrent requests gathered into one length-sorted run of the model (`Batcher`), each answered with its
  own entities, through the path `predict` takes.
- metrics: the Prometheus metrics of a server (requests, latency, batch sizes, queue depth).
- app: the ASGI application (FastAPI): ``POST /`` and ``/predict``, ``GET /health``, ``/info`` and ``/metrics``;
  `run_local` serves it with uvicorn.
- ray_serve: the same application as a Ray Serve deployment, replicated.

May import: base, model, formats, running.
"""
