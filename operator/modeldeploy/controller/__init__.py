"""The operator: reconciles ModelDeployments into staging Jobs and KServe InferenceServices.

Pure builders (``staging_job``, ``inference_service``), a pure decision (``reconcile.plan``),
the engine that does its I/O (``engine``), and the watches (``informer``) whose events
(``handlers``) queue a look (``work_queue``). Never imports ``modeldeploy.staging``:
model files (pickles included) are only opened inside the staging Job.
"""
