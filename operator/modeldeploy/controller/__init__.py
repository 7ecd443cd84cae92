"""The operator: reconciles ModelDeployments into staging Jobs and KServe InferenceServices.

Pure builders (``staging_job``, ``inference_service``), a pure decision (``reconcile.plan``),
and thin kopf handlers (``handlers``) that only do the I/O. Never imports ``modeldeploy.staging``:
model files (pickles included) are only opened inside the staging Job.
"""
