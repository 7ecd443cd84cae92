"""The ModelDeploy ONNX runtime: an Open Inference Protocol v2 server on the kserve SDK.

Serves a model repository written by ``modeldeploy stage``: dynamic batching, a start-up
self-test on the golden samples, image and label handling from the manifest, input validation
and Prometheus metrics. Install ``modeldeploy[runtime]``; start with ``modeldeploy serve``.
"""
